"""The Pallas Vandermonde kernel (interpret mode on CPU) against a float64 NumPy
computation from the definition and against the XLA reference, forward and backward.

Tolerances (relative to the largest magnitude of the reference): float32 forward
2e-5 and gradients 1e-4 against float64 (the exponent `x l` is rounded once, so
phase errors grow like `|x| l · 6e-8`); 1e-5 against the XLA float32 path; float64
1e-12; bfloat16 forward 2e-2 (inputs and output rounded to 8 mantissa bits).
"""

import functools

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from helpers import assert_close
from seqkit.kernels import _dispatch, vandermonde, vandermonde_pallas
from seqkit.kernels._dispatch import Choice, choose
from seqkit.kernels._vandermonde_pallas import unsupported
from seqkit.ssm import dss_kernel, ema_kernel, s4d_kernel


def _brute(v, x, L):
    """`Re Σ_n v_n exp(x_n l)` with the `(…, n, L)` tensor materialised, in float64."""
    E = np.exp(x[..., None] * np.arange(L))
    return np.real(np.einsum("...n,...nl->...l", v, E))


def _brute_grads(v, x, g):
    """JAX's cotangents of `Σ_l g_l out_l` from the definition: `∂/∂v = Σ_l g_l exp(x l)`,
    `∂/∂x = v Σ_l g_l l exp(x l)`, real parts for real inputs."""
    l = np.arange(g.shape[-1])
    E = np.exp(x[..., None] * l)
    gv = np.einsum("...l,...nl->...n", g, E)
    gx = v * np.einsum("...l,...nl->...n", g * l, E)
    return (gv if np.iscomplexobj(v) else gv.real), (gx if np.iscomplexobj(x) else gx.real)


def _inputs(batch, n, L, v_complex, x_complex, seed=0):
    rng = np.random.default_rng(seed)
    shape = (*batch, n)
    v = rng.normal(size=shape) + (1j * rng.normal(size=shape) if v_complex else 0)
    x = -rng.uniform(0.01, 0.2, shape) + (1j * rng.normal(size=shape) if x_complex else 0)
    g = rng.normal(size=(*batch, L))
    return v, x, g


def _f32(a):
    return jnp.asarray(a, jnp.complex64 if np.iscomplexobj(a) else jnp.float32)


def _grads(fn, v, x, g):
    return jax.grad(lambda v, x: jnp.sum(g * fn(v, x)), argnums=(0, 1))(v, x)


# (batch, n, L, block_size, v complex, x complex). block_size 4 makes tiles of 64
# positions (several per row); n = 40 spans two blocks of 32 modes; L and n are ragged.
CASES = {
    "real-ragged-batch2": ((2, 3), 5, 37, None, False, False),
    "complex-tiles-modeblocks": ((3,), 40, 150, 4, True, True),
    "complex-v-real-x": ((2,), 7, 70, 8, True, False),
    "real-v-complex-x-nobatch": ((), 3, 20, None, False, True),
    "L1": ((2,), 3, 1, None, True, True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_pallas_forward_and_grads_match_brute_force_and_xla(case):
    batch, n, L, block_size, v_complex, x_complex = CASES[case]
    v, x, g = _inputs(batch, n, L, v_complex, x_complex)
    v32, x32, g32 = _f32(v), _f32(x), jnp.asarray(g, jnp.float32)
    pallas = functools.partial(vandermonde, L=L, block_size=block_size, impl="pallas")
    xla = functools.partial(vandermonde, L=L, impl="xla")

    out = pallas(v32, x32)
    assert out.shape == (*batch, L) and out.dtype == jnp.float32
    assert_close(out, _brute(v, x, L), rtol=2e-5)
    assert_close(out, xla(v32, x32), rtol=1e-5)

    gv, gx = _grads(pallas, v32, x32, g32)
    assert gv.dtype == v32.dtype and gx.dtype == x32.dtype
    bv, bx = _brute_grads(v, x, g)
    assert_close(gv, bv, rtol=1e-4)
    assert_close(gx, bx, rtol=1e-4)
    rv, rx = _grads(xla, v32, x32, g32)
    assert_close(gv, rv, rtol=1e-5)
    assert_close(gx, rx, rtol=1e-5)


def test_pallas_float64_interpret(x64):
    v, x, g = _inputs((2,), 9, 45, True, True, seed=1)
    fn = functools.partial(vandermonde_pallas, L=45, block_size=2, interpret=True)
    out = fn(jnp.asarray(v), jnp.asarray(x))
    assert out.dtype == jnp.float64
    assert_close(out, _brute(v, x, 45), rtol=1e-12)
    gv, gx = _grads(fn, jnp.asarray(v), jnp.asarray(x), jnp.asarray(g))
    bv, bx = _brute_grads(v, x, g)
    assert_close(gv, bv, rtol=1e-12)
    assert_close(gx, bx, rtol=1e-12)


def test_pallas_bfloat16_forward():
    v, x, _ = _inputs((2,), 6, 30, False, False, seed=2)
    vb, xb = jnp.asarray(v, jnp.bfloat16), jnp.asarray(x, jnp.bfloat16)
    out = vandermonde(vb, xb, 30, impl="pallas")
    assert out.dtype == jnp.bfloat16
    # The reference sees the same bfloat16-rounded inputs.
    expected = _brute(np.asarray(vb, np.float64), np.asarray(xb, np.float64), 30)
    assert_close(np.asarray(out, np.float64), expected, rtol=2e-2)


def test_platform_defaults_to_the_backend():
    # No platform, no interpret flag: the kernel targets the default backend (here
    # the CPU, where Pallas runs in interpret mode), not a GPU.
    rng = np.random.default_rng(5)
    v = rng.normal(size=(2, 6)) + 1j * rng.normal(size=(2, 6))
    x = -rng.uniform(0.05, 0.5, (2, 6)) + 1j * rng.normal(size=(2, 6))
    got = vandermonde_pallas(jnp.asarray(v, jnp.complex64), jnp.asarray(x, jnp.complex64), 37)
    assert_close(got, _brute(v, x, 37), rtol=2e-5)


def test_pallas_growing_modes_stay_finite_in_padding():
    # exp(x l) overflows float32 beyond l ≈ 88 / Re x; the tile pads L = 40 to 256
    # positions, where an unclamped exponent would overflow and turn the backward's
    # zero cotangents into NaN.
    v = jnp.ones((1, 2), jnp.float32)
    x = jnp.asarray([[1.0, -0.5]], jnp.float32)  # exp(1.0 · 39) ≈ 8.7e16 is finite
    out = vandermonde(v, x, 40, impl="pallas")
    assert_close(out, _brute(np.ones((1, 2)), np.asarray([[1.0, -0.5]]), 40), rtol=2e-5)
    gv, gx = _grads(functools.partial(vandermonde, L=40, impl="pallas"), v, x, jnp.ones((1, 40)))
    assert np.isfinite(np.asarray(gv)).all() and np.isfinite(np.asarray(gx)).all()
    bv, bx = _brute_grads(np.ones((1, 2)), np.asarray([[1.0, -0.5]]), np.ones((1, 40)))
    assert_close(gv, bv, rtol=1e-4)
    assert_close(gx, bx, rtol=1e-4)


@pytest.mark.parametrize(
    "fn",
    [
        lambda impl: s4d_kernel(*_ssm_params(), 24, impl=impl),
        lambda impl: dss_kernel(*_ssm_params(with_b=False), 24, "softmax", impl=impl),
        lambda impl: ema_kernel(*_ema_params(), 24, impl=impl),
    ],
    ids=["s4d", "dss-softmax", "ema"],
)
def test_ssm_kernels_thread_impl(fn):
    assert_close(fn("pallas"), fn("xla"), rtol=1e-5)


def _ssm_params(with_b=True):
    rng = np.random.default_rng(3)
    lam = jnp.asarray(-rng.uniform(0.1, 0.5, (2, 4)) + 1j * rng.normal(size=(2, 4)), jnp.complex64)
    c = jnp.asarray(rng.normal(size=(2, 4)) + 1j * rng.normal(size=(2, 4)), jnp.complex64)
    dt = jnp.asarray(rng.uniform(0.01, 0.1, (2,)), jnp.float32)
    return (lam, c, c, dt) if with_b else (lam, c, dt)


def _ema_params():
    rng = np.random.default_rng(4)
    return tuple(jnp.asarray(rng.uniform(0.1, 0.9, (2, 3)), jnp.float32) for _ in range(4))


def test_pallas_never_materialises_n_by_L():
    H, n, L = 64, 32, 16384
    v = jnp.zeros((H, n), jnp.complex64)
    loss = lambda v, x: jnp.sum(vandermonde(v, x, L, impl="pallas") ** 2)
    mem = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(v, v).compile().memory_analysis()
    full = H * n * L * 8  # one complex64 (H, n, L) tensor
    assert mem.temp_size_in_bytes < full / 4


# --- dispatch ---------------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, block_size=None):
    return choose(impl, "vandermonde", functools.partial(unsupported, dtype, block_size), platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("auto", "gpu") == Choice("pallas", interpret=False)
    assert _choose("auto", "tpu") == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu") == Choice("pallas", interpret=True)
    assert _choose("xla", "gpu") == Choice("xla")
    # Calls the kernel does not serve fall back to XLA under "auto".
    assert _choose("auto", "gpu", dtype=jnp.float64) == Choice("xla")
    assert _choose("auto", "gpu", block_size=24) == Choice("xla")
    assert _choose("auto", "tpu", block_size=64) == Choice("xla")
    assert _choose("auto", "gpu", dtype=jnp.bfloat16, block_size=64) == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu", dtype=jnp.float64, block_size=3) == Choice("pallas", interpret=True)


@pytest.mark.parametrize(
    "platform, dtype, block_size, match",
    [
        ("gpu", jnp.float64, None, "computes in float32 on gpu; got float64"),
        ("tpu", jnp.float64, None, "computes in float32 on tpu; got float64"),
        ("gpu", jnp.float32, 24, "power of two >= 16 on gpu, got 24"),
        ("gpu", jnp.float32, 8, "power of two >= 16 on gpu, got 8"),
        ("tpu", jnp.float32, 64, "multiple of 128 on tpu, got 64"),
        ("cpu", jnp.float32, 0, "positive integer, got 0"),
    ],
)
def test_dispatch_pallas_unsupported_raises(platform, dtype, block_size, match):
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        _choose("pallas", platform, dtype=dtype, block_size=block_size)


def test_impl_pallas_runs_the_kernel_and_auto_on_cpu_does_not():
    v = jnp.ones((2, 3), jnp.float32)

    def primitives(impl):
        jaxpr = jax.make_jaxpr(functools.partial(vandermonde, L=5, impl=impl))(v, v)
        return str(jaxpr)

    assert "pallas_call" in primitives("pallas")
    assert "pallas_call" not in primitives("auto")
    assert "pallas_call" not in primitives("xla")


def test_impl_pallas_unsupported_call_raises():
    v = jnp.ones((2, 3), jnp.float32)
    with pytest.raises(ValueError, match="impl='pallas' cannot serve this call on cpu: block_size"):
        vandermonde(v, v, 5, block_size=-1, impl="pallas")


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_impl_pallas_names_the_dtype_it_was_given(monkeypatch, x64, dtype):
    # As if on a TPU: the inputs' own dtype is named, complex128 not by its real part.
    monkeypatch.setattr(_dispatch, "backend", lambda: "tpu")
    v = jnp.ones((2, 3), dtype)
    name = jnp.dtype(dtype).name
    with pytest.raises(ValueError, match=f"computes in float32 on tpu; got {name} inputs"):
        vandermonde(v, v, 5, impl="pallas")


def test_bad_input_raises():
    v = jnp.ones((2, 3), jnp.float32)
    with pytest.raises((ValueError, TypeCheckError)):
        vandermonde(v, jnp.ones((2, 4), jnp.float32), 5, impl="pallas")
    with pytest.raises((ValueError, TypeCheckError)):
        vandermonde(v, v, 5, impl="triton")
    with pytest.raises((ValueError, TypeCheckError)):
        vandermonde_pallas(v, jnp.ones((2, 4), jnp.float32), 5, interpret=True)
    with pytest.raises(ValueError, match="positive integer length L, got 0"):
        vandermonde_pallas(v, v, 0, interpret=True)
    with pytest.raises(ValueError, match="positive integer block_size, got 0"):
        vandermonde_pallas(v, v, 5, block_size=0, interpret=True)
    with pytest.raises(ValueError, match="share one precision"):
        vandermonde_pallas(v, jnp.ones((2, 3), jnp.bfloat16), 5, interpret=True)
    with pytest.raises((ValueError, TypeCheckError)):  # jaxtyping's Inexact, or real_dtype
        vandermonde_pallas(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3), jnp.int32), 5, interpret=True)


# --- lowering for GPU and TPU without the hardware ----------------------------------------
# jax.export runs JAX's lowering to Triton IR (cuda) and Mosaic IR (tpu), which checks
# block shapes, power-of-two sizes and every primitive's lowering rule; the final
# Triton/TPU compilers need the hardware and are not run here.

# A Triton kernel is a custom call without jax.export's compatibility guarantee; allow it.
TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


@pytest.mark.parametrize("target, platform", [("cuda", "gpu"), ("tpu", "tpu")])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.bfloat16])
def test_exports_for_gpu_and_tpu(target, platform, dtype):
    v = jnp.zeros((2, 40), dtype)  # ragged n; L spans several tiles
    fwd = functools.partial(vandermonde_pallas, L=5000, platform=platform)
    grad = jax.grad(lambda v, x: jnp.sum(fwd(v, x).astype(jnp.float32) ** 2), argnums=(0, 1))
    for fn in (fwd, grad):
        exported = jax.export.export(jax.jit(fn), platforms=[target], disabled_checks=[TRITON])(v, v)
        assert exported.platforms == (target,)
        text = exported.mlir_module()
        assert ("__gpu$xla.gpu.triton" if target == "cuda" else "tpu_custom_call") in text


@pytest.mark.parametrize("target, platform", [("cuda", "gpu"), ("tpu", "tpu")])
def test_exports_under_x64(x64, target, platform):
    # With jax_enable_x64 on, Python-int loop bounds would be int64; Mosaic refuses
    # index arithmetic mixing them with the kernel's int32 program ids.
    v = jnp.zeros((2, 40), jnp.complex64)
    fwd = functools.partial(vandermonde_pallas, L=300, platform=platform)
    grad = jax.grad(lambda v, x: jnp.sum(fwd(v, x) ** 2), argnums=(0, 1))
    for fn in (fwd, grad):
        exported = jax.export.export(jax.jit(fn), platforms=[target], disabled_checks=[TRITON])(v, v)
        assert exported.platforms == (target,)


def test_export_for_gpu_rejects_non_power_of_two_blocks():
    # The constraint `unsupported` states is the one Triton's lowering enforces.
    v = jnp.zeros((2, 8), jnp.float32)
    fn = functools.partial(vandermonde_pallas, L=100, block_size=24, platform="gpu")
    with pytest.raises(ValueError, match="power of 2"):
        jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(v, v)
