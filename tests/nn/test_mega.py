"""Mega against a dense float64 NumPy reference built from its parameters and SPEC §1.5."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from mixer_testing import QUICK_RECALL, fit_recall, future_dependence, np_layernorm, np_linear

from helpers import assert_close, to_np
from seqkit.nn import Mega, mega_attention


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def np_ema(x, ema):
    """The damped EMA as its recurrence: `z_t = α β x_t + (1 − α δ) z_{t−1}`,
    `y_t = Σ_j η_j z_t + ω x_t`; bidirectional adds the recurrence over the
    reversed sequence with the second parameter set."""
    alpha, delta = sigmoid(to_np(ema.alpha_logit)), sigmoid(to_np(ema.delta_logit))
    beta, eta = to_np(ema.beta), to_np(ema.eta)
    if alpha.ndim == 2:
        alpha, delta, beta, eta = alpha[None], delta[None], beta[None], eta[None]

    def run(seq, i):
        z = np.zeros(alpha.shape[1:])
        out = []
        for x_t in seq:
            z = alpha[i] * beta[i] * x_t[:, None] + (1.0 - alpha[i] * delta[i]) * z
            out.append((eta[i] * z).sum(-1))
        return np.stack(out)

    y = run(x, 0)
    if alpha.shape[0] == 2:
        y = y + run(x[::-1], 1)[::-1]
    return y + to_np(ema.omega) * x


def np_rotate(x, p):
    """Rotary rotation at position `p`: pair `(x_k, x_{k+z/2})` turned by `p·10000^{−k/(z/2)}`."""
    half = x.shape[0] // 2
    out = np.empty_like(x)
    for k in range(half):
        th = p * 10000.0 ** (-k / half)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        out[k], out[k + half] = rot @ np.array([x[k], x[k + half]])
    return out


def np_bias(layer, i, j):
    """Relative position bias between in-chunk positions `i` (query) and `j` (key)."""
    rel = to_np(layer.rel_bias)
    if layer.relative_position == "simple":
        return rel[layer.max_length - 1 + (j - i)]
    return np_rotate(rel[0], i) @ np_rotate(rel[1], j)


def np_laplace(x):
    mu, sigma = math.sqrt(0.5), math.sqrt(1.0 / (4.0 * math.pi))
    return 0.5 * (1.0 + math.erf((x - mu) / (sigma * math.sqrt(2.0))))


def np_attention(layer, q, k, v, mask):
    """Dense attention with an explicit (chunk, padding, causal) mask, entry by entry."""
    L = q.shape[0]
    c = L if layer.chunk_size is None else min(layer.chunk_size, L)
    out = np.zeros((L, v.shape[1]))
    for i in range(L):
        keys = [j for j in range(L) if j // c == i // c and mask[j] and (j <= i or not layer.causal)]
        if not keys:
            continue
        s = np.array([q[i] @ k[j] for j in keys])
        b = np.array([np_bias(layer, i % c, j % c) for j in keys])
        if layer.attention == "softmax":
            logits = s / math.sqrt(q.shape[1]) + b
            w = np.exp(logits - logits.max())
            w = w / w.sum()
        else:
            logits = s / len(keys) + b
            if layer.attention == "relu2":
                w = np.maximum(logits, 0.0) ** 2
            else:
                w = np.array([np_laplace(t) for t in logits])
        out[i] = w @ v[keys]
    return out


def np_mega(layer, x, mask=None):
    x = to_np(x)
    L, d = x.shape
    mask = np.ones(L, bool) if mask is None else np.asarray(mask)
    xn = np_layernorm(x, layer.norm) if layer.prenorm else x
    xp = np_ema(xn * mask[:, None], layer.ema)
    v = silu(np_linear(xn, layer.proj_v))
    mx = np_linear(xp, layer.proj_mx)
    zd, vd = layer.z_dim, layer.v_dim
    z = silu(mx[:, :zd])
    gamma = silu(mx[:, zd : zd + vd])
    phi = sigmoid(mx[:, zd + vd : zd + vd + d])
    h_in = mx[:, zd + vd + d :]
    scale, offset = to_np(layer.qk_scale), to_np(layer.qk_offset)
    q, k = z * scale[0] + offset[0], z * scale[1] + offset[1]
    o = np_attention(layer, q, k, v, mask)
    h = silu(h_in + np_linear(gamma * o, layer.proj_h))
    y = phi * h + (1.0 - phi) * x
    ffn = layer.ffn
    if layer.prenorm:
        return y + np_linear(silu(np_linear(np_layernorm(y, ffn.norm), ffn.fc1)), ffn.fc2)
    y = np_layernorm(y, layer.norm)
    return np_layernorm(y + np_linear(silu(np_linear(y, ffn.fc1)), ffn.fc2), ffn.norm)


def perturbed(layer, key):
    """The layer with every floating parameter jittered, so no init symmetry hides a bug."""
    params, static = eqx.partition(layer, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    leaves = [p + 0.3 * jr.normal(k_, p.shape) for p, k_ in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(tree, leaves), static)


def make(getkey, d=4, **kw):
    kw = {"z_dim": 4, "v_dim": 6, "ema_ndim": 3, **kw}
    return perturbed(Mega(d, **kw, key=getkey()), getkey())


CASES = [
    {"attention": "softmax", "relative_position": "simple", "max_length": 10},
    {"attention": "softmax", "relative_position": "rotary", "chunk_size": 4},
    {"attention": "softmax", "relative_position": "simple", "chunk_size": 4, "causal": True},
    {"attention": "laplace", "relative_position": "rotary", "causal": True},
    {"attention": "laplace", "relative_position": "simple", "chunk_size": 3, "prenorm": False},
    {"attention": "relu2", "relative_position": "rotary", "chunk_size": 4, "causal": True},
    {"attention": "relu2", "relative_position": "simple", "max_length": 10, "prenorm": False},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_mega_matches_dense_reference(getkey, case):
    layer = make(getkey, **case)
    L = 10
    x = jr.normal(getkey(), (L, 4))
    mask = np.ones(L, bool)
    mask[[3, 9]] = False
    assert_close(layer(x), np_mega(layer, x), rtol=2e-4)
    y = layer(x, mask=jnp.asarray(mask))
    assert_close(y[mask], np_mega(layer, x, mask)[mask], rtol=2e-4)


@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
@pytest.mark.parametrize("causal", [False, True])
def test_mega_chunk_at_least_length_is_unchunked(getkey, attention, causal):
    key, L = getkey(), 10
    kw = {
        "z_dim": 4,
        "v_dim": 6,
        "ema_ndim": 2,
        "attention": attention,
        "causal": causal,
        "max_length": 12,
    }
    full = Mega(4, **kw, key=key)
    chunked = Mega(4, chunk_size=12, **kw, key=key)
    x = jr.normal(getkey(), (L, 4))
    mask = jnp.arange(L) < 7
    assert np.array_equal(full(x), chunked(x))
    assert np.array_equal(full(x, mask=mask), chunked(x, mask=mask))


@pytest.mark.parametrize(
    "case",
    [
        {"chunk_size": 4},
        {"causal": True, "chunk_size": 4, "attention": "laplace"},
        {"max_length": 10},
    ],
)
def test_mega_padding_does_not_change_real_outputs(getkey, case):
    layer = make(getkey, **case)
    L = 10
    mask = np.ones(L, bool)
    mask[[0, 4, 5, 8, 9]] = False
    x1 = jr.normal(getkey(), (L, 4))
    x2 = jnp.where(jnp.asarray(mask)[:, None], x1, 100.0 * jr.normal(getkey(), (L, 4)))
    y1, y2 = layer(x1, mask=jnp.asarray(mask)), layer(x2, mask=jnp.asarray(mask))
    assert np.isfinite(np.asarray(y1)).all()
    assert_close(y1[mask], y2[mask], rtol=1e-5)


def test_mega_causal_no_leak(getkey):
    layer = make(getkey, chunk_size=4, causal=True, relative_position="rotary")
    L = 10
    x = jr.normal(getkey(), (L, 4))
    J, future = future_dependence(layer, x)
    # The EMA's FFT convolution gives float32 round-off on future taps; the
    # attention path is exactly causal (next test).
    assert J[future].max() <= 1e-6 * J.max()
    assert (J[~future] > 0).any()


@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
def test_mega_attention_causal_jacobian_is_exactly_zero(getkey, attention):
    L, c = 10, 4
    q, k, v = (jr.normal(getkey(), (L, n)) for n in (4, 4, 6))
    bias = jr.normal(getkey(), (c, c))

    def f(q, k, v):
        return mega_attention(q, k, v, bias, attention=attention, causal=True)

    jq, jk, jv = jax.jacfwd(f, argnums=(0, 1, 2))(q, k, v)  # each (L, 3, L, n)
    future = np.triu(np.ones((L, L), bool), 1)
    for jac in (jq, jk, jv):
        J = np.abs(np.asarray(jac)).max(axis=(1, 3))
        assert np.all(J[future] == 0.0)
        assert (J[~future] > 0).any()


def test_mega_dropout_is_keyed(getkey):
    layer = Mega(4, z_dim=4, v_dim=6, ema_ndim=3, chunk_size=4, dropout=0.3, key=getkey())
    x = jr.normal(getkey(), (10, 4))
    k1, k2 = getkey(), getkey()
    assert np.array_equal(layer(x, key=k1), layer(x, key=k1))
    assert not np.allclose(layer(x, key=k1), layer(x, key=k2))
    with pytest.raises(RuntimeError, match="key"):
        layer(x)
    assert np.isfinite(np.asarray(eqx.nn.inference_mode(layer)(x))).all()


def test_mega_errors(getkey):
    with pytest.raises(ValueError, match="max_length"):
        Mega(4, z_dim=4, v_dim=6, relative_position="simple", key=getkey())
    with pytest.raises(ValueError, match="attention must be"):
        Mega(4, z_dim=4, v_dim=6, chunk_size=4, attention="linear", key=getkey())
    with pytest.raises(ValueError, match="relative_position must be"):
        Mega(4, z_dim=4, v_dim=6, chunk_size=4, relative_position="alibi", key=getkey())
    with pytest.raises(ValueError, match="even z_dim"):
        Mega(4, z_dim=3, v_dim=6, relative_position="rotary", key=getkey())
    with pytest.raises(ValueError, match="chunk_size"):
        Mega(4, z_dim=4, v_dim=6, chunk_size=0, key=getkey())
    layer = Mega(4, z_dim=4, v_dim=6, ema_ndim=3, max_length=8, key=getkey())
    with pytest.raises(ValueError, match="exceeds max_length=8"):
        layer(jnp.zeros((9, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(L, 4\)"):
        layer(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="padding mask of shape"):
        layer(jnp.zeros((5, 4)), mask=jnp.ones(6, bool))
    # Chunked: any length, the span is the chunk.
    chunked = Mega(4, z_dim=4, v_dim=6, ema_ndim=3, chunk_size=4, key=getkey())
    assert chunked(jnp.ones((11, 4))).shape == (11, 4)


def test_mega_trains_on_recall(getkey):
    layer = Mega(16, z_dim=8, v_dim=16, ema_ndim=4, chunk_size=16, relative_position="rotary", key=getkey())
    acc = fit_recall(layer, 16, key=getkey(), hi=32, readout="mean", steps=100, **QUICK_RECALL)
    assert acc > 0.6, acc  # chance is 0.25


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
def test_mega_chunk_trains_on_long_recall(getkey, attention):
    layer = Mega(
        16,
        z_dim=8,
        v_dim=16,
        ema_ndim=8,
        chunk_size=32,
        attention=attention,
        relative_position="simple",
        key=getkey(),
    )
    acc = fit_recall(
        layer, 16, key=getkey(), L=128, vocab=8, lo=0, hi=128, readout="mean", steps=400, lr=1e-2
    )
    assert acc > 0.5, acc  # chance is 0.125


@pytest.mark.slow
def test_mega_causal_trains_on_far_recall(getkey):
    # Read out at the last position only; the marked token is 64–127 steps back.
    layer = Mega(
        16,
        z_dim=8,
        v_dim=16,
        ema_ndim=8,
        relative_position="simple",
        max_length=128,
        causal=True,
        key=getkey(),
    )
    acc = fit_recall(layer, 16, key=getkey(), L=128, vocab=8, lo=0, hi=64, readout="last", steps=400, lr=1e-2)
    assert acc > 0.4, acc  # chance is 0.125
