"""ContextPool: adaptive context pooling in front of softmax attention."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._base import AbstractAttention, AttentionHeads
from ._core import chunked_dot_product_attention


def context_pool(
    x: Float[Array, "L d"],
    weights: Float[Array, " L"],
    support: Float[Array, " L"],
    *,
    max_support: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
) -> Float[Array, "L d"]:
    """Pool each token's neighborhood with learned weights and support size:
    `c_i = Σ_j g_ij w_j x_j / Σ_j g_ij w_j`, `g_ij = exp(−(i − j)² / (2 σ_i²))`
    over `|i − j| <= max_support` (`j <= i` when causal). Computed from shifted
    copies: memory `O(L · max_support · d)`.
    """
    L = x.shape[0]
    w = weights if key_mask is None else jnp.where(key_mask, weights, jnp.zeros_like(weights))
    offsets = range(-max_support, 1 if causal else max_support + 1)
    s = max_support
    xp = jnp.pad(x * w[:, None], ((s, s), (0, 0)))
    wp = jnp.pad(w, (s, s))
    num = jnp.zeros_like(x)
    den = jnp.zeros((L,), x.dtype)
    for o in offsets:
        g = jnp.exp(-jnp.asarray(o * o, x.dtype) / (2.0 * support**2))
        num = num + g[:, None] * xp[s + o : s + o + L]
        den = den + g * wp[s + o : s + o + L]
    return num / jnp.where(den > 0, den, jnp.ones_like(den))[:, None]


class ContextPool(AbstractAttention):
    """Attention with adaptive context pooling (Huang et al., "Efficient
    Representation Learning via Adaptive Context Pooling", 2022).

    Each token's context is pooled first, `c = context_pool(x, w, σ)` with
    input-dependent weights `w_j = sigmoid(x_j · a + a_0)` and support
    `σ_i = 1 + (max_support − 1) · sigmoid(x_i · s + s_0)`; softmax attention then
    runs with queries from `x` and keys and values from the pooled features
    (chunked: memory linear in `L`). `causal=True` pools only `j <= i` and masks
    future keys. Padded tokens get pooling weight 0 and are masked as keys, and
    the pooling window is relative to each position, so a sequence padded at
    the end gives its real positions the same outputs as the unpadded one.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `max_support` (default 8).
    """

    heads: AttentionHeads
    pool_net: eqx.nn.Linear
    max_support: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        max_support: int = 8,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if max_support < 1:
            raise ValueError(f"expected max_support >= 1, got {max_support}")
        kp, kn = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        self.pool_net = eqx.nn.Linear(d_model, 2, key=kn)
        self.max_support = max_support

    def pooled(self, x: Float[Array, "L d"], mask: Array | None = None) -> Float[Array, "L d"]:
        """The pooled context features `c` (padded positions weigh nothing)."""
        a = jax.vmap(self.pool_net)(x)
        w = jax.nn.sigmoid(a[:, 0])
        sigma = 1.0 + (self.max_support - 1) * jax.nn.sigmoid(a[:, 1])
        return context_pool(x, w, sigma, max_support=self.max_support, causal=self.causal, key_mask=mask)

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        return chunked_dot_product_attention(
            q, k, v, key_mask=key_mask, causal=self.causal, dropout_rate=dropout_rate, key=key
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self.heads.check(x, mask)
        return self._attend(self._pattern, x, mask, key, kv=self.pooled(x, mask))
