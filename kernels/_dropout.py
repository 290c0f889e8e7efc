"""Attention dropout as a counter-based, stateless random stream, shared by the XLA
attention paths and the Pallas kernels.

Whether the weight of (row r, query i, key j) is kept is a hash of (seed, r, i, j)
alone, so a forward pass and its backward pass recompute the same keep mask tile
by tile, nothing of size L × L is ever stored, and the mask does not depend on how
the work is cut into tiles or chunks (the idea of Salmon et al., "Parallel Random
Numbers: As Easy as 1, 2, 3", 2011, with a cheaper mixer). The mixer is the 32-bit
finalizer of Appleby's MurmurHash3: uint32 multiplies, xors and logical shifts,
which XLA, Triton, Mosaic and interpret mode all lower. On a CPU it is several
times cheaper than drawing the mask from `jax.random` (threefry)."""

import jax
import jax.numpy as jnp
import numpy as np

_FMIX_M1 = np.uint32(0x85EBCA6B)
_FMIX_M2 = np.uint32(0xC2B2AE35)
# odd constants (xxHash's 32-bit primes) that spread the row, query and key counters
_ROW_MULT = np.uint32(0x9E3779B1)
_QUERY_MULT = np.uint32(0x85EBCA77)
_KEY_MULT = np.uint32(0xC2B2AE3D)
# keep when the top 24 bits of the hash reach round(rate · 2²⁴): a signed int32
# comparison, the same on every backend
_DROPOUT_BITS = 24


def fmix32(x):
    """MurmurHash3's 32-bit finalizer, a bijection of `uint32` with full avalanche."""
    x = x ^ (x >> 16)
    x = x * _FMIX_M1
    x = x ^ (x >> 13)
    x = x * _FMIX_M2
    return x ^ (x >> 16)


def dropout_hash(seed, row, qpos, kpos):
    """`uint32` hash of `(seed, row, qpos, kpos)`, elementwise over the broadcast of
    the integer (non-negative) positions `qpos` and `kpos`: `(Bq, 1)` and
    `(1, Bk)` for a tile with queries along its rows, `(1, Bq)` and `(Bk, 1)` for
    a transposed one (keys along rows). The seed is mixed, then the row, the
    query and the key are each multiplied by an odd constant, xored in and mixed
    again. `seed`, `row`: scalars."""
    u32 = jnp.uint32
    a = fmix32(fmix32(jnp.asarray(seed).astype(u32)) ^ (jnp.asarray(row).astype(u32) * _ROW_MULT))
    b = fmix32(a ^ (qpos.astype(u32) * _QUERY_MULT))
    return fmix32(b ^ (kpos.astype(u32) * _KEY_MULT))


def dropout_threshold(rate: float) -> int:
    """The integer threshold of the keep test for dropout rate `0 <= rate < 1`."""
    return int(round(float(rate) * (1 << _DROPOUT_BITS)))


def dropout_keep(seed, row, qpos, kpos, rate: float):
    """Boolean, shaped as `dropout_hash`: is the weight of (row, query `qpos`, key
    `kpos`) kept? `True` with probability `1 − rate` (to `2⁻²⁴`), independently per
    entry."""
    h = dropout_hash(seed, row, qpos, kpos) >> (32 - _DROPOUT_BITS)
    return h.astype(jnp.int32) >= dropout_threshold(rate)


def dropped(rate: float, seed, row, qpos, kpos, *xs):
    """`x ⊙ z / (1 − rate)` for each score-shaped array `x` of `xs` under dropout
    (`rate > 0`; one keep mask `z` from `dropout_keep`, hashed once), else the `xs`
    as they are; a tuple. What a kernel multiplies a tile's softmax weights (and,
    backward, `do vᵀ`) by."""
    if not rate:
        return xs
    keep = dropout_keep(seed, row, qpos, kpos, rate)
    zc = jnp.where(keep, jnp.asarray(1.0 / (1.0 - rate), xs[0].dtype), jnp.asarray(0.0, xs[0].dtype))
    return tuple(x * zc for x in xs)


def dropout_seed_array(seed) -> jax.Array:
    """The `(1,)` `uint32` seed a kernel reads: from a `uint32` (or other integer)
    scalar as it is, from a PRNG key (typed, or the raw bits of one) by
    `jax.random.bits`; zeros for `None`."""
    if seed is None:
        return jnp.zeros((1,), jnp.uint32)
    seed = jnp.asarray(seed)
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return jax.random.bits(seed, (1,), jnp.uint32)
    if not jnp.issubdtype(seed.dtype, jnp.integer):
        raise ValueError(
            f"expected dropout_seed an integer scalar or a PRNG key, got {seed.dtype} {seed.shape}"
        )
    if seed.ndim == 0:
        return seed.astype(jnp.uint32).reshape(1)
    return jax.random.bits(jax.random.wrap_key_data(seed.astype(jnp.uint32)), (1,), jnp.uint32)
