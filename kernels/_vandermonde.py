"""The Vandermonde product `Re Σ_n v_n exp(x_n l)`: the hot loop of diagonal SSMs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Inexact

from seqkit._typing import ArrayLike

from ._dispatch import Impl, backend, choose, resolving_auto
from ._pallas_common import tile_unsupported
from ._util import real_dtype, split_complex, widest_dtype
from ._vandermonde_pallas import unsupported as _pallas_unsupported, vandermonde_pallas


def _block_size(L: int) -> int:
    # A power of two near sqrt(L): both factors then hold O(n sqrt(L)) numbers.
    return max(1, 1 << math.ceil(math.log2(max(1.0, math.sqrt(L)))))


def _finite_exponents(x: Array, dtype) -> Array:
    """`x` with `Re x` held at or above `log(tiny)` (a pole at 0 stays finite)."""
    floor = math.log(jnp.finfo(dtype).tiny)
    if jnp.iscomplexobj(x):
        return lax.complex(jnp.maximum(jnp.real(x), floor), jnp.imag(x))
    return jnp.maximum(x, floor)


@resolving_auto
@functools.partial(jax.jit, static_argnames=("L", "block_size", "impl"))
def vandermonde(
    v: Inexact[ArrayLike, "*batch n"],
    x: Inexact[ArrayLike, "*batch n"],
    L: int | np.integer,
    *,
    block_size: int | None = None,
    impl: Impl = "auto",
) -> Float[ArrayLike, "*batch L"]:
    """Vandermonde product `out[..., l] = Re Σ_n v_n exp(x_n l)` for `l < L`.

    `exp(x l)` is the `l`-th power of `exp(x)`, the structure of every diagonal
    SSM kernel (`K_l = 2 Re Σ C_n B̄_n Ā_n^l` with `x = log Ā`). Writing
    `l = mB + j` splits `exp(x l) = exp(x mB) · exp(x j)`, so the product is a
    batched matrix product of an `(L/B, n)` and an `(n, B)` factor: `O(n L)`
    multiply-adds on matrix units, `O(n (L/B + B))` exponentials, and never the
    `(n, L)` tensor, forward or backward. Meant for decaying or oscillating
    modes (`Re x ≤ 0`); growing modes are exact too until `exp(Re(x) L)`
    overflows. A pole at 0 (`Re x = −∞`, the log of 0: a saturated EMA gate, a
    bilinear `Ā = 0`) counts `v` at `l = 0` and nothing after: `Re x` is held at
    or above the log of the dtype's smallest normal number, so `exp(x · 0)` is 1,
    not `exp(−∞ · 0)` = NaN. Its gradient in `x` is then 0; `seqkit.ssm`'s kernels
    write such modes out instead (`seqkit.ssm._powers.power_kernel`), exact in `r`.

    **Arguments:**

    - `v`: `(*batch, n)` weights, real or complex.
    - `x`: `(*batch, n)` exponents (`log` of the poles), real or complex.
    - `L`: output length (static).
    - `block_size`: `B` (static); defaults to a power of two near `sqrt(L)` (XLA)
      or to the Pallas kernel's tile width (128 on TPU, at most 128 elsewhere).
    - `impl`: `"auto"` (Pallas on GPU/TPU when the kernel supports the call, XLA
      otherwise and on CPU), `"xla"` or `"pallas"` (interpret mode on CPU; a call
      the kernel does not support, e.g. float64 on GPU, is a `ValueError`). The
      Pallas kernel computes tiles of the output from `(v, x)` in real arithmetic,
      with a Pallas backward; see `vandermonde_pallas`.

    **Returns:** `(*batch, L)` real.
    """
    dtype = real_dtype(v, x)
    if v.shape != x.shape:
        raise ValueError(f"expected v and x of the same shape (*batch, n), got {v.shape} and {x.shape}")
    if isinstance(L, np.integer):
        L = int(L)
    if not isinstance(L, int) or isinstance(L, bool) or L < 1:
        raise ValueError(f"expected a positive integer length L, got {L!r}")
    if v.ndim < 1:
        raise ValueError(f"expected v and x with a mode axis (*batch, n), got shape {v.shape}")
    if v.size == 0:  # no modes (a sum of nothing) or an empty batch
        return jnp.zeros((*v.shape[:-1], L), dtype)
    x = _finite_exponents(x, dtype)
    choice = choose(
        impl, "vandermonde", functools.partial(_pallas_unsupported, widest_dtype(v, x), block_size)
    )
    if choice.impl == "pallas":
        return vandermonde_pallas(
            v, x, L, block_size=block_size, interpret=choice.interpret, platform=backend()
        )
    if why := tile_unsupported("block_size", block_size, "xla"):  # (the Pallas path checks its own)
        raise ValueError(why)
    B = _block_size(L) if block_size is None else block_size
    nb = -(-L // B)
    j = jnp.arange(B, dtype=dtype)
    m = jnp.arange(nb, dtype=dtype) * B
    x_re, x_im = split_complex(x)
    v_re, v_im = split_complex(v)
    # E[n, j] = exp(x_n j),  S[m, n] = v_n exp(x_n m B)
    e_mag = jnp.exp(x_re[..., None] * j)  # (..., n, B)
    s_mag = jnp.exp(x_re[..., None, :] * m[:, None])  # (..., nb, n)
    if jnp.iscomplexobj(v) or jnp.iscomplexobj(x):
        e_ph = x_im[..., None] * j
        s_ph = x_im[..., None, :] * m[:, None]
        c, s = jnp.cos(s_ph), jnp.sin(s_ph)
        vr, vi = v_re[..., None, :], v_im[..., None, :]
        # Re(S E) = S_re E_re − S_im E_im: one real product with inner size 2n.
        S = jnp.concatenate([s_mag * (vr * c - vi * s), -s_mag * (vr * s + vi * c)], axis=-1)
        E = jnp.concatenate([e_mag * jnp.cos(e_ph), e_mag * jnp.sin(e_ph)], axis=-2)
    else:
        S = s_mag * v_re[..., None, :]
        E = e_mag
    out = jnp.matmul(S, E, precision=lax.Precision.HIGHEST)  # (..., nb, B); no TF32 on a GPU
    return out.reshape(*out.shape[:-2], nb * B)[..., :L]
