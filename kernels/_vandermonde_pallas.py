"""The Vandermonde product `Re Σ_n v_n exp(x_n l)` as a Pallas kernel, forward and backward.

Reached through `seqkit.kernels.vandermonde(..., impl="pallas")` (or `impl="auto"` on
GPU and TPU); `kernels/_vandermonde.py` holds the XLA reference it is tested against.
"""

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Float, Inexact

from seqkit._typing import ArrayLike

from . import _dispatch
from ._pallas_common import compiler_params, float32_unsupported, i32, mode_block, next_pow2, tile_unsupported
from ._util import real_dtype, split_complex

# Rows of positions per tile (`M`): a multiple of 8 (TPU sublanes) and at least 16
# (Triton's smallest matrix-product operand).
_BLOCK_M = 16


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    L: int  # output length
    n: int  # padded number of modes (a multiple of block_n)
    block_l: int  # B: positions per tile row (the matrix products' lane dimension)
    block_m: int  # M: tile rows; a tile covers M·B consecutive positions
    block_n: int  # modes per step of the in-tile loop
    complex: bool  # whether (v, x) carry imaginary parts
    interpret: bool
    platform: str  # "cpu" (interpret), "gpu" or "tpu": picks the compiler parameters


def _default_block_size(L: int, platform: str) -> int:
    """`B`, positions per tile row: 128 lanes on TPU; elsewhere a power of two in
    `[16, 128]` that keeps a tile (`16 B` positions) no longer than needed for `L`."""
    if platform == "tpu":
        return 128
    return min(128, max(16, next_pow2(-(-L // _BLOCK_M))))


def unsupported(dtype, block_size: int | None, platform: str) -> str | None:
    """Why the Pallas kernel cannot serve a call on `platform` (`"cpu"` meaning
    interpret mode), or `None`. The dispatcher's `unsupported` for `vandermonde`.

    - GPU and TPU compute in float32: float64 (complex128) inputs are unsupported
      there (float16 and bfloat16 inputs are computed in float32 and rounded back).
    - `block_size` (`B`, positions per tile row) is a power of two `>= 16` on GPU
      (Triton tensors have power-of-two sizes, matrix-product operands at least 16
      wide) and a multiple of 128 on TPU (the lane width); any positive integer in
      interpret mode.
    """
    return float32_unsupported(dtype, platform) or tile_unsupported("block_size", block_size, platform)


# ---------------------------------------------------------------------------------------
# Kernels. A tile covers the positions l = l0 + m B + j (m < M, j < B), l0 = t M B, and
# exp(x l) = exp(x (l0 + m B)) · exp(x j): a tile is an (M, n) × (n, B) matrix product,
# and the mode axis is reduced in steps of block_n, so only (M + B) · block_n
# exponentials live at once, never (n, L). Positions are clamped to L − 1 in the two
# factors: exact for every l < L, and finite (for growing modes) in the padding.


def _positions(cfg: _Config, dtype):
    """The clamped positions `l0 + m B` as an `(M, block_n)` array and `j` as `(B, block_n)`.

    Read outside the mode loop: `program_id` has no interpret-mode rule inside one."""
    M, B, bn = cfg.block_m, cfg.block_l, cfg.block_n
    l0 = pl.program_id(1) * (M * B)
    rows = jnp.minimum(l0 + B * lax.broadcasted_iota(jnp.int32, (M, bn), 0), cfg.L - 1).astype(dtype)
    cols = jnp.minimum(lax.broadcasted_iota(jnp.int32, (B, bn), 0), cfg.L - 1).astype(dtype)
    return rows, cols


def _factors(x_re, x_im, rows, cols):
    """Real/imaginary parts of S[m, n] = exp(x_n (l0 + m B)) and Eᵀ[j, n] = exp(x_n j)
    for one block of modes (`x_im` None for real input)."""
    s_mag, e_mag = jnp.exp(x_re * rows), jnp.exp(x_re * cols)
    if x_im is None:
        return (s_mag, None), (e_mag, None)
    s_ph, e_ph = x_im * rows, x_im * cols
    return (
        (s_mag * jnp.cos(s_ph), s_mag * jnp.sin(s_ph)),
        (e_mag * jnp.cos(e_ph), e_mag * jnp.sin(e_ph)),
    )


def _dot(a, b, trans_b=False):
    # a @ b, or a @ bᵀ; full float32 products (no TF32 on GPU, no bfloat16 passes on TPU).
    dims = (((1,), (1 if trans_b else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=lax.Precision.HIGHEST, preferred_element_type=a.dtype)


def _load(ref, k, bn):
    return None if ref is None else ref[:, pl.ds(pl.multiple_of(k * bn, bn), bn)]


def _forward_kernel(*refs, cfg: _Config):
    # out[l0 + m B + j] = Re Σ_n (v_n S[m, n]) Eᵀ[j, n]
    if cfg.complex:
        v_re_ref, x_re_ref, v_im_ref, x_im_ref, out_ref = refs
    else:
        (v_re_ref, x_re_ref, out_ref), v_im_ref, x_im_ref = refs, None, None
    bn = cfg.block_n
    rows, cols = _positions(cfg, out_ref.dtype)

    def body(k, acc):
        v_re, x_re = _load(v_re_ref, k, bn), _load(x_re_ref, k, bn)
        v_im, x_im = _load(v_im_ref, k, bn), _load(x_im_ref, k, bn)
        (s_re, s_im), (e_re, e_im) = _factors(x_re, x_im, rows, cols)
        if not cfg.complex:
            return acc + _dot(v_re * s_re, e_re, trans_b=True)
        # Re((v S) E) = Re(v S) E_re − Im(v S) E_im, with v S written out in real pairs.
        vs_re = v_re * s_re - v_im * s_im
        vs_im = v_re * s_im + v_im * s_re
        return acc + _dot(vs_re, e_re, trans_b=True) - _dot(vs_im, e_im, trans_b=True)

    acc = jnp.zeros((cfg.block_m, cfg.block_l), out_ref.dtype)
    out_ref[...] = lax.fori_loop(i32(0), i32(cfg.n // bn), body, acc)


def _backward_kernel(*refs, cfg: _Config):
    # Per tile and mode: P_n = Σ_l g_l exp(x_n l), Q_n = Σ_l g_l l exp(x_n l), as
    # W = g E (an (M, B) × (B, n) product) then Σ_m S[m, n] W[m, n].
    if cfg.complex:
        g_ref, x_re_ref, x_im_ref, p_re_ref, p_im_ref, q_re_ref, q_im_ref = refs
    else:
        (g_ref, x_re_ref, p_re_ref, q_re_ref), x_im_ref = refs, None
    M, B, bn = cfg.block_m, cfg.block_l, cfg.block_n
    g = g_ref[...]
    l0 = pl.program_id(1) * (M * B)
    pos = l0 + B * lax.broadcasted_iota(jnp.int32, (M, B), 0) + lax.broadcasted_iota(jnp.int32, (M, B), 1)
    gl = g * pos.astype(g.dtype)  # g is zero at padded positions, so l ≥ L contributes nothing
    rows, cols = _positions(cfg, g.dtype)

    def reduce_rows(a):
        return jnp.sum(a, axis=0, keepdims=True)

    @pl.loop(i32(0), i32(cfg.n // bn))
    def _(k):
        sl = pl.ds(pl.multiple_of(k * bn, bn), bn)
        x_re, x_im = _load(x_re_ref, k, bn), _load(x_im_ref, k, bn)
        (s_re, s_im), (e_re, e_im) = _factors(x_re, x_im, rows, cols)
        if not cfg.complex:
            p_re_ref[:, sl] = reduce_rows(s_re * _dot(g, e_re))
            q_re_ref[:, sl] = reduce_rows(s_re * _dot(gl, e_re))
            return
        for w_ref_re, w_ref_im, h in ((p_re_ref, p_im_ref, g), (q_re_ref, q_im_ref, gl)):
            w_re, w_im = _dot(h, e_re), _dot(h, e_im)
            w_ref_re[:, sl] = reduce_rows(s_re * w_re - s_im * w_im)
            w_ref_im[:, sl] = reduce_rows(s_re * w_im + s_im * w_re)


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded real arrays: modes (R, 1, n), output/cotangent (R, T M, B).


def _compiler_params(cfg: _Config, dims: int):
    return compiler_params(cfg.platform, interpret=cfg.interpret, dims=dims)


def _specs(cfg: _Config):
    modes = pl.BlockSpec((None, 1, cfg.n), lambda r, t: (r, 0, 0))
    tile = pl.BlockSpec((None, cfg.block_m, cfg.block_l), lambda r, t: (r, t, 0))
    partial = pl.BlockSpec((None, None, 1, cfg.n), lambda r, t: (r, t, 0, 0))
    return modes, tile, partial


def _forward_call(cfg: _Config, parts: tuple[Array, ...]) -> Array:
    R = parts[0].shape[0]
    T = -(-cfg.L // (cfg.block_m * cfg.block_l))
    modes, tile, _ = _specs(cfg)
    return pl.pallas_call(
        functools.partial(_forward_kernel, cfg=cfg),
        out_shape=jax.ShapeDtypeStruct((R, T * cfg.block_m, cfg.block_l), parts[0].dtype),
        grid=(R, T),
        in_specs=[modes] * len(parts),
        out_specs=tile,
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 2),
        name="vandermonde_fwd",
    )(*parts)


def _backward_call(cfg: _Config, g: Array, xs: tuple[Array, ...]) -> tuple[Array, ...]:
    """Tile-partial `P` and `Q` (real/imaginary parts), each `(R, T, 1, n)`; the caller
    sums over tiles (`T = L / (M B)` partials per mode: far fewer than `L`)."""
    R, TM, _ = g.shape
    T = TM // cfg.block_m
    modes, tile, partial = _specs(cfg)
    n_out = 4 if cfg.complex else 2
    shape = jax.ShapeDtypeStruct((R, T, 1, cfg.n), g.dtype)
    return pl.pallas_call(
        functools.partial(_backward_kernel, cfg=cfg),
        out_shape=(shape,) * n_out,
        grid=(R, T),
        in_specs=[tile] + [modes] * len(xs),
        out_specs=(partial,) * n_out,
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 2),
        name="vandermonde_bwd",
    )(g, *xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _vandermonde_padded(cfg: _Config, parts: tuple[Array, ...]) -> Array:
    return _forward_call(cfg, parts)


def _vandermonde_fwd(cfg, parts):
    return _forward_call(cfg, parts), parts


def _vandermonde_bwd(cfg, parts, g):
    # With E = exp(x l) and out_l = Σ_n v_re E_re − v_im E_im:
    #   ∂/∂v_re = Σ g E_re = Re P,   ∂/∂v_im = −Im P,
    #   ∂/∂x_re = Re(v Q),            ∂/∂x_im = −Im(v Q),
    # where P = Σ_l g_l E_l and Q = Σ_l g_l l E_l. Recombined into complex cotangents
    # by JAX's rules for real/imag/complex outside this function, these are JAX's
    # convention ∂/∂v = P, ∂/∂x = v Q.
    if not cfg.complex:
        v_re, x_re = parts
        p_re, q_re = (jnp.sum(a, axis=1) for a in _backward_call(cfg, g, (x_re,)))
        return ((p_re, v_re * q_re),)
    v_re, x_re, v_im, x_im = parts
    p_re, p_im, q_re, q_im = (jnp.sum(a, axis=1) for a in _backward_call(cfg, g, (x_re, x_im)))
    vq_re = v_re * q_re - v_im * q_im
    vq_im = v_re * q_im + v_im * q_re
    return ((p_re, vq_re, -p_im, -vq_im),)


_vandermonde_padded.defvjp(_vandermonde_fwd, _vandermonde_bwd)


@functools.partial(jax.jit, static_argnames=("L", "block_size", "interpret", "platform"))
def vandermonde_pallas(
    v: Inexact[ArrayLike, "*batch n"],
    x: Inexact[ArrayLike, "*batch n"],
    L: int,
    *,
    block_size: int | None = None,
    interpret: bool = False,
    platform: Literal["gpu", "tpu", "cpu"] | None = None,
) -> Float[Array, "*batch L"]:
    """Pallas Vandermonde product `out[..., l] = Re Σ_n v_n exp(x_n l)` for `l < L`.

    The output is computed tile by tile (a grid over batch rows and tiles of
    `M B` positions, `M = 16` rows of `B = block_size` positions); inside a tile
    starting at `l0`, with `l = l0 + m B + j`,

    `out[l] = Re Σ_n (v_n exp(x_n (l0 + m B))) · exp(x_n j)`,

    an `(M, n) × (n, B)` product accumulated over the modes in blocks, so `(n, L)`
    never exists. Complex numbers are real/imaginary pairs (Pallas on GPU and TPU
    has no complex dtypes). The wrapper pads `n` (with `v = x = 0`, which adds
    nothing) and `L` to block multiples and slices the result.

    Differentiable through a `custom_vjp` whose backward is a second kernel: with
    `g` the output cotangent, `P_n = Σ_l g_l exp(x_n l)` and
    `Q_n = Σ_l g_l l exp(x_n l)` are reduced tile by tile (an `(M, B) × (B, n)`
    product, then a sum over the `M` rows) and give JAX's cotangents
    `∂/∂v_n = P_n`, `∂/∂x_n = v_n Q_n` (real parts for real inputs).

    Lowers with the Triton backend on GPU (chosen through Triton compiler
    parameters: Pallas's default GPU backend, Mosaic GPU, wants every block row to
    be a multiple of the 128-byte warpgroup size, which small tiles are not) and
    with Mosaic on TPU. Both lowerings are checked without the hardware by
    `jax.export` for `platforms=["cuda"]` and `["tpu"]` (the tests do); that runs
    JAX's lowering to Triton / Mosaic IR, not the final Triton / TPU compilers.
    Float32 arithmetic there (float16/bfloat16 inputs are upcast, the output
    rounded back); any float dtype in interpret mode. Constraints
    (`unsupported`): no float64 on GPU/TPU; `block_size` a power of two `>= 16`
    on GPU (Triton tensors have power-of-two sizes and matrix-product operands at
    least 16 wide) and a multiple of 128 on TPU (the lane width; narrower blocks
    lower too but are untested on hardware).

    Like the XLA path, growing modes (`Re x > 0`) are exact while
    `exp(Re(x) L)` stays finite (positions past `L` are clamped to `L − 1`).

    **Arguments:**

    - `v`, `x`: `(*batch, n)` weights and exponents, real or complex, one precision.
    - `L`: output length.
    - `block_size`: `B` (default: 128 on TPU; elsewhere the power of two in
      `[16, 128]` nearest `L / 16`, so short outputs are not padded far).
    - `interpret`: run in Pallas's interpret mode (as on CPU, where it is the only mode).
    - `platform`: `"gpu"`, `"tpu"` or `"cpu"` (default: the default backend, as
      `jax.default_backend()` names it): the target whose compiler parameters
      and default block sizes to use (ignored in interpret mode). It may differ
      from the machine's backend when lowering ahead of time with `jax.export`.

    **Returns:** `(*batch, L)` real, in the inputs' precision.
    """
    v, x = jnp.asarray(v), jnp.asarray(x)
    dtype = real_dtype(v, x)
    if v.shape != x.shape:
        raise ValueError(f"expected v and x of the same shape (*batch, n), got {v.shape} and {x.shape}")
    if not isinstance(L, int) or L < 1:
        raise ValueError(f"expected a positive integer length L, got {L!r}")
    if v.ndim < 1:
        raise ValueError(f"expected v and x with a mode axis (*batch, n), got shape {v.shape}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"expected a positive integer block_size, got {block_size!r}")
    platform = "cpu" if interpret else (platform or _dispatch.backend())
    interpret = platform not in _dispatch.ACCELERATORS  # "cpu": interpret mode
    *batch, n = v.shape
    B = block_size or _default_block_size(L, platform)
    bn = mode_block(n, platform)
    n_pad = -(-n // bn) * bn
    is_complex = bool(jnp.iscomplexobj(v) or jnp.iscomplexobj(x))
    cfg = _Config(L, n_pad, B, _BLOCK_M, bn, is_complex, interpret, platform)
    compute = jnp.float64 if dtype == jnp.float64 else jnp.float32
    R = int(np.prod(batch, dtype=np.int64))

    def prep(a):
        a = a.astype(compute).reshape(R, 1, n)
        return jnp.pad(a, ((0, 0), (0, 0), (0, n_pad - n)))

    v_re, v_im = split_complex(v)
    x_re, x_im = split_complex(x)
    parts = (v_re, x_re, v_im, x_im) if is_complex else (v_re, x_re)
    out = _vandermonde_padded(cfg, tuple(map(prep, parts)))  # (R, T M, B)
    return out.reshape(R, -1)[:, :L].reshape(*batch, L).astype(dtype)
