"""Linear-attention family, Linformer and Performer against float64 references."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from attn_reference import heads, np_attention, np_mha, out
from jaxtyping import TypeCheckError

import seqkit.attention as sa
from helpers import assert_close, scan_steps


def np_elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def np_linear_quadratic(fq, fk, v, causal, km=None):
    """o_i = Σ_j A_ij v_j / Σ_j A_ij with A = φ(q) φ(k)ᵀ (masked): the quadratic form."""
    L = fq.shape[0]
    out = np.zeros((L, v.shape[1]))
    for i in range(L):
        num, den = np.zeros(v.shape[1]), 0.0
        for j in range(L):
            if (causal and j > i) or (km is not None and not km[j]):
                continue
            a = float(fq[i] @ fk[j])
            num += a * v[j]
            den += a
        out[i] = num / den
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,chunk", [(13, 4), (8, 8)])
def test_linear_attention_function(getkey, L, chunk, causal):
    q, k, v = (jr.normal(getkey(), (L, 4)) for _ in range(3))
    km = np.arange(L) < L - 2
    got = sa.linear_attention(
        sa.elu_feature_map(q),
        sa.elu_feature_map(k),
        v,
        causal=causal,
        key_mask=jnp.asarray(km),
        chunk_size=chunk,
    )
    fq, fk = np_elu1(np.asarray(q, np.float64)), np_elu1(np.asarray(k, np.float64))
    assert_close(got, np_linear_quadratic(fq, fk, np.asarray(v, np.float64), causal, km), rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_key_shift_over_a_wide_range(getkey, causal):
    """Key features given as `phi_k · exp(key_shift)` with shifts hundreds apart (their
    products over- or underflow float32): equal to the quadratic form of the true
    features in float64, and, causal, no output depends on a later key's shift."""
    L, chunk = 11, 4
    q, k, v = (jr.normal(getkey(), (L, 3)) for _ in range(3))
    shift = np.array([0.0, -150.0, 3.0, 200.0, -40.0, 90.0, 90.5, -300.0, 10.0, 250.0, 0.0])
    km = np.arange(L) != 4
    fq, fk = sa.elu_feature_map(q), sa.elu_feature_map(k)
    got = sa.linear_attention(
        fq, fk, v, causal=causal, key_mask=jnp.asarray(km), chunk_size=chunk, key_shift=jnp.asarray(shift)
    )
    true_k = np.asarray(fk, np.float64) * np.exp(shift)[:, None]
    want = np_linear_quadratic(np.asarray(fq, np.float64), true_k, np.asarray(v, np.float64), causal, km)
    assert np.isfinite(np.asarray(got)).all()
    assert_close(got, want, rtol=1e-5)


def test_linear_attention_key_shift_shape_is_checked(getkey):
    x = jr.normal(getkey(), (5, 2))
    # the ValueError, or the type checker's report first where the tests run one
    with pytest.raises((ValueError, TypeCheckError), match="key_shift"):
        sa.linear_attention(x, x, x, key_shift=jnp.zeros(4))


def np_favor(m, x, causal):
    """FAVOR+ attention in float64 from its definition, with the module's own random
    directions: `φ(u) = exp(W u' − |u'|²/2)/sqrt(M)`, `u' = u / d_h^{1/4}`, no shift."""
    q, k, v = heads(m, x)
    W = np.asarray(m.random_matrix(), np.float64)
    dh = q.shape[-1]

    def phi(u, w):
        u = u * dh**-0.25
        return np.exp(u @ w.T - 0.5 * np.sum(u * u, axis=-1, keepdims=True)) / np.sqrt(w.shape[0])

    o = [np_linear_quadratic(phi(q[h], W[h]), phi(k[h], W[h]), v[h], causal) for h in range(len(W))]
    return out(m, np.stack(o))


def test_causal_performer_with_a_large_key_first(getkey):
    """The first key has a large norm, so its features' exponent `w·k' − |k'|²/2` lies
    hundreds below the later keys'. The first outputs see only that key: they must
    not collapse to 0 (the causal form takes its shift over the keys each query sees,
    as the recurrence does, not over all keys), and every output equals FAVOR+
    computed in float64 without any shift."""
    L, d = 9, 16
    m = sa.Performer(d, 2, causal=True, num_features=16, key=getkey())
    x = jr.normal(getkey(), (L, d))
    x = x.at[0].multiply(20.0)
    y = m(x)
    assert_close(y[:1], m(x[:1]), rtol=1e-5)
    assert_close(y, np_favor(m, x, causal=True), rtol=1e-4)
    assert_close(scan_steps(m, x, m.init_state()), y, rtol=1e-4)


def test_linear_attention_parallel_equals_step_equals_quadratic(getkey):
    L, d = 10, 16
    m = sa.LinearAttention(d, 2, causal=True, key=getkey())
    x = jr.normal(getkey(), (L, d))
    y = m(x)
    state = m.init_state()
    steps = []
    for t in range(L):
        y_t, state = m.step(x[t], state)
        steps.append(y_t)
    q, k, v = heads(m, x)
    o = np.stack([np_linear_quadratic(np_elu1(q[h]), np_elu1(k[h]), v[h], True) for h in range(2)])
    want = out(m, o)
    assert_close(y, want, rtol=1e-5)
    assert_close(jnp.stack(steps), want, rtol=1e-5)


@pytest.mark.parametrize("cls", [sa.Performer, sa.KernelizedAttention])
def test_random_feature_step_equals_parallel(getkey, cls):
    m = cls(16, 2, causal=True, num_features=32, key=getkey())
    x = 2.0 * jr.normal(getkey(), (9, 16))

    @eqx.filter_jit
    def both(m, x):
        return scan_steps(m, x, m.init_state()), m(x)

    steps, parallel = both(m, x)
    assert_close(steps, parallel, rtol=1e-4)


def test_linformer_identity_projection_is_vanilla(getkey):
    L, d = 12, 16
    m = sa.Linformer(d, 2, proj_dim=L, max_len=L, key=getkey())
    eye = jnp.eye(L)
    m = eqx.tree_at(lambda t: (t.E, t.F), m, (eye, eye))
    x = jr.normal(getkey(), (L, d))
    assert_close(m(x), np_mha(m, x), rtol=1e-5)


@jax.jit
def _favor(q, k, v, W):
    fq = sa.positive_random_features(q, W, is_query=True)
    fk = sa.positive_random_features(k, W, is_query=False)
    return sa.linear_attention(fq, fk, v)


def test_performer_error_falls_with_features(getkey):
    """FAVOR+ estimates softmax attention better as the number of features grows."""
    L, dh = 16, 8
    q, k, v = (0.5 * jr.normal(getkey(), (L, dh)) for _ in range(3))
    exact = np_attention(q, k, v)
    errs = []
    for m in (8, 64, 1024):
        e = []
        for _ in range(6):
            W = sa.orthogonal_gaussian(getkey(), m, dh)
            e.append(float(np.abs(np.asarray(_favor(q, k, v, W)) - exact).mean()))
        errs.append(np.mean(e))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.25 * errs[0]


def test_orthogonal_features_are_orthogonal_in_blocks(getkey):
    W = np.asarray(sa.orthogonal_gaussian(getkey(), 12, 4), np.float64)
    for b in range(3):
        B = W[4 * b : 4 * b + 4]
        G = B @ B.T
        assert np.allclose(G - np.diag(np.diag(G)), 0, atol=1e-4)


def test_orthogonal_features_point_in_uniformly_random_directions():
    """Each row of W must be marginally N(0, I_d) for E[φ(q)·φ(k)] = exp(q·k/√d):
    for a unit vector u, E[exp(w·u)] = exp(1/2) along every axis, and a diagonal
    entry is positive half the time (a bare QR makes W[0, 0] always negative and
    misses exp(1/2) by 18% along the first axis)."""
    d, n = 4, 20000
    W = np.asarray(jax.vmap(lambda k: sa.orthogonal_gaussian(k, d, d))(jr.split(jr.key(5), n)), np.float64)
    assert abs((W[:, 0, 0] > 0).mean() - 0.5) < 0.02  # 0.5 ± 5.7 standard errors
    for axis in range(d):
        vals = np.exp(W[:, :, axis]).ravel()  # exp(w·e_axis) over all rows and draws
        err = vals.std() / np.sqrt(vals.size)
        assert abs(vals.mean() - np.exp(0.5)) < 5 * err, (axis, vals.mean(), err)


def test_kernelized_frequencies_are_learned(getkey):
    m = sa.KernelizedAttention(16, 2, num_features=8, key=getkey())
    x = jr.normal(getkey(), (7, 16))
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m(x) ** 2)))(m)
    assert float(jnp.abs(g.means).sum()) > 0 and float(jnp.abs(g.log_scales).sum()) > 0
