"""Sliding-window softmax attention as a Pallas kernel, forward and backward.

Reached through `seqkit.attention.local_attention(..., mode="sliding", impl="pallas")`
(or `impl="auto"` on GPU); the XLA path it is tested against is
`seqkit.attention.band_attention`, and both against a dense-mask float64 reference.
"""

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float, Integer, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._dropout import dropout_seed_array, dropped
from ._pallas_common import (
    MIN_GPU_TILE,
    check_key_mask,
    check_qkv,
    compiler_params,
    next_pow2,
    padded_attention_inputs,
    tile_unsupported,
)

_GPU_DTYPES = ("bfloat16", "float16", "float32")
# Triton: tensors have power-of-two sizes and matrix-product operands are at least
# 16 wide, so tiles are >= 16 positions and head dimensions are padded to a power
# of two >= 16 (with zeros, which change no score and no output): MIN_GPU_TILE.
_MAX_DEFAULT_BLOCK = 64


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    L: int  # true length (positions >= L are padding)
    Lp: int  # padded length, a multiple of block
    block: int  # positions per query tile and per key tile
    lo: int  # query i sees keys i − lo <= j <= i + hi
    hi: int
    interpret: bool
    platform: str  # "cpu" (interpret) or "gpu": picks the compiler parameters
    dropout: float = 0.0  # attention dropout rate (0: none)


def default_block(L: int) -> int:
    """The GPU attention kernels' default tile: the power of two in `[16, 64]` nearest
    above `L` (64 from `L > 32`)."""
    return min(_MAX_DEFAULT_BLOCK, max(MIN_GPU_TILE, next_pow2(L)))


def unsupported(dtype, dropout: bool, block_size: int | None, platform: str) -> str | None:
    """Why the Pallas kernel cannot serve a call on `platform` (`"cpu"` meaning
    interpret mode), or `None`. The dispatcher's `unsupported` for sliding-window
    `local_attention` off TPU.

    - GPU only: the kernel is written for Triton, each program reading its key
      window straight from memory; on TPU (Mosaic) a program's whole key row
      would have to sit in VMEM, so TPU calls go to the Mosaic kernel
      `seqkit.kernels.local_attention_pallas_tpu`, which pipelines one key tile
      per grid step instead.
    - float32, float16 or bfloat16 on GPU (any float dtype in interpret mode).
    - Attention dropout is served (the kernels draw their own stateless random
      stream); `dropout` is taken so that every attention kernel's `unsupported`
      has the same arguments.
    - `block_size`, positions per tile, a power of two `>= 16` on GPU (Triton
      tensors have power-of-two sizes, matrix-product operands at least 16 wide);
      any positive integer in interpret mode.
    """
    name = jnp.dtype(dtype).name
    if platform not in ("cpu", "gpu"):
        return f"the kernel is written for GPU (Triton) and interpret mode, not {platform}"
    if platform == "gpu" and name not in _GPU_DTYPES:
        return f"dtype {name} is not supported on gpu (supported: {', '.join(_GPU_DTYPES)})"
    return tile_unsupported("block_size", block_size, platform)  # platform: cpu or gpu here


# ---------------------------------------------------------------------------------------
# Kernels. The sequence is cut into tiles of `block` positions. Query tile t (rows
# i0 = t·block ...) needs the keys i0 − lo ... i0 + block − 1 + hi, a few key tiles; an
# online softmax (running max m, normalizer l, unnormalized output) visits them in
# turn, so a program holds O(block · d) numbers and the whole pass is O(L · (lo + hi)).
# Under dropout every kernel recomputes the keep mask of each tile pair from the seed,
# the row (grid axis 0), and the query and key positions (`_pallas_common`).


def _acc_dtype(dtype):
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def _dot(a, b, dims, acc):
    # Full-precision products for float32/float64 inputs (no TF32); bfloat16/float16
    # operands go to the matrix units as they are, accumulated in float32.
    precision = lax.Precision.HIGHEST if jnp.dtype(a.dtype).itemsize >= 4 else None
    return lax.dot_general(a, b, (dims, ((), ())), precision=precision, preferred_element_type=acc)


def _nt(a, b, acc):  # a @ bᵀ
    return _dot(a, b, ((1,), (1,)), acc)


def _nn(a, b, acc):  # a @ b
    return _dot(a, b, ((1,), (0,)), acc)


def _tn(a, b, acc):  # aᵀ @ b
    return _dot(a, b, ((0,), (0,)), acc)


def _tile_range(cfg: _Config, start, before: int, after: int):
    """The tiles holding positions `start − before ... start + block − 1 + after`,
    as `[first, last)` clipped to the sequence."""
    B = cfg.block
    first = jnp.maximum(start - before, 0) // B
    last = jnp.minimum(start + B - 1 + after, cfg.Lp - 1) // B + 1
    return first, last


def _valid(cfg: _Config, qpos, kpos, kmask):
    """`(Bq, Bk)`: may query `qpos` see key `kpos` (window, real and unmasked key)?"""
    d = qpos[:, None] - kpos[None, :]
    return (d <= cfg.lo) & (d >= -cfg.hi) & (kmask[None, :] > 0)


def _iota(B, start):
    return start + lax.broadcasted_iota(jnp.int32, (B,), 0)


# The three loops below serve this kernel and the block-sparse one
# (`_block_sparse_pallas`): a program walks key tiles (forward, dq) or query tiles
# (dk/dv) `tile(e)` for `first <= e < last`, and `valid(qpos, kpos, kmask)` is the
# caller's pattern. Program ids are read outside the loops (interpret mode has no
# rule for them inside).


def forward_over_tiles(
    q_ref, k_ref, v_ref, km_ref, seed_ref, o_ref, lse_ref, *, cfg, valid, first, last, tile
):
    """The online-softmax forward pass of one query tile over the key tiles
    `tile(first) ... tile(last − 1)`; a row that sees no key gives o = 0, lse = −inf."""
    B = cfg.block
    acc_t = _acc_dtype(q_ref.dtype)
    row, i0 = pl.program_id(0), pl.program_id(1) * B
    seed = seed_ref[0]
    q = q_ref[...]
    qpos = _iota(B, i0)
    first, last = first(i0), last(i0)

    def body(e, carry):
        m, l, acc = carry
        t = tile(e)
        sl = pl.ds(pl.multiple_of(t * B, B), B)
        k, v, km = k_ref[sl, :], v_ref[sl, :], km_ref[sl]
        kpos = _iota(B, t * B)
        s = _nt(q, k, acc_t)
        s = jnp.where(valid(qpos, kpos, km), s, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new).astype(acc_t)  # a row with no key yet
        alpha = jnp.exp(m - m_safe)
        p = jnp.exp(s - m_safe[:, None])
        l = l * alpha + jnp.sum(p, axis=1)
        # the normalizer sums the undropped weights; the output the dropped ones
        (pz,) = dropped(cfg.dropout, seed, row, qpos[:, None], kpos[None, :], p)
        acc = acc * alpha[:, None] + _nn(pz.astype(v.dtype), v, acc_t)
        return m_new, l, acc

    init = (
        jnp.full((B,), -jnp.inf, acc_t),
        jnp.zeros((B,), acc_t),
        jnp.zeros((B, o_ref.shape[-1]), acc_t),
    )
    m, l, acc = lax.fori_loop(first, last, body, init)
    empty = l == 0.0
    l_safe = jnp.where(empty, 1.0, l).astype(acc_t)
    m_safe = jnp.where(empty, 0.0, m).astype(acc_t)
    o_ref[...] = (acc / l_safe[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, -jnp.inf, m_safe + jnp.log(l_safe)).astype(lse_ref.dtype)


def _weights(valid, q, k, km, qpos, kpos, lse, acc_t):
    """Recomputed softmax weights `p = exp(s − lse)` of a `(query tile, key tile)` pair;
    `lse = +inf` (set by the caller for rows with no key) makes a row's weights zero."""
    s = _nt(q, k, acc_t)
    s = jnp.where(valid(qpos, kpos, km), s, -jnp.inf)
    return jnp.exp(s - lse[:, None])


def dq_over_tiles(
    q_ref, k_ref, v_ref, km_ref, seed_ref, do_ref, lse_ref, dd_ref, dq_ref, *, cfg, valid, first, last, tile
):
    """dq of one query tile over its key tiles: dq_i = Σ_j ds_ij k_j with
    ds = p ⊙ (dp − D), dp = z c ⊙ (do vᵀ) (keep mask z, c = 1/(1 − rate); dp = do vᵀ
    without dropout), D_i = Σ_j p_ij dp_ij = do_i · o_i."""
    B = cfg.block
    acc_t = _acc_dtype(q_ref.dtype)
    row, i0 = pl.program_id(0), pl.program_id(1) * B
    seed = seed_ref[0]
    q, do, lse, dd = q_ref[...], do_ref[...], lse_ref[...], dd_ref[...]
    qpos = _iota(B, i0)
    first, last = first(i0), last(i0)

    def body(e, dq):
        t = tile(e)
        sl = pl.ds(pl.multiple_of(t * B, B), B)
        k, v, km = k_ref[sl, :], v_ref[sl, :], km_ref[sl]
        kpos = _iota(B, t * B)
        p = _weights(valid, q, k, km, qpos, kpos, lse, acc_t)
        (dp,) = dropped(cfg.dropout, seed, row, qpos[:, None], kpos[None, :], _nt(do, v, acc_t))
        ds = p * (dp - dd[:, None])
        return dq + _nn(ds.astype(k.dtype), k, acc_t)

    dq = lax.fori_loop(first, last, body, jnp.zeros((B, q.shape[-1]), acc_t))
    dq_ref[...] = dq.astype(dq_ref.dtype)


def dkv_over_tiles(
    q_ref,
    k_ref,
    v_ref,
    km_ref,
    seed_ref,
    do_ref,
    lse_ref,
    dd_ref,
    dk_ref,
    dv_ref,
    *,
    cfg,
    valid,
    first,
    last,
    tile,
):
    """dk and dv of one key tile over the query tiles that see it:
    dv_j = Σ_i z_ij c p_ij do_i, dk_j = Σ_i ds_ij q_i."""
    B = cfg.block
    acc_t = _acc_dtype(k_ref.dtype)
    row, j0 = pl.program_id(0), pl.program_id(1) * B
    seed = seed_ref[0]
    k, v, km = k_ref[...], v_ref[...], km_ref[...]
    kpos = _iota(B, j0)
    first, last = first(j0), last(j0)

    def body(e, carry):
        dk, dv = carry
        t = tile(e)
        sl = pl.ds(pl.multiple_of(t * B, B), B)
        q, do, lse, dd = q_ref[sl, :], do_ref[sl, :], lse_ref[sl], dd_ref[sl]
        qpos = _iota(B, t * B)
        p = _weights(valid, q, k, km, qpos, kpos, lse, acc_t)
        pz, dp = dropped(cfg.dropout, seed, row, qpos[:, None], kpos[None, :], p, _nt(do, v, acc_t))
        ds = p * (dp - dd[:, None])
        dv = dv + _tn(pz.astype(do.dtype), do, acc_t)
        dk = dk + _tn(ds.astype(q.dtype), q, acc_t)
        return dk, dv

    init = (jnp.zeros((B, k.shape[-1]), acc_t), jnp.zeros((B, v.shape[-1]), acc_t))
    dk, dv = lax.fori_loop(first, last, body, init)
    dk_ref[...] = dk.astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _window_loops(cfg: _Config, before: int, after: int) -> dict:
    """The sliding window's walk: tiles in `_tile_range` of the program's first
    position, `before`/`after` positions either side; the tile is the loop index."""
    return dict(
        cfg=cfg,
        valid=functools.partial(_valid, cfg),
        first=lambda start: _tile_range(cfg, start, before, after)[0],
        last=lambda start: _tile_range(cfg, start, before, after)[1],
        tile=lambda e: e,
    )


# Each kernel takes (q, k, v, km, seed, inputs of its pass..., outputs...) refs, as the
# loops above do.


def _forward_kernel(*refs, cfg: _Config):
    # query tile t sees the key tiles meeting i0 − lo ... i0 + B − 1 + hi
    forward_over_tiles(*refs, **_window_loops(cfg, cfg.lo, cfg.hi))


def _dq_kernel(*refs, cfg: _Config):
    dq_over_tiles(*refs, **_window_loops(cfg, cfg.lo, cfg.hi))


def _dkv_kernel(*refs, cfg: _Config):
    # Key tile u: the queries i with i − lo <= j <= i + hi, i.e. j − hi <= i <= j + lo.
    dkv_over_tiles(*refs, **_window_loops(cfg, cfg.hi, cfg.lo))


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays: rows (R, Lp, d), key mask (R, Lp) int32.


def _compiler_params(cfg):  # any config with `platform` and `interpret` (the block-sparse one too)
    return compiler_params(cfg.platform, interpret=cfg.interpret, num_stages=2)


def _tile(cfg, d):
    return pl.BlockSpec((None, cfg.block, d), lambda r, t: (r, t, 0))


def _row(cfg, d):
    return pl.BlockSpec((None, cfg.Lp, d), lambda r, t: (r, 0, 0))


def _tile1(cfg):
    return pl.BlockSpec((None, cfg.block), lambda r, t: (r, t))


def _row1(cfg):
    return pl.BlockSpec((None, cfg.Lp), lambda r, t: (r, 0))


def _seed():  # the (1,) dropout seed, read by every program
    return pl.BlockSpec((1,), lambda r, t: (0,))


def _call(kernel, cfg, name, in_specs, out_specs, out_shape, *args):
    R = args[0].shape[0]
    return pl.pallas_call(
        functools.partial(kernel, cfg=cfg),
        out_shape=out_shape,
        grid=(R, cfg.Lp // cfg.block),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg),
        name=name,
    )(*args)


def _forward_call(cfg, q, k, v, km, seed):
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = _acc_dtype(q.dtype)
    return _call(
        _forward_kernel,
        cfg,
        "local_attention_fwd",
        [_tile(cfg, dk), _row(cfg, dk), _row(cfg, dv), _row1(cfg), _seed()],
        (_tile(cfg, dv), _tile1(cfg)),
        (jax.ShapeDtypeStruct((R, Lp, dv), v.dtype), jax.ShapeDtypeStruct((R, Lp), acc_t)),
        q, k, v, km, seed,
    )  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention_padded(cfg: _Config, q, k, v, km, seed):
    return _forward_call(cfg, q, k, v, km, seed)[0]


def _attention_fwd(cfg, q, k, v, km, seed):
    o, lse = _forward_call(cfg, q, k, v, km, seed)
    return o, (q, k, v, km, seed, o, lse)


def _attention_bwd(cfg, res, do):
    q, k, v, km, seed, o, lse = res
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = lse.dtype
    # D_i = Σ_j p_ij dp_ij = do_i · o_i (with dropout too), O(L d) in XLA
    dd = jnp.sum(do.astype(acc_t) * o.astype(acc_t), axis=-1)
    lse = jnp.where(lse == -jnp.inf, jnp.inf, lse)  # rows with no key: all weights zero
    do = do.astype(q.dtype)
    args = (q, k, v, km, seed, do, lse, dd)
    dq = _call(
        _dq_kernel,
        cfg,
        "local_attention_bwd_dq",
        [_tile(cfg, dk), _row(cfg, dk), _row(cfg, dv), _row1(cfg), _seed()]
        + [_tile(cfg, dv), _tile1(cfg), _tile1(cfg)],
        _tile(cfg, dk),
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        *args,
    )
    dk_, dv_ = _call(
        _dkv_kernel,
        cfg,
        "local_attention_bwd_dkv",
        [_row(cfg, dk), _tile(cfg, dk), _tile(cfg, dv), _tile1(cfg), _seed()]
        + [_row(cfg, dv), _row1(cfg), _row1(cfg)],
        (_tile(cfg, dk), _tile(cfg, dv)),
        (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
        *args,
    )
    return dq, dk_, dv_, None, None


_attention_padded.defvjp(_attention_fwd, _attention_bwd)


@functools.partial(
    jax.jit,
    static_argnames=("window", "causal", "scale", "block_size", "dropout_rate", "interpret", "platform"),
)
def local_attention_pallas(
    q: Float[ArrayLike, "*batch L dk"],
    k: Float[ArrayLike, "*batch L dk"],
    v: Float[ArrayLike, "*batch L dv"],
    key_mask: Bool[ArrayLike, "*batch L"] | None = None,
    *,
    window: int,
    causal: bool = False,
    scale: float | None = None,
    block_size: int | None = None,
    dropout_rate: float = 0.0,
    dropout_seed: Integer[ArrayLike, "..."] | PRNGKeyArray | None = None,
    interpret: bool = False,
    platform: Literal["gpu", "cpu"] = "gpu",
) -> Float[Array, "*batch L dv"]:
    """Sliding-window softmax attention as a Pallas kernel (flash-style, memory linear in `L`).

    `o_i = Σ_j softmax_j(scale · q_i · k_j) v_j` over the keys `j` with
    `|i − j| <= window` (`0 <= i − j <= window` when `causal`) and
    `key_mask[j]`. The sequence is cut into tiles of `block_size` positions; the
    program for query tile `t` visits only the key tiles that meet its window and
    keeps an online softmax (running maximum, normalizer, unnormalized output;
    Dao et al., "FlashAttention", 2022), so no `L × L` array exists and the work is
    `O(L · window · d)`. A row with no allowed key (every key of its window masked)
    gives a zero output and zero gradients, as `seqkit.attention.dot_product_attention`.

    Attention dropout, as `seqkit.attention.dot_product_attention`: the softmax
    weights `p_ij` (normalized over the allowed keys, before dropout) are zeroed
    with probability `dropout_rate` and the kept ones scaled by
    `1/(1 − dropout_rate)`. The keep mask is a stateless random stream, a hash of
    `(seed, row, i, j)` with `row` the flattened batch index (MurmurHash3's
    finalizer; counter-based as in Salmon et al., "Parallel Random Numbers: As
    Easy as 1, 2, 3", 2011), which the backward kernels recompute instead of
    storing an `L × L` mask. The XLA paths draw from the same hash but over
    their own block layout's rows and positions: with dropout, `impl="pallas"`
    and `impl="xla"` give different (equally distributed) masks for one key.

    Differentiable through a `custom_vjp` whose backward is two more Pallas kernels
    (FlashAttention-2's split): one over query tiles accumulates `dq`, one over key
    tiles accumulates `dk` and `dv`, both recomputing the weights from the saved
    log normalizers; `D_i = do_i · o_i` is one `O(L d)` XLA reduction.

    Lowers with Triton on GPU (checked without the hardware by `jax.export` for
    `platforms=["cuda"]`, which runs JAX's lowering to Triton IR, not Triton's own
    compiler); float32 products are full precision (no TF32), float16/bfloat16 ones
    run on the matrix units with float32 accumulation. Any float dtype in
    interpret mode. Head dimensions are padded with zeros to a power of two `>= 16`
    (Triton tensor sizes); `L` is padded to a tile multiple and masked. Not for
    TPU (see `unsupported`; TPU has `local_attention_pallas_tpu`).

    **Arguments:**

    - `q`, `k`, `v`: `(*batch, L, dk)`, `(*batch, L, dk)`, `(*batch, L, dv)`, one dtype.
    - `key_mask`: optional `(*batch, L)` boolean, `True` = real key.
    - `window`: `w >= 0`, the largest distance `|i − j|` a query sees.
    - `causal`: see only keys `j <= i`.
    - `scale`: defaults to `1/sqrt(dk)`.
    - `block_size`: positions per tile (default: the power of two in `[16, 64]`
      nearest `L`).
    - `dropout_rate`: `0 <= rate < 1`, the attention-dropout rate (static).
    - `dropout_seed`: a `uint32` scalar (may be traced), or a PRNG key (typed or
      its raw bits) from which one is drawn with `jax.random.bits`; without it
      there is no dropout, as in `seqkit.attention.dot_product_attention`. Under
      `jax.vmap` (one call per head) give each head its own seed.
    - `interpret`: run in Pallas's interpret mode (on CPU).
    - `platform`: `"gpu"` or `"cpu"`: whose compiler parameters to use (ignored in
      interpret mode); may differ from the machine's backend under `jax.export`.

    **Returns:** `(*batch, L, dv)` in the inputs' dtype.
    """
    q, k, v = check_qkv(q, k, v)
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"expected an integer window >= 0, got {window!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"expected a positive integer block_size, got {block_size!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"expected 0 <= dropout_rate < 1, got {dropout_rate!r}")
    *batch, L, dk = q.shape
    dv = v.shape[-1]
    key_mask = check_key_mask(key_mask, (*batch, L))
    platform = "cpu" if interpret else platform
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    B = block_size or default_block(L)
    Lp = -(-L // B) * B
    rate = float(dropout_rate) if dropout_seed is not None else 0.0
    cfg = _Config(L, Lp, B, window, 0 if causal else window, interpret, platform, rate)
    dkp, dvp = (max(MIN_GPU_TILE, next_pow2(d)) for d in (dk, dv))

    args = padded_attention_inputs(q, k, v, key_mask, scale, Lp, dkp, dvp)
    o = _attention_padded(cfg, *args, dropout_seed_array(dropout_seed if rate else None))
    return o[:, :L, :dv].reshape(*batch, L, dv)
