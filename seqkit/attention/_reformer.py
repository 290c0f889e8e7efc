"""Reformer: LSH attention with shared query-key projections."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._base import AbstractAttention, Projections, map_heads
from ._blocks import _pad_rows
from ._core import merge_attention, softmax_attend

# The Reformer paper masks attention to oneself unless nothing else is allowed:
# a large finite penalty instead of −inf keeps such rows defined.
SELF_PENALTY = 1e4


def lsh_buckets(x: Float[Array, "L d"], rotations: Float[Array, "d nb2"]) -> Int[Array, " L"]:
    """Angular LSH: `h(x) = argmax([x R; −x R])` (Andoni et al., 2015), with
    `2 · nb2` buckets."""
    xr = x @ rotations
    return jnp.argmax(jnp.concatenate([xr, -xr], axis=-1), axis=-1)


def lsh_attention(
    q: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    rotations: Float[Array, "r dk nb2"],
    *,
    chunk_size: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "L dv"]:
    """LSH attention with shared QK, one head (Kitaev et al., "Reformer: The
    Efficient Transformer", 2020). Keys are the unit-normalized queries. For each
    of `r` hash rounds, positions are sorted by (bucket, position) and cut into
    chunks of `chunk_size`; each chunk attends to itself and the previous chunk
    (memory `O(r · L · chunk_size)`), attending to oneself only when nothing else
    is allowed. The rounds are merged through their log normalizers.
    """
    L = q.shape[0]
    c = chunk_size
    n = -(-L // c)
    Lp = n * c
    km = _pad_rows(jnp.ones((L,), bool) if key_mask is None else key_mask, Lp)
    qp, vp = _pad_rows(q, Lp), _pad_rows(v, Lp)
    kp = qp / (jnp.linalg.norm(qp, axis=-1, keepdims=True) + 1e-6)
    pos = jnp.arange(Lp)
    keys = [None] * rotations.shape[0] if key is None else list(jr.split(key, rotations.shape[0]))
    outs, lses = [], []
    for r in range(rotations.shape[0]):
        bucket = lsh_buckets(jax.lax.stop_gradient(kp), rotations[r])
        # padded positions sort after every real one, so they never share or shift chunks
        bucket = jnp.where(km, bucket, 2 * rotations.shape[-1])
        order = jnp.argsort(bucket * Lp + pos)
        inv = jnp.argsort(order)
        sq, sk, sv = qp[order].reshape(n, c, -1), kp[order].reshape(n, c, -1), vp[order].reshape(n, c, -1)
        sp, sm = pos[order].reshape(n, c), km[order].reshape(n, c)

        def with_prev(a):
            return jnp.concatenate([jnp.roll(a, 1, axis=0), a], axis=1)

        kk, vv, kpos, kmask = with_prev(sk), with_prev(sv), with_prev(sp), with_prev(sm)
        qpos = sp[:, :, None]
        valid = kmask[:, None, :]
        if n == 1:  # the "previous" chunk is the chunk itself: count it once
            valid = valid & (jnp.arange(2 * c) >= c)[None, None, :]
        if causal:
            valid = valid & (kpos[:, None, :] <= qpos)
        s = jnp.einsum("nqd,nkd->nqk", sq, kk) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
        s = s - SELF_PENALTY * (kpos[:, None, :] == qpos).astype(s.dtype)
        o, lse = softmax_attend(s, vv, valid, dropout_rate=dropout_rate, key=keys[r])
        outs.append(o.reshape(Lp, -1)[inv][:L])
        lses.append(lse.reshape(Lp)[inv][:L])
    return merge_attention(outs, lses)[0]


class ReformerAttention(AbstractAttention):
    """Reformer LSH self-attention (Kitaev et al., "Reformer: The Efficient
    Transformer", 2020): shared query-key projection, `num_hashes` rounds of
    angular LSH with fixed random rotations (regenerated from a stored seed),
    attention within sorted chunks and the previous chunk. Memory
    `O(num_hashes · L · chunk_size)`. `causal=True` masks `j > i`.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `chunk_size` (default 32), `num_hashes` (default 2), `num_buckets` (default
    `None`: about `L / chunk_size`, rounded up to even).
    """

    proj: Projections
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)
    num_hashes: int = eqx.field(static=True)
    num_buckets: int | None = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        chunk_size: int = 32,
        num_hashes: int = 2,
        num_buckets: int | None = None,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if num_buckets is not None and (num_buckets < 2 or num_buckets % 2):
            raise ValueError(f"num_buckets must be even and >= 2, got {num_buckets}")
        kp, ks = jr.split(key)
        self.proj = Projections(d_model, num_heads, key=kp)
        self.d_model, self.num_heads, self.causal, self.dropout = d_model, num_heads, causal, dropout
        self.chunk_size, self.num_hashes, self.num_buckets = chunk_size, num_hashes, num_buckets
        self.seed = int(jr.randint(ks, (), 0, 2**31 - 1))
        self.inference = inference

    def rotations(self, L: int) -> Float[Array, "h r dh nb2"]:
        nbk = self.num_buckets or max(2, 2 * -(-L // (2 * self.chunk_size)))
        dh = self.d_model // self.num_heads
        shape = (self.num_heads, self.num_hashes, dh, nbk // 2)
        return jr.normal(jr.key(self.seed), shape, self.proj.query.weight.dtype)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self._check(x, mask)
        q = self.proj.split(self.proj.query, x)
        v = self.proj.split(self.proj.value, x)
        rate = self._rate()
        o = map_heads(
            lambda q, v, R, kk: lsh_attention(
                q,
                v,
                R,
                chunk_size=self.chunk_size,
                causal=self.causal,
                key_mask=mask,
                dropout_rate=rate,
                key=kk,
            ),
            self._head_keys(key),
            q,
            v,
            self.rotations(x.shape[0]),
        )
        return self.proj.merge(o)
