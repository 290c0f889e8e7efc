"""Small helpers shared by the tests (imported as `helpers`)."""

import jax
import jax.numpy as jnp
import numpy as np


def enable_x64():
    """A context with 64-bit types on: `jax.enable_x64(True)`, or on JAX releases
    before it was public, its older home in `jax.experimental`."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as older

    return older(True)


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8):
    """True when two pytrees have the same structure and close leaves."""
    if jax.tree.structure(x) != jax.tree.structure(y):
        return False
    return all(
        np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
        for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
    )


def assert_close(actual, expected, *, rtol, atol=0.0, scale=None):
    """Compare `actual` to `expected` with tolerances relative to `scale`.

    `scale` defaults to the largest magnitude in `expected`, so float32 results
    are judged against the size of the quantity, not entry by entry near zero.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= atol + rtol * scale, f"max abs error {err:.3e} > {atol} + {rtol} * {scale:.3e}"


def to_np(x, dtype=None):
    """A JAX array (or complex pair) as a float64/complex128 numpy array."""
    x = np.asarray(x)
    if dtype is not None:
        return x.astype(dtype)
    if np.iscomplexobj(x):
        return x.astype(np.complex128)
    return x.astype(np.float64)


def key_data(key):
    return jnp.asarray(jax.random.key_data(key))


def scan_steps(model, xs, state):
    """Outputs of `model.step` over the sequence `xs` from `state` (recurrent mode)."""

    def body(state, x_t):
        y_t, state = model.step(x_t, state)
        return state, y_t

    return jax.lax.scan(body, state, xs)[1]


# The attention-dropout stream (`seqkit.kernels._dropout`) by its definition, in NumPy.


def _fmix32_np(x):
    """MurmurHash3's 32-bit finalizer in NumPy uint32 arithmetic (wrapping products)."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x85EBCA6B)
        x = x ^ (x >> np.uint32(13))
        x = x * np.uint32(0xC2B2AE35)
        return x ^ (x >> np.uint32(16))


def dropout_keep_np(seed, rows, Lq, Lk, rate):
    """The keep mask `(rows, Lq, Lk)` by its definition: for row r, query i, key j,
    `h = fmix(fmix(fmix(fmix(seed) ^ r·0x9E3779B1) ^ i·0x85EBCA77) ^ j·0xC2B2AE3D)`
    (uint32), kept when `h >> 8 >= round(rate · 2²⁴)`."""
    u = np.uint32
    r = np.arange(rows, dtype=u)[:, None, None]
    i = np.arange(Lq, dtype=u)[None, :, None]
    j = np.arange(Lk, dtype=u)[None, None, :]
    with np.errstate(over="ignore"):
        a = _fmix32_np(_fmix32_np(u(seed)) ^ (r * u(0x9E3779B1)))
        b = _fmix32_np(a ^ (i * u(0x85EBCA77)))
        h = _fmix32_np(b ^ (j * u(0xC2B2AE3D)))
    return (h >> u(8)).astype(np.int64) >= round(rate * 2**24)


def np_layer_norm(ln, x):
    """`eqx.nn.LayerNorm` `ln` from its definition, in float64: per position,
    `(x − mean) / sqrt(var + eps) · γ + β` over the last axis."""
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * np.asarray(ln.weight, np.float64) + np.asarray(
        ln.bias, np.float64
    )
