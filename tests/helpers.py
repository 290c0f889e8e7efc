"""Small helpers shared by the tests (imported as `helpers`)."""

import jax
import jax.numpy as jnp
import numpy as np


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
