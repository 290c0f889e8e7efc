"""SequenceModel: encoder → residual blocks with any mixer per layer → pooling → head."""

from collections.abc import Callable, Hashable, Sequence
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from seqkit._checks import check_mask
from seqkit._mixer import AbstractMixer

from ._blocks import ResidualBlock
from ._norm import SequenceNorm
from ._pool import pool


class SequenceModelState(NamedTuple):
    """Recurrent state of a [`seqkit.nn.SequenceModel`][]: one state per block, and
    the running sum and count of the top features (for `pool="mean"`)."""

    blocks: tuple[PyTree, ...]
    total: Array
    count: Array


class SequenceModel(eqx.Module):
    """A sequence classifier built around any mixers.

    `x → encoder → [ResidualBlock(mixer_i)]_{i<n_layers} → (final norm if pre-norm)
    → pool → Linear → logits`. The encoder is a `Linear(d_in → d_model)` for real
    inputs `(L, d_in)` or an `Embedding(vocab_size, d_model)` for integer tokens `(L,)`.

    `mixer` is either a list of mixers (one per layer) or a factory
    `mixer(i, key) -> mixer`, so mixing layer kinds is one argument. A mixer is any
    [`seqkit.nn.AbstractMixer`][] of width `d_model`, e.g. `SSMLayer(S4(...))`,
    `LocalAttention(...)`, `Mega(...)`. Bidirectional cores give a bidirectional
    model; causal ones with `pool="last"` or `"mean"` give a causal one, which also
    runs step by step (`init_state`, `step`) when every mixer is recurrent.

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
    blocks: tuple[ResidualBlock, ...]
    final_norm: SequenceNorm | None
    head: eqx.nn.Linear | None
    d_model: int = eqx.field(static=True)
    n_classes: int | None = eqx.field(static=True)
    pooling: str = eqx.field(static=True)
    check_finite: bool = eqx.field(static=True)

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
        pool: Literal["mean", "last", "cls"] = "mean",
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
        - `pool`: `"mean"`, `"last"` or `"cls"` (a learned token prepended at position 0).
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
        if pool not in ("mean", "last", "cls"):
            raise ValueError(f"pool must be 'mean', 'last' or 'cls', got {pool!r}")
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
        if d_in is not None:
            self.encoder = eqx.nn.Linear(d_in, d_model, key=ekey)
        else:
            self.encoder = eqx.nn.Embedding(vocab_size, d_model, key=ekey)
        self.cls_token = 0.02 * jr.normal(ckey, (d_model,)) if pool == "cls" else None
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
    ) -> tuple[Float[Array, " d_model"], eqx.nn.State]:
        """The pooled features, everything but the head: encoder → blocks → (final
        norm) → pool. Arguments as for `__call__`.

        **Returns:** `(features, state)`, features of shape `(d_model,)`.
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
        keys = [None] * len(self.blocks) if key is None else list(jr.split(key, len(self.blocks)))
        for block, k in zip(self.blocks, keys, strict=True):
            h, state = block(h, state, mask=mask, key=k)
        if self.final_norm is not None:
            h, state = self.final_norm(h, state, mask=mask)
        return pool(h, self.pooling, mask), state

    def __call__(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " n_classes"], eqx.nn.State]:
        """**Arguments:**

        - `x`: one example, `(L, d_in)` real or `(L,)` integer tokens.
        - `state`: the model state (`eqx.nn.State`; BatchNorm statistics).
        - `mask`: optional `(L,)` bool, True at real positions; pooling ignores the rest.
        - `key`: PRNG key for dropout (unused in inference mode).

        **Returns:** `(logits, state)`, logits of shape `(n_classes,)` (the pooled
        features `(d_model,)` for a model built with `n_classes=None`).
        """
        feat, state = self.features(x, state, mask=mask, key=key)
        return (feat if self.head is None else self.head(feat)), state

    def init_state(self, L: int | None = None) -> SequenceModelState:
        """The recurrent state before the first position (every mixer recurrent and
        causal; `pool` `"last"` or `"mean"`).

        **Arguments:** `L`, the longest sequence to be stepped through (needed by
        mixers with a key/value cache or a length-dependent system).
        """
        if self.pooling == "cls":
            raise ValueError("a model with pool='cls' has no recurrent mode (the class token comes first)")
        dtype = self.encoder.weight.dtype
        return SequenceModelState(
            blocks=tuple(b.init_state(L) for b in self.blocks),
            total=jnp.zeros((self.d_model,), dtype),
            count=jnp.zeros((), dtype),
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

        Equal to calling the model (in inference mode) on that prefix: with
        `pool="last"` the head reads the newest position, with `pool="mean"` the
        running mean. BatchNorm uses its running statistics.

        **Arguments:** `x_t`, one input position, `(d_in,)` real or a scalar integer
        token; `state` from `init_state` or the previous `step`; `model_state`, the
        `eqx.nn.State`; `key` for dropout.

        **Returns:** `(logits, state)`.
        """
        x_t = jnp.asarray(x_t)
        h = self._encode(x_t[None])[0]
        keys = [None] * len(self.blocks) if key is None else list(jr.split(key, len(self.blocks)))
        new = []
        for block, s, k in zip(self.blocks, state.blocks, keys, strict=True):
            h, s = block.step(h, s, model_state, key=k)
            new.append(s)
        if self.final_norm is not None:
            h = self.final_norm.step(h, model_state)
        total = state.total + h.astype(state.total.dtype)
        count = state.count + 1
        feat = h if self.pooling == "last" else total / count
        out = feat if self.head is None else self.head(feat)
        return out, SequenceModelState(tuple(new), total, count)
