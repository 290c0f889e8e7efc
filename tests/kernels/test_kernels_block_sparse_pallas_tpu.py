"""The TPU (Mosaic) Pallas block-sparse attention kernel: interpret mode on CPU against
a float64 NumPy computation with the dense `L × L` mask built from the tile lists
(the sliding-window kernel's tests' reference, imported), forward and gradients,
with and without attention dropout, and its lowering for TPU by `jax.export` with a
BigBird list.

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; bfloat16 forward
2e-2 (inputs rounded to 8 mantissa bits, products accumulated in float32).
"""

import functools
import re

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from test_kernels_block_sparse_pallas import _visible
from test_kernels_local_attention_pallas import (
    _grads,
    _inputs,
    _reference,
    check_dropout_float64,
    check_float32,
)
from test_kernels_local_attention_pallas_tpu import check_tpu_equals_gpu

from helpers import assert_close, dropout_keep_np
from seqkit.attention._sparse import _bigbird_fixed_blocks, _longformer_tiles
from seqkit.kernels._block_sparse_pallas import block_sparse_attention_pallas
from seqkit.kernels._block_sparse_pallas_tpu import block_sparse_attention_pallas_tpu, unsupported


def _allowed(L, B, block_idx, causal, key_mask=None):
    """The dense mask: key j is seen by query i when j's tile is listed for i's tile
    (entries outside [0, nb) ignored), `j <= i` when causal, and the key is real."""
    return _visible(L, B, block_idx, causal, key_mask=key_mask)


# 5 tiles of 8 (L = 37, the last tile ragged): repeats, −1 and out-of-range entries,
# an empty list (tile 3 under causal keeps only tile 3), a tile listed by every
# query tile (tile 0, a global block), a list in descending order.
IDX = np.array([[0, 1, -1, 0], [1, 1, 0, 7], [4, 2, 0, -3], [-1, -1, -1, -1], [0, 4, 3, 2]])


def _check(fn, batch, L, B, dk, dv, idx, causal, km):
    q, k, v, g = _inputs(batch, L, dk, dv)
    return check_float32(fn, q, k, v, g, _allowed(L, B, idx, causal, km))  # the rows with no key


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


# --- attention dropout ------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_dropout_forward_and_grads_match_dense_float64(x64, causal):
    # The keep mask from the stream's NumPy definition over the whole L × L grid, rows
    # the flattened batch (2 × 2); the messy lists, a key mask with an empty row.
    L, B, rate, seed = 37, 8, 0.3, 2024
    batch = (2, 2)
    q, k, v, g = _inputs(batch, L, 4, 4, seed=4)
    km = np.ones((*batch, L), bool)
    km[1, 0, 8:16] = False
    allowed = _allowed(L, B, IDX, causal, km)
    drop = dropout_keep_np(seed, 4, L, L, rate).reshape(*batch, L, L) / (1 - rate)
    fn = functools.partial(
        block_sparse_attention_pallas_tpu,
        block_idx=jnp.asarray(IDX),
        key_mask=jnp.asarray(km),
        block_size=B,
        causal=causal,
        dropout_rate=rate,
        dropout_seed=jnp.uint32(seed),
        interpret=True,
    )
    check_dropout_float64(fn, q, k, v, g, allowed, drop)


def test_dropout_tpu_interpreter_equals_the_gpu_kernel():
    # One seed, one stream: on a traced BigBird-like list (tiles of 128 in the TPU
    # interpreter) the TPU kernel and the GPU kernel drop the same weights, forward
    # and backward.
    L, B, rate = 300, 128, 0.2
    idx = np.array([[0, 1], [0, 2], [0, 1]])  # a global tile 0, then window/random tiles
    q, k, v, g = _inputs((2,), L, 8, 8, seed=6)
    common = dict(block_idx=jnp.asarray(idx), block_size=B, dropout_rate=rate, dropout_seed=jnp.uint32(77))
    tpu = functools.partial(block_sparse_attention_pallas_tpu, **common, interpret=pltpu.InterpretParams())
    gpu = functools.partial(block_sparse_attention_pallas, **common, interpret=True)
    drop = dropout_keep_np(77, 2, L, L, rate) / (1 - rate)
    check_tpu_equals_gpu(tpu, gpu, q, k, v, g, _allowed(L, B, idx, False), drop)


@pytest.mark.parametrize("rate", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_band_and_global_keys_match_dense_float64(x64, causal, rate):
    # Longformer's pattern: its tile lists, and inside them the band or a global key
    # (3 global keys, a band reaching across tiles of 8, ragged L, a masked key span).
    L, B, G, seed = 37, 8, 3, 11
    band = (5, 0 if causal else 4)
    idx = _longformer_tiles(L, B, *band, G)
    q, k, v, g = _inputs((2,), L, 4, 4, seed=8)
    km = np.ones((2, L), bool)
    km[1, 20:27] = False
    allowed = _visible(L, B, idx, causal, band, G, km)
    drop = dropout_keep_np(seed, 2, L, L, rate) / (1 - rate) if rate else None
    o_ref, grads_ref = _reference(q, k, v, g, allowed, drop)
    fn = functools.partial(
        block_sparse_attention_pallas_tpu,
        block_idx=jnp.asarray(idx),
        key_mask=jnp.asarray(km),
        block_size=B,
        causal=causal,
        band=band,
        num_global_keys=G,
        dropout_rate=rate,
        dropout_seed=jnp.uint32(seed),
        interpret=True,
    )
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    assert_close(fn(*qkv), o_ref, rtol=1e-10)
    for got, want in zip(_grads(fn, jnp.asarray(g), *qkv), grads_ref, strict=True):
        assert_close(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "platform, dtype, dropout, block_size, match",
    [
        ("gpu", jnp.float32, False, 128, "written for TPU \\(Mosaic\\) and interpret mode, not gpu"),
        ("tpu", jnp.float64, False, 128, "computes in float32 on tpu; got float64"),
        ("tpu", jnp.float16, False, 128, "dtype float16 is not supported on tpu"),
        ("tpu", jnp.float32, False, 64, "multiple of 128 on tpu, got 64"),
        ("cpu", jnp.float32, False, 0, "positive integer, got 0"),
    ],
)
def test_unsupported(platform, dtype, dropout, block_size, match):
    assert unsupported(jnp.bfloat16, False, 256, "tpu") is None
    assert unsupported(jnp.float64, False, 3, "cpu") is None
    assert unsupported(jnp.float32, True, 128, "tpu") is None  # dropout is served
    assert re.search(match, unsupported(dtype, dropout, block_size, platform))


@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_attention_routes_to_the_kernel_on_tpu(monkeypatch, causal):
    """On a TPU backend `bigbird_attention` reaches this kernel (run here in interpret
    mode) with the window, global and random blocks in one list, equal to the XLA
    path; with dropout too, its seed drawn from the dropout key."""
    from seqkit.attention import _sparse

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return block_sparse_attention_pallas_tpu(*args, **{**kwargs, "interpret": True})

    monkeypatch.setattr(_sparse, "backend", lambda: "tpu")
    monkeypatch.setattr(_sparse, "block_sparse_attention_pallas_tpu", spy)
    q, k, v = (jax.random.normal(jax.random.key(i), (300, 8)) for i in range(3))
    km = jnp.arange(300) < 270
    opts = dict(block_size=128, num_random=1, num_global=1, seed=jax.random.key_data(jax.random.key(3)))
    got = _sparse.bigbird_attention(q, k, v, causal=causal, key_mask=km, impl="auto", **opts)
    want = _sparse.bigbird_attention(q, k, v, causal=causal, key_mask=km, impl="xla", **opts)
    assert [c["block_size"] for c in calls] == [128] and calls[0]["dropout_seed"] is None
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    key = jax.random.key(0)
    _sparse.bigbird_attention(q, k, v, key_mask=km, dropout_rate=0.1, key=key, **opts)
    assert len(calls) == 2 and calls[1]["dropout_rate"] == 0.1
    # the kernel's seed is the first of the dropout key's split (the second is the global rows')
    np.testing.assert_array_equal(
        jax.random.key_data(calls[1]["dropout_seed"]), jax.random.key_data(jax.random.split(key)[0])
    )


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


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_tpu(dtype, causal, dropout):
    L, B = 700, 128  # 6 tiles, the last ragged; head dimension 24 padded to 128
    nb = -(-L // B)
    fixed = jnp.asarray(_bigbird_fixed_blocks(nb, 1, causal), jnp.int32)
    q = jnp.zeros((2, L, 24), dtype)
    km = jnp.ones((2, L), bool)

    def fwd(q, k, v, rand):
        idx = jnp.concatenate([fixed, rand], axis=1)  # BigBird: global, window, random blocks
        return block_sparse_attention_pallas_tpu(
            q, k, v, idx, km, block_size=B, causal=causal, dropout_rate=dropout, dropout_seed=jnp.uint32(5)
        )

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


def test_exports_longformer_with_dropout_for_tpu():
    # Longformer's band and global keys, with dropout (the route longformer_attention
    # takes on TPU when splash cannot serve it); bfloat16, ragged L.
    L, B, G = 700, 128, 2
    q = jnp.zeros((2, L, 24), jnp.bfloat16)
    idx = jnp.asarray(_longformer_tiles(L, B, 100, 100, G))
    fwd = functools.partial(
        block_sparse_attention_pallas_tpu,
        block_idx=idx,
        block_size=B,
        band=(100, 100),
        num_global_keys=G,
        dropout_rate=0.1,
        dropout_seed=jnp.uint32(5),
    )
    grad = jax.grad(lambda *a: jnp.sum(fwd(*a).astype(jnp.float32) ** 2), argnums=(0, 1, 2))
    for fn, kernels in ((fwd, 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(q, q, q)
        assert exported.mlir_module().count("tpu_custom_call") == kernels
