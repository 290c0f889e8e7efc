"""Local attention: disjoint blocks or a sliding window, computed blockwise,
and its bounded cache for recurrent mode."""

import functools
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from seqkit.kernels._dispatch import Impl, backend, choose
from seqkit.kernels._local_attention_pallas import (
    local_attention_pallas,
    unsupported as _pallas_unsupported,
)
from seqkit.kernels._local_attention_pallas_tpu import (
    local_attention_pallas_tpu,
    unsupported as _pallas_tpu_unsupported,
)

from ._base import AbstractRecurrentAttention, AttentionHeads, map_heads
from ._blocks import band_attention, gathered_block_attention, num_blocks
from ._core import dot_product_attention


def sliding_unsupported(dtype, dropout: bool, platform: str) -> str | None:
    """Why no Pallas sliding-window kernel serves a call on `platform`, or `None`:
    on TPU the Mosaic kernel's rules (`seqkit.kernels.local_attention_pallas_tpu`),
    elsewhere the Triton kernel's (`seqkit.kernels.local_attention_pallas`; `"cpu"`
    means interpret mode)."""
    if platform == "tpu":
        return _pallas_tpu_unsupported(dtype, dropout, None, platform)
    return _pallas_unsupported(dtype, dropout, None, platform)


def local_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    window_size: int,
    mode: str = "block",
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
    impl: Impl = "auto",
) -> Float[Array, "L dv"]:
    """Local softmax attention for one head.

    - `mode="block"`: the sequence is cut into disjoint blocks of `window_size`;
      query `i` sees keys in its own block (`j <= i` too when causal).
    - `mode="sliding"`: query `i` sees keys with `|i − j| < window_size`
      (`0 <= i − j < window_size` when causal), computed on blocks of
      `window_size − 1` that gather their neighbors: memory `O(L · window_size)`.

    With `window_size >= L` both are full (vanilla) attention.

    `impl` (sliding mode): `"xla"` (the gathered blocks above), `"pallas"` (a
    flash-style sliding-window kernel, window `window_size − 1`, Pallas backward
    too: `seqkit.kernels.local_attention_pallas` on GPU and in interpret mode on
    CPU, `seqkit.kernels.local_attention_pallas_tpu` on TPU; see
    `sliding_unsupported`) or `"auto"` (default: Pallas on GPU and TPU when it
    serves the call, XLA otherwise and always on CPU). Block mode
    has no Pallas kernel: `"auto"` runs XLA and `"pallas"` is a `ValueError`.

    Dropout (`dropout_rate`, active with a `key`) drops normalized weights on
    either path from one stateless stream (a hash of a seed drawn from `key`, a
    row, the query and the key position), but the Pallas kernels (GPU and TPU
    alike) hash the whole sequence's positions and the XLA path its blocks':
    `impl="pallas"` and `impl="xla"` give different, equally distributed masks
    for one key.
    """
    if window_size < 1:
        raise ValueError(f"expected window_size >= 1, got {window_size}")
    if mode == "block" and impl == "pallas":
        raise ValueError("local_attention: impl='pallas' serves mode='sliding' only, got mode='block'")
    if mode == "sliding":
        dropout = dropout_rate > 0.0 and key is not None
        platform = backend()
        unsupported = functools.partial(sliding_unsupported, q.dtype, dropout)
        choice = choose(impl, "local_attention", unsupported, platform=platform)
        if choice.impl == "pallas":
            kernel_args = dict(
                window=window_size - 1,
                causal=causal,
                dropout_rate=dropout_rate if key is not None else 0.0,
                dropout_seed=key,
                interpret=choice.interpret,
            )
            if platform == "tpu":
                return local_attention_pallas_tpu(q, k, v, key_mask, **kernel_args)
            return local_attention_pallas(q, k, v, key_mask, **kernel_args, platform=platform)
    elif impl not in ("auto", "xla"):
        raise ValueError(f"local_attention: expected impl in ('auto', 'xla', 'pallas'), got {impl!r}")
    if mode == "block":
        idx = np.arange(num_blocks(q.shape[0], window_size))[:, None]
        return gathered_block_attention(
            q,
            k,
            v,
            idx,
            block_size=window_size,
            key_mask=key_mask,
            causal=causal,
            dropout_rate=dropout_rate,
            key=key,
        )[0]
    if mode == "sliding":
        r = window_size - 1
        return band_attention(
            q,
            k,
            v,
            lo=r,
            hi=0 if causal else r,
            key_mask=key_mask,
            dropout_rate=dropout_rate,
            key=key,
        )[0]
    raise ValueError(f"mode must be 'block' or 'sliding', got {mode!r}")


class LocalCache(NamedTuple):
    """Recurrent state of causal local attention, per head: `k`, `v` `(h, c, d_h)`
    and which of the `c` slots hold a key, `valid` `(c,)`; `t` the next position.

    `mode="sliding"`: the last `window_size − 1` keys and values, oldest first.
    `mode="block"`: the current block's, `c = window_size` slots, position `t`
    in slot `t mod window_size`.
    """

    k: Float[Array, "h c dh"]
    v: Float[Array, "h c dh"]
    valid: Bool[Array, " c"]
    t: Int[Array, ""]


class LocalAttention(AbstractRecurrentAttention):
    """Multi-head local attention (Xiong et al., "Simple Local Attentions Remain
    Competitive for Long-Context Tasks", 2022; the "Local Attention" baseline of
    Tay et al., "Long Range Arena", 2021).

    `mode="block"`: attention within disjoint blocks of `window_size`;
    `mode="sliding"`: each token sees the tokens closer than `window_size`.
    Never builds an `L × L` mask; see [`seqkit.attention.local_attention`][].
    Blocks are counted from position 0, so padding at the end of a sequence
    never changes the real positions' outputs, whatever the lengths.

    Recurrent mode (causal only): `init_state()`, `step(x_t, state)` keep a
    bounded cache ([`seqkit.attention.LocalCache`][]): the last
    `window_size − 1` keys and values (`"sliding"`) or the current block's
    (`"block"`); equal to the parallel causal call at any length.

    ```python
    attn = LocalAttention(128, 2, window_size=64, mode="sliding", key=key)
    y = attn(x)  # (L, 128)
    ```

    **Arguments:** `d_model`, `num_heads`, `causal`, `dropout`, `key` as in
    [`seqkit.attention.MultiHeadAttention`][]; `window_size` (default 50, the
    Long Range Arena setting) and `mode` (`"block"` default, or `"sliding"`).
    """

    heads: AttentionHeads
    window_size: int = eqx.field(static=True)
    mode: str = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        window_size: int = 50,
        mode: str = "block",
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if mode not in ("block", "sliding"):
            raise ValueError(f"mode must be 'block' or 'sliding', got {mode!r}")
        if window_size < 1:
            raise ValueError(f"expected window_size >= 1, got {window_size}")
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=key
        )
        self.window_size = window_size
        self.mode = mode

    def _pattern(self, q, k, v, *, key_mask, dropout_rate, key):
        return local_attention(
            q,
            k,
            v,
            window_size=self.window_size,
            mode=self.mode,
            causal=self.causal,
            key_mask=key_mask,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        return self._attend(self._pattern, x, mask, key)

    def init_state(self, L: int | None = None) -> LocalCache:
        """An empty cache (causal only; `L` is not needed: the cache is bounded)."""
        self._need_causal("init_state")
        h = self.num_heads
        c = self.window_size - 1 if self.mode == "sliding" else self.window_size
        zeros = jnp.zeros((h, c, self.d_model // h), self.proj.value.weight.dtype)
        return LocalCache(k=zeros, v=zeros, valid=jnp.zeros((c,), bool), t=jnp.zeros((), jnp.int32))

    def step(
        self, x_t: Float[Array, " d_model"], state: LocalCache, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], LocalCache]:
        """Position `t`: attend to the cached keys and its own, then update the
        cache. **Returns:** `(y_t, state)`."""
        self._need_causal("step")
        x_t = self.heads.check_step(x_t)
        q, k, v = self.proj.qkv(x_t[None])
        if self.mode == "sliding":
            # keys t − w + 1 .. t: the cache and this one; then drop the oldest
            K = jnp.concatenate([state.k, k], axis=1)
            V = jnp.concatenate([state.v, v], axis=1)
            ok = jnp.concatenate([state.valid, jnp.ones((1,), bool)])
            new = LocalCache(k=K[:, 1:], v=V[:, 1:], valid=ok[1:], t=state.t + 1)
        else:
            # block of t: slots 0 .. t mod w; a new block starts by overwriting slot 0
            w = self.window_size
            s = state.t % w
            slots = jnp.arange(w, dtype=s.dtype)
            K = jnp.where((slots == s)[None, :, None], k, state.k)
            V = jnp.where((slots == s)[None, :, None], v, state.v)
            ok = slots <= s
            new = LocalCache(k=K, v=V, valid=ok, t=state.t + 1)
        rate = self.heads.rate()
        o = map_heads(
            lambda q, k, v, kk: dot_product_attention(q, k, v, ok[None, :], dropout_rate=rate, key=kk),
            self.heads.head_keys(key, type(self).__name__),
            q,
            K,
            V,
        )
        return self.proj.merge(o)[0], new
