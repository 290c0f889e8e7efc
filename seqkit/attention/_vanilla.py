"""Vanilla multi-head softmax attention."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, Projections, map_heads
from ._core import causal_mask, chunked_dot_product_attention, combine_masks, dot_product_attention


class MultiHeadAttention(AbstractAttention):
    """Multi-head softmax self-attention.

    `head_i = softmax(Q_i K_iᵀ / sqrt(d_h) + log mask) V_i`,
    `y = concat(head_1, …, head_h) W_o` with `Q = x W_q`, `K = x W_k`, `V = x W_v`
    (Vaswani et al., "Attention Is All You Need", 2017).

    `impl="chunked"` (default) runs
    [`seqkit.attention.chunked_dot_product_attention`][]: an online softmax over
    key chunks with memory linear in `L`, forward and backward, whose `vmap` over
    heads and examples becomes one batched kernel. `impl="dense"` builds the
    `L × L` scores and is the reference.

    ```python
    mha = MultiHeadAttention(128, 2, causal=True, key=jax.random.key(0))
    y = mha(x)                                   # x: (L, 128)
    y = jax.vmap(lambda x, m: mha(x, mask=m))(xs, masks)  # a batch
    ```

    **Arguments:**

    - `d_model`, `num_heads`: width and heads (`d_model % num_heads == 0`).
    - `causal`: position `i` attends to `j <= i` only.
    - `dropout`: attention-weight dropout rate.
    - `impl`: `"chunked"` or `"dense"`.
    - `chunk_size`: the most keys per online-softmax step (chunked path).
    - `key`: PRNG key for the initial parameters.
    """

    proj: Projections
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    impl: str = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        impl: str = "chunked",
        chunk_size: int = 512,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if impl not in ("chunked", "dense"):
            raise ValueError(f"impl must be 'chunked' or 'dense', got {impl!r}")
        self.proj = Projections(d_model, num_heads, key=key)
        self.d_model = d_model
        self.num_heads = num_heads
        self.causal = causal
        self.dropout = dropout
        self.impl = impl
        self.chunk_size = chunk_size
        self.inference = inference

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:** `x` `(L, d_model)`; `mask` optional `(L,)` boolean, `True` =
        real token (padded keys are ignored); `key` for dropout.

        **Returns:** `(L, d_model)`.
        """
        x, mask = self._check(x, mask)
        L = x.shape[0]
        q, k, v = self.proj.qkv(x)
        keys = self._head_keys(key)
        rate = self._rate()
        if self.impl == "dense":
            m = combine_masks(
                causal_mask(L) if self.causal else None,
                None if mask is None else jnp.broadcast_to(mask[None, :], (L, L)),
            )
            o = map_heads(
                lambda q, k, v, kk: dot_product_attention(q, k, v, m, dropout_rate=rate, key=kk),
                keys,
                q,
                k,
                v,
            )
        else:
            o = map_heads(
                lambda q, k, v, kk: chunked_dot_product_attention(
                    q,
                    k,
                    v,
                    key_mask=mask,
                    causal=self.causal,
                    chunk_size=self.chunk_size,
                    dropout_rate=rate,
                    key=kk,
                ),
                keys,
                q,
                k,
                v,
            )
        return self.proj.merge(o)
