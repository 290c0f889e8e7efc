"""SPADE's fused layer: the combination of the two mixers' outputs against numpy,
step mode, padding, parameter groups."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from helpers import np_layer_norm
from seqkit import attention as sa, nn as snn
from seqkit._mixer import ssm_parameter_labels

D, L = 8, 24


def _f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, tree)


@pytest.mark.parametrize("combine", ["concat", "add", "stack"])
def test_fusion_combines_the_two_mixers_as_written(combine, x64):
    config = sa.SpadeConfig(num_heads=2, window_size=4, state_size=8, combine=combine, weight=0.3)
    m = _f64(config.build(D, max_length=L, key=jr.key(0)))
    if combine != "stack":  # non-trivial norm affines, so the reference must apply them
        affine = lambda f: (f.norm_global.weight, f.norm_global.bias, f.norm_local.weight, f.norm_local.bias)  # noqa: E731
        m = eqx.tree_at(affine, m, tuple(jr.normal(k, (D,), jnp.float64) for k in jr.split(jr.key(9), 4)))
    x = jr.normal(jr.key(1), (L, D), jnp.float64)
    y = np.asarray(m(x))
    g = np.asarray(m.global_mixer(x))
    if combine == "stack":
        ref = np.asarray(m.local_mixer(jnp.asarray(g)))
    else:
        l = np.asarray(m.local_mixer(x))
        gn, ln = np_layer_norm(m.norm_global, g), np_layer_norm(m.norm_local, l)
        if combine == "add":
            ref = 0.3 * gn + 0.7 * ln
        else:
            W, b = np.asarray(m.aggregate.weight), np.asarray(m.aggregate.bias)
            ref = np.concatenate([gn, ln], -1) @ W.T + b
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("combine", ["concat", "stack"])
def test_causal_fusion_steps_like_the_parallel_call(combine, x64):
    m = _f64(sa.SpadeConfig(num_heads=2, window_size=5, state_size=8, causal=True, combine=combine).build(
        D, max_length=L, key=jr.key(2)
    ))  # fmt: skip
    x = jr.normal(jr.key(3), (L, D), jnp.float64)

    def body(state, x_t):
        y_t, state = m.step(x_t, state)
        return state, y_t

    _, ys = jax.lax.scan(body, m.init_state(L), x)
    np.testing.assert_allclose(np.asarray(ys), np.asarray(m(x)), rtol=1e-9, atol=1e-9)


def test_padding_never_reaches_real_positions():
    m = sa.SpadeConfig(num_heads=2, window_size=4, state_size=8).build(D, max_length=L, key=jr.key(4))
    x = jr.normal(jr.key(5), (L, D))
    mask = jnp.arange(L) < 17
    a = m(x, mask=mask)
    b = m(x.at[17:].set(100.0), mask=mask)
    np.testing.assert_allclose(np.asarray(a[:17]), np.asarray(b[:17]), rtol=1e-5, atol=1e-5)


def test_ssm_parameters_are_the_s4_layers():
    m = sa.SpadeConfig(num_heads=2, window_size=4, state_size=8).build(D, max_length=L, key=jr.key(6))
    labels = ssm_parameter_labels(m)
    assert "ssm" in jax.tree.leaves(labels.global_mixer.core)
    assert set(jax.tree.leaves(labels.local_mixer)) == {"default"}
    assert set(jax.tree.leaves(labels.aggregate)) == {"default"}
    assert len(m.ssm_parameters()) == len(m.global_mixer.ssm_parameters()) > 0


def test_fusion_errors():
    s4 = snn.S4DConfig(state_size=4).build(D, max_length=L, key=jr.key(0))
    with pytest.raises(ValueError, match="one width"):
        snn.Fusion(s4, sa.LocalAttention(16, 2, key=jr.key(1)), key=jr.key(2))
    with pytest.raises((ValueError, TypeError), match="combine"):  # the type hint, where checked
        snn.Fusion(s4, sa.LocalAttention(D, 2, key=jr.key(1)), combine="mul", key=jr.key(2))
    bidirectional = snn.Fusion(s4, sa.LocalAttention(D, 2, key=jr.key(1)), key=jr.key(2))
    with pytest.raises(ValueError):
        bidirectional.init_state(L)
    sparse = snn.Fusion(s4, sa.SparseAttention(D, 2, key=jr.key(1)), key=jr.key(2))
    with pytest.raises(ValueError, match="the local mixer, SparseAttention, has no recurrent mode"):
        sparse.init_state(L)
