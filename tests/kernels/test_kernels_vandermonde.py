import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxtyping import TypeCheckError

from helpers import assert_close
from seqkit.kernels import vandermonde


def _brute(v, x, L):
    l = np.arange(L)
    return np.real(np.einsum("hn,hnl->hl", v, np.exp(x[..., None] * l)))


@pytest.mark.parametrize("L", [1, 2, 7, 64, 100, 1000])
def test_vandermonde_complex_matches_brute_force(L):
    rng = np.random.default_rng(L)
    v = rng.normal(size=(3, 6)) + 1j * rng.normal(size=(3, 6))
    x = -rng.uniform(1e-4, 0.05, (3, 6)) + 1j * rng.normal(size=(3, 6))
    out = vandermonde(jnp.asarray(v, jnp.complex64), jnp.asarray(x, jnp.complex64), L)
    assert out.shape == (3, L) and out.dtype == jnp.float32
    assert_close(out, _brute(v, x, L), rtol=2e-5)


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_vandermonde_real_and_block_sizes(block_size):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 4, 5))
    x = np.log(rng.uniform(0.5, 0.999, (2, 4, 5)))
    out = vandermonde(jnp.asarray(v, jnp.float32), jnp.asarray(x, jnp.float32), 50, block_size=block_size)
    expected = np.einsum("abn,abnl->abl", v, np.exp(x[..., None] * np.arange(50)))
    assert_close(out, expected, rtol=2e-5)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_vandermonde_pole_at_zero_is_tap_zero_only(impl):
    """`x = log 0 = −∞` (a saturated EMA gate, a bilinear `Ā = 0`): the mode
    contributes `v` at `l = 0` and nothing after (0⁰ = 1), not NaN."""
    v = np.array([[2.0 + 1j, 1.0 - 0.5j]])
    x = np.array([[-np.inf + 0j, -0.3 + 1.1j]])
    expected = _brute(v[:, 1:], x[:, 1:], 40)
    expected[:, 0] += v[0, 0].real
    out = vandermonde(jnp.asarray(v, jnp.complex64), jnp.asarray(x, jnp.complex64), 40, impl=impl)
    assert_close(out, expected, rtol=2e-5)
    real = vandermonde(jnp.asarray([[2.0, 1.0]]), jnp.asarray([[-np.inf, -0.3]]), 40, impl=impl)
    assert_close(real, np.concatenate([[[3.0]], np.exp(-0.3 * np.arange(1, 40))[None]], axis=1), rtol=2e-5)


def test_vandermonde_grads_float64(x64):
    rng = np.random.default_rng(2)
    v = jnp.asarray(rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3)))
    x = jnp.asarray(-rng.uniform(0.01, 0.1, (2, 3)) + 1j * rng.normal(size=(2, 3)))
    check_grads(
        lambda v, x: vandermonde(v, x, 19), (v, x), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6
    )


def test_vandermonde_memory_is_sublinear_in_nL():
    H, n, L = 128, 32, 16384
    v = jnp.zeros((H, n), jnp.complex64)
    f = jax.jit(jax.grad(lambda v, x: jnp.sum(vandermonde(v, x, L) ** 2), argnums=(0, 1)))
    mem = f.lower(v, v).compile().memory_analysis()
    full = H * n * L * 8  # one complex64 (H, n, L) tensor
    assert mem.temp_size_in_bytes < full / 4


def test_vandermonde_rejects_bad_input():
    with pytest.raises((ValueError, TypeCheckError)):
        vandermonde(jnp.zeros((2, 3)), jnp.zeros((2, 4)), 5)
    with pytest.raises(ValueError, match="positive integer length"):
        vandermonde(jnp.zeros((2, 3)), jnp.zeros((2, 3)), 0)
    for block_size in (0, -2):  # 0 once fell back to the default silently
        with pytest.raises(ValueError, match="block_size must be a positive integer"):
            vandermonde(jnp.zeros((2, 3)), jnp.zeros((2, 3)), 5, block_size=block_size, impl="xla")


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_vandermonde_takes_a_numpy_integer_length(impl):
    rng = np.random.default_rng(3)
    v = rng.normal(size=(2, 4)) + 1j * rng.normal(size=(2, 4))
    x = -rng.uniform(0.01, 0.1, (2, 4)) + 1j * rng.normal(size=(2, 4))
    out = vandermonde(jnp.asarray(v, jnp.complex64), jnp.asarray(x, jnp.complex64), np.int64(9), impl=impl)
    assert_close(out, _brute(v, x, 9), rtol=2e-5)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_empty_inputs(impl):
    """No modes is a sum of nothing (zeros); an empty batch is an empty output."""
    none = jnp.zeros((2, 0), jnp.complex64)
    np.testing.assert_array_equal(np.asarray(vandermonde(none, none, 5, impl=impl)), np.zeros((2, 5)))
    empty = jnp.zeros((0, 3), jnp.float32)
    assert vandermonde(empty, empty, 5, impl=impl).shape == (0, 5)
