"""Vanilla multi-head softmax attention, and its key/value cache for recurrent mode."""

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._base import AbstractRecurrentAttention, AttentionHeads, map_heads
from ._core import chunked_dot_product_attention, dot_product_attention, padding_mask


class KVCache(NamedTuple):
    """Recurrent state of causal softmax attention: the keys and values of every
    position seen so far, `(h, L, d_h)` each, preallocated for `L` positions, and
    the next position `t` (an int32 scalar)."""

    k: Float[Array, "h L dh"]
    v: Float[Array, "h L dh"]
    t: Int[Array, ""]


class MultiHeadAttention(AbstractRecurrentAttention):
    """Multi-head softmax self-attention.

    `head_i = softmax(Q_i K_iᵀ / sqrt(d_h) + log mask) V_i`,
    `y = concat(head_1, …, head_h) W_o` with `Q = x W_q`, `K = x W_k`, `V = x W_v`
    (Vaswani et al., "Attention Is All You Need", 2017).

    `impl="chunked"` (default) runs
    [`seqkit.attention.chunked_dot_product_attention`][]: an online softmax over
    key chunks with memory linear in `L`, forward and backward, whose `vmap` over
    heads and examples becomes one batched kernel. `impl="dense"` builds the
    `L × L` scores and is the reference. On GPU both take cuDNN's fused attention
    when it serves the call (float16/bfloat16, no padding mask, no dropout; the
    `impl="auto"` of the pure functions); on CPU they run as described.

    Recurrent mode (causal only): `init_state(L)` preallocates a key/value cache
    for `L` positions ([`seqkit.attention.KVCache`][]); `step` writes position
    `t` and attends to positions `<= t`, equal to the parallel causal call.

    ```python
    mha = MultiHeadAttention(128, 2, causal=True, key=jax.random.key(0))
    y = mha(x)                                   # x: (L, 128)
    y = jax.vmap(lambda x, m: mha(x, mask=m))(xs, masks)  # a batch
    state = mha.init_state(L)
    y0, state = mha.step(x[0], state)            # equals y[0]
    ```

    **Arguments:**

    - `d_model`, `num_heads`: width and heads (`d_model % num_heads == 0`).
    - `causal`: position `i` attends to `j <= i` only.
    - `dropout`: attention-weight dropout rate.
    - `impl`: `"chunked"` or `"dense"`.
    - `chunk_size`: the most keys per online-softmax step (chunked path).
    - `key`: PRNG key for the initial parameters.
    """

    heads: AttentionHeads
    impl: str = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)

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
        if chunk_size < 1:
            raise ValueError(f"expected chunk_size >= 1, got {chunk_size}")
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=key
        )
        self.impl = impl
        self.chunk_size = chunk_size

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        if self.impl == "dense":
            m = None if key_mask is None else padding_mask(key_mask, q.shape[0])
            return dot_product_attention(q, k, v, m, causal=self.causal, dropout_rate=dropout_rate, key=key)
        return chunked_dot_product_attention(
            q,
            k,
            v,
            key_mask=key_mask,
            causal=self.causal,
            chunk_size=self.chunk_size,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:** `x` `(L, d_model)`; `mask` optional `(L,)` boolean, `True` =
        real token (padded keys are ignored); `key` for dropout.

        **Returns:** `(L, d_model)`.
        """
        return self._attend(self._pattern, x, mask, key)

    def init_state(self, L: int | None = None) -> KVCache:
        """An empty key/value cache for up to `L` positions (causal only; `L` is
        required: the cache is preallocated)."""
        self._need_causal("init_state")
        if L is None:
            raise ValueError(
                "MultiHeadAttention.init_state needs L, the longest sequence to step through "
                "(its key/value cache is preallocated for L positions), got L=None"
            )
        if L < 1:
            raise ValueError(f"expected L >= 1, got {L}")
        h = self.num_heads
        dh = self.d_model // h
        dt = self.proj.value.weight.dtype
        zeros = jnp.zeros((h, L, dh), dt)
        return KVCache(k=zeros, v=zeros, t=jnp.zeros((), jnp.int32))

    def step(
        self, x_t: Float[Array, " d_model"], state: KVCache, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], KVCache]:
        """Position `t`: write its key and value into the cache, attend to the
        positions `<= t`. **Returns:** `(y_t, state)`."""
        self._need_causal("step")
        x_t = self.heads.check_step(x_t)
        L = state.k.shape[1]
        t = eqx.error_if(
            state.t,
            state.t >= L,
            f"MultiHeadAttention.step: the key/value cache is full ({L} positions); "
            "make the state with a larger init_state(L)",
        )
        q, k, v = self.proj.qkv(x_t[None])
        K = lax.dynamic_update_slice_in_dim(state.k, k, t, axis=1)
        V = lax.dynamic_update_slice_in_dim(state.v, v, t, axis=1)
        seen = (jnp.arange(L, dtype=t.dtype) <= t)[None, :]
        rate = self.heads.rate()
        o = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, seen, dropout_rate=rate, key=kk),
            self.heads.head_keys(key, type(self).__name__),
            q,
            K,
            V,
        )
        return self.proj.merge(o)[0], KVCache(k=K, v=V, t=t + 1)
