"""Normalization over the channels of a sequence: LayerNorm per position, or BatchNorm
with running statistics kept in `eqx.nn.State`."""

from collections.abc import Hashable
from typing import Literal

import equinox as eqx
import jax
from jaxtyping import Array, Float


class SequenceNorm(eqx.Module):
    """LayerNorm or BatchNorm for one `(L, d)` sequence.

    - `"layer"`: each position normalized over its `d` channels.
    - `"batch"`: each channel normalized over the batch and the length, with running
      statistics in an `eqx.nn.State` (used in inference mode). Call it inside
      `jax.vmap(..., axis_name=axis_name)`, the Equinox convention.

    Both kinds share one signature, `norm(x, state) -> (y, state)`, so a model can
    switch between them without changing its callers.

    ```python
    norm, state = eqx.nn.make_with_state(SequenceNorm)(64, "batch")
    y, state = jax.vmap(norm, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)
    ```

    Ba, Kiros and Hinton, "Layer Normalization", 2016; Ioffe and Szegedy, "Batch
    Normalization", ICML 2015.
    """

    norm: eqx.nn.LayerNorm | eqx.nn.BatchNorm
    kind: str = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        kind: Literal["layer", "batch"] = "layer",
        *,
        axis_name: Hashable = "batch",
        momentum: float = 0.9,
    ):
        """**Arguments:**

        - `d`: channels.
        - `kind`: `"layer"` or `"batch"`.
        - `axis_name`: the vmapped batch axis BatchNorm reduces over.
        - `momentum`: BatchNorm's running-statistics momentum (`r ← m·r + (1−m)·batch`;
          0.9 is PyTorch's default 0.1 in its convention, as in the published S4 runs).
        """
        if kind == "layer":
            self.norm = eqx.nn.LayerNorm(d)
        elif kind == "batch":
            self.norm = eqx.nn.BatchNorm(d, axis_name, momentum=momentum, mode="batch")
        else:
            raise ValueError(f"norm must be 'layer' or 'batch', got {kind!r}")
        self.kind = kind

    def __call__(
        self, x: Float[Array, "L d"], state: eqx.nn.State
    ) -> tuple[Float[Array, "L d"], eqx.nn.State]:
        """**Returns:** `(y, state)`, `y` of the shape of `x`."""
        if self.kind == "layer":
            return jax.vmap(self.norm)(x), state
        # eqx.nn.BatchNorm's inference path mixes a Python float with its int32 step
        # counter (`momentum ** counter`), which strict dtype promotion rejects.
        with jax.numpy_dtype_promotion("standard"):
            y, state = self.norm(x.T, state)
        return y.T, state
