"""Reformer: LSH attention with shared query-key projections."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, UInt32

from seqkit._checks import at_least

from ._base import AbstractAttention, AttentionHeads, as_key, key_data
from ._blocks import _pad_rows
from ._core import merge_attention, softmax_attend

# The Reformer paper masks attention to oneself unless nothing else is allowed:
# a large finite penalty instead of −inf keeps such rows defined.
SELF_PENALTY = 1e4


def lsh_buckets(
    x: Float[Array, "L d"], rotations: Float[Array, "d nb2"], num_active: Int[Array, ""] | int | None = None
) -> Int[Array, " L"]:
    """Angular LSH: `h(x) = argmax([x R; −x R])` (Andoni et al., "Practical and
    Optimal LSH for Angular Distance", 2015), with `2 · nb2` buckets; with
    `num_active`, only the first `num_active` columns of `R` (and their
    negatives) are buckets."""
    xr = x @ rotations
    if num_active is None:
        return jnp.argmax(jnp.concatenate([xr, -xr], axis=-1), axis=-1)
    on = jnp.arange(xr.shape[-1]) < num_active
    neg_inf = jnp.full_like(xr, -jnp.inf)
    return jnp.argmax(jnp.concatenate([jnp.where(on, xr, neg_inf), jnp.where(on, -xr, neg_inf)], -1), -1)


def lsh_attention(
    q: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    rotations: Float[Array, "r dk nb2"],
    *,
    chunk_size: int,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    num_active: Int[Array, ""] | int | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "L dv"]:
    """LSH attention with shared QK, one head (Kitaev et al., "Reformer: The
    Efficient Transformer", 2020). Keys are the unit-normalized queries. For each
    of `r` hash rounds, positions are sorted by (bucket, position) and cut into
    chunks of `chunk_size`; each chunk attends to itself and the previous chunk
    (memory `O(r · L · chunk_size)`), attending to oneself only when nothing else
    is allowed. The result is softmax attention over the union of the rounds'
    keys, each key counted once: round `r` scores key `j` of query `i` as
    `q_i · k_j / √d − log N_ij`, `N_ij` the number of rounds in which `i` sees
    `j`, and the rounds are merged through their log normalizers (the paper's
    multi-round deduplication, its appendix A).

    `causal=True` masks `j > i` within the chunks, as the Reformer paper does for
    language modelling; the chunks themselves are cut from every position's
    bucket, so a later position still changes which earlier keys a query sees
    (the modules refuse that form).

    Padded positions (`key_mask` False) sort after every real one and never
    share a chunk with them; the first chunk's "previous" chunk is the last one
    that holds a real position. So the real positions' chunks, and outputs, are
    those of the unpadded sequence. `num_active` (see
    [`seqkit.attention.lsh_buckets`][]) limits the buckets in use.
    """
    at_least(1, chunk_size=chunk_size)
    L = q.shape[0]
    c = chunk_size
    n = -(-L // c)
    Lp = n * c
    km = _pad_rows(jnp.ones((L,), bool) if key_mask is None else key_mask, Lp)
    qp, vp = _pad_rows(q, Lp), _pad_rows(v, Lp)
    kp = qp / (jnp.linalg.norm(qp, axis=-1, keepdims=True) + 1e-6)
    pos = jnp.arange(Lp)
    # previous chunk of each chunk, wrapping around among the chunks of real positions
    chunk = jnp.arange(n)
    n_real = jnp.maximum(-(-jnp.sum(km) // c), 1)
    prev = jnp.where(chunk == 0, n_real - 1, chunk - 1)
    # a chunk that is its own previous one (a single real chunk) counts it once
    once = ~((prev == chunk)[:, None, None] & (jnp.arange(2 * c) < c)[None, None, :])
    rounds = rotations.shape[0]
    keys = [None] * rounds if key is None else list(jr.split(key, rounds))
    orders = []
    for r in range(rounds):
        bucket = lsh_buckets(jax.lax.stop_gradient(kp), rotations[r], num_active)
        # padded positions sort after every real one, so they never share or shift chunks
        bucket = jnp.where(km, bucket, 2 * rotations.shape[-1])
        orders.append(jnp.argsort(bucket * Lp + pos))
    invs = [jnp.argsort(order) for order in orders]
    # each position's chunk in every round: `i` sees `j` in round r when j's chunk is
    # i's or the one before it
    chunk_of = jnp.stack(invs) // c  # (rounds, Lp)

    def times_seen(qpos, kpos):  # N_ij for the (n, c) queries and (n, 2c) keys of a round
        qc, kc = chunk_of[:, qpos][..., None], chunk_of[:, kpos][:, :, None, :]
        return jnp.sum((kc == qc) | (kc == prev[qc]), axis=0)

    outs, lses = [], []
    for r, (order, inv) in enumerate(zip(orders, invs, strict=True)):
        sq, sk, sv = qp[order].reshape(n, c, -1), kp[order].reshape(n, c, -1), vp[order].reshape(n, c, -1)
        sp, sm = pos[order].reshape(n, c), km[order].reshape(n, c)

        def with_prev(a):
            return jnp.concatenate([a[prev], a], axis=1)

        kk, vv, kpos, kmask = with_prev(sk), with_prev(sv), with_prev(sp), with_prev(sm)
        qpos = sp[:, :, None]
        valid = kmask[:, None, :] & once
        if causal:
            valid = valid & (kpos[:, None, :] <= qpos)
        s = jnp.einsum("nqd,nkd->nqk", sq, kk) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
        s = s - SELF_PENALTY * (kpos[:, None, :] == qpos).astype(s.dtype)
        if rounds > 1:  # a key seen in N rounds counts once in the merged result
            s = s - jnp.log(jnp.maximum(times_seen(sp, kpos), 1)).astype(s.dtype)
        o, lse = softmax_attend(s, vv, valid, dropout_rate=dropout_rate, key=keys[r])
        outs.append(o.reshape(Lp, -1)[inv][:L])
        lses.append(lse.reshape(Lp)[inv][:L])
    return merge_attention(outs, lses)[0]


class ReformerAttention(AbstractAttention):
    """Reformer LSH self-attention (Kitaev et al., "Reformer: The Efficient
    Transformer", 2020): shared query-key projection (there is no key map),
    `num_hashes` rounds of angular LSH with fixed random rotations, attention
    within sorted chunks and the previous chunk. Memory
    `O(num_hashes · L · chunk_size)`.

    There is no causal form: masking `j > i` inside the chunks (the paper's
    language-model setting) leaves the chunks cut from every position's bucket, so
    a later token moves which earlier keys a query sees, and the bucket count
    follows the whole length; `causal=True` raises.

    The rotations are regenerated on every call from the raw key bits stored in
    `seed` (an integer array: never trained, and `eqx.filter_vmap` can build a
    stack of layers), one column per bucket pair, so a longer sequence adds
    columns without changing the earlier ones. With `num_buckets=None` the
    buckets in use follow the number of *real* tokens `n`,
    `2 · max(1, ceil(n / (2 · chunk_size)))`; with the padded positions sorted
    last (see [`seqkit.attention.lsh_attention`][]), a sequence padded at the
    end gives its real positions the same outputs as the unpadded one, whatever
    the lengths.

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `chunk_size` (default 32), `num_hashes` (default 2), `num_buckets` (default
    `None`: about `n / chunk_size`, rounded up to even).
    """

    heads: AttentionHeads
    seed: UInt32[Array, "..."]
    chunk_size: int = eqx.field(static=True)
    num_hashes: int = eqx.field(static=True)
    num_buckets: int | None = eqx.field(static=True)

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
        at_least(1, chunk_size=chunk_size, num_hashes=num_hashes)
        kp, ks = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, qk="shared", key=kp
        )
        self.seed = key_data(ks)
        self.chunk_size = chunk_size
        self.num_hashes = num_hashes
        self.num_buckets = num_buckets
        self._no_causal(
            "its LSH chunks are cut from every position's bucket, so a later token changes "
            "which earlier keys a query sees (a causal mask inside the chunks does not hide it)"
        )

    def rotations(self, L: int) -> Float[Array, "h r dh nb2"]:
        """The random rotations for a sequence of length `L`: column `j` (bucket
        pair `j`) is drawn from `seed` and `j` alone."""
        nb2 = self.num_buckets // 2 if self.num_buckets else max(1, -(-L // (2 * self.chunk_size)))
        h = self.num_heads
        shape = (h, self.num_hashes, self.d_model // h)
        key = as_key(self.seed)
        dt = self.proj.value.weight.dtype
        cols = jax.vmap(lambda j: jr.normal(jr.fold_in(key, j), shape, dt))(jnp.arange(nb2))
        return jnp.moveaxis(cols, 0, -1)

    def _pattern(self, q, k, v, R, *, key_mask, dropout_rate, key):
        num_active = None
        if self.num_buckets is None and key_mask is not None:
            num_active = jnp.maximum(-(-jnp.sum(key_mask) // (2 * self.chunk_size)), 1)
        return lsh_attention(
            q,  # shared QK: the keys are these queries, normalized
            v,
            R,
            chunk_size=self.chunk_size,
            key_mask=key_mask,
            num_active=num_active,
            dropout_rate=dropout_rate,
            key=key,
        )

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token."""
        x, mask = self.heads.check(x, mask)
        return self._attend(self._pattern, x, mask, key, self.rotations(x.shape[0]))
