"""Block-sparse softmax attention as a Pallas kernel for TPU (Mosaic), forward and
backward: each query tile visits a short list of key tiles, which may be a traced
array (BigBird's random blocks).

The TPU counterpart of `seqkit.kernels._block_sparse_pallas` (written for Triton,
where each program reads the key tiles of its list straight from memory at
data-dependent offsets). Here the cleaned tile lists are prefetched into scalar
memory, and the grid's last axis steps through a query tile's list: the key/value
block specs read the list, so every grid step copies exactly one listed key tile
from HBM into VMEM (pipelined by Pallas), and the online softmax state lives in
VMEM scratch between steps, as in `seqkit.kernels._local_attention_pallas_tpu`.
Tested in interpret mode against a dense-mask float64 reference, and lowered for
TPU by `jax.export`.
"""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental.pallas import tpu as pltpu
from jaxtyping import Array, Bool, Float, Int, Integer, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._block_sparse_pallas import _Config as _ListConfig, _tile_lists  # the list cleaning is shared
from ._dropout import dropout_seed_array
from ._local_attention_pallas_tpu import (  # the step kernels and their calls are shared
    _LANES,
    TilePass,
    _positions,
    attention_padded,
    dkv_steps,
    dq_steps,
    forward_steps,
    unsupported as _sliding_unsupported,
)
from ._pallas_common import (
    check_band,
    check_block_idx,
    check_key_mask,
    check_qkv,
    padded_attention_inputs,
    tile_unsupported,
)


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    L: int  # true length (positions >= L are padding)
    Lp: int  # padded length, a multiple of block
    block: int  # positions per query tile and per key tile
    slots: int  # g, entries per query tile's list
    causal: bool  # keys j <= i only
    band: tuple[int, int] | None  # (lo, hi): keys i − lo <= j <= i + hi, or j < num_global
    num_global: int
    interpret: Any  # False, True (Pallas's interpreter) or a `pltpu.InterpretParams`
    dropout: float = 0.0  # attention dropout rate (0: none)

    @property
    def tiles(self) -> int:
        return self.Lp // self.block

    def passes(self, seed, tables: tuple) -> tuple[TilePass, TilePass, TilePass]:
        """The forward and dq calls along the lists (`g` slots), the dk/dv call along
        the transposed lists (`nb` slots); `tables = (lists, pairs, bounds)`, flat."""
        lists, pairs, bounds = tables
        listed = lambda t, s, seed, lists: _listed(self, lists, t, s)  # noqa: E731
        listing = lambda u, s, seed, pairs, bounds: _transposed(pairs, bounds, u, s)  # noqa: E731
        name = "block_sparse_attention_tpu"
        return (
            TilePass(_forward_kernel, f"{name}_fwd", self.slots, (seed, lists), listed),
            TilePass(_dq_kernel, f"{name}_bwd_dq", self.slots, (seed, lists), listed),
            TilePass(_dkv_kernel, f"{name}_bwd_dkv", self.tiles, (seed, pairs, bounds), listing),
        )


def unsupported(dtype, dropout: bool, block_size: int | None, platform: str) -> str | None:
    """Why the TPU Pallas block-sparse kernel cannot serve a call on `platform`
    (`"cpu"` meaning interpret mode), or `None`. The dispatcher's `unsupported` for
    `bigbird_attention` on TPU, and for `longformer_attention` there when splash
    attention cannot serve the call (with dropout).

    - TPU (Mosaic) and interpret mode only; GPU calls take the Triton kernel
      `seqkit.kernels.block_sparse_attention_pallas`.
    - float32 or bfloat16 on TPU (computed in float32); any float dtype in
      interpret mode.
    - Attention dropout is served (the GPU kernels' stateless random stream).
    - `block_size`, positions per tile (BigBird's block size), a multiple of 128 on
      TPU (the lane width); any positive integer in interpret mode.
    """
    return _sliding_unsupported(dtype, dropout, block_size, platform)  # the same rules


# ---------------------------------------------------------------------------------------
# Tile lists. `_tile_lists` gives, per query tile t, `lists[t] = (count, tiles...)`
# (distinct key tiles, ascending, zeros after the count), and the transposed lists:
# `pairs`, the query tiles of every (query tile, key tile) pair grouped by key tile,
# and `bounds[u] = (start, stop)`, key tile u's segment of `pairs`. Both go to scalar
# memory, flattened, after the dropout seed. The forward and dq grids are (rows, query
# tiles, g slots): slot s of tile t is key tile `lists[t, 1 + s]`. The dk/dv grid is
# (rows, key tiles, nb slots): slot s of key tile u is query tile `pairs[start + s]` (a
# key tile is listed by at most nb query tiles, all of them for a global block). Slots
# past the count do no work, and their block specs repeat the last listed tile, so
# Pallas skips the copy. The step kernels are the sliding-window kernel's
# (`_local_attention_pallas_tpu`); this module gives their walk.


def _listed(cfg: _Config, lists, t, s):
    """Key tile at slot `s` of query tile `t`, the last listed one past the count."""
    w = cfg.slots + 1
    last = jnp.maximum(lists[t * w] - 1, 0)
    return lists[t * w + 1 + jnp.minimum(s, last)]


def _transposed(pairs, bounds, u, s):
    """Query tile at slot `s` of key tile `u`, the last one past its count."""
    start, stop = bounds[2 * u], bounds[2 * u + 1]
    e = jnp.minimum(start + s, jnp.maximum(stop - 1, start))
    return pairs[jnp.minimum(e, pairs.shape[0] - 1)]


def _valid(cfg: _Config, qt, kt, km, rows_are_queries: bool):
    """`(B, B)`: may the query see the key (unmasked key, causality, band or global
    key)? `km` is the key mask as a row (keys along lanes) or a column (keys along
    rows)."""
    qpos, kpos = _positions(cfg.block, qt, kt, rows_are_queries)
    ok = km > 0
    if cfg.causal:
        ok = ok & (kpos <= qpos)
    if cfg.band is not None:
        lo, hi = cfg.band
        d = kpos - qpos
        ok = ok & (((d >= -lo) & (d <= hi)) | (kpos < cfg.num_global))
    return jnp.broadcast_to(ok, (cfg.block, cfg.block))


def _list_walk(cfg: _Config, lists) -> dict:
    """The walk of a query tile's list (forward, dq)."""
    return dict(
        cfg=cfg,
        partner=lambda t, s: _listed(cfg, lists, t, s),
        active=lambda t, s: s < lists[t * (cfg.slots + 1)],
        last=cfg.slots - 1,
        visible=functools.partial(_valid, cfg),
    )


def _forward_kernel(seed_ref, lists, *refs, cfg):
    forward_steps(seed_ref, *refs, **_list_walk(cfg, lists))


def _dq_kernel(seed_ref, lists, *refs, cfg):
    dq_steps(seed_ref, *refs, **_list_walk(cfg, lists))


def _dkv_kernel(seed_ref, pairs, bounds, *refs, cfg):
    dkv_steps(
        seed_ref,
        *refs,
        cfg=cfg,
        partner=lambda u, s: _transposed(pairs, bounds, u, s),
        active=lambda u, s: s < bounds[2 * u + 1] - bounds[2 * u],
        last=cfg.tiles - 1,
        visible=functools.partial(_valid, cfg),
    )


@functools.partial(
    jax.jit,
    static_argnames=("block_size", "causal", "band", "num_global_keys", "scale", "dropout_rate", "interpret"),
)
def block_sparse_attention_pallas_tpu(
    q: Float[ArrayLike, "*batch L dk"],
    k: Float[ArrayLike, "*batch L dk"],
    v: Float[ArrayLike, "*batch L dv"],
    block_idx: Int[ArrayLike, "nb g"],
    key_mask: Bool[ArrayLike, "*batch L"] | None = None,
    *,
    block_size: int,
    causal: bool = False,
    band: tuple[int, int] | None = None,
    num_global_keys: int = 0,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    dropout_seed: Integer[ArrayLike, "..."] | PRNGKeyArray | None = None,
    interpret: bool | pltpu.InterpretParams = False,
) -> Float[Array, "*batch L dv"]:
    """Block-sparse softmax attention as a Pallas kernel for TPU (flash-style, memory linear in `L`).

    The sequence is cut into `nb = ceil(L / b)` tiles of `b = block_size`
    positions. Query tile `n` sees the key tiles `block_idx[n]` (entries outside
    `[0, nb)` are ignored, a tile listed twice counts once), and inside them
    `o_i = Σ_j softmax_j(scale · q_i · k_j) v_j` over the keys `j` with
    `key_mask[j]`, `j <= i` when `causal`, and, when `band = (lo, hi)` is given,
    `−lo <= j − i <= hi` or `j < num_global_keys`: the semantics of
    `seqkit.kernels.block_sparse_attention_pallas`. This covers BigBird's window,
    global and random blocks (Zaheer et al., "Big Bird: Transformers for Longer
    Sequences", 2020) and Longformer's sliding window with global keys (Beltagy et
    al., "Longformer: The Long-Document Transformer", 2020).

    `block_idx` may be traced (BigBird's random blocks): the wrapper cleans it in
    XLA into a per-tile list with a count (sorted, repeats and out-of-range entries
    dropped, and tiles holding no allowed pair under `causal`/`band`) and into the
    transposed lists, and prefetches them into scalar memory. The grid is (rows,
    query tiles, `g` slots); at slot `s` the key/value block specs read the list, so
    Pallas copies exactly the `s`-th listed key tile into VMEM, and slots past the
    count repeat the last listed tile (no copy) and do no work. An online softmax
    (running maximum, normalizer, unnormalized output; Dao et al., "FlashAttention",
    2022) is kept in VMEM scratch across the slots, so no `L × L` array exists and
    the work is proportional to the number of (query tile, key tile) pairs. A row
    with no allowed key gives a zero output and zero gradients.

    Attention dropout as `seqkit.kernels.block_sparse_attention_pallas`, from the
    same stateless stream (a hash of `(seed, row, i, j)`, `row` the flattened
    batch index), recomputed tile by tile by the backward kernels: for one seed
    the TPU and GPU kernels drop the same weights.

    Differentiable through a `custom_vjp` whose backward is two more Pallas kernels
    (FlashAttention-2's split): one over query tiles × `g` slots accumulates `dq`
    along the same lists, one over key tiles × `nb` slots accumulates `dk` and `dv`
    along the transposed lists (a key tile may be listed by every query tile, as a
    global block is; the slots past a key tile's count are skipped), both
    recomputing the weights from the saved log normalizers; `D_i = do_i · o_i` is
    one `O(L d)` XLA reduction.

    Lowers with Mosaic on TPU (checked without the hardware by `jax.export` for
    `platforms=["tpu"]`, which runs JAX's lowering to Mosaic IR, not the TPU
    compiler); grid dimensions ("parallel", "parallel", "arbitrary"). float32 and
    bfloat16 there, computed in float32 (float32 products at full precision); any
    float dtype in interpret mode. Head dimensions are padded with zeros to a
    multiple of 128 lanes and `L` to a tile multiple (masked). For GPU see
    `block_sparse_attention_pallas`.

    **Arguments:**

    - `q`, `k`, `v`: `(*batch, L, dk)`, `(*batch, L, dk)`, `(*batch, L, dv)`, one dtype.
    - `block_idx`: `(nb, g)` integer key tiles per query tile, shared by the batch
      (may be traced).
    - `key_mask`: optional `(*batch, L)` boolean, `True` = real key.
    - `block_size`: `b`, positions per tile, a multiple of 128 unless `interpret`.
    - `causal`: see only keys `j <= i`.
    - `band`: optional `(lo, hi)`, `lo, hi >= 0`: inside the listed tiles, see only
      keys `i − lo <= j <= i + hi`, or the global keys below.
    - `num_global_keys`: with `band`, the keys `j < num_global_keys` are seen
      whatever the distance (ignored without `band`).
    - `scale`: defaults to `1/sqrt(dk)`.
    - `dropout_rate`: `0 <= rate < 1`, the attention-dropout rate (static).
    - `dropout_seed`: a `uint32` scalar (may be traced), or a PRNG key (typed or
      its raw bits) from which one is drawn with `jax.random.bits`; without it
      there is no dropout.
    - `interpret`: run in Pallas's interpret mode (on CPU): `True`, or a
      `pltpu.InterpretParams` for the TPU interpreter (simulated VMEM scratch that
      starts as NaN, out-of-bounds reads raise).

    **Returns:** `(*batch, L, dv)` in the inputs' dtype.
    """
    q, k, v = check_qkv(q, k, v)
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"expected a positive integer block_size, got {block_size!r}")
    if interpret is False and (reason := tile_unsupported("block_size", block_size, "tpu")):
        raise ValueError(reason)
    check_band(band, num_global_keys)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"expected 0 <= dropout_rate < 1, got {dropout_rate!r}")
    *batch, L, dk = q.shape
    dv = v.shape[-1]
    B = block_size
    nb = -(-L // B)
    block_idx = check_block_idx(block_idx, nb)
    key_mask = check_key_mask(key_mask, (*batch, L))
    if block_idx.shape[1] == 0:  # no tile at all: one empty slot keeps the tables non-empty
        block_idx = jnp.full((nb, 1), -1, jnp.int32)
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    Lp = nb * B
    rate = float(dropout_rate) if dropout_seed is not None else 0.0
    G = num_global_keys if band is not None else 0
    cfg = _Config(L, Lp, B, block_idx.shape[1], bool(causal), band, G, interpret, rate)
    dkp, dvp = (-(-d // _LANES) * _LANES for d in (dk, dv))

    # the GPU kernel's list cleaning
    lists, pairs, bounds = _tile_lists(_ListConfig(L, Lp, B, bool(causal), band, G, False, "tpu"), block_idx)
    qp, kp, vp, km = padded_attention_inputs(q, k, v, key_mask, scale, Lp, dkp, dvp)
    seed = dropout_seed_array(dropout_seed if rate else None)
    tables = (lists.reshape(-1), pairs, bounds.reshape(-1))
    o = attention_padded(cfg, seed, qp, kp, vp, km[:, None, :], tables)
    return o[:, :L, :dv].reshape(*batch, L, dv)
