import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from helpers import assert_close

# Besides the public function, private entry points for what it cannot reach on a
# CPU-only machine: the kernel's support rule per platform and its GPU/TPU lowering.
from seqkit.kernels import _dispatch, linear_scan
from seqkit.kernels._scan import _pallas_scan, _unsupported


def _loop(a, b, reverse=False):
    """The recurrence from its definition, one step at a time, in float64/complex128."""
    a = np.broadcast_to(np.asarray(a, np.complex128), np.shape(b))
    b = np.asarray(b, np.complex128)
    x = np.zeros_like(b)
    state = np.zeros(b.shape[1:], np.complex128)
    steps = range(b.shape[0] - 1, -1, -1) if reverse else range(b.shape[0])
    for t in steps:
        state = a[t] * state + b[t]
        x[t] = state
    return x


def _inputs(rng, a_shape, b_shape, complex_):
    """Stable multipliers (|a| < 1) and inputs, as float64/complex128 NumPy."""
    a = rng.uniform(0.5, 0.99, a_shape)
    b = rng.normal(size=b_shape)
    if complex_:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, a_shape))
        b = b + 1j * rng.normal(size=b_shape)
    return a, b


def _finite_difference_grads(a, b, w, reverse, eps=1e-6):
    """Gradients of `ℓ = Σ Re(w ⊙ x)` by central differences of the float64 loop, in
    JAX's convention for complex inputs: `∂ℓ/∂Re z − i ∂ℓ/∂Im z`."""

    def loss(a, b):
        return float(np.sum(np.real(w * _loop(a, b, reverse))))

    def grad(arg):
        z = (a, b)[arg]
        g = np.zeros(z.shape, z.dtype)
        for idx in np.ndindex(z.shape):
            for unit in (1.0, 1j) if np.iscomplexobj(z) else (1.0,):
                args = [a.copy(), b.copy()]
                args[arg][idx] += eps * unit
                up = loss(*args)
                args[arg][idx] -= 2 * eps * unit
                d = (up - loss(*args)) / (2 * eps)
                g[idx] += d if unit == 1.0 else -1j * d
        return g

    return grad(0), grad(1)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_pallas_forward_matches_loop_and_xla(complex_, reverse):
    # L = 37 is not a multiple of the chunk (8): the padded tail is exercised.
    rng = np.random.default_rng(1)
    a, b = _inputs(rng, (37, 5), (37, 5), complex_)
    dtype = jnp.complex64 if complex_ else jnp.float32
    A, B = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    out = linear_scan(A, B, reverse=reverse, impl="pallas")
    assert out.shape == (37, 5) and out.dtype == dtype
    expected = _loop(a, b, reverse)
    assert_close(out, expected if complex_ else expected.real, rtol=1e-5)
    assert_close(out, linear_scan(A, B, reverse=reverse, impl="xla"), rtol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_pallas_grads_match_finite_differences_and_xla(complex_, reverse):
    rng = np.random.default_rng(2)
    a, b = _inputs(rng, (13, 3), (13, 3), complex_)
    w = rng.normal(size=(13, 3)) + (1j * rng.normal(size=(13, 3)) if complex_ else 0)
    dtype = jnp.complex64 if complex_ else jnp.float32
    A, B, W = (jnp.asarray(v, dtype) for v in (a, b, w))

    def loss(impl):
        return lambda A, B: jnp.sum(jnp.real(W * linear_scan(A, B, reverse=reverse, impl=impl, chunk=4)))

    g_a, g_b = jax.grad(loss("pallas"), argnums=(0, 1))(A, B)
    ref_a, ref_b = jax.grad(loss("xla"), argnums=(0, 1))(A, B)
    fd_a, fd_b = _finite_difference_grads(a, b, w, reverse)
    if not complex_:
        fd_a, fd_b = fd_a.real, fd_b.real
    # float32 against float64: a few ulps of the largest entry, accumulated over 13 steps.
    assert_close(g_a, fd_a, rtol=1e-5)
    assert_close(g_b, fd_b, rtol=1e-5)
    assert_close(g_a, ref_a, rtol=1e-5)
    assert_close(g_b, ref_b, rtol=1e-5)


def test_pallas_constant_and_per_step_scalar_multipliers():
    # a without the time axis (time-invariant), and one scalar per step and row:
    # the gradient of a broadcast a is summed back to its shape.
    rng = np.random.default_rng(3)
    b = rng.normal(size=(11, 2, 3))
    for a_shape in [(2, 3), (11, 2, 1)]:
        a = rng.uniform(0.5, 0.99, a_shape)
        A, B = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
        out = linear_scan(A, B, impl="pallas", chunk=4)
        assert_close(out, _loop(a, b).real, rtol=1e-5)

        def loss(A, B, impl):
            return jnp.sum(linear_scan(A, B, impl=impl, chunk=4) ** 2)

        g = jax.grad(loss)(A, B, "pallas")
        assert g.shape == a_shape
        assert_close(g, jax.grad(loss)(A, B, "xla"), rtol=1e-5)


@pytest.mark.parametrize(("L", "chunk"), [(37, 1), (37, 16), (64, 64)])
def test_pallas_chunk_sizes(L, chunk):
    rng = np.random.default_rng(L + chunk)
    a, b = _inputs(rng, (L, 4), (L, 4), complex_=False)
    out = linear_scan(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), impl="pallas", chunk=chunk)
    assert_close(out, _loop(a, b).real, rtol=1e-5)


def test_pallas_real_a_with_complex_b_and_many_channels():
    # 200 channels: two channel blocks of 128, the second one padded.
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 0.99, (9, 200))
    _, b = _inputs(rng, (9, 200), (9, 200), complex_=True)
    out = linear_scan(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.complex64), impl="pallas", reverse=True)
    assert out.dtype == jnp.complex64
    assert_close(out, _loop(a, b, reverse=True), rtol=1e-5)


def test_pallas_bfloat16_forward():
    # bfloat16 in and out (8 significant bits), the state carried in float32: the
    # error is the rounding of the output, ~2^-8 of its size, not accumulated.
    rng = np.random.default_rng(5)
    a, b = _inputs(rng, (37, 5), (37, 5), complex_=False)
    A, B = jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16)
    out = linear_scan(A, B, impl="pallas")
    assert out.dtype == jnp.bfloat16
    # The reference runs on the bfloat16-rounded inputs.
    expected = _loop(np.asarray(A, np.float64), np.asarray(B, np.float64)).real
    assert_close(np.asarray(out, np.float64), expected, rtol=1e-2)


def test_pallas_float64_interpret_is_exact(x64):
    rng = np.random.default_rng(6)
    a, b = _inputs(rng, (21, 3), (21, 3), complex_=True)
    out = linear_scan(jnp.asarray(a), jnp.asarray(b), impl="pallas", reverse=True, chunk=8)
    assert out.dtype == jnp.complex128
    assert_close(out, _loop(a, b, reverse=True), rtol=1e-12)


def test_pallas_under_vmap():
    rng = np.random.default_rng(7)
    a, b = _inputs(rng, (3, 10, 4), (3, 10, 4), complex_=False)
    A, B = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    out = jax.vmap(lambda a, b: linear_scan(a, b, impl="pallas", chunk=4))(A, B)
    assert_close(out, np.stack([_loop(a[i], b[i]).real for i in range(3)]), rtol=1e-5)


def test_dispatch_choice_per_backend():
    def choose(platform, impl="auto", dtype=jnp.float32, L=1024, parts=2):
        return _dispatch.choose(
            impl, "linear_scan", lambda p: _unsupported(dtype, L, 64, parts, 8, p), platform=platform
        )

    assert choose("cpu") == _dispatch.Choice("xla")
    assert choose("cpu", "pallas", jnp.float64) == _dispatch.Choice("pallas", interpret=True)
    assert choose("gpu") == _dispatch.Choice("pallas", interpret=False)
    assert choose("gpu", dtype=jnp.bfloat16) == _dispatch.Choice("pallas", interpret=False)
    assert choose("tpu") == _dispatch.Choice("pallas", interpret=False)
    assert choose("gpu", "xla") == _dispatch.Choice("xla")
    # Unsupported calls fall back to XLA under "auto" and raise under "pallas".
    assert choose("gpu", dtype=jnp.float64) == _dispatch.Choice("xla")
    assert choose("tpu", dtype=jnp.float64) == _dispatch.Choice("xla")
    assert choose("tpu", L=1 << 16) == _dispatch.Choice("xla")
    with pytest.raises(ValueError, match="complex128 is not supported on GPU"):
        choose("gpu", "pallas", jnp.float64)
    with pytest.raises(ValueError, match=r"L=65536 needs [0-9.]+ MiB of VMEM"):
        choose("tpu", "pallas", L=1 << 16)


def test_impl_pallas_on_unsupported_call_raises(monkeypatch, x64):
    # As if on a TPU: float64 cannot run there, and "pallas" says so before lowering.
    monkeypatch.setattr(_dispatch, "backend", lambda: "tpu")
    x = jnp.ones((8, 3), jnp.float64)
    with pytest.raises(
        ValueError, match="linear_scan: impl='pallas' cannot serve this call on tpu: dtype float64"
    ):
        linear_scan(x, x, impl="pallas")
    z = x.astype(jnp.complex128)  # named as given, not by its real part
    with pytest.raises(ValueError, match=r"dtype complex128 is not supported on TPU \(supported: bfloat16"):
        linear_scan(z, z, impl="pallas")


def test_rejects_bad_input():
    b = jnp.ones((10, 3))
    with pytest.raises(
        ValueError, match=r"expected a broadcastable to b's shape \(10, 3\).*got a of shape \(11, 3\)"
    ):
        linear_scan(jnp.ones((11, 3)), b)
    with pytest.raises(ValueError, match=r"got a of shape \(10, 3, 1\)"):
        linear_scan(jnp.ones((10, 3, 1)), b)
    with pytest.raises(ValueError, match="one precision"):
        linear_scan(jnp.ones((10, 3), jnp.bfloat16), b)
    with pytest.raises((ValueError, TypeCheckError)):  # jaxtyping: not Inexact
        linear_scan(jnp.ones((10, 3), jnp.int32), jnp.ones((10, 3), jnp.int32))
    with pytest.raises(ValueError, match="positive integer chunk, got 0"):
        linear_scan(b, b, impl="pallas", chunk=0)
    with pytest.raises((ValueError, TypeCheckError)):
        linear_scan(b, b, impl="triton")
    with pytest.raises((ValueError, TypeCheckError)):
        linear_scan(jnp.ones(()), jnp.ones(()))


_TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


@pytest.mark.parametrize(
    ("platform", "target", "marker"), [("gpu", "cuda", "triton"), ("tpu", "tpu", "tpu_custom_call")]
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.bfloat16])
def test_pallas_kernels_lower_for_gpu_and_tpu(platform, target, marker, dtype):
    # Lowering (Triton IR for CUDA, Mosaic for TPU) of the forward and backward
    # kernels, without the hardware: block shapes, dtypes and ops are accepted.
    # Code generation from that IR happens on the device and is not checked here.
    a = jnp.full((37, 200), 0.5, dtype)

    def loss(a, b):
        return jnp.sum(jnp.real(_pallas_scan(a, b, False, 8, platform)).astype(jnp.float32))

    for f in [lambda a, b: _pallas_scan(a, b, True, 8, platform), jax.grad(loss, argnums=(0, 1))]:
        exported = jax.export.export(jax.jit(f), platforms=[target], disabled_checks=[_TRITON])(a, a)
        module = exported.mlir_module()
        assert marker in module
