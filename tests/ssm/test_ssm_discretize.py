import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads

from seqkit.ssm import discretize_bilinear, discretize_zoh


def _system(rng, H=3, n=4):
    A = rng.normal(size=(H, n, n)) + 1j * rng.normal(size=(H, n, n)) - 2 * np.eye(n)
    lam = -rng.uniform(0.1, 1, (H, n)) + 1j * rng.normal(size=(H, n))
    B = rng.normal(size=(H, n)) + 1j * rng.normal(size=(H, n))
    dt = rng.uniform(1e-3, 0.5, H)
    return A, lam, B, dt


def test_bilinear_dense_and_diagonal(x64):
    A, lam, B, dt = _system(np.random.default_rng(0))
    A_bar, B_bar = discretize_bilinear(jnp.asarray(A), jnp.asarray(B), jnp.asarray(dt))
    dA_bar, dB_bar = discretize_bilinear(jnp.asarray(lam), jnp.asarray(B), jnp.asarray(dt))
    for h in range(A.shape[0]):
        I = np.eye(A.shape[-1])
        inv = np.linalg.inv(I - dt[h] / 2 * A[h])
        np.testing.assert_allclose(A_bar[h], inv @ (I + dt[h] / 2 * A[h]), rtol=1e-10)
        np.testing.assert_allclose(B_bar[h], inv @ (dt[h] * B[h]), rtol=1e-10)
        inv = np.linalg.inv(I - dt[h] / 2 * np.diag(lam[h]))
        np.testing.assert_allclose(dA_bar[h], np.diag(inv @ (I + dt[h] / 2 * np.diag(lam[h]))), rtol=1e-10)
        np.testing.assert_allclose(dB_bar[h], inv @ (dt[h] * B[h]), rtol=1e-10)


def test_zoh_dense_and_diagonal_against_matrix_exponential(x64):
    A, lam, B, dt = _system(np.random.default_rng(1))
    A_bar, B_bar = discretize_zoh(jnp.asarray(A), jnp.asarray(B), jnp.asarray(dt))
    dA_bar, dB_bar = discretize_zoh(jnp.asarray(lam), jnp.asarray(B), jnp.asarray(dt))
    for h in range(A.shape[0]):
        n = A.shape[-1]
        # Van Loan: expm([[A, B], [0, 0]] Δ) holds exp(AΔ) and ∫ exp(As) ds B.
        for Ah, got_A, got_B in [
            (A[h], A_bar[h], B_bar[h]),
            (np.diag(lam[h]), np.diag(dA_bar[h]), dB_bar[h]),
        ]:
            M = np.zeros((n + 1, n + 1), complex)
            M[:n, :n], M[:n, n] = Ah, B[h]
            E = scipy.linalg.expm(M * dt[h])
            np.testing.assert_allclose(got_A, E[:n, :n], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(got_B, E[:n, n], rtol=1e-9, atol=1e-12)


def test_discretize_grads(x64):
    _, lam, B, dt = _system(np.random.default_rng(2), H=2, n=3)
    for f in (discretize_zoh, discretize_bilinear):
        check_grads(
            f,
            (jnp.asarray(lam), jnp.asarray(B), jnp.asarray(dt)),
            order=1,
            modes=["rev"],
        )


def test_discretize_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="diagonal A"):
        discretize_bilinear(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3)), jnp.ones(2))


@pytest.mark.parametrize("discretize", [discretize_bilinear, discretize_zoh])
def test_discretize_refuses_a_step_per_state(discretize):
    """`dt` shaped like `B` (a step per state) would broadcast against the state axis
    into an outer product, `(n, n)` arrays for an `(n,)` system; it is refused."""
    A, B = -jnp.ones(3), jnp.ones(3)
    with pytest.raises(ValueError, match=r"expected dt broadcastable to the batch dimensions \(\)"):
        discretize(A, B, jnp.ones(3))
    with pytest.raises(ValueError, match="one step per system"):
        discretize(-jnp.ones((3, 3)), jnp.ones((3, 3)), jnp.ones((3, 3)))
    A_bar, B_bar = discretize(-jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(2))  # one per system
    assert A_bar.shape == B_bar.shape == (2, 3)


def test_discretize_rejects_integer_operands():
    """The functions' own check, which holds without the test suite's type-check
    hook (`__wrapped__`: the function the hook wraps)."""
    lam = jnp.asarray([-1.0 + 2j, -0.5 + 1j], jnp.complex64)
    for f in (getattr(g, "__wrapped__", g) for g in (discretize_zoh, discretize_bilinear)):
        with pytest.raises(ValueError, match="B: expected a floating or complex array, got int32"):
            f(lam, jnp.asarray([1, 1]), 0.1)  # an integer B must not turn Δ = 0.1 into 0
        with pytest.raises(ValueError, match="dt: expected a floating or complex array, got int32"):
            f(lam, jnp.ones(2, jnp.complex64), jnp.asarray(1))


def test_discretize_keeps_float64_step_with_a_float32_input_vector(x64):
    """Δ in float64 with a float32 `B` is not rounded to float32: the result is
    the float64 discretization of `B`'s (exact) float32 values."""
    _, lam, B, dt = _system(np.random.default_rng(3))
    B32 = jnp.asarray(B.real, jnp.float32)
    for f in (discretize_zoh, discretize_bilinear):
        A_bar, B_bar = f(jnp.asarray(lam), B32, jnp.asarray(dt))
        ref_A, ref_B = f(jnp.asarray(lam), jnp.asarray(np.asarray(B32, np.float64)), jnp.asarray(dt))
        assert B_bar.dtype == jnp.complex128
        np.testing.assert_allclose(A_bar, ref_A, rtol=1e-15)
        np.testing.assert_allclose(B_bar, ref_B, rtol=1e-15)


def test_discretize_takes_a_python_int_step():
    """`dt=1` is the step 1.0 (a Python number takes the operands' dtype), while an
    integer array stays refused (above)."""
    lam = jnp.asarray([-1.0 + 2j, -0.5 + 1j], jnp.complex64)
    B = jnp.asarray([1.0 + 0j, 2.0 - 1j], jnp.complex64)
    for f in (discretize_zoh, discretize_bilinear):
        got, want = f(lam, B, 1), f(lam, B, 1.0)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype == jnp.complex64
            np.testing.assert_array_equal(g, w)
