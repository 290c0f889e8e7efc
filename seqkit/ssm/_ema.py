"""Mega's multi-dimensional damped exponential moving average (EMA) core."""

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._base import AbstractSSMCore, DiscreteSystem, per_direction, to_complex
from ._powers import power_kernel


def ema_kernel(
    alpha: Float[ArrayLike, "*dirs H h"],
    delta: Float[ArrayLike, "*dirs H h"],
    beta: Float[ArrayLike, "*dirs H h"],
    eta: Float[ArrayLike, "*dirs H h"],
    L: int,
    *,
    impl: Literal["auto", "xla", "pallas"] = "auto",
) -> Float[ArrayLike, "*dirs H L"]:
    """Damped EMA kernel `K_l = Σ_j η_j β_j α_j (1 − α_j δ_j)^l` (Ma et al.,
    "Mega: Moving Average Equipped Gated Attention", 2023).

    **Arguments:**

    - `alpha`, `delta`: `(H, h)` (optionally `(dirs, H, h)`) in `(0, 1)`.
    - `beta`, `eta`: expansion and projection weights of the same shape.
    - `L`: kernel length.
    - `impl`: the Vandermonde product's implementation, `"auto"`, `"xla"` or
      `"pallas"` (see `seqkit.kernels.vandermonde`).

    **Returns:** `(*dirs, H, L)`.
    """
    alpha, delta, beta, eta = map(jnp.asarray, (alpha, delta, beta, eta))
    # 1 − αδ is 0 where α and δ round to 1 (saturated gates): a pole at 0
    ad = alpha * delta
    r = 1 - ad
    return power_kernel(
        eta * beta * alpha, r, lambda zero: jnp.log1p(-jnp.where(zero, jnp.zeros_like(ad), ad)), L, impl=impl
    )


class EMA(AbstractSSMCore):
    """Mega's multi-dimensional damped EMA as an SSM core.

    Per channel and expansion dimension `j`: `u_t = β_j x_t`,
    `z_t = α_j u_t + (1 − α_j δ_j) z_{t−1}`, `y_t = Σ_j η_j z_t + ω x_t`, with
    `α = sigmoid(·)`, `δ = sigmoid(·)`. As a convolution the kernel is a real
    Vandermonde product. Bidirectional EMAs learn a separate set of
    `α, δ, β, η` for the backward direction.

    `truncation=T` keeps the kernel's first `T` taps and zeroes the rest (Mega's
    code truncates its LRA models' EMA to 1024 or 4096 taps): a convolution only,
    with no finite recurrence, so recurrent mode and `discrete_system` need
    `truncation=None`.

    ```python
    core = seqkit.ssm.EMA(64, ndim=16, key=jax.random.key(0))
    y = core(x)  # x: (L, 64)
    ```

    Ma et al., "Mega: Moving Average Equipped Gated Attention", ICLR 2023.
    """

    alpha_logit: Float[Array, "*dirs H h"]
    delta_logit: Float[Array, "*dirs H h"]
    beta: Float[Array, "*dirs H h"]
    eta: Float[Array, "*dirs H h"]
    omega: Float[Array, " H"]
    d_model: int = eqx.field(static=True)
    ndim: int = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    truncation: int | None = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        ndim: int = 16,
        *,
        bidirectional: bool = False,
        truncation: int | None = None,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: channels `H`.
        - `ndim`: expansion dimensions `h` per channel.
        - `bidirectional`: add a second EMA run over the reversed sequence.
        - `truncation`: keep only the kernel's first `truncation` taps (`None`: all).
        - `key`: PRNG key.
        """
        if d_model < 1 or ndim < 1:
            raise ValueError(f"d_model and ndim must be >= 1, got {d_model} and {ndim}")
        if truncation is not None and (not isinstance(truncation, int) or truncation < 1):
            raise ValueError(f"truncation must be None or an integer >= 1, got {truncation!r}")
        shape = ((2,) if bidirectional else ()) + (d_model, ndim)
        akey, dkey, bkey, ekey, okey = jr.split(key, 5)
        self.alpha_logit = 0.2 * jr.normal(akey, shape)
        self.delta_logit = 0.2 * jr.normal(dkey, shape)
        # β near alternating ±1, so the expansion dims start out distinct.
        signs = jnp.where(jnp.arange(ndim) % 2 == 0, 1.0, -1.0)
        self.beta = signs + 0.02 * jr.normal(bkey, shape)
        self.eta = jr.normal(ekey, shape) * math.sqrt(1.0 / ndim)
        self.omega = jr.normal(okey, (d_model,))
        self.d_model = d_model
        self.ndim = ndim
        self.bidirectional = bidirectional
        self.truncation = truncation

    def _params(self):
        return jax.nn.sigmoid(self.alpha_logit), jax.nn.sigmoid(self.delta_logit), self.beta, self.eta

    def ssm_parameters(self) -> tuple:
        """α, δ and β: the EMA's own parameters, declared so that an optimizer can group
        them. Mega's code trains them with the rest (one group), so the Mega recipes
        give this group the base learning rate and weight decay."""
        return (
            self.alpha_logit,
            self.delta_logit,
            self.beta,
        )

    def skip(self) -> Float[Array, " d_model"]:
        return self.omega

    def kernel(self, L: int) -> Float[Array, "*dirs d_model L"]:
        """The kernel, `(d_model, L)` or `(2, d_model, L)` (zero past `truncation` taps)."""
        if self.truncation is None or self.truncation >= L:
            return ema_kernel(*self._params(), L)
        k = ema_kernel(*self._params(), self.truncation)
        return jnp.pad(k, [(0, 0)] * (k.ndim - 1) + [(0, L - self.truncation)])

    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        del L
        if self.truncation is not None:
            raise ValueError(
                f"an EMA truncated to {self.truncation} taps is a convolution with no finite "
                "recurrence: recurrent mode and discrete_system need truncation=None"
            )
        alpha, delta, beta, eta = self._params()
        A, Bb, C = (to_complex(a) for a in (1.0 - alpha * delta, alpha * beta, eta))
        if not self.bidirectional:
            A, Bb, C = A[None], Bb[None], C[None]
        return per_direction(A, Bb, C, self.omega, stacked=True)
