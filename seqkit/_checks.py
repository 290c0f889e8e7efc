"""Input checks shared by every mixer (SSM cores, layers, attention): friendly errors at trace time."""

import jax
import jax.numpy as jnp
from jaxtyping import Array


def check_sequence(x: Array, d_model: int) -> Array:
    """`x` as a real `(L, d_model)` array with `L >= 1`, or a ValueError."""
    if not isinstance(x, jax.Array):
        x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != d_model:
        raise ValueError(
            f"expected input of shape (L, {d_model}) for one example (use jax.vmap for a "
            f"batch), got {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"expected a real floating input, got dtype {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError("expected a sequence of length >= 1, got length 0")
    return x


def check_mask(mask: Array | None, L: int) -> Array | None:
    """A padding mask as a bool `(L,)` array (True = real token), or a ValueError."""
    if mask is None:
        return None
    if not isinstance(mask, jax.Array):
        mask = jnp.asarray(mask)
    if mask.shape != (L,):
        raise ValueError(f"expected a padding mask of shape ({L},), got {mask.shape}")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"expected a bool padding mask (True = real token), got dtype {mask.dtype}")
    return mask


def at_least(lo: int, **sizes: int) -> None:
    """A ValueError naming the first of `sizes` (block sizes, strides, windows) below `lo`."""
    for name, value in sizes.items():
        if value < lo:
            raise ValueError(f"expected {name} >= {lo}, got {value}")


def dropout_rate(p: float) -> float:
    """A dropout probability as a float in `[0, 1)`, or a ValueError (1 would drop
    everything; NaN and values outside fail too)."""
    try:
        rate = float(p)
    except (TypeError, ValueError):
        rate = float("nan")
    if isinstance(p, bool) or not 0.0 <= rate < 1.0:
        raise ValueError(f"expected 0 <= dropout < 1, got {p!r}")
    return rate


def finite_padding(x: Array, mask: Array | None) -> Array:
    """`x` `(L, d)` with non-finite values at padded positions (`mask` False) made 0.

    Outputs at padded positions are unspecified, so a layer below may leave inf or
    NaN there; a mixer that meets them with a zero weight would get `0 · NaN = NaN`
    at real positions. Finite values are kept, so padded positions' own outputs stay
    what they were for finite inputs."""
    if mask is None:
        return x
    return jnp.where(mask[:, None] | jnp.isfinite(x), x, jnp.zeros_like(x))
