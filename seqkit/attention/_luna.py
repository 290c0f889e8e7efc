"""Luna: linear unified nested attention (pack, then unpack)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, Projections, map_heads
from ._core import dot_product_attention


class LunaAttention(AbstractAttention):
    """Luna attention (Ma et al., "Luna: Linear Unified Nested Attention", 2021).

    With an extra sequence `P ∈ R^{l × d}`:
    `P_packed = Attn(P W_q', X W_k', X W_v')` (pack: `l` queries over the `L`
    tokens), `Y = Attn(X W_q, P_packed W_k, P_packed W_v)` (unpack), both
    `O(L · l)`. The packed sequence passed to the next layer is
    `LayerNorm(P_packed + P)`. `__call__` uses the learned initial `P`;
    `forward_with_packed(x, p)` takes and returns the propagated one. No causal
    form here.

    ```python
    y, p = luna1.forward_with_packed(x, luna1.packed)
    y2, p = luna2.forward_with_packed(y, p)
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `packed_len` (`l`, default 256).
    """

    packed: Float[Array, "l d_model"]
    pack_proj: Projections
    proj: Projections
    norm: eqx.nn.LayerNorm
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    packed_len: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        packed_len: int = 256,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        k1, k2, k3 = jr.split(key, 3)
        self.packed = jr.normal(k1, (packed_len, d_model)) / jnp.sqrt(d_model)
        self.pack_proj = Projections(d_model, num_heads, key=k2)
        self.proj = Projections(d_model, num_heads, key=k3)
        self.norm = eqx.nn.LayerNorm(d_model)
        self.d_model, self.num_heads, self.causal, self.dropout = d_model, num_heads, causal, dropout
        self.packed_len, self.inference = packed_len, inference
        self._no_causal()

    def forward_with_packed(
        self, x: Array, p: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, "L d_model"], Float[Array, "l d_model"]]:
        """Pack then unpack. **Returns:** `(y, p_next)`, `(L, d)` and `(l, d)`."""
        x, mask = self._check(x, mask)
        p = jnp.asarray(p)
        if p.ndim != 2 or p.shape[1] != self.d_model:
            raise ValueError(f"expected a packed sequence of shape (l, {self.d_model}), got {p.shape}")
        l = p.shape[0]
        keys = self._head_keys(key)
        k1, k2 = (None, None) if keys is None else (keys, jax.vmap(lambda k: jr.fold_in(k, 1))(keys))
        rate = self._rate()
        pm = None if mask is None else jnp.broadcast_to(mask[None, :], (l, x.shape[0]))
        pq = self.pack_proj.split(self.pack_proj.query, p)
        xk = self.pack_proj.split(self.pack_proj.key, x)
        xv = self.pack_proj.split(self.pack_proj.value, x)
        po = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, pm, dropout_rate=rate, key=kk),
            k1,
            pq,
            xk,
            xv,
        )
        p_packed = self.pack_proj.merge(po)
        xq = self.proj.split(self.proj.query, x)
        pk = self.proj.split(self.proj.key, p_packed)
        pv = self.proj.split(self.proj.value, p_packed)
        o = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, dropout_rate=rate, key=kk),
            k2,
            xq,
            pk,
            pv,
        )
        return self.proj.merge(o), jax.vmap(self.norm)(p_packed + p)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)` with the learned initial packed sequence."""
        return self.forward_with_packed(x, self.packed, mask=mask, key=key)[0]
