"""DualEncoder: two sequences through one shared encoder, combined `[u, v, u⊙v, u−v]`,
an MLP head (LRA Retrieval)."""

from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._mixer import AbstractMixer

from ._sequence_model import SequenceModel

# The vmapped axis over the two documents of one example. BatchNorm reduces over it
# and the batch axis together, so its statistics cover both documents' real positions.
PAIR_AXIS = "seqkit.nn.DualEncoder.pair"


class DualEncoder(eqx.Module):
    """A classifier of pairs of sequences: both go through the same encoder.

    `u = f(x₁)`, `v = f(x₂)` with `f` one [`seqkit.nn.SequenceModel`][] without
    its head (encoder → residual blocks around any mixers → masked pooling; one set
    of weights for both documents, so they never attend to each other), then
    `logits = MLP([u, v, u⊙v, u−v])`, an MLP with ReLU between its `Linear` layers.

    The two documents are vmapped over one named axis, and BatchNorm (with
    `norm="batch"`) takes its statistics over the batch and both documents' real
    positions; running statistics are threaded as in `SequenceModel`. Dropout draws
    independent masks for the two documents.

    Same calling convention as `SequenceModel`, so the trainer treats both alike:

    ```python
    def mixer(i, key):
        k1, k2 = jax.random.split(key)
        return SSMLayer(S4D(64, bidirectional=True, key=k1), key=k2)

    model, state = eqx.nn.make_with_state(DualEncoder)(
        vocab_size=257, d_model=64, n_classes=2, n_layers=4, mixer=mixer, norm="batch", key=key)
    batched = jax.vmap(lambda x, m, s: model(x, s, mask=m), axis_name="batch",
                       in_axes=(0, 0, None), out_axes=(0, None))
    logits, state = batched(tokens, mask, state)        # tokens, mask: (B, 2, L)
    ```

    The Retrieval task of Tay et al., "Long Range Arena: A Benchmark for Efficient
    Transformers", ICLR 2021: a dual encoder, no cross-attention between the two
    documents. LRA's `classifier_head_dual` combines `[u, v, u⊙v, u−v]` with
    `interaction="NLI"` (its default, which LRA's first released training script
    kept, is `[u, v]`) and applies `Dense(mlp_dim) → ReLU → Dense(mlp_dim // 2) → ReLU →
    Dense(n_classes)`; the S4 code's retrieval head combines the same four and
    applies `Linear(4·d_model, d_model) → ReLU → Linear(d_model, n_classes)`, this
    module's default.
    """

    encoder: SequenceModel
    head: tuple[eqx.nn.Linear, ...]
    d_model: int = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        d_model: int,
        n_classes: int,
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
        positions: Literal["none", "sinusoidal", "learned"] = "none",
        max_length: int | None = None,
        mlp_widths: Sequence[int] | None = None,
        axis_name: Hashable = "batch",
        check_finite: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`, `mixer`, `n_layers`, `d_in` or `vocab_size`, `norm`, `prenorm`,
          `dropout`, `ffn_mult`, `ffn_activation`, `pool`, `positions`, `max_length`
          (the length of one document, plus one with `pool="cls"`), `check_finite`:
          the shared encoder's, as for [`seqkit.nn.SequenceModel`][]; both
          documents get the same position embeddings.
        - `n_classes`: number of output logits.
        - `mlp_widths`: the head's hidden widths (ReLU after each); default
          `(d_model,)`, as the S4 code's retrieval head. LRA's Transformer head is
          `(mlp_dim, mlp_dim // 2)`.
        - `axis_name`: the vmapped batch axis BatchNorm reduces over (with the pair axis).
        - `key`: PRNG key.
        """
        if pool == "none":
            raise ValueError(
                "a DualEncoder compares two pooled encodings: pool must be 'mean', 'last' or 'cls', "
                "got 'none'"
            )
        widths = (d_model,) if mlp_widths is None else tuple(mlp_widths)
        if any(w < 1 for w in widths):
            raise ValueError(f"mlp_widths must be positive, got {widths}")
        names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
        ekey, hkey = jr.split(key)
        self.encoder = SequenceModel(
            d_model=d_model,
            n_classes=None,
            mixer=mixer,
            n_layers=n_layers,
            d_in=d_in,
            vocab_size=vocab_size,
            norm=norm,
            prenorm=prenorm,
            dropout=dropout,
            ffn_mult=ffn_mult,
            ffn_activation=ffn_activation,
            pool=pool,
            positions=positions,
            max_length=max_length,
            axis_name=(*names, PAIR_AXIS),
            check_finite=check_finite,
            key=ekey,
        )
        sizes = (4 * d_model, *widths, n_classes)
        self.head = tuple(
            eqx.nn.Linear(a, b, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], jr.split(hkey, len(sizes) - 1), strict=True)
        )
        self.d_model = d_model
        self.n_classes = n_classes

    def combine(self, u: Float[Array, " d_model"], v: Float[Array, " d_model"]) -> Float[Array, " n_classes"]:
        """The head alone: `MLP([u, v, u⊙v, u−v])` for two pooled encodings."""
        z = jnp.concatenate([u, v, u * v, u - v])
        for layer in self.head[:-1]:
            z = jax.nn.relu(layer(z))
        return self.head[-1](z)

    def __call__(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " n_classes"], eqx.nn.State]:
        """**Arguments:**

        - `x`: one example, two sequences of one length: `(2, L)` integer tokens or
          `(2, L, d_in)` real (pad the shorter one and mask it).
        - `state`: the model state (`eqx.nn.State`; BatchNorm statistics).
        - `mask`: optional `(2, L)` bool, True at real positions.
        - `key`: PRNG key for dropout (unused in inference mode).

        **Returns:** `(logits, state)`, logits of shape `(n_classes,)`.
        """
        x = jnp.asarray(x)
        if x.ndim < 2 or x.shape[0] != 2:
            raise ValueError(
                f"expected one example of two sequences, shape (2, L) tokens or (2, L, d_in) real "
                f"(use jax.vmap for a batch), got {x.dtype} {x.shape}"
            )
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.shape != x.shape[:2] or mask.dtype != jnp.bool_:
                raise ValueError(
                    f"expected a bool padding mask of shape {x.shape[:2]} (True = real token), "
                    f"got {mask.dtype} {mask.shape}"
                )
        keys = None if key is None else jr.split(key, 2)

        def encode(x_i, m_i, k_i, state):
            return self.encoder.features(x_i, state, mask=m_i, key=k_i)

        # in_axes 0 on a None mask or key maps over no leaves: it stays None.
        feats, state = jax.vmap(encode, in_axes=(0, 0, 0, None), out_axes=(0, None), axis_name=PAIR_AXIS)(
            x, mask, keys, state
        )
        return self.combine(feats[0], feats[1]), state
