"""HiPPO-LegS, its normal-plus-low-rank (DPLR) form, and diagonal inits.

Everything here runs once at initialisation, in float64 NumPy (HiPPO-LegS
and its DPLR form: Gu, Goel and Ré, "Efficiently Modeling Long Sequences with
Structured State Spaces", 2022; the diagonal LegS, Lin and Inv inits: Gu, Gupta,
Goel and Ré, "On the Parameterization and Initialization of Diagonal State Space
Models", 2022).
"""

from typing import NamedTuple

import numpy as np


class HiPPOLegS(NamedTuple):
    """HiPPO-LegS and its DPLR decomposition `A = V Λ V* − P Pᵀ`.

    **Fields** (all float64 / complex128 NumPy arrays):

    - `A`: `(N, N)` the dense HiPPO-LegS matrix.
    - `B`: `(N,)` the dense input vector, `B_n = sqrt(2n + 1)`.
    - `P`: `(N,)` the low-rank term, `P_n = sqrt(n + 1/2)`; `A + P Pᵀ` is normal.
    - `Lambda`: `(N,)` eigenvalues of `A + P Pᵀ` (all with real part `−1/2`). The
      first `N/2` have positive imaginary part, sorted ascending; the last `N/2`
      are their conjugates in the same order.
    - `V`: `(N, N)` unitary eigenvectors, columns paired like `Lambda`
      (`V[:, N/2 + j] = conj(V[:, j])`).
    - `p`: `(N,)` the low-rank term in the eigenbasis, `V* P`.
    - `b`: `(N,)` the input vector in the eigenbasis, `V* B`.

    In the eigenbasis the system is `A = diag(Λ) − p p*` with input `b`.
    """

    A: np.ndarray
    B: np.ndarray
    P: np.ndarray
    Lambda: np.ndarray
    V: np.ndarray
    p: np.ndarray
    b: np.ndarray


def _check_state_size(N: int) -> None:
    if not isinstance(N, int) or N < 2 or N % 2:
        raise ValueError(f"state size N must be an even integer >= 2, got {N!r}")


def hippo_legs(N: int) -> HiPPOLegS:
    """HiPPO-LegS of state size `N` and its DPLR decomposition, in float64.

    `A_nk = −sqrt(2n+1) sqrt(2k+1)` for `n > k`, `−(n+1)` for `n = k`, `0` above
    the diagonal; `B_n = sqrt(2n+1)`. With `P_n = sqrt(n + 1/2)` the matrix
    `A + P Pᵀ` is `−I/2` plus a skew-symmetric matrix, so it is normal and is
    diagonalised by a unitary `V` (Gu et al., "Efficiently Modeling Long
    Sequences with Structured State Spaces", 2022).

    **Arguments:** `N`, an even state size.

    **Returns:** a [`seqkit.ssm.HiPPOLegS`][].
    """
    _check_state_size(N)
    n = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * n + 1)
    A = -np.tril(np.outer(r, r), -1) - np.diag(n + 1)
    B = r.copy()
    P = np.sqrt(n + 0.5)
    S = A + np.outer(P, P)
    skew = S + 0.5 * np.eye(N)  # skew-symmetric part
    # i·skew is Hermitian, so eigh gives an orthonormal basis: skew = V diag(i w) V*.
    w, V = np.linalg.eigh(1j * skew)
    # eigh's eigenvalues w of i·skew are −Im(λ); λ = −1/2 − i w.
    lam = -0.5 - 1j * w
    order = np.argsort(lam.imag)
    lam, V = lam[order], V[:, order]
    pos = lam.imag > 0
    lam_half, V_half = lam[pos], V[:, pos]
    # Real matrices have conjugate eigenpairs: pair each positive mode with the
    # conjugate of its eigenvector, so that the real system is exactly represented.
    Lambda = np.concatenate([lam_half, np.conj(lam_half)])
    V = np.concatenate([V_half, np.conj(V_half)], axis=1)
    p = V.conj().T @ P
    b = V.conj().T @ B
    return HiPPOLegS(A=A, B=B, P=P, Lambda=Lambda, V=V, p=p, b=b)


def legs(N: int) -> tuple[np.ndarray, np.ndarray]:
    """S4D-LegS init: the diagonal of the normal part of HiPPO-LegS.

    **Returns:** `(Lambda, B)`, each `(N/2,)` complex128: one eigenvalue of each
    conjugate pair (positive imaginary part) and the matching entries of `V* B`.
    """
    h = hippo_legs(N)
    return h.Lambda[: N // 2].copy(), h.b[: N // 2].copy()


def lin(N: int) -> tuple[np.ndarray, np.ndarray]:
    """S4D-Lin init: `λ_n = −1/2 + iπn` for `n < N/2`, `B = 1`.

    **Returns:** `(Lambda, B)`, each `(N/2,)` complex128.
    """
    _check_state_size(N)
    n = np.arange(N // 2, dtype=np.float64)
    return -0.5 + 1j * np.pi * n, np.ones(N // 2, dtype=np.complex128)


def inv(N: int) -> tuple[np.ndarray, np.ndarray]:
    """S4D-Inv init: `λ_n = −1/2 + i (N/π)(N/(2n+1) − 1)` for `n < N/2`, `B = 1`.

    **Returns:** `(Lambda, B)`, each `(N/2,)` complex128.
    """
    _check_state_size(N)
    n = np.arange(N // 2, dtype=np.float64)
    return -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1), np.ones(N // 2, dtype=np.complex128)
