"""Mega's normalized feed-forward block."""

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray


class NormalizedFFN(eqx.Module):
    """A position-wise feed-forward block with its own normalization and residual.

    Pre-norm: `out = x + W_2 drop(SiLU(W_1 LN(x) + b_1)) + b_2`, dropout on the
    result too; post-norm: `out = LN(x + FFN(x))`. Applied to one position
    `(d_model,)`; `vmap` it over the sequence.

    Ma et al., "Mega: Moving Average Equipped Gated Attention", ICLR 2023.
    """

    norm: eqx.nn.LayerNorm
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    prenorm: bool = eqx.field(static=True)

    def __init__(self, d_model: int, hidden: int, *, prenorm: bool, dropout: float, key: PRNGKeyArray):
        k1, k2 = jr.split(key)
        self.norm = eqx.nn.LayerNorm(d_model)
        self.fc1 = eqx.nn.Linear(d_model, hidden, key=k1)
        self.fc2 = eqx.nn.Linear(hidden, d_model, key=k2)
        self.dropout = eqx.nn.Dropout(dropout)
        self.prenorm = prenorm

    def __call__(
        self, x: Float[Array, " d_model"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " d_model"]:
        k1, k2 = (None, None) if key is None else jr.split(key)
        h = self.norm(x) if self.prenorm else x
        h = self.dropout(jax.nn.silu(self.fc1(h)), key=k1)
        out = x + self.dropout(self.fc2(h), key=k2)
        return out if self.prenorm else self.norm(out)
