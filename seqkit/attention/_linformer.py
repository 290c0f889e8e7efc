"""Linformer: keys and values projected along the length to `k` rows."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._base import AbstractAttention, AttentionHeads
from ._core import dot_product_attention


def linformer_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    E: Float[Array, "k L"],
    F: Float[Array, "k L"],
    *,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "L dv"]:
    """`softmax(q (E k)ᵀ / sqrt(d)) (F v)`, one head. Padded positions are zeroed
    before the projection, so they do not reach the output."""
    if key_mask is not None:
        k = jnp.where(key_mask[:, None], k, jnp.zeros_like(k))
        v = jnp.where(key_mask[:, None], v, jnp.zeros_like(v))
    return dot_product_attention(q, E @ k, F @ v, dropout_rate=dropout_rate, key=key)


class Linformer(AbstractAttention):
    """Linformer attention (Wang et al., "Linformer: Self-Attention with Linear
    Complexity", 2020): keys and values are projected along the length by learned
    `k × L` maps `E`, `F` (shared by the heads),
    `head = softmax(Q (E K)ᵀ / sqrt(d_h)) (F V)`, memory `O(L · k)`. Sequences up
    to `max_len` are accepted (a shorter one uses the first `L` columns). Padded
    positions are zeroed before the projection, so a sequence padded at the end
    gives its real positions the same outputs as the unpadded one. No causal
    form.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `proj_dim` (`k`, default 16, the Long Range Arena setting) and `max_len`
    (default 4096).
    """

    heads: AttentionHeads
    E: Float[Array, "k n"]
    F: Float[Array, "k n"]
    proj_dim: int = eqx.field(static=True)
    max_len: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        proj_dim: int = 16,
        max_len: int = 4096,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if proj_dim < 1 or max_len < 1:
            raise ValueError(f"expected proj_dim >= 1 and max_len >= 1, got {proj_dim} and {max_len}")
        kp, ke, kf = jr.split(key, 3)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        std = proj_dim**-0.5
        self.E = std * jr.normal(ke, (proj_dim, max_len))
        self.F = std * jr.normal(kf, (proj_dim, max_len))
        self.proj_dim = proj_dim
        self.max_len = max_len
        self._no_causal("its length projection mixes all positions")

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        L = q.shape[0]
        E, F = self.E[:, :L], self.F[:, :L]
        return linformer_attention(q, k, v, E, F, key_mask=key_mask, dropout_rate=dropout_rate, key=key)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)` for `L <= max_len`; `mask` `(L,)`, `True` = real."""
        x, mask = self.heads.check(x, mask)
        if x.shape[0] > self.max_len:
            raise ValueError(f"Linformer built for max_len={self.max_len}, got length {x.shape[0]}")
        return self._attend(self._pattern, x, mask, key)
