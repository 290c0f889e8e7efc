"""Fixed sparse patterns: Sparse Transformer (strided, fixed), Longformer and
BigBird, each as gathered blocks plus a few small dense parts merged exactly
through their log normalizers."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, UInt32

from seqkit._checks import at_least
from seqkit.kernels._block_sparse_pallas import (
    block_sparse_attention_pallas,
    unsupported as _pallas_unsupported,
)
from seqkit.kernels._block_sparse_pallas_tpu import (
    block_sparse_attention_pallas_tpu,
    unsupported as _pallas_tpu_unsupported,
)
from seqkit.kernels._dispatch import Impl, backend, choose
from seqkit.kernels._local_attention_pallas import default_block as gpu_attention_block
from seqkit.kernels._splash_attention import longformer_attention_splash, splash_unsupported

from ._base import AbstractAttention, AttentionHeads, as_key, key_data
from ._blocks import _pad_rows, band_attention, gathered_block_attention, num_blocks
from ._core import attention_with_lse, chunked_dot_product_attention, merge_attention


def _kmask(key_mask, L):
    return jnp.ones((L,), bool) if key_mask is None else key_mask


def strided_sparse_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    stride: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "L dv"]:
    """Strided pattern of the Sparse Transformer, one head: query `i` sees keys
    with `|i − j| < stride` or `(i − j) mod stride = 0` (`j <= i` when causal).

    The near part is a band; the strided part is attention inside each residue
    class mod `stride` (a `(stride, L/stride, L/stride)` computation) with the near
    keys removed, and the two are merged exactly. `stride >= L` is full attention.
    """
    at_least(1, stride=stride)
    L = q.shape[0]
    kmask = _kmask(key_mask, L)
    r1, k1 = (None, None) if key is None else tuple(jr.split(key))
    o1, l1 = band_attention(
        q,
        k,
        v,
        lo=stride - 1,
        hi=0 if causal else stride - 1,
        key_mask=kmask,
        dropout_rate=dropout_rate,
        key=r1,
    )
    n = num_blocks(L, stride)
    Lp = n * stride

    def by_class(x):  # (L, d) -> (stride, n, d): row r holds positions r, r+s, r+2s, ...
        return _pad_rows(x, Lp).reshape(n, stride, -1).transpose(1, 0, 2)

    mk = _pad_rows(kmask, Lp).reshape(n, stride).T  # (stride, n)
    t = jnp.arange(n)
    far = (t[None, :] < t[:, None]) if causal else (t[None, :] != t[:, None])
    valid = far[None] & mk[:, None, :]
    o2, l2 = attention_with_lse(
        by_class(q), by_class(k), by_class(v), valid, dropout_rate=dropout_rate, key=k1
    )
    o2 = o2.transpose(1, 0, 2).reshape(Lp, -1)[:L]
    l2 = l2.T.reshape(Lp)[:L]
    return merge_attention([o1, o2], [l1, l2])[0]


def _check_fixed(stride: int, summary: int) -> None:
    """The fixed pattern's sizes: both at least 1, the summary within a block."""
    at_least(1, stride=stride, summary=summary)
    if summary > stride:
        raise ValueError(f"expected summary <= stride (a block's last tokens), got {summary} > {stride}")


def fixed_sparse_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    stride: int,
    summary: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "L dv"]:
    """Fixed pattern of the Sparse Transformer, one head: query `i` sees its own
    block of `stride` tokens and the last `summary` tokens of every block
    (`j <= i` when causal). `stride >= L` is full attention.
    """
    _check_fixed(stride, summary)
    L = q.shape[0]
    kmask = _kmask(key_mask, L)
    r1, k1 = (None, None) if key is None else tuple(jr.split(key))
    n = num_blocks(L, stride)
    o1, l1 = gathered_block_attention(
        q,
        k,
        v,
        np.arange(n)[:, None],
        block_size=stride,
        key_mask=kmask,
        causal=causal,
        dropout_rate=dropout_rate,
        key=r1,
    )
    c = summary
    Lp = n * stride
    sel = (np.arange(n)[:, None] * stride + np.arange(stride - c, stride)[None, :]).reshape(-1)
    ks, vs = _pad_rows(k, Lp)[sel], _pad_rows(v, Lp)[sel]
    ms = _pad_rows(kmask, Lp)[sel]
    qpos = jnp.arange(L)[:, None]
    kpos = jnp.asarray(sel)[None, :]
    valid = ms[None, :] & (kpos // stride != qpos // stride)  # own block is in part 1
    if causal:
        valid = valid & (kpos <= qpos)
    o2, l2 = attention_with_lse(q, ks, vs, valid, dropout_rate=dropout_rate, key=k1)
    return merge_attention([o1, o2], [l1, l2])[0]


class SparseAttention(AbstractAttention):
    """Sparse Transformer attention (Child et al., "Generating Long Sequences with
    Sparse Transformers", 2019), the union of its two factorized heads in one head.

    - `pattern="strided"`: `|i − j| < stride` or `(i − j) mod stride = 0`.
    - `pattern="fixed"`: same block of `stride` tokens, or `j` among the last
      `summary` tokens of a block.

    Memory `O(L · (stride + L/stride))` (strided) and
    `O(L · (stride + summary · L/stride))` (fixed); `causal=True` adds `j <= i`.

    ```python
    attn = SparseAttention(128, 2, pattern="fixed", stride=64, summary=8, key=key)
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus `pattern`
    (`"fixed"` default), `stride` (default 50) and `summary` (default 10): the
    Long Range Arena setting (fixed pattern, blocks of 50, summaries of 10).
    """

    heads: AttentionHeads
    pattern: str = eqx.field(static=True)
    stride: int = eqx.field(static=True)
    summary: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        pattern: str = "fixed",
        stride: int = 50,
        summary: int = 10,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if pattern not in ("strided", "fixed"):
            raise ValueError(f"pattern must be 'strided' or 'fixed', got {pattern!r}")
        if pattern == "fixed":
            _check_fixed(stride, summary)
        else:
            at_least(1, stride=stride, summary=summary)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=key
        )
        self.pattern = pattern
        self.stride = stride
        self.summary = summary

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        if self.pattern == "strided":
            return strided_sparse_attention(
                q,
                k,
                v,
                stride=self.stride,
                causal=self.causal,
                key_mask=key_mask,
                dropout_rate=dropout_rate,
                key=key,
            )
        return fixed_sparse_attention(
            q,
            k,
            v,
            stride=self.stride,
            summary=self.summary,
            causal=self.causal,
            key_mask=key_mask,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        return self._attend(self._pattern, x, mask, key)


def _global_rows(q, k, v, n_global, kmask, causal, rate, key):
    """Full attention rows for the first `n_global` queries (chunked, linear memory)."""
    if n_global == 0:
        return None
    qg = q[:n_global]
    if causal:  # a causal query i < n_global sees only keys j <= i < n_global
        return attention_with_lse(
            qg,
            k[:n_global],
            v[:n_global],
            kmask[None, :n_global] & (jnp.arange(n_global)[None, :] <= jnp.arange(n_global)[:, None]),
            dropout_rate=rate,
            key=key,
        )[0]
    return chunked_dot_product_attention(qg, k, v, key_mask=kmask, dropout_rate=rate, key=key)


_TPU_BLOCK = 128  # Longformer's tiles for the TPU block-sparse kernel (the lane width)


def longformer_tpu_unsupported(dtype, dropout: bool, L: int, platform: str) -> str | None:
    """Why no Pallas kernel serves a Longformer call on TPU (`platform`; `"cpu"`
    meaning interpret mode), or `None`: JAX's splash attention when it serves the
    call (`seqkit.kernels._splash_attention.splash_unsupported`: no dropout), else
    the block-sparse kernel `seqkit.kernels.block_sparse_attention_pallas_tpu`
    (tiles of 128)."""
    if (splash := splash_unsupported(dtype, dropout, L, platform)) is None:
        return None
    if (kernel := _pallas_tpu_unsupported(dtype, dropout, _TPU_BLOCK, platform)) is None:
        return None
    return f"{splash}; and the block-sparse kernel: {kernel}"


def longformer_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    window_size: int,
    num_global: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
    impl: Impl = "auto",
) -> Float[Array, "L dv"]:
    """Longformer attention, one head: query `i` sees keys `|i − j| <= w/2`
    (`0 <= i − j <= w/2` when causal) plus the first `num_global` tokens, which
    in turn see every token. Banded part + global-key part merged exactly, global
    rows overwritten by full attention.

    `impl`: `"xla"` (the band as gathered blocks, merged with the global keys),
    `"pallas"` (one call of the block-sparse kernel
    `seqkit.kernels.block_sparse_attention_pallas`: per query tile, the tiles of
    the global keys and of the window, with the band and the global keys as its
    position rule; Pallas backward too; interpret mode on CPU; see its
    `unsupported`; on TPU, JAX's splash-attention kernel instead, through
    `seqkit.kernels._splash_attention.longformer_attention_splash`, and with
    dropout, which splash lacks, the TPU block-sparse kernel
    `seqkit.kernels.block_sparse_attention_pallas_tpu` in tiles of 128; see
    `longformer_tpu_unsupported`) or `"auto"` (default: Pallas on GPU and TPU
    when it serves the call, XLA otherwise and always on CPU). The global rows
    are full attention in XLA either way. With dropout the block-sparse kernels
    (GPU and TPU alike) draw their keep mask from a stateless stream (a hash of a
    seed drawn from `key`, the row, the query and the key position); the XLA path
    hashes its own block layout's rows and positions, so `impl="pallas"` and
    `impl="xla"` give different, equally distributed masks for one key.
    """
    at_least(0, window_size=window_size, num_global=num_global)
    L = q.shape[0]
    g = min(num_global, L)
    kmask = _kmask(key_mask, L)
    keys = [None, None, None] if key is None else list(jr.split(key, 3))
    r = window_size // 2
    dropout = dropout_rate > 0.0 and key is not None
    platform = backend()
    if platform == "tpu":
        unsupported = functools.partial(longformer_tpu_unsupported, q.dtype, dropout, L)
    else:
        unsupported = functools.partial(_pallas_unsupported, q.dtype, dropout, None)
    choice = choose(impl, "longformer_attention", unsupported, platform=platform)
    splash = platform == "tpu" and splash_unsupported(q.dtype, dropout, L, platform) is None
    if choice.impl == "pallas" and splash:
        # JAX's splash-attention kernel: the band or a global key, padding in a segment of its own
        o = longformer_attention_splash(
            q,
            k,
            v,
            kmask,
            window_lo=r,
            window_hi=0 if causal else r,
            num_global=g,
            causal=causal,
            interpret=choice.interpret,
        )
    elif choice.impl == "pallas":
        # one kernel call: band or global key, inside the tiles of both
        hi = 0 if causal else r
        b = _TPU_BLOCK if platform == "tpu" else gpu_attention_block(L)
        kernel_args = dict(
            block_size=b,
            causal=causal,
            band=(r, hi),
            num_global_keys=g,
            dropout_rate=dropout_rate if key is not None else 0.0,
            dropout_seed=keys[0],
            interpret=choice.interpret,
        )
        tiles = _longformer_tiles(L, b, r, hi, g)
        if platform == "tpu":
            o = block_sparse_attention_pallas_tpu(q, k, v, tiles, kmask, **kernel_args)
        else:
            o = block_sparse_attention_pallas(q, k, v, tiles, kmask, **kernel_args, platform=platform)
    else:
        o, l1 = band_attention(
            q,
            k,
            v,
            lo=r,
            hi=0 if causal else r,
            key_mask=kmask,
            exclude_below=g,
            dropout_rate=dropout_rate,
            key=keys[0],
        )
        if g > 0:
            valid = jnp.broadcast_to(kmask[None, :g], (L, g))
            if causal:
                valid = valid & (jnp.arange(g)[None, :] <= jnp.arange(L)[:, None])
            o2, l2 = attention_with_lse(q, k[:g], v[:g], valid, dropout_rate=dropout_rate, key=keys[1])
            o = merge_attention([o, o2], [l1, l2])[0]
    if g == 0:
        return o
    return o.at[:g].set(_global_rows(q, k, v, g, kmask, causal, dropout_rate, keys[2]))


def _longformer_tiles(L: int, b: int, lo: int, hi: int, g: int) -> np.ndarray:
    """Key tiles per query tile of `b` positions for Longformer: the tiles holding
    the global keys `[0, g)`, then those meeting the window `i − lo ... i + hi` of
    the tile's queries (`−1` pads; repeats are dropped by the kernel)."""
    nb = num_blocks(L, b)
    n = np.arange(nb)[:, None]
    first = np.maximum(n * b - lo, 0) // b
    last = np.minimum(n * b + b - 1 + hi, nb * b - 1) // b
    window = first + np.arange((b - 1 + lo + hi) // b + 2)[None, :]
    window = np.where(window <= last, window, -1)
    glob = np.broadcast_to(np.arange(num_blocks(g, b)), (nb, num_blocks(g, b)))
    return np.concatenate([glob, window], axis=1)


class Longformer(AbstractAttention):
    """Longformer attention (Beltagy et al., "Longformer: The Long-Document
    Transformer", 2020): a sliding window of `window_size` (`w/2` each side) plus
    `num_global` global tokens at the start of the sequence that attend to and are
    attended by every token. Memory `O(L · (w + num_global))`. One set of
    projections serves local and global attention.

    ```python
    attn = Longformer(128, 2, window_size=512, num_global=1, key=key)
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `window_size` (default 512, the Long Range Arena setting) and `num_global`
    (default 1: the first token, e.g. a CLS token, is global).
    """

    heads: AttentionHeads
    window_size: int = eqx.field(static=True)
    num_global: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        window_size: int = 512,
        num_global: int = 1,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if window_size < 0 or num_global < 0:
            raise ValueError(f"expected window_size, num_global >= 0, got {window_size}, {num_global}")
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=key
        )
        self.window_size = window_size
        self.num_global = num_global

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        return longformer_attention(
            q,
            k,
            v,
            window_size=self.window_size,
            num_global=self.num_global,
            causal=self.causal,
            key_mask=key_mask,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        return self._attend(self._pattern, x, mask, key)


def bigbird_block_indices(
    L: int,
    block_size: int,
    num_random: int,
    num_global: int,
    causal: bool,
    seed: PRNGKeyArray | UInt32[Array, "..."],
    key_mask: Bool[Array, " L"] | None = None,
) -> Int[Array, "nb g"]:
    """Key blocks per query block for BigBird: global blocks, the window (previous,
    own, next; previous and own when causal) and `num_random` distinct random
    blocks drawn from the rest (earlier ones when causal). `−1` marks an empty slot.

    Random blocks are drawn only among *real* blocks (those holding a real token
    of `key_mask`), and the draw for the pair (query block `n`, key block `m`)
    depends on `seed`, `n` and `m` alone: block `n` takes the `num_random`
    candidates with the largest scores `u(seed, n, m)`. So padding at the end of a
    sequence changes no real block's choice, and the indices are traced arrays
    (a stack of layers built with `eqx.filter_vmap` draws per layer).

    **Arguments:** `seed`, a PRNG key or its raw bits
    (`jax.random.key_data`); `key_mask` optional `(L,)`, `True` = real token.
    """
    nb = num_blocks(L, block_size)
    fixed = jnp.asarray(_bigbird_fixed_blocks(nb, num_global, causal))
    if num_random == 0:
        return fixed
    rand = _bigbird_random_blocks(nb, block_size, num_random, num_global, causal, seed, key_mask, L)
    return jnp.concatenate([fixed, rand.astype(fixed.dtype)], axis=1)


def _bigbird_fixed_blocks(nb: int, num_global: int, causal: bool) -> np.ndarray:
    """Global blocks and the window per query block (`−1` outside the sequence)."""
    n = np.arange(nb)
    window = (-1, 0) if causal else (-1, 0, 1)
    g = min(num_global, nb)
    fixed = np.concatenate([np.broadcast_to(np.arange(g), (nb, g)), n[:, None] + np.asarray(window)], 1)
    return np.where((fixed >= 0) & (fixed < nb), fixed, -1)


def _bigbird_random_blocks(nb, block_size, num_random, num_global, causal, seed, key_mask, L):
    """`num_random` random key blocks per query block (traced), `−1` where none is left."""
    key = as_key(jnp.asarray(seed))
    n = jnp.arange(nb)
    fixed = jnp.asarray(_bigbird_fixed_blocks(nb, num_global, causal))
    km = jnp.ones((L,), bool) if key_mask is None else key_mask
    real = jnp.any(_pad_rows(km, nb * block_size).reshape(nb, block_size), axis=1)
    taken = jnp.any(n[None, None, :] == fixed[:, :, None], axis=1)  # (nb, nb): [query block, key block]
    cand = ~taken & real[None, :]
    if causal:
        cand = cand & (n[None, :] < n[:, None])
    row_keys = jax.vmap(lambda i: jr.fold_in(key, i))(n)
    u = jax.vmap(lambda kr: jax.vmap(lambda j: jr.uniform(jr.fold_in(kr, j)))(n))(row_keys)
    score = jnp.where(cand, u, -1.0)  # u in [0, 1): candidates first
    r = min(num_random, nb)
    _, pick = jax.lax.top_k(score, r)
    ok = jnp.take_along_axis(cand, pick, axis=1)
    rand = jnp.where(ok, pick.astype(n.dtype), -1)
    if r < num_random:
        rand = jnp.concatenate([rand, jnp.full((nb, num_random - r), -1, rand.dtype)], axis=1)
    return rand


def bigbird_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    block_size: int,
    num_random: int,
    num_global: int,
    seed: PRNGKeyArray | UInt32[Array, "..."],
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
    impl: Impl = "auto",
) -> Float[Array, "L dv"]:
    """BigBird block-sparse attention, one head (window + random + global blocks
    as gathered blocks; the global blocks' queries see every key). The random
    blocks come from [`seqkit.attention.bigbird_block_indices`][] with `seed`
    (a PRNG key or its raw bits); `key` is for dropout.

    `impl`: `"xla"` (gathered blocks), `"pallas"` (one call of the block-sparse
    kernel `seqkit.kernels.block_sparse_attention_pallas` over the window, global
    and random blocks, tiles of `block_size`; Pallas backward too; interpret mode
    on CPU; on GPU `block_size` a power of two `>= 16`, see its `unsupported`; on
    TPU the Mosaic kernel `seqkit.kernels.block_sparse_attention_pallas_tpu`
    instead, `block_size` a multiple of 128) or `"auto"` (default: Pallas on GPU
    and TPU when it serves the call, XLA otherwise and always on CPU). The global
    rows are full attention in XLA either way. With dropout the kernels (GPU and
    TPU alike) draw their keep mask from a stateless stream (a hash of a seed
    drawn from `key`, the row, the query and the key position); the XLA path
    hashes its own block layout's rows and positions, so `impl="pallas"` and
    `impl="xla"` give different, equally distributed masks for one key.
    """
    L = q.shape[0]
    kmask = _kmask(key_mask, L)
    k1, k2 = (None, None) if key is None else tuple(jr.split(key))
    nb = num_blocks(L, block_size)
    dropout = dropout_rate > 0.0 and key is not None
    platform = backend()
    rule = _pallas_tpu_unsupported if platform == "tpu" else _pallas_unsupported
    unsupported = functools.partial(rule, q.dtype, dropout, block_size)
    choice = choose(impl, "bigbird_attention", unsupported, platform=platform)
    fixed = _bigbird_fixed_blocks(nb, num_global, causal)
    rand = None
    if num_random > 0:
        rand = _bigbird_random_blocks(nb, block_size, num_random, num_global, causal, seed, kmask, L)
    if choice.impl == "pallas":
        # one kernel call: the window, global and random blocks in one list per tile
        idx = fixed
        if rand is not None:
            idx = jnp.concatenate([jnp.asarray(fixed, jnp.int32), rand.astype(jnp.int32)], axis=1)
        kernel_args = dict(
            block_size=block_size,
            causal=causal,
            dropout_rate=dropout_rate if k1 is not None else 0.0,
            dropout_seed=k1,
            interpret=choice.interpret,
        )
        if platform == "tpu":
            o = block_sparse_attention_pallas_tpu(q, k, v, idx, kmask, **kernel_args)
        else:
            o = block_sparse_attention_pallas(q, k, v, idx, kmask, **kernel_args, platform=platform)
    else:
        # the window and global blocks are static and the random ones traced: two
        # gathered parts over disjoint key blocks, merged exactly (constant indices
        # let XLA simplify the static part's gathers and their gradients)
        def part(idx, kk):
            return gathered_block_attention(
                q,
                k,
                v,
                idx,
                block_size=block_size,
                key_mask=kmask,
                causal=causal,
                dropout_rate=dropout_rate,
                key=kk,
            )

        o, lse = part(fixed, k1)
        if rand is not None:
            o2, lse2 = part(rand, None if k1 is None else jr.fold_in(k1, 1))
            o, lse = merge_attention([o, o2], [lse, lse2])
    g = min(num_global * block_size, L)
    if g == 0:
        return o
    return o.at[:g].set(_global_rows(q, k, v, g, kmask, causal, dropout_rate, k2))


class BigBird(AbstractAttention):
    """BigBird block-sparse attention (Zaheer et al., "Big Bird: Transformers for
    Longer Sequences", 2020): blocks of `block_size` tokens; each query block sees
    its window (3 blocks), `num_random` random blocks and `num_global` global
    blocks (the first ones), whose queries see every key. Memory
    `O(L · b · (3 + r + g))`.

    The random blocks are fixed per layer: drawn on every call from the raw key
    bits stored in `seed` (an integer array: never trained, and
    `eqx.filter_vmap` can build a stack of layers, each with its own draw),
    among the blocks that hold a real token only. Blocks are counted from
    position 0 and each (query block, key block) pair's draw does not depend on
    the length, so padding at the end of a sequence never changes the real
    positions' outputs, whatever the lengths.

    ```python
    attn = BigBird(128, 2, block_size=64, num_random=3, num_global=2, key=key)
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `block_size` (default 64), `num_random` (default 3), `num_global` (default 2).
    """

    heads: AttentionHeads
    seed: UInt32[Array, "..."]
    block_size: int = eqx.field(static=True)
    num_random: int = eqx.field(static=True)
    num_global: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        block_size: int = 64,
        num_random: int = 3,
        num_global: int = 2,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if block_size < 1 or num_random < 0 or num_global < 0:
            raise ValueError(
                f"expected block_size >= 1, num_random >= 0, num_global >= 0, got "
                f"{block_size}, {num_random}, {num_global}"
            )
        kp, ks = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        self.seed = key_data(ks)
        self.block_size = block_size
        self.num_random = num_random
        self.num_global = num_global

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        return bigbird_attention(
            q,
            k,
            v,
            block_size=self.block_size,
            num_random=self.num_random,
            num_global=self.num_global,
            seed=self.seed,
            causal=self.causal,
            key_mask=key_mask,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        return self._attend(self._pattern, x, mask, key)
