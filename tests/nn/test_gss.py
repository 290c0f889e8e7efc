"""GSS against a float64 NumPy reference built from its parameters and SPEC §1.4."""

import math

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from mixer_testing import QUICK_RECALL, fit_recall, future_dependence, np_layernorm, np_linear

from helpers import assert_close, scan_steps, to_np
from seqkit.nn import GSS


def np_gelu(x):
    # jax.nn.gelu's default: the tanh approximation.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def np_dss_exp(u, core):
    """DSS-exp as its diagonal recurrence, no D: `s_k = exp(λΔ) s_{k−1} + (exp(λΔ) − 1)/λ u_k`,
    `y_k = Re Σ_n w_n s_k`; a bidirectional core adds the backward recurrence on the
    reversed sequence with its own `w`."""
    re = -np.maximum(np.exp(to_np(core.lambda_re)), 1e-4)
    lam = re + 1j * to_np(core.lambda_im)  # (H, n)
    dt = np.exp(np.clip(to_np(core.log_dt), math.log(1e-6), math.log(10.0)))[:, None]
    a = np.exp(lam * dt)
    b = (a - 1.0) / lam
    w = to_np(core.w_re) + 1j * to_np(core.w_im)
    ws = w[None] if w.ndim == 2 else w

    def run(seq, wd):
        s = np.zeros(lam.shape, np.complex128)
        out = []
        for u_k in seq:
            s = a * s + b * u_k[:, None]
            out.append(np.real((wd * s).sum(-1)))
        return np.stack(out)

    y = run(u, ws[0])
    if ws.shape[0] == 2:
        y = y + run(u[::-1], ws[1])[::-1]
    return y


def np_gss(layer, x, mask=None):
    x = to_np(x)
    xn = np_layernorm(x, layer.norm)
    v = np_gelu(np_linear(xn, layer.proj_v))
    u = np_gelu(np_linear(xn, layer.proj_u))
    if mask is not None:
        u = u * np.asarray(mask)[:, None]
    y = np_dss_exp(u, layer.core)
    return np_linear(np_linear(y, layer.proj_y) * v, layer.proj_o) + x


def small(getkey, **kw):
    """One small shape for every test, so the eager op compilations are shared."""
    return GSS(6, ssm_dim=3, expansion=2, state_size=16, **kw, key=getkey())


@pytest.mark.parametrize("causal", [True, False])
def test_gss_matches_reference(getkey, causal):
    layer = small(getkey, causal=causal)
    x = jr.normal(getkey(), (12, 6))
    assert_close(layer(x), np_gss(layer, x), rtol=1e-4)


def test_gss_step_matches_parallel(getkey):
    layer = small(getkey)
    x = jr.normal(getkey(), (12, 6))

    ys = scan_steps(layer, x, layer.init_state())
    assert_close(ys, layer(x), rtol=1e-5)


def test_gss_softmax_variant_step_matches_parallel(getkey):
    layer = small(getkey, variant="softmax")
    x = jr.normal(getkey(), (12, 6))

    ys = scan_steps(layer, x, layer.init_state(12))
    assert_close(ys, layer(x), rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_gss_padding_does_not_change_real_outputs(getkey, causal):
    layer = small(getkey, causal=causal)
    L = 12
    mask = np.ones(L, bool)
    mask[[2, 7, 10, 11]] = False
    x1 = jr.normal(getkey(), (L, 6))
    x2 = jnp.where(jnp.asarray(mask)[:, None], x1, 100.0 * jr.normal(getkey(), (L, 6)))
    y1, y2 = layer(x1, mask=jnp.asarray(mask)), layer(x2, mask=jnp.asarray(mask))
    assert_close(y1[mask], y2[mask], rtol=1e-6)
    assert_close(y1[mask], np_gss(layer, x1, mask)[mask], rtol=1e-4)


def test_gss_causal_no_leak(getkey):
    layer = small(getkey)
    L = 12
    x = jr.normal(getkey(), (L, 6))
    J, future = future_dependence(layer, x)
    # The only path from the future is the FFT convolution, whose zero-padded
    # taps are zero up to float32 round-off; every other path is per-position.
    assert J[future].max() <= 1e-6 * J.max()
    assert (J[~future] > 0).any()


def test_gss_dropout_is_keyed(getkey):
    layer = small(getkey, dropout=0.5)
    x = jr.normal(getkey(), (12, 6))
    k1, k2 = getkey(), getkey()
    assert np.array_equal(layer(x, key=k1), layer(x, key=k1))
    assert not np.allclose(layer(x, key=k1), layer(x, key=k2))
    no_drop = eqx.tree_at(lambda m: m.dropout, layer, eqx.nn.Dropout(0.0))
    assert np.array_equal(eqx.nn.inference_mode(layer)(x), no_drop(x))


def test_gss_errors(getkey):
    layer = small(getkey)
    with pytest.raises(ValueError, match=r"expected input of shape \(L, 6\)"):
        layer(jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(L, 6\)"):
        layer(jnp.zeros((2, 5, 6)))
    with pytest.raises(ValueError, match="padding mask of shape"):
        layer(jnp.zeros((5, 6)), mask=jnp.ones(4, bool))
    with pytest.raises(ValueError, match="bool padding mask"):
        layer(jnp.zeros((5, 6)), mask=jnp.ones(5))
    with pytest.raises(ValueError, match="step input of shape"):
        layer.step(jnp.zeros(5), layer.init_state())
    bidir = small(getkey, causal=False)
    with pytest.raises(ValueError, match="causal"):
        bidir.init_state()
    with pytest.raises(ValueError, match="expansion"):
        GSS(6, ssm_dim=3, expansion=0, key=getkey())
    with pytest.raises(ValueError, match="variant must be"):
        GSS(6, ssm_dim=3, expansion=2, state_size=8, variant="lin", key=getkey())
    with pytest.raises(ValueError, match="state_size"):
        GSS(6, ssm_dim=3, expansion=2, state_size=7, key=getkey())


def test_gss_trains_on_recall(getkey):
    # The label is the token at a marked position 16–31 steps before the
    # last position, which is the only one read out: the DSS must carry it.
    layer = GSS(16, ssm_dim=8, expansion=2, state_size=32, key=getkey())
    acc = fit_recall(layer, 16, key=getkey(), hi=16, readout="last", steps=150, **QUICK_RECALL)
    assert acc > 0.6, acc  # chance is 0.25


@pytest.mark.slow
def test_gss_trains_on_long_recall(getkey):
    layer = GSS(16, ssm_dim=8, expansion=2, state_size=64, key=getkey())
    acc = fit_recall(layer, 16, key=getkey(), L=128, vocab=8, lo=0, hi=32, readout="last", steps=400, lr=1e-2)
    assert acc > 0.5, acc  # chance is 0.125
