"""Sliding-window softmax attention as a Pallas kernel for TPU (Mosaic), forward and backward.

The TPU counterpart of `seqkit.kernels._local_attention_pallas` (written for Triton,
where each program reads its key window straight from memory). Here every program
holds one query tile and one key tile in VMEM: the grid's last axis steps through
the few key tiles that meet the query tile's window, Pallas pipelines their copies
from HBM, and the online softmax state lives in VMEM scratch between steps. Tested
in interpret mode against a dense-mask float64 reference, and lowered for TPU by
`jax.export`.
"""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jaxtyping import Array, Bool, Float

from seqkit._typing import ArrayLike

from ._local_attention_pallas import _acc_dtype, _nn, _nt  # the products and accumulator dtype are shared
from ._pallas_common import check_key_mask, check_qkv, float32_unsupported, tile_unsupported

_TPU_DTYPES = ("bfloat16", "float32")
# Mosaic lays arrays out in (8 sublanes × 128 lanes) tiles: sequence tiles are a
# multiple of 128 positions (a key tile is the lane axis of a score tile) and head
# dimensions are padded with zeros to a multiple of 128 lanes (which change no score
# and no output).
_LANES = 128
_DEFAULT_BLOCK = 128


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    L: int  # true length (positions >= L are padding)
    Lp: int  # padded length, a multiple of block
    block: int  # positions per query tile and per key tile
    lo: int  # query i sees keys i − lo <= j <= i + hi
    hi: int
    interpret: Any  # False, True (Pallas's interpreter) or a `pltpu.InterpretParams`

    @property
    def tiles(self) -> int:
        return self.Lp // self.block

    @property
    def steps(self) -> int:
        """Tiles that meet one tile's window: `ceil(lo/B) + ceil(hi/B) + 1`, either way round."""
        B = self.block
        return -(-self.lo // B) + -(-self.hi // B) + 1


def unsupported(dtype, dropout: bool, block_size: int | None, platform: str) -> str | None:
    """Why the TPU Pallas kernel cannot serve a call on `platform` (`"cpu"` meaning
    interpret mode), or `None`. The dispatcher's `unsupported` for sliding-window
    `local_attention` on TPU.

    - TPU (Mosaic) and interpret mode only; GPU calls take the Triton kernel
      `seqkit.kernels.local_attention_pallas`.
    - float32 or bfloat16 on TPU (computed in float32); any float dtype in
      interpret mode.
    - No attention dropout (the kernel has no random-number stream).
    - `block_size`, positions per tile, a multiple of 128 on TPU (the lane width);
      any positive integer in interpret mode.
    """
    name = jnp.dtype(dtype).name
    if platform not in ("cpu", "tpu"):
        return f"the kernel is written for TPU (Mosaic) and interpret mode, not {platform}"
    if reason := float32_unsupported(dtype, platform):
        return reason
    if platform == "tpu" and name not in _TPU_DTYPES:
        return f"dtype {name} is not supported on tpu (supported: {', '.join(_TPU_DTYPES)})"
    if dropout:
        return "attention dropout is not implemented in the Pallas kernel (use impl='xla')"
    return tile_unsupported("block_size", block_size, platform)


# ---------------------------------------------------------------------------------------
# Kernels. The sequence is cut into tiles of B positions. Query tile t needs the keys
# t·B − lo ... t·B + B − 1 + hi: key tiles t − ceil(lo/B) ... t + ceil(hi/B). The grid
# is (rows, query tiles, steps); at step s the key/value blocks are tile
# u = t − ceil(lo/B) + s, clipped into the sequence by the BlockSpec (so a clipped,
# repeated tile costs no copy) and skipped by the kernel when u is out of range. The
# online softmax (running max m, normalizer l, unnormalized output) sits in VMEM
# scratch from step 0 to the last step, when the output tile is written. The backward
# kernels walk the same pairs of tiles, the dk/dv one from the key side.
#
# Per-position vectors come as (B, 1) columns (along a tile's rows) or (1, B) rows
# (along its lanes), whichever broadcasts against the score tile, so no kernel
# transposes anything.


def _partner(t, s, before: int):
    """The tile visited at step `s` by tile `t` (unclipped: may lie outside the sequence)."""
    return t - before + s


def _clip(cfg: _Config, u):
    return jnp.clip(u, 0, cfg.tiles - 1)


def _window(cfg: _Config, offset, rows_are_queries: bool):
    """`(B, B)`: is the query–key distance `i − j` of each entry within the window?
    `offset` is (query tile − key tile) · B; queries run along rows or along lanes."""
    B = cfg.block
    r = lax.broadcasted_iota(jnp.int32, (B, B), 0)
    c = lax.broadcasted_iota(jnp.int32, (B, B), 1)
    d = offset + (r - c if rows_are_queries else c - r)
    return (d <= cfg.lo) & (d >= -cfg.hi)


def _forward_kernel(q_ref, k_ref, v_ref, km_ref, o_ref, lse_ref, m_scr, l_scr, acc_scr, *, cfg: _Config):
    B = cfg.block
    acc_t = m_scr.dtype
    t, s = pl.program_id(1), pl.program_id(2)
    u = _partner(t, s, -(-cfg.lo // B))

    @pl.when(s == 0)
    def _init():
        m_scr[...] = jnp.full(m_scr.shape, -jnp.inf, acc_t)
        l_scr[...] = jnp.zeros(l_scr.shape, acc_t)
        acc_scr[...] = jnp.zeros(acc_scr.shape, acc_t)

    @pl.when((u >= 0) & (u < cfg.tiles))
    def _step():
        q, k, v = q_ref[...], k_ref[...], v_ref[...]
        sc = _nt(q, k, acc_t)  # (Bq, Bk)
        valid = _window(cfg, (t - u) * B, True) & (km_ref[...] > 0)  # key mask: a (1, Bk) row
        sc = jnp.where(valid, sc, -jnp.inf)
        m = m_scr[...]
        m_new = jnp.maximum(m, jnp.max(sc, axis=1, keepdims=True))
        m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new).astype(acc_t)  # a row with no key yet
        alpha = jnp.exp(m - m_safe)
        p = jnp.exp(sc - m_safe)
        l_scr[...] = l_scr[...] * alpha + jnp.sum(p, axis=1, keepdims=True)
        acc_scr[...] = acc_scr[...] * alpha + _nn(p.astype(v.dtype), v, acc_t)
        m_scr[...] = m_new

    @pl.when(s == cfg.steps - 1)
    def _finish():
        # A row that sees no key (every key in its window masked) gives o = 0, lse = −inf.
        l, m = l_scr[...], m_scr[...]
        empty = l == 0.0
        l_safe = jnp.where(empty, 1.0, l).astype(acc_t)
        m_safe = jnp.where(empty, 0.0, m).astype(acc_t)
        o_ref[...] = (acc_scr[...] / l_safe).astype(o_ref.dtype)
        lse_ref[...] = jnp.where(empty, -jnp.inf, m_safe + jnp.log(l_safe)).astype(lse_ref.dtype)


def _dq_kernel(q_ref, k_ref, v_ref, km_ref, do_ref, lse_ref, dd_ref, dq_ref, dq_scr, *, cfg: _Config):
    # dq_i = Σ_j ds_ij k_j with ds = p ⊙ (do vᵀ − D), D_i = do_i · o_i; p = exp(s − lse)
    # with lse = +inf (set by the caller) on rows with no key, whose weights are zero.
    B = cfg.block
    acc_t = dq_scr.dtype
    t, s = pl.program_id(1), pl.program_id(2)
    u = _partner(t, s, -(-cfg.lo // B))

    @pl.when(s == 0)
    def _init():
        dq_scr[...] = jnp.zeros(dq_scr.shape, acc_t)

    @pl.when((u >= 0) & (u < cfg.tiles))
    def _step():
        q, k, v, do = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
        valid = _window(cfg, (t - u) * B, True) & (km_ref[...] > 0)  # (Bq, Bk)
        p = jnp.exp(jnp.where(valid, _nt(q, k, acc_t), -jnp.inf) - lse_ref[...])  # lse: (Bq, 1)
        ds = p * (_nt(do, v, acc_t) - dd_ref[...])
        dq_scr[...] += _nn(ds.astype(k.dtype), k, acc_t)

    @pl.when(s == cfg.steps - 1)
    def _finish():
        dq_ref[...] = dq_scr[...].astype(dq_ref.dtype)


def _dkv_kernel(
    k_ref, v_ref, km_ref, q_ref, do_ref, lse_ref, dd_ref, dk_ref, dv_ref, dk_scr, dv_scr, *, cfg: _Config
):
    # Key tile u meets the queries i with j − hi <= i <= j + lo: query tiles
    # u − ceil(hi/B) ... u + ceil(lo/B). Scores transposed, sᵀ = k qᵀ (keys along rows),
    # with lse and D as (1, Bq) rows: dv_j = Σ_i p_ij do_i, dk_j = Σ_i ds_ij q_i.
    B = cfg.block
    acc_t = dk_scr.dtype
    u, s = pl.program_id(1), pl.program_id(2)
    t = _partner(u, s, -(-cfg.hi // B))

    @pl.when(s == 0)
    def _init():
        dk_scr[...] = jnp.zeros(dk_scr.shape, acc_t)
        dv_scr[...] = jnp.zeros(dv_scr.shape, acc_t)

    @pl.when((t >= 0) & (t < cfg.tiles))
    def _step():
        k, v, q, do = k_ref[...], v_ref[...], q_ref[...], do_ref[...]
        valid = _window(cfg, (t - u) * B, False) & (km_ref[...] > 0)  # (Bk, Bq); mask (Bk, 1)
        pt = jnp.exp(jnp.where(valid, _nt(k, q, acc_t), -jnp.inf) - lse_ref[...])
        dst = pt * (_nt(v, do, acc_t) - dd_ref[...])
        dv_scr[...] += _nn(pt.astype(do.dtype), do, acc_t)
        dk_scr[...] += _nn(dst.astype(q.dtype), q, acc_t)

    @pl.when(s == cfg.steps - 1)
    def _finish():
        dk_ref[...] = dk_scr[...].astype(dk_ref.dtype)
        dv_ref[...] = dv_scr[...].astype(dv_ref.dtype)


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays: rows (R, Lp, d); per-position vectors as
# columns (R, Lp, 1) or rows (R, 1, Lp). Grid (R, tiles, steps): the tile axis is the
# program's own tile (`t` for the forward and dq, `u` for dk/dv), the step axis walks
# its partners.


def _own(cfg, d):
    return pl.BlockSpec((None, cfg.block, d), lambda r, t, s: (r, t, 0))


def _partner_spec(cfg, d, before):
    return pl.BlockSpec((None, cfg.block, d), lambda r, t, s: (r, _clip(cfg, t - before + s), 0))


def _own_row(cfg):
    return pl.BlockSpec((None, 1, cfg.block), lambda r, t, s: (r, 0, t))


def _partner_row(cfg, before):
    return pl.BlockSpec((None, 1, cfg.block), lambda r, t, s: (r, 0, _clip(cfg, t - before + s)))


def _call(kernel, cfg, name, in_specs, out_specs, out_shape, scratch, *args):
    R = args[0].shape[0]
    params = None
    if cfg.interpret is False:
        params = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary"))
    return pl.pallas_call(
        functools.partial(kernel, cfg=cfg),
        out_shape=out_shape,
        grid=(R, cfg.tiles, cfg.steps),
        in_specs=in_specs,
        out_specs=out_specs,
        scratch_shapes=[pltpu.VMEM(shape, dtype) for shape, dtype in scratch],
        interpret=cfg.interpret,
        compiler_params=params,
        name=name,
    )(*args)


def _forward_call(cfg, q, k, v, km_row):
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = _acc_dtype(q.dtype)
    before = -(-cfg.lo // cfg.block)
    B = cfg.block
    return _call(
        _forward_kernel,
        cfg,
        "local_attention_tpu_fwd",
        [_own(cfg, dk), _partner_spec(cfg, dk, before), _partner_spec(cfg, dv, before),
         _partner_row(cfg, before)],
        (_own(cfg, dv), _own(cfg, 1)),
        (jax.ShapeDtypeStruct((R, Lp, dv), v.dtype), jax.ShapeDtypeStruct((R, Lp, 1), acc_t)),
        [((B, 1), acc_t), ((B, 1), acc_t), ((B, dv), acc_t)],
        q, k, v, km_row,
    )  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention_padded(cfg: _Config, q, k, v, km_row):
    return _forward_call(cfg, q, k, v, km_row)[0]


def _attention_fwd(cfg, q, k, v, km_row):
    o, lse = _forward_call(cfg, q, k, v, km_row)
    return o, (q, k, v, km_row, o, lse)


def _attention_bwd(cfg, res, do):
    q, k, v, km_row, o, lse = res
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    B = cfg.block
    acc_t = lse.dtype
    dd = jnp.sum(do.astype(acc_t) * o.astype(acc_t), axis=-1, keepdims=True)  # D_i = do_i · o_i
    lse = jnp.where(lse == -jnp.inf, jnp.inf, lse)  # rows with no key: all weights zero
    do = do.astype(q.dtype)
    lo_tiles, hi_tiles = -(-cfg.lo // B), -(-cfg.hi // B)
    dq = _call(
        _dq_kernel,
        cfg,
        "local_attention_tpu_bwd_dq",
        [
            _own(cfg, dk),
            _partner_spec(cfg, dk, lo_tiles),
            _partner_spec(cfg, dv, lo_tiles),
            _partner_row(cfg, lo_tiles),
            _own(cfg, dv),
            _own(cfg, 1),
            _own(cfg, 1),
        ],
        _own(cfg, dk),
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        [((B, dk), acc_t)],
        q, k, v, km_row, do, lse, dd,
    )  # fmt: skip
    km_col = jnp.swapaxes(km_row, 1, 2)
    lse_row, dd_row = jnp.swapaxes(lse, 1, 2), jnp.swapaxes(dd, 1, 2)
    dk_, dv_ = _call(
        _dkv_kernel,
        cfg,
        "local_attention_tpu_bwd_dkv",
        [
            _own(cfg, dk),
            _own(cfg, dv),
            _own(cfg, 1),
            _partner_spec(cfg, dk, hi_tiles),
            _partner_spec(cfg, dv, hi_tiles),
            _partner_row(cfg, hi_tiles),
            _partner_row(cfg, hi_tiles),
        ],
        (_own(cfg, dk), _own(cfg, dv)),
        (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
        [((B, dk), acc_t), ((B, dv), acc_t)],
        k, v, km_col, q, do, lse_row, dd_row,
    )  # fmt: skip
    return dq, dk_, dv_, None


_attention_padded.defvjp(_attention_fwd, _attention_bwd)


def _pad_to(a, rows, cols):
    return jnp.pad(a, ((0, 0), (0, rows - a.shape[1]), (0, cols - a.shape[2])))


@functools.partial(jax.jit, static_argnames=("window", "causal", "scale", "block_size", "interpret"))
def local_attention_pallas_tpu(
    q: Float[ArrayLike, "*batch L dk"],
    k: Float[ArrayLike, "*batch L dk"],
    v: Float[ArrayLike, "*batch L dv"],
    key_mask: Bool[ArrayLike, "*batch L"] | None = None,
    *,
    window: int,
    causal: bool = False,
    scale: float | None = None,
    block_size: int | None = None,
    interpret: bool | pltpu.InterpretParams = False,
) -> Float[Array, "*batch L dv"]:
    """Sliding-window softmax attention as a Pallas kernel for TPU (flash-style, memory linear in `L`).

    `o_i = Σ_j softmax_j(scale · q_i · k_j) v_j` over the keys `j` with
    `|i − j| <= window` (`0 <= i − j <= window` when `causal`) and
    `key_mask[j]`: the semantics of `seqkit.kernels.local_attention_pallas`. The
    sequence is cut into tiles of `block_size` positions; the grid is (rows, query
    tiles, key steps), step `s` of query tile `t` holding key tile
    `t − ceil(window / B) + s` in VMEM (`ceil(lo/B) + ceil(hi/B) + 1` steps, `hi = 0`
    when causal; steps outside the sequence contribute nothing). An online softmax
    (running maximum, normalizer, unnormalized output; Dao et al.,
    "FlashAttention", 2022) is kept in VMEM scratch across the steps, so no `L × L`
    array exists and the work is `O(L · window · d)`. A row with no allowed key
    (every key of its window masked) gives a zero output and zero gradients.

    Differentiable through a `custom_vjp` whose backward is two more Pallas kernels
    (FlashAttention-2's split): one over query tiles × key steps accumulates `dq`,
    one over key tiles × query steps accumulates `dk` and `dv`, both recomputing the
    weights from the saved log normalizers; `D_i = do_i · o_i` is one `O(L d)` XLA
    reduction.

    Lowers with Mosaic on TPU (checked without the hardware by `jax.export` for
    `platforms=["tpu"]`, which runs JAX's lowering to Mosaic IR, not the TPU
    compiler); grid dimensions ("parallel", "parallel", "arbitrary"). float32 and
    bfloat16 there, computed in float32 (float32 products at full precision); any
    float dtype in interpret mode. Head dimensions are padded with zeros to a
    multiple of 128 lanes and `L` to a tile multiple (masked). For GPU see
    `local_attention_pallas`.

    **Arguments:**

    - `q`, `k`, `v`: `(*batch, L, dk)`, `(*batch, L, dk)`, `(*batch, L, dv)`, one dtype.
    - `key_mask`: optional `(*batch, L)` boolean, `True` = real key.
    - `window`: `w >= 0`, the largest distance `|i − j|` a query sees.
    - `causal`: see only keys `j <= i`.
    - `scale`: defaults to `1/sqrt(dk)`.
    - `block_size`: positions per tile, a multiple of 128 unless `interpret`
      (default 128).
    - `interpret`: run in Pallas's interpret mode (on CPU): `True`, or a
      `pltpu.InterpretParams` for the TPU interpreter (simulated VMEM scratch that
      starts as NaN, out-of-bounds reads raise).

    **Returns:** `(*batch, L, dv)` in the inputs' dtype.
    """
    q, k, v = check_qkv(q, k, v)
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"expected an integer window >= 0, got {window!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"expected a positive integer block_size, got {block_size!r}")
    if interpret is False and (reason := tile_unsupported("block_size", block_size, "tpu")):
        raise ValueError(reason)
    *batch, L, dk = q.shape
    dv = v.shape[-1]
    key_mask = check_key_mask(key_mask, (*batch, L))
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    B = block_size or _DEFAULT_BLOCK
    Lp = -(-L // B) * B
    cfg = _Config(L, Lp, B, window, 0 if causal else window, interpret)
    R = int(np.prod(batch, dtype=np.int64))
    dkp, dvp = (-(-d // _LANES) * _LANES for d in (dk, dv))

    real = jnp.arange(Lp) < L
    km = jnp.broadcast_to(real, (R, Lp))
    if key_mask is not None:
        km = km & jnp.pad(key_mask.reshape(R, L), ((0, 0), (0, Lp - L)))
    qs = q * jnp.asarray(scale, q.dtype)  # scale once, not every score tile
    args = (
        _pad_to(qs.reshape(R, L, dk), Lp, dkp),
        _pad_to(k.reshape(R, L, dk), Lp, dkp),
        _pad_to(v.reshape(R, L, dv), Lp, dvp),
        km.astype(jnp.int32)[:, None, :],
    )
    o = _attention_padded(cfg, *args)
    return o[:, :L, :dv].reshape(*batch, L, dv)
