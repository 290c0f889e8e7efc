"""Convolution with an SSM kernel by real FFTs padded to 2L."""

import jax.numpy as jnp
from jaxtyping import Float

from seqkit._typing import ArrayLike


def fft_conv(
    u: Float[ArrayLike, "L H"],
    k: Float[ArrayLike, "*dirs H Lk"],
    D: Float[ArrayLike, " H"] | None = None,
) -> Float[ArrayLike, "L H"]:
    """`y = K ∗ u + D u` per channel, by real FFTs of length `2L` (no wrap-around).

    A kernel of shape `(H, L)` is causal: `y_t = Σ_{s≤t} K[t−s] u_s`. A kernel of
    shape `(2, H, L)` is bidirectional: the second kernel runs over the reversed
    sequence, `y_t += Σ_{s≥t} K_b[s−t] u_s`. Both halves are folded into one
    length-`2L` non-causal kernel, so a bidirectional convolution costs the same
    as a causal one.

    **Arguments:**

    - `u`: `(L, H)` input.
    - `k`: `(H, L)` causal or `(2, H, L)` bidirectional kernel; a kernel longer
      than `L` is truncated to its first `L` taps.
    - `D`: optional `(H,)` skip weights.

    **Returns:** `(L, H)` in `u`'s dtype (a half-precision input is convolved in
    float32, the narrowest type the FFT takes).
    """
    u, k = jnp.asarray(u), jnp.asarray(k)
    if not jnp.issubdtype(u.dtype, jnp.floating):  # the kernel is cast to u's dtype
        raise ValueError(f"expected a floating input u, got dtype {u.dtype}")
    if u.ndim != 2 or u.shape[0] < 1:
        raise ValueError(f"expected an input u of shape (L, H) with L >= 1, got {u.shape}")
    L, H = u.shape
    if k.ndim not in (2, 3) or k.shape[-2] != H or (k.ndim == 3 and k.shape[0] != 2):
        raise ValueError(f"expected a kernel of shape ({H}, L) or (2, {H}, L), got {k.shape}")
    if k.shape[-1] < L:
        raise ValueError(f"kernel has {k.shape[-1]} taps, fewer than the input length {L}")
    out_dtype = u.dtype
    if jnp.finfo(u.dtype).bits < 32:
        u = u.astype(jnp.float32)
    k = k[..., :L].astype(u.dtype)
    n = 2 * L
    if k.ndim == 2:
        c = k
    else:
        fwd, bwd = k[0], k[1]
        # Lags −(L−1)..(L−1) laid out circularly over 2L: lag m ≥ 0 at m,
        # lag −j at 2L − j. Lag 0 takes both directions' first taps.
        c = jnp.concatenate(
            [
                (fwd[:, :1] + bwd[:, :1]),
                fwd[:, 1:],
                jnp.zeros((H, 1), u.dtype),
                bwd[:, :0:-1],
            ],
            axis=-1,
        )
    k_f = jnp.fft.rfft(c, n=n, axis=-1)  # (H, L+1)
    u_f = jnp.fft.rfft(u, n=n, axis=0)  # (L+1, H)
    y = jnp.fft.irfft(u_f * k_f.T, n=n, axis=0)[:L]
    if D is not None:
        y = y + u * D.astype(u.dtype)
    return y.astype(out_dtype)
