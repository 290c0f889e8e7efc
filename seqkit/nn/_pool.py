"""Pooling a sequence of features into one vector, mask-aware."""

from typing import Literal

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

Pooling = Literal["mean", "last", "cls"]


def pool(x: Float[Array, "L d"], kind: Pooling, mask: Bool[Array, " L"] | None = None) -> Float[Array, " d"]:
    """Reduce `(L, d)` features to `(d,)`.

    - `"mean"`: `Σ_t m_t x_t / Σ_t m_t` over the valid positions (`m = mask`, all
      ones when `mask` is None).
    - `"last"`: the last valid position (the causal summary).
    - `"cls"`: position 0 (where `SequenceModel` puts its class token).

    **Arguments:** `x`; `kind`; `mask`, `(L,)` bool, True at real (non-padding) positions.

    **Returns:** `(d,)`.
    """
    if kind not in ("mean", "last", "cls"):
        raise ValueError(f"pooling must be 'mean', 'last' or 'cls', got {kind!r}")
    if kind == "cls":
        return x[0]
    if mask is None:
        return jnp.mean(x, axis=0) if kind == "mean" else x[-1]
    if kind == "mean":
        # where, not a product: a non-finite padded position must not reach the sum
        total = jnp.sum(jnp.where(mask[:, None], x, jnp.zeros_like(x)), axis=0)
        return total / jnp.maximum(jnp.sum(mask.astype(x.dtype)), 1.0)
    if kind == "last":
        # The last True position: L − 1 − (index of the first True in the reversed mask).
        last = x.shape[0] - 1 - jnp.argmax(mask[::-1])
        return x[last]
    raise ValueError(f"pooling must be 'mean', 'last' or 'cls', got {kind!r}")
