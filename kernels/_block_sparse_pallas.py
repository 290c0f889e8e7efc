"""Block-sparse softmax attention as a Pallas kernel, forward and backward: each query
tile visits a short list of key tiles (the BigBird and Longformer patterns).

Reached through `seqkit.attention.bigbird_attention(..., impl="pallas")` and
`seqkit.attention.longformer_attention(..., impl="pallas")` (or `impl="auto"` on
GPU); the XLA path it is tested against is `seqkit.attention.gathered_block_attention`
(with those functions' band and global parts), and both against a dense-mask float64
reference.
"""

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float, Int, Integer, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._dropout import dropout_seed_array

# The (r, t) grid's block specs and `_call` serve both kernels: their configs share
# `block`, `Lp`, `interpret` and `platform`.
from ._local_attention_pallas import (
    _acc_dtype,
    _call,
    _row,
    _row1,
    _seed,
    _tile,
    _tile1,
    dkv_over_tiles,
    dq_over_tiles,
    forward_over_tiles,
)
from ._pallas_common import (
    MIN_GPU_TILE,
    check_band,
    check_block_idx,
    check_key_mask,
    check_qkv,
    next_pow2,
    padded_attention_inputs,
    tile_unsupported,
)

_GPU_DTYPES = ("bfloat16", "float16", "float32")


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    L: int  # true length (positions >= L are padding)
    Lp: int  # padded length, a multiple of block
    block: int  # positions per query tile and per key tile
    causal: bool  # keys j <= i only
    band: tuple[int, int] | None  # (lo, hi): keys i − lo <= j <= i + hi, or j < num_global
    num_global: int
    interpret: bool
    platform: str  # "cpu" (interpret) or "gpu": picks the compiler parameters
    dropout: float = 0.0  # attention dropout rate (0: none)


def unsupported(dtype, dropout: bool, block_size: int | None, platform: str) -> str | None:
    """Why the Pallas kernel cannot serve a call on `platform` (`"cpu"` meaning
    interpret mode), or `None`. The dispatcher's `unsupported` for
    `bigbird_attention` and `longformer_attention`.

    - GPU only: the kernel is written for Triton, each program reading the key
      tiles of its list straight from memory at data-dependent offsets; on TPU
      (Mosaic) a program's whole key row would have to sit in VMEM, so TPU calls
      use the XLA path.
    - float32, float16 or bfloat16 on GPU (any float dtype in interpret mode).
    - Attention dropout is served (the kernels draw their own stateless random
      stream); `dropout` is taken so that every attention kernel's `unsupported`
      has the same arguments.
    - `block_size`, positions per tile (BigBird's block size), a power of two
      `>= 16` on GPU (Triton tensors have power-of-two sizes, matrix-product
      operands at least 16 wide); any positive integer in interpret mode.
    """
    name = jnp.dtype(dtype).name
    if platform not in ("cpu", "gpu"):
        return f"the kernel is written for GPU (Triton) and interpret mode, not {platform}"
    if platform == "gpu" and name not in _GPU_DTYPES:
        return f"dtype {name} is not supported on gpu (supported: {', '.join(_GPU_DTYPES)})"
    return tile_unsupported("block_size", block_size, platform)  # platform: cpu or gpu here


# ---------------------------------------------------------------------------------------
# Tile lists, built in XLA. Query tile n visits the key tiles of its row of `block_idx`
# once each: the row is sorted, repeats and entries outside [0, nb) (and tiles that
# hold no allowed pair) become a sentinel nb, a second sort moves the sentinels to the
# end, and the count of real entries bounds the kernel's loop. The backward pass over
# key tiles needs the transposed lists (for key tile m, the query tiles listing m): the
# (query tile, key tile) pairs sorted stably by key tile, each key tile reading its
# segment [start, stop). Everything is O(nb · g), never O(nb²).


def _reachable(cfg: _Config, n, m):
    """May some query of tile `n` see some key of tile `m` (causality and band only)?"""
    B = cfg.block
    ok = jnp.ones(jnp.broadcast_shapes(n.shape, m.shape), bool)
    if cfg.causal:
        ok = ok & (m <= n)
    if cfg.band is not None:
        lo, hi = cfg.band
        near = (m * B - (n * B + B - 1) <= hi) & (m * B + B - 1 - n * B >= -lo)
        ok = ok & (near | (m * B < cfg.num_global))
    return ok


def _tile_lists(cfg: _Config, block_idx):
    """`lists` `(nb, 1 + g)`: per query tile, its count of distinct key tiles, then
    those tiles (ascending, the rest zeros); `pairs` `(nb · g,)`: the query tiles of
    every (query tile, key tile) pair, grouped by key tile; `bounds` `(nb, 2)`: key
    tile m's segment `[start, stop)` of `pairs`."""
    nb = cfg.Lp // cfg.block
    n = jnp.arange(nb, dtype=jnp.int32)[:, None]
    idx = block_idx.astype(jnp.int32)
    ok = (idx >= 0) & (idx < nb) & _reachable(cfg, n, idx)
    s = jnp.sort(jnp.where(ok, idx, nb), axis=1)
    repeat = jnp.concatenate([jnp.zeros((nb, 1), bool), s[:, 1:] == s[:, :-1]], axis=1)
    s = jnp.sort(jnp.where(repeat, nb, s), axis=1)
    real = s < nb
    count = jnp.sum(real, axis=1, dtype=jnp.int32)
    lists = jnp.concatenate([count[:, None], jnp.where(real, s, 0)], axis=1)

    key_tile = s.reshape(-1)  # sentinel nb sorts last
    query_tile = jnp.broadcast_to(n, s.shape).reshape(-1)
    order = jnp.argsort(key_tile, stable=True)
    pairs = jnp.where(key_tile[order] < nb, query_tile[order], 0)
    per_key = jnp.zeros((nb + 1,), jnp.int32).at[key_tile].add(1)[:nb]
    stop = jnp.cumsum(per_key, dtype=jnp.int32)
    bounds = jnp.stack([stop - per_key, stop], axis=1)
    return lists, pairs, bounds


# ---------------------------------------------------------------------------------------
# Kernels. The sequence is cut into tiles of `block` positions. The program for query
# tile t reads its list and visits those key tiles in turn with an online softmax
# (running max m, normalizer l, unnormalized output), so a program holds O(block · d)
# numbers and the whole pass is O(L · g · block · d) for g tiles per list. Under
# dropout every kernel recomputes the keep mask of each tile pair from the seed, the
# row (grid axis 0), and the query and key positions (`_dropout`).


def _valid(cfg: _Config, qpos, kpos, kmask):
    """`(Bq, Bk)`: may query `qpos` see key `kpos` (real and unmasked key, causality,
    band or global key)?"""
    ok = jnp.broadcast_to(kmask[None, :] > 0, (qpos.shape[0], kpos.shape[0]))
    if cfg.causal:
        ok = ok & (kpos[None, :] <= qpos[:, None])
    if cfg.band is not None:
        lo, hi = cfg.band
        d = kpos[None, :] - qpos[:, None]
        ok = ok & (((d >= -lo) & (d <= hi)) | (kpos[None, :] < cfg.num_global))
    return ok


def _loops(cfg: _Config, first, last, tile) -> dict:
    """The walk of the shared loops (`first`, `last`: read from the program's tables,
    whatever its first position)."""
    return dict(
        cfg=cfg,
        valid=functools.partial(_valid, cfg),
        first=lambda _: first(),
        last=lambda _: last(),
        tile=tile,
    )


def _list_loops(cfg: _Config, lists_ref) -> dict:
    # query tile t: its row of the lists table, a count then its key tiles
    return _loops(cfg, lambda: 0, lambda: lists_ref[0], lambda e: lists_ref[1 + e])


def _forward_kernel(q_ref, k_ref, v_ref, km_ref, seed_ref, lists_ref, o_ref, lse_ref, *, cfg: _Config):
    # An empty list, or every key of its tiles masked, gives o = 0, lse = −inf.
    forward_over_tiles(q_ref, k_ref, v_ref, km_ref, seed_ref, o_ref, lse_ref, **_list_loops(cfg, lists_ref))


def _dq_kernel(
    q_ref, k_ref, v_ref, km_ref, seed_ref, do_ref, lse_ref, dd_ref, lists_ref, dq_ref, *, cfg: _Config
):
    dq_over_tiles(
        q_ref, k_ref, v_ref, km_ref, seed_ref, do_ref, lse_ref, dd_ref, dq_ref, **_list_loops(cfg, lists_ref)
    )


def _dkv_kernel(
    q_ref,
    k_ref,
    v_ref,
    km_ref,
    seed_ref,
    do_ref,
    lse_ref,
    dd_ref,
    pairs_ref,
    bounds_ref,
    dk_ref,
    dv_ref,
    *,
    cfg: _Config,
):
    # Key tile u: the query tiles whose list holds u, pairs[start:stop] (bounds_ref
    # is this tile's row of the bounds table; pairs_ref the whole pairs table).
    loops = _loops(cfg, lambda: bounds_ref[0], lambda: bounds_ref[1], lambda e: pairs_ref[e])
    dkv_over_tiles(q_ref, k_ref, v_ref, km_ref, seed_ref, do_ref, lse_ref, dd_ref, dk_ref, dv_ref, **loops)


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays: rows (R, Lp, d), key mask (R, Lp) int32; the
# tile lists are shared by the R rows. The row and tile specs are the sliding-window
# kernel's.


def _per_tile(a):  # row t of a (nb, w) table
    return pl.BlockSpec((None, a.shape[1]), lambda r, t: (t, 0))


def _whole(a):  # a 1-d table, read in full by every program
    return pl.BlockSpec(a.shape, lambda r, t: (0,))


def _forward_call(cfg, q, k, v, km, seed, lists):
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = _acc_dtype(q.dtype)
    return _call(
        _forward_kernel,
        cfg,
        "block_sparse_attention_fwd",
        [_tile(cfg, dk), _row(cfg, dk), _row(cfg, dv), _row1(cfg), _seed(), _per_tile(lists)],
        (_tile(cfg, dv), _tile1(cfg)),
        (jax.ShapeDtypeStruct((R, Lp, dv), v.dtype), jax.ShapeDtypeStruct((R, Lp), acc_t)),
        q, k, v, km, seed, lists,
    )  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention_padded(cfg: _Config, q, k, v, km, seed, lists, pairs, bounds):
    return _forward_call(cfg, q, k, v, km, seed, lists)


def _attention_fwd(cfg, q, k, v, km, seed, lists, pairs, bounds):
    o, lse = _forward_call(cfg, q, k, v, km, seed, lists)
    return (o, lse), (q, k, v, km, seed, lists, pairs, bounds, o, lse)


def _attention_bwd(cfg, res, cotangents):
    q, k, v, km, seed, lists, pairs, bounds, o, lse = res
    do, dlse = cotangents
    R, Lp, dk = q.shape
    dv = v.shape[-1]
    acc_t = lse.dtype
    empty = lse == -jnp.inf
    # D_i = Σ_j p_ij dp_ij − dlse_i = do_i · o_i − dlse_i (with dropout too;
    # ∂lse_i/∂s_ij = p_ij, lse of the undropped weights), O(L d) in XLA
    dd = jnp.sum(do.astype(acc_t) * o.astype(acc_t), axis=-1) - jnp.where(empty, 0.0, dlse).astype(acc_t)
    lse = jnp.where(empty, jnp.inf, lse)  # rows with no key: all weights zero
    do = do.astype(q.dtype)
    args = (q, k, v, km, seed, do, lse, dd)
    dq = _call(
        _dq_kernel,
        cfg,
        "block_sparse_attention_bwd_dq",
        [_tile(cfg, dk), _row(cfg, dk), _row(cfg, dv), _row1(cfg), _seed()]
        + [_tile(cfg, dv), _tile1(cfg), _tile1(cfg), _per_tile(lists)],
        _tile(cfg, dk),
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        *args,
        lists,
    )
    dk_, dv_ = _call(
        _dkv_kernel,
        cfg,
        "block_sparse_attention_bwd_dkv",
        [_row(cfg, dk), _tile(cfg, dk), _tile(cfg, dv), _tile1(cfg), _seed()]
        + [_row(cfg, dv), _row1(cfg), _row1(cfg), _whole(pairs), _per_tile(bounds)],
        (_tile(cfg, dk), _tile(cfg, dv)),
        (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
        *args,
        pairs,
        bounds,
    )
    return dq, dk_, dv_, None, None, None, None, None


_attention_padded.defvjp(_attention_fwd, _attention_bwd)


@functools.partial(
    jax.jit,
    static_argnames=(
        "block_size",
        "causal",
        "band",
        "num_global_keys",
        "scale",
        "dropout_rate",
        "interpret",
        "platform",
        "return_lse",
    ),
)
def block_sparse_attention_pallas(
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
    interpret: bool = False,
    platform: Literal["gpu", "cpu"] = "gpu",
    return_lse: bool = False,
) -> Float[Array, "*batch L dv"] | tuple[Float[Array, "*batch L dv"], Float[Array, "*batch L"]]:
    """Block-sparse softmax attention as a Pallas kernel (flash-style, memory linear in `L`).

    The sequence is cut into `nb = ceil(L / b)` tiles of `b = block_size`
    positions. Query tile `n` sees the key tiles `block_idx[n]` (entries outside
    `[0, nb)` are ignored, a tile listed twice counts once, as in
    `seqkit.attention.gathered_block_attention`), and inside them
    `o_i = Σ_j softmax_j(scale · q_i · k_j) v_j` over the keys `j` with
    `key_mask[j]`, `j <= i` when `causal`, and, when `band = (lo, hi)` is given,
    `−lo <= j − i <= hi` or `j < num_global_keys`. This covers BigBird's window,
    global and random blocks (Zaheer et al., "Big Bird: Transformers for Longer
    Sequences", 2020) and Longformer's sliding window with global keys (Beltagy et
    al., "Longformer: The Long-Document Transformer", 2020) in one call.

    `block_idx` may be traced (BigBird's random blocks): the wrapper turns it, in
    XLA, into a compact per-tile list with a count (sorted, repeats and
    out-of-range entries dropped, and tiles holding no allowed pair under
    `causal`/`band`), and the program for query tile `n` loops over its count
    only, keeping an online softmax (running maximum, normalizer, unnormalized
    output; Dao et al., "FlashAttention", 2022). So no `L × L` array exists and the
    work is proportional to the number of (query tile, key tile) pairs. A row with
    no allowed key gives a zero output, `lse = −inf` and zero gradients, as
    `seqkit.attention.dot_product_attention`.

    Attention dropout, as `seqkit.attention.attention_with_lse`: the softmax
    weights `p_ij` (normalized over the allowed keys, before dropout) are zeroed
    with probability `dropout_rate` and the kept ones scaled by
    `1/(1 − dropout_rate)`; `lse` is that of the undropped weights. The keep mask
    is a stateless random stream, a hash of `(seed, row, i, j)` with `row` the
    flattened batch index (MurmurHash3's finalizer; counter-based as in Salmon et
    al., "Parallel Random Numbers: As Easy as 1, 2, 3", 2011), which the backward
    kernels recompute instead of storing a mask. The XLA paths draw from the same
    hash but over their own block layout's rows and positions: with dropout,
    `impl="pallas"` and `impl="xla"` give different (equally distributed) masks
    for one key.

    Differentiable through a `custom_vjp` whose backward is two more Pallas kernels
    (FlashAttention-2's split): one over query tiles accumulates `dq` along the same
    lists, one over key tiles accumulates `dk` and `dv` along the transposed lists
    (for key tile `m`, the query tiles listing `m`: the (query tile, key tile) pairs
    sorted by key tile in XLA), both recomputing the weights from the saved log
    normalizers; `D_i = do_i · o_i` (minus the cotangent of `lse_i` when it is
    returned) is one `O(L d)` XLA reduction.

    Lowers with Triton on GPU (checked without the hardware by `jax.export` for
    `platforms=["cuda"]`); float32 products are full precision (no TF32),
    float16/bfloat16 ones run on the matrix units with float32 accumulation. Any
    float dtype in interpret mode. Head dimensions are padded with zeros to a power
    of two `>= 16`; `L` is padded to a tile multiple and masked. Not for TPU (see
    `unsupported`).

    **Arguments:**

    - `q`, `k`, `v`: `(*batch, L, dk)`, `(*batch, L, dk)`, `(*batch, L, dv)`, one dtype.
    - `block_idx`: `(nb, g)` integer key tiles per query tile, shared by the batch.
    - `key_mask`: optional `(*batch, L)` boolean, `True` = real key.
    - `block_size`: `b`, positions per tile (a power of two `>= 16` on GPU).
    - `causal`: see only keys `j <= i`.
    - `band`: optional `(lo, hi)`, `lo, hi >= 0`: inside the listed tiles, see only
      keys `i − lo <= j <= i + hi`, or the global keys below.
    - `num_global_keys`: with `band`, the keys `j < num_global_keys` are seen
      whatever the distance (ignored without `band`).
    - `scale`: defaults to `1/sqrt(dk)`.
    - `dropout_rate`: `0 <= rate < 1`, the attention-dropout rate (static).
    - `dropout_seed`: a `uint32` scalar (may be traced), or a PRNG key (typed or
      its raw bits) from which one is drawn with `jax.random.bits`; without it
      there is no dropout, as in `seqkit.attention.dot_product_attention`. Under
      `jax.vmap` (one call per head) give each head its own seed.
    - `interpret`: run in Pallas's interpret mode (on CPU).
    - `platform`: `"gpu"` or `"cpu"`: whose compiler parameters to use (ignored in
      interpret mode); may differ from the machine's backend under `jax.export`.
    - `return_lse`: also return the log normalizers (differentiable).

    **Returns:** `o`, `(*batch, L, dv)` in the inputs' dtype, or `(o, lse)` with
    `return_lse`, `lse` `(*batch, L)` in float32 (float64 for float64 inputs).
    """
    q, k, v = check_qkv(q, k, v)
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"expected a positive integer block_size, got {block_size!r}")
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
    platform = "cpu" if interpret else platform
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    Lp = nb * B
    rate = float(dropout_rate) if dropout_seed is not None else 0.0
    cfg = _Config(L, Lp, B, bool(causal), band, num_global_keys, interpret, platform, rate)
    dkp, dvp = (max(MIN_GPU_TILE, next_pow2(d)) for d in (dk, dv))

    args = padded_attention_inputs(q, k, v, key_mask, scale, Lp, dkp, dvp)
    seed = dropout_seed_array(dropout_seed if rate else None)
    o, lse = _attention_padded(cfg, *args, seed, *_tile_lists(cfg, block_idx))
    o = o[:, :L, :dv].reshape(*batch, L, dv)
    if return_lse:
        return o, lse[:, :L].reshape(*batch, L)
    return o
