"""Bilinear and zero-order-hold discretization of `x' = A x + B u` with step Δ.

- bilinear: `Ā = (I − Δ/2·A)⁻¹ (I + Δ/2·A)`, `B̄ = (I − Δ/2·A)⁻¹ Δ B`
  (Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State
  Spaces", ICLR 2022);
- zero-order hold, diagonal `A = diag(λ)`: `Ā = exp(Δλ)`, `B̄ = (exp(Δλ) − 1)/λ · B`
  (Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of Diagonal
  State Space Models", NeurIPS 2022).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from seqkit._typing import ArrayLike


def _layout(A: Array, B: Array) -> bool:
    """True for a diagonal `A` (same shape as `B`), False for dense `A`."""
    if A.shape == B.shape:
        return True
    if A.ndim == B.ndim + 1 and A.shape[:-1] == B.shape and A.shape[-1] == B.shape[-1]:
        return False
    raise ValueError(
        "expected a diagonal A of the same shape as B (..., n), or a dense A of shape "
        f"(..., n, n) with B of shape (..., n); got A {A.shape} and B {B.shape}"
    )


def _operands(A: Any, B: Any, dt: Any) -> tuple[Array, Array, Array, bool]:
    """`A`, `B` and `dt` in one inexact dtype (the promotion of `A`'s and `B`'s, so a
    float64 `Δ` is not rounded to a float32 `B`), and the layout of `A`. A Python
    number `dt` (`1` as well as `1.0`) is a step in that dtype; integer arrays are
    refused."""
    if isinstance(dt, (int, float)) and not isinstance(dt, bool):
        dt = float(dt)
    A, B, dt = jnp.asarray(A), jnp.asarray(B), jnp.asarray(dt)
    for name, v in (("A", A), ("B", B), ("dt", dt)):
        if not jnp.issubdtype(v.dtype, jnp.inexact):
            raise ValueError(f"{name}: expected a floating or complex array, got {v.dtype}")
    dtype = jax.dtypes.canonicalize_dtype(np.promote_types(A.dtype, B.dtype))
    diagonal = _layout(A, B)
    batch = B.shape[:-1]
    try:
        fits = np.broadcast_shapes(dt.shape, batch) == batch
    except ValueError:
        fits = False
    if not fits:  # a step per state (dt shaped like B) would broadcast into an outer product
        raise ValueError(
            f"expected dt broadcastable to the batch dimensions {batch} of B {B.shape} (one step "
            f"per system, not per state), got dt of shape {dt.shape}"
        )
    return A.astype(dtype), B.astype(dtype), dt.astype(dtype)[..., None], diagonal


def _eye_like(A: Array) -> Array:
    return jnp.broadcast_to(jnp.eye(A.shape[-1], dtype=A.dtype), A.shape)


def discretize_bilinear(
    A: Inexact[ArrayLike, "..."],
    B: Inexact[ArrayLike, "... n"],
    dt: Inexact[ArrayLike, "..."] | float | int,
) -> tuple[ArrayLike, Array]:
    """Bilinear (Tustin) discretization.

    `Ā = (I − Δ/2·A)⁻¹ (I + Δ/2·A)`, `B̄ = (I − Δ/2·A)⁻¹ Δ B`.

    **Arguments:**

    - `A`: diagonal `(..., n)` (same shape as `B`) or dense `(..., n, n)`.
    - `B`: `(..., n)`.
    - `dt`: step sizes broadcastable against the batch dimensions `...` (an array, or
      a Python number for one step everywhere).

    **Returns:** `(A_bar, B_bar)` with the shapes of `A` and `B`.
    """
    A, B, dt, diagonal = _operands(A, B, dt)
    if diagonal:
        den = 1.0 - dt / 2 * A
        return (1.0 + dt / 2 * A) / den, dt * B / den
    eye = _eye_like(A)
    lhs = eye - dt[..., None] / 2 * A
    A_bar = jnp.linalg.solve(lhs, eye + dt[..., None] / 2 * A)
    B_bar = jnp.linalg.solve(lhs, (dt * B)[..., None])[..., 0]
    return A_bar, B_bar


def discretize_zoh(
    A: Inexact[ArrayLike, "..."],
    B: Inexact[ArrayLike, "... n"],
    dt: Inexact[ArrayLike, "..."] | float | int,
) -> tuple[ArrayLike, Array]:
    """Zero-order-hold discretization.

    `Ā = exp(ΔA)`, `B̄ = A⁻¹ (exp(ΔA) − I) B` (for diagonal `A`:
    `(exp(Δλ) − 1)/λ · B`).

    **Arguments:** as [`seqkit.ssm.discretize_bilinear`][].

    **Returns:** `(A_bar, B_bar)` with the shapes of `A` and `B`.
    """
    A, B, dt, diagonal = _operands(A, B, dt)
    if diagonal:
        dA = dt * A
        return jnp.exp(dA), jnp.expm1(dA) / A * B
    expm = jnp.vectorize(jax.scipy.linalg.expm, signature="(n,n)->(n,n)")
    A_bar = expm(dt[..., None] * A)
    B_bar = jnp.linalg.solve(A, ((A_bar - _eye_like(A)) @ B[..., None]))[..., 0]
    return A_bar, B_bar
