"""Sinkhorn attention: learned soft block sorting, then local attention."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._base import AbstractAttention, AttentionHeads
from ._blocks import _pad_rows, num_blocks
from ._core import attention_with_lse


def _masked_lse(x: Array, valid: Array, axis: int) -> Array:
    """`log Σ exp(x)` over the `valid` entries along `axis` (`0` where none are:
    harmless, as those entries are masked again). Invalid entries never reach
    `exp`, so gradients stay finite and exactly zero there."""
    lowest = jnp.finfo(x.dtype).min
    m = jax.lax.stop_gradient(jnp.max(jnp.where(valid, x, lowest), axis=axis, keepdims=True))
    m = jnp.where(m > lowest, m, jnp.zeros_like(m))
    # No infinities anywhere (not even in branches `where` discards), so no 0 · inf
    # can reach a gradient whatever XLA's simplifications do.
    e = jnp.where(valid, jnp.exp(jnp.where(valid, x - m, jnp.zeros_like(x))), jnp.zeros_like(x))
    tot = jnp.sum(e, axis=axis, keepdims=True)
    return m + jnp.log(jnp.where(tot > 0, tot, jnp.ones_like(tot)))


def sinkhorn(
    log_alpha: Float[Array, "n n"],
    num_iters: int,
    *,
    causal: bool = False,
    valid: Bool[Array, " n"] | None = None,
) -> Float[Array, "n n"]:
    """Sinkhorn normalization in log space: alternately normalize rows and
    columns of `exp(log_alpha)`, approaching a doubly stochastic matrix (Adams &
    Zemel, 2011; Mena et al., 2018).

    `valid` (default all) marks the rows and columns that take part: the
    others are zero in the result and never enter a normalization, so the
    valid block of the result depends on the valid block of `log_alpha` alone
    (padded blocks of a sequence take no part in the sorting).

    `causal=True` is the causal balancing of Tay et al. (2020): only entries
    `(n, m)` with `m < n` exist (row `n` may only sort in strictly earlier
    blocks; row 0 is empty), rows are normalized over those entries, and entry
    `(n, m)` is column-normalized over the rows `n' <= n` only (a cumulative
    column sum), so row `n` of the result depends on rows `0..n` of `log_alpha`
    alone. The result is exactly zero on and above the diagonal.
    """
    n = log_alpha.shape[0]
    real = jnp.ones((n,), bool) if valid is None else valid
    ok = real[:, None] & real[None, :]
    x = jnp.where(ok, log_alpha, jnp.zeros_like(log_alpha))
    if not causal:
        for _ in range(num_iters):
            x = jnp.where(ok, x - _masked_lse(x, ok, 1), x)
            x = jnp.where(ok, x - _masked_lse(x, ok, 0), x)
        return jnp.where(ok, jnp.exp(x), jnp.zeros_like(x))
    idx = jnp.arange(n)
    ok = ok & (idx[None, :] < idx[:, None])  # (n, m): m < n
    upto = idx[None, :] <= idx[:, None]  # (n, n'): n' <= n
    x = jnp.where(ok, x, jnp.zeros_like(x))
    for _ in range(num_iters):
        x = jnp.where(ok, x - _masked_lse(x, ok, 1), x)
        # (n, n', m): rows n' <= n of column m
        col = _masked_lse(jnp.broadcast_to(x[None], (n, n, n)), upto[:, :, None] & ok[None], 1)[:, 0, :]
        x = jnp.where(ok, x - col, x)
    return jnp.where(ok, jnp.exp(x), jnp.zeros_like(x))


class SinkhornAttention(AbstractAttention):
    """Sparse Sinkhorn attention (Tay et al., "Sparse Sinkhorn Attention", 2020).

    The sequence is cut into blocks of `block_size`. A sorting network scores
    block pairs from block summaries `s_n` (mean of the block's real tokens),
    `R = (s W_s) sᵀ / sqrt(d)`, and Sinkhorn normalization of `R / temperature`
    gives a soft permutation `P`. Each query block then attends to its own block
    and to the sorted block `Σ_m P_nm (K_m, V_m)` (one softmax over both): memory
    `O(L · block_size + (L / block_size)²)`.

    Causal form (`causal=True`, the paper's causal Sinkhorn balancing): query
    `i` in block `n` sees, in one softmax, the keys `j <= i` of its own block and
    the sorted block `Σ_{m<n} P_nm (K_m, V_m)` built from strictly earlier
    blocks only. The row of `R` for block `n` uses the summary `c_n` of all
    real tokens in blocks `0..n−1` (a cumulative mean), `R_nm = (c_n W_s) s_mᵀ /
    sqrt(d)` for `m < n`, and `P = sinkhorn(R / temperature, causal=True)`
    (rows over `m < n`, columns cumulatively over rows `n' <= n`; see
    [`seqkit.attention.sinkhorn`][]). Block 0 has no sorted block. No input at
    a position after `i` reaches output `i`.

    Padding: blocks with no real token take no part in the sorting (their rows
    and columns of `P` are zero, and Sinkhorn normalizes over the real blocks
    only), and blocks are counted from position 0, so a sequence padded at the
    end gives its real positions the same outputs as the unpadded one, whatever
    the lengths.

    ```python
    attn = SinkhornAttention(128, 2, block_size=64, causal=True, key=key)
    y = attn(x)  # (L, 128); batch with jax.vmap
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `block_size` (default 64), `sinkhorn_iters` (default 8), `temperature`
    (default 0.75).
    """

    heads: AttentionHeads
    sort_net: eqx.nn.Linear
    block_size: int = eqx.field(static=True)
    sinkhorn_iters: int = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        block_size: int = 64,
        sinkhorn_iters: int = 8,
        temperature: float = 0.75,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if block_size < 1:
            raise ValueError(f"expected block_size >= 1, got {block_size}")
        if not temperature > 0 or sinkhorn_iters < 0:
            raise ValueError(
                f"expected temperature > 0 and sinkhorn_iters >= 0, got {temperature} and {sinkhorn_iters}"
            )
        kp, ks = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        self.sort_net = eqx.nn.Linear(d_model, d_model, use_bias=False, key=ks)
        self.block_size = block_size
        self.sinkhorn_iters = sinkhorn_iters
        self.temperature = temperature

    def sort_matrix(self, x: Float[Array, "L d"], mask: Array | None = None) -> Float[Array, "n n"]:
        """The soft block permutation `P`, `(num_blocks, num_blocks)` (strictly
        lower triangular when causal); rows and columns of blocks with no real
        token are zero."""
        L = x.shape[0]
        b = self.block_size
        n = num_blocks(L, b)
        w = jnp.ones((L,), x.dtype) if mask is None else mask.astype(x.dtype)
        xs = _pad_rows(x * w[:, None], n * b).reshape(n, b, -1).sum(1)
        cnt = _pad_rows(w, n * b).reshape(n, b).sum(1)
        s = xs / jnp.maximum(cnt, 1.0)[:, None]
        if self.causal:
            # row n summarizes blocks 0..n-1 only: an exclusive cumulative mean
            csum = jnp.cumsum(xs, axis=0) - xs
            ccnt = jnp.cumsum(cnt) - cnt
            rows = csum / jnp.maximum(ccnt, 1.0)[:, None]
        else:
            rows = s
        R = jax.vmap(self.sort_net)(rows) @ s.T / jnp.sqrt(jnp.asarray(self.d_model, x.dtype))
        return sinkhorn(R / self.temperature, self.sinkhorn_iters, causal=self.causal, valid=cnt > 0)

    def _pattern(self, q, k, v, *, P, key_mask, dropout_rate, key):
        L = q.shape[0]
        b = self.block_size
        n = num_blocks(L, b)
        km = jnp.ones((L,), bool) if key_mask is None else key_mask
        mb = _pad_rows(km, n * b).reshape(n, b)
        msort = (P @ mb.astype(P.dtype)) > 0
        own = mb[:, None, :]  # (n, 1, b)
        if self.causal:  # within the own block, key u <= query t
            own = own & jnp.tril(jnp.ones((b, b), bool))[None]
        own = jnp.broadcast_to(own, (n, b, b))
        valid = jnp.concatenate([own, jnp.broadcast_to(msort[:, None, :], (n, b, b))], axis=2)

        def blocks(a):  # padded keys are zeroed so they never mix into sorted blocks
            a = jnp.where(km[:, None], a, jnp.zeros_like(a))
            return _pad_rows(a, n * b).reshape(n, b, -1)

        qb, kb, vb = _pad_rows(q, n * b).reshape(n, b, -1), blocks(k), blocks(v)
        ks = jnp.einsum("nm,mbd->nbd", P, kb)
        vs = jnp.einsum("nm,mbd->nbd", P, vb)
        o, _ = attention_with_lse(
            qb,
            jnp.concatenate([kb, ks], 1),
            jnp.concatenate([vb, vs], 1),
            valid,
            dropout_rate=dropout_rate,
            key=key,
        )
        return o.reshape(n * b, -1)[:L]

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self.heads.check(x, mask)
        P = self.sort_matrix(x, mask)
        return self._attend(functools.partial(self._pattern, P=P), x, mask, key)
