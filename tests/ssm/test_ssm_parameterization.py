"""The map from raw parameter leaves to kernels and outputs, checked against the
papers' formulas written out here in float64 NumPy.

The references read only the modules' parameter arrays and call no seqkit
function, so a wrong mapping (Δ from `log Δ`, `Re λ` from `log(−Re λ)`, `δ` from
its logit, a missing factor) fails here even where the kernel and the module's
own `discrete_system` agree with each other. The parameters are moved off their
init but kept inside the modules' guards (`Δ ∈ [1e-6, 10]`, `Re λ ≤ −1e-4`), so
the references need no clamps.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from helpers import assert_close, scan_steps
from seqkit.ssm import DSS, EMA, S4, S4D, DSSSoftmaxState, ema_kernel

H, N = 3, 8


def _np(x):
    return np.asarray(x, np.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _perturb(core, seed, scale=0.1):
    """Every array leaf plus `scale`·N(0, 1) noise, so the checks see general values."""
    params, static = eqx.partition(core, eqx.is_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(seed), len(leaves))
    leaves = [x + scale * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def _inside_guards(log_dt, log_neg_re=None):
    dt = np.exp(_np(log_dt))
    assert np.all((dt > 1e-6) & (dt < 10.0))
    if log_neg_re is not None:
        assert np.all(np.exp(_np(log_neg_re)) > 1e-4)


def _causal_conv(K, u):
    """`y_t = Σ_{s ≤ t} K_{t−s} u_s` per channel: `K` `(H, L)`, `u` `(L, H)`."""
    L = u.shape[0]
    y = np.zeros(u.shape)
    for t in range(L):
        for s in range(t + 1):
            y[t] += K[:, t - s] * u[s]
    return y


def _apply_kernels(K, D, u, bidirectional):
    """`y = K ∗ u + D u`; bidirectional: the backward kernel runs over `u[::-1]`."""
    if not bidirectional:
        return _causal_conv(K, u) + D * u
    return _causal_conv(K[0], u) + _causal_conv(K[1], u[::-1])[::-1] + D * u


# --- initial step sizes ---------------------------------------------------------

DT_RANGES = [(1e-3, 1e-1), (1e-4, 1e-3), (0.02, 0.5), (0.05, 0.05)]

DT_CORES = {
    "s4d": lambda b, **kw: S4D(64, N, bidirectional=b, **kw),
    "s4": lambda b, **kw: S4(64, N, l_max=16, bidirectional=b, **kw),
    "dss-exp": lambda b, **kw: DSS(64, N, bidirectional=b, **kw),
    "dss-softmax": lambda b, **kw: DSS(64, N, variant="softmax", bidirectional=b, **kw),
}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", sorted(DT_CORES))
@pytest.mark.parametrize("dt_min, dt_max", DT_RANGES)
def test_initial_step_sizes_lie_in_dt_range(name, bidirectional, dt_min, dt_max):
    """Δ = exp(log Δ) of the raw leaf lies in `[dt_min, dt_max]`, log-uniformly spread."""
    core = DT_CORES[name](bidirectional, dt_min=dt_min, dt_max=dt_max, key=jr.key(0))
    assert core.log_dt.shape == (64,)
    dt = np.exp(_np(core.log_dt))
    # float32 rounding of log Δ moves Δ by a relative 1e-7 or so.
    assert np.all(dt >= dt_min * (1 - 1e-6)) and np.all(dt <= dt_max * (1 + 1e-6)), (dt.min(), dt.max())
    if dt_min < dt_max:
        # Log-uniform: both halves of [log dt_min, log dt_max] are hit, neither is empty.
        pos = (np.log(dt) - np.log(dt_min)) / (np.log(dt_max) - np.log(dt_min))
        assert 0.2 < np.mean(pos < 0.5) < 0.8
        assert pos.min() < 0.1 and pos.max() > 0.9


# --- S4D: Gu, Gupta, Goel and Ré 2022 ---------------------------------------------


def _s4d_reference_kernel(core, L):
    """S4D kernel from the raw leaves.

    `Λ = −exp(log_neg_re) + i·lambda_im`, `Δ = exp(log_dt)`, `B = b_re + i b_im`,
    `C = c_re + i c_im`; ZOH: `Ā = exp(ΔΛ)`, `B̄ = (exp(ΔΛ) − 1)/Λ · B`; bilinear:
    `Ā = (1 + ΔΛ/2)/(1 − ΔΛ/2)`, `B̄ = Δ B/(1 − ΔΛ/2)`; `K_l = 2 Re Σ_n C_n B̄_n Ā_n^l`
    (one stored mode per conjugate pair).
    """
    lam = -np.exp(_np(core.log_neg_re)) + 1j * _np(core.lambda_im)  # (H, n)
    dt = np.exp(_np(core.log_dt))[:, None]
    B = _np(core.b_re) + 1j * _np(core.b_im)
    C = _np(core.c_re) + 1j * _np(core.c_im)  # (H, n) or (2, H, n)
    if core.discretization == "zoh":
        A_bar = np.exp(dt * lam)
        B_bar = (np.exp(dt * lam) - 1.0) / lam * B
    else:
        A_bar = (1.0 + dt * lam / 2) / (1.0 - dt * lam / 2)
        B_bar = dt * B / (1.0 - dt * lam / 2)
    powers = A_bar[..., None] ** np.arange(L)  # (H, n, L)
    return 2.0 * np.real(np.einsum("...hn,hn,hnl->...hl", C, B_bar, powers))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["legs", "lin", "inv"])
def test_s4d_kernel_and_output_from_raw_leaves(init, discretization, bidirectional, x64):
    kw = dict(init=init, discretization=discretization, bidirectional=bidirectional)
    core = S4D(H, N, dt_min=1e-2, dt_max=0.3, key=jr.key(0), **kw)
    core = _perturb(core, seed=1)
    _inside_guards(core.log_dt, core.log_neg_re)
    L = 40
    K = _s4d_reference_kernel(core, L)
    assert_close(core.kernel(L), K, rtol=1e-10)
    u = np.random.default_rng(0).normal(size=(L, H))
    expected = _apply_kernels(K, _np(core.D), u, bidirectional)
    assert_close(core(jnp.asarray(u)), expected, rtol=1e-10)


# --- DSS: Gupta, Gu and Berant 2022 -----------------------------------------------


def _dss_reference_kernel(core, L):
    """DSS kernel from the raw leaves, `w = w_re + i w_im`, `Δ = exp(log_dt)`:

    - exp: `Λ = −exp(lambda_re) + i·lambda_im`,
      `K_l = Re Σ_n w_n (exp(λ_n Δ) − 1)/λ_n · exp(λ_n Δ l)`;
    - softmax: `Λ = lambda_re + i·lambda_im` (any sign),
      `K_l = Re Σ_n w_n/λ_n · exp(λ_n Δ l) / Σ_{l'<L} exp(λ_n Δ l')`.
    """
    re = -np.exp(_np(core.lambda_re)) if core.variant == "exp" else _np(core.lambda_re)
    lam = re + 1j * _np(core.lambda_im)
    dt = np.exp(_np(core.log_dt))[:, None]
    W = _np(core.w_re) + 1j * _np(core.w_im)
    P = lam[..., None] * dt[..., None] * np.arange(L)  # (H, n, L)
    if core.variant == "exp":
        S = ((np.exp(lam * dt) - 1.0) / lam)[..., None] * np.exp(P)
    else:
        S = np.exp(P) / np.sum(np.exp(P), axis=-1, keepdims=True) / lam[..., None]
    return np.real(np.einsum("...hn,hnl->...hl", W, S))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("variant", ["exp", "softmax"])
def test_dss_kernel_and_output_from_raw_leaves(variant, bidirectional, x64):
    core = DSS(H, N, variant=variant, bidirectional=bidirectional, dt_min=1e-2, dt_max=0.3, key=jr.key(0))
    core = _perturb(core, seed=2)
    if variant == "softmax":  # growing modes are part of DSS-softmax
        core = eqx.tree_at(lambda c: c.lambda_re, core, core.lambda_re.at[0, :2].set(0.3))
    _inside_guards(core.log_dt, core.lambda_re if variant == "exp" else None)
    for L in (1, 17, 40):  # DSS-softmax normalizes over L: its kernel depends on L
        assert_close(core.kernel(L), _dss_reference_kernel(core, L), rtol=1e-10)
    L = 40
    K = _dss_reference_kernel(core, L)
    u = np.random.default_rng(0).normal(size=(L, H))
    expected = _apply_kernels(K, _np(core.D), u, bidirectional)
    assert_close(core(jnp.asarray(u)), expected, rtol=1e-10)


def test_dss_softmax_recurrence_with_growing_modes_at_long_length():
    """Recurrent mode of DSS-softmax (float32) where a growing mode's `Re λΔ · L`
    (120) is past float32's exponent range: the float64 kernel from the raw leaves,
    applied as a causal convolution, is what `step` gives at every position. An
    `(Ā, B̄, C)` recurrence cannot hold such a mode (`B̄` underflows where `Ā^L`
    overflows); the core runs it reflected (`DSSSoftmaxState`)."""
    core = DSS(H, N, variant="softmax", dt_min=0.05, dt_max=0.05, key=jr.key(0))
    core = eqx.tree_at(lambda c: c.lambda_re, core, core.lambda_re.at[:, :2].set(0.6))  # Re λΔ = 0.03
    L = 4000
    u = np.random.default_rng(1).normal(size=(L, H))
    expected = _apply_kernels(_dss_reference_kernel(core, L), _np(core.D), u, False)
    state = core.init_state(L)
    assert isinstance(state, DSSSoftmaxState)
    got = np.asarray(scan_steps(core, jnp.asarray(u, jnp.float32), state))
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-5 * scale * np.sqrt(L / 100), (
        np.abs(got - expected).max() / scale
    )
    # The LTI system loses the growing modes here (B̄ underflows to 0, not NaN).
    system = core.discrete_system(L)
    assert np.isfinite(np.asarray(system.B_bar)).all() and (np.asarray(system.B_bar)[:, :2] == 0).all()


# --- S4: Gu, Goel and Ré 2022 -----------------------------------------------------


def _s4_reference_kernel(core, L):
    """The S4 kernel from the raw leaves, by explicit matrix powers.

    With one stored member per conjugate pair, the full system has the `2n` states
    `Λ ∪ conj(Λ)`, `p ∪ conj(p)`, `B ∪ conj(B)`, `C̃ ∪ conj(C̃)`; `A = diag(Λ) − p p*`,
    bilinear `Ā = (I − Δ/2·A)⁻¹ (I + Δ/2·A)`, `B̄ = (I − Δ/2·A)⁻¹ Δ B`; the learned
    `C̃ = C (I − Ā^{l_max})` gives `C = C̃ (I − Ā^{l_max})⁻¹`, and `K_l = Re(C Ā^l B̄)`.
    """

    def pairs(re, im):
        z = _np(re) + 1j * _np(im)
        return np.concatenate([z, np.conj(z)], axis=-1)

    lam = pairs(-np.exp(_np(core.log_neg_re)), core.lambda_im)  # (H, 2n)
    p, B = pairs(core.p_re, core.p_im), pairs(core.b_re, core.b_im)
    Ct = pairs(core.c_re, core.c_im)  # (H, 2n) or (2, H, 2n)
    Ct = Ct if core.bidirectional else Ct[None]
    dt = np.exp(_np(core.log_dt))
    m = lam.shape[-1]
    I = np.eye(m)
    K = np.zeros((Ct.shape[0], lam.shape[0], L))
    for h in range(lam.shape[0]):
        A = np.diag(lam[h]) - np.outer(p[h], np.conj(p[h]))
        inv = np.linalg.inv(I - dt[h] / 2 * A)
        A_bar, B_bar = inv @ (I + dt[h] / 2 * A), inv @ (dt[h] * B[h])
        for d in range(Ct.shape[0]):
            C = np.linalg.solve((I - np.linalg.matrix_power(A_bar, core.l_max)).T, Ct[d, h])
            x = B_bar
            for l in range(L):
                K[d, h, l] = np.real(C @ x)
                x = A_bar @ x
    return K if core.bidirectional else K[0]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_s4_kernel_and_output_from_raw_leaves(bidirectional, x64):
    l_max = 48
    core = S4(H, N, l_max=l_max, bidirectional=bidirectional, dt_min=1e-2, dt_max=0.3, key=jr.key(0))
    core = _perturb(core, seed=3)
    _inside_guards(core.log_dt, core.log_neg_re)
    K = _s4_reference_kernel(core, l_max)
    assert_close(core.kernel(l_max), K, rtol=1e-9)
    L = 21  # shorter inputs see the first taps of the l_max kernel
    u = np.random.default_rng(0).normal(size=(L, H))
    expected = _apply_kernels(K[..., :L], _np(core.D), u, bidirectional)
    assert_close(core(jnp.asarray(u)), expected, rtol=1e-9)


# --- EMA: Ma et al. 2023 (Mega) ---------------------------------------------------


def _ema_reference(core, x, truncation=None):
    """Mega's damped EMA as the explicit recurrence over t, per channel and dim j:

    `α = sigmoid(alpha_logit)`, `δ = sigmoid(delta_logit)`,
    `z_t = α β x_t + (1 − α δ) z_{t−1}`, `y_t = Σ_j η_j z_t + ω x_t`;
    bidirectional: a second EMA with its own `α, δ, β, η` over the reversed sequence.
    With `truncation=T`, the explicit sum over lags `l < T` instead:
    `Σ_l K_l x_{t−l}` with `K_l = Σ_j η_j β_j α_j (1 − α_j δ_j)^l`.
    """
    alpha, delta = _sigmoid(_np(core.alpha_logit)), _sigmoid(_np(core.delta_logit))
    beta, eta = _np(core.beta), _np(core.eta)

    def run(a, d, b, e, xs):
        if truncation is not None:
            K = [np.sum(e * b * a * (1.0 - a * d) ** lag, axis=-1) for lag in range(truncation)]
            return np.stack(
                [sum(K[lag] * xs[t - lag] for lag in range(min(truncation, t + 1))) for t in range(len(xs))]
            )
        z = np.zeros(a.shape)  # (H, h)
        ys = np.zeros(xs.shape)
        for t in range(xs.shape[0]):
            z = a * b * xs[t][:, None] + (1.0 - a * d) * z
            ys[t] = np.sum(e * z, axis=-1)
        return ys

    y = _np(core.omega) * x
    if not core.bidirectional:
        return y + run(alpha, delta, beta, eta, x)
    y = y + run(alpha[0], delta[0], beta[0], eta[0], x)
    return y + run(alpha[1], delta[1], beta[1], eta[1], x[::-1])[::-1]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_ema_output_from_raw_leaves(bidirectional, x64):
    core = EMA(H, 4, bidirectional=bidirectional, key=jr.key(0))
    core = _perturb(core, seed=4, scale=1.0)  # α, δ well spread over (0, 1)
    x = np.random.default_rng(0).normal(size=(50, H))
    assert_close(core(jnp.asarray(x)), _ema_reference(core, x), rtol=1e-10)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_truncated_ema_from_raw_leaves(bidirectional, x64):
    core = EMA(H, 4, bidirectional=bidirectional, truncation=7, key=jr.key(0))
    core = _perturb(core, seed=5, scale=1.0)
    x = np.random.default_rng(0).normal(size=(30, H))
    assert_close(core(jnp.asarray(x)), _ema_reference(core, x, truncation=7), rtol=1e-10)
    # At or below the truncation length nothing is cut: the untruncated EMA.
    assert_close(core(jnp.asarray(x[:7])), _ema_reference(core, x[:7]), rtol=1e-10)
    if not bidirectional:
        with pytest.raises(
            ValueError, match="truncated to 7 taps is a convolution with no finite recurrence"
        ):
            core.init_state()


# --- saturated parameters: finite where the definition is ---------------------------


def _saturated_ema():
    """An EMA whose first channel's α and δ logits (20) round both gates to 1 in float32."""
    core = EMA(H, 4, key=jr.key(0))
    return eqx.tree_at(
        lambda c: (c.alpha_logit, c.delta_logit),
        core,
        (core.alpha_logit.at[0, :2].set(20.0), core.delta_logit.at[0, :2].set(20.0)),
    )


def test_ema_with_saturated_gates_matches_the_recurrence():
    """float32 EMA whose α and δ logits (20) round both gates to 1, so `1 − αδ`
    is 0 in float32: the output is finite and equals the float64 recurrence from
    the raw leaves (there `1 − αδ ≈ 4e-9`)."""
    core = _saturated_ema()
    x = np.random.default_rng(0).normal(size=(30, H))
    got = np.asarray(core(jnp.asarray(x, jnp.float32)))
    assert np.isfinite(got).all()
    assert_close(got, _ema_reference(core, x), rtol=1e-5, atol=1e-5)


def _fd_grads(loss, core, names, eps=1e-6):
    """Central differences in float64 of `loss(core)` (a float64 NumPy reference
    reading the raw leaves) with respect to the named leaves, entry by entry."""
    grads = {}
    for name in names:
        leaf = _np(getattr(core, name))
        g = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            hi, lo = leaf.copy(), leaf.copy()
            hi[idx] += eps
            lo[idx] -= eps
            at = lambda v: eqx.tree_at(lambda c: getattr(c, name), core, v)  # noqa: B023, E731
            g[idx] = (loss(at(hi)) - loss(at(lo))) / (2 * eps)
        grads[name] = g
    return grads


def test_ema_with_saturated_gates_has_finite_exact_gradients():
    """The saturated EMA above, trained: every gradient is finite (a NaN in one
    entry would poison the whole update) and equals central differences of the
    float64 recurrence, where the saturated gates' logit gradients are ~1e-8."""
    core = _saturated_ema()
    x = np.random.default_rng(0).normal(size=(30, H))
    w = np.random.default_rng(1).normal(size=(30, H))
    x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    got = eqx.filter_grad(lambda c: jnp.sum(w32 * c(x32)))(core)
    names = ("alpha_logit", "delta_logit", "beta", "eta", "omega")
    want = _fd_grads(lambda c: float(np.sum(w * _ema_reference(c, x))), core, names)
    for name in names:
        g = np.asarray(getattr(got, name))
        assert np.isfinite(g).all(), name
        assert_close(g, want[name], rtol=1e-4, atol=1e-5)


def test_s4d_bilinear_with_a_pole_at_zero_has_finite_exact_gradients(x64):
    """The `Ā = 0` pole below, trained: finite gradients of `Σ K²` equal to central
    differences of the float64 kernel from its definition (`K_1 = 0` there, so the
    pole's own tap contributes nothing to this loss's slope)."""
    core = S4D(H, N, init="lin", discretization="bilinear", dt_min=4.0, dt_max=4.0, key=jr.key(0))
    core = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, core)
    got = eqx.filter_grad(lambda c: jnp.sum(c.kernel(12) ** 2))(core)
    names = ("log_dt", "log_neg_re", "lambda_im", "b_re", "c_re")
    want = _fd_grads(lambda c: float(np.sum(_s4d_reference_kernel(c, 12) ** 2)), core, names)
    for name in names:
        g = np.asarray(getattr(got, name))
        assert np.isfinite(g).all(), name
        assert_close(g, want[name], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_ema_kernel_gradient_at_a_pole_at_zero(impl):
    """`K_l = ηβα(1 − αδ)^l` at `α = δ = 1`: `∂K_l/∂α = ηβ(r^l − lαδ r^{l−1})` with
    `r = 0` is `ηβ` at `l = 0`, `−ηβ` at `l = 1` and 0 after, so for `Σ_l w_l K_l`
    the gradient is `ηβ(w_0 − w_1)` (and `−ηβ w_1` for δ)."""
    alpha = delta = jnp.ones((1, 1))
    beta, eta = jnp.full((1, 1), 0.5), jnp.full((1, 1), 3.0)
    w = jnp.asarray([[0.7, -1.3, 2.0, 0.4, 5.0]])
    loss = lambda a, d: jnp.sum(w * ema_kernel(a, d, beta, eta, 5, impl=impl))  # noqa: E731
    ga, gd = jax.grad(loss, argnums=(0, 1))(alpha, delta)
    assert_close(ga, np.full((1, 1), 1.5 * (0.7 + 1.3)), rtol=1e-6)
    assert_close(gd, np.full((1, 1), -1.5 * -1.3), rtol=1e-6)
    assert_close(ema_kernel(alpha, delta, beta, eta, 5, impl=impl), np.array([[1.5, 0, 0, 0, 0]]), rtol=1e-6)


def test_s4d_bilinear_with_a_pole_at_zero_matches_the_definition(x64):
    """A real pole with `Δ|λ|/2 = 1` (the `lin` init's mode 0, Δ = 4) has bilinear
    `Ā = 0`: `K_0 = 2 Re(C B̄)` and every later tap 0, not NaN."""
    core = S4D(H, N, init="lin", discretization="bilinear", dt_min=4.0, dt_max=4.0, key=jr.key(0))
    assert (_np(core.lambda_im)[:, 0] == 0).all()
    K = np.asarray(core.kernel(12))
    assert np.isfinite(K).all()
    assert_close(K, _s4d_reference_kernel(core, 12), rtol=1e-10, atol=1e-12)
