"""Transformer-LS: short-term sliding window plus long-range dynamic projection."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from seqkit._checks import at_least

from ._base import AbstractAttention, AttentionHeads
from ._blocks import _pad_rows, band_attention, num_blocks
from ._core import attention_with_lse, merge_attention, softmax_attend


def segment_projection(
    logits: Float[Array, "L r"],
    kv: Float[Array, "L e"],
    segment: int,
    key_mask: Bool[Array, " L"] | None = None,
) -> tuple[Float[Array, "n r e"], Bool[Array, " n"]]:
    """Transformer-LS's causal dynamic projection: compress each segment of
    `segment` tokens into `r` vectors, `K̄_m = P_mᵀ K_m` with
    `P_m = softmax(logits_m)` over the real tokens of segment `m` alone.

    **Returns:** `(n, r, e)` compressed rows per segment and `(n,)` whether the
    segment holds any real token (an empty segment's rows are zero).
    """
    at_least(1, segment=segment)
    L = kv.shape[0]
    n = num_blocks(L, segment)
    km = jnp.ones((L,), bool) if key_mask is None else key_mask
    lb = _pad_rows(logits, n * segment).reshape(n, segment, -1).transpose(0, 2, 1)  # (n, r, l)
    vb = _pad_rows(kv, n * segment).reshape(n, segment, -1)
    mb = _pad_rows(km, n * segment).reshape(n, 1, segment)
    # softmax over the segment's positions: attention with the logits as scores
    out, lse = softmax_attend(lb, vb, mb)
    return out, jnp.isfinite(lse[:, 0])


class LongShortAttention(AbstractAttention):
    """Long-short attention (Zhu et al., "Long-Short Transformer", 2021).

    Each query attends, in one softmax, to (a) the keys within `window_size // 2`
    of it (short term) and (b) `rank` global keys/values from a dynamic low-rank
    projection `P = softmax_L(X W_p)` per head, `K̄ = Pᵀ K`, `V̄ = Pᵀ V` (long
    range). DualLN: separate LayerNorms on the local and the projected keys and
    values align their scales. Memory `O(L · (window_size + rank))`.

    Causal form (`causal=True`, the paper's autoregressive version): with
    `w = window_size // 2` and segments of `l = max(w, 1)` tokens, query `i` (in
    segment `s = i // l`) sees, in one softmax, (a) the raw keys `j` with
    `i − w <= j <= i` (short term, causal sliding window, `ln_local`) and (b) the
    `rank` compressed keys/values of every segment `m < s`, where segment `m`
    is projected on its own, `K̄_m = softmax_l(X_m W_p)ᵀ K_m` (see
    [`seqkit.attention.segment_projection`][], `ln_global`). Segment `s` itself
    is never compressed for its own queries, so no future token reaches query
    `i`; and since `l = w`, every past key is seen raw or inside a compressed
    segment. The two parts are merged exactly through their log normalizers.
    Cost `O(L · (w + rank · L / l))`.

    Padding: the projection's softmax runs over the real tokens only and the
    windows and segments are counted from position 0, so a sequence padded at
    the end gives its real positions the same outputs as the unpadded one,
    whatever the lengths.

    ```python
    attn = LongShortAttention(128, 2, window_size=128, rank=32, causal=True, key=key)
    y = attn(x)  # (L, 128); batch with jax.vmap
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `window_size` (default 128) and `rank` (default 32).
    """

    heads: AttentionHeads
    dproj: eqx.nn.Linear
    ln_local: eqx.nn.LayerNorm
    ln_global: eqx.nn.LayerNorm
    window_size: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)

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
        if window_size < 0 or rank < 1:
            raise ValueError(f"expected window_size >= 0 and rank >= 1, got {window_size}, {rank}")
        kp, kd = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        self.dproj = eqx.nn.Linear(d_model, num_heads * rank, key=kd)
        dh = d_model // num_heads
        self.ln_local = eqx.nn.LayerNorm(dh)
        self.ln_global = eqx.nn.LayerNorm(dh)
        self.window_size = window_size
        self.rank = rank

    def _norm(self, ln: eqx.nn.LayerNorm, a: Array) -> Array:
        return jax.vmap(ln)(a)

    def _pattern(self, q, k, v, logits, *, key_mask, dropout_rate, key):
        """One head, bidirectional: band + dynamic projection over the real tokens."""
        L = q.shape[0]
        km = jnp.ones((L,), bool) if key_mask is None else key_mask
        k1, k2 = (None, None) if key is None else tuple(jr.split(key))
        r = self.window_size // 2
        o1, l1 = band_attention(
            q,
            self._norm(self.ln_local, k),
            self._norm(self.ln_local, v),
            lo=r,
            hi=r,
            key_mask=km,
            dropout_rate=dropout_rate,
            key=k1,
        )
        # K̄ = Pᵀ K, V̄ = Pᵀ V with P = softmax over the real positions of X W_p (L, r):
        # attention of the r projection rows over the real positions (an input with
        # no real position gives zeros, not NaN).
        kv = jnp.where(km[:, None], jnp.concatenate([k, v], 1), 0.0)
        kv, _ = softmax_attend(logits.T, kv, km[None, :])
        dk = k.shape[1]
        kg, vg = self._norm(self.ln_global, kv[:, :dk]), self._norm(self.ln_global, kv[:, dk:])
        o2, l2 = attention_with_lse(q, kg, vg, dropout_rate=dropout_rate, key=k2)
        return merge_attention([o1, o2], [l1, l2])[0]

    def _causal_pattern(self, q, k, v, logits, *, key_mask, dropout_rate, key):
        """One head, causal: causal band + compressed earlier segments."""
        L = q.shape[0]
        km = jnp.ones((L,), bool) if key_mask is None else key_mask
        k1, k2 = (None, None) if key is None else tuple(jr.split(key))
        w = self.window_size // 2
        seg = max(w, 1)
        n = num_blocks(L, seg)
        o1, l1 = band_attention(
            q,
            self._norm(self.ln_local, k),
            self._norm(self.ln_local, v),
            lo=w,
            hi=0,
            key_mask=km,
            dropout_rate=dropout_rate,
            key=k1,
        )
        comp, ok = segment_projection(logits, jnp.concatenate([k, v], 1), seg, km)  # (n, r, 2 dh)
        comp = comp.reshape(n * self.rank, -1)
        dk = k.shape[1]
        kg, vg = self._norm(self.ln_global, comp[:, :dk]), self._norm(self.ln_global, comp[:, dk:])
        # query i may see the compressed segments m < i // seg
        see = (jnp.arange(n)[None, :] < (jnp.arange(L) // seg)[:, None])[:, :, None]  # (L, n, 1)
        allowed = jnp.broadcast_to(see & ok[None, :, None], (L, n, self.rank)).reshape(L, -1)
        o2, l2 = attention_with_lse(q, kg, vg, allowed, dropout_rate=dropout_rate, key=k2)
        return merge_attention([o1, o2], [l1, l2])[0]

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self.heads.check(x, mask)
        L = x.shape[0]
        logits = jax.vmap(self.dproj)(x).reshape(L, self.num_heads, self.rank).transpose(1, 0, 2)
        pattern = self._causal_pattern if self.causal else self._pattern
        return self._attend(pattern, x, mask, key, logits)
