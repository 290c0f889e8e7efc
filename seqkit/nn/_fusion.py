"""`Fusion`: two mixers read the same input and their outputs are combined (SPADE's
state-space augmented layer)."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree

from seqkit._mixer import AbstractMixer, AbstractRecurrentMixer

Combine = Literal["concat", "add", "stack"]


class Fusion(AbstractRecurrentMixer):
    """A global mixer and a local mixer in one layer, their outputs combined.

    SPADE (Zuo, Liu, Jiao, Charles, Manavoglu, Zhao and Gao, "Efficient Long
    Sequence Modeling via State Space Augmented Transformer", 2022) augments the
    bottom layer of a local-attention Transformer with an SSM: both read the
    layer's (normalized) input `x`, and with `g = LN_g(global(x))`,
    `l = LN_l(local(x))` (a LayerNorm each):

    - `"concat"` (the paper's choice): `y = W [g; l] + b`, `W ∈ R^{d × 2d}`;
    - `"add"`: `y = w·g + (1 − w)·l` for a fixed weight `w`;
    - `"stack"`: `y = local(global(x))`, no norms.

    Any two mixers of the same width can be fused; the padding `mask` reaches
    both, and a key splits between them for dropout. With two recurrent causal
    mixers the layer steps too (its state is the pair of states). SSM parameters
    are those the two mixers declare.
    """

    global_mixer: AbstractMixer
    local_mixer: AbstractMixer
    norm_global: eqx.nn.LayerNorm | None
    norm_local: eqx.nn.LayerNorm | None
    aggregate: eqx.nn.Linear | None
    d_model: int = eqx.field(static=True)
    combine: str = eqx.field(static=True)
    weight: float = eqx.field(static=True)

    def __init__(
        self,
        global_mixer: AbstractMixer,
        local_mixer: AbstractMixer,
        *,
        combine: Combine = "concat",
        weight: float = 0.5,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `global_mixer`: e.g. `SSMLayer(S4(...))`.
        - `local_mixer`: e.g. `LocalAttention(...)`; the same `d_model`.
        - `combine`: `"concat"`, `"add"` or `"stack"` (see above).
        - `weight`: the global share `w` of `"add"`, in [0, 1].
        - `key`: PRNG key for the `"concat"` projection.
        """
        for name, m in (("global_mixer", global_mixer), ("local_mixer", local_mixer)):
            if not isinstance(m, AbstractMixer):
                raise TypeError(f"{name}: expected a seqkit.nn.AbstractMixer, got {type(m).__name__}")
        if global_mixer.d_model != local_mixer.d_model:
            raise ValueError(
                f"expected mixers of one width, got global d_model={global_mixer.d_model} and "
                f"local d_model={local_mixer.d_model}"
            )
        if combine not in ("concat", "add", "stack"):
            raise ValueError(f"combine must be 'concat', 'add' or 'stack', got {combine!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"expected a weight in [0, 1], got {weight}")
        d = global_mixer.d_model
        self.global_mixer = global_mixer
        self.local_mixer = local_mixer
        normed = combine != "stack"
        self.norm_global = eqx.nn.LayerNorm(d) if normed else None
        self.norm_local = eqx.nn.LayerNorm(d) if normed else None
        self.aggregate = eqx.nn.Linear(2 * d, d, key=key) if combine == "concat" else None
        self.d_model = d
        self.combine = combine
        self.weight = float(weight)

    def _merge(self, g: Float[Array, "... d"], l: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """The combination of one position's (or every position's) two outputs."""
        assert self.norm_global is not None and self.norm_local is not None
        per_position = (lambda f, x: f(x)) if g.ndim == 1 else (lambda f, x: jax.vmap(f)(x))
        g = per_position(self.norm_global, g)
        l = per_position(self.norm_local, l)
        if self.combine == "add":
            return self.weight * g + (1.0 - self.weight) * l
        assert self.aggregate is not None
        return per_position(self.aggregate, jnp.concatenate([g, l], axis=-1))

    def __call__(
        self,
        x: Float[Array, "L d_model"],
        *,
        mask: Bool[Array, " L"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "L d_model"]:
        kg, kl = (None, None) if key is None else jr.split(key)
        g = self.global_mixer(x, mask=mask, key=kg)
        if self.combine == "stack":
            return self.local_mixer(g, mask=mask, key=kl)
        return self._merge(g, self.local_mixer(x, mask=mask, key=kl))

    def _recurrent(self) -> tuple[AbstractRecurrentMixer, AbstractRecurrentMixer]:
        g, l = self.global_mixer, self.local_mixer
        for name, m in (("global", g), ("local", l)):
            if not isinstance(m, AbstractRecurrentMixer):
                raise ValueError(f"the {name} mixer, {type(m).__name__}, has no recurrent mode")
        return g, l  # type: ignore[return-value]

    @property
    def causal(self) -> bool:
        """Whether the layer is causal: both its mixers are."""
        return all(getattr(m, "causal", False) for m in (self.global_mixer, self.local_mixer))

    def init_state(self, L: int | None = None) -> PyTree:
        g, l = self._recurrent()
        return (g.init_state(L), l.init_state(L))

    def step(
        self, x_t: Float[Array, " d_model"], state: PyTree, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], PyTree]:
        g, l = self._recurrent()
        kg, kl = (None, None) if key is None else jr.split(key)
        g_t, sg = g.step(x_t, state[0], key=kg)
        if self.combine == "stack":
            y_t, sl = l.step(g_t, state[1], key=kl)
            return y_t, (sg, sl)
        l_t, sl = l.step(x_t, state[1], key=kl)
        return self._merge(g_t, l_t), (sg, sl)
