"""Block-sparse attention as gathered blocks: each query block attends to a
short list of key blocks, gathered into a `(num_blocks, g·b)` key set. No
`L × L` array is ever built; memory is `O(L · g · b)`."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._core import attention_with_lse


def num_blocks(L: int, block_size: int) -> int:
    return -(-L // block_size)


def _pad_rows(x: Array, n: int) -> Array:
    pad = n - x.shape[0]
    if pad == 0:
        return x
    return jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))


def gathered_block_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    block_idx: Int[Array, "nb g"] | np.ndarray,
    *,
    block_size: int,
    key_mask: Bool[Array, " L"] | None = None,
    causal: bool = False,
    allowed=None,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> tuple[Float[Array, "L dv"], Float[Array, " L"]]:
    """Attention where query block `n` sees the key blocks `block_idx[n]`.

    The sequence is cut into `nb = ceil(L / b)` blocks of `b = block_size`
    (the tail is padded and masked; a `block_size >= L` is one block of `L`). Entries of `block_idx` outside
    `[0, nb)` are ignored, and a block listed twice for the same query block
    counts once. Within the gathered keys, `allowed(qpos, kpos)` (broadcast
    integer positions) may restrict the pattern further; `causal` keeps
    `kpos <= qpos`.

    **Arguments:**

    - `q`, `k`, `v`: one head, `(L, dk)`, `(L, dk)`, `(L, dv)`.
    - `block_idx`: `(nb, g)` integer key-block indices per query block.
    - `block_size`: `b`.
    - `key_mask`: optional `(L,)`, `True` = real token.
    - `causal`, `allowed`, `scale`, `dropout_rate`, `key`: as above and in
      [`seqkit.attention.dot_product_attention`][].

    **Returns:** `(o, lse)`, `(L, dv)` and `(L,)`; the log normalizers let this
    part be merged with attention over a disjoint key set.
    """
    L = q.shape[0]
    # A block at least as long as the sequence is one block of L: the same positions
    # and result, without padding (and memory) growing with the block size.
    b = min(block_size, L)
    nb = num_blocks(L, b)
    Lp = nb * b
    idx = jnp.asarray(block_idx)
    if idx.shape[0] != nb:
        raise ValueError(f"expected block_idx with {nb} rows (one per query block), got {idx.shape}")
    g = idx.shape[1]
    kmask = jnp.ones((L,), bool) if key_mask is None else key_mask
    qb = _pad_rows(q, Lp).reshape(nb, b, -1)
    kb = _pad_rows(k, Lp).reshape(nb, b, -1)
    vb = _pad_rows(v, Lp).reshape(nb, b, -1)
    mb = _pad_rows(kmask, Lp).reshape(nb, b)

    in_range = (idx >= 0) & (idx < nb)
    earlier = jnp.tril(jnp.ones((g, g), bool), -1)
    dup = jnp.any((idx[:, :, None] == idx[:, None, :]) & earlier[None] & in_range[:, None, :], axis=-1)
    slot_ok = in_range & ~dup  # (nb, g)
    ic = jnp.clip(idx, 0, nb - 1)
    kg = kb[ic].reshape(nb, g * b, -1)
    vg = vb[ic].reshape(nb, g * b, -1)
    ok = (mb[ic] & slot_ok[:, :, None]).reshape(nb, g * b)
    kpos = (ic[:, :, None] * b + jnp.arange(b)).reshape(nb, 1, g * b)
    qpos = (jnp.arange(nb)[:, None] * b + jnp.arange(b)).reshape(nb, b, 1)
    valid = jnp.broadcast_to(ok[:, None, :], (nb, b, g * b))
    if causal:
        valid = valid & (kpos <= qpos)
    if allowed is not None:
        valid = valid & allowed(qpos, kpos)
    o, lse = attention_with_lse(qb, kg, vg, valid, scale=scale, dropout_rate=dropout_rate, key=key)
    return o.reshape(Lp, -1)[:L], lse.reshape(Lp)[:L]


def band_attention(
    q: Float[Array, "L dk"],
    k: Float[Array, "L dk"],
    v: Float[Array, "L dv"],
    *,
    lo: int,
    hi: int,
    key_mask: Bool[Array, " L"] | None = None,
    exclude_below: int = 0,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> tuple[Float[Array, "L dv"], Float[Array, " L"]]:
    """Sliding-window attention: query `i` sees keys `i − lo <= j <= i + hi`
    (and `j >= exclude_below`), computed on blocks of `b = max(lo, hi, 1)` that
    gather the previous, own and next block.

    **Returns:** `(o, lse)` as in [`seqkit.attention.gathered_block_attention`][].
    """
    L = q.shape[0]
    b = max(lo, hi, 1)
    nb = num_blocks(L, b)
    n = np.arange(nb)[:, None]
    offsets = [o for o, need in ((-1, lo > 0), (0, True), (1, hi > 0)) if need]
    idx = n + np.asarray(offsets)[None, :]

    def allowed(qp, kp):
        d = kp - qp
        ok = (d >= -lo) & (d <= hi)
        return ok & (kp >= exclude_below) if exclude_below else ok

    return gathered_block_attention(
        q,
        k,
        v,
        idx,
        block_size=b,
        key_mask=key_mask,
        allowed=allowed,
        scale=scale,
        dropout_rate=dropout_rate,
        key=key,
    )
