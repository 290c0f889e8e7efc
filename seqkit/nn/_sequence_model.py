"""SequenceModel: encoder → (position embeddings) → residual blocks with any mixer per
layer → pooling → head."""

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from seqkit._checks import check_mask
from seqkit._mixer import AbstractMixer

from ._blocks import ResidualBlock
from ._norm import SequenceNorm
from ._pool import pool

Positions = Literal["none", "sinusoidal", "learned"]


def sinusoidal_positions(
    positions: Int[Array, " n"], d: int, *, dtype: DTypeLike = jnp.float32
) -> Float[Array, "n d"]:
    """The fixed sinusoidal position embeddings of Vaswani et al. (2017), at the
    given integer positions `p`:

    `e[p, 2i] = sin(p · 10000^(−2i/d))`, `e[p, 2i+1] = cos(p · 10000^(−2i/d))`

    for `2i < d` (an odd `d` ends with a sine). The Long Range Arena code's table
    (`lra_benchmarks/models/layers/common_layers.py`, `sinusoidal_init`) holds these
    values for `p = 0..max_len−1`.

    **Arguments:** `positions`, `(n,)` integers; `d`, the embedding width; `dtype`,
    the float type of the result (the arithmetic runs in it).

    **Returns:** `(n, d)`.
    """
    if d < 1:
        raise ValueError(f"expected an embedding width d >= 1, got {d}")
    p = jnp.asarray(positions).astype(dtype)[:, None]
    inv_freq = jnp.exp(jnp.arange(0, d, 2).astype(dtype) * (-math.log(10000.0) / d))
    angles = p * inv_freq[None, :]  # (n, ceil(d/2))
    out = jnp.zeros((p.shape[0], d), dtype)
    out = out.at[:, 0::2].set(jnp.sin(angles))
    return out.at[:, 1::2].set(jnp.cos(angles[:, : d // 2]))


class SequenceModelState(NamedTuple):
    """Recurrent state of a [`seqkit.nn.SequenceModel`][]: one state per block, the
    running sum and count of the top features (for `pool="mean"`), and the index of
    the next position (for position embeddings)."""

    blocks: tuple[PyTree, ...]
    total: Array
    count: Array
    position: Int[Array, ""]


class SequenceModel(eqx.Module):
    """A sequence classifier built around any mixers.

    `x → encoder → (+ position embeddings) → [ResidualBlock(mixer_i)]_{i<n_layers}
    → (final norm if pre-norm) → pool → Linear → logits`. The encoder is a
    `Linear(d_in → d_model)` for real inputs `(L, d_in)` or an
    `Embedding(vocab_size, d_model)` for integer tokens `(L,)`.

    `positions` adds a vector per position to the encoded inputs (attention alone
    is permutation-invariant; the Transformer and the Long Range Arena models add
    them): `"sinusoidal"`, the fixed table of
    [`seqkit.nn.sinusoidal_positions`][], or `"learned"`, a trained
    `(max_length, d_model)` table initialized `N(0, 0.02²)` (LRA's
    `AddPositionEmbs` with `learn_pos_emb`). With `pool="cls"` the class token
    takes position 0 and the inputs take positions `1..L`, as in the LRA code.
    With a padding `mask`, the real tokens are numbered in order and padded ones
    are skipped, so left-padded input gets the unpadded input's positions.
    The default `"none"` adds nothing.

    `mixer` is either a list of mixers (one per layer) or a factory
    `mixer(i, key) -> mixer`, so mixing layer kinds is one argument. A mixer is any
    [`seqkit.nn.AbstractMixer`][] of width `d_model`, e.g. `SSMLayer(S4(...))`,
    `LocalAttention(...)`, `Mega(...)`. Bidirectional cores give a bidirectional
    model; causal ones with `pool="last"` or `"mean"` give a causal one, which also
    runs step by step (`init_state`, `step`) when every mixer is recurrent.

    `pool="none"` keeps every position: the head maps each one, and the model
    returns `(L, n_classes)` logits. With causal mixers and `vocab_size =
    n_classes` that is a causal language model (logits at position `t` predict
    token `t+1`); [`seqkit.nn.generate`][] samples from it through the step mode.

    A padding `mask` reaches every block: padded positions never change the logits
    (their inputs are zeroed, attention ignores them, BatchNorm statistics and
    pooling skip them).

    Models carry state (BatchNorm running statistics), so build them with
    `eqx.nn.make_with_state` and call them as `model(x, state, key=key) ->
    (logits, state)`; batch with `jax.vmap(..., axis_name="batch")`:

    ```python
    def mixer(i, key):
        k1, k2 = jax.random.split(key)
        return SSMLayer(S4(64, l_max=1024, bidirectional=True, key=k1), key=k2)

    model, state = eqx.nn.make_with_state(SequenceModel)(
        d_in=1, d_model=64, n_classes=2, n_layers=4, mixer=mixer, norm="batch", key=key)
    batched = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    logits, state = batched(x, state)                    # x: (B, L, 1)
    logits, _ = jax.vmap(eqx.nn.inference_mode(model), axis_name="batch",
                         in_axes=(0, None), out_axes=(0, None))(x, state)
    ```

    The layout follows Gu, Goel and Ré, "Efficiently Modeling Long Sequences with
    Structured State Spaces", ICLR 2022.
    """

    encoder: eqx.nn.Linear | eqx.nn.Embedding
    cls_token: Float[Array, " d_model"] | None
    position_table: Float[Array, "max_length d_model"] | None
    blocks: tuple[ResidualBlock, ...]
    final_norm: SequenceNorm | None
    head: eqx.nn.Linear | None
    d_model: int = eqx.field(static=True)
    n_classes: int | None = eqx.field(static=True)
    pooling: str = eqx.field(static=True)
    check_finite: bool = eqx.field(static=True)
    positions: str = eqx.field(static=True)
    max_length: int | None = eqx.field(static=True)

    def __init__(
        self,
        *,
        d_model: int,
        n_classes: int | None,
        mixer: Sequence[AbstractMixer] | Callable[[int, PRNGKeyArray], AbstractMixer],
        n_layers: int | None = None,
        d_in: int | None = None,
        vocab_size: int | None = None,
        norm: Literal["layer", "batch"] = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        ffn_mult: int = 0,
        ffn_activation: Literal["gelu", "silu", "relu"] = "gelu",
        pool: Literal["mean", "last", "cls", "none"] = "mean",
        positions: Positions = "none",
        max_length: int | None = None,
        axis_name: Hashable = "batch",
        check_finite: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: width of the residual stream.
        - `n_classes`: number of output logits; `None` builds no head, and the model
          returns its pooled features `(d_model,)` (the shared encoder of a
          [`seqkit.nn.DualEncoder`][]).
        - `mixer`: a list of `n_layers` mixers, or a factory `mixer(i, key)`.
        - `n_layers`: number of blocks (defaults to the length of a mixer list).
        - `d_in`: channels of real-valued inputs (Linear encoder), or
        - `vocab_size`: vocabulary of integer-token inputs (Embedding encoder).
        - `norm`: `"layer"` or `"batch"`.
        - `prenorm`: pre-norm (True) or post-norm (False) blocks.
        - `dropout`: residual dropout rate in every block.
        - `ffn_mult`: FFN width multiple in every block; 0 means no FFN.
        - `ffn_activation`: the FFN's activation (`"gelu"`, `"silu"` or `"relu"`).
        - `pool`: `"mean"`, `"last"`, `"cls"` (a learned token prepended at position
          0; at least one mixer must be bidirectional), or `"none"` (no pooling:
          per-position outputs, e.g. a language model).
        - `positions`: `"none"` (default), `"sinusoidal"` or `"learned"` position
          embeddings added to the encoded inputs.
        - `max_length`: the most positions a call may have (the class token
          included); needed by `positions="learned"` (the table's length), optional
          for `"sinusoidal"` (then checked), unused otherwise.
        - `axis_name`: the vmapped batch axis BatchNorm reduces over.
        - `check_finite`: raise a runtime error (`equinox.error_if`, which works under
          `jit` and `vmap`) when the input has a NaN or infinity at a real position.
          Off by default: the check costs a reduction and a host callback per call.
          Worth turning on when a NaN loss appears: in convolution mode an FFT mixes
          every position, so one NaN in a channel turns that channel's whole output
          into NaN, earlier positions included, and the source is hard to see later.
        - `key`: PRNG key.
        """
        if (d_in is None) == (vocab_size is None):
            raise ValueError("give exactly one of d_in (real inputs) or vocab_size (tokens)")
        if pool not in ("mean", "last", "cls", "none"):
            raise ValueError(f"pool must be 'mean', 'last', 'cls' or 'none', got {pool!r}")
        if positions not in ("none", "sinusoidal", "learned"):
            raise ValueError(f"positions must be 'none', 'sinusoidal' or 'learned', got {positions!r}")
        if positions == "learned" and max_length is None:
            raise ValueError("positions='learned' needs max_length (the length of its table)")
        if max_length is not None and max_length < 1:
            raise ValueError(f"expected max_length >= 1, got {max_length}")
        if isinstance(mixer, eqx.Module):
            raise ValueError(
                "mixer must be a list of mixers (one per layer) or a factory mixer(i, key); "
                "got a single module, which would share its weights across layers"
            )
        if isinstance(mixer, Sequence):
            mixers = list(mixer)
            if n_layers is None:
                n_layers = len(mixers)
            if len(mixers) != n_layers:
                raise ValueError(f"expected {n_layers} mixers, got {len(mixers)}")
        if n_layers is None or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers}")
        ekey, ckey, hkey, mkey, bkey = jr.split(key, 5)
        if not isinstance(mixer, Sequence):
            mixers = [mixer(i, k) for i, k in enumerate(jr.split(mkey, n_layers))]
        for i, m in enumerate(mixers):
            if not isinstance(m, AbstractMixer):
                raise TypeError(
                    f"layer {i}: expected a seqkit.nn.AbstractMixer, got {type(m).__name__} "
                    "(wrap custom layers by subclassing AbstractMixer)"
                )
        if norm == "batch" and pool == "none" and any(getattr(m, "causal", False) for m in mixers):
            raise ValueError(
                "norm='batch' in a causal model with pool='none' (a language model): BatchNorm's "
                "training statistics mix all positions, so every position would see later tokens "
                "while training; use norm='layer'"
            )
        if pool == "cls" and all(getattr(m, "causal", False) for m in mixers):
            raise ValueError(
                "pool='cls' with only causal mixers: the class token comes first, and a causal "
                "mixer shows position 0 only itself, so the logits would not depend on the input; "
                "use pool='last' or 'mean', or a bidirectional mixer"
            )
        if d_in is not None:
            self.encoder = eqx.nn.Linear(d_in, d_model, key=ekey)
        else:
            self.encoder = eqx.nn.Embedding(vocab_size, d_model, key=ekey)
        self.cls_token = 0.02 * jr.normal(ckey, (d_model,)) if pool == "cls" else None
        if positions == "learned":
            # A key of its own (not a sixth split), so models without a table keep
            # every other parameter's initialization.
            assert max_length is not None
            self.position_table = 0.02 * jr.normal(jr.fold_in(ckey, 1), (max_length, d_model))
        else:
            self.position_table = None
        self.blocks = tuple(
            ResidualBlock(
                m,
                d_model,
                norm=norm,
                prenorm=prenorm,
                dropout=dropout,
                ffn_mult=ffn_mult,
                ffn_activation=ffn_activation,
                axis_name=axis_name,
                key=k,
            )
            for m, k in zip(mixers, jr.split(bkey, n_layers), strict=True)
        )
        self.final_norm = SequenceNorm(d_model, norm, axis_name=axis_name) if prenorm else None
        self.head = None if n_classes is None else eqx.nn.Linear(d_model, n_classes, key=hkey)
        self.d_model = d_model
        self.n_classes = n_classes
        self.pooling = pool
        self.check_finite = check_finite
        self.positions = positions
        self.max_length = None if positions == "none" else max_length

    @property
    def length_dependent(self) -> bool:
        """Whether a mixer's outputs depend on the sequence length (see
        [`seqkit.nn.AbstractMixer.length_dependent`][]): then `step` after
        `init_state(L)` gives the rows of the parallel call on `L` positions, not
        of the call on each prefix."""
        return any(b.mixer.length_dependent for b in self.blocks)

    def position_embedding(self, positions: Int[Array, " n"]) -> Float[Array, "n d_model"]:
        """The vectors the model adds at the given positions, `(n, d_model)` (zeros
        with `positions="none"`). A learned table gives NaN beyond `max_length`."""
        positions = jnp.asarray(positions)
        dtype = self.encoder.weight.dtype
        if self.position_table is not None:
            return jnp.take(self.position_table, positions, axis=0, mode="fill", fill_value=jnp.nan)
        if self.positions == "sinusoidal":
            return sinusoidal_positions(positions, self.d_model, dtype=dtype)
        return jnp.zeros((positions.shape[0], self.d_model), dtype)

    def _add_positions(self, h: Float[Array, "L d_model"], mask: Array | None) -> Float[Array, "L d_model"]:
        if self.positions == "none":
            return h
        L = h.shape[0]
        if self.max_length is not None and L > self.max_length:
            cls = " (the class token included)" if self.cls_token is not None else ""
            raise ValueError(
                f"expected at most max_length={self.max_length} positions{cls} for "
                f"positions={self.positions!r}, got {L}"
            )
        if mask is None:
            positions = jnp.arange(L)
        else:  # real positions count real tokens only, so padding anywhere changes nothing
            positions = jnp.maximum(jnp.cumsum(mask, dtype=jnp.int32) - 1, 0)
        h = h + self.position_embedding(positions).astype(h.dtype)
        if mask is not None:  # padded positions stay zero, as without positions
            h = jnp.where(mask[:, None], h, jnp.zeros_like(h))
        return h

    def _encode(self, x: Array) -> Float[Array, "L d_model"]:
        if isinstance(self.encoder, eqx.nn.Embedding):
            if x.ndim != 1 or not jnp.issubdtype(x.dtype, jnp.integer):
                raise ValueError(
                    f"expected integer tokens of shape (L,) for one example (use jax.vmap "
                    f"for a batch), got {x.dtype} {x.shape}"
                )
            return jax.vmap(self.encoder)(x)
        d_in = self.encoder.in_features
        if x.ndim != 2 or x.shape[1] != d_in or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"expected real input of shape (L, {d_in}) for one example (use jax.vmap for "
                f"a batch), got {x.dtype} {x.shape}"
            )
        return jax.vmap(self.encoder)(x.astype(self.encoder.weight.dtype))

    def features(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
        pooled: bool = True,
    ) -> tuple[Float[Array, " d_model"] | Float[Array, "L d_model"], eqx.nn.State]:
        """The pooled features, everything but the head: encoder → blocks → (final
        norm) → pool. Arguments as for `__call__`; `pooled=False` skips the pooling
        and returns every position's features (the class token's first with
        `pool="cls"`), as a per-position objective on a pooled classifier's
        backbone needs (masked-patch pretraining).

        **Returns:** `(features, state)`, features of shape `(d_model,)`, or
        `(L, d_model)` with `pool="none"` or `pooled=False` (`(L + 1, d_model)`
        with a class token).
        """
        h = self._encode(x)
        mask = check_mask(mask, h.shape[0])
        if mask is not None:
            h = jnp.where(mask[:, None], h, jnp.zeros_like(h))
        if self.check_finite:
            h = eqx.error_if(
                h,
                ~jnp.all(jnp.isfinite(h)),
                "SequenceModel: the input has a NaN or infinity at a real position "
                "(check_finite=True); in convolution mode it would spread to every position",
            )
        if self.cls_token is not None:
            h = jnp.concatenate([self.cls_token[None].astype(h.dtype), h], axis=0)
            if mask is not None:
                mask = jnp.concatenate([jnp.ones((1,), bool), mask])
        h = self._add_positions(h, mask)
        keys = [None] * len(self.blocks) if key is None else list(jr.split(key, len(self.blocks)))
        for block, k in zip(self.blocks, keys, strict=True):
            h, state = block(h, state, mask=mask, key=k)
        if self.final_norm is not None:
            h, state = self.final_norm(h, state, mask=mask)
        if self.pooling == "none" or not pooled:
            return h, state
        return pool(h, self.pooling, mask), state

    def __call__(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " n_classes"] | Float[Array, "L n_classes"], eqx.nn.State]:
        """**Arguments:**

        - `x`: one example, `(L, d_in)` real or `(L,)` integer tokens.
        - `state`: the model state (`eqx.nn.State`; BatchNorm statistics).
        - `mask`: optional `(L,)` bool, True at real positions; pooling ignores the rest.
        - `key`: PRNG key for dropout (unused in inference mode).

        **Returns:** `(logits, state)`, logits of shape `(n_classes,)` (the pooled
        features `(d_model,)` for a model built with `n_classes=None`); with
        `pool="none"`, one row per position, `(L, n_classes)` (or `(L, d_model)`).
        """
        feat, state = self.features(x, state, mask=mask, key=key)
        if self.head is None:
            return feat, state
        return (jax.vmap(self.head)(feat) if self.pooling == "none" else self.head(feat)), state

    def init_state(self, L: int | None = None) -> SequenceModelState:
        """The recurrent state before the first position (every mixer recurrent and
        causal; `pool` `"last"`, `"mean"` or `"none"`).

        **Arguments:** `L`, the longest sequence to be stepped through (needed by
        mixers with a key/value cache or a length-dependent system; with position
        embeddings, at most `max_length`).
        """
        if self.pooling == "cls":
            raise ValueError("a model with pool='cls' has no recurrent mode (the class token comes first)")
        if L is not None and self.max_length is not None and L > self.max_length:
            raise ValueError(
                f"expected L <= max_length={self.max_length} for positions={self.positions!r}, got L={L}"
            )
        dtype = self.encoder.weight.dtype
        return SequenceModelState(
            blocks=tuple(b.init_state(L) for b in self.blocks),
            total=jnp.zeros((self.d_model,), dtype),
            count=jnp.zeros((), dtype),
            position=jnp.zeros((), jnp.int32),
        )

    def step(
        self,
        x_t: Array,
        state: SequenceModelState,
        model_state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " n_classes"], SequenceModelState]:
        """One position of recurrent mode: the logits of the prefix seen so far.

        Equal to calling the model (in inference mode) on that prefix (for a
        `length_dependent` model, the parallel call on the `L` positions given to
        `init_state`, row by row): with
        `pool="last"` the head reads the newest position, with `pool="mean"` the
        running mean; with `pool="none"` they are the newest position's row of the
        parallel call's `(L, n_classes)` output. BatchNorm uses its running statistics; position embeddings
        are those of `state.position`, the number of steps taken.

        **Arguments:** `x_t`, one input position, `(d_in,)` real or a scalar integer
        token; `state` from `init_state` or the previous `step`; `model_state`, the
        `eqx.nn.State`; `key` for dropout.

        **Returns:** `(logits, state)`.
        """
        x_t = jnp.asarray(x_t)
        h = self._encode(x_t[None])[0]
        if self.positions != "none":
            h = h + self.position_embedding(state.position[None])[0].astype(h.dtype)
        keys = [None] * len(self.blocks) if key is None else list(jr.split(key, len(self.blocks)))
        new = []
        for block, s, k in zip(self.blocks, state.blocks, keys, strict=True):
            h, s = block.step(h, s, model_state, key=k)
            new.append(s)
        if self.final_norm is not None:
            h = self.final_norm.step(h, model_state)
        total = state.total + h.astype(state.total.dtype)
        count = state.count + 1
        feat = total / count if self.pooling == "mean" else h
        out = feat if self.head is None else self.head(feat)
        return out, SequenceModelState(tuple(new), total, count, state.position + 1)
