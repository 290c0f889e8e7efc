"""Block-sparse patterns (local, sparse, Longformer, BigBird) against dense
float64 references with the same pattern built by explicit loops."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from attn_reference import combined_mask, np_attention, np_mha

import seqkit.attention as sa
from helpers import assert_close


def _qkv(getkey, L, d=8):
    return [jr.normal(getkey(), (L, d)) for _ in range(3)]


def _jit(fn, q, k, v, km, **static):
    """Call a pattern function compiled once (much faster than op-by-op here)."""
    return jax.jit(lambda q, k, v, km: fn(q, k, v, key_mask=km, **static))(q, k, v, jnp.asarray(km))


def _key_mask(L, n_pad):
    return np.arange(L) < L - n_pad


@pytest.mark.parametrize(
    "mode,w,causal",
    [("block", 4, False), ("block", 5, True), ("sliding", 3, True), ("sliding", 6, False)],
)
def test_local_pattern(getkey, mode, w, causal):
    L = 19
    q, k, v = _qkv(getkey, L)
    km = _key_mask(L, 3)
    if mode == "block":
        rule = lambda i, j: i // w == j // w  # noqa: E731
    else:
        rule = lambda i, j: abs(i - j) < w  # noqa: E731
    got = _jit(sa.local_attention, q, k, v, km, window_size=w, mode=mode, causal=causal)
    want = np_attention(q, k, v, combined_mask(L, rule, km, causal))
    assert_close(got, want, rtol=1e-5)


@pytest.mark.parametrize("stride,causal", [(3, True), (4, False)])
def test_strided_pattern(getkey, stride, causal):
    L = 17
    q, k, v = _qkv(getkey, L)
    km = _key_mask(L, 2)
    rule = lambda i, j: abs(i - j) < stride or (i - j) % stride == 0  # noqa: E731
    got = _jit(sa.strided_sparse_attention, q, k, v, km, stride=stride, causal=causal)
    assert_close(got, np_attention(q, k, v, combined_mask(L, rule, km, causal)), rtol=1e-5)


@pytest.mark.parametrize("stride,c,causal", [(4, 1, True), (5, 2, False)])
def test_fixed_pattern(getkey, stride, c, causal):
    L = 18
    q, k, v = _qkv(getkey, L)
    km = _key_mask(L, 2)
    rule = lambda i, j: i // stride == j // stride or j % stride >= stride - c  # noqa: E731
    got = _jit(sa.fixed_sparse_attention, q, k, v, km, stride=stride, summary=c, causal=causal)
    assert_close(got, np_attention(q, k, v, combined_mask(L, rule, km, causal)), rtol=1e-5)


@pytest.mark.parametrize("w,g,causal", [(4, 2, True), (6, 0, False), (3, 1, False)])
def test_longformer_pattern(getkey, w, g, causal):
    L = 17
    q, k, v = _qkv(getkey, L)
    km = _key_mask(L, 2)
    r = w // 2
    rule = lambda i, j: abs(i - j) <= r or i < g or j < g  # noqa: E731
    got = _jit(sa.longformer_attention, q, k, v, km, window_size=w, num_global=g, causal=causal)
    assert_close(got, np_attention(q, k, v, combined_mask(L, rule, km, causal)), rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_pattern(getkey, causal):
    L, b, r, g = 22, 3, 2, 1
    q, k, v = _qkv(getkey, L)
    km = _key_mask(L, 2)
    seed = jr.key(7)
    idx = np.asarray(sa.bigbird_block_indices(L, b, r, g, causal, seed, jnp.asarray(km)))
    # the dense rule from the block list, checked by loops: global blocks see all
    rule = lambda i, j: i // b < g or j // b in set(idx[i // b].tolist())  # noqa: E731
    got = _jit(
        sa.bigbird_attention,
        q,
        k,
        v,
        km,
        block_size=b,
        num_random=r,
        num_global=g,
        causal=causal,
        seed=seed,
    )
    assert_close(got, np_attention(q, k, v, combined_mask(L, rule, km, causal)), rtol=1e-5)
    # window and global blocks are always present; random ones are distinct
    for n, row in enumerate(idx):
        want = {0, n - 1, n} if causal else {0, n - 1, n, n + 1}
        assert want & set(range(len(idx))) <= set(row.tolist())
        rnd = [x for x in row[g + (2 if causal else 3) :] if x >= 0]
        assert len(set(rnd)) == len(rnd)
    # random blocks come from the real blocks only (here blocks 0..3 hold real tokens)
    short = np.asarray(sa.bigbird_block_indices(L, b, r, g, causal, seed, jnp.arange(L) < 10))
    rnd = short[:, g + (2 if causal else 3) :]
    assert np.all(rnd < 4) and np.any(rnd >= 0)
    # the raw key bits stored on a module give the same draw as the key
    np.testing.assert_array_equal(
        np.asarray(sa.bigbird_block_indices(L, b, r, g, causal, jr.key_data(seed), jnp.asarray(km))), idx
    )


# ---- exact limits of the modules: equal to vanilla attention from a dense reference
LIMITS = [
    (sa.LocalAttention, dict(window_size=16, mode="block")),
    (sa.LocalAttention, dict(window_size=13, mode="sliding")),
    (sa.SparseAttention, dict(pattern="strided", stride=13)),
    (sa.SparseAttention, dict(pattern="fixed", stride=16, summary=4)),
    (sa.Longformer, dict(window_size=26, num_global=2)),
    (sa.BigBird, dict(block_size=3, num_random=5, num_global=1)),
    (sa.BigBird, dict(block_size=16, num_random=0, num_global=0)),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cls,opts", LIMITS, ids=lambda p: getattr(p, "__name__", str(p)))
def test_limit_equals_vanilla(getkey, cls, opts, causal):
    L, d = 13, 16
    m = cls(d, 2, causal=causal, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, d))
    km = _key_mask(L, 3)
    dense = combined_mask(L, lambda i, j: True, km, causal)
    got = eqx.filter_jit(lambda m, x, km: m(x, mask=km))(m, x, jnp.asarray(km))
    assert_close(got, np_mha(m, x, dense), rtol=1e-5)


@pytest.mark.parametrize(
    "cls,small,large",
    [
        (sa.LocalAttention, dict(window_size=16, mode="sliding"), dict(window_size=4096, mode="sliding")),
        (sa.LocalAttention, dict(window_size=16, mode="block"), dict(window_size=4096, mode="block")),
        (sa.Longformer, dict(window_size=32), dict(window_size=8192)),
        (sa.SparseAttention, dict(pattern="strided", stride=16), dict(pattern="strided", stride=4096)),
    ],
    ids=["sliding", "block", "longformer", "strided"],
)
def test_a_window_past_the_sequence_costs_what_a_window_of_the_sequence_does(getkey, cls, small, large):
    """A window (or stride) longer than L is one block of L: the same outputs, and
    compiled scratch memory that does not grow with the window (it did as
    window², 200 MB for one example of L = 64 at window 2048)."""
    L, d = 16, 8
    x = jr.normal(getkey(), (L, d))
    km = jnp.asarray(_key_mask(L, 3))
    key = getkey()
    outs, temps = [], []
    for opts in (small, large):
        params, static = eqx.partition(cls(d, 2, key=key, **opts), eqx.is_array)
        fn = jax.jit(lambda p, x, km, static=static: eqx.combine(p, static)(x, mask=km))
        outs.append(fn(params, x, km))
        temps.append(fn.lower(params, x, km).compile().memory_analysis().temp_size_in_bytes)
    assert_close(outs[1], outs[0], rtol=1e-5)  # both full attention, blocked differently
    assert temps[1] <= 2 * temps[0], temps


def test_pattern_functions_refuse_sizes_they_cannot_use(getkey):
    """The public pure functions check their sizes as the modules do: one
    ValueError naming the argument, not a ZeroDivisionError or all-zero rows."""
    q = jr.normal(getkey(), (8, 4))
    lsh_rotations = jr.normal(getkey(), (2, 4, 2))
    calls = [
        (lambda: sa.strided_sparse_attention(q, q, q, stride=0), "expected stride >= 1, got 0"),
        (lambda: sa.fixed_sparse_attention(q, q, q, stride=0, summary=1), "expected stride >= 1, got 0"),
        (lambda: sa.fixed_sparse_attention(q, q, q, stride=3, summary=0), "expected summary >= 1, got 0"),
        (lambda: sa.fixed_sparse_attention(q, q, q, stride=3, summary=5), r"summary <= stride .* 5 > 3"),
        (lambda: sa.longformer_attention(q, q, q, window_size=-2, num_global=0), "expected window_size >= 0"),
        (lambda: sa.longformer_attention(q, q, q, window_size=2, num_global=-1), "expected num_global >= 0"),
        (lambda: sa.segment_projection(q[:, :2], q, 0), "expected segment >= 1, got 0"),
        (lambda: sa.lsh_attention(q, q, lsh_rotations, chunk_size=0), "expected chunk_size >= 1, got 0"),
    ]
    for call, match in calls:
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(ValueError, match=r"expected summary <= stride .* 5 > 3"):
        sa.SparseAttention(8, 2, pattern="fixed", stride=3, summary=5, key=getkey())
    sa.SparseAttention(8, 2, pattern="strided", stride=3, summary=5, key=getkey())  # summary unused
