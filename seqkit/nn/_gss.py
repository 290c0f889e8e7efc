"""GSS: the gated state space mixer."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._checks import check_mask, check_sequence, dropout_rate, finite_padding
from seqkit._mixer import AbstractRecurrentMixer
from seqkit.ssm import DSS, DSSSoftmaxState, SSMState, fft_conv


class GSS(AbstractRecurrentMixer):
    """Gated State Space mixer: a DSS on a narrow branch, gating a wide one.

    For an input `x ∈ R^{L×E}`:

    - `v = GELU(x W_v + b_v)` (`L×F`, `F = expansion·E`),
    - `u = GELU(x W_u + b_u)` (`L×H`, `H = ssm_dim`),
    - `y = K ∗ u`, a DSS convolution with state size `N` and no `D` term:
      `y_t = Σ_{s≤t} K_{t−s} u_s` (causal), with
      `K_l = Re Σ_n w_n (exp(λ_n Δ) − 1)/λ_n · exp(λ_n Δ l)` for the `"exp"` kernel,
    - `o = ((y W_y + b_y) ⊙ v) W_o + b_o` (`W_y: H → F`, `W_o: F → E`).

    The mixer is bare, like every other mixer: the paper's full GSS layer,
    `x + o(LayerNorm(x))`, is `ResidualBlock(GSS(...), E, norm="layer", prenorm=True)`.

    Causal by default, so it is also a recurrence: `init_state` and `step` run
    the DSS one position at a time and agree with `__call__`. A padding `mask`
    zeroes `u` at padded positions before the convolution, so they reach no real
    output, and the real outputs equal those of the unpadded input (the
    `"softmax"` DSS kernel is then normalized over the real span, first to last
    real position).
    One example at a time: `(L, E)` in and out; batch with `jax.vmap`.
    The DSS core's own skip weights `D` are not used, so they get zero gradient.

    ```python
    block = ResidualBlock(GSS(256, ssm_dim=64, expansion=3, key=k1), 256, key=k2)
    y, state = block(x, state)  # x: (L, 256); state from eqx.nn.make_with_state
    ```

    Mehta, Gupta, Cutkosky and Neyshabur, "Long Range Language Modeling via
    Gated State Spaces", ICLR 2023; the DSS kernel is from Gupta, Gu and Berant,
    "Diagonal State Spaces are as Effective as Structured State Spaces", NeurIPS 2022.
    """

    proj_v: eqx.nn.Linear
    proj_u: eqx.nn.Linear
    core: DSS
    proj_y: eqx.nn.Linear
    proj_o: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    d_model: int = eqx.field(static=True)
    ssm_dim: int = eqx.field(static=True)
    expansion: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        *,
        ssm_dim: int,
        expansion: int,
        state_size: int = 512,
        variant: Literal["exp", "softmax"] = "exp",
        causal: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dropout: float = 0.0,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: model width `E`.
        - `ssm_dim`: width `H` of the narrow branch that goes through the DSS
          (the paper uses `E/4`).
        - `expansion`: the wide branch has `F = expansion·E` channels (the
          paper uses 3 to 4).
        - `state_size`: DSS state size `N` (even; the paper uses 512).
        - `variant`: DSS kernel, `"exp"` or `"softmax"`.
        - `causal`: a causal DSS (default); `False` uses a bidirectional one
          (no recurrent mode then).
        - `dt_min`, `dt_max`: range of the DSS's initial step sizes.
        - `dropout`: dropout rate on the gated product `(y W_y) ⊙ v`.
        - `key`: PRNG key.
        """
        for name, value in (("d_model", d_model), ("ssm_dim", ssm_dim), ("expansion", expansion)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if variant not in ("exp", "softmax"):
            raise ValueError(f"variant must be 'exp' or 'softmax', got {variant!r}")
        if state_size < 2 or state_size % 2:
            raise ValueError(f"state_size must be even and >= 2, got {state_size}")
        F = expansion * d_model
        vkey, ukey, ckey, ykey, okey = jr.split(key, 5)
        self.proj_v = eqx.nn.Linear(d_model, F, key=vkey)
        self.proj_u = eqx.nn.Linear(d_model, ssm_dim, key=ukey)
        self.core = DSS(
            ssm_dim,
            state_size,
            variant=variant,
            bidirectional=not causal,
            dt_min=dt_min,
            dt_max=dt_max,
            key=ckey,
        )
        self.proj_y = eqx.nn.Linear(ssm_dim, F, key=ykey)
        self.proj_o = eqx.nn.Linear(F, d_model, key=okey)
        self.dropout = eqx.nn.Dropout(dropout_rate(dropout))
        self.d_model = d_model
        self.ssm_dim = ssm_dim
        self.expansion = expansion
        self.causal = causal

    def _branches(self, x: Float[Array, " d_model"]) -> tuple[Float[Array, " F"], Float[Array, " ssm_dim"]]:
        return jax.nn.gelu(self.proj_v(x)), jax.nn.gelu(self.proj_u(x))

    def _output(
        self, y: Float[Array, " ssm_dim"], v: Float[Array, " F"], key: PRNGKeyArray | None
    ) -> Float[Array, " d_model"]:
        return self.proj_o(self.dropout(self.proj_y(y) * v, key=key))

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:**

        - `x`: `(L, d_model)`, one example.
        - `mask`: optional bool `(L,)` padding mask, True for real tokens.
          Padded positions enter the DSS as zeros, so they do not change the
          outputs at real positions (their own outputs are meaningless).
        - `key`: PRNG key for dropout (needed only when dropout is active).

        **Returns:** `(L, d_model)`.
        """
        x = check_sequence(x, self.d_model)
        L = x.shape[0]
        mask = check_mask(mask, L)
        x = finite_padding(x, mask).astype(self.core.D.dtype)  # no 0 · NaN in the gradients
        v, u = jax.vmap(self._branches)(x)
        if mask is None:
            K = self.core.kernel(L)
        else:
            u = jnp.where(mask[:, None], u, jnp.zeros_like(u))
            K = self.core.masked_kernel(L, mask)
        y = fft_conv(u, K)  # no D term
        keys = None if key is None else jr.split(key, L)
        return jax.vmap(self._output)(y, v, keys)

    def init_state(self, L: int | None = None) -> SSMState | DSSSoftmaxState:
        """A zero state for `step` (causal GSS only).

        **Arguments:** `L`, the sequence length (needed by the `"softmax"` DSS
        variant, whose kernel is normalized over `L`).
        """
        if not self.causal:
            raise ValueError("recurrent mode needs a causal GSS (causal=True); this one is bidirectional")
        state = self.core.init_state(L)
        system = state.system
        return state._replace(system=system._replace(D=jnp.zeros_like(system.D)))

    def step(
        self, x_t: Array, state: SSMState | DSSSoftmaxState, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], SSMState | DSSSoftmaxState]:
        """One position of recurrent mode.

        **Arguments:** `x_t`, the `(d_model,)` input at one position; `state`
        from `init_state` or the previous `step`; `key` for dropout.

        **Returns:** `(y_t, state)`.
        """
        if not self.causal:
            raise ValueError("recurrent mode needs a causal GSS (causal=True); this one is bidirectional")
        x_t = jnp.asarray(x_t)
        if x_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {x_t.shape}")
        v, u = self._branches(x_t.astype(self.core.D.dtype))
        y, state = self.core.step(u, state)
        return self._output(y, v, key), state
