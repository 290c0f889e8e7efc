"""Whole attention modules (projections included) against float64 NumPy
references written from the papers' definitions with explicit loops: Reformer's
LSH attention, Synthesizer (dense and random, plain and factorized), Luna's pack
and unpack, and ContextPool. The references read only the modules' parameters
(weights, Reformer's random rotations), never their pattern code.

Every module is built with dropout on and then put in inference mode, cast to
float64, and compared to the reference to 1e-10, with key-padding masks that pad
inside the sequence and at its end, and lengths that are no multiple of any
chunk or bucket size."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from attn_reference import combined_mask, np_attention, out

import seqkit.attention as sa
from helpers import assert_close, np_layer_norm

D, H = 8, 2
ATOL = 1e-10
# the unit-normalization of Reformer's shared keys divides by `|q| + 1e-6`
# (a stabilizer, like a LayerNorm's eps)
NORM_EPS = 1e-6


def _np(a):
    return np.asarray(a, np.float64)


def _lin(layer, a):
    return a @ _np(layer.weight).T + _np(layer.bias)


def _split(layer, a):
    """`a W + b` cut into the `H` heads, `(H, n, D / H)`."""
    return _lin(layer, a).reshape(a.shape[0], H, -1).transpose(1, 0, 2)


def _merge(proj, o):
    """Heads `(H, n, dh)` concatenated and mapped by `proj.output`."""
    y = o.transpose(1, 0, 2).reshape(o.shape[1], -1)
    return _lin(proj.output, y)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _key_mask(L, padded):
    return None if padded is None else np.array([i not in padded for i in range(L)])


def _module(cls, seed, **opts):
    """`cls` with dropout on, in inference mode, every float leaf in float64."""
    m = eqx.nn.inference_mode(cls(D, H, dropout=0.25, key=jr.key(seed), **opts))
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, m)


def _x(seed, L):
    return np.random.default_rng(seed).standard_normal((L, D))


def _call(m, x, km):
    f = eqx.filter_jit(lambda m, x, km: m(x, mask=km))
    y = f(m, jnp.asarray(x), None if km is None else jnp.asarray(km))
    assert y.dtype == jnp.float64
    return np.asarray(y)


# ---------------------------------------------------------------------------
# Reformer (Kitaev et al., 2020)


def np_reformer(m, x, km):
    """LSH attention with shared QK, by its definition. Per head: keys are the
    unit-normalized queries; for each hash round, every real position gets the
    bucket `argmax([k R, −k R])` (`R`: the round's first `nb` rotation columns,
    `nb = num_buckets / 2`, or `max(1, ceil(n_real / (2 · chunk)))`), the real
    positions are sorted by (bucket, position) and cut into chunks, and a query
    sees the keys of its chunk and the previous one (the first chunk's previous
    one is the last). Each query attends (softmax of `q · k / sqrt(dh)`) to the
    union of the keys it sees in any round, each once, never to itself unless it
    is the only key (Kitaev et al., appendix A: multi-round deduplication).
    Returns `(L, d)`; rows of padded positions are left at the output bias."""
    L, c = x.shape[0], m.chunk_size
    real = [i for i in range(L) if km is None or km[i]]
    q, v = _split(m.proj.query, x), _split(m.proj.value, x)
    dh = q.shape[-1]
    R = _np(m.rotations(L))  # (H, rounds, dh, columns): the module's random rotations
    nb = m.num_buckets // 2 if m.num_buckets else max(1, math.ceil(len(real) / (2 * c)))
    assert R.shape[-1] >= nb
    o = np.zeros_like(v)
    for h in range(H):
        k = q[h] / (np.linalg.norm(q[h], axis=-1, keepdims=True) + NORM_EPS)
        seen = {i: set() for i in real}  # the union over the rounds
        for r in range(m.num_hashes):
            xr = k @ R[h, r, :, :nb]
            bucket = {i: int(np.argmax(np.concatenate([xr[i], -xr[i]]))) for i in real}
            order = sorted(real, key=lambda i: (bucket[i], i))
            chunks = [order[s : s + c] for s in range(0, len(order), c)]
            for n, chunk in enumerate(chunks):
                for i in chunk:
                    seen[i] |= set(chunk) | set(chunks[n - 1])  # chunks[-1] for the first chunk
        for i in real:
            keys = sorted(j for j in seen[i] if j != i) or [i]
            s = np.array([q[h, i] @ k[j] for j in keys]) / np.sqrt(dh)
            e = np.exp(s - s.max())
            o[h, i] = e @ v[h, keys] / e.sum()
    return out(m, o)


REFORMER_CASES = [
    # L, chunk, hashes, num_buckets, padded positions, seed. The first three have
    # at least three real chunks, so a chunk does not see every key and the
    # rounds differ; the last two: a single real chunk (its own previous one),
    # and a lone real token (which attends to itself).
    pytest.param(13, 3, 2, None, None, 0, id="L13-c3-unpadded"),
    pytest.param(13, 3, 2, None, (4, 10, 11, 12), 1, id="L13-c3-padded"),
    pytest.param(14, 3, 3, 6, (2, 13), 2, id="L14-c3-nb6-padded"),
    pytest.param(7, 5, 2, None, (1, 5, 6), 3, id="one-real-chunk"),
    pytest.param(5, 2, 2, None, (0, 1, 3, 4), 4, id="one-real-token"),
]


@pytest.mark.parametrize("L,chunk,hashes,num_buckets,padded,seed", REFORMER_CASES)
def test_reformer_matches_lsh_reference(x64, L, chunk, hashes, num_buckets, padded, seed):
    m = _module(sa.ReformerAttention, seed, chunk_size=chunk, num_hashes=hashes, num_buckets=num_buckets)
    x, km = _x(seed, L), _key_mask(L, padded)
    got = _call(m, x, km)
    assert np.all(np.isfinite(got))
    rows = slice(None) if km is None else km  # padded rows' outputs are not defined
    assert_close(got[rows], np_reformer(m, x, km)[rows], rtol=0.0, atol=ATOL)


# ---------------------------------------------------------------------------
# Synthesizer (Tay et al., 2021)


def np_synthesizer_logits(m, x):
    """The synthesized `B`, `(H, L, L)`: dense `B_i = W2 relu(W1 x_i + b1) + b2`
    (head `h`: outputs `h · n .. (h + 1) · n`; factorized: `a` the first `factor`
    of them, `b` the rest, row `p · len(b) + t` = `a_p b_t`), random `R` (or
    `R1 R2ᵀ`), each cut to the leading `L × L` block."""
    L = x.shape[0]
    B = np.zeros((H, L, L))
    if m.mode == "dense":
        pred = _lin(m.w2, np.maximum(_lin(m.w1, x), 0.0)).reshape(L, H, -1)
        for h in range(H):
            for i in range(L):
                if m.factorized:
                    a, b = pred[i, h, : m.factor], pred[i, h, m.factor :]
                    row = [a[p] * b[t] for p in range(len(a)) for t in range(len(b))]
                else:
                    row = pred[i, h]
                assert len(row) == m.max_len
                B[h, i] = row[:L]
        return B
    R = _np(m.R)
    for h in range(H):
        for i in range(L):
            for j in range(L):
                B[h, i, j] = R[0, h, i] @ R[1, h, j] if m.factorized else R[h, i, j]
    return B


def np_synthesizer(m, x, km, causal):
    L = x.shape[0]
    B = np_synthesizer_logits(m, x)
    v = _split(m.proj.value, x)
    mask = combined_mask(L, lambda i, j: True, km, causal)
    # softmax(B) V: np_attention with identity keys and scale 1 has logits B
    return out(m, np.stack([np_attention(B[h], np.eye(L), v[h], mask, scale=1.0) for h in range(H)]))


SYNTH_CASES = [
    # every variant on one of two shapes and seeds, with padding inside and at the end
    pytest.param(dict(mode="dense"), 13, (5, 11, 12), 0, id="dense-L13"),
    pytest.param(dict(mode="dense", factorized=True, factor=4), 11, (3, 4, 10), 1, id="dense-fact-L11"),
    pytest.param(dict(mode="random"), 11, (3, 4, 10), 2, id="random-L11"),
    pytest.param(dict(mode="random", factorized=True, factor=3), 13, (5, 11, 12), 3, id="random-fact-L13"),
]


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("opts,L,padded,seed", SYNTH_CASES)
def test_synthesizer_matches_reference(x64, opts, L, padded, seed, causal):
    m = _module(sa.Synthesizer, seed, causal=causal, max_len=16, **opts)
    x, km = _x(seed, L), _key_mask(L, padded)
    assert_close(_call(m, x, km), np_synthesizer(m, x, km, causal), rtol=0.0, atol=ATOL)


def test_synthesizer_unpadded_matches_reference(x64):
    m = _module(sa.Synthesizer, 5, causal=True, max_len=16, mode="random")
    x = _x(5, 9)
    assert_close(_call(m, x, None), np_synthesizer(m, x, None, True), rtol=0.0, atol=ATOL)


# ---------------------------------------------------------------------------
# Luna (Ma et al., 2021)


def np_luna(m, x, p, km):
    """Pack: the `l` rows of `p` attend (multi-head, `pack_proj`) to the real
    tokens of `x`; unpack: every token attends (multi-head, `proj`) to the packed
    rows. Returns the output and `LayerNorm(P_packed + p)`."""
    L, lp = x.shape[0], p.shape[0]
    q, k, v = _split(m.pack_proj.query, p), _split(m.pack_proj.key, x), _split(m.pack_proj.value, x)
    pack_mask = [[km is None or bool(km[j]) for j in range(L)] for _ in range(lp)]
    packed = _merge(m.pack_proj, np.stack([np_attention(q[h], k[h], v[h], pack_mask) for h in range(H)]))
    q, k, v = _split(m.proj.query, x), _split(m.proj.key, packed), _split(m.proj.value, packed)
    y = _merge(m.proj, np.stack([np_attention(q[h], k[h], v[h]) for h in range(H)]))
    return y, np_layer_norm(m.norm, packed + p)


@pytest.mark.parametrize(
    "L,packed_len,padded,seed",
    [(13, 3, (4, 11, 12), 0), (11, 5, None, 1), (10, 4, (0, 7, 8, 9), 2)],
    ids=["L13-l3-padded", "L11-l5", "L10-l4-padded"],
)
def test_luna_matches_reference(x64, L, packed_len, padded, seed):
    m = _module(sa.LunaAttention, seed, packed_len=packed_len)
    x, km = _x(seed, L), _key_mask(L, padded)
    want, _ = np_luna(m, x, _np(m.packed), km)
    assert_close(_call(m, x, km), want, rtol=0.0, atol=ATOL)


def test_luna_forward_with_packed_matches_reference(x64):
    """A propagated packed sequence (here longer than `packed_len`) and the next
    layer's packed sequence `LayerNorm(P_packed + P)`."""
    m = _module(sa.LunaAttention, 3, packed_len=3)
    L = 11
    x, km = _x(3, L), _key_mask(L, (2, 9, 10))
    p = np.random.default_rng(7).standard_normal((5, D))
    f = eqx.filter_jit(lambda m, x, p, km: m.forward_with_packed(x, p, mask=km))
    y, p_next = f(m, jnp.asarray(x), jnp.asarray(p), jnp.asarray(km))
    want_y, want_p = np_luna(m, x, p, km)
    assert_close(y, want_y, rtol=0.0, atol=ATOL)
    assert_close(p_next, want_p, rtol=0.0, atol=ATOL)


# ---------------------------------------------------------------------------
# ContextPool (Huang et al., 2022)


def np_context_pool(m, x, km, causal):
    """Pooled context `c_i = Σ_j g_ij w_j x_j / Σ_j g_ij w_j` over `|i − j| <=
    max_support` (and `j <= i` when causal), `g_ij = exp(−(i − j)² / (2 σ_i²))`,
    `w_j = sigmoid(pool_net(x_j)_0)` (0 for padded `j`), `σ_i = 1 + (max_support
    − 1) sigmoid(pool_net(x_i)_1)`; then multi-head softmax attention with
    queries from `x`, keys and values from `c`, padded (and, causal, future)
    keys masked."""
    L, s = x.shape[0], m.max_support
    a = _lin(m.pool_net, x)
    w = _sigmoid(a[:, 0])
    sigma = 1.0 + (s - 1) * _sigmoid(a[:, 1])
    c = np.zeros_like(x)
    for i in range(L):
        num, den = np.zeros(D), 0.0
        for j in range(L):
            if abs(i - j) > s or (causal and j > i) or (km is not None and not km[j]):
                continue
            g = np.exp(-((i - j) ** 2) / (2.0 * sigma[i] ** 2))
            num, den = num + g * w[j] * x[j], den + g * w[j]
        c[i] = num / den if den > 0 else 0.0  # den = 0 only for a padded i, a masked key
    q, k, v = _split(m.proj.query, x), _split(m.proj.key, c), _split(m.proj.value, c)
    mask = combined_mask(L, lambda i, j: True, km, causal)
    return out(m, np.stack([np_attention(q[h], k[h], v[h], mask) for h in range(H)]))


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize(
    "L,max_support,padded,seed",
    [(13, 2, (3, 4, 5, 6, 12), 0), (11, 4, (7, 10), 1), (9, 3, None, 2)],
    ids=["L13-s2-padded", "L11-s4-padded", "L9-s3"],
)
def test_context_pool_matches_reference(x64, causal, L, max_support, padded, seed):
    m = _module(sa.ContextPool, seed, causal=causal, max_support=max_support)
    x, km = _x(seed, L), _key_mask(L, padded)
    assert_close(_call(m, x, km), np_context_pool(m, x, km, causal), rtol=0.0, atol=ATOL)
