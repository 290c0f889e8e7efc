"""Perceiver AR: causal cross-attention from the last positions to the whole
context, then a stack of causal mixers on those latents."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from seqkit._checks import check_mask
from seqkit._mixer import AbstractMixer
from seqkit.attention._base import Projections
from seqkit.attention._core import dot_product_attention

from ._blocks import FeedForward, ResidualBlock


def perceiver_ar_mask(L: int, n_latents: int) -> Array:
    """`(n_latents, L)` bool: latent `i` sits at position `p_i = L − n_latents + i`
    and may attend to positions `j ≤ p_i`."""
    p = L - n_latents + jnp.arange(n_latents)
    return jnp.arange(L)[None, :] <= p[:, None]


class PerceiverAR(eqx.Module):
    """Perceiver AR (Hawthorne et al., "General-purpose, long-context
    autoregressive modeling with Perceiver AR", ICML 2022): a causal language
    model whose cost beyond the first layer does not grow with the context.

    Tokens `x_1..x_L` are embedded with learned positions, `e_j = E x_j + P_j`.
    The last `N` positions are the latents. One causal cross-attention lets
    latent `i` (position `p_i = L − N + i`) read every position up to its own:

    `z_i = e_{p_i} + W_o softmax(q_i K_{≤p_i}ᵀ / √d_h) V_{≤p_i}`, with
    `q = LN(e) W_q`, `K = LN(e) W_k`, `V = LN(e) W_v` (multi-head),

    then `z ← z + FFN(LN(z))`, a stack of residual blocks of causal mixers over
    the `N` latents (self-attention in the paper; any causal seqkit mixer here),
    a final LayerNorm and a linear head: `(N, vocab)` logits, row `i`
    predicting token `p_i + 1`. The cross-attention costs `O(N·L)`, each latent
    layer `O(N²)` (attention) or `O(N)` (SSMs).

    Calls like [`seqkit.nn.SequenceModel`][]: `model(x, state, *, mask, key) ->
    (logits, state)` for one example of `L ≤ max_length` integer tokens;
    build with `eqx.nn.make_with_state`. The trainer scores the last `N`
    positions' labels. `seqkit.nn.generate` samples from it through
    `next_logits`, the parallel model on each prefix (the latent window moves
    with every new token, so there is no recurrent state to carry).
    """

    embedding: eqx.nn.Embedding
    position_table: Float[Array, "max_length d_model"]
    cross_norm: eqx.nn.LayerNorm
    cross: Projections
    cross_ffn_norm: eqx.nn.LayerNorm
    cross_ffn: FeedForward
    blocks: tuple[ResidualBlock, ...]
    final_norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    d_model: int = eqx.field(static=True)
    n_latents: int = eqx.field(static=True)
    max_length: int = eqx.field(static=True)
    pooling: str = eqx.field(static=True)

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        n_latents: int,
        max_length: int,
        num_heads: int,
        mixer: Sequence[AbstractMixer] | Callable[[int, PRNGKeyArray], AbstractMixer],
        n_layers: int | None = None,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `vocab_size`: tokens in and logits out.
        - `d_model`: width.
        - `n_latents`: `N`, the positions that get outputs.
        - `max_length`: the longest context (the learned position table).
        - `num_heads`: heads of the cross-attention.
        - `mixer`: the latent stack, a list of causal mixers or a factory
          `mixer(i, key)` (e.g. causal `MultiHeadAttention`, as in the paper).
        - `n_layers`: blocks in the latent stack (defaults to a list's length).
        - `ffn_mult`: FFN width multiple, in the cross-attention layer and every block.
        - `dropout`: residual dropout in the latent blocks.
        - `key`: PRNG key.
        """
        if not 1 <= n_latents <= max_length:
            raise ValueError(f"expected 1 <= n_latents <= max_length={max_length}, got {n_latents}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if isinstance(mixer, Sequence):
            mixers = list(mixer)
            n_layers = len(mixers) if n_layers is None else n_layers
            if len(mixers) != n_layers:
                raise ValueError(f"expected {n_layers} mixers, got {len(mixers)}")
        if n_layers is None or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers}")
        ke, kp, kc, kf, km, kb, kh = jr.split(key, 7)
        if not isinstance(mixer, Sequence):
            mixers = [mixer(i, k) for i, k in enumerate(jr.split(km, n_layers))]
        for i, m in enumerate(mixers):
            if not getattr(m, "causal", False):
                raise ValueError(
                    f"latent layer {i}: expected a causal mixer (a latent must not see later "
                    f"latents, or training reads the tokens it predicts), got {type(m).__name__} "
                    f"with causal={getattr(m, 'causal', None)}"
                )
        self.embedding = eqx.nn.Embedding(vocab_size, d_model, key=ke)
        self.position_table = 0.02 * jr.normal(kp, (max_length, d_model))
        self.cross_norm = eqx.nn.LayerNorm(d_model)
        self.cross = Projections(d_model, num_heads, key=kc)
        self.cross_ffn_norm = eqx.nn.LayerNorm(d_model)
        self.cross_ffn = FeedForward(d_model, ffn_mult, key=kf)
        self.blocks = tuple(
            ResidualBlock(m, d_model, norm="layer", dropout=dropout, ffn_mult=ffn_mult, key=k)
            for m, k in zip(mixers, jr.split(kb, n_layers), strict=True)
        )
        self.final_norm = eqx.nn.LayerNorm(d_model)
        self.head = eqx.nn.Linear(d_model, vocab_size, key=kh)
        self.d_model = d_model
        self.n_latents = n_latents
        self.max_length = max_length
        self.pooling = "none"

    def __call__(
        self, x: Array, state: eqx.nn.State, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, "n vocab"], eqx.nn.State]:
        """**Arguments:** `x`, `(L,)` integer tokens; `state`; `mask`, optional bool
        `(L,)`, True at real positions (padded ones are never attended to);
        `key` for dropout.

        **Returns:** `(logits, state)`, logits `(n, vocab)` for the last `n =
        min(n_latents, L)` positions. A context shorter than `n_latents` has
        every position as a latent: the latent window then starts before
        position 0, and its first `n_latents − L` entries are padding (masked).
        """
        if x.ndim != 1 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"expected integer tokens of shape (L,), got {x.dtype} {x.shape}")
        L = x.shape[0]
        if not 1 <= L <= self.max_length:
            raise ValueError(f"expected a context of 1 to {self.max_length} (max_length) tokens, got {L}")
        logits, state = self._window(x, state, check_mask(mask, L), key, L - 1)
        return logits[max(self.n_latents - L, 0) :], state

    def next_logits(
        self, x: Int[Array, " T"], end: Int[Array, ""] | int, state: eqx.nn.State
    ) -> Float[Array, " vocab"]:
        """The logits predicting token `end + 1` from `x[: end + 1]`, the last row
        of `model(x[: end + 1], state)` (inference mode), with `end` a traced
        index: one compiled computation serves every prefix of a buffer `x` of
        `T ≤ max_length` tokens, whose entries after `end` are never read. This
        is Perceiver AR's generation step (`seqkit.nn.generate`): it costs one
        cross-attention of `n_latents` queries over `end + 1` keys and the latent
        stack, with no cache (the latent window moves with every token)."""
        logits, _ = self._window(x, state, None, None, end)
        return logits[-1]

    def _window(self, x, state, mask, key, end):
        """Logits of the `N` latents at positions `p_i = end − N + 1 + i`; a latent
        before position 0 is padding (masked everywhere, its row discarded)."""
        L, N = x.shape[0], self.n_latents
        e = jax.vmap(self.embedding)(x) + self.position_table[:L].astype(self.embedding.weight.dtype)
        if mask is not None:
            e = jnp.where(mask[:, None], e, jnp.zeros_like(e))
        h = jax.vmap(self.cross_norm)(e)
        p = end - N + 1 + jnp.arange(N)
        at = jnp.clip(p, 0, L - 1)
        allowed = jnp.arange(L)[None, :] <= p[:, None]  # also rules out every key of a padding latent
        if mask is not None:
            allowed = allowed & mask[None, :]
        q, k, v = self.cross.qkv(h[at], h)
        o = jax.vmap(lambda q, k, v: dot_product_attention(q, k, v, allowed))(q, k, v)
        z = e[at] + self.cross.merge(o)
        z = z + self.cross_ffn(jax.vmap(self.cross_ffn_norm)(z))
        # Static when the window is inside the context and nothing is padded (training).
        inside = isinstance(end, int) and end + 1 >= N
        latent_mask = None if inside and mask is None else (p >= 0) & (True if mask is None else mask[at])
        if latent_mask is not None:
            z = jnp.where(latent_mask[:, None], z, jnp.zeros_like(z))
        keys = [None] * len(self.blocks) if key is None else list(jr.split(key, len(self.blocks)))
        for block, kb in zip(self.blocks, keys, strict=True):
            z, state = block(z, state, mask=latent_mask, key=kb)
        return jax.vmap(self.head)(jax.vmap(self.final_norm)(z)), state
