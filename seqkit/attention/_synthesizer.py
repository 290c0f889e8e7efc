"""Synthesizer: attention weights synthesized without query-key dot products."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, AttentionHeads, map_heads
from ._core import causal_mask, combine_masks, padding_mask, softmax_attend


class Synthesizer(AbstractAttention):
    """Synthesizer attention (Tay et al., "Synthesizer: Rethinking Self-Attention
    in Transformer Models", 2021). `head = softmax(B) V` with `V = x W_v` and

    - `mode="dense"`: `B_i = W_2 relu(W_1 x_i + b_1) + b_2` (a position-wise MLP
      predicts row `i`, `max_len` logits per head; `factorized=True` predicts
      `a`- and `b`-vectors (`a·b = max_len`) whose outer product is the row);
    - `mode="random"`: `B = R`, a learned `max_len × max_len` matrix per head
      (`factorized=True`: `R = R_1 R_2ᵀ` of rank `factor`; `trainable=False`
      keeps it fixed at its random init).

    A length `L <= max_len` uses the leading `L × L` block, and padded keys are
    masked in the softmax, so a sequence padded at the end gives its real
    positions the same outputs as the unpadded one. The `L × L` map is the
    method, so memory is quadratic. `causal=True` masks `j > i`.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus `mode`
    (`"dense"` default), `factorized` (False), `max_len` (default 1024),
    `factor` (default 8, random-factorized rank and the dense-factorized `a`),
    `trainable` (True).
    """

    heads: AttentionHeads
    w1: eqx.nn.Linear | None
    w2: eqx.nn.Linear | None
    R: Array | None
    mode: str = eqx.field(static=True)
    factorized: bool = eqx.field(static=True)
    max_len: int = eqx.field(static=True)
    factor: int = eqx.field(static=True)
    trainable: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        mode: str = "dense",
        factorized: bool = False,
        max_len: int = 1024,
        factor: int = 8,
        trainable: bool = True,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if mode not in ("dense", "random"):
            raise ValueError(f"mode must be 'dense' or 'random', got {mode!r}")
        if max_len < 1 or factor < 1:
            raise ValueError(f"expected max_len >= 1 and factor >= 1, got {max_len} and {factor}")
        if mode == "dense" and factorized and max_len % factor:
            raise ValueError(f"factorized dense needs max_len % factor == 0, got {max_len}, {factor}")
        if mode == "dense" and not trainable:
            raise ValueError("trainable=False applies to mode='random' only")
        k1, k2, k3, kp = jr.split(key, 4)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, qk="none", key=kp
        )
        h = num_heads
        w1 = w2 = R = None
        if mode == "dense":
            out = h * (factor + max_len // factor) if factorized else h * max_len
            w1 = eqx.nn.Linear(d_model, d_model, key=k1)
            w2 = eqx.nn.Linear(d_model, out, key=k2)
        elif factorized:
            R = jr.normal(k3, (2, h, max_len, factor)) / factor**0.25
        else:
            R = jr.normal(k3, (h, max_len, max_len))
        self.w1, self.w2, self.R = w1, w2, R
        self.mode = mode
        self.factorized = factorized
        self.max_len = max_len
        self.factor = factor
        self.trainable = trainable

    def logits(self, x: Float[Array, "L d_model"]) -> Float[Array, "h L L"]:
        """The synthesized logits `B`, `(h, L, L)`."""
        L = x.shape[0]
        h = self.num_heads
        if self.mode == "dense":
            hid = jax.nn.relu(jax.vmap(self.w1)(x))
            B = jax.vmap(self.w2)(hid).reshape(L, h, -1)
            if self.factorized:
                a, b = B[..., : self.factor], B[..., self.factor :]
                B = (a[..., :, None] * b[..., None, :]).reshape(L, h, -1)
            return B[..., :L].transpose(1, 0, 2)
        R = self.R if self.trainable else jax.lax.stop_gradient(self.R)
        if self.factorized:
            return jnp.einsum("hik,hjk->hij", R[0, :, :L], R[1, :, :L])
        return R[:, :L, :L]

    def _pattern(self, s, v, *, key_mask, dropout_rate, key):
        L = s.shape[0]
        m = combine_masks(
            causal_mask(L) if self.causal else None,
            None if key_mask is None else padding_mask(key_mask, L),
        )
        return softmax_attend(s, v, m, dropout_rate=dropout_rate, key=key)[0]

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)` for `L <= max_len`; `mask` `(L,)`, `True` = real."""
        x, mask = self.heads.check(x, mask)
        L = x.shape[0]
        if L > self.max_len:
            raise ValueError(f"Synthesizer built for max_len={self.max_len}, got length {L}")
        rate = self.heads.rate()
        o = map_heads(
            lambda s, v, kk: self._pattern(s, v, key_mask=mask, dropout_rate=rate, key=kk),
            self.heads.head_keys(key, type(self).__name__),
            self.logits(x),
            self.proj.split(self.proj.value, x),
        )
        return self.proj.merge(o)
