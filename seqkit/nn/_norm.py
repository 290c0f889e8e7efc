"""Normalization over the channels of a sequence: LayerNorm per position, or BatchNorm
over the batch and the real positions, with running statistics kept in `eqx.nn.State`."""

from collections.abc import Hashable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

from seqkit._checks import check_mask


class SequenceNorm(eqx.Module):
    """LayerNorm or BatchNorm for one `(L, d)` sequence, mask-aware.

    - `"layer"`: each position normalized over its `d` channels.
    - `"batch"`: each channel normalized by its mean and (biased) variance over the
      batch and the real positions: `μ = Σ_{b,t} m_bt x_bt / Σ m_bt`,
      `σ² = Σ m_bt (x_bt − μ)² / Σ m_bt`, `y = γ (x − μ) / √(σ² + ε) + β`. Padded
      positions (`mask` False) take no part in the statistics, so they never change
      a real output. Running statistics `r ← m·r + (1 − m)·batch` (start: mean 0,
      variance 1) live in an `eqx.nn.State` and are used in inference mode. Call it
      inside `jax.vmap(..., axis_name=axis_name)`, the Equinox convention.

    Both kinds share one signature, `norm(x, state, *, mask=None) -> (y, state)`, so
    a model can switch between them without changing its callers; `step(x_t, state)`
    normalizes one position (BatchNorm with its running statistics).

    ```python
    norm, state = eqx.nn.make_with_state(SequenceNorm)(64, "batch")
    y, state = jax.vmap(norm, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)
    ```

    Ba, Kiros and Hinton, "Layer Normalization", 2016; Ioffe and Szegedy, "Batch
    Normalization", ICML 2015.
    """

    weight: Float[Array, " d"]
    bias: Float[Array, " d"]
    stats: eqx.nn.StateIndex | None
    kind: str = eqx.field(static=True)
    axis_name: Hashable = eqx.field(static=True)
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d: int,
        kind: Literal["layer", "batch"] = "layer",
        *,
        axis_name: Hashable = "batch",
        momentum: float = 0.9,
        eps: float = 1e-5,
        inference: bool = False,
    ):
        """**Arguments:**

        - `d`: channels.
        - `kind`: `"layer"` or `"batch"`.
        - `axis_name`: the vmapped batch axis BatchNorm reduces over.
        - `momentum`: BatchNorm's running-statistics momentum (`r ← m·r + (1−m)·batch`;
          0.9 is PyTorch's default 0.1 in its convention, as in the published S4 runs).
        - `eps`: added to the variance.
        - `inference`: BatchNorm uses its running statistics (toggle with
          `eqx.nn.inference_mode`).
        """
        if kind not in ("layer", "batch"):
            raise ValueError(f"norm must be 'layer' or 'batch', got {kind!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        dtype = jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
        self.weight = jnp.ones((d,), dtype)
        self.bias = jnp.zeros((d,), dtype)
        self.stats = (
            eqx.nn.StateIndex((jnp.zeros((d,), dtype), jnp.ones((d,), dtype))) if kind == "batch" else None
        )
        self.kind = kind
        self.axis_name = axis_name
        self.momentum = momentum
        self.eps = eps
        self.inference = inference

    def _affine(self, x: Array, mean: Array, var: Array) -> Array:
        return (x - mean) * lax.rsqrt(var + self.eps) * self.weight + self.bias

    def __call__(
        self, x: Float[Array, "L d"], state: eqx.nn.State, *, mask: Bool[Array, " L"] | None = None
    ) -> tuple[Float[Array, "L d"], eqx.nn.State]:
        """**Arguments:** `x`, `(L, d)`; `state`; `mask`, optional bool `(L,)`, True at
        real positions (BatchNorm's statistics skip the others).

        **Returns:** `(y, state)`, `y` of the shape of `x`.
        """
        mask = check_mask(mask, x.shape[0])
        if self.kind == "layer":
            mean = jnp.mean(x, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
            return self._affine(x, mean, var), state
        assert self.stats is not None
        if self.inference:
            mean, var = state.get(self.stats)
            return self._affine(x, mean.astype(x.dtype), var.astype(x.dtype)), state
        w = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
        count = lax.psum(jnp.sum(w), self.axis_name)
        count = jnp.maximum(count, jnp.ones_like(count))
        # padded values leave the sums, not just weighted 0: no 0 · inf or 0 · NaN there
        xs = x if mask is None else jnp.where(mask[:, None], x, jnp.zeros_like(x))
        mean = lax.psum(w @ xs, self.axis_name) / count
        var = lax.psum(w @ jnp.square(xs - mean), self.axis_name) / count
        run_mean, run_var = state.get(self.stats)
        m = self.momentum
        state = state.set(
            self.stats,
            (
                m * run_mean + (1.0 - m) * mean.astype(run_mean.dtype),
                m * run_var + (1.0 - m) * var.astype(run_var.dtype),
            ),
        )
        return self._affine(x, mean, var), state

    def step(self, x_t: Float[Array, " d"], state: eqx.nn.State) -> Float[Array, " d"]:
        """One position: LayerNorm, or BatchNorm with its running statistics (the
        recurrent mode of a model is an inference-time mode)."""
        y, _ = eqx.nn.inference_mode(self)(x_t[None], state)
        return y[0]
