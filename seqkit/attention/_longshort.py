"""Transformer-LS: short-term sliding window plus long-range dynamic projection."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, Projections
from ._blocks import band_attention
from ._core import attention_with_lse, merge_attention


class LongShortAttention(AbstractAttention):
    """Long-short attention (Zhu et al., "Long-Short Transformer", 2021).

    Each query attends, in one softmax, to (a) the keys within `window_size // 2`
    of it (short term) and (b) `rank` global keys/values from a dynamic low-rank
    projection `P = softmax_L(X W_p)` per head, `K̄ = Pᵀ K`, `V̄ = Pᵀ V` (long
    range). DualLN: separate LayerNorms on the local and the projected keys and
    values align their scales. Memory `O(L · (window_size + rank))`. The causal
    (segment-wise) form of the paper is not implemented: `causal=True` raises.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `window_size` (default 128) and `rank` (default 32).
    """

    proj: Projections
    dproj: eqx.nn.Linear
    ln_local: eqx.nn.LayerNorm
    ln_global: eqx.nn.LayerNorm
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    window_size: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        window_size: int = 128,
        rank: int = 32,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        kp, kd = jr.split(key)
        self.proj = Projections(d_model, num_heads, key=kp)
        self.dproj = eqx.nn.Linear(d_model, num_heads * rank, key=kd)
        dh = d_model // num_heads
        self.ln_local = eqx.nn.LayerNorm(dh)
        self.ln_global = eqx.nn.LayerNorm(dh)
        self.d_model, self.num_heads, self.causal, self.dropout = d_model, num_heads, causal, dropout
        self.window_size, self.rank, self.inference = window_size, rank, inference
        self._no_causal("its causal form is segment-wise and not implemented")

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self._check(x, mask)
        L = x.shape[0]
        km = jnp.ones((L,), bool) if mask is None else mask
        logits = jax.vmap(self.dproj)(x).reshape(L, self.num_heads, self.rank).transpose(1, 0, 2)
        logits = jnp.where(km[None, :, None], logits, -jnp.inf)
        P = jax.nn.softmax(logits, axis=1)  # (h, L, r): over length
        q, k, v = self.proj.qkv(x)
        keys = self._head_keys(key)
        rate = self._rate()
        r = self.window_size // 2

        def head(q, k, v, P, kk):
            k1, k2 = (None, None) if kk is None else tuple(jr.split(kk))
            ln = lambda f, a: jax.vmap(f)(a)  # noqa: E731
            kz = jnp.where(km[:, None], k, jnp.zeros_like(k))
            vz = jnp.where(km[:, None], v, jnp.zeros_like(v))
            o1, l1 = band_attention(
                q,
                ln(self.ln_local, k),
                ln(self.ln_local, v),
                lo=r,
                hi=r,
                key_mask=km,
                dropout_rate=rate,
                key=k1,
            )
            kg, vg = ln(self.ln_global, P.T @ kz), ln(self.ln_global, P.T @ vz)
            o2, l2 = attention_with_lse(q, kg, vg, dropout_rate=rate, key=k2)
            return merge_attention([o1, o2], [l1, l2])[0]

        if keys is None:
            o = jax.vmap(lambda *a: head(*a, None))(q, k, v, P)
        else:
            o = jax.vmap(head)(q, k, v, P, keys)
        return self.proj.merge(o)
