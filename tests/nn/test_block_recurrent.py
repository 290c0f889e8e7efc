"""The Block-Recurrent Transformer layer against a float64 numpy loop over blocks and
tokens written from the paper's equations; its step mode, causality and errors."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import seqkit.nn as snn
from helpers import assert_close, np_layer_norm

D, H = 8, 2


def _np(a):
    return np.asarray(a, dtype=np.float64)


def _linear(lin, x):
    return x @ _np(lin.weight).T + _np(lin.bias)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _attend(q, K, V):
    """Multi-head softmax attention of one query `(d,)` over rows `K`, `V` `(n, d)`,
    head by head; zeros where there is no key."""
    dh = D // H
    out = np.zeros(D)
    if len(K) == 0:
        return out
    for hd in range(H):
        sl = slice(hd * dh, (hd + 1) * dh)
        s = np.array([q[sl] @ k[sl] for k in K]) / math.sqrt(dh)
        w = np.exp(s - s.max())
        w /= w.sum()
        out[sl] = sum(wj * v[sl] for wj, v in zip(w, V, strict=True))
    return out


def reference(m, x, mask=None):
    """The layer from its equations: blocks of W, a state of M vectors, float64."""
    x = _np(x)
    L = x.shape[0]
    W, M = m.block_size, m.num_state
    mask = np.ones(L, bool) if mask is None else np.asarray(mask)
    qx, cx = _linear(m.tok_query, x), _linear(m.tok_cross_query, x)
    kx, vx = _linear(m.tok_key, x), _linear(m.tok_value, x)
    S = _np(m.state_init)
    y = np.zeros((L, D))
    prev = []
    for b in range(-(-L // W)):
        block = list(range(b * W, min(L, (b + 1) * W)))
        s = np_layer_norm(m.state_norm, S) + _np(m.state_pos)
        sq, sc = _linear(m.state_query, s), _linear(m.state_cross_query, s)
        ks, vs = _linear(m.state_key, s), _linear(m.state_value, s)
        for t in block:
            seen = [j for j in prev if mask[j]] + [j for j in block if j <= t and mask[j]]
            a = _attend(qx[t], kx[seen], vx[seen])
            c = _attend(cx[t], ks, vs)
            y[t] = _linear(m.tok_output, np.concatenate([a, c]))
        real = [j for j in block if mask[j]]
        if not real:  # a block of padding alone: no state update, the previous block stays
            continue
        Snew = np.zeros_like(S)
        for i in range(M):
            a = _attend(sq[i], ks, vs)
            c = _attend(sc[i], kx[real], vx[real])
            h = _linear(m.state_output, np.concatenate([a, c]))
            z = np.tanh(_linear(m.gate_z, h))
            if m.gate == "fixed":
                g = _sigmoid(_np(m.gate_bias))
                Snew[i] = S[i] * g + z * (1.0 - g)
            else:
                f = _sigmoid(_linear(m.gate_f, h))
                ig = _sigmoid(_linear(m.gate_i, h))
                Snew[i] = S[i] * f + z * ig
        S = Snew
        prev = block
    return y


def _layer(key, gate="fixed", W=3, M=4):
    m = snn.BlockRecurrent(D, H, block_size=W, num_state=M, gate=gate, key=key)
    # Move the gates and the state's embeddings away from their initial values.
    k1, k2 = jr.split(jr.fold_in(key, 1))
    if gate == "fixed":
        m = eqx.tree_at(lambda m: m.gate_bias, m, jr.normal(k1, (D,)))
    else:
        m = eqx.tree_at(lambda m: m.gate_f.bias, m, jr.normal(k1, (D,)))
    return eqx.tree_at(lambda m: m.state_pos, m, jr.normal(k2, (M, D)))


@pytest.mark.parametrize("gate", ["fixed", "lstm"])
def test_matches_the_reference_loop(x64, getkey, gate):
    m = _layer(getkey(), gate)
    x = jr.normal(getkey(), (11, D))  # blocks of 3: the last one partial (2 tokens)
    assert_close(m(x), reference(m, x), rtol=1e-10)
    # A state that changes over the blocks changes the outputs: not a sliding window alone.
    ref = reference(m, x)
    frozen = eqx.tree_at(lambda m: m.gate_z.weight, m, jnp.zeros_like(m.gate_z.weight))
    assert not np.allclose(reference(frozen, x)[6:], ref[6:])


@pytest.mark.parametrize("gate", ["fixed", "lstm"])
def test_padding(x64, getkey, gate):
    m = _layer(getkey(), gate, W=4)
    L = 13
    x = jr.normal(getkey(), (L, D))
    # Padding inside (position 2, a whole block 4..7) and at the end (11, 12).
    padded = jnp.array([2, 4, 5, 6, 7, 11, 12])
    junk = x.at[padded].set(9.0 * jr.normal(getkey(), (7, D)))
    mask = jnp.ones(L, bool).at[padded].set(False)
    ref = reference(m, x, mask)
    real = np.asarray(mask)
    for inp in (x, junk):
        y = m(inp, mask=mask)
        assert_close(np.asarray(y)[real], ref[real], rtol=1e-10)
    # Trailing padding gives the real positions the outputs of the short sequence.
    tail = jnp.arange(L) < 9
    assert_close(m(junk.at[:9].set(x[:9]), mask=tail)[:9], reference(m, x[:9]), rtol=1e-10)
    # Whole blocks of padding in front (as Perceiver AR pads a short latent window)
    # give the real positions the outputs of the unpadded sequence.
    for n_blocks in (1, 3):
        front = jnp.concatenate([9.0 * jr.normal(getkey(), (4 * n_blocks, D)), x])
        lead = jnp.arange(L + 4 * n_blocks) >= 4 * n_blocks
        assert_close(m(front, mask=lead)[4 * n_blocks :], reference(m, x), rtol=1e-10)
    # Gradients stay finite with a block of padding only.
    g = jax.grad(lambda x: jnp.sum(jnp.where(mask[:, None], m(x, mask=mask), 0.0)))(junk)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g[real]))) > 0


@pytest.mark.parametrize("gate", ["fixed", "lstm"])
def test_step_equals_the_parallel_call(x64, getkey, gate):
    m = _layer(getkey(), gate)
    L = 10
    x = jr.normal(getkey(), (L, D))

    def body(state, x_t):
        y_t, state = m.step(x_t, state)
        return state, y_t

    state, stepped = jax.lax.scan(body, m.init_state(L), x)
    assert_close(stepped, reference(m, x), rtol=1e-10)
    assert int(state.t) == L
    # After three whole blocks the stepped state is S_3 of the equations.
    assert not np.allclose(np.asarray(state.S), np.asarray(m.state_init))


def test_causal(x64, getkey):
    m = _layer(getkey(), "lstm")
    x = jr.normal(getkey(), (10, D))
    y = m(x)
    for t in (0, 4, 6, 9):
        y2 = m(x.at[t].add(3.0))
        np.testing.assert_array_equal(np.asarray(y2[:t]), np.asarray(y[:t]))
        assert not np.allclose(np.asarray(y2[t]), np.asarray(y[t]))


def test_dropout_and_inference(getkey):
    m = snn.BlockRecurrent(D, H, block_size=3, num_state=4, dropout=0.5, key=getkey())
    x = jr.normal(getkey(), (7, D))
    with pytest.raises(ValueError, match="dropout=0.5: pass key"):
        m(x)
    a, b = m(x, key=getkey()), m(x, key=getkey())
    assert a.shape == (7, D) and not np.allclose(np.asarray(a), np.asarray(b))
    inf = eqx.nn.inference_mode(m)
    assert_close(inf(x), reference(inf, x), rtol=1e-5)


def test_config_and_errors(getkey):
    cfg = snn.MixerConfig.from_kind("block_recurrent", num_heads=2, block_size=5, num_state=3, gate="lstm")
    assert isinstance(cfg, snn.BlockRecurrentConfig) and cfg.causal is True
    m = cfg.build(D, max_length=16, key=getkey())
    assert isinstance(m, snn.BlockRecurrent) and isinstance(m, snn.AbstractRecurrentMixer)
    assert (m.block_size, m.num_state, m.gate, m.causal) == (5, 3, "lstm", True)
    assert m.state_init.shape == (3, D) and m.gate_bias is None
    fixed = snn.BlockRecurrent(D, H, key=getkey())
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(fixed.gate_bias)), 0.9, rtol=1e-6)
    with pytest.raises(ValueError, match="expected causal=True, got causal=False"):
        snn.BlockRecurrentConfig(causal=False).build(D, max_length=16, key=getkey())
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        snn.BlockRecurrent(D, 3, key=getkey())
    with pytest.raises(ValueError, match="block_size >= 1, got 0"):
        snn.BlockRecurrent(D, H, block_size=0, key=getkey())
    with pytest.raises(ValueError, match="num_state >= 1, got 0"):
        snn.BlockRecurrent(D, H, num_state=0, key=getkey())
    with pytest.raises(ValueError, match="gate must be 'fixed' or 'lstm', got 'gru'"):
        snn.BlockRecurrent(D, H, gate="gru", key=getkey())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(L, 8\).*got \(5, 4\)"):
        m(jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"padding mask of shape \(5,\)"):
        m(jnp.zeros((5, D)), mask=jnp.ones(4, bool))
    with pytest.raises(ValueError, match=r"step input of shape \(8,\), got \(2, 8\)"):
        m.step(jnp.zeros((2, D)), m.init_state())
    with pytest.raises(ValueError, match="BlockRecurrentState.*got tuple"):
        m.step(jnp.zeros(D), ())
    with pytest.raises(ValueError, match="L >= 1"):
        m.init_state(0)
