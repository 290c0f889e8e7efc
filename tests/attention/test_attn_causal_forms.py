"""The causal forms of Transformer-LS and Sinkhorn attention against dense
float64 NumPy references that build the same pattern with explicit loops, and
their padding invariance with padding inside the sequence."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from attn_reference import heads, out

import seqkit.attention as sa
from helpers import assert_close, np_layer_norm

L, D, H = 13, 8, 2
# padding inside the sequence and at its end (a causal form ignores later keys anyway)
KEY_MASK = np.array([i not in (4, 5, 11, 12) for i in range(L)])


def _np(a):
    return np.asarray(a, np.float64)


def _joint_softmax(q, keys, values):
    """One softmax over a (non-empty) list of keys."""
    s = np.array([q @ kk for kk in keys]) / np.sqrt(q.shape[0])
    w = np.exp(s - s.max())
    return (w / w.sum()) @ np.array(values)


def np_causal_longshort(m, x, km):
    x = _np(x)
    q, k, v = heads(m, x)
    w = m.window_size // 2
    seg = max(w, 1)
    n = -(-L // seg)
    logits = (x @ _np(m.dproj.weight).T + _np(m.dproj.bias)).reshape(L, H, m.rank)
    o = np.zeros_like(v)
    for h in range(H):
        kl, vl = np_layer_norm(m.ln_local, k[h]), np_layer_norm(m.ln_local, v[h])
        comp = []  # (segment, key, value) of every compressed row
        for s in range(n):
            real = [t for t in range(s * seg, min((s + 1) * seg, L)) if km[t]]
            if not real:
                continue
            for rho in range(m.rank):
                e = np.exp(logits[real, h, rho] - logits[real, h, rho].max())
                p = e / e.sum()
                kc = np_layer_norm(m.ln_global, p @ k[h][real])
                vc = np_layer_norm(m.ln_global, p @ v[h][real])
                comp.append((s, kc, vc))
        for i in range(L):
            raw = [j for j in range(max(0, i - w), i + 1) if km[j]]
            past = [(kc, vc) for s, kc, vc in comp if s < i // seg]
            keys = [kl[j] for j in raw] + [kc for kc, _ in past]
            vals = [vl[j] for j in raw] + [vc for _, vc in past]
            o[h, i] = _joint_softmax(q[h, i], keys, vals) if keys else 0.0
    return out(m, o)


def np_causal_sinkhorn(m, x, km):
    x = _np(x)
    b = m.block_size
    n = -(-L // b)
    xs = np.zeros((n, D))
    cnt = np.zeros(n)
    for t in range(L):
        if km[t]:
            xs[t // b] += x[t]
            cnt[t // b] += 1
    W = _np(m.sort_net.weight)
    R = np.full((n, n), -np.inf)  # blocks with no real token take no part in the sorting
    for r in range(n):
        c = xs[:r].sum(0) / max(cnt[:r].sum(), 1.0)  # summary of blocks before r
        for c_ in range(r):
            if cnt[r] == 0 or cnt[c_] == 0:
                continue
            s = xs[c_] / max(cnt[c_], 1.0)
            R[r, c_] = (W @ c) @ s / np.sqrt(D) / m.temperature
    X = R.copy()
    for _ in range(m.sinkhorn_iters):
        for r in range(1, n):
            if np.isfinite(X[r, :r]).any():
                X[r, :r] -= np.log(np.exp(X[r, :r]).sum())
        Y = X.copy()
        for r in range(n):
            for c_ in range(r):
                if np.isfinite(X[r, c_]):
                    Y[r, c_] = X[r, c_] - np.log(sum(np.exp(X[rr, c_]) for rr in range(c_ + 1, r + 1)))
        X = Y
    P = np.where(np.isfinite(X), np.exp(X), 0.0)
    q, k, v = heads(m, x)
    o = np.zeros_like(v)
    for h in range(H):
        kz = np.zeros((n * b, k.shape[-1]))
        vz = np.zeros((n * b, v.shape[-1]))
        real = np.zeros(n * b, bool)
        real[:L] = km
        kz[:L][km], vz[:L][km] = k[h][km], v[h][km]
        for i in range(L):
            blk = i // b
            own = [j for j in range(blk * b, i + 1) if km[j]]
            keys = [k[h, j] for j in own]
            vals = [v[h, j] for j in own]
            for t in range(b):
                if sum(P[blk, c_] * real[c_ * b + t] for c_ in range(blk)) > 0:
                    keys.append(sum(P[blk, c_] * kz[c_ * b + t] for c_ in range(blk)))
                    vals.append(sum(P[blk, c_] * vz[c_ * b + t] for c_ in range(blk)))
            o[h, i] = _joint_softmax(q[h, i], keys, vals) if keys else 0.0
    return out(m, o)


CASES = [
    pytest.param(sa.LongShortAttention, dict(window_size=6, rank=2), np_causal_longshort, id="longshort"),
    pytest.param(sa.LongShortAttention, dict(window_size=3, rank=3), np_causal_longshort, id="longshort-w1"),
    pytest.param(sa.SinkhornAttention, dict(block_size=3), np_causal_sinkhorn, id="sinkhorn"),
]


@pytest.mark.parametrize("cls,opts,ref", CASES)
def test_causal_form_matches_dense_reference(getkey, cls, opts, ref):
    m = cls(D, H, causal=True, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, D))
    got = eqx.filter_jit(lambda m, x, km: m(x, mask=km))(m, x, jnp.asarray(KEY_MASK))
    assert_close(got, ref(m, x, KEY_MASK), rtol=1e-4)


@pytest.mark.parametrize("cls,opts,_", CASES)
def test_causal_form_ignores_padding(getkey, cls, opts, _):
    m = cls(D, H, causal=True, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, D))
    km = jnp.asarray(KEY_MASK)
    other = jnp.where(km[:, None], x, 3.0 * jr.normal(getkey(), (L, D)))
    f = eqx.filter_jit(lambda m, x: m(x, mask=km))
    y1, y2 = f(m, x), f(m, other)
    assert bool(jnp.all(jnp.isfinite(y1)))
    np.testing.assert_allclose(np.asarray(y1[KEY_MASK]), np.asarray(y2[KEY_MASK]), rtol=1e-5, atol=1e-5)


def test_causal_sinkhorn_matrix_uses_past_rows_only(getkey):
    n = 6
    f = jax.jit(lambda a: sa.sinkhorn(a, 5, causal=True))
    a = jr.normal(getkey(), (n, n))
    P = np.asarray(f(a))
    assert np.all(np.triu(P) == 0.0) and np.all(np.tril(P, -1)[np.tril_indices(n, -1)] > 0)
    # changing rows >= r leaves rows < r unchanged
    b = a.at[3:].set(jr.normal(getkey(), (n - 3, n)))
    np.testing.assert_array_equal(np.asarray(f(b))[:3], P[:3])
