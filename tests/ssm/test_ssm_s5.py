"""S5 against independent float64 references: an explicit NumPy loop of the discrete
recurrence built from the raw parameter leaves, the matrix exponential of the
augmented system (ZOH), a diffrax solve of the continuous system (irregular
sampling), and HiPPO-N's eigenvalues computed here from the definition of LegS."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg
from jaxtyping import TypeCheckError

import seqkit.nn as snn
from helpers import assert_close, scan_steps
from seqkit.ssm import S5, s5_discretize

H, P = 3, 8


@eqx.filter_jit
def _call(core, u, timesteps=None, mask=None):
    """`core(u)` as one compiled program (cheaper to build than the scan's many eager ops)."""
    return core(u, timesteps=timesteps, mask=mask)


def _perturbed(seed=0, **kw):
    """An S5 core whose leaves are moved away from the structured init."""
    core = S5(H, kw.pop("state_size", P), key=jr.key(seed), **kw)
    leaves, treedef = jax.tree.flatten(eqx.filter(core, eqx.is_array))
    keys = jr.split(jr.key(seed + 1), len(leaves))
    leaves = [x + 0.1 * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), core)


def _np_params(core):
    """`(Λ, B̃, C̃ (dirs, H, n), D, Δ)` in complex128/float64, from the raw leaves."""
    neg_re = np.exp(np.asarray(core.log_neg_re, np.float64))
    dt = np.exp(np.asarray(core.log_dt, np.float64))
    # The clamps (Re λ ≤ −1e-4, Δ ∈ [1e-6, 10]) are inactive at these values.
    assert neg_re.min() > 1e-4 and 1e-6 < dt.min() and dt.max() < 10
    Lam = -neg_re + 1j * np.asarray(core.lambda_im, np.float64)
    B = np.asarray(core.b_re, np.float64) + 1j * np.asarray(core.b_im, np.float64)
    C = np.asarray(core.c_re, np.float64) + 1j * np.asarray(core.c_im, np.float64)
    C = C if core.bidirectional else C[None]
    return Lam, B, C, np.asarray(core.D, np.float64), dt


def _np_discretize(Lam, B, dt, discretization):
    if discretization == "zoh":
        Lb = np.exp(Lam * dt)
        return Lb, ((Lb - 1) / Lam)[:, None] * B
    den = 1 - dt * Lam / 2
    return (1 + dt * Lam / 2) / den, (dt / den)[:, None] * B


def _np_reference(core, u, timesteps=None):
    """Explicit loops of `x_k = Λ̄_k x_{k∓1} + B̄_k u_k`, `y_k = f Re(C x_k) + D u_k`."""
    Lam, B, C, D, dt = _np_params(core)
    L = u.shape[0]
    ts = np.ones(L) if timesteps is None else np.asarray(timesteps, np.float64)
    f = 2.0 if core.conj_sym else 1.0
    y = D * u
    for d, order in enumerate([range(L), reversed(range(L))][: C.shape[0]]):
        x = np.zeros(Lam.shape, complex)
        for k in order:
            Lb, Bb = _np_discretize(Lam, B, dt * ts[k], core.discretization)
            x = Lb * x + Bb @ u[k]
            y[k] += f * np.real(C[d] @ x)
    return y


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("conj_sym", [True, False])
@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_scan_equals_float64_loop(x64, discretization, conj_sym, bidirectional, irregular):
    core = _perturbed(
        seed=3, blocks=2, conj_sym=conj_sym, discretization=discretization, bidirectional=bidirectional
    )
    L = 37
    rng = np.random.default_rng(0)
    u = rng.normal(size=(L, H))
    ts = rng.uniform(0.1, 3.0, size=L) if irregular else None
    y = _call(core, jnp.asarray(u), None if ts is None else jnp.asarray(ts))
    assert y.shape == (L, H) and y.dtype == jnp.float64
    assert_close(y, _np_reference(core, u, ts), rtol=1e-10)


def test_float32_scan_is_close_to_the_float64_loop():
    core = _perturbed(seed=4, bidirectional=True)
    u = np.random.default_rng(1).normal(size=(64, H))
    y = _call(core, jnp.asarray(u, jnp.float32))
    assert y.dtype == jnp.float32
    assert_close(y, _np_reference(core, u), rtol=1e-4)


def test_pallas_scan_equals_the_float64_loop():
    # The Pallas kernel (interpret mode on CPU), per-position Λ̄ and both directions.
    core = _perturbed(seed=5, bidirectional=True, impl="pallas")
    rng = np.random.default_rng(2)
    u, ts = rng.normal(size=(21, H)), rng.uniform(0.1, 3.0, size=21)
    y = _call(core, jnp.asarray(u, jnp.float32), jnp.asarray(ts, jnp.float32))
    assert_close(y, _np_reference(core, u, ts), rtol=1e-4)
    xla = _perturbed(seed=5, bidirectional=True, impl="xla")
    assert_close(y, _call(xla, jnp.asarray(u, jnp.float32), jnp.asarray(ts, jnp.float32)), rtol=1e-5)


@pytest.mark.parametrize("dt", [0.0, 1e-6, 1e-3, 0.1, 1.0, 10.0])
def test_zoh_equals_matrix_exponential_of_augmented_system(x64, dt):
    """`expm([[ΛΔ, BΔ], [0, 0]]) = [[Λ̄, B̄], [0, I]]` for the model's Λ and B̃."""
    core = _perturbed(seed=5, state_size=16, blocks=2)
    Lam, B, _, _, dts = _np_params(core)
    n = Lam.shape[0]
    # Per-state steps spread around `dt` (all equal to 0 for dt = 0).
    d = dt * dts / dts.mean()
    M = np.zeros((n + H, n + H), complex)
    M[:n, :n] = np.diag(Lam * d)
    M[:n, n:] = d[:, None] * B
    E = scipy.linalg.expm(M)
    Lb, gamma = s5_discretize(jnp.asarray(Lam), jnp.asarray(d), "zoh")
    assert_close(Lb, np.diag(E[:n, :n]), rtol=1e-13)
    assert_close(np.asarray(gamma)[:, None] * B, E[:n, n:], rtol=1e-12, atol=1e-300)
    # Per-position steps broadcast: row k is the discretization with Δ·t_k.
    t = np.array([0.5, 1.0, 2.0])
    Lb2, g2 = s5_discretize(jnp.asarray(Lam), jnp.asarray(d[None, :] * t[:, None]), "zoh")
    assert Lb2.shape == g2.shape == (3, n)
    assert_close(Lb2[1], Lb, rtol=1e-15)
    assert_close(g2[1], gamma, rtol=1e-15, atol=1e-300)


def test_bilinear_discretization_formula(x64):
    Lam = np.array([-0.5 + 2j, -0.1 - 1j, -3.0 + 0j])
    d = np.array([0.1, 1.0, 0.01])
    Lb, gamma = s5_discretize(jnp.asarray(Lam), jnp.asarray(d), "bilinear")
    # Tustin: Λ̄ is the (1,1)-Padé approximant of exp(ΛΔ), and B̄ = (1 − ΔΛ/2)⁻¹ Δ B.
    assert_close(Lb, (2 + d * Lam) / (2 - d * Lam), rtol=1e-15)
    assert_close(gamma, 2 * d / (2 - d * Lam), rtol=1e-15)


@pytest.mark.parametrize("conj_sym", [True, False])
def test_irregular_sampling_equals_diffrax_solve(x64, conj_sym):
    """With `Δ_k = Δ·t_k` and ZOH, the outputs are the continuous system
    `x' = diag(Δ)(Λ x + B u(t))`, `u = u_k` held on `(s_{k−1}, s_k]` with
    `s_k = t_0 + … + t_k`, sampled at `s_k`: `y_k = f Re(C x(s_k)) + D u_k`."""
    core = _perturbed(seed=6, conj_sym=conj_sym, dt_min=0.3, dt_max=1.0)
    Lam, B, C, D, dt = _np_params(core)
    L = 12
    rng = np.random.default_rng(2)
    u = rng.normal(size=(L, H))
    ts = rng.uniform(0.05, 2.0, size=L)
    a, b = dt * Lam.real, dt * Lam.imag

    def field(t, z, Bu):  # the complex system in real coordinates (Re x, Im x)
        xr, xi = z
        return a * xr - b * xi + dt * Bu[0], b * xr + a * xi + dt * Bu[1]

    @jax.jit
    def interval(z, t0, t1, Bu):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Dopri8(),
            t0,
            t1,
            None,
            z,
            args=Bu,
            stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
            max_steps=10_000,
        )
        return jax.tree.map(lambda x: x[-1], sol.ys)

    z = (jnp.zeros(Lam.shape), jnp.zeros(Lam.shape))
    s = np.concatenate([[0.0], np.cumsum(ts)])
    expected = np.zeros((L, H))
    f = 2.0 if conj_sym else 1.0
    for k in range(L):
        Bu = B @ u[k]
        z = interval(
            z, jnp.asarray(s[k]), jnp.asarray(s[k + 1]), (jnp.asarray(Bu.real), jnp.asarray(Bu.imag))
        )
        x = np.asarray(z[0]) + 1j * np.asarray(z[1])
        expected[k] = f * np.real(C[0] @ x) + D * u[k]
    y = _call(core, jnp.asarray(u), jnp.asarray(ts))
    assert_close(y, expected, rtol=1e-9)


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("conj_sym", [True, False])
def test_step_mode_equals_scan(irregular, conj_sym):
    core = _perturbed(seed=7, conj_sym=conj_sym, blocks=2)
    L = 50
    u = jr.normal(jr.key(1), (L, H))
    if irregular:
        ts = jr.uniform(jr.key(2), (L,), minval=0.1, maxval=3.0)

        @eqx.filter_jit
        def stepped(core, u, ts):
            def body(state, inp):
                y, state = core.step(inp[0], state, timestep=inp[1])
                return state, y

            return jax.lax.scan(body, core.init_state(), (u, ts))[1]

        assert_close(stepped(core, u, ts), _call(core, u, ts), rtol=2e-5)
    else:
        ys = eqx.filter_jit(scan_steps)(core, u, core.init_state(L))
        assert_close(ys, _call(core, u), rtol=2e-5)


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_mask(x64, bidirectional, irregular):
    core = _perturbed(seed=8, bidirectional=bidirectional)
    n, pad = 23, 9
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(n, H)))
    junk = jnp.asarray(1e3 * rng.normal(size=(pad, H)))
    mask = jnp.arange(n + pad) < n
    ts = jnp.asarray(rng.uniform(0.1, 3.0, size=n)) if irregular else None
    # Padding with zero steps (Λ̄ = 1, B̄ = 0) is allowed.
    ts_pad = None if ts is None else jnp.concatenate([ts, jnp.zeros(pad)])
    y = _call(core, jnp.concatenate([u, junk]), ts_pad, mask)
    assert y.shape == (n + pad, H)
    assert_close(y[:n], _call(core, u, ts), rtol=1e-12)
    # Holes: masked inputs are zeros wherever they sit (time still passes there).
    holes = jnp.asarray(rng.random(n) < 0.7).at[-1].set(True)
    assert_close(_call(core, u, ts, holes), _call(core, jnp.where(holes[:, None], u, 0.0), ts), rtol=1e-12)


def _hippo_n(N):
    """HiPPO-N from its definition: LegS `A` plus the rank-one `P Pᵀ`, `P_n = sqrt(n + 1/2)`."""
    A = np.zeros((N, N))
    for i in range(N):
        for k in range(N):
            if i > k:
                A[i, k] = -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
            elif i == k:
                A[i, k] = -(i + 1)
    p = np.sqrt(np.arange(N) + 0.5)
    return A + np.outer(p, p)


@pytest.mark.parametrize("conj_sym", [True, False])
@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_init_is_hippo_n_in_its_eigenbasis(x64, blocks, conj_sym):
    Ptot = 16
    size = Ptot // blocks
    S = _hippo_n(size)
    assert np.allclose(S @ S.T, S.T @ S)  # normal
    eig = np.linalg.eigvals(S)
    want = eig[eig.imag > 0] if conj_sym else eig
    core = S5(H, Ptot, blocks=blocks, conj_sym=conj_sym, key=jr.key(0))
    Lam = _np_params(core)[0]
    assert Lam.shape == (blocks * want.size,) and np.all(Lam.real < 0)
    for j in range(blocks):
        got = Lam[j * want.size : (j + 1) * want.size]
        # All real parts are −1/2 (up to rounding): order by imaginary part.
        assert_close(got[np.argsort(got.imag)], want[np.argsort(want.imag)], rtol=1e-12)
    # B̃ = V⁻¹B, C̃ = CV for real B, C: the Markov parameters Σ_j λ_j^k C̃_j B̃_j
    # (blind to each eigenvector's phase) are those of a real system, and the
    # conjugate-symmetric half gives the full system's through 2 Re(·).
    full = S5(H, Ptot, blocks=blocks, conj_sym=False, key=jr.key(0))
    for k in range(4):
        M = np.einsum("hn,n,nd->hd", *_markov(core, k))
        Mf = np.einsum("hn,n,nd->hd", *_markov(full, k))
        assert np.abs(Mf.imag).max() < 1e-12 * np.abs(Mf).max()
        assert_close(2 * M.real if conj_sym else M, Mf.real, rtol=1e-12)


def _markov(core, k):
    Lam, B, C, _, _ = _np_params(core)
    return C[0], Lam**k, B


def test_gradients_finite_and_nonzero(getkey):
    core = _perturbed(seed=9, bidirectional=True, blocks=2)
    u = jr.normal(getkey(), (40, H))
    ts = jr.uniform(getkey(), (40,), minval=0.1, maxval=2.0)
    params, static = eqx.partition(core, eqx.is_inexact_array)

    def loss(p, ts):
        return jnp.mean(eqx.combine(p, static)(u, timesteps=ts) ** 2)

    for t in (None, ts):
        grads = jax.jit(jax.grad(loss))(params, t)
        for g in jax.tree.leaves(grads):
            assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("dt", [1e-4, 1e-1])
def test_long_sequence_values_and_grads_finite(dt):
    L = 16384
    core = S5(2, 64, bidirectional=True, dt_min=dt, dt_max=dt, key=jr.key(0))
    u = jr.normal(jr.key(1), (L, 2))
    params, static = eqx.partition(core, eqx.is_inexact_array)
    value, grads = jax.jit(jax.value_and_grad(lambda p: jnp.mean(eqx.combine(p, static)(u) ** 2)))(params)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_jit_and_vmap():
    core = _perturbed(seed=10, bidirectional=True)
    u = jr.normal(jr.key(2), (4, 32, H))
    ts = jr.uniform(jr.key(3), (4, 32), minval=0.5, maxval=2.0)
    y = jax.jit(jax.vmap(lambda u, t: core(u, timesteps=t)))(u, ts)
    assert y.shape == (4, 32, H)
    assert_close(y[2], _call(core, u[2], ts[2]), rtol=1e-5)


def test_layer_and_config(getkey):
    config = snn.MixerConfig.from_kind("s5", state_size=8, bidirectional=False)
    assert isinstance(config, snn.S5Config)
    layer = config.build(H, max_length=16, key=getkey())
    assert isinstance(layer, snn.SSMLayer) and isinstance(layer.core, S5)
    u = jr.normal(getkey(), (20, H))
    assert_close(
        eqx.filter_jit(scan_steps)(layer, u, layer.init_state(20)), eqx.filter_jit(layer)(u), rtol=2e-5
    )
    core = layer.core
    ssm = {id(x) for x in layer.ssm_parameters()}
    assert ssm == {id(x) for x in (core.log_neg_re, core.lambda_im, core.b_re, core.b_im, core.log_dt)}


def test_errors(getkey):
    core = S5(H, P, key=getkey())
    u = jnp.zeros((10, H))
    with pytest.raises(ValueError, match=r"timesteps of shape \(10,\), got \(9,\)"):
        core(u, timesteps=jnp.ones(9))
    with pytest.raises(ValueError, match="real floating timesteps"):
        core(u, timesteps=jnp.ones(10, jnp.int32))
    # step's argument is named as step spells it
    with pytest.raises(ValueError, match=r"expected timestep of shape \(\), got \(1,\)"):
        core.step(u[0], core.init_state(), timestep=jnp.ones(1))
    # values: a runtime error, eagerly and under jit (equinox.error_if)
    for bad in (-1.0, jnp.nan, jnp.inf):
        ts = jnp.ones(10).at[3].set(bad)
        for call in (core, eqx.filter_jit(core)):
            with pytest.raises(Exception, match="finite, non-negative timesteps"):
                call(u, timesteps=ts)
        with pytest.raises(Exception, match="finite, non-negative timesteps"):
            core.step(u[0], core.init_state(), timestep=ts[3])
    with pytest.raises(ValueError, match=rf"expected input of shape \(L, {H}\)"):
        core(jnp.zeros((10, H + 1)))
    with pytest.raises(ValueError, match=rf"step input of shape \({H},\)"):
        core.step(jnp.zeros((2, H)), core.init_state())
    with pytest.raises(ValueError, match="bidirectional"):
        S5(H, P, bidirectional=True, key=getkey()).init_state()
    for size, blocks in [(8, 3), (12, 4), (8, 0), (7, 1)]:
        with pytest.raises(ValueError, match="blocks of an even size"):
            S5(H, size, blocks=blocks, key=getkey())
    with pytest.raises(NotImplementedError, match="MIMO"):
        core.kernel(10)
    with pytest.raises((ValueError, TypeCheckError), match="triton"):
        S5(H, P, impl="triton", key=getkey())
