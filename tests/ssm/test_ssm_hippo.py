import numpy as np
import pytest

from seqkit.ssm import hippo_legs, inv, legs, lin


def _legs_from_definition(N):
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    B = np.array([np.sqrt(2 * n + 1) for n in range(N)])
    return A, B


@pytest.mark.parametrize("N", [2, 8, 64])
def test_hippo_legs_dplr_decomposition(N):
    h = hippo_legs(N)
    A, B = _legs_from_definition(N)
    np.testing.assert_allclose(h.A, A, atol=1e-12)
    np.testing.assert_allclose(h.B, B, atol=1e-12)
    np.testing.assert_allclose(h.V.conj().T @ h.V, np.eye(N), atol=1e-10)
    # A = V Λ V* − P Pᵀ, reconstructed in float64.
    recon = (h.V * h.Lambda) @ h.V.conj().T - np.outer(h.P, h.P)
    np.testing.assert_allclose(recon, A, atol=1e-10 * N)
    # The normal part commutes with its adjoint; all Re(λ) = −1/2.
    S = A + np.outer(h.P, h.P)
    np.testing.assert_allclose(S @ S.T, S.T @ S, atol=1e-9 * N * N)
    np.testing.assert_allclose(h.Lambda.real, -0.5, atol=1e-10)
    # Conjugate pairing of eigenvalues, eigenvectors and the projected vectors.
    n = N // 2
    assert np.all(h.Lambda[:n].imag > 0)
    np.testing.assert_allclose(h.Lambda[n:], np.conj(h.Lambda[:n]))
    np.testing.assert_allclose(h.p[n:], np.conj(h.p[:n]), atol=1e-10)
    np.testing.assert_allclose(h.b[n:], np.conj(h.b[:n]), atol=1e-10)
    np.testing.assert_allclose(h.V.conj().T @ B, h.b, atol=1e-10)


@pytest.mark.parametrize("N", [4, 16, 64])
def test_legs_eigenvalues_of_normal_part(N):
    A, _ = _legs_from_definition(N)
    P = np.sqrt(np.arange(N) + 0.5)
    eig = np.linalg.eigvals(A + np.outer(P, P))
    upper = np.sort(eig[eig.imag > 0].imag)
    lam, b = legs(N)
    assert lam.shape == b.shape == (N // 2,)
    np.testing.assert_allclose(np.sort(lam.imag), upper, rtol=1e-9)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-10)


def test_lin_and_inv_inits():
    N = 16
    lam, b = lin(N)
    for n in range(N // 2):
        assert lam[n] == pytest.approx(-0.5 + 1j * np.pi * n)
    lam, b2 = inv(N)
    for n in range(N // 2):
        assert lam[n] == pytest.approx(-0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1))
    np.testing.assert_array_equal(b, 1.0)
    np.testing.assert_array_equal(b2, 1.0)


@pytest.mark.parametrize("bad", [0, 3, -2])
def test_odd_or_small_state_size_is_an_error(bad):
    with pytest.raises(ValueError, match="even integer"):
        hippo_legs(bad)
