"""Local attention: disjoint blocks or a sliding window, computed blockwise."""

import equinox as eqx
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._base import AbstractAttention, Projections
from ._blocks import band_attention, gathered_block_attention, num_blocks


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
) -> Float[Array, "L dv"]:
    """Local softmax attention for one head.

    - `mode="block"`: the sequence is cut into disjoint blocks of `window_size`;
      query `i` sees keys in its own block (`j <= i` too when causal).
    - `mode="sliding"`: query `i` sees keys with `|i − j| < window_size`
      (`0 <= i − j < window_size` when causal), computed on blocks of
      `window_size − 1` that gather their neighbors: memory `O(L · window_size)`.

    With `window_size >= L` both are full (vanilla) attention.
    """
    if window_size < 1:
        raise ValueError(f"expected window_size >= 1, got {window_size}")
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


class LocalAttention(AbstractAttention):
    """Multi-head local attention (Xiong et al., "Simple Local Attentions Remain
    Competitive for Long-Context Tasks", 2022; the "Local Attention" baseline of
    Tay et al., "Long Range Arena", 2021).

    `mode="block"`: attention within disjoint blocks of `window_size`;
    `mode="sliding"`: each token sees the tokens closer than `window_size`.
    Never builds an `L × L` mask; see [`seqkit.attention.local_attention`][].

    ```python
    attn = LocalAttention(128, 2, window_size=64, mode="sliding", key=key)
    y = attn(x)  # (L, 128)
    ```

    **Arguments:** `d_model`, `num_heads`, `causal`, `dropout`, `key` as in
    [`seqkit.attention.MultiHeadAttention`][]; `window_size` (default 50, the
    Long Range Arena setting) and `mode` (`"block"` default, or `"sliding"`).
    """

    proj: Projections
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    window_size: int = eqx.field(static=True)
    mode: str = eqx.field(static=True)
    inference: bool

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
        self.proj = Projections(d_model, num_heads, key=key)
        self.d_model, self.num_heads, self.causal, self.dropout = d_model, num_heads, causal, dropout
        self.window_size, self.mode, self.inference = window_size, mode, inference

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        return self._standard(
            x,
            mask,
            key,
            lambda q, k, v, m, rate, kk: local_attention(
                q,
                k,
                v,
                window_size=self.window_size,
                mode=self.mode,
                causal=self.causal,
                key_mask=m,
                dropout_rate=rate,
                key=kk,
            ),
        )
