"""The residual block of a sequence model: norm, mixer, dropout, optional FFN."""

from collections.abc import Callable, Hashable
from typing import Literal

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._norm import SequenceNorm


class FeedForward(eqx.Module):
    """Position-wise `Linear(d → m·d) → GELU → dropout → Linear(m·d → d)`.

    One example `(L, d)` at a time; batch with `jax.vmap`.
    """

    up: eqx.nn.Linear
    down: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, d: int, mult: int = 4, dropout: float = 0.0, *, key: PRNGKeyArray):
        k1, k2 = jr.split(key)
        self.up = eqx.nn.Linear(d, mult * d, key=k1)
        self.down = eqx.nn.Linear(mult * d, d, key=k2)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x: Float[Array, "L d"], *, key: PRNGKeyArray | None = None) -> Float[Array, "L d"]:
        h = jax.nn.gelu(jax.vmap(self.up)(x))
        return jax.vmap(self.down)(self.dropout(h, key=key))


class ResidualBlock(eqx.Module):
    """One residual block around any mixer, with an optional FFN sub-block.

    Pre-norm: `x ← x + drop(mixer(norm(x)))`, then `x ← x + drop(ffn(norm₂(x)))`.
    Post-norm: `x ← norm(x + drop(mixer(x)))`, then `x ← norm₂(x + drop(ffn(x)))`.

    The mixer is any callable `mixer(x: (L, d), *, key=None) -> (L, d)`, e.g.
    `SSMLayer(S4(...))`. One example at a time; `__call__(x, state, *, key)` returns
    `(y, state)` so BatchNorm's running statistics travel in `eqx.nn.State`.

    Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (post-norm); Xiong et
    al., "On Layer Normalization in the Transformer Architecture", ICML 2020 (pre-norm).
    """

    mixer: Callable
    norm: SequenceNorm
    ffn: FeedForward | None
    ffn_norm: SequenceNorm | None
    dropout: eqx.nn.Dropout
    prenorm: bool = eqx.field(static=True)

    def __init__(
        self,
        mixer: Callable,
        d: int,
        *,
        norm: Literal["layer", "batch"] = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        ffn_mult: int = 0,
        axis_name: Hashable = "batch",
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `mixer`: the sequence mixer, `(L, d) -> (L, d)`.
        - `d`: width.
        - `norm`: `"layer"` or `"batch"`.
        - `prenorm`: normalize before (True) or after (False) the residual sum.
        - `dropout`: rate on the mixer (and FFN) output before the residual sum.
        - `ffn_mult`: FFN hidden width as a multiple of `d`; 0 means no FFN.
        - `axis_name`: BatchNorm's batch axis name.
        - `key`: PRNG key for the FFN.
        """
        self.mixer = mixer
        self.norm = SequenceNorm(d, norm, axis_name=axis_name)
        if ffn_mult > 0:
            self.ffn = FeedForward(d, ffn_mult, dropout, key=key)
            self.ffn_norm = SequenceNorm(d, norm, axis_name=axis_name)
        else:
            self.ffn = None
            self.ffn_norm = None
        self.dropout = eqx.nn.Dropout(dropout)
        self.prenorm = prenorm

    def _sub(self, f, norm, x, state, key):
        k1, k2 = (None, None) if key is None else jr.split(key)
        h, state = norm(x, state) if self.prenorm else (x, state)
        m = f(h, key=k1)
        if m.shape != x.shape:
            raise ValueError(f"a mixer must map (L, d) to (L, d); got {x.shape} -> {m.shape}")
        y = x + self.dropout(m, key=k2)
        return (y, state) if self.prenorm else norm(y, state)

    def __call__(
        self, x: Float[Array, "L d"], state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, "L d"], eqx.nn.State]:
        """**Returns:** `(y, state)`, `y` of shape `(L, d)`."""
        k1, k2 = (None, None) if key is None else jr.split(key)
        y, state = self._sub(self.mixer, self.norm, x, state, k1)
        if self.ffn is not None:
            y, state = self._sub(self.ffn, self.ffn_norm, y, state, k2)
        return y, state
