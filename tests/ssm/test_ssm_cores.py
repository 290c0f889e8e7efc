"""Every SSM core against float64 references built from its discrete system
(explicit matrix powers, explicit recurrences), for S4 against the dense
HiPPO-LegS system it represents, and padding masks. The map from the raw
parameter leaves to the kernels is checked in test_ssm_parameterization.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from helpers import assert_close, enable_x64, scan_steps
from seqkit.ssm import DSS, EMA, S4, S4D, S5, DiscreteSystem, dss_kernel, hippo_legs, s4_kernel

H, N = 3, 8
L_MAX = 100

CORES = {
    "s4": lambda b, key: S4(H, N, l_max=L_MAX, bidirectional=b, key=key),
    "s4d-legs-zoh": lambda b, key: S4D(H, N, init="legs", bidirectional=b, key=key),
    "s4d-lin-bilinear": lambda b, key: S4D(
        H, N, init="lin", discretization="bilinear", bidirectional=b, key=key
    ),
    "s4d-inv-zoh": lambda b, key: S4D(H, N, init="inv", bidirectional=b, key=key),
    "dss-exp": lambda b, key: DSS(H, N, variant="exp", bidirectional=b, key=key),
    "dss-softmax": lambda b, key: DSS(H, N, variant="softmax", bidirectional=b, key=key),
    "ema": lambda b, key: EMA(H, 4, bidirectional=b, key=key),
}


def _perturbed(name, bidirectional, seed=0):
    """A core whose parameters are moved away from their structured init, so the
    tests exercise general values (any p, B, C; some growing DSS-softmax modes)."""
    key = jr.key(seed)
    core = CORES[name](bidirectional, key)
    leaves, treedef = jax.tree.flatten(eqx.filter(core, eqx.is_array))
    keys = jr.split(jr.key(seed + 1), len(leaves))
    leaves = [x + 0.1 * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    params = jax.tree.unflatten(treedef, leaves)
    core = eqx.combine(params, core)
    if name == "dss-softmax":  # make two modes grow: Re λ > 0 is allowed here
        core = eqx.tree_at(lambda c: c.lambda_re, core, core.lambda_re.at[0, :2].set(0.3))
    return core


def _np_system(s: DiscreteSystem):
    return tuple(np.asarray(a).astype(np.complex128) for a in s[:3]) + (np.asarray(s.D, np.float64),)


def _kernel_by_powers(system, L):
    A, B, C, _ = _np_system(system)
    K = np.zeros((A.shape[0], L))
    for h in range(A.shape[0]):
        P = np.eye(A.shape[-1], dtype=complex)
        for l in range(L):
            K[h, l] = np.real(C[h] @ P @ B[h])
            P = A[h] @ P
    return K


def _recurrence(system, u):
    A, B, C, D = _np_system(system)
    x = np.zeros(B.shape, complex)
    y = np.zeros(u.shape)
    for t in range(u.shape[0]):
        x = np.einsum("hij,hj->hi", A, x) + B * u[t][:, None]
        y[t] = np.real(np.sum(C * x, -1)) + D * u[t]
    return y


def _tol(dtype):
    return 1e-9 if dtype == jnp.float64 else 2e-3


@pytest.fixture(params=["float32", "float64"])
def precision(request):
    if request.param == "float64":
        with enable_x64():
            yield jnp.float64
    else:
        yield jnp.float32


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", sorted(CORES))
def test_kernel_equals_matrix_powers_of_discrete_system(name, bidirectional, precision):
    core = _perturbed(name, bidirectional)
    for L in (1, 37, 64, L_MAX):
        systems = core.discrete_system(L)
        systems = systems if bidirectional else (systems,)
        for s in systems:
            assert s.A_bar.shape == (H, s.B_bar.shape[1], s.B_bar.shape[1])
        K = core.kernel(L)
        assert K.dtype == precision
        expected = np.stack([_kernel_by_powers(s, L) for s in systems])
        assert_close(K, expected if bidirectional else expected[0], rtol=_tol(precision))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", sorted(CORES))
def test_call_equals_float64_recurrence(name, bidirectional, precision):
    core = _perturbed(name, bidirectional, seed=3)
    L = 45
    u = np.random.default_rng(0).normal(size=(L, H))
    y = core(jnp.asarray(u, precision))
    assert y.shape == (L, H) and y.dtype == precision
    systems = core.discrete_system(L)
    if bidirectional:
        fwd, bwd = systems
        assert np.all(np.asarray(bwd.D) == 0)
        expected = _recurrence(fwd, u) + _recurrence(bwd, u[::-1])[::-1]
    else:
        expected = _recurrence(systems, u)
    assert_close(y, expected, rtol=_tol(precision))


@pytest.mark.parametrize("name", sorted(CORES))
def test_step_mode_equals_conv_mode(name):
    core = _perturbed(name, False, seed=5)
    L = 60
    u = jr.normal(jr.key(1), (L, H))

    ys = scan_steps(core, u, core.init_state(L))
    assert_close(ys, core(u), rtol=2e-3)


@pytest.mark.parametrize("l_max, L", [(L_MAX, L_MAX), (64, 64), (63, 63), (64, 20), (63, 1)])
def test_s4_equals_dense_hippo_bilinear_system(l_max, L, x64):
    """The DPLR/Cauchy kernel equals C Ā^l B̄ of the dense bilinear HiPPO-LegS
    system, with C chosen in the original basis and mapped to C̃ = C (I − Ā^{l_max}).

    C̃ depends on l_max, so for L < l_max the first L taps of the l_max kernel (and
    conv mode on a length-L input) still equal the dense system's, while a kernel
    evaluated at L itself would not."""
    core = S4(2, N, l_max=l_max, dt_min=1e-2, dt_max=1e-1, key=jr.key(0))
    h = hippo_legs(N)
    rng = np.random.default_rng(0)
    C_orig = rng.normal(size=(2, N))
    dt = np.exp(np.asarray(core.log_dt))
    c_tilde = np.zeros((2, N // 2), complex)
    expected = np.zeros((2, L))
    u = rng.normal(size=(L, 2))
    y_dense = np.asarray(core.D)[None] * u
    I = np.eye(N)
    for ch in range(2):
        inv = np.linalg.inv(I - dt[ch] / 2 * h.A)
        A_bar, B_bar = inv @ (I + dt[ch] / 2 * h.A), inv @ (dt[ch] * h.B)
        Ak = np.eye(N)
        for l in range(L):
            expected[ch, l] = C_orig[ch] @ Ak @ B_bar
            Ak = A_bar @ Ak
        x = np.zeros(N)
        for t in range(L):  # the dense recurrence, in the original basis
            x = A_bar @ x + B_bar * u[t, ch]
            y_dense[t, ch] += C_orig[ch] @ x
        # In the eigenbasis: C_eig = C V and C̃ = C_eig (I − Ā_eig^{l_max}).
        A_eig = h.V.conj().T @ A_bar @ h.V
        C_eig = C_orig[ch] @ h.V
        c_tilde[ch] = (C_eig @ (I - np.linalg.matrix_power(A_eig, l_max)))[: N // 2]
    c = (jnp.asarray(c_tilde.real), jnp.asarray(c_tilde.imag))
    core = eqx.tree_at(lambda c: (c.c_re, c.c_im), core, c)
    assert_close(core.kernel(L), expected, rtol=1e-9)
    assert_close(core(jnp.asarray(u)), y_dense, rtol=1e-9)
    if L < l_max:  # the same parameters read as learned for L give another kernel
        short = S4(2, N, l_max=L, dt_min=1e-2, dt_max=1e-1, key=jr.key(0))
        short = eqx.tree_at(lambda c: (c.c_re, c.c_im), short, c)
        other = np.asarray(short.kernel(L))
        assert np.max(np.abs(other - expected)) > 1e-3 * np.max(np.abs(expected))


def test_s4_input_longer_than_l_max_is_an_error():
    core = S4(H, N, l_max=64, key=jr.key(0))
    core(jnp.zeros((64, H)))
    with pytest.raises(ValueError, match="l_max=64"):
        core(jnp.zeros((65, H)))


def test_dss_softmax_kernel_depends_on_length():
    """The softmax normalizes each mode over the L taps, so unlike the other cores
    the length-20 kernel is not the first 20 taps of the length-64 one (each is
    checked against its own length-L system above)."""
    core = _perturbed("dss-softmax", False)
    short, long = np.asarray(core.kernel(20)), np.asarray(core.kernel(64))
    assert np.max(np.abs(short - long[:, :20])) > 1e-2 * np.max(np.abs(short))


@pytest.mark.parametrize("name", sorted(CORES))
def test_jit_and_vmap(name):
    core = _perturbed(name, True)
    u = jr.normal(jr.key(2), (4, 32, H))
    y = jax.jit(jax.vmap(core))(u)
    assert y.shape == (4, 32, H)
    assert_close(y[2], core(u[2]), rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", sorted(CORES))
def test_padding_mask(name, bidirectional, x64):
    """Padded positions reach no real output, in either direction.

    A padded input gives at its real positions exactly the outputs of the
    unpadded input, for every core, wherever the padding sits: DSS-softmax, whose
    kernel is normalized over the length, normalizes over the real span (first to
    last real position) when a mask is given."""
    core = _perturbed(name, bidirectional, seed=7)
    n, pad = 23, 9
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(n, H)))
    junk = jnp.asarray(1e3 * rng.normal(size=(pad, H)))
    mask = jnp.arange(n + pad) < n
    y = core(jnp.concatenate([u, junk]), mask=mask)
    assert y.shape == (n + pad, H) and y.dtype == jnp.float64
    assert_close(y[:n], core(u), rtol=1e-10)
    # Padding on both sides (left-padded batches): the same outputs, shifted.
    left = 5
    both = jnp.concatenate([junk[:left], u, junk[left:]])
    y = core(both, mask=(jnp.arange(n + pad) >= left) & (jnp.arange(n + pad) < left + n))
    assert_close(y[left : left + n], core(u), rtol=1e-10)
    # A mask with holes (the first and last positions real): masked inputs are zeros,
    # wherever they sit.
    v = jnp.asarray(rng.normal(size=(n, H)))
    holes = jnp.asarray(rng.random(n) < 0.7).at[0].set(True).at[-1].set(True)
    assert_close(core(v, mask=holes), core(jnp.where(holes[:, None], v, 0.0)), rtol=1e-10)


@pytest.mark.parametrize("name", sorted(CORES))
def test_bad_masks_raise_clear_errors(name):
    core = CORES[name](True, jr.key(0))
    u = jnp.zeros((10, H))
    with pytest.raises(ValueError, match=r"padding mask of shape \(10,\), got \(9,\)"):
        core(u, mask=jnp.ones(9, bool))
    with pytest.raises(ValueError, match=r"padding mask of shape \(10,\), got \(10, 1\)"):
        core(u, mask=jnp.ones((10, 1), bool))
    for dtype in ("int32", "float32"):
        with pytest.raises(ValueError, match=f"bool padding mask.*got dtype {dtype}"):
            core(u, mask=jnp.ones(10, dtype))


@pytest.mark.parametrize("name", sorted(CORES))
def test_bad_inputs_raise_clear_errors(name):
    core = CORES[name](False, jr.key(0))
    with pytest.raises(ValueError, match=rf"expected input of shape \(L, {H}\).*got \(10, {H + 1}\)"):
        core(jnp.zeros((10, H + 1)))
    with pytest.raises(ValueError, match=rf"got \(2, 10, {H}\)"):
        core(jnp.zeros((2, 10, H)))
    with pytest.raises(ValueError, match="real floating input, got dtype int32"):
        core(jnp.zeros((10, H), jnp.int32))
    with pytest.raises(ValueError, match=rf"step input of shape \({H},\)"):
        core.step(jnp.zeros((2, H)), core.init_state(10))
    bi = CORES[name](True, jr.key(0))
    with pytest.raises(ValueError, match="bidirectional"):
        bi.init_state(10)
    # Parameters cast to bfloat16 (a mixed-precision step over the whole model).
    half = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if eqx.is_inexact_array(x) else x, core)
    message = "SSM core parameters must be float32 or float64, got bfloat16; keep the core in float32"
    with pytest.raises(ValueError, match=message):
        half(jnp.zeros((10, H)))
    with pytest.raises(ValueError, match=message):
        half.init_state(10)


def test_dss_kernel_normalizing_length():
    core = _perturbed("dss-softmax", False)
    params = core._params()
    # taps l < n of the length-n normalization are the length-n kernel's, concrete or traced
    n, L = 7, 12
    short = np.asarray(dss_kernel(*params, n, "softmax"))
    assert_close(dss_kernel(*params, L, "softmax", length=n)[:, :n], short, rtol=1e-5)
    traced = jax.jit(lambda m: dss_kernel(*params, L, "softmax", length=m))(jnp.int32(n))
    assert_close(traced[:, :n], short, rtol=1e-5)
    for bad in (0, L + 1):
        with pytest.raises(ValueError, match=rf"1 <= length <= L={L}, got {bad}"):
            dss_kernel(*params, L, "softmax", length=bad)


@pytest.mark.parametrize("name", sorted(CORES))
def test_kernel_of_length_0_is_a_clear_error(name):
    core = CORES[name](False, jr.key(0))
    with pytest.raises(ValueError, match="expected a positive integer length L, got 0"):
        # S4's kernel(L) takes the first L taps of its length-l_max kernel
        s4_kernel(*core._params(), 0) if name == "s4" else core.kernel(0)


def test_dss_softmax_system_needs_length():
    with pytest.raises(ValueError, match="pass L"):
        DSS(H, N, variant="softmax", key=jr.key(0)).discrete_system()


def test_dss_softmax_stepping_past_its_length_is_an_error():
    # The softmax is over the L steps of init_state(L): L steps run, the next raises
    # (as Mega's attention state does), also under jit.
    core = DSS(H, N, variant="softmax", key=jr.key(0))
    u = jr.normal(jr.key(1), (6, H))
    assert np.isfinite(np.asarray(jax.jit(scan_steps)(core, u, core.init_state(6)))).all()
    with pytest.raises(Exception, match=r"stepped past the length given to init_state\(L\)"):
        jax.block_until_ready(jax.jit(scan_steps)(core, u, core.init_state(5)))


def test_invalid_options():
    # Literal-typed options: the jaxtyping hook of the test suite rejects them
    # first; without it the constructor's own ValueError does.
    with pytest.raises((ValueError, TypeCheckError)):
        S4D(H, N, init="foo", key=jr.key(0))
    with pytest.raises((ValueError, TypeCheckError)):
        DSS(H, N, variant="foo", key=jr.key(0))
    with pytest.raises(ValueError, match="even integer"):
        S4(H, 7, key=jr.key(0))
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        S4D(H, N, dt_min=0.1, dt_max=0.01, key=jr.key(0))
    # Δ is clamped to [1e-6, 10] in use: a range outside would sit at the bound
    # with a zero gradient, so it is refused where the cores take it.
    for core, kw in ((S4D, {}), (S4, {}), (DSS, {}), (S5, {"blocks": 1})):
        for lo, hi in ((20.0, 50.0), (1e-8, 1e-7)):
            with pytest.raises(
                ValueError, match=r"1e-06 <= dt_min <= dt_max <= 10 \(the range Δ is clamped to\)"
            ):
                core(H, N, dt_min=lo, dt_max=hi, key=jr.key(0), **kw)


def _long_cores(dt, n):
    kw = dict(dt_min=dt, dt_max=dt, key=jr.key(0))
    return {
        "s4": S4(2, n, l_max=16384, bidirectional=True, **kw),
        "s4d": S4D(2, n, bidirectional=True, **kw),
        "s4d-bilinear": S4D(2, n, discretization="bilinear", **kw),
        "dss-exp": DSS(2, n, **kw),
        "dss-softmax": DSS(2, n, variant="softmax", **kw),
        "ema": EMA(2, n // 4, bidirectional=True, key=jr.key(0)),
    }


@pytest.mark.parametrize("n", [64, 256])
@pytest.mark.parametrize("dt", [1e-4, 1e-1])
def test_kernels_and_grads_finite_at_long_lengths(dt, n):
    L = 16384
    for name, core in _long_cores(dt, n).items():
        params, static = eqx.partition(core, eqx.is_array)

        def loss(p, static=static):
            return jnp.mean(eqx.combine(p, static).kernel(L) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        assert np.isfinite(float(value)), name
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), name


@pytest.mark.parametrize("cls", [S4, S4D])
def test_long_layer_fwd_bwd_memory_does_not_grow_with_the_full_tensor(cls):
    """d_model=256, L=16384, forward+backward: going from N=64 to N=256 must add
    far less memory than the (H, N/2, L) complex tensor would (3 GiB more);
    checked on the compiled programs."""

    def temp_bytes(N):
        kw = dict(l_max=16384) if cls is S4 else {}
        params, static = eqx.partition(cls(256, N, key=jr.key(0), **kw), eqx.is_array)
        u = jax.ShapeDtypeStruct((16384, 256), jnp.float32)

        def loss(p, u):
            return jnp.mean(eqx.combine(p, static)(u) ** 2)

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, u).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    full_growth = 256 * (128 - 32) * 16384 * 8
    assert temp_bytes(256) - temp_bytes(64) < full_growth / 8
