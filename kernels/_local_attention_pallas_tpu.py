"""Sliding-window softmax attention as a Pallas kernel for TPU (Mosaic), forward and backward.

The TPU counterpart of `seqkit.kernels._local_attention_pallas` (written for Triton,
where each program reads its key window straight from memory). Here every program
holds one query tile and one key tile in VMEM: the grid's last axis steps through
the few key tiles that meet the query tile's window, Pallas pipelines their copies
from HBM, and the online softmax state lives in VMEM scratch between steps. The
step kernels (forward, dq, dk/dv; attention dropout from the GPU kernels' stream)
are shared with the block-sparse TPU kernel, which gives them another walk. Tested
in interpret mode against a dense-mask float64 reference, and lowered for TPU by
`jax.export`.
"""

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jaxtyping import Array, Bool, Float, Integer, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._dropout import dropout_seed_array, dropped
from ._local_attention_pallas import _acc_dtype, _nn, _nt  # the products and accumulator dtype are shared
from ._pallas_common import (
    check_key_mask,
    check_qkv,
    float32_unsupported,
    padded_attention_inputs,
    tile_unsupported,
)

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
    dropout: float = 0.0  # attention dropout rate (0: none)

    @property
    def tiles(self) -> int:
        return self.Lp // self.block

    def passes(self, seed, tables: tuple = ()) -> tuple["TilePass", "TilePass", "TilePass"]:
        """The forward, dq and dk/dv calls: the window's partner tiles, clipped into
        the sequence (so a clipped, repeated tile costs no copy)."""
        lo, hi = -(-self.lo // self.block), -(-self.hi // self.block)
        by_queries = lambda t, s, *tables: _clip(self, _partner(t, s, lo))  # noqa: E731
        by_keys = lambda u, s, *tables: _clip(self, _partner(u, s, hi))  # noqa: E731
        name = "local_attention_tpu"
        return (
            TilePass(_forward_kernel, f"{name}_fwd", self.steps, (seed,), by_queries),
            TilePass(_dq_kernel, f"{name}_bwd_dq", self.steps, (seed,), by_queries),
            TilePass(_dkv_kernel, f"{name}_bwd_dkv", self.steps, (seed,), by_keys),
        )

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
    - Attention dropout is served (the kernels draw the GPU kernels' stateless
      random stream); `dropout` is taken so that every attention kernel's
      `unsupported` has one signature.
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
    return tile_unsupported("block_size", block_size, platform)


# ---------------------------------------------------------------------------------------
# Step kernels, shared with the block-sparse kernel (`_block_sparse_pallas_tpu`). The
# grid is (rows, own tiles, steps): a program owns one query tile (forward, dq) or one
# key tile (dk/dv), and at step s the caller's block specs have copied the partner
# tile `partner(own, s)` into VMEM. The caller gives the walk: `partner(own, s)`;
# `active(own, s)`, whether step s does any work; `last`, the final step (static); and
# `visible(t, u, km, rows_are_queries)`, the `(B, B)` pattern of query tile t against
# key tile u, with the key mask `km` a (1, B) row when queries run along the tile's
# rows and a (B, 1) column when keys do. The online softmax (running max m,
# normalizer l, unnormalized output) sits in VMEM scratch from step 0 to the last
# step, when the output tile is written.
#
# Per-position vectors come as (B, 1) columns (along a tile's rows) or (1, B) rows
# (along its lanes), whichever broadcasts against the score tile, so no kernel
# transposes anything. Every kernel's first operand is the dropout seed, prefetched
# into scalar memory; under dropout each step recomputes its tile's keep mask from
# the seed, the row (grid axis 0) and the positions, the stream the GPU kernels draw
# (`_dropout.dropped`), so the TPU and GPU kernels drop the same weights.


def _positions(block: int, t, u, rows_are_queries: bool):
    """Query and key positions of query tile `t` against key tile `u`, shaped to
    broadcast to the score tile: `(B, 1)` and `(1, B)`, or the other way round
    when keys run along the rows."""
    col = lax.broadcasted_iota(jnp.int32, (block, 1), 0)
    row = lax.broadcasted_iota(jnp.int32, (1, block), 1)
    if rows_are_queries:
        return t * block + col, u * block + row
    return t * block + row, u * block + col


def forward_steps(
    seed_ref,
    q_ref,
    k_ref,
    v_ref,
    km_ref,
    o_ref,
    lse_ref,
    m_scr,
    l_scr,
    acc_scr,
    *,
    cfg,
    partner,
    active,
    last,
    visible,
):
    """The online-softmax forward pass of query tile t over its partner key tiles;
    a row that sees no key gives o = 0, lse = −inf."""
    acc_t = m_scr.dtype
    r, t, s = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    seed = seed_ref[0]
    u = partner(t, s)

    @pl.when(s == 0)
    def _init():
        m_scr[...] = jnp.full(m_scr.shape, -jnp.inf, acc_t)
        l_scr[...] = jnp.zeros(l_scr.shape, acc_t)
        acc_scr[...] = jnp.zeros(acc_scr.shape, acc_t)

    @pl.when(active(t, s))
    def _step():
        q, k, v = q_ref[...], k_ref[...], v_ref[...]
        sc = jnp.where(visible(t, u, km_ref[...], True), _nt(q, k, acc_t), -jnp.inf)  # (Bq, Bk)
        m = m_scr[...]
        m_new = jnp.maximum(m, jnp.max(sc, axis=1, keepdims=True))
        m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new).astype(acc_t)  # a row with no key yet
        alpha = jnp.exp(m - m_safe)
        p = jnp.exp(sc - m_safe)
        l_scr[...] = l_scr[...] * alpha + jnp.sum(p, axis=1, keepdims=True)
        # the normalizer sums the undropped weights; the output the dropped ones
        (pz,) = dropped(cfg.dropout, seed, r, *_positions(cfg.block, t, u, True), p)
        acc_scr[...] = acc_scr[...] * alpha + _nn(pz.astype(v.dtype), v, acc_t)
        m_scr[...] = m_new

    @pl.when(s == last)
    def _finish():
        l, m = l_scr[...], m_scr[...]
        empty = l == 0.0
        l_safe = jnp.where(empty, 1.0, l).astype(acc_t)
        m_safe = jnp.where(empty, 0.0, m).astype(acc_t)
        o_ref[...] = (acc_scr[...] / l_safe).astype(o_ref.dtype)
        lse_ref[...] = jnp.where(empty, -jnp.inf, m_safe + jnp.log(l_safe)).astype(lse_ref.dtype)


def dq_steps(
    seed_ref,
    q_ref,
    k_ref,
    v_ref,
    km_ref,
    do_ref,
    lse_ref,
    dd_ref,
    dq_ref,
    dq_scr,
    *,
    cfg,
    partner,
    active,
    last,
    visible,
):
    """dq of query tile t over its partner key tiles: dq_i = Σ_j ds_ij k_j with
    ds = p ⊙ (dp − D), dp = z c ⊙ (do vᵀ) (keep mask z, c = 1/(1 − rate); dp = do vᵀ
    without dropout), D_i = do_i · o_i, p = exp(s − lse) with lse = +inf (set by
    the caller) on rows with no key, whose weights are zero."""
    acc_t = dq_scr.dtype
    r, t, s = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    seed = seed_ref[0]
    u = partner(t, s)

    @pl.when(s == 0)
    def _init():
        dq_scr[...] = jnp.zeros(dq_scr.shape, acc_t)

    @pl.when(active(t, s))
    def _step():
        q, k, v, do = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
        valid = visible(t, u, km_ref[...], True)  # (Bq, Bk)
        p = jnp.exp(jnp.where(valid, _nt(q, k, acc_t), -jnp.inf) - lse_ref[...])  # lse: (Bq, 1)
        (dp,) = dropped(cfg.dropout, seed, r, *_positions(cfg.block, t, u, True), _nt(do, v, acc_t))
        ds = p * (dp - dd_ref[...])
        dq_scr[...] += _nn(ds.astype(k.dtype), k, acc_t)

    @pl.when(s == last)
    def _finish():
        dq_ref[...] = dq_scr[...].astype(dq_ref.dtype)


def dkv_steps(
    seed_ref,
    k_ref,
    v_ref,
    km_ref,
    q_ref,
    do_ref,
    lse_ref,
    dd_ref,
    dk_ref,
    dv_ref,
    dk_scr,
    dv_scr,
    *,
    cfg,
    partner,
    active,
    last,
    visible,
):
    """dk and dv of key tile u over the query tiles that see it. Scores transposed,
    sᵀ = k qᵀ (keys along rows), with lse and D as (1, Bq) rows:
    dv_j = Σ_i z_ij c p_ij do_i, dk_j = Σ_i ds_ij q_i."""
    acc_t = dk_scr.dtype
    r, u, s = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    seed = seed_ref[0]
    t = partner(u, s)

    @pl.when(s == 0)
    def _init():
        dk_scr[...] = jnp.zeros(dk_scr.shape, acc_t)
        dv_scr[...] = jnp.zeros(dv_scr.shape, acc_t)

    @pl.when(active(u, s))
    def _step():
        k, v, q, do = k_ref[...], v_ref[...], q_ref[...], do_ref[...]
        valid = visible(t, u, km_ref[...], False)  # (Bk, Bq); mask (Bk, 1)
        pt = jnp.exp(jnp.where(valid, _nt(k, q, acc_t), -jnp.inf) - lse_ref[...])
        pz, dp = dropped(cfg.dropout, seed, r, *_positions(cfg.block, t, u, False), pt, _nt(v, do, acc_t))
        dst = pt * (dp - dd_ref[...])
        dv_scr[...] += _nn(pz.astype(do.dtype), do, acc_t)
        dk_scr[...] += _nn(dst.astype(q.dtype), q, acc_t)

    @pl.when(s == last)
    def _finish():
        dk_ref[...] = dk_scr[...].astype(dk_ref.dtype)
        dv_ref[...] = dv_scr[...].astype(dv_ref.dtype)


# ---------------------------------------------------------------------------------------
# The sliding window's walk. The sequence is cut into tiles of B positions. Query tile
# t needs the keys t·B − lo ... t·B + B − 1 + hi: key tiles t − ceil(lo/B) ...
# t + ceil(hi/B); key tile u, the query tiles u − ceil(hi/B) ... u + ceil(lo/B). At
# step s the partner is tile own − before + s, clipped into the sequence by the
# BlockSpec (so a clipped, repeated tile costs no copy) and skipped by the kernel when
# it is out of range.


def _partner(t, s, before: int):
    """The tile visited at step `s` by tile `t` (unclipped: may lie outside the sequence)."""
    return t - before + s


def _clip(cfg: _Config, u):
    return jnp.clip(u, 0, cfg.tiles - 1)


def _window(cfg: _Config, t, u, km, rows_are_queries: bool):
    """`(B, B)`: is query–key distance `i − j` within the window and the key real
    and unmasked? Query tile `t`, key tile `u`; queries along rows or along lanes."""
    B = cfg.block
    r = lax.broadcasted_iota(jnp.int32, (B, B), 0)
    c = lax.broadcasted_iota(jnp.int32, (B, B), 1)
    d = (t - u) * B + (r - c if rows_are_queries else c - r)
    return (d <= cfg.lo) & (d >= -cfg.hi) & (km > 0)


def _window_walk(cfg: _Config, before: int) -> dict:
    """The walk of the tiles `before` tiles below the program's own tile and on."""
    inside = lambda own, s: (_partner(own, s, before) >= 0) & (_partner(own, s, before) < cfg.tiles)  # noqa: E731
    return dict(
        cfg=cfg,
        partner=lambda own, s: _partner(own, s, before),
        active=inside,
        last=cfg.steps - 1,
        visible=functools.partial(_window, cfg),
    )


def _forward_kernel(*refs, cfg: _Config):
    forward_steps(*refs, **_window_walk(cfg, -(-cfg.lo // cfg.block)))


def _dq_kernel(*refs, cfg: _Config):
    dq_steps(*refs, **_window_walk(cfg, -(-cfg.lo // cfg.block)))


def _dkv_kernel(*refs, cfg: _Config):
    dkv_steps(*refs, **_window_walk(cfg, -(-cfg.hi // cfg.block)))


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays: rows (R, Lp, d); per-position vectors as
# columns (R, Lp, 1) or rows (R, 1, Lp). Grid (R, tiles, steps): the tile axis is the
# program's own tile (`t` for the forward and dq, `u` for dk/dv), the step axis walks
# its partners. Each kernel module describes its three calls as `TilePass`es (its
# config's `passes`); the custom_vjp below runs them for both.


class TilePass(NamedTuple):
    """One pallas_call of a TPU attention kernel: its step kernel and name, its
    number of steps, the tables prefetched into scalar memory (the dropout seed
    first), and `index(own, s, *tables)`, the partner tile whose blocks step `s`
    copies into VMEM (the block specs' index map)."""

    kernel: Callable
    name: str
    steps: int
    tables: tuple
    index: Callable


def _tile(cfg, d, index):
    """Block spec of a `(B, d)` tile of rows; the tile is `index(own, s, *tables)`."""
    return pl.BlockSpec((None, cfg.block, d), lambda r, t, s, *tables: (r, index(t, s, *tables), 0))


def _row(cfg, index):
    """Block spec of a `(1, B)` row of per-position values; the tile as in `_tile`."""
    return pl.BlockSpec((None, 1, cfg.block), lambda r, t, s, *tables: (r, 0, index(t, s, *tables)))


def _own(cfg, d):
    return _tile(cfg, d, lambda t, s, *tables: t)


def _call(cfg, p: TilePass, in_specs, out_specs, out_shape, scratch, *args):
    """`pallas_call` of pass `p` over the grid (rows, `cfg.tiles`, `p.steps`), its
    tables prefetched; grid dimensions ("parallel", "parallel", "arbitrary") on TPU."""
    R = args[0].shape[0]
    params = None
    if cfg.interpret is False:
        params = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary"))
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=len(p.tables),
        grid=(R, cfg.tiles, p.steps),
        in_specs=in_specs,
        out_specs=out_specs,
        scratch_shapes=[pltpu.VMEM(shape, dtype) for shape, dtype in scratch],
    )
    return pl.pallas_call(
        functools.partial(p.kernel, cfg=cfg),
        out_shape=out_shape,
        grid_spec=grid_spec,
        interpret=cfg.interpret,
        compiler_params=params,
        name=p.name,
    )(*p.tables, *args)


def _forward_call(cfg, p: TilePass, q, k, v, km_row):
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = _acc_dtype(q.dtype)
    B = cfg.block
    return _call(
        cfg,
        p,
        [_own(cfg, dk), _tile(cfg, dk, p.index), _tile(cfg, dv, p.index), _row(cfg, p.index)],
        (_own(cfg, dv), _own(cfg, 1)),
        (jax.ShapeDtypeStruct((R, Lp, dv), v.dtype), jax.ShapeDtypeStruct((R, Lp, 1), acc_t)),
        [((B, 1), acc_t), ((B, 1), acc_t), ((B, dv), acc_t)],
        q, k, v, km_row,
    )  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def attention_padded(cfg, seed, q, k, v, km_row, tables):
    """The attention output `(R, Lp, dv)` of a TPU kernel on padded rows (see
    `padded_attention_inputs`; `km_row` the key mask as `(R, 1, Lp)` rows), with
    `cfg.passes(seed, tables)` its forward, dq and dk/dv calls; differentiable in
    `q`, `k`, `v`."""
    return _forward_call(cfg, cfg.passes(seed, tables)[0], q, k, v, km_row)[0]


def _attention_fwd(cfg, seed, q, k, v, km_row, tables):
    o, lse = _forward_call(cfg, cfg.passes(seed, tables)[0], q, k, v, km_row)
    return o, (seed, q, k, v, km_row, tables, o, lse)


def _attention_bwd(cfg, res, do):
    # D_i = do_i · o_i is one O(L d) XLA reduction (it holds under dropout too); rows
    # that saw no key get lse = +inf, so all their weights are zero.
    seed, q, k, v, km_row, tables, o, lse = res
    _, dq_pass, dkv_pass = cfg.passes(seed, tables)
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    B = cfg.block
    acc_t = lse.dtype
    dd = jnp.sum(do.astype(acc_t) * o.astype(acc_t), axis=-1, keepdims=True)
    lse = jnp.where(lse == -jnp.inf, jnp.inf, lse)
    do = do.astype(q.dtype)
    index = dq_pass.index
    dq = _call(
        cfg,
        dq_pass,
        [_own(cfg, dk), _tile(cfg, dk, index), _tile(cfg, dv, index), _row(cfg, index)]
        + [_own(cfg, dv), _own(cfg, 1), _own(cfg, 1)],
        _own(cfg, dk),
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        [((B, dk), acc_t)],
        q, k, v, km_row, do, lse, dd,
    )  # fmt: skip
    km_col = jnp.swapaxes(km_row, 1, 2)
    lse_row, dd_row = jnp.swapaxes(lse, 1, 2), jnp.swapaxes(dd, 1, 2)
    index = dkv_pass.index
    dk_, dv_ = _call(
        cfg,
        dkv_pass,
        [_own(cfg, dk), _own(cfg, dv), _own(cfg, 1)]
        + [_tile(cfg, dk, index), _tile(cfg, dv, index), _row(cfg, index), _row(cfg, index)],
        (_own(cfg, dk), _own(cfg, dv)),
        (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
        [((B, dk), acc_t), ((B, dv), acc_t)],
        k, v, km_col, q, do, lse_row, dd_row,
    )  # fmt: skip
    return None, dq, dk_, dv_, None, None


attention_padded.defvjp(_attention_fwd, _attention_bwd)


@functools.partial(
    jax.jit, static_argnames=("window", "causal", "scale", "block_size", "dropout_rate", "interpret")
)
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
    dropout_rate: float = 0.0,
    dropout_seed: Integer[ArrayLike, "..."] | PRNGKeyArray | None = None,
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

    Attention dropout as `seqkit.kernels.local_attention_pallas`, from the same
    stateless stream (a hash of `(seed, row, i, j)`, `row` the flattened batch
    index), recomputed tile by tile by the backward kernels: for one seed the TPU
    and GPU kernels drop the same weights.

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
    - `dropout_rate`: `0 <= rate < 1`, the attention-dropout rate (static).
    - `dropout_seed`: a `uint32` scalar (may be traced), or a PRNG key (typed or
      its raw bits) from which one is drawn with `jax.random.bits`; without it
      there is no dropout. Under `jax.vmap` (one call per head) give each head
      its own seed.
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
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"expected 0 <= dropout_rate < 1, got {dropout_rate!r}")
    *batch, L, dk = q.shape
    dv = v.shape[-1]
    key_mask = check_key_mask(key_mask, (*batch, L))
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    B = block_size or _DEFAULT_BLOCK
    Lp = -(-L // B) * B
    rate = float(dropout_rate) if dropout_seed is not None else 0.0
    cfg = _Config(L, Lp, B, window, 0 if causal else window, interpret, rate)
    dkp, dvp = (-(-d // _LANES) * _LANES for d in (dk, dv))

    qp, kp, vp, km = padded_attention_inputs(q, k, v, key_mask, scale, Lp, dkp, dvp)
    seed = dropout_seed_array(dropout_seed if rate else None)
    o = attention_padded(cfg, seed, qp, kp, vp, km[:, None, :], ())
    return o[:, :L, :dv].reshape(*batch, L, dv)
