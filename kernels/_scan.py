"""The diagonal linear scan `x_t = a_t ⊙ x_{t−1} + b_t`: the recurrence of S5 and
of every diagonal linear RNN, as an XLA parallel scan and a chunked Pallas kernel."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Inexact

from seqkit._typing import ArrayLike

from . import _dispatch
from ._pallas_common import compiler_params, i32
from ._util import complex_of, make_complex, real_dtype, split_complex

# Time steps per chunk: the kernel's sequential loop runs over chunks, and the
# steps of one chunk are unrolled, so their loads are issued ahead of the
# dependent multiply-adds.
_CHUNK = 8
# Channels per program: a power of two (Triton's tensors), at most 128 (one row of
# 128 float32 per warpgroup on GPU, one lane row on TPU).
_MAX_BLOCK = 128
# TPU keeps each program's `(L, block)` slices of every operand in VMEM, double
# buffered; stay inside the default scoped VMEM limit.
_TPU_VMEM_BYTES = 16 * 2**20
_GPU_DTYPES = ("bfloat16", "float16", "float32")
_TPU_DTYPES = ("bfloat16", "float32")


def _combine(first, second):
    # (a₁, b₁) ∘ (a₂, b₂) = (a₂a₁, a₂b₁ + b₂): two steps composed, associative.
    a1, b1 = first
    a2, b2 = second
    return a2 * a1, a2 * b1 + b2


@functools.partial(jax.jit, static_argnames=("reverse",))
def _xla_scan(a: Array, b: Array, reverse: bool) -> Array:
    _, x = lax.associative_scan(_combine, (jnp.broadcast_to(a, b.shape), b), reverse=reverse, axis=0)
    return x


def _block_channels(D: int, platform: str) -> int:
    if platform == "tpu":
        return _MAX_BLOCK  # Mosaic: the last block dimension is a multiple of 128
    return min(_MAX_BLOCK, 1 << max(0, math.ceil(math.log2(D))))


def _padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _unsupported(dtype, L: int, D: int, parts: int, chunk: int, platform: str) -> str | None:
    """Why the Pallas kernel cannot run a `(L, D)` scan of `parts` real planes
    (2 for complex) of `dtype` on `platform`, or `None`."""
    name = jnp.dtype(dtype).name
    # complex inputs are named as given: complex128, not their planes' float64
    shown = complex_of(dtype).name if parts == 2 else name
    if platform == "gpu" and name not in _GPU_DTYPES:
        return f"dtype {shown} is not supported on GPU (supported: {', '.join(_GPU_DTYPES)}, complex64)"
    if platform == "tpu":
        if name not in _TPU_DTYPES:
            return f"dtype {shown} is not supported on TPU (supported: {', '.join(_TPU_DTYPES)}, complex64)"
        # The backward pass holds the most operands: a, x, ḡ in and ḡ_a, ḡ_b out.
        rows = _padded(L, chunk)
        need = 2 * 5 * parts * rows * _MAX_BLOCK * jnp.dtype(dtype).itemsize
        if need > _TPU_VMEM_BYTES:
            return (
                f"L={L} needs {need / 2**20:.1f} MiB of VMEM for the whole time axis of one "
                f"channel block, more than {_TPU_VMEM_BYTES // 2**20} MiB"
            )
    if platform not in ("cpu", "gpu", "tpu"):
        return f"unknown platform {platform!r}"
    return None


# Complex numbers travel as tuples of real planes: `(re,)` or `(re, im)`.
def _mul(p, q):
    if len(p) == 1:
        return (p[0] * q[0],)
    return (p[0] * q[0] - p[1] * q[1], p[0] * q[1] + p[1] * q[0])


def _add(p, q):
    return tuple(u + v for u, v in zip(p, q, strict=True))


def _load(refs, t, acc):
    return tuple(r[pl.ds(t, 1), :].astype(acc) for r in refs)


def _store(refs, t, values):
    for r, v in zip(refs, values, strict=True):
        r[pl.ds(t, 1), :] = v.astype(r.dtype)


def _accumulator(dtype):
    # Low precision in, float32 state; float64 (interpret mode) stays float64.
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def _row(c, i, chunk, rows, descending):
    """The row of step `i` of chunk `c`, counted from the start or from the end."""
    step = c * i32(chunk) + i32(i)
    return i32(rows - 1) - step if descending else step


def _forward_kernel(*refs, parts, rows, chunk, reverse):
    """One channel block: `x_t = a_t x_{t∓1} + b_t` over all `rows`, chunk by chunk."""
    a_refs, b_refs, x_refs = refs[:parts], refs[parts : 2 * parts], refs[2 * parts :]
    acc = _accumulator(x_refs[0].dtype)
    width = x_refs[0].shape[-1]

    def body(c, x):
        for i in range(chunk):
            t = _row(c, i, chunk, rows, reverse)
            x = _add(_mul(_load(a_refs, t, acc), x), _load(b_refs, t, acc))
            _store(x_refs, t, x)
        return x

    zero = tuple(jnp.zeros((1, width), acc) for _ in range(parts))
    lax.fori_loop(i32(0), i32(rows // chunk), body, zero)


def _backward_kernel(*refs, parts, rows, chunk, reverse):
    """The adjoint of one channel block, swept in the opposite direction.

    For the forward scan, `x = M b` with `M` lower triangular, and JAX's
    cotangents are transposes (no conjugation, complex or not):
    `y_t = ḡ_t + a_{t+1} y_{t+1}` (`y_L = 0`), `ḡ_b_t = y_t`, and from
    `dx_t = da_t x_{t−1} + a_t dx_{t−1}`, `ḡ_a_t = y_t x_{t−1}` (`x_{−1} = 0`).
    The reverse scan swaps `t + 1` and `t − 1`.
    """
    a_refs, x_refs, g_refs = refs[:parts], refs[parts : 2 * parts], refs[2 * parts : 3 * parts]
    ga_refs, gb_refs = refs[3 * parts : 4 * parts], refs[4 * parts :]
    acc = _accumulator(x_refs[0].dtype)
    width = x_refs[0].shape[-1]

    def body(c, carry):
        y, a_after = carry
        for i in range(chunk):
            t = _row(c, i, chunk, rows, not reverse)
            y = _add(_load(g_refs, t, acc), _mul(a_after, y))
            _store(gb_refs, t, y)
            # The state the step at t was applied to: x_{t−1} (forward) or x_{t+1}.
            before = t + i32(1) if reverse else t - i32(1)
            valid = before < i32(rows) if reverse else before >= i32(0)
            x_before = _load(x_refs, jnp.clip(before, i32(0), i32(rows - 1)), acc)
            x_before = tuple(jnp.where(valid, v, jnp.zeros_like(v)) for v in x_before)
            _store(ga_refs, t, _mul(y, x_before))
            a_after = _load(a_refs, t, acc)
        return y, a_after

    zero = tuple(jnp.zeros((1, width), acc) for _ in range(parts))
    lax.fori_loop(i32(0), i32(rows // chunk), body, (zero, zero))


def _call(kernel, inputs, n_out, *, parts, chunk, reverse, platform):
    """Run `kernel` on `(rows, D)` real planes, one program per channel block."""
    rows, D = inputs[0].shape
    width = _block_channels(D, platform)
    grid = (D // width,)
    spec = pl.BlockSpec((rows, width), lambda j: (0, j))
    params = compiler_params(platform, num_warps=max(1, width // 32), num_stages=None)
    out = jax.ShapeDtypeStruct((rows, D), inputs[0].dtype)
    return pl.pallas_call(
        functools.partial(kernel, parts=parts, rows=rows, chunk=chunk, reverse=reverse),
        out_shape=[out] * n_out,
        grid=grid,
        in_specs=[spec] * len(inputs),
        out_specs=[spec] * n_out,
        compiler_params=params,
        interpret=platform not in _dispatch.ACCELERATORS,
        name="linear_scan_bwd" if kernel is _backward_kernel else "linear_scan",
    )(*inputs)


def _planes(x: Array, complex_: bool, rows: int, D: int) -> list[Array]:
    """`x` `(L, D')` as real planes zero-padded to `(rows, D)`."""
    parts = split_complex(x) if complex_ else (x,)
    pad = ((0, rows - x.shape[0]), (0, D - x.shape[1]))
    return [jnp.pad(p, pad) for p in parts]


def _unplanes(planes, complex_: bool, L: int, D: int) -> Array:
    planes = [p[:L, :D] for p in planes]
    return make_complex(*planes) if complex_ else planes[0]


def _run(kernel, arrays, n_out, reverse, chunk, platform):
    L, D = arrays[0].shape
    complex_ = jnp.iscomplexobj(arrays[0])
    parts = 2 if complex_ else 1
    rows = _padded(L, chunk)
    cols = _padded(D, _block_channels(D, platform))
    planes = [p for x in arrays for p in _planes(x, complex_, rows, cols)]
    out = _call(kernel, planes, n_out * parts, parts=parts, chunk=chunk, reverse=reverse, platform=platform)
    return [_unplanes(out[i * parts : (i + 1) * parts], complex_, L, D) for i in range(n_out)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _pallas_scan(a: Array, b: Array, reverse: bool, chunk: int, platform: str) -> Array:
    """The Pallas scan of `(L, D)` arrays `a`, `b` of one dtype (a JAX-internal
    entry point: `platform` picks the compiler, `"cpu"` meaning interpret mode)."""
    (x,) = _run(_forward_kernel, [a, b], 1, reverse, chunk, platform)
    return x


def _pallas_scan_fwd(a, b, reverse, chunk, platform):
    x = _pallas_scan(a, b, reverse, chunk, platform)
    return x, (a, x)


def _pallas_scan_bwd(reverse, chunk, platform, residuals, g):
    a, x = residuals
    g_a, g_b = _run(_backward_kernel, [a, x, g], 2, reverse, chunk, platform)
    return g_a, g_b


_pallas_scan.defvjp(_pallas_scan_fwd, _pallas_scan_bwd)


def linear_scan(
    a: Inexact[ArrayLike, "..."],
    b: Inexact[ArrayLike, "L ..."],
    *,
    reverse: bool = False,
    impl: _dispatch.Impl = "auto",
    chunk: int | None = None,
) -> Inexact[Array, "L ..."]:
    """All states of the diagonal linear recurrence along axis 0:

    `x_t = a_t ⊙ x_{t−1} + b_t`, `x_{−1} = 0` (forward), or
    `x_t = a_t ⊙ x_{t+1} + b_t`, `x_L = 0` (`reverse=True`).

    The recurrence of S5 and of diagonal linear RNNs (`a_t` the discretized
    poles, `b_t` the discretized inputs). Differentiable in `a` and `b`.

    ```python
    x = seqkit.kernels.linear_scan(lambda_bar, bu)            # (L, n)
    x = seqkit.kernels.linear_scan(lambda_bar_t, bu, reverse=True)
    ```

    Two implementations, chosen by `impl` (see the dispatcher in
    `seqkit.kernels`: `"auto"` is XLA on CPU and Pallas on GPU/TPU when the
    kernel supports the call):

    - `"xla"`: `jax.lax.associative_scan` over the elements `(a_t, b_t)`, which
      compose as `(a₁, b₁) ∘ (a₂, b₂) = (a₂a₁, a₂b₁ + b₂)`: `O(log L)` depth.
    - `"pallas"`: one program per block of up to 128 channels runs a sequential
      loop over chunks of `chunk` time steps (unrolled within a chunk), carrying
      the state; `O(L)` depth, one read of `a`, `b` and one write of `x`.
      Complex numbers travel as real and imaginary planes in real arithmetic; the
      state is carried in float32 for bfloat16/float16/float32 inputs. Its
      gradient is a second Pallas kernel, the adjoint scan in the opposite
      direction, `y_t = ḡ_t + a_{t+1} y_{t+1}`, `ḡ_b = y`,
      `ḡ_{a_t} = y_t x_{t−1}`. On CPU it runs in interpret mode (exact, slow:
      for tests). Constraints: on GPU (Triton) bfloat16, float16 and float32;
      on TPU (Mosaic) bfloat16 and float32, with the whole time axis of one
      128-channel block in VMEM (under 16 MiB for the backward pass's operands,
      so roughly `L ≤ 3200` for float32, half that for complex); float64 only
      in interpret mode. `impl="pallas"` on an unsupported call raises a
      `ValueError` naming the constraint. Both kernels lower for CUDA (through
      Triton, selected by passing Triton compiler parameters) and for TPU
      (Mosaic); the tests check the lowering by exporting from a CPU machine
      (`jax.export`), which does not run the device compilers.

    **Arguments:**

    - `a`: the multipliers, broadcastable to `b.shape`: per step `(L, ...)`
      like `b`, or time-invariant `(...)` without the time axis (or any other
      broadcastable shape, e.g. `(L, 1)` for one scalar per step).
    - `b`: `(L, ...)` inputs.  `a` and `b` are real or complex of one precision;
      a real one is made complex when the other is complex.
    - `reverse`: run from the end of the sequence.
    - `impl`: `"auto"`, `"xla"` or `"pallas"`.
    - `chunk`: time steps per chunk of the Pallas kernel (default 8); `L` need
      not be a multiple (the tail is padded). Ignored by XLA.

    **Returns:** `(L, ...)`, the states `x_t`, of the (complex if either input is)
    dtype of the inputs.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if b.ndim < 1:
        raise ValueError(f"expected b of shape (L, ...) with a time axis, got a scalar of shape {b.shape}")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        shape = None
    if shape != b.shape:
        raise ValueError(
            f"expected a broadcastable to b's shape {b.shape} (per step {b.shape} or "
            f"constant {b.shape[1:]}), got a of shape {a.shape}"
        )
    real_dtype(a, b)
    if jnp.iscomplexobj(a) != jnp.iscomplexobj(b):
        a, b = (x if jnp.iscomplexobj(x) else make_complex(x, jnp.zeros_like(x)) for x in (a, b))
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"expected a positive integer chunk, got {chunk!r}")
    chunk = chunk or _CHUNK
    L = b.shape[0]
    D = math.prod(b.shape[1:])
    parts = 2 if jnp.iscomplexobj(b) else 1
    choice = _dispatch.choose(
        impl, "linear_scan", lambda platform: _unsupported(real_dtype(b), L, D, parts, chunk, platform)
    )
    if choice.impl == "xla" or L == 0 or D == 0:
        return _xla_scan(a, b, reverse)
    platform = "cpu" if choice.interpret else _dispatch.backend()
    a2 = jnp.broadcast_to(a, b.shape).reshape(L, D)
    x = _pallas_scan(a2, b.reshape(L, D), reverse, chunk, platform)
    return x.reshape(b.shape)
