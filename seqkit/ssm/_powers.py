"""Kernels that are sums of powers, `K_l = Re Σ_n v_n r_n^l`, with poles at 0."""

import jax.numpy as jnp
from jaxtyping import Array, Inexact

from seqkit.kernels import vandermonde


def power_kernel(
    v: Inexact[Array, "*b n"],
    r: Inexact[Array, "*b n"],
    log_r,
    L: int,
    *,
    impl: str = "auto",
) -> Array:
    """`K_l = Re Σ_n v_n r_n^l` for `l < L`, by the Vandermonde product of `log r`.

    A pole at 0 (`r_n = 0`: a saturated EMA gate, a bilinear `Ā = 0`) has no
    logarithm. Its mode is written out as its two nonzero taps, `v_n` at `l = 0`
    and `v_n r_n` at `l = 1`, so both the kernel and its gradient (`∂K_1/∂r_n = v_n`,
    `∂K_l/∂r_n = 0` after) are exact there, with no `0 · ∞`.

    `log_r`: a function of the boolean mask of poles at 0 that returns `log r`
    elsewhere and any finite value there, computed from a finite stand-in so that
    its derivative stays finite too, and as accurately as the caller can (EMA:
    `log1p(−where(zero, 0, αδ))`).
    """
    zero = r == 0
    x = jnp.broadcast_to(log_r(zero), v.shape)
    main = vandermonde(jnp.where(zero, jnp.zeros_like(v), v), x, L, impl=impl)
    at_zero = jnp.where(zero, v, jnp.zeros_like(v))
    taps = jnp.stack([jnp.real(jnp.sum(at_zero, -1)), jnp.real(jnp.sum(at_zero * r, -1))], -1)
    return main.at[..., : min(L, 2)].add(taps[..., :L].astype(main.dtype))
