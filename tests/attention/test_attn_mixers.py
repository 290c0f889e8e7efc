"""Properties every attention mixer must have: the mixer interface, padding
invariance, no leak to the future when causal, clear errors, dropout, batching."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from attn_variants import CAUSAL, NON_CAUSAL, VARIANTS, forms, params

import seqkit.attention as sa

L, D, H = 19, 16, 2


@pytest.mark.parametrize("name,cls,opts,_", params(VARIANTS))
def test_padding_does_not_reach_real_outputs(getkey, name, cls, opts, _):
    m = cls(D, H, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, D))
    mask = jnp.arange(L) < L - 5
    other = jnp.where(mask[:, None], x, 3.0 * jr.normal(getkey(), (L, D)))
    f = eqx.filter_jit(lambda m, x: m(x, mask=mask))
    y1, y2 = f(m, x), f(m, other)
    assert y1.shape == (L, D) and bool(jnp.all(jnp.isfinite(y1)))
    np.testing.assert_allclose(np.asarray(y1[:-5]), np.asarray(y2[:-5]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,cls,opts,causal", forms(VARIANTS))
def test_nonfinite_values_at_padded_positions_do_not_reach_real_outputs(getkey, name, cls, opts, causal):
    """Outputs at padded positions are unspecified, so an earlier layer may leave inf
    or NaN there: real outputs are those of finite padding (not 0 · NaN = NaN)."""
    m = cls(D, H, causal=causal, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, D))
    mask = (jnp.arange(L) >= 2) & (jnp.arange(L) < L - 5)  # padded on both sides
    f = eqx.filter_jit(lambda m, x: m(x, mask=mask))
    y = f(m, x)
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        y_bad = f(m, jnp.where(mask[:, None], x, bad))
        np.testing.assert_allclose(np.asarray(y_bad[mask]), np.asarray(y[mask]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,cls,opts,causal", forms(VARIANTS))
def test_fully_padded_input_is_finite(getkey, name, cls, opts, causal):
    """An input with no real position (a filler row of a batch, an empty document)
    gives finite outputs and finite parameter gradients, so it cannot poison a
    batch's update."""
    m = cls(D, H, causal=causal, key=getkey(), **opts)
    x = jr.normal(getkey(), (L, D))
    mask = jnp.zeros((L,), bool)
    y, grads = eqx.filter_jit(
        lambda m: (m(x, mask=mask), eqx.filter_grad(lambda m: jnp.sum(m(x, mask=mask) ** 2))(m))
    )(m)
    assert bool(jnp.all(jnp.isfinite(y)))
    assert all(
        bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    )


@pytest.mark.parametrize("name,cls,opts,_", params(CAUSAL))
def test_causal_no_leak(getkey, name, cls, opts, _):
    m = cls(D, H, causal=True, key=getkey(), **opts)
    n = 11
    x = jr.normal(getkey(), (n, D))
    J = np.asarray(jax.jit(jax.jacrev(lambda x: m(x)))(x))  # (n, D, n, D)
    norms = np.abs(J).sum(axis=(1, 3))  # [i, j]: sensitivity of output i to input j
    future = np.triu(np.ones((n, n), bool), 1)
    assert norms[future].max() == 0.0
    assert norms[-1, : n - 1].sum() > 0  # the last output does depend on the past
    # What gradients cannot see (sorting, bucketing, stop_gradient shifts): new
    # inputs from position 6 on leave outputs 0..5 as they were.
    later = x.at[6:].set(5.0 * jr.normal(getkey(), (n - 6, D)))
    np.testing.assert_allclose(np.asarray(m(later)[:6]), np.asarray(m(x)[:6]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,cls,opts,_", params(NON_CAUSAL))
def test_no_causal_form_raises(getkey, name, cls, opts, _):
    with pytest.raises(ValueError, match="causal"):
        cls(D, H, causal=True, key=getkey(), **opts)


def test_bad_inputs_raise(getkey):
    m = sa.LocalAttention(D, H, key=getkey())
    with pytest.raises(ValueError, match=r"expected input of shape \(L, 16\)"):
        m(jnp.zeros((4, 8)))
    with pytest.raises(ValueError, match="padding mask"):
        m(jnp.zeros((4, D)), mask=jnp.ones((5,), bool))
    with pytest.raises(ValueError, match="mode"):
        sa.LocalAttention(D, H, mode="strided", key=getkey())
    with pytest.raises(ValueError, match="divisible"):
        sa.MultiHeadAttention(D, 3, key=getkey())
    with pytest.raises(ValueError, match="max_len"):
        sa.Linformer(D, H, max_len=8, key=getkey())(jnp.zeros((9, D)))
    with pytest.raises(ValueError, match="expected proj_dim >= 1 and max_len >= 1, got 0 and 8"):
        sa.Linformer(D, H, proj_dim=0, max_len=8, key=getkey())
    with pytest.raises(ValueError, match="expected max_len >= 1 and factor >= 1, got 8 and 0"):
        sa.Synthesizer(D, H, max_len=8, mode="random", factorized=True, factor=0, key=getkey())
    with pytest.raises(ValueError, match="expected temperature > 0 and sinkhorn_iters >= 0, got 0.0 and 8"):
        sa.SinkhornAttention(D, H, temperature=0.0, key=getkey())


def test_dropout_needs_key_and_is_keyed(getkey):
    m = sa.MultiHeadAttention(D, H, dropout=0.5, key=getkey())
    x = jr.normal(getkey(), (L, D))
    with pytest.raises(ValueError, match="key"):
        m(x)
    k = getkey()
    np.testing.assert_array_equal(np.asarray(m(x, key=k)), np.asarray(m(x, key=k)))
    assert not np.allclose(np.asarray(m(x, key=k)), np.asarray(m(x, key=getkey())))
    mi = eqx.nn.inference_mode(m)
    md = sa.MultiHeadAttention(D, H, impl="dense", key=getkey())
    md = eqx.tree_at(lambda t: t.proj, md, m.proj)
    np.testing.assert_allclose(np.asarray(mi(x)), np.asarray(md(x)), rtol=1e-5, atol=1e-6)


def test_vmap_batch_and_luna_packed(getkey):
    m = sa.LunaAttention(D, H, packed_len=4, key=getkey())
    xs = jr.normal(getkey(), (3, L, D))
    ys = eqx.filter_jit(lambda m, xs: jax.vmap(m)(xs))(m, xs)
    np.testing.assert_allclose(np.asarray(ys[1]), np.asarray(m(xs[1])), rtol=1e-5, atol=1e-6)
    y, p = m.forward_with_packed(xs[0], m.packed)
    assert p.shape == (4, D) and y.shape == (L, D)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ys[0]), rtol=1e-5, atol=1e-6)
    # the packed sequence passed on changes the next layer's output
    m2 = sa.LunaAttention(D, H, packed_len=4, key=getkey())
    y2a, _ = m2.forward_with_packed(xs[2], p)
    y2b, _ = m2.forward_with_packed(xs[2], m2.packed)
    assert not np.allclose(np.asarray(y2a), np.asarray(y2b))


N_REAL, L_PAD = 13, 21  # no block size used here divides 13: partial blocks are covered


@pytest.mark.parametrize("name,cls,opts,causal", forms(VARIANTS))
def test_padding_equals_unpadded(x64, getkey, name, cls, opts, causal):
    """`m(x[:n]) == m(concat(x[:n], junk), mask=arange(L) < n)[:n]` in float64:
    padding at the end takes no part at all, whatever the lengths."""
    m = cls(D, H, causal=causal, key=getkey(), **opts)
    x = jr.normal(getkey(), (L_PAD, D), jnp.float64)
    x = x.at[N_REAL:].multiply(10.0)  # large junk: a leak would show
    f = eqx.filter_jit(lambda m, x, mask: m(x, mask=mask))
    y = f(m, x[:N_REAL], None)
    y_pad = f(m, x, jnp.arange(L_PAD) < N_REAL)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(y_pad[:N_REAL]), np.asarray(y), rtol=0, atol=1e-10)
