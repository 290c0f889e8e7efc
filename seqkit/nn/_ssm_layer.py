"""The layer wrapper of the S4/S4D/DSS papers: core → activation → dropout → output map."""

from typing import Literal

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._checks import dropout_rate
from seqkit._mixer import AbstractRecurrentMixer
from seqkit.ssm import AbstractSSMCore

_ACTIVATIONS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "silu": jax.nn.silu, "identity": lambda x: x}


class SSMLayer(AbstractRecurrentMixer):
    """An SSM core followed by an activation, dropout and a position-wise output map.

    `y = out(dropout(act(core(u))))`, where `out` is `Linear(H → H)` or
    `Linear(H → 2H)` followed by a GLU `a ⊙ sigmoid(b)`, the layer of the S4, S4D
    and DSS papers. One example at a time: `(L, d_model)` in and out; batch with
    `jax.vmap`. A mixer (padding `mask` reaches the core), and a recurrence when
    its core is causal.

    ```python
    layer = SSMLayer(seqkit.ssm.S4D(64, key=k1), output="glu", dropout=0.1, key=k2)
    y = layer(u, key=k3)  # dropout active unless inference=True
    ```
    """

    core: AbstractSSMCore
    output_map: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    d_model: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    output: str = eqx.field(static=True)

    def __init__(
        self,
        core: AbstractSSMCore,
        *,
        activation: Literal["gelu", "relu", "silu", "identity"] = "gelu",
        output: Literal["glu", "linear"] = "glu",
        dropout: float = 0.0,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `core`: any SSM core (`S4`, `S4D`, `DSS`, `EMA`, `S5`).
        - `activation`: applied to the core's output.
        - `output`: `"glu"` (Linear H→2H, then GLU) or `"linear"` (Linear H→H).
        - `dropout`: dropout rate after the activation.
        - `inference`: start with dropout disabled (toggle with `eqx.nn.inference_mode`).
        - `key`: PRNG key for the output map.
        """
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if output not in ("glu", "linear"):
            raise ValueError(f"output must be 'glu' or 'linear', got {output!r}")
        H = core.d_model
        self.core = core
        self.output_map = eqx.nn.Linear(H, 2 * H if output == "glu" else H, key=key)
        self.dropout = eqx.nn.Dropout(dropout_rate(dropout), inference=inference)
        self.d_model = H
        self.activation = activation
        self.output = output

    @property
    def causal(self) -> bool:
        """Whether the layer is causal (its core runs one direction)."""
        return self.core.causal

    def __call__(
        self, u: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:** `u`, `(L, d_model)`; `mask`, optional bool `(L,)`, True at
        real positions (padded inputs enter the core as zeros); `key` for dropout.

        **Returns:** `(L, d_model)`.
        """
        y = _ACTIVATIONS[self.activation](self.core(u, mask=mask))
        y = self.dropout(y, key=key)
        y = jax.vmap(self.output_map)(y)
        if self.output == "glu":
            y = jax.nn.glu(y, axis=-1)
        return y

    def init_state(self, L: int | None = None):
        """Recurrent state of the core (causal cores only)."""
        return self.core.init_state(L)

    def step(self, u_t: Array, state, *, key: PRNGKeyArray | None = None):
        """One step of recurrent mode: `(y_t, state)`."""
        y, state = self.core.step(u_t, state)
        y = self.dropout(_ACTIVATIONS[self.activation](y), key=key)
        y = self.output_map(y)
        if self.output == "glu":
            y = jax.nn.glu(y, axis=-1)
        return y, state
