"""Luna: linear unified nested attention (pack, then unpack)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, AttentionHeads, Projections, map_heads
from ._core import dot_product_attention, padding_mask


class LunaAttention(AbstractAttention):
    """Luna attention (Ma et al., "Luna: Linear Unified Nested Attention", 2021).

    With an extra sequence `P ∈ R^{l × d}`:
    `P_packed = Attn(P W_q', X W_k', X W_v')` (pack: `l` queries over the `L`
    tokens), `Y = Attn(X W_q, P_packed W_k, P_packed W_v)` (unpack), both
    `O(L · l)`. The packed sequence passed to the next layer is
    `LayerNorm(P_packed + P)`. `__call__` uses the learned initial `P`;
    `forward_with_packed(x, p)` takes and returns the propagated one. Packing
    attends to the real tokens only, so a sequence padded at the end gives its
    real positions (and the packed sequence) the same values as the unpadded
    one. No causal form here.

    ```python
    y, p = luna1.forward_with_packed(x, luna1.packed)
    y2, p = luna2.forward_with_packed(y, p)
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `packed_len` (`l`, default 256).
    """

    heads: AttentionHeads
    packed: Float[Array, "l d_model"]
    pack_proj: Projections
    norm: eqx.nn.LayerNorm
    packed_len: int = eqx.field(static=True)

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
        if packed_len < 1:
            raise ValueError(f"expected packed_len >= 1, got {packed_len}")
        k1, k2, k3 = jr.split(key, 3)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=k3
        )
        self.packed = jr.normal(k1, (packed_len, d_model)) * d_model**-0.5
        self.pack_proj = Projections(d_model, num_heads, key=k2)
        self.norm = eqx.nn.LayerNorm(d_model)
        self.packed_len = packed_len
        self._no_causal()

    def forward_with_packed(
        self, x: Array, p: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, "L d_model"], Float[Array, "l d_model"]]:
        """Pack then unpack. **Returns:** `(y, p_next)`, `(L, d)` and `(l, d)`."""
        x, mask = self.heads.check(x, mask)
        p = jnp.asarray(p)
        if p.ndim != 2 or p.shape[1] != self.d_model:
            raise ValueError(f"expected a packed sequence of shape (l, {self.d_model}), got {p.shape}")
        keys = self.heads.head_keys(key, type(self).__name__)
        k1, k2 = (None, None) if keys is None else (keys, jax.vmap(lambda k: jr.fold_in(k, 1))(keys))
        rate = self.heads.rate()
        # pack: the l packed queries attend to the real tokens only
        pm = None if mask is None else padding_mask(mask, p.shape[0])
        po = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, pm, dropout_rate=rate, key=kk),
            k1,
            *self.pack_proj.qkv(p, x),
        )
        p_packed = self.pack_proj.merge(po)
        # unpack: every token attends to the packed sequence
        o = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, dropout_rate=rate, key=kk),
            k2,
            *self.proj.qkv(x, p_packed),
        )
        return self.proj.merge(o), jax.vmap(self.norm)(p_packed + p)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)` with the learned initial packed sequence."""
        return self.forward_with_packed(x, self.packed, mask=mask, key=key)[0]
