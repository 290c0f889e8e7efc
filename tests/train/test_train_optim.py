"""Parameter groups, the warmup+cosine schedule and the guarded optimizer, against
hand-written NumPy references."""

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import seqkit.nn as snn
import seqkit.train as st
from helpers import assert_close
from seqkit.ssm import DSS, EMA, S4, S4D


def small_model(key):
    ks = jr.split(key, 8)
    mixers = [
        snn.SSMLayer(S4(4, state_size=4, l_max=8, key=ks[0]), key=ks[1]),
        snn.SSMLayer(S4D(4, state_size=4, key=ks[2]), key=ks[3]),
        snn.SSMLayer(DSS(4, state_size=4, key=ks[4]), key=ks[5]),
        snn.SSMLayer(EMA(4, key=ks[6]), key=ks[7]),
    ]
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=1, d_model=4, n_classes=2, mixer=mixers, key=key
    )
    return model, state


def named_leaves(tree):
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        out[jax.tree_util.keystr(path)] = leaf
    return out


def test_param_labels_pick_ssm_fields(getkey):
    model, _ = small_model(getkey())
    labels = named_leaves(st.param_labels(eqx.filter(model, eqx.is_inexact_array)))
    ssm = {k for k, v in labels.items() if v == "ssm"}
    expected = set()
    fields = {
        0: ["log_neg_re", "lambda_im", "p_re", "p_im", "b_re", "b_im", "log_dt"],
        1: ["log_neg_re", "lambda_im", "b_re", "b_im", "log_dt"],
        2: ["lambda_re", "lambda_im", "log_dt"],
        3: ["alpha_logit", "delta_logit", "beta"],  # Mega's EMA: α, δ, β
    }
    for i, names in fields.items():
        expected |= {f".blocks[{i}].mixer.core.{n}" for n in names}
    assert ssm == expected
    # C, D, the EMA's η and ω, norms, encoder and head stay in the default group.
    assert labels[".blocks[0].mixer.core.c_re"] == "default"
    assert labels[".blocks[0].mixer.core.D"] == "default"
    assert labels[".blocks[3].mixer.core.eta"] == "default"
    assert labels[".blocks[3].mixer.core.omega"] == "default"
    assert labels[".head.weight"] == "default"
    # The same labels on the whole model (non-array leaves are labelled too).
    full = named_leaves(st.param_labels(model))
    assert {k for k, v in full.items() if v == "ssm"} == expected


class _NewFamily(snn.AbstractMixer):
    """A mixer the optimizer has never heard of, declaring one SSM leaf."""

    rate: jax.Array
    mix: jax.Array
    d_model: int = eqx.field(static=True)

    def __init__(self, d, key):
        self.rate = jnp.ones((d,))
        self.mix = jr.normal(key, (d, d))
        self.d_model = d

    def __call__(self, x, *, mask=None, key=None):
        return jnp.cumsum(x * self.rate, axis=0) @ self.mix

    def ssm_parameters(self):
        return (self.rate,)


def test_new_family_declares_its_group(getkey):
    # Nested inside another mixer (a wrapper with no declaration of its own):
    # the default ssm_parameters() gathers it from the nested mixer.
    class Wrapper(snn.AbstractMixer):
        inner: _NewFamily
        d_model: int = eqx.field(static=True)

        def __call__(self, x, *, mask=None, key=None):
            return self.inner(x)

    model, _ = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=1,
        d_model=4,
        n_classes=2,
        mixer=[_NewFamily(4, getkey()), Wrapper(_NewFamily(4, getkey()), 4)],
        key=getkey(),
    )
    labels = named_leaves(st.param_labels(eqx.filter(model, eqx.is_inexact_array)))
    assert {k for k, v in labels.items() if v == "ssm"} == {
        ".blocks[0].mixer.rate",
        ".blocks[1].mixer.inner.rate",
    }


def test_cosine_warmup_schedule():
    sched = st.cosine_warmup(0.5, 10, 110)
    for t in [0, 3, 10, 11, 60, 109, 110, 200]:
        if t < 10:
            ref = 0.5 * t / 10
        else:
            ref = 0.5 * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - 10) / 100)))
        assert_close(sched(t), ref, rtol=0, atol=1e-6)
    # The peak may be a traced array (vmapped sweeps).
    peaks = jnp.array([0.1, 0.2])
    got = jax.vmap(lambda p: st.cosine_warmup(p, 10, 110)(5))(peaks)
    assert_close(got, np.array([0.05, 0.1]), rtol=1e-6)


def undecayed_by_name(names):
    """The leaves the S4 code's grouping leaves out of weight decay, by their paths:
    the norms' scales and offsets, and the biases inside the blocks."""
    norm = re.compile(r"\.(norm|final_norm|ffn_norm)\.(weight|bias)$")
    return {n for n in names if norm.search(n) or (n.startswith(".blocks[") and n.endswith(".bias"))}


def test_norms_and_biases_group(getkey):
    model, _ = small_model(getkey())
    params = eqx.filter(model, eqx.is_inexact_array)
    plain = named_leaves(st.param_labels(params))
    labels = named_leaves(st.param_labels(params, decay_norms_and_biases=False))
    expected = undecayed_by_name(labels)
    assert {".blocks[0].norm.weight", ".final_norm.bias", ".blocks[2].mixer.output_map.bias"} <= expected
    assert {k for k, v in labels.items() if v == "no_decay"} == expected
    assert {k: v for k, v in labels.items() if k not in expected} == {
        k: v for k, v in plain.items() if k not in expected
    }  # the SSM group, the encoder's and the head's biases unchanged
    assert "no_decay" not in plain.values()


@pytest.mark.parametrize("decay_norms_and_biases", [True, False])
def test_groups_learning_rate_and_weight_decay(getkey, decay_norms_and_biases):
    model, _ = small_model(getkey())
    params = eqx.filter(model, eqx.is_inexact_array)
    lr, wd, ssm_lr = 0.01, 0.1, 0.001
    opt = st.make_optimizer(
        learning_rate=lr,
        weight_decay=wd,
        ssm_learning_rate=ssm_lr,
        warmup_steps=0,
        total_steps=100,
        decay_norms_and_biases=decay_norms_and_biases,
    )
    state = opt.init(params)
    grads = jax.tree.map(lambda p: jr.normal(getkey(), p.shape, p.dtype), params)
    updates, state = opt.update(grads, state, params)
    ssm = {k for k, v in named_leaves(st.param_labels(params)).items() if v == "ssm"}
    undecayed = set() if decay_norms_and_biases else undecayed_by_name(named_leaves(params))
    P, G, U = named_leaves(params), named_leaves(grads), named_leaves(updates)
    for name in P:
        g, p = np.asarray(G[name], np.float64), np.asarray(P[name], np.float64)
        # First Adam step: m̂ = g, v̂ = g², so the direction is g / (|g| + eps).
        adam = g / (np.abs(g) + 1e-8)
        if name in ssm:
            ref = -ssm_lr * adam
        elif name in undecayed:
            ref = -lr * adam
        else:
            ref = -lr * (adam + wd * p)
        assert_close(U[name], ref, rtol=1e-4, scale=max(lr, np.max(np.abs(ref))))
    # Hyperparameters live in the state as arrays (inject_hyperparams).
    hp = state.inner_state[0].inner_states["default"].inner_state.hyperparams
    assert float(hp["learning_rate"]) == pytest.approx(lr) and float(hp["weight_decay"]) == pytest.approx(wd)


def test_clipping_and_nonfinite_skip(getkey):
    params = {"w": jnp.ones((3,))}
    opt = st.make_optimizer(
        learning_rate=1.0, weight_decay=0.0, warmup_steps=0, total_steps=10, grad_clip=1.0
    )
    state = opt.init(params)
    # Clipping: the Adam direction is scale free, so check the clipped gradient feeds
    # Adam's first moment: m = (1 − b1) · clip(g).
    g = {"w": jnp.array([3.0, 4.0, 0.0])}
    _, state1 = opt.update(g, state, params)
    mu = state1.inner_state[1].inner_states["default"].inner_state.inner_state[0].mu
    assert_close(mu["w"], 0.1 * np.array([0.6, 0.8, 0.0]), rtol=1e-5)
    bad = {"w": jnp.array([jnp.nan, 1.0, 1.0])}
    upd, state2 = opt.update(bad, state1, params)
    assert_close(upd["w"], np.zeros(3), rtol=0)
    assert int(state2.total_notfinite) == 1 and int(state2.notfinite_count) == 1
    _, state3 = opt.update(g, state2, params)
    assert int(state3.total_notfinite) == 1 and int(state3.notfinite_count) == 0
