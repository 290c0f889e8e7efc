"""The TPU (Mosaic) Pallas block-sparse attention kernel: interpret mode on CPU against
a float64 NumPy computation with the dense `L × L` mask built from the tile lists,
forward and gradients, and its lowering for TPU by `jax.export` with a BigBird list.

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; bfloat16 forward
2e-2 (inputs rounded to 8 mantissa bits, products accumulated in float32).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from helpers import assert_close
from seqkit.attention._sparse import _bigbird_fixed_blocks
from seqkit.kernels._block_sparse_pallas_tpu import block_sparse_attention_pallas_tpu, unsupported


def _allowed(L, B, block_idx, causal, key_mask=None):
    """The dense mask: key j is seen by query i when j's tile is listed for i's tile
    (entries outside [0, nb) ignored), `j <= i` when causal, and the key is real."""
    nb = -(-L // B)
    tiles = np.zeros((nb, nb), bool)
    for n, row in enumerate(np.asarray(block_idx)):
        for m in row:
            if 0 <= m < nb:
                tiles[n, m] = True
    pos = np.arange(L) // B
    m = tiles[pos[:, None], pos[None, :]]
    if causal:
        m = m & (np.arange(L)[None, :] <= np.arange(L)[:, None])
    return m if key_mask is None else m & key_mask[..., None, :]


def _reference(q, k, v, g, allowed):
    """Float64 `o` and the cotangents `(dq, dk, dv)` of `Σ g ⊙ o`; a row with no
    allowed key has zero weights (zero output, no gradient)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.where(allowed, np.einsum("...qd,...kd->...qk", q, k) * scale, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    den = p.sum(-1, keepdims=True)
    p = p / np.where(den > 0, den, 1.0)
    o = p @ v
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dv = np.swapaxes(p, -1, -2) @ g
    return o, (dq, dk, dv)


def _inputs(batch, L, dk, dv, seed=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.normal(size=(*batch, L, dk)) for _ in range(2))
    v, g = (rng.normal(size=(*batch, L, dv)) for _ in range(2))
    return q, k, v, g


def _grads(fn, g, *qkv):
    return jax.grad(lambda q, k, v: jnp.sum(g * fn(q, k, v)), argnums=(0, 1, 2))(*qkv)


# 5 tiles of 8 (L = 37, the last tile ragged): repeats, −1 and out-of-range entries,
# an empty list (tile 3 under causal keeps only tile 3), a tile listed by every
# query tile (tile 0, a global block), a list in descending order.
IDX = np.array([[0, 1, -1, 0], [1, 1, 0, 7], [4, 2, 0, -3], [-1, -1, -1, -1], [0, 4, 3, 2]])


def _check(fn, batch, L, B, dk, dv, idx, causal, km):
    q, k, v, g = _inputs(batch, L, dk, dv)
    allowed = _allowed(L, B, idx, causal, km)
    o_ref, grads_ref = _reference(q, k, v, g, allowed)
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, g)]
    out = fn(*f32[:3])
    assert out.shape == (*batch, L, dv) and out.dtype == jnp.float32
    assert_close(out, o_ref, rtol=2e-5)
    grads = _grads(fn, f32[3], *f32[:3])
    for got, want, x in zip(grads, grads_ref, f32[:3], strict=True):
        assert got.shape == x.shape and got.dtype == jnp.float32
        assert_close(got, want, rtol=1e-4, atol=1e-6)
    empty = ~allowed.any(-1)  # rows with no allowed key: zero output, zero query gradients
    assert np.all(np.asarray(out)[empty] == 0.0)
    assert np.all(np.asarray(grads[0])[empty] == 0.0)
    return empty


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_forward_and_grads_match_dense_float64(causal):
    L, B = 37, 8
    km = np.ones((2, L), bool)
    km[1, 8:16] = False  # tile 1 of row 1 masked: its query tile under causal (0, 1 listed) sees nothing
    fn = functools.partial(
        block_sparse_attention_pallas_tpu,
        block_idx=jnp.asarray(IDX),
        key_mask=jnp.asarray(km),
        block_size=B,
        causal=causal,
        interpret=True,
    )
    empty = _check(fn, (2,), L, B, 8, 4, IDX, causal, km)
    assert empty.any()  # the empty list (tile 3) at least


def test_traced_list_and_tpu_interpreter():
    # The list is an argument of the jitted function (traced, as BigBird's random
    # blocks); the TPU interpreter simulates VMEM scratch (NaN until written) and the
    # scalar-prefetch tables, and raises on out-of-bounds block reads.
    L, B = 37, 8
    km = np.ones((1, L), bool)
    km[0, 30:] = False

    @jax.jit
    def fn_idx(q, k, v, idx):
        return block_sparse_attention_pallas_tpu(
            q, k, v, idx, jnp.asarray(km), block_size=B, causal=True, interpret=pltpu.InterpretParams()
        )

    def fn(q, k, v):
        return fn_idx(q, k, v, jnp.asarray(IDX, jnp.int32))

    _check(fn, (1,), L, B, 8, 8, IDX, True, km)


def test_bfloat16_forward():
    q, k, v, _ = _inputs((), 20, 16, 16, seed=2)
    idx = np.array([[0, 2], [1, 0], [2, 1]])
    qkv = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    out = block_sparse_attention_pallas_tpu(*qkv, idx, block_size=8, interpret=True)
    assert out.dtype == jnp.bfloat16
    rounded = [np.asarray(a, np.float64) for a in qkv]
    o_ref, _ = _reference(*rounded, np.zeros((20, 16)), _allowed(20, 8, idx, False))
    assert_close(np.asarray(out, np.float64), o_ref, rtol=2e-2)


@pytest.mark.parametrize(
    "platform, dtype, dropout, block_size, match",
    [
        ("gpu", jnp.float32, False, 128, "written for TPU \\(Mosaic\\) and interpret mode, not gpu"),
        ("tpu", jnp.float64, False, 128, "computes in float32 on tpu; got float64"),
        ("tpu", jnp.float16, False, 128, "dtype float16 is not supported on tpu"),
        ("tpu", jnp.float32, True, 128, "dropout is not implemented"),
        ("tpu", jnp.float32, False, 64, "multiple of 128 on tpu, got 64"),
        ("cpu", jnp.float32, False, 0, "positive integer, got 0"),
    ],
)
def test_unsupported(platform, dtype, dropout, block_size, match):
    assert unsupported(jnp.bfloat16, False, 256, "tpu") is None
    assert unsupported(jnp.float64, False, 3, "cpu") is None
    assert re.search(match, unsupported(dtype, dropout, block_size, platform))


@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_attention_routes_to_the_kernel_on_tpu(monkeypatch, causal):
    """On a TPU backend `bigbird_attention` reaches this kernel (run here in interpret
    mode) with the window, global and random blocks in one list, equal to the XLA
    path; with dropout it keeps to XLA."""
    from seqkit.attention import _sparse

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["block_size"])
        return block_sparse_attention_pallas_tpu(*args, **{**kwargs, "interpret": True})

    monkeypatch.setattr(_sparse, "backend", lambda: "tpu")
    monkeypatch.setattr(_sparse, "block_sparse_attention_pallas_tpu", spy)
    q, k, v = (jax.random.normal(jax.random.key(i), (300, 8)) for i in range(3))
    km = jnp.arange(300) < 270
    opts = dict(block_size=128, num_random=1, num_global=1, seed=jax.random.key_data(jax.random.key(3)))
    got = _sparse.bigbird_attention(q, k, v, causal=causal, key_mask=km, impl="auto", **opts)
    want = _sparse.bigbird_attention(q, k, v, causal=causal, key_mask=km, impl="xla", **opts)
    assert calls == [128]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    _sparse.bigbird_attention(q, k, v, key_mask=km, dropout_rate=0.1, key=jax.random.key(0), **opts)
    assert calls == [128]  # dropout: XLA


def test_bad_calls_raise():
    x = jnp.ones((16, 8), jnp.float32)
    idx = jnp.zeros((2, 1), jnp.int32)
    with pytest.raises(ValueError, match="multiple of 128 on tpu, got 8"):
        block_sparse_attention_pallas_tpu(x, x, x, idx, block_size=8)
    with pytest.raises(ValueError, match="block_idx of shape"):
        block_sparse_attention_pallas_tpu(x, x, x, idx[:1], block_size=8, interpret=True)


# --- lowering for TPU without the hardware ------------------------------------------------
# jax.export runs JAX's lowering to Mosaic IR (block shapes against the (8, 128) tiling,
# scalar prefetch, every primitive's lowering rule, the grid's dimension semantics);
# the TPU compiler itself needs the hardware and is not run here.


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_tpu(dtype, causal):
    L, B = 700, 128  # 6 tiles, the last ragged; head dimension 24 padded to 128
    nb = -(-L // B)
    fixed = jnp.asarray(_bigbird_fixed_blocks(nb, 1, causal), jnp.int32)
    q = jnp.zeros((2, L, 24), dtype)
    km = jnp.ones((2, L), bool)

    def fwd(q, k, v, rand):
        idx = jnp.concatenate([fixed, rand], axis=1)  # BigBird: global, window, random blocks
        return block_sparse_attention_pallas_tpu(q, k, v, idx, km, block_size=B, causal=causal)

    def grad(q, k, v, rand):
        return jax.grad(lambda *a: jnp.sum(fwd(*a, rand).astype(jnp.float32) ** 2), argnums=(0, 1, 2))(
            q, k, v
        )

    rand = jax.ShapeDtypeStruct((nb, 2), jnp.int32)  # traced random blocks
    for fn, kernels in ((fwd, 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(q, q, q, rand)
        assert exported.platforms == ("tpu",)
        # forward: one kernel; gradient: the forward, dq and dk/dv kernels
        assert exported.mlir_module().count("tpu_custom_call") == kernels
