"""GSS against a float64 NumPy reference of the paper's layer, built from the raw parameters.

Mehta et al., "Long Range Language Modeling via Gated State Spaces" (ICLR 2023):
`x + ((DSS(GELU(LN(x) W_u)) W_y) ⊙ GELU(LN(x) W_v)) W_o`, the DSS kernel written from
Gupta et al., "Diagonal State Spaces are as Effective as Structured State Spaces".
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxtyping import TypeCheckError
from mixer_testing import QUICK_RECALL, fit_recall, future_dependence, np_layernorm, np_linear

from helpers import assert_close, scan_steps, to_np
from seqkit.nn import GSS, AbstractRecurrentMixer, ResidualBlock

D = 6


def np_gelu(x):
    # jax.nn.gelu's default: the tanh approximation.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def np_dss_kernels(core, L):
    """The DSS kernels `(dirs, H, L)` from the raw leaves, with `P_{n,l} = λ_n Δ l`:

    - exp: `K_l = Re Σ_n w_n (exp(λ_n Δ) − 1)/λ_n · exp(P_{n,l})`,
    - softmax: `K_l = Re Σ_n w_n / λ_n · exp(P_{n,l}) / Σ_{l'<L} exp(P_{n,l'})`.

    Raw leaves: `Re λ = −max(exp(lambda_re), 1e-4)` (exp) or `lambda_re` (softmax),
    `Im λ = lambda_im`, `w = w_re + i w_im`, `Δ = exp(clip(log_dt, log 1e-6, log 10))`.
    """
    re = to_np(core.lambda_re)
    re = -np.maximum(np.exp(re), 1e-4) if core.variant == "exp" else re
    lam = re + 1j * to_np(core.lambda_im)  # (H, n)
    dt = np.exp(np.clip(to_np(core.log_dt), math.log(1e-6), math.log(10.0)))[:, None]
    P = (lam * dt)[..., None] * np.arange(L)  # (H, n, L)
    if core.variant == "exp":
        coef, E = (np.exp(lam * dt) - 1.0) / lam, np.exp(P)
    else:
        coef, E = 1.0 / lam, np.exp(P) / np.exp(P).sum(-1, keepdims=True)
    w = to_np(core.w_re) + 1j * to_np(core.w_im)
    w = w if w.ndim == 3 else w[None]
    return np.real(np.einsum("dhn,hnl->dhl", w * coef, E))


def np_conv(u, K):
    """`y_t = Σ_{s≤t} K⁰_{t−s} u_s`, plus `Σ_{s≥t} K¹_{s−t} u_s` when bidirectional;
    summed directly."""
    L = u.shape[0]
    y = np.zeros_like(u)
    for t in range(L):
        for s in range(L):
            if s <= t:
                y[t] += K[0][:, t - s] * u[s]
            if K.shape[0] == 2 and s >= t:
                y[t] += K[1][:, s - t] * u[s]
    return y


def np_gss_block(block, x, mask=None):
    """The paper's GSS layer: `shortcut = x; x = LN(x); v = GELU(x W_v); u = GELU(x W_u);
    y = DSS(u) (no D); return ((y W_y) ⊙ v) W_o + shortcut`."""
    x = to_np(x)
    g = block.mixer
    xn = np_layernorm(x, block.norm)
    v = np_gelu(np_linear(xn, g.proj_v))
    u = np_gelu(np_linear(xn, g.proj_u))
    if mask is not None:
        u = u * np.asarray(mask)[:, None]
    y = np_conv(u, np_dss_kernels(g.core, x.shape[0]))
    return x + np_linear(np_linear(y, g.proj_y) * v, g.proj_o)


def perturbed(module, key):
    """`module` with every floating leaf jittered, so no init symmetry (unit LayerNorm
    weights, zero biases) hides a bug."""
    params, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    leaves = [p + 0.3 * jr.normal(k_, p.shape, p.dtype) for p, k_ in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(tree, leaves), static)


def small(getkey, **kw):
    """One small shape for every test, so the eager op compilations are shared."""
    return GSS(D, ssm_dim=3, expansion=2, state_size=16, **kw, key=getkey())


def block_of(getkey, **kw):
    block = ResidualBlock(small(getkey, **kw), D, norm="layer", prenorm=True, key=getkey())
    return perturbed(block, getkey())


def run(block, x, mask=None):
    return block(x, eqx.nn.State(block), mask=mask)[0]


def test_gss_is_a_recurrent_mixer_with_dss_parameters(getkey):
    g = small(getkey)
    assert isinstance(g, AbstractRecurrentMixer)
    assert g.ssm_parameters() == g.core.ssm_parameters()


@pytest.mark.parametrize("variant", ["exp", "softmax"])
@pytest.mark.parametrize("causal", [True, False])
def test_gss_block_matches_paper_layer(x64, getkey, causal, variant):
    block = block_of(getkey, causal=causal, variant=variant)
    x = jr.normal(getkey(), (12, D))
    assert_close(run(block, x), np_gss_block(block, x), rtol=1e-10)
    mask = np.ones(12, bool)
    mask[[2, 7, 9, 10]] = False  # holes; the last position is real
    y = run(block, x, jnp.asarray(mask))
    assert_close(y[mask], np_gss_block(block, x, mask)[mask], rtol=1e-10)


def test_gss_float32_matches_reference(getkey):
    block = block_of(getkey)
    x = jr.normal(getkey(), (12, D))
    y = run(block, x)
    assert y.dtype == jnp.float32
    assert_close(y, np_gss_block(block, x), rtol=1e-4)


@pytest.mark.parametrize("variant", ["exp", "softmax"])
def test_gss_step_matches_parallel(x64, getkey, variant):
    block = block_of(getkey, variant=variant)
    L = 12
    x = jr.normal(getkey(), (L, D))
    g = block.mixer
    assert_close(scan_steps(g, x, g.init_state(L)), g(x), rtol=1e-10)

    model_state = eqx.nn.State(block)

    def body(state, x_t):
        y_t, state = block.step(x_t, state, model_state)
        return state, y_t

    assert_close(jax.lax.scan(body, block.init_state(L), x)[1], run(block, x), rtol=1e-10)


@pytest.mark.parametrize("variant", ["exp", "softmax"])
@pytest.mark.parametrize("causal", [True, False])
def test_gss_block_padding_gives_unpadded_outputs(x64, getkey, causal, variant):
    block = block_of(getkey, causal=causal, variant=variant)
    n_real, n_pad = 9, 3
    x = jr.normal(getkey(), (n_real, D))
    padded = jnp.concatenate([x, 100.0 * jr.normal(getkey(), (n_pad, D))])
    mask = jnp.arange(n_real + n_pad) < n_real
    assert_close(run(block, padded, mask)[:n_real], run(block, x), rtol=1e-10)
    # padded on the left too (left-padded batches)
    both = jnp.concatenate([100.0 * jr.normal(getkey(), (2, D)), padded])
    mask = (jnp.arange(n_real + n_pad + 2) >= 2) & (jnp.arange(n_real + n_pad + 2) < n_real + 2)
    assert_close(run(block, both, mask)[2 : n_real + 2], run(block, x), rtol=1e-10)


def test_gss_causal_no_leak(getkey):
    layer = small(getkey)
    L = 12
    x = jr.normal(getkey(), (L, D))
    J, future = future_dependence(layer, x)
    # The only path from the future is the FFT convolution, whose zero-padded
    # taps are zero up to float32 round-off; every other path is per-position.
    assert J[future].max() <= 1e-6 * J.max()
    assert (J[~future] > 0).any()


def test_gss_construction_vmaps_over_keys(getkey):
    keys = jr.split(getkey(), 3)
    stacked = eqx.filter_vmap(lambda k: small(lambda: k))(keys)
    assert stacked.proj_v.weight.shape == (3, 2 * D, D)
    member = jax.tree.map(lambda a: a[2] if eqx.is_array(a) else a, stacked)
    single = small(lambda: keys[2])
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(single), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = jr.normal(getkey(), (12, D))
    ys = eqx.filter_jit(eqx.filter_vmap(lambda m: m(x)))(stacked)
    assert_close(ys[2], single(x), rtol=1e-6)


def test_gss_dropout_is_keyed(getkey):
    layer = small(getkey, dropout=0.5)
    x = jr.normal(getkey(), (12, D))
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
    # Under the test suite's beartype checks the Literal annotation fires first.
    with pytest.raises((ValueError, TypeCheckError), match="variant"):
        GSS(6, ssm_dim=3, expansion=2, state_size=8, variant="lin", key=getkey())
    with pytest.raises(ValueError, match="state_size"):
        GSS(6, ssm_dim=3, expansion=2, state_size=7, key=getkey())


class Layer(eqx.Module):
    """A LayerNorm `ResidualBlock` as a plain `(L, d) → (L, d)` function (its state is empty)."""

    block: ResidualBlock

    def __call__(self, x):
        return self.block(x, eqx.nn.State(self.block))[0]


def gss_layer(key, d, state_size):
    k1, k2 = jr.split(key)
    return Layer(ResidualBlock(GSS(d, ssm_dim=8, expansion=2, state_size=state_size, key=k1), d, key=k2))


def test_gss_trains_on_recall(getkey, optimized):
    # The label is the token at a marked position 16–31 steps before the
    # last position, which is the only one read out: the DSS must carry it.
    layer = gss_layer(getkey(), 16, 32)
    acc = fit_recall(layer, 16, key=getkey(), hi=16, readout="last", steps=150, **QUICK_RECALL)
    assert acc > 0.6, acc  # chance is 0.25


@pytest.mark.slow
def test_gss_trains_on_long_recall(getkey):
    layer = gss_layer(getkey(), 16, 64)
    acc = fit_recall(layer, 16, key=getkey(), L=128, vocab=8, lo=0, hi=32, readout="last", steps=400, lr=1e-2)
    assert acc > 0.5, acc  # chance is 0.125
