"""Perceiver AR: the causal cross-attention into the latents against explicit
float64 loops (a context shorter than the latents included), causality,
generation against the parallel model on every prefix, and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from helpers import np_layer_norm
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


def _latents_reference(m, x, mask):
    """z after the cross-attention layer, from its definition, with loops over
    latents, heads and context positions. The latents are the last
    `min(N, L)` positions."""
    L = len(x)
    N = min(m.n_latents, L)
    e = _np(m.embedding.weight)[x] + _np(m.position_table)[:L]
    e = np.where(mask[:, None], e, 0.0)
    h = np_layer_norm(m.cross_norm, e)
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
    u = np_layer_norm(m.cross_ffn_norm, z) @ _np(f.up.weight).T + _np(f.up.bias)
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


@pytest.mark.parametrize("L", [1, 3])
def test_a_context_shorter_than_the_latents_uses_every_position(L, x64):
    """`L < N`: every position is a latent. Reference: the loops' cross-attention
    for those `L` latents, then the latent stack on them alone (no padding)."""
    model, state = _model(n_layers=2)
    x = np.asarray(jr.randint(jr.key(3), (L,), 0, V))
    got, _ = model(jnp.asarray(x), state)
    z = jnp.asarray(_latents_reference(model, x, np.ones(L, bool)))
    for block in model.blocks:
        z, _ = block(z, state)
    ref = jax.vmap(model.head)(jax.vmap(model.final_norm)(z))
    assert got.shape == (L, V)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("P,n", [(2, 4), (5, 3), (10, 7)])
def test_greedy_generation_is_the_parallel_model_on_every_prefix(P, n, x64):
    """Token `t + 1` is the argmax of `model(x[: t + 1])`'s last row, with the same
    logits, for a prompt shorter (2, the window crossing N = 4 while generating)
    and longer (5) than the latents, and up to the full max_length = 16 positions
    read (10 + 7 − 1: the last token is predicted, never read)."""
    model, state = _model(n_layers=2)
    model = eqx.nn.inference_mode(model)
    prompt = jr.randint(jr.key(4), (P,), 0, V)
    tokens, logits = snn.generate(model, prompt, n, temperature=0, state=state, return_logits=True)
    seq = np.concatenate([np.asarray(prompt), np.asarray(tokens)])
    assert tokens.shape == (n,) and logits.shape == (P + n - 1, V)
    for t in range(P + n - 1):
        ref, _ = model(jnp.asarray(seq[: t + 1]), state)
        np.testing.assert_allclose(np.asarray(logits[t]), np.asarray(ref[-1]), rtol=1e-9, atol=1e-9)
        if t + 1 >= P:
            assert seq[t + 1] == int(jnp.argmax(ref[-1]))


def test_sampling_from_perceiver_ar_follows_the_key():
    model, state = _model(jnp.float32)
    prompt = jnp.arange(5) % V
    a = snn.generate(model, prompt, 6, temperature=1.0, top_k=3, key=jr.key(7), state=state)
    b = snn.generate(model, prompt, 6, temperature=1.0, top_k=3, key=jr.key(7), state=state)
    c = snn.generate(model, prompt, 6, temperature=1.0, key=jr.key(8), state=state)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.shape == c.shape == (6,) and int(a.min()) >= 0 and int(a.max()) < V


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
    with pytest.raises(ValueError, match=r"context of 1 to 16 \(max_length\) tokens, got 17"):
        model(jnp.arange(17), state)
    with pytest.raises(ValueError, match="integer tokens"):
        model(jnp.zeros((8, 2)), state)
    with pytest.raises(ValueError, match=r"\(10\) \+ n \(8\) - 1 = 17 positions read .* max_length=16"):
        snn.generate(model, jnp.arange(10), 8, temperature=0, state=state)
    with pytest.raises(ValueError, match="n_latents <= max_length"):
        snn.PerceiverAR(
            vocab_size=V, d_model=D, n_latents=20, max_length=16, num_heads=2, n_layers=1,
            mixer=lambda i, k: sa.MultiHeadAttention(D, 2, causal=True, key=k), key=jr.key(0),
        )  # fmt: skip
    # A bidirectional latent stack would let a latent read the tokens it predicts.
    with pytest.raises(ValueError, match=r"latent layer 1: expected a causal mixer .*MultiHeadAttention"):
        snn.PerceiverAR(
            vocab_size=V, d_model=D, n_latents=4, max_length=16, num_heads=2, n_layers=2,
            mixer=lambda i, k: sa.MultiHeadAttention(D, 2, causal=i == 0, key=k), key=jr.key(0),
        )  # fmt: skip
