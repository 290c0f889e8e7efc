"""Perceiver AR: the causal cross-attention into the latents against explicit
float64 loops, causality, and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from seqkit import attention as sa, nn as snn

V, D, H, N, L_MAX = 13, 8, 2, 4, 16


def _model(dtype=jnp.float64, n_layers=1):
    model, state = eqx.nn.make_with_state(snn.PerceiverAR)(
        vocab_size=V, d_model=D, n_latents=N, max_length=L_MAX, num_heads=H, n_layers=n_layers, ffn_mult=2,
        mixer=lambda i, k: sa.MultiHeadAttention(D, 2, causal=True, key=k), key=jr.key(0),
    )  # fmt: skip
    model = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)
    return model, state


def _np(a):
    return np.asarray(a, np.float64)


def _ln(x, ln):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * _np(ln.weight) + _np(ln.bias)


def _latents_reference(m, x, mask):
    """z after the cross-attention layer, from its definition, with loops over
    latents, heads and context positions."""
    L = len(x)
    e = _np(m.embedding.weight)[x] + _np(m.position_table)[:L]
    e = np.where(mask[:, None], e, 0.0)
    h = _ln(e, m.cross_norm)
    P = m.cross
    q = h @ _np(P.query.weight).T + _np(P.query.bias)
    k = h @ _np(P.key.weight).T + _np(P.key.bias)
    v = h @ _np(P.value.weight).T + _np(P.value.bias)
    dh = D // H
    out = np.zeros((N, D))
    for i in range(N):
        p = L - N + i
        for hd in range(H):
            sl = slice(hd * dh, (hd + 1) * dh)
            js = [j for j in range(L) if j <= p and mask[j]]
            s = np.array([q[p, sl] @ k[j, sl] / np.sqrt(dh) for j in js])
            w = np.exp(s - s.max())
            w /= w.sum()
            out[i, sl] = sum(wj * v[j, sl] for wj, j in zip(w, js, strict=True))
    z = e[L - N :] + out @ _np(P.output.weight).T + _np(P.output.bias)
    f = m.cross_ffn
    u = _ln(z, m.cross_ffn_norm) @ _np(f.up.weight).T + _np(f.up.bias)
    u = np.asarray(jax.nn.gelu(jnp.asarray(u)))
    return z + u @ _np(f.down.weight).T + _np(f.down.bias)


@pytest.mark.parametrize("L,pad", [(10, 0), (12, 3)])
def test_cross_attention_into_the_latents_matches_loops(L, pad, x64):
    model, state = _model()
    x = np.asarray(jr.randint(jr.key(1), (L,), 0, V))
    mask = np.ones(L, bool)
    mask[:pad] = False  # left padding: the latents stay real
    got, _ = model(jnp.asarray(x), state, mask=jnp.asarray(mask))
    z = jnp.asarray(_latents_reference(model, x, mask))
    for block in model.blocks:  # the latent stack: tested parts, applied to the reference latents
        z, _ = block(z, state)
    ref = jax.vmap(model.head)(jax.vmap(model.final_norm)(z))
    assert got.shape == (N, V)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-10)


def test_each_latent_sees_only_its_past():
    model, state = _model(jnp.float32, n_layers=2)
    L = 12
    x = jr.randint(jr.key(2), (L,), 0, V)
    base, _ = model(x, state)
    for t in (L - N, L - 2, L - 1):  # a latent position: rows before it unchanged
        out, _ = model(x.at[t].set((x[t] + 1) % V), state)
        i = t - (L - N)
        np.testing.assert_allclose(np.asarray(out[:i]), np.asarray(base[:i]), rtol=1e-5, atol=1e-6)
        assert not np.allclose(np.asarray(out[i:]), np.asarray(base[i:]))
    out, _ = model(x.at[0].set((x[0] + 1) % V), state)  # the context reaches every latent
    assert not np.allclose(np.asarray(out), np.asarray(base))


def test_perceiver_ar_errors():
    model, state = _model(jnp.float32)
    with pytest.raises(ValueError, match=r"context of 4 \(n_latents\) to 16 \(max_length\) tokens, got 3"):
        model(jnp.arange(3), state)
    with pytest.raises(ValueError, match="integer tokens"):
        model(jnp.zeros((8, 2)), state)
    # The type hint refuses it where annotations are checked (as here), the function's own check elsewhere.
    with pytest.raises(TypeError, match="PerceiverAR"):
        snn.generate(model, jnp.arange(5), 3, temperature=0, state=state)
    with pytest.raises(ValueError, match="n_latents <= max_length"):
        snn.PerceiverAR(
            vocab_size=V, d_model=D, n_latents=20, max_length=16, num_heads=2, n_layers=1,
            mixer=lambda i, k: sa.MultiHeadAttention(D, 2, causal=True, key=k), key=jr.key(0),
        )  # fmt: skip
