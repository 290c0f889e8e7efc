"""Softmax attention as pure functions: the dense reference, the chunked
online-softmax path, the merge of partial attentions, and mask builders.

Arrays are one head (or any leading batch of heads): queries `(*b, Lq, dk)`,
keys `(*b, Lk, dk)`, values `(*b, Lk, dv)`. A mask is boolean, `True` where a
query may attend to a key.
"""

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from seqkit.kernels._dispatch import choose
from seqkit.kernels._dropout import dropout_seed_array, dropped

#: Dense attention's implementations: `"auto"` (cuDNN on GPU when it serves the
#: call, else XLA; always XLA on CPU), `"xla"` or `"cudnn"`.
DenseImpl = Literal["auto", "xla", "cudnn"]

# ---------------------------------------------------------------------------
# masks


def causal_mask(Lq: int, Lk: int | None = None) -> Bool[Array, "Lq Lk"]:
    """`True` where key position `j <= i` (query `i` may see key `j`)."""
    Lk = Lq if Lk is None else Lk
    return jnp.arange(Lk)[None, :] <= jnp.arange(Lq)[:, None]


def padding_mask(key_mask: Bool[Array, " Lk"], Lq: int) -> Bool[Array, "Lq Lk"]:
    """A key-padding mask broadcast over `Lq` queries."""
    return jnp.broadcast_to(key_mask[None, :], (Lq, key_mask.shape[0]))


def band_mask(L: int, lo: int, hi: int) -> Bool[Array, "L L"]:
    """`True` where `i − lo <= j <= i + hi` (a dense band, for references)."""
    d = jnp.arange(L)[None, :] - jnp.arange(L)[:, None]
    return (d >= -lo) & (d <= hi)


def block_diagonal_mask(L: int, block_size: int) -> Bool[Array, "L L"]:
    """`True` where `i` and `j` lie in the same block of `block_size` (dense, for references)."""
    b = jnp.arange(L) // block_size
    return b[:, None] == b[None, :]


def combine_masks(*masks: Bool[Array, "..."] | None) -> Bool[Array, "..."] | None:
    """The logical AND of the masks that are not `None` (or `None`)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


# ---------------------------------------------------------------------------
# dense attention


def _dropout_weights(p: Array, rate: float, key: PRNGKeyArray | None) -> Array:
    """`p` under attention-weight dropout: weight (row r, query i, key j) is kept when
    `dropout_keep(seed, r, i, j)` says so, `seed` drawn from `key`, `r` the flat index
    over the leading axes of `p`. The chunked path draws the same mask for one row."""
    if rate <= 0.0 or key is None:
        return p
    *b, Lq, Lk = p.shape
    row = jnp.arange(math.prod(b), dtype=jnp.uint32).reshape(*b, 1, 1)
    qpos = jnp.arange(Lq, dtype=jnp.uint32)[:, None]
    kpos = jnp.arange(Lk, dtype=jnp.uint32)[None, :]
    (p,) = dropped(rate, dropout_seed_array(key)[0], row, qpos, kpos, p)
    return p


def attention_with_lse(
    q: Float[Array, "*b Lq dk"],
    k: Float[Array, "*b Lk dk"],
    v: Float[Array, "*b Lk dv"],
    mask: Bool[Array, "*#b #Lq #Lk"] | None = None,
    *,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> tuple[Float[Array, "*b Lq dv"], Float[Array, "*b Lq"]]:
    """Softmax attention that also returns the log normalizer of each row.

    `o_i = Σ_j softmax_j(s_i) v_j`, `lse_i = log Σ_j exp(s_ij)` over allowed `j`,
    with `s = scale · q kᵀ`. A row with no allowed key gives `o_i = 0` and
    `lse_i = −inf`. Dropout (rate `dropout_rate`, needs `key`) drops normalized
    weights, as in the Transformer.

    **Returns:** `(o, lse)`; `lse` lets partial attentions over disjoint key
    sets be merged exactly by [`seqkit.attention.merge_attention`][].
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = jnp.einsum("...qd,...kd->...qk", q, k) * jnp.asarray(scale, q.dtype)
    return softmax_attend(s, v, mask, dropout_rate=dropout_rate, key=key)


def softmax_attend(
    s: Float[Array, "*b Lq Lk"],
    v: Float[Array, "*b Lk dv"],
    mask: Bool[Array, "*#b #Lq #Lk"] | None = None,
    *,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> tuple[Float[Array, "*b Lq dv"], Float[Array, "*b Lq"]]:
    """`softmax(s + log mask) v` from given logits `s`, and the row log normalizers
    (for variants whose logits do not come from `q kᵀ`, e.g. Synthesizer)."""
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    p = jnp.exp(s - m)
    denom = jnp.sum(p, axis=-1, keepdims=True)
    ok = denom > 0
    safe = jnp.where(ok, denom, jnp.ones_like(denom))
    p = _dropout_weights(p / safe, dropout_rate, key)
    o = jnp.einsum("...qk,...kd->...qd", p, v)
    lse = jnp.where(ok, m + jnp.log(safe), -jnp.inf)[..., 0]
    return o, lse


# ---------------------------------------------------------------------------
# cuDNN's fused attention (GPU), through jax.nn.dot_product_attention

_CUDNN_DTYPES = ("bfloat16", "float16")
_CUDNN_MAX_HEAD_DIM = 128  # cuDNN's flash-attention limit before Hopper (256 from Hopper on)


def cudnn_unsupported(q, k, v, mask, causal: bool, dropout: bool, platform: str) -> str | None:
    """Why cuDNN's fused attention (`jax.nn.dot_product_attention(...,
    implementation="cudnn")`) cannot serve a dense-attention call on `platform`, or
    `None`. The constraints, from jax's documented cuDNN checks plus seqkit's
    semantics:

    - an NVIDIA GPU (`platform == "gpu"`; no interpret mode on CPU);
    - `q`, `k`, `v` of one dtype, float16 or bfloat16;
    - one head dimension `dk == dv`, a multiple of 8 and at most 128;
    - `q`, `k`, `v` with the same leading (batch/head) shape, no broadcasting;
    - no `mask` (cuDNN would take a general mask as an additive bias, under which a
      row with no allowed key is not zero as seqkit's is); `causal` needs `Lq == Lk`;
    - no attention dropout (seqkit's dropout stream is not cuDNN's).
    """
    if platform != "gpu":
        return f"cuDNN fused attention runs on NVIDIA GPUs only, not {platform}"
    names = {jnp.dtype(x.dtype).name for x in (q, k, v)}
    if len(names) != 1 or not names <= set(_CUDNN_DTYPES):
        return f"cuDNN needs q, k, v of one dtype in {_CUDNN_DTYPES}, got {sorted(names)}"
    dk, dv = q.shape[-1], v.shape[-1]
    if dk != dv or dk % 8 or dk > _CUDNN_MAX_HEAD_DIM:
        return (
            f"cuDNN needs one head dimension dk == dv, a multiple of 8 and <= "
            f"{_CUDNN_MAX_HEAD_DIM}, got dk={dk}, dv={dv}"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        return f"cuDNN needs q, k, v with one leading shape, got {q.shape}, {k.shape}, {v.shape}"
    if mask is not None:
        return "cuDNN is used without a mask only (dense or causal=True); got a mask array"
    if causal and q.shape[-2] != k.shape[-2]:
        return f"causal cuDNN attention needs Lq == Lk, got {q.shape[-2]} and {k.shape[-2]}"
    if dropout:
        return "attention dropout is not supported on the cuDNN path (use impl='xla')"
    return None


def _cudnn_attention(q, k, v, causal: bool, scale: float) -> Array:
    """`jax.nn.dot_product_attention(..., implementation="cudnn")` on seqkit's layout:
    the leading axes become cuDNN's batch, with one head each."""
    *b, Lq, dk = q.shape
    Lk, dv = k.shape[-2], v.shape[-1]
    n = math.prod(b)
    o = jax.nn.dot_product_attention(
        q.reshape(n, Lq, 1, dk),
        k.reshape(n, Lk, 1, dk),
        v.reshape(n, Lk, 1, dv),
        scale=scale,
        is_causal=causal,
        implementation="cudnn",
    )
    return o.reshape(*b, Lq, dv)


def _dense_choice(impl, name, q, k, v, mask, causal, dropout_rate, key) -> str:
    dropout = dropout_rate > 0.0 and key is not None
    unsupported = functools.partial(cudnn_unsupported, q, k, v, mask, causal, dropout)
    return choose(impl, name, unsupported, fast="cudnn").impl


def dot_product_attention(
    q: Float[Array, "*b Lq dk"],
    k: Float[Array, "*b Lk dk"],
    v: Float[Array, "*b Lk dv"],
    mask: Bool[Array, "*#b #Lq #Lk"] | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
    impl: DenseImpl = "auto",
) -> Float[Array, "*b Lq dv"]:
    """Dense softmax attention `softmax(scale · q kᵀ + log mask) v` (Vaswani et al.,
    "Attention Is All You Need", 2017), the reference every other path is tested
    against.

    ```python
    o = dot_product_attention(q, k, v, causal_mask(L))  # q, k, v: (L, 64)
    ```

    **Arguments:**

    - `q`, `k`, `v`: `(*b, Lq, dk)`, `(*b, Lk, dk)`, `(*b, Lk, dv)`.
    - `mask`: optional boolean `(Lq, Lk)` (broadcast over `*b`), `True` = may attend.
    - `causal`: also keep only keys `j <= i` (the mask `causal_mask(Lq, Lk)`).
    - `scale`: defaults to `1/sqrt(dk)`.
    - `dropout_rate`, `key`: attention-weight dropout (inactive without a key):
      weight `(r, i, j)` (`r` the flat index over `*b`) is kept when a hash of a
      seed drawn from `key` and `(r, i, j)` says so (`seqkit.kernels._dropout`).
    - `impl`: `"xla"` (the computation above, on every backend), `"cudnn"`
      (cuDNN's fused flash attention through
      `jax.nn.dot_product_attention(..., implementation="cudnn")`; NVIDIA GPU,
      float16/bfloat16, no mask but `causal`, see `cudnn_unsupported`; a call it
      cannot serve is a `ValueError` naming the constraint) or `"auto"` (default:
      cuDNN on GPU when it serves the call, XLA otherwise and always on CPU).
      There is no Pallas path for dense attention: on GPU the vendor kernel is
      the fused one to use.

    **Returns:** `(*b, Lq, dv)`; rows with no allowed key are zero.
    """
    if _dense_choice(impl, "dot_product_attention", q, k, v, mask, causal, dropout_rate, key) == "cudnn":
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        return _cudnn_attention(q, k, v, causal, scale)
    if causal:
        mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2]))
    return attention_with_lse(q, k, v, mask, scale=scale, dropout_rate=dropout_rate, key=key)[0]


def merge_attention(
    outs: list[Float[Array, "*b L dv"]] | tuple[Float[Array, "*b L dv"], ...],
    lses: list[Float[Array, "*b L"]] | tuple[Float[Array, "*b L"], ...],
) -> tuple[Float[Array, "*b L dv"], Float[Array, "*b L"]]:
    """Merge attentions over disjoint key sets into attention over their union.

    `o = Σ_p exp(lse_p − lse) o_p` with `lse = log Σ_p exp(lse_p)`: exact, since
    each `o_p` is normalized over its own keys.
    """
    lse_all = jnp.stack(lses, axis=0)
    m = jnp.max(lse_all, axis=0)
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    w = jnp.exp(lse_all - m)
    tot = jnp.sum(w, axis=0)
    ok = tot > 0
    safe = jnp.where(ok, tot, jnp.ones_like(tot))
    o = sum(o_p * (w_p / safe)[..., None] for o_p, w_p in zip(outs, w, strict=True))
    lse = jnp.where(ok, m + jnp.log(safe), -jnp.inf)
    return o, lse


# ---------------------------------------------------------------------------
# chunked online-softmax attention (memory linear in L, forward and backward)


def _chunk_valid(kmask_j, j, c, Lq, causal, q_offset):
    """`(Lq, c)`: may query `q_offset + i` see key `j·c + t` of this chunk?"""
    valid = jnp.broadcast_to(kmask_j[None, :], (Lq, c))
    if causal:
        kpos = j * c + jnp.arange(c)
        qpos = jnp.arange(Lq) + q_offset
        valid = valid & (kpos[None, :] <= qpos[:, None])
    return valid


def _chunk_positions(j, c, n, off):
    """`(n, 1)` query and `(1, c)` key positions of the tile of the `n` queries
    `off, off + 1, …` and key chunk `j`: what its dropout mask is hashed from."""
    qpos = jnp.asarray(off).astype(jnp.uint32) + jnp.arange(n, dtype=jnp.uint32)[:, None]
    return qpos, j.astype(jnp.uint32) * c + jnp.arange(c, dtype=jnp.uint32)[None, :]


def _forward_step(carry, qs, kj, vj, mj, j, off, seed, causal, c, rate, masked):
    """One key chunk `j` of the online softmax for the queries `off, off + 1, …`
    held in `qs` (all of them, or one query block)."""
    m, l, acc = carry
    s = qs @ kj.T
    if masked or causal:
        s = jnp.where(_chunk_valid(mj, j, c, qs.shape[0], causal, off), s, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    m_safe = jnp.where(jnp.isfinite(m_new), m_new, jnp.zeros_like(m_new))
    alpha = jnp.exp(m - m_safe)
    p = jnp.exp(s - m_safe[:, None])
    l = l * alpha + jnp.sum(p, axis=-1)
    (pd,) = dropped(rate, seed[0], 0, *_chunk_positions(j, c, qs.shape[0], off), p)
    return m_new, l, acc * alpha[:, None] + pd @ vj


def _backward_step(qs, do, D, lse, kj, vj, mj, j, off, seed, causal, c, rate, masked):
    """Key chunk `j`'s share of the gradients from the queries `off, off + 1, …`.

    Tiles are key-major, `(c, Lq)`, so that dk and dv are plain `(c, Lq) @ (Lq, d)`
    products. Returns `(dqᵀ for those queries, dk_j, dv_j)`.
    """
    Lr = qs.shape[0]
    sT = kj @ qs.T
    if masked or causal:
        sT = jnp.where(_chunk_valid(mj, j, c, Lr, causal, off).T, sT, -jnp.inf)
    pT = jnp.exp(sT - lse[None, :])
    dpT = vj @ do.T
    # the forward pass's mask, transposed: keys along the rows
    qpos, kpos = _chunk_positions(j, c, Lr, off)
    pdT, dpT = dropped(rate, seed[0], 0, qpos.T, kpos.T, pT, dpT)
    dsT = pT * (dpT - D[None, :])
    return kj.T @ dsT, dsT @ qs, pdT @ do  # kjᵀ dsT: no transpose of the (c, Lq) tile


# Causal attention skips the blocks above the diagonal: queries and keys are cut
# into blocks of c and a scan visits only the pairs (query block i, key block
# j <= i), nb(nb + 1)/2 of nb², in tiles (c, c) (memory O(c²) per row). The
# forward pass goes query block by query block, the backward pass key block by
# key block. (Scanning the unmasked pairs j < i apart from the diagonal ones
# measured slower on CPU than masking every tile in one scan.)


def _causal_pairs(nb, by_query):
    pairs = [(i, j) for i in range(nb) for j in range(i + 1)]
    if not by_query:
        pairs.sort(key=lambda ij: (ij[1], ij[0]))
    return jnp.asarray([i for i, _ in pairs]), jnp.asarray([j for _, j in pairs])


def _block(x, b, c, axis=0):
    return lax.dynamic_slice_in_dim(x, b * c, c, axis=axis)


def _set_block(x, b, c, y, axis=0):
    return lax.dynamic_update_slice_in_dim(x, y, b * c, axis=axis)


def _add_block(x, b, c, y, axis=0):
    return _set_block(x, b, c, _block(x, b, c, axis) + y, axis)


def _chunked_forward(q, k, v, kmask, seed, causal, c, scale, rate, masked):
    Lq = q.shape[0]
    nb = k.shape[0] // c
    qs = q * jnp.asarray(scale, q.dtype)  # scale once, not every score block
    static = (seed, causal, c, rate, masked)
    if causal:  # Lq == Lk: pad the queries like the keys, into nb blocks
        qs = jnp.pad(qs, ((0, nb * c - Lq), (0, 0)))
    Lp = qs.shape[0]
    carry = (
        jnp.full((Lp,), -jnp.inf, q.dtype),
        jnp.zeros((Lp,), q.dtype),
        jnp.zeros((Lp, v.shape[-1]), q.dtype),
    )
    if causal:

        def body(carry, ij):
            i, j = ij
            part = [_block(x, i, c) for x in carry]
            kv = (_block(k, j, c), _block(v, j, c), _block(kmask, j, c))
            part = _forward_step(part, _block(qs, i, c), *kv, j, i * c, *static)
            return tuple(_set_block(x, i, c, y) for x, y in zip(carry, part, strict=True)), None

        carry, _ = lax.scan(body, carry, _causal_pairs(nb, by_query=True))
    else:
        xs = (k.reshape(nb, c, -1), v.reshape(nb, c, -1), kmask.reshape(nb, c), jnp.arange(nb))

        def body(carry, xs):
            kj, vj, mj, j = xs
            return _forward_step(carry, qs, kj, vj, mj, j, 0, *static), None

        carry, _ = lax.scan(body, carry, xs)
    m, l, acc = (x[:Lq] for x in carry)
    ok = l > 0
    safe = jnp.where(ok, l, jnp.ones_like(l))
    m_safe = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    o = acc / safe[:, None]
    lse = jnp.where(ok, m_safe + jnp.log(safe), -jnp.inf)
    return o, lse


def _chunked_backward(q, k, v, kmask, seed, o, lse, do, causal, c, scale, rate, masked):
    # Recompute each tile's weights from the saved log normalizers
    # (FlashAttention's backward): only one tile lives at a time.
    Lq = q.shape[0]
    nb = k.shape[0] // c
    D = jnp.sum(do * o, axis=-1)
    qs = q * jnp.asarray(scale, q.dtype)
    lse = jnp.where(jnp.isfinite(lse), lse, jnp.zeros_like(lse))
    static = (seed, causal, c, rate, masked)
    if causal:
        pad = nb * c - Lq  # padded queries have do = 0, so they add nothing
        qs, do = (jnp.pad(x, ((0, pad), (0, 0))) for x in (qs, do))
        D, lse = (jnp.pad(x, (0, pad)) for x in (D, lse))

        def body(carry, ij):
            dqT, dk, dv = carry
            i, j = ij
            rows = [_block(x, i, c) for x in (qs, do, D, lse)]
            kv = (_block(k, j, c), _block(v, j, c), _block(kmask, j, c))
            dqT_i, dk_j, dv_j = _backward_step(*rows, *kv, j, i * c, *static)
            return (
                _add_block(dqT, i, c, dqT_i, axis=1),
                _add_block(dk, j, c, dk_j),
                _add_block(dv, j, c, dv_j),
            ), None

        init = (jnp.zeros_like(qs.T), jnp.zeros_like(k), jnp.zeros_like(v))
        (dqT, dk, dv), _ = lax.scan(body, init, _causal_pairs(nb, by_query=False))
        dqT = dqT[:, :Lq]
    else:
        xs = (k.reshape(nb, c, -1), v.reshape(nb, c, -1), kmask.reshape(nb, c), jnp.arange(nb))

        def body(dqT, xs):
            kj, vj, mj, j = xs
            dqT_j, dk_j, dv_j = _backward_step(qs, do, D, lse, kj, vj, mj, j, 0, *static)
            return dqT + dqT_j, (dk_j, dv_j)

        dqT, (dk, dv) = lax.scan(body, jnp.zeros_like(qs.T), xs)
        dk, dv = dk.reshape(k.shape), dv.reshape(v.shape)
    return dqT.T * jnp.asarray(scale, q.dtype), dk, dv


# The forward and backward passes run as row kernels: every array carries a
# leading axis of rows (heads × examples × ...). A `custom_vmap` rule folds each
# `vmap` over the per-head function into that axis, so the kernel sees all rows
# at once and chooses how to walk them. On CPU it visits a few rows per step:
# XLA:CPU's matrix products and elementwise passes run markedly faster on
# (few rows, Lq, c) tiles than on one (all rows, Lq, c) block (see
# benchmarks/attention_fused.py); elsewhere all rows go at once.

_CPU_ROWS_PER_STEP = 2


def _rows_per_step(n: int) -> int:
    if jax.default_backend() != "cpu":
        return n
    return max(g for g in range(1, min(n, _CPU_ROWS_PER_STEP) + 1) if n % g == 0)


def _over_rows(fn, args):
    """`vmap(fn)` over the leading row axis of `args`, `_rows_per_step` rows at a time."""
    n = args[0].shape[0]
    g = _rows_per_step(n)
    if g == n:
        return jax.vmap(fn)(*args)
    grouped = [a.reshape(n // g, g, *a.shape[1:]) for a in args]
    out = lax.map(lambda xs: jax.vmap(fn)(*xs), grouped)
    return jax.tree.map(lambda y: y.reshape(n, *y.shape[2:]), out)


def _row_kernel(fn):
    """`fn` over rows, with every further `vmap` folded into the row axis."""

    @custom_vmap
    def kernel(*args):
        return _over_rows(fn, args)

    @kernel.def_vmap
    def _fold(axis_size, in_batched, *args):
        args = [
            a if b else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, b in zip(args, in_batched, strict=True)
        ]
        m, n = args[0].shape[:2]
        out = kernel(*[a.reshape(m * n, *a.shape[2:]) for a in args])
        out = jax.tree.map(lambda y: y.reshape(m, n, *y.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return kernel


@functools.lru_cache(maxsize=None)
def _kernels(causal, c, scale, rate, masked):
    static = (causal, c, scale, rate, masked)
    fwd = _row_kernel(lambda q, k, v, m, s: _chunked_forward(q, k, v, m, s, *static))
    bwd = _row_kernel(lambda q, k, v, m, s, o, lse, do: _chunked_backward(q, k, v, m, s, o, lse, do, *static))
    return fwd, bwd


def _rows(*xs):
    return [x[None] for x in xs]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
def _chunked(q, k, v, kmask, seed, causal, c, scale, rate, masked):
    return _chunked_fwd(q, k, v, kmask, seed, causal, c, scale, rate, masked)[0]


def _chunked_fwd(q, k, v, kmask, seed, causal, c, scale, rate, masked):
    fwd, _ = _kernels(causal, c, scale, rate, masked)
    o, lse = fwd(*_rows(q, k, v, kmask, seed))
    return o[0], (q, k, v, kmask, seed, o[0], lse[0])


def _chunked_bwd(causal, c, scale, rate, masked, res, do):
    _, bwd = _kernels(causal, c, scale, rate, masked)
    dq, dk, dv = bwd(*_rows(*res, do))
    return dq[0], dk[0], dv[0], None, None


_chunked.defvjp(_chunked_fwd, _chunked_bwd)


def chunked_dot_product_attention(
    q: Float[Array, "Lq dk"],
    k: Float[Array, "Lk dk"],
    v: Float[Array, "Lk dv"],
    *,
    key_mask: Bool[Array, " Lk"] | None = None,
    causal: bool = False,
    chunk_size: int = 512,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
    impl: DenseImpl = "auto",
) -> Float[Array, "Lq dv"]:
    """Softmax attention by an online softmax over key chunks (one head).

    Keys are visited in chunks of at most `chunk_size` by a `lax.scan` that keeps
    the running row maximum `m`, normalizer `l` and unnormalized output; the
    backward pass (a `custom_vjp`) recomputes each chunk's weights from the saved
    `lse = m + log l` (Dao et al., "FlashAttention", 2022; Rabe & Staats,
    "Self-attention Does Not Need O(n²) Memory", 2021). Equal to
    [`seqkit.attention.dot_product_attention`][] with the same masks.

    Written for one head, it is meant to be `vmap`ped over heads and examples:
    each `vmap` is folded into one axis of rows (a `custom_vmap` rule), so the
    kernel sees every row at once. On CPU it walks the rows two at a time, which
    XLA:CPU runs markedly faster than one block of all rows; on accelerators it
    takes all rows at once. Memory is `O(rows per step · Lq · chunk_size)`, never
    `Lq × Lk`. Causal attention visits only the (query block, key block) tiles on
    or below the diagonal, about half the work, in `(chunk, chunk)` tiles.

    ```python
    o = chunked_dot_product_attention(q, k, v, causal=True)
    o = jax.vmap(jax.vmap(chunked_dot_product_attention))(qs, ks, vs)  # (B, h, L, d)
    ```

    **Arguments:**

    - `q`, `k`, `v`: `(Lq, dk)`, `(Lk, dk)`, `(Lk, dv)` (vmap over heads).
    - `key_mask`: optional `(Lk,)` boolean, `True` = real key.
    - `causal`: query `i` sees keys `j <= i` (needs `Lq == Lk`).
    - `chunk_size`: the most keys per scan step; the keys are split into
      `ceil(Lk / chunk_size)` equal chunks, so little padding is ever added.
    - `scale`: defaults to `1/sqrt(dk)`.
    - `dropout_rate`, `key`: attention-weight dropout. Whether weight `(i, j)` is
      kept is a hash of a seed drawn from `key` and the positions `i`, `j`
      (`seqkit.kernels._dropout`), recomputed per chunk in the backward pass: the
      same mask as the dense path's for the same key, whatever `chunk_size`.
      The mask depends on the positions, not on the row: under `vmap`, give each
      head and example its own key (`jax.random.split`), or they all drop the
      same weights (the attention modules do this).
    - `impl`: `"xla"` (the online softmax above), `"cudnn"` (cuDNN's fused
      flash attention, also memory-linear; NVIDIA GPU, float16/bfloat16, no
      `key_mask`, no dropout: see [`seqkit.attention.dot_product_attention`][])
      or `"auto"` (default: cuDNN on GPU when it serves the call, the online
      softmax otherwise and always on CPU). `chunk_size` applies to `"xla"` only.

    **Returns:** `(Lq, dv)`.
    """
    Lq, dk = q.shape
    Lk = k.shape[0]
    if causal and Lq != Lk:
        raise ValueError(f"causal attention needs Lq == Lk, got {Lq} and {Lk}")
    if chunk_size < 1:
        raise ValueError(f"expected chunk_size >= 1, got {chunk_size}")
    scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    # A key mask is a mask array to cuDNN (which it does not take), so it keeps XLA.
    name = "chunked_dot_product_attention"
    if _dense_choice(impl, name, q, k, v, key_mask, causal, dropout_rate, key) == "cudnn":
        return _cudnn_attention(q, k, v, causal, scale)
    c = -(-Lk // -(-Lk // chunk_size))  # ceil(Lk / n_chunks): equal chunks, padding < n_chunks
    pad = (-Lk) % c
    kmask = jnp.ones((Lk,), bool) if key_mask is None else key_mask
    if pad:
        k = jnp.pad(k, ((0, pad), (0, 0)))
        v = jnp.pad(v, ((0, pad), (0, 0)))
        kmask = jnp.pad(kmask, (0, pad))
    rate = float(dropout_rate) if key is not None else 0.0
    seed = dropout_seed_array(key if rate else None)  # the mask `_dropout_weights` draws
    # Keys need masking when the caller gave a mask or the last chunk is padded.
    masked = key_mask is not None or pad > 0
    return _chunked(q, k, v, kmask, seed, causal, c, scale, rate, masked)
