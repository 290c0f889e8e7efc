"""Helpers shared by the kernels: complex numbers as real pairs."""

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array


def split_complex(x: Array) -> tuple[Array, Array]:
    """Real and imaginary parts of `x` (imaginary part zero for real input)."""
    if jnp.iscomplexobj(x):
        return jnp.real(x), jnp.imag(x)
    return x, jnp.zeros_like(x)


def real_dtype(*xs: Array):
    """The real floating dtype that the (possibly complex) inputs share."""
    dtypes = {jnp.real(x).dtype if jnp.iscomplexobj(x) else x.dtype for x in xs}
    if len(dtypes) != 1:
        raise ValueError(f"inputs must share one precision, got dtypes {sorted(map(str, dtypes))}")
    (dtype,) = dtypes
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"expected floating or complex inputs, got {dtype}")
    return dtype


def complex_of(dtype) -> jnp.dtype:
    """The complex dtype whose parts are the real `dtype` (float64: complex128, else complex64)."""
    return jnp.dtype(jnp.complex128 if jnp.dtype(dtype) == jnp.float64 else jnp.complex64)


def widest_dtype(*xs: Array):
    """The inputs' dtype for messages: the complex one where any input is complex
    (the inputs share one precision), else the real one."""
    complex_ = [x.dtype for x in xs if jnp.iscomplexobj(x)]
    return jnp.dtype(complex_[0] if complex_ else xs[0].dtype)


def make_complex(re: Array, im: Array) -> Array:
    return lax.complex(re, im)
