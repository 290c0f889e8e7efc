"""A hierarchical encoder: mixers within segments, pooling, mixers across the
pooled segments, and so on up to one vector per document."""

import math
from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._checks import check_mask
from seqkit._mixer import AbstractMixer

from ._sequence_model import SequenceModel

MixerFactory = Callable[[int, int, PRNGKeyArray], AbstractMixer]


class HierarchicalModel(eqx.Module):
    """A document classifier built as a hierarchy of sequence encoders.

    Long documents exceed what one encoder reads at once; hierarchical
    encoders (e.g. words → sentences → documents) read them level by level.
    With `segments = [s_1, ..., s_{K-1}]` the model has `K` levels: level 1
    splits the `L` inputs into `L / s_1` segments of `s_1` positions, runs a
    stack of residual blocks within each segment and mean-pools each segment
    to one vector; level 2 groups those vectors by `s_2` and does the same;
    level `K` runs over all remaining vectors and pools them into the
    document's vector, which a linear head classifies:

    `h⁽¹⁾_i = pool(Blocks₁(E x_{segment i}))`, `h⁽ᵏ⁾_i = pool(Blocks_k(W_k h⁽ᵏ⁻¹⁾_{group i}))`,
    `logits = W_o pool(Blocks_K(W_K h⁽ᴷ⁻¹⁾))`.

    Each level is a [`seqkit.nn.SequenceModel`][] without a head (its encoder
    is the token embedding at level 1 and a `Linear(d, d)` above), so any
    mixers serve at any level. A padding `mask` reaches every level: a segment
    with no real position is padding one level up. Norms are LayerNorm (segments
    are vmapped inside the batch, where BatchNorm statistics would not be the
    batch's). `L` must be a multiple of `s_1 · ... · s_{K-1}`; pad it (with the
    mask) otherwise.
    """

    levels: tuple[SequenceModel, ...]
    head: eqx.nn.Linear
    segments: tuple[int, ...] = eqx.field(static=True)
    d_model: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        d_model: int,
        n_classes: int,
        segments: Sequence[int],
        mixer: MixerFactory,
        n_layers: int,
        vocab_size: int | None = None,
        d_in: int | None = None,
        ffn_mult: int = 0,
        ffn_activation: Literal["gelu", "silu", "relu"] = "gelu",
        dropout: float = 0.0,
        pool: Literal["mean", "last"] = "mean",
        prenorm: bool = True,
        positions: Literal["none", "sinusoidal", "learned"] = "none",
        max_length: int | None = None,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`, `n_classes`: width and logits.
        - `segments`: `[s_1, ..., s_{K-1}]`, the group size of each level but the
          last (at least one).
        - `mixer`: `mixer(level, layer, key)`, the mixer of block `layer` of
          level `level` (0-based).
        - `n_layers`: blocks per level.
        - `vocab_size` (tokens) or `d_in` (real inputs): the level-1 encoder.
        - `ffn_mult`, `ffn_activation`, `dropout`: the blocks' options.
        - `pool`: how a segment becomes one vector (`"mean"` or `"last"`).
        - `prenorm`: pre-norm (True) or post-norm (False) blocks.
        - `positions`: `"none"`, `"sinusoidal"` or `"learned"`: position embeddings
          at every level, counted within each segment or group (attention alone
          cannot tell order: without them the model sees each level as a set).
        - `max_length`: the longest document; `positions="learned"` needs it to
          size the last level's table (`⌈max_length / (s_1 · ... · s_{K-1})⌉`
          positions, the document padded to a multiple of the groups).
        - `key`: PRNG key.
        """
        segments = tuple(int(s) for s in segments)
        if not segments or any(s < 1 for s in segments):
            raise ValueError(f"expected segments of at least one positive size, got {list(segments)}")
        if positions == "learned" and max_length is None:
            raise ValueError("positions='learned' needs max_length (the longest document) to size its tables")
        if pool not in ("mean", "last"):
            raise ValueError(
                f"expected pool 'mean' or 'last' (how a segment becomes one vector), got {pool!r}"
            )
        # a document padded to a multiple of the groups, as the call needs: ceil
        top = None if max_length is None else -(-max_length // math.prod(segments))
        lengths = (*segments, top)
        keys = jr.split(key, len(segments) + 2)
        levels = []
        for level in range(len(segments) + 1):
            enc = (
                {"vocab_size": vocab_size, "d_in": d_in}
                if level == 0
                else {"d_in": d_model, "vocab_size": None}
            )
            levels.append(
                SequenceModel(
                    d_model=d_model,
                    n_classes=None,
                    n_layers=n_layers,
                    mixer=lambda i, k, level=level: mixer(level, i, k),
                    norm="layer",
                    ffn_mult=ffn_mult,
                    ffn_activation=ffn_activation,
                    dropout=dropout,
                    pool=pool,
                    prenorm=prenorm,
                    positions=positions,
                    max_length=lengths[level],
                    key=keys[level],
                    **enc,
                )
            )
        self.levels = tuple(levels)
        self.head = eqx.nn.Linear(d_model, n_classes, key=keys[-1])
        self.segments = segments
        self.d_model = d_model

    def __call__(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " n_classes"], eqx.nn.State]:
        """**Arguments:** `x`, one document, `(L,)` tokens or `(L, d_in)`; `state`;
        `mask`, optional bool `(L,)`; `key` for dropout.

        **Returns:** `(logits, state)`.
        """
        L = x.shape[0]
        group = 1
        for s in self.segments:
            group *= s
        if L % group:
            raise ValueError(
                f"expected a length that is a multiple of {group} (segments {list(self.segments)}), got {L}; "
                "pad the input and mark the padding in the mask"
            )
        mask = check_mask(mask, L)
        real = jnp.ones((L,), bool) if mask is None else mask
        h: Array = x
        keys = [None] * len(self.levels) if key is None else list(jr.split(key, len(self.levels)))
        for level, (model, k) in enumerate(zip(self.levels, keys, strict=True)):
            if level < len(self.segments):
                s = self.segments[level]
                groups = h.reshape(h.shape[0] // s, s, *h.shape[1:])
                gmask = real.reshape(-1, s)
                gkeys = None if k is None else jr.split(k, groups.shape[0])

                def one(g, m, kk, model=model, state=state):
                    return model.features(g, state, mask=m, key=kk)[0]

                h = jax.vmap(one, in_axes=(0, 0, None if gkeys is None else 0))(groups, gmask, gkeys)
                real = jnp.any(gmask, axis=1)
            else:
                h, state = model.features(h, state, mask=real, key=k)
        return self.head(h), state
