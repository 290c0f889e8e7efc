"""The Pallas Cauchy kernel (interpret mode on CPU) against a float64 NumPy computation
from the definition and against the XLA reference, forward and backward.

The float64 references are evaluated at the float32-rounded inputs, so they measure
the kernel's arithmetic, not the conditioning of points near poles. Tolerances
(relative to the largest magnitude of the reference): float32 forward and gradients
2e-5 against float64 (each term is a rounded reciprocal, summed over `n ≤ 40`
poles); 1e-5 against the XLA float32 path; float64 1e-12. There is no bfloat16
test: both paths compute complex reciprocals in complex64 whatever the real input
precision (there is no bfloat16 complex type), so bfloat16 inputs behave like
float32 ones.
"""

import functools

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxtyping import TypeCheckError

from helpers import assert_close
from seqkit.kernels import _dispatch, cauchy, cauchy_pallas
from seqkit.kernels._cauchy_pallas import unsupported
from seqkit.kernels._dispatch import Choice, choose
from seqkit.ssm import s4_kernel


def _brute(v, z, lam, conj_pairs):
    """`Σ_n v/(z − λ) (+ conj(v)/(z − conj λ))` with the `(…, n, K)` tensor materialised."""
    r = 1.0 / (z - lam[..., :, None])
    out = np.einsum("...mn,...nk->...mk", v, r)
    if conj_pairs:
        out = out + np.einsum("...mn,...nk->...mk", np.conj(v), 1.0 / (z - np.conj(lam)[..., :, None]))
    return out


def _brute_grads(v, z, lam, G, conj_pairs):
    """JAX's cotangents of the output cotangent `G` from the definition. JAX pairs a
    complex cotangent with a tangent as `Re(G t)`; for an output with Wirtinger
    derivatives `a = ∂out/∂x`, `b = ∂out/∂conj(x)` that makes `ct_x = Σ G a + conj(G b)`.
    Here `∂/∂v = r`, `∂/∂conj(v) = s`, `∂/∂λ = v r²`, `∂/∂conj(λ) = conj(v) s²`,
    `∂/∂z = −Σ_n (v r² + conj(v) s²)`, with `r = 1/(z − λ)`, `s = 1/(z − conj λ)`."""
    r = 1.0 / (z - lam[..., :, None])  # (..., n, K)
    s = 1.0 / (z - np.conj(lam)[..., :, None]) if conj_pairs else np.zeros_like(r)
    ct_v = np.einsum("...mk,...nk->...mn", G, r) + np.conj(np.einsum("...mk,...nk->...mn", G, s))
    ct_lam = np.einsum("...mk,...mn,...nk->...n", G, v, r**2) + np.conj(
        np.einsum("...mk,...mn,...nk->...n", G, np.conj(v), s**2)
    )
    dz = np.einsum("...mn,...nk->...mk", v, r**2) + np.einsum("...mn,...nk->...mk", np.conj(v), s**2)
    ct_z = -np.sum(G * dz, axis=tuple(range(G.ndim - 1)))
    return ct_v, ct_z, ct_lam


def _inputs(batch, M, n, K, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(*batch, M, n)) + 1j * rng.normal(size=(*batch, M, n))
    lam = -rng.uniform(0.1, 1.0, (*batch, n)) + 3j * rng.normal(size=(*batch, n))
    z = 4j * rng.normal(size=K) + 0.1 * rng.normal(size=K)
    G = rng.normal(size=(*batch, M, K)) + 1j * rng.normal(size=(*batch, M, K))
    return v, z, lam, G


def _c64(*xs):
    return tuple(jnp.asarray(x, jnp.complex64) for x in xs)


def _c128(*xs):
    return tuple(np.asarray(x, np.complex128) for x in xs)


def _vjp(fn, args, G):
    _, pullback = jax.vjp(fn, *args)
    return pullback(G)


# (batch, M, n, K, chunk_size). chunk_size 16 makes several tiles of points; M = 17
# spans three blocks of 8 vectors (16 on GPU); n = 40 spans two blocks of 32 poles; ragged n and K.
CASES = {
    "ragged-batch2": ((2, 3), 3, 5, 37, None),
    "tiles-vecblocks-poleblocks": ((2,), 17, 40, 150, 16),
    "nobatch": ((), 2, 3, 20, None),
    "K1-n1": ((2,), 1, 1, 1, None),
}


@pytest.mark.parametrize("conj_pairs", [True, False], ids=["pairs", "nopairs"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_pallas_forward_and_grads_match_brute_force_and_xla(case, conj_pairs):
    batch, M, n, K, chunk_size = CASES[case]
    args32 = _c64(*_inputs(batch, M, n, K)[:3])
    G32 = _c64(_inputs(batch, M, n, K)[3])[0]
    v, z, lam, G = _c128(*args32, G32)  # the float32-rounded inputs, in float64
    pallas = functools.partial(cauchy, conj_pairs=conj_pairs, chunk_size=chunk_size, impl="pallas")
    xla = functools.partial(cauchy, conj_pairs=conj_pairs, impl="xla")

    out = pallas(*args32)
    assert out.shape == (*batch, M, K) and out.dtype == jnp.complex64
    assert_close(out, _brute(v, z, lam, conj_pairs), rtol=2e-5)
    assert_close(out, xla(*args32), rtol=1e-5)

    cts = _vjp(pallas, args32, G32)
    assert [c.dtype for c in cts] == [jnp.complex64] * 3
    for got, want in zip(cts, _brute_grads(v, z, lam, G, conj_pairs), strict=True):
        assert_close(got, want, rtol=2e-5)
    for got, want in zip(cts, _vjp(xla, args32, G32), strict=True):
        assert_close(got, want, rtol=1e-5)


def test_pallas_float64_interpret_and_finite_differences(x64):
    v, z, lam, G = _inputs((2,), 3, 5, 21, seed=1)
    args = tuple(map(jnp.asarray, (v, z, lam)))
    fn = functools.partial(cauchy_pallas, chunk_size=8, interpret=True)
    out = fn(*args)
    assert out.dtype == jnp.complex128
    assert_close(out, _brute(v, z, lam, True), rtol=1e-12)
    for got, want in zip(_vjp(fn, args, jnp.asarray(G)), _brute_grads(v, z, lam, G, True), strict=True):
        assert_close(got, want, rtol=1e-12)
    # Independently of any derivative formula: finite differences in v, z and λ.
    check_grads(fn, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def test_pallas_real_inputs():
    # Real (float32) inputs are cast to complex64 on both paths.
    rng = np.random.default_rng(2)
    v = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
    lam = jnp.asarray(-rng.uniform(0.5, 1.0, (2, 4)), jnp.float32)
    z = jnp.asarray(rng.uniform(0.0, 1.0, 9), jnp.float32)
    out = cauchy(v, z, lam, impl="pallas")
    assert out.dtype == jnp.complex64
    assert_close(out, cauchy(v, z, lam, impl="xla"), rtol=1e-5)
    assert_close(out, _brute(*_c128(v, z, lam), True), rtol=2e-5)


def test_platform_defaults_to_the_backend():
    # No platform, no interpret flag: the kernel targets the default backend (here
    # the CPU, where Pallas runs in interpret mode), not a GPU.
    rng = np.random.default_rng(5)
    v = jnp.asarray(rng.normal(size=(2, 3, 4)) + 1j * rng.normal(size=(2, 3, 4)), jnp.complex64)
    lam = jnp.asarray(-rng.uniform(0.5, 1.0, (2, 4)) + 1j * rng.normal(size=(2, 4)), jnp.complex64)
    z = jnp.asarray(1j * rng.uniform(0.0, 3.0, 9), jnp.complex64)
    assert_close(cauchy_pallas(v, z, lam), _brute(*_c128(v, z, lam), True), rtol=2e-5)


def test_padding_never_meets_a_point():
    # z = 0 and padded poles (stored as λ = 0) would make 1/0 in the padding; the
    # kernel masks padded reciprocals to zero, so outputs and gradients stay finite.
    v = jnp.ones((1, 1, 3), jnp.complex64)
    lam = jnp.asarray([[-1.0 + 2j, -0.5, -2.0 - 1j]], jnp.complex64)
    z = jnp.asarray([0.0, 1j, -3j], jnp.complex64)
    fn = functools.partial(cauchy, chunk_size=2, impl="pallas")  # K = 3 padded to 4
    G = jnp.ones((1, 1, 3), jnp.complex64)
    out, cts = fn(v, z, lam), _vjp(fn, (v, z, lam), G)
    assert all(np.isfinite(np.asarray(a)).all() for a in (out, *cts))
    assert_close(out, _brute(*_c128(v, z, lam), True), rtol=2e-5)
    for got, want in zip(cts, _brute_grads(*_c128(v, z, lam, G), True), strict=True):
        assert_close(got, want, rtol=2e-5)


def _s4_params():
    rng = np.random.default_rng(3)
    H, n = 2, 4
    c = lambda *shape: jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64)  # noqa: E731
    Lambda = jnp.asarray(-rng.uniform(0.1, 0.5, (H, n)) + 1j * rng.normal(size=(H, n)), jnp.complex64)
    dt = jnp.asarray(rng.uniform(0.01, 0.1, (H,)), jnp.float32)
    return Lambda, c(H, n), c(H, n), c(2, H, n), dt


def test_s4_kernel_threads_impl():
    params = _s4_params()

    @functools.partial(jax.jit, static_argnums=0)
    def kernel_and_grads(impl, *p):
        kernel = lambda *p: s4_kernel(*p, 16, impl=impl)  # noqa: E731
        return kernel(*p), jax.grad(lambda *p: jnp.sum(kernel(*p) ** 2), argnums=(0, 4))(*p)

    (k_pallas, g_pallas), (k_xla, g_xla) = (kernel_and_grads(impl, *params) for impl in ("pallas", "xla"))
    assert_close(k_pallas, k_xla, rtol=1e-5)
    for got, want in zip(g_pallas, g_xla, strict=True):
        assert_close(got, want, rtol=1e-4)


# --- dispatch ---------------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, chunk_size=None):
    return choose(impl, "cauchy", functools.partial(unsupported, dtype, chunk_size), platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("auto", "gpu") == Choice("pallas", interpret=False)
    assert _choose("auto", "tpu") == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu") == Choice("pallas", interpret=True)
    assert _choose("xla", "gpu") == Choice("xla")
    assert _choose("xla", "tpu") == Choice("xla")
    # Calls the kernel does not serve fall back to XLA under "auto".
    assert _choose("auto", "gpu", dtype=jnp.float64) == Choice("xla")
    assert _choose("auto", "tpu", dtype=jnp.complex128) == Choice("xla")
    assert _choose("auto", "gpu", chunk_size=24) == Choice("xla")
    assert _choose("auto", "tpu", chunk_size=64) == Choice("xla")
    assert _choose("auto", "gpu", dtype=jnp.complex64, chunk_size=64) == Choice("pallas", interpret=False)
    assert _choose("auto", "tpu", chunk_size=256) == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu", dtype=jnp.float64, chunk_size=3) == Choice("pallas", interpret=True)


@pytest.mark.parametrize(
    "platform, dtype, chunk_size, match",
    [
        ("gpu", jnp.float64, None, "computes in float32 on gpu; got float64"),
        ("tpu", jnp.float64, None, "computes in float32 on tpu; got float64"),
        ("gpu", jnp.float32, 24, "power of two >= 16 on gpu, got 24"),
        ("gpu", jnp.float32, 8, "power of two >= 16 on gpu, got 8"),
        ("tpu", jnp.float32, 64, "multiple of 128 on tpu, got 64"),
        ("cpu", jnp.float32, 0, "positive integer, got 0"),
    ],
)
def test_dispatch_pallas_unsupported_raises(platform, dtype, chunk_size, match):
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        _choose("pallas", platform, dtype=dtype, chunk_size=chunk_size)


def _small():
    return jnp.ones((2, 3, 4), jnp.complex64), jnp.ones(5, jnp.complex64), -jnp.ones((2, 4), jnp.complex64)


def test_impl_pallas_runs_the_kernel_and_auto_on_cpu_does_not():
    v, z, lam = _small()

    def jaxpr(impl):
        return str(jax.make_jaxpr(functools.partial(cauchy, impl=impl))(v, z, lam))

    assert "pallas_call" in jaxpr("pallas")
    assert "pallas_call" not in jaxpr("auto")
    assert "pallas_call" not in jaxpr("xla")


def test_impl_pallas_unsupported_call_raises():
    v, z, lam = _small()
    with pytest.raises(ValueError, match="impl='pallas' cannot serve this call on cpu: chunk_size"):
        cauchy(v, z, lam, chunk_size=-1, impl="pallas")


def test_impl_pallas_names_the_complex_dtype_it_was_given(monkeypatch, x64):
    # As if on a GPU: complex128 inputs are named as such, not by their real part.
    monkeypatch.setattr(_dispatch, "backend", lambda: "gpu")
    v, z, lam = (a.astype(jnp.complex128) for a in _small())
    with pytest.raises(ValueError, match="computes in float32 on gpu; got complex128 inputs"):
        cauchy(v, z, lam, impl="pallas")


def test_bad_input_raises():
    v, z, lam = _small()
    pallas = functools.partial(cauchy_pallas, interpret=True)
    with pytest.raises((ValueError, TypeCheckError)):
        cauchy(v, z, -jnp.ones((2, 5), jnp.complex64), impl="pallas")
    with pytest.raises((ValueError, TypeCheckError)):
        cauchy(v, z, lam, impl="triton")
    with pytest.raises((ValueError, TypeCheckError)):
        pallas(v, z, -jnp.ones((3, 4), jnp.complex64))
    with pytest.raises((ValueError, TypeCheckError)):
        pallas(v, jnp.ones((5, 1), jnp.complex64), lam)
    with pytest.raises(ValueError, match="at least one vector, pole and point, got M=3, n=4, K=0"):
        pallas(v, jnp.ones(0, jnp.complex64), lam)
    with pytest.raises(ValueError, match="positive integer chunk_size, got 0"):
        pallas(v, z, lam, chunk_size=0)
    with pytest.raises(ValueError, match="share one precision"):
        pallas(v, jnp.real(z).astype(jnp.float16), lam)
    with pytest.raises((ValueError, TypeCheckError)):  # jaxtyping's Inexact, or real_dtype
        pallas(jnp.ones((2, 3, 4), jnp.int32), jnp.ones(5, jnp.int32), jnp.ones((2, 4), jnp.int32))


@pytest.mark.slow
def test_pallas_never_materialises_n_by_K():
    # Padded tiles of the output are (H, 8, K) per plane: small next to (H, n, K) for n = 256.
    H, M, n, K = 16, 4, 256, 8193
    args = (
        jnp.zeros((H, M, n), jnp.complex64),
        jnp.zeros(K, jnp.complex64),
        -jnp.ones((H, n), jnp.complex64),
    )
    loss = lambda *a: jnp.sum(jnp.abs(cauchy(*a, impl="pallas")) ** 2)  # noqa: E731
    mem = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile().memory_analysis()
    full = H * n * K * 8  # one complex64 (H, n, K) tensor
    assert mem.temp_size_in_bytes < full / 4


# --- lowering for GPU and TPU without the hardware ----------------------------------------
# jax.export runs JAX's lowering to Triton IR (cuda) and Mosaic IR (tpu), which checks
# block shapes, power-of-two sizes and every primitive's lowering rule; the final
# Triton/TPU compilers need the hardware and are not run here.

# A Triton kernel is a custom call without jax.export's compatibility guarantee; allow it.
TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


@pytest.mark.parametrize("target, platform", [("cuda", "gpu"), ("tpu", "tpu")])
@pytest.mark.parametrize("conj_pairs", [True, False], ids=["pairs", "nopairs"])
def test_exports_for_gpu_and_tpu(target, platform, conj_pairs):
    # Ragged n, M and K; K spans several tiles, M several blocks of vectors.
    v, z, lam = (
        jnp.zeros((2, 17, 40), jnp.complex64),
        jnp.zeros(300, jnp.complex64),
        jnp.zeros((2, 40), jnp.complex64),
    )
    fwd = functools.partial(cauchy_pallas, conj_pairs=conj_pairs, platform=platform)
    grad = jax.grad(lambda *a: jnp.sum(jnp.abs(fwd(*a)) ** 2), argnums=(0, 1, 2))
    for fn in (fwd, grad):
        exported = jax.export.export(jax.jit(fn), platforms=[target], disabled_checks=[TRITON])(v, z, lam)
        assert exported.platforms == (target,)
        text = exported.mlir_module()
        assert ("__gpu$xla.gpu.triton" if target == "cuda" else "tpu_custom_call") in text


@pytest.mark.parametrize("target, platform", [("cuda", "gpu"), ("tpu", "tpu")])
def test_exports_under_x64(x64, target, platform):
    # With jax_enable_x64 on, Python-int loop bounds would be int64; Mosaic refuses
    # index arithmetic mixing them with the kernel's int32 program ids.
    c64 = jnp.complex64
    v, z, lam = jnp.zeros((2, 3, 7), c64), jnp.zeros(40, c64), jnp.zeros((2, 7), c64)
    fwd = functools.partial(cauchy_pallas, platform=platform)
    grad = jax.grad(lambda *a: jnp.sum(jnp.abs(fwd(*a)) ** 2), argnums=(0, 1, 2))
    for fn in (fwd, grad):
        exported = jax.export.export(jax.jit(fn), platforms=[target], disabled_checks=[TRITON])(v, z, lam)
        assert exported.platforms == (target,)


def test_export_for_gpu_rejects_non_power_of_two_tiles():
    # The constraint `unsupported` states is the one Triton's lowering enforces.
    v, z, lam = (
        jnp.zeros((2, 3, 8), jnp.complex64),
        jnp.zeros(100, jnp.complex64),
        jnp.zeros((2, 8), jnp.complex64),
    )
    fn = functools.partial(cauchy_pallas, chunk_size=24, platform="gpu")
    with pytest.raises(ValueError, match="power of 2"):
        jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(v, z, lam)
