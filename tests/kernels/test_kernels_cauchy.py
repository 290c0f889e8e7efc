import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxtyping import TypeCheckError

from helpers import assert_close
from seqkit.kernels import cauchy


def _brute(v, z, lam, conj_pairs):
    # out[h, m, k] = Σ_n v/(z − λ) (+ conj(v)/(z − conj λ)), explicit float64 sum
    d = z[None, None, :] - lam[:, :, None]  # (H, n, K)
    out = np.einsum("hmn,hnk->hmk", v, 1.0 / d)
    if conj_pairs:
        d2 = z[None, None, :] - np.conj(lam)[:, :, None]
        out = out + np.einsum("hmn,hnk->hmk", np.conj(v), 1.0 / d2)
    return out


def _inputs(rng, H=3, M=4, n=5, K=37):
    v = rng.normal(size=(H, M, n)) + 1j * rng.normal(size=(H, M, n))
    lam = -rng.uniform(0.1, 1.0, (H, n)) + 1j * rng.normal(size=(H, n)) * 3
    z = 1j * rng.normal(size=K) * 4 + rng.normal(size=K) * 0.1
    return v, z, lam


@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 1, 8, 37])
def test_cauchy_matches_brute_force(conj_pairs, chunk_size):
    rng = np.random.default_rng(0)
    v, z, lam = _inputs(rng)
    expected = _brute(v, z, lam, conj_pairs)
    out = cauchy(
        jnp.asarray(v, jnp.complex64),
        jnp.asarray(z, jnp.complex64),
        jnp.asarray(lam, jnp.complex64),
        conj_pairs=conj_pairs,
        chunk_size=chunk_size,
    )
    assert out.shape == expected.shape and out.dtype == jnp.complex64
    assert_close(out, expected, rtol=1e-5)


@pytest.mark.parametrize("conj_pairs", [True, False])
def test_cauchy_grads_float64(x64, conj_pairs):
    # The backward pass is hand-written: check it against finite differences
    # in v, z and lam, with a chunk size that leaves a padded last chunk.
    rng = np.random.default_rng(1)
    v, z, lam = _inputs(rng, H=2, M=2, n=3, K=9)
    f = lambda v, z, lam: cauchy(v, z, lam, conj_pairs=conj_pairs, chunk_size=4)  # noqa: E731
    args = (jnp.asarray(v), jnp.asarray(z), jnp.asarray(lam))
    check_grads(f, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def test_cauchy_rejects_mismatched_shapes():
    v = jnp.zeros((2, 3, 4), jnp.complex64)
    # Under the test suite's jaxtyping hook the annotation check fires first;
    # without it, the function's own ValueError does. Both name the shapes.
    with pytest.raises((ValueError, TypeCheckError)):
        cauchy(v, jnp.zeros(5, jnp.complex64), jnp.zeros((2, 5), jnp.complex64))


def test_cauchy_memory_bounded_by_chunk():
    # The compiled program never holds the full (H, n, K) reciprocal tensor.
    H, M, n, K = 64, 4, 32, 8193
    args = (
        jnp.zeros((H, M, n), jnp.complex64),
        jnp.zeros(K, jnp.complex64),
        -jnp.ones((H, n), jnp.complex64),
    )
    f = jax.jit(lambda v, z, lam: cauchy(v, z, lam, chunk_size=512))
    mem = f.lower(*args).compile().memory_analysis()
    full = H * n * K * 8  # bytes of one complex64 (H, n, K) tensor
    assert mem.temp_size_in_bytes < full / 2


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_empty_inputs(impl):
    """No points is an empty output; no poles a sum of nothing (zeros)."""
    v, lam = jnp.ones((2, 1, 3), jnp.complex64), -jnp.ones((2, 3), jnp.complex64)
    out = cauchy(v, jnp.zeros(0, jnp.complex64), lam, impl=impl)
    assert out.shape == (2, 1, 0) and out.dtype == jnp.complex64
    none = cauchy(jnp.ones((2, 1, 0), jnp.complex64), jnp.ones(4, jnp.complex64), jnp.ones((2, 0)), impl=impl)
    np.testing.assert_array_equal(np.asarray(none), np.zeros((2, 1, 4)))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_cauchy_grads_finite_with_a_pole_where_padding_could_fall(x64, impl):
    """A pole at 1 + 0j, and a chunk size that pads the points: the gradient equals
    the brute-force sum's (padding once repeated the point 1, whose reciprocal
    1/(1 − λ) is infinite there, and 0 · inf poisoned the backward pass)."""
    v = jnp.asarray([[[1.0 + 0.5j, -0.3 + 1j]]])
    lam = jnp.asarray([[1.0 + 0j, -0.5 + 2j]])
    z = jnp.asarray([0.1j, 0.3j, 0.5j])

    def loss(f):
        return lambda v, lam: jnp.sum(jnp.abs(f(v, lam)) ** 2)

    got = jax.grad(
        loss(lambda v, lam: cauchy(v, z, lam, conj_pairs=False, chunk_size=2, impl=impl)), argnums=(0, 1)
    )(v, lam)
    brute = lambda v, lam: jnp.einsum("hmn,hnk->hmk", v, 1.0 / (z[None, None] - lam[:, :, None]))  # noqa: E731
    want = jax.grad(loss(brute), argnums=(0, 1))(v, lam)
    for g, w in zip(got, want, strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        assert_close(g, w, rtol=1e-10)


@pytest.mark.parametrize("chunk_size", [0, -2])
def test_cauchy_refuses_a_bad_chunk_size(chunk_size):
    v, z, lam = (jnp.asarray(a, jnp.complex64) for a in _inputs(np.random.default_rng(2), K=5))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        cauchy(v, z, lam, chunk_size=chunk_size, impl="xla")
