"""Dense and chunked softmax attention and MultiHeadAttention against a float64
NumPy reference."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.test_util
import numpy as np
import pytest
from attn_reference import combined_mask, np_attention, np_mha

import seqkit.attention as sa
from helpers import assert_close, dropout_keep_np


def _qkv(getkey, Lq, Lk, d=8, dv=6):
    return jr.normal(getkey(), (Lq, d)), jr.normal(getkey(), (Lk, d)), jr.normal(getkey(), (Lk, dv))


def test_dense_matches_reference_with_masks(getkey):
    q, k, v = _qkv(getkey, 9, 9)
    km = np.arange(9) < 7
    m = combined_mask(9, lambda i, j: True, km, causal=True)
    assert_close(sa.dot_product_attention(q, k, v, jnp.asarray(m)), np_attention(q, k, v, m), rtol=1e-5)
    # a row with no allowed key is zero and its lse is -inf
    m0 = m.copy()
    m0[3] = False
    o, lse = sa.attention_with_lse(q, k, v, jnp.asarray(m0))
    assert np.all(np.asarray(o[3]) == 0) and np.isneginf(float(lse[3]))
    assert_close(o, np_attention(q, k, v, m0), rtol=1e-5)


CHUNK_CASES = [
    (13, 13, 4, False),
    (13, 13, 4, True),
    (13, 13, 13, True),
    (16, 16, 5, True),
    (5, 17, 6, False),
]


@pytest.mark.parametrize("Lq,Lk,chunk,causal", CHUNK_CASES)
def test_chunked_matches_reference(getkey, Lq, Lk, chunk, causal):
    q, k, v = _qkv(getkey, Lq, Lk)
    km = np.arange(Lk) < Lk - 3
    m = np.array([[bool(km[j]) and (not causal or j <= i) for j in range(Lk)] for i in range(Lq)])
    got = jax.jit(
        lambda q, k, v, km: sa.chunked_dot_product_attention(
            q, k, v, key_mask=km, causal=causal, chunk_size=chunk
        )
    )(q, k, v, jnp.asarray(km))
    assert_close(got, np_attention(q, k, v, m), rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_gradients_match_dense(getkey, causal):
    """The custom VJP against autodiff of the dense formula, in float64."""
    jax.config.update("jax_enable_x64", True)
    try:
        q, k, v = (a.astype(jnp.float64) for a in _qkv(getkey, 11, 11))
        km = jnp.arange(11) < 9
        w = jr.normal(getkey(), (11, 6), jnp.float64)
        dense_mask = km[None, :] & (sa.causal_mask(11) if causal else True)

        def f_chunk(q, k, v):
            o = sa.chunked_dot_product_attention(q, k, v, key_mask=km, causal=causal, chunk_size=4)
            return jnp.sum(o * w)

        def f_dense(q, k, v):
            return jnp.sum(sa.dot_product_attention(q, k, v, dense_mask) * w)

        g1 = jax.jit(jax.grad(f_chunk, argnums=(0, 1, 2)))(q, k, v)
        g2 = jax.jit(jax.grad(f_dense, argnums=(0, 1, 2)))(q, k, v)
        for a, b in zip(g1, g2, strict=True):
            assert_close(a, b, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_dropout_gradient_is_exact(getkey, causal):
    """With dropout the backward pass regenerates the same masks: finite differences agree."""
    jax.config.update("jax_enable_x64", True)
    try:
        q, k, v = (a.astype(jnp.float64) for a in _qkv(getkey, 7, 7))
        key = getkey()
        f = lambda q, k, v: jnp.sum(  # noqa: E731
            sa.chunked_dot_product_attention(
                jnp.asarray(q),
                jnp.asarray(k),
                jnp.asarray(v),
                causal=causal,
                chunk_size=3,
                dropout_rate=0.3,
                key=key,
            )
            ** 2
        )
        jax.test_util.check_grads(f, (q, k, v), order=1, modes=["rev"])
    finally:
        jax.config.update("jax_enable_x64", False)


def _stream_seed(key):
    """The dropout stream's seed: 32 bits drawn from the key."""
    return int(jr.bits(key, (1,), jnp.uint32)[0])


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dense_dropout_drops_the_streams_weights(getkey, x64, rate):
    """Over leading axes (2, 3) the dense path keeps weight (r, i, j) when the hash
    of (seed, r, i, j) says so, `r` the flat index of the leading axes."""
    B, h, Lq, Lk = 2, 3, 9, 11
    q, k, v = (jr.normal(getkey(), (B, h, n, 8), jnp.float64) for n in (Lq, Lk, Lk))
    m = np.arange(Lk)[None, :] < 8 + (np.arange(Lq)[:, None] % 3)  # rows with 8, 9, 10 keys
    key = getkey()
    o, _ = sa.attention_with_lse(q, k, v, jnp.asarray(m), dropout_rate=rate, key=key)
    drop = dropout_keep_np(_stream_seed(key), B * h, Lq, Lk, rate).reshape(B, h, Lq, Lk) / (1 - rate)
    assert 0 < drop.mean() * (1 - rate) < 1  # some weights kept, some dropped
    for b in range(B):
        for i in range(h):
            assert_close(o[b, i], np_attention(q[b, i], k[b, i], v[b, i], m, drop=drop[b, i]), rtol=1e-12)


@pytest.mark.parametrize("Lq,Lk,chunk,causal", [*CHUNK_CASES, (12, 12, 12, False)])
def test_chunked_dropout_is_the_dense_mask_at_every_chunk_size(getkey, x64, Lq, Lk, chunk, causal):
    """The chunked path hashes absolute positions, so it drops the weights the dense
    path drops whatever the chunk size: the float64 reference with that mask, and
    the dense path's gradients."""
    q, k, v = (jr.normal(getkey(), (n, 8), jnp.float64) for n in (Lq, Lk, Lk))
    km = np.arange(Lk) < Lk - 2
    m = combined_mask(Lq, lambda i, j: True, km, causal=causal) if causal else np.broadcast_to(km, (Lq, Lk))
    key, rate = getkey(), 0.3
    drop = dropout_keep_np(_stream_seed(key), 1, Lq, Lk, rate)[0] / (1 - rate)

    def chunked(q, k, v):
        return sa.chunked_dot_product_attention(
            q, k, v, key_mask=jnp.asarray(km), causal=causal, chunk_size=chunk, dropout_rate=rate, key=key
        )

    def dense(q, k, v):
        return sa.dot_product_attention(q, k, v, jnp.asarray(m), dropout_rate=rate, key=key)

    assert_close(chunked(q, k, v), np_attention(q, k, v, m, drop=drop), rtol=1e-12)
    w = jr.normal(getkey(), (Lq, 8), jnp.float64)
    g1 = jax.grad(lambda *a: jnp.sum(chunked(*a) * w), argnums=(0, 1, 2))(q, k, v)
    g2 = jax.grad(lambda *a: jnp.sum(dense(*a) * w), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g1, g2, strict=True):
        assert_close(a, b, rtol=1e-10)


# Batched use: a `vmap` over the per-head function is folded into the row
# kernel's leading axis, which on CPU walks rows two at a time (odd row counts one
# at a time) and on accelerators takes all rows at once.
BATCH_CASES = [(3, 1), (2, 3), (1, 2)]  # rows: 3 (odd), 6 (pairs), 2 (one step)


def _batched(getkey, B, h, L, d=8, dtype=jnp.float32):
    q, k, v = (jr.normal(getkey(), (B, h, L, d), dtype) for _ in range(3))
    km = jnp.arange(L)[None, :] < jnp.asarray([L - 1 - b for b in range(B)])[:, None]  # per example
    return q, k, v, km


def _per_head(causal, chunk, **kw):
    def one(q, k, v, km):
        return sa.chunked_dot_product_attention(q, k, v, key_mask=km, causal=causal, chunk_size=chunk, **kw)

    # heads share their example's padding mask (unbatched over the inner vmap)
    return jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, None)))


@pytest.mark.parametrize("B,h", BATCH_CASES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("backend", ["cpu", "accelerator"])
def test_chunked_batched_matches_reference(getkey, monkeypatch, B, h, causal, backend):
    if backend == "accelerator":  # the all-rows-at-once schedule, chosen off CPU
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    L = 11
    q, k, v, km = _batched(getkey, B, h, L)
    got = jax.jit(_per_head(causal, 4))(q, k, v, km)
    for b in range(B):
        m = np.array([[bool(km[b, j]) and (not causal or j <= i) for j in range(L)] for i in range(L)])
        for i in range(h):
            assert_close(got[b, i], np_attention(q[b, i], k[b, i], v[b, i], m), rtol=1e-5)


@pytest.mark.parametrize("B,h", BATCH_CASES)
def test_chunked_batched_gradients_match_dense(getkey, B, h):
    """Gradients through the folded row kernels against autodiff of the dense formula (float64)."""
    jax.config.update("jax_enable_x64", True)
    try:
        L = 10
        q, k, v, km = _batched(getkey, B, h, L, dtype=jnp.float64)
        w = jr.normal(getkey(), (B, h, L, 8), jnp.float64)
        mask = km[:, None, None, :] & sa.causal_mask(L)

        def f_chunk(q, k, v):
            return jnp.sum(_per_head(True, 3)(q, k, v, km) * w)

        def f_dense(q, k, v):
            return jnp.sum(sa.dot_product_attention(q, k, v, mask) * w)

        g1 = jax.jit(jax.grad(f_chunk, argnums=(0, 1, 2)))(q, k, v)
        g2 = jax.jit(jax.grad(f_dense, argnums=(0, 1, 2)))(q, k, v)
        for a, b in zip(g1, g2, strict=True):
            assert_close(a, b, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_chunked_vmap_over_queries_only(getkey):
    """Keys and values shared across the vmapped axis (broadcast into the rows)."""
    q = jr.normal(getkey(), (5, 7, 8))
    k, v = jr.normal(getkey(), (9, 8)), jr.normal(getkey(), (9, 6))
    got = jax.vmap(lambda q: sa.chunked_dot_product_attention(q, k, v, chunk_size=4))(q)
    for i in range(5):
        assert_close(got[i], np_attention(q[i], k, v), rtol=1e-5)


def test_chunked_batched_dropout(getkey):
    """Per-head dropout keys under vmap: heads drop differently, and the backward
    pass regenerates each head's masks (finite differences agree)."""
    jax.config.update("jax_enable_x64", True)
    try:
        B, h, L = 2, 3, 7
        q, k, v, km = _batched(getkey, B, h, L, dtype=jnp.float64)
        keys = jr.split(getkey(), (B, h))

        def f(q, k, v):
            one = lambda q, k, v, m, kk: sa.chunked_dot_product_attention(  # noqa: E731
                q, k, v, key_mask=m, causal=True, chunk_size=3, dropout_rate=0.3, key=kk
            )
            return jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, None, 0)))(q, k, v, km, keys)

        same = jnp.broadcast_to(q[:, :1], q.shape)  # every head sees the same inputs
        o = f(same, jnp.broadcast_to(k[:, :1], k.shape), jnp.broadcast_to(v[:, :1], v.shape))
        assert not np.allclose(o[:, 0], o[:, 1])  # ...but drops different weights
        jax.test_util.check_grads(lambda q, k, v: jnp.sum(f(q, k, v) ** 2), (q, k, v), order=1, modes=["rev"])
    finally:
        jax.config.update("jax_enable_x64", False)


def test_merge_is_exact(getkey):
    q, k, v = _qkv(getkey, 6, 10)
    o1, l1 = sa.attention_with_lse(q, k[:4], v[:4])
    o2, l2 = sa.attention_with_lse(q, k[4:], v[4:])
    assert_close(sa.merge_attention([o1, o2], [l1, l2])[0], np_attention(q, k, v), rtol=1e-5)


@pytest.mark.parametrize("impl", ["chunked", "dense"])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_reference(getkey, impl, causal):
    L, d = 14, 16
    m = sa.MultiHeadAttention(d, 2, causal=causal, impl=impl, chunk_size=4, key=getkey())
    x = jr.normal(getkey(), (L, d))
    km = np.arange(L) < L - 2
    want = np_mha(m, x, combined_mask(L, lambda i, j: True, km, causal))
    got = eqx.filter_jit(lambda m, x, km: m(x, mask=km))(m, x, jnp.asarray(km))
    assert_close(got, want, rtol=1e-5)
