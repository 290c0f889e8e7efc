"""Sinkhorn attention: learned soft block sorting, then local attention."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractAttention, Projections, map_heads
from ._blocks import _pad_rows, num_blocks
from ._core import attention_with_lse


def sinkhorn(log_alpha: Float[Array, "n n"], num_iters: int) -> Float[Array, "n n"]:
    """Sinkhorn normalization in log space: alternately normalize rows and
    columns of `exp(log_alpha)`, approaching a doubly stochastic matrix (Adams &
    Zemel, 2011; Mena et al., 2018)."""
    for _ in range(num_iters):
        log_alpha = log_alpha - logsumexp(log_alpha, axis=1, keepdims=True)
        log_alpha = log_alpha - logsumexp(log_alpha, axis=0, keepdims=True)
    return jnp.exp(log_alpha)


class SinkhornAttention(AbstractAttention):
    """Sparse Sinkhorn attention (Tay et al., "Sparse Sinkhorn Attention", 2020).

    The sequence is cut into blocks of `block_size`. A sorting network scores
    block pairs from block summaries `s_n` (mean of the block's real tokens),
    `R = (s W_s) sᵀ / sqrt(d)`, and Sinkhorn normalization of `R / temperature`
    gives a soft permutation `P`. Each query block then attends to its own block
    and to the sorted block `Σ_m P_nm (K_m, V_m)` (one softmax over both): memory
    `O(L · block_size + (L / block_size)²)`. No causal form here.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `block_size` (default 64), `sinkhorn_iters` (default 8), `temperature`
    (default 0.75).
    """

    proj: Projections
    sort_net: eqx.nn.Linear
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    block_size: int = eqx.field(static=True)
    sinkhorn_iters: int = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    inference: bool

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
        kp, ks = jr.split(key)
        self.proj = Projections(d_model, num_heads, key=kp)
        self.sort_net = eqx.nn.Linear(d_model, d_model, use_bias=False, key=ks)
        self.d_model, self.num_heads, self.causal, self.dropout = d_model, num_heads, causal, dropout
        self.block_size, self.sinkhorn_iters = block_size, sinkhorn_iters
        self.temperature, self.inference = temperature, inference
        self._no_causal()

    def sort_matrix(self, x: Float[Array, "L d"], mask: Array | None = None) -> Float[Array, "n n"]:
        """The soft block permutation `P`, `(num_blocks, num_blocks)`."""
        L = x.shape[0]
        b = self.block_size
        n = num_blocks(L, b)
        w = jnp.ones((L,), x.dtype) if mask is None else mask.astype(x.dtype)
        xs = _pad_rows(x * w[:, None], n * b).reshape(n, b, -1).sum(1)
        cnt = _pad_rows(w, n * b).reshape(n, b).sum(1)
        s = xs / jnp.maximum(cnt, 1.0)[:, None]
        R = jax.vmap(self.sort_net)(s) @ s.T / jnp.sqrt(jnp.asarray(self.d_model, x.dtype))
        return sinkhorn(R / self.temperature, self.sinkhorn_iters)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self._check(x, mask)
        L = x.shape[0]
        b = self.block_size
        n = num_blocks(L, b)
        km = jnp.ones((L,), bool) if mask is None else mask
        P = self.sort_matrix(x, mask)
        mb = _pad_rows(km, n * b).reshape(n, b)
        msort = (P @ mb.astype(x.dtype)) > 0
        valid = jnp.concatenate([mb, msort], axis=1)[:, None, :]  # (n, 1, 2b)

        def attend(q, k, v, kk):
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
                dropout_rate=self._rate(),
                key=kk,
            )
            return o.reshape(n * b, -1)[:L]

        q, k, v = self.proj.qkv(x)
        return self.proj.merge(map_heads(attend, self._head_keys(key), q, k, v))
