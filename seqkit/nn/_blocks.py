"""The residual block of a sequence model: norm, mixer, dropout, optional FFN."""

from collections.abc import Hashable
from typing import Literal

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree

from seqkit._checks import check_mask, dropout_rate
from seqkit._mixer import AbstractMixer, AbstractRecurrentMixer

from ._norm import SequenceNorm

_FFN_ACTIVATIONS = {"gelu": jax.nn.gelu, "silu": jax.nn.silu, "relu": jax.nn.relu}


class FeedForward(eqx.Module):
    """Position-wise `Linear(d → m·d) → act → dropout → Linear(m·d → d)`, `act` GELU
    (Transformer, S4) or SiLU (Mega's normalized FFN).

    One example `(L, d)` at a time; batch with `jax.vmap`.
    """

    up: eqx.nn.Linear
    down: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        mult: int = 4,
        dropout: float = 0.0,
        *,
        activation: Literal["gelu", "silu", "relu"] = "gelu",
        key: PRNGKeyArray,
    ):
        if activation not in _FFN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_FFN_ACTIVATIONS)}, got {activation!r}")
        k1, k2 = jr.split(key)
        self.up = eqx.nn.Linear(d, mult * d, key=k1)
        self.down = eqx.nn.Linear(mult * d, d, key=k2)
        self.dropout = eqx.nn.Dropout(dropout_rate(dropout))
        self.activation = activation

    def __call__(self, x: Float[Array, "L d"], *, key: PRNGKeyArray | None = None) -> Float[Array, "L d"]:
        h = _FFN_ACTIVATIONS[self.activation](jax.vmap(self.up)(x))
        return jax.vmap(self.down)(self.dropout(h, key=key))


class ResidualBlock(eqx.Module):
    """One residual block around any mixer, with an optional FFN sub-block.

    Pre-norm: `x ← x + drop(mixer(norm(x)))`, then `x ← x + drop(ffn(norm₂(x)))`.
    Post-norm: `x ← norm(x + drop(mixer(x)))`, then `x ← norm₂(x + drop(ffn(x)))`.

    The mixer is any [`seqkit.nn.AbstractMixer`][] (an SSM layer, an attention
    variant, GSS, Mega, ...). One example at a time; `__call__(x, state, *, mask,
    key)` returns `(y, state)` so BatchNorm's running statistics travel in
    `eqx.nn.State`. The padding `mask` reaches the mixer and the norms, so padded
    positions never change a real output. With a recurrent mixer the block also
    steps: `init_state(L)` and `step(x_t, mixer_state, model_state)`.

    Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (post-norm); Xiong et
    al., "On Layer Normalization in the Transformer Architecture", ICML 2020 (pre-norm).
    """

    mixer: AbstractMixer
    norm: SequenceNorm
    ffn: FeedForward | None
    ffn_norm: SequenceNorm | None
    dropout: eqx.nn.Dropout
    prenorm: bool = eqx.field(static=True)

    def __init__(
        self,
        mixer: AbstractMixer,
        d: int,
        *,
        norm: Literal["layer", "batch"] = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        ffn_mult: int = 0,
        ffn_activation: Literal["gelu", "silu", "relu"] = "gelu",
        axis_name: Hashable = "batch",
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `mixer`: the sequence mixer, an `AbstractMixer` of width `d`.
        - `d`: width.
        - `norm`: `"layer"` or `"batch"`.
        - `prenorm`: normalize before (True) or after (False) the residual sum.
        - `dropout`: rate on the mixer (and FFN) output before the residual sum.
        - `ffn_mult`: FFN hidden width as a multiple of `d`; 0 means no FFN.
        - `ffn_activation`: the FFN's activation, `"gelu"`, `"silu"` (Mega) or `"relu"`.
        - `axis_name`: BatchNorm's batch axis name.
        - `key`: PRNG key for the FFN.
        """
        if not isinstance(mixer, AbstractMixer):
            raise TypeError(
                f"expected a seqkit.nn.AbstractMixer (an SSM layer, attention, GSS, Mega, ...), "
                f"got {type(mixer).__name__}"
            )
        if mixer.d_model != d:
            raise ValueError(f"expected a mixer of width d_model={d}, got {mixer.d_model}")
        self.mixer = mixer
        self.norm = SequenceNorm(d, norm, axis_name=axis_name)
        if ffn_mult > 0:
            self.ffn = FeedForward(d, ffn_mult, dropout, activation=ffn_activation, key=key)
            self.ffn_norm = SequenceNorm(d, norm, axis_name=axis_name)
        else:
            self.ffn = None
            self.ffn_norm = None
        self.dropout = eqx.nn.Dropout(dropout_rate(dropout))
        self.prenorm = prenorm

    def _sub(self, f, norm, x, state, mask, key):
        k1, k2 = (None, None) if key is None else jr.split(key)
        h, state = norm(x, state, mask=mask) if self.prenorm else (x, state)
        m = f(h, mask, k1)
        if m.shape != x.shape:
            raise ValueError(f"a mixer must map (L, d) to (L, d); got {x.shape} -> {m.shape}")
        y = x + self.dropout(m, key=k2)
        return (y, state) if self.prenorm else norm(y, state, mask=mask)

    def __call__(
        self,
        x: Float[Array, "L d"],
        state: eqx.nn.State,
        *,
        mask: Bool[Array, " L"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "L d"], eqx.nn.State]:
        """**Arguments:** `x`, `(L, d)`; `state`; `mask`, optional bool `(L,)`, True at
        real positions; `key` for dropout.

        **Returns:** `(y, state)`, `y` of shape `(L, d)`.
        """
        mask = check_mask(mask, x.shape[0])
        k1, k2 = (None, None) if key is None else jr.split(key)
        y, state = self._sub(lambda h, m, k: self.mixer(h, mask=m, key=k), self.norm, x, state, mask, k1)
        if self.ffn is not None:
            y, state = self._sub(lambda h, m, k: self.ffn(h, key=k), self.ffn_norm, y, state, mask, k2)
        return y, state

    def init_state(self, L: int | None = None) -> PyTree:
        """The mixer's recurrent state (recurrent mixers only)."""
        if not isinstance(self.mixer, AbstractRecurrentMixer):
            raise ValueError(f"{type(self.mixer).__name__} has no recurrent mode")
        return self.mixer.init_state(L)

    def _sub_step(self, f, norm, x_t, model_state, key):
        k1, k2 = (None, None) if key is None else jr.split(key)
        h = norm.step(x_t, model_state) if self.prenorm else x_t
        m, extra = f(h, k1)
        y = x_t + self.dropout(m, key=k2)
        return (y if self.prenorm else norm.step(y, model_state)), extra

    def step(
        self,
        x_t: Float[Array, " d"],
        state: PyTree,
        model_state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " d"], PyTree]:
        """One position of recurrent mode (BatchNorm uses its running statistics).

        **Arguments:** `x_t`, `(d,)`; `state`, the mixer's recurrent state;
        `model_state`, the `eqx.nn.State` holding BatchNorm statistics; `key`.

        **Returns:** `(y_t, state)`.
        """
        if not isinstance(self.mixer, AbstractRecurrentMixer):
            raise ValueError(f"{type(self.mixer).__name__} has no recurrent mode")
        k1, k2 = (None, None) if key is None else jr.split(key)
        mixer = self.mixer
        y, state = self._sub_step(lambda h, k: mixer.step(h, state, key=k), self.norm, x_t, model_state, k1)
        if self.ffn is not None:
            ffn = self.ffn
            y, _ = self._sub_step(
                lambda h, k: (ffn(h[None], key=k)[0], None), self.ffn_norm, y, model_state, k2
            )
        return y, state
