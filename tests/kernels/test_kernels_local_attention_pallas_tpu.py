"""The TPU (Mosaic) Pallas sliding-window attention kernel: interpret mode on CPU
against a float64 NumPy computation with the dense `L × L` window mask (the GPU
kernel's tests' reference, imported), forward and gradients, with and without
attention dropout, and its lowering for TPU by `jax.export`.

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; float64 1e-12;
bfloat16 forward 2e-2 (inputs rounded to 8 mantissa bits, products accumulated in
float32).
"""

import functools

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jaxtyping import TypeCheckError
from test_kernels_local_attention_pallas import (
    _allowed,
    _grads,
    _inputs,
    _reference,
    check_dropout_float64,
    check_float32,
)

from helpers import assert_close, dropout_keep_np
from seqkit.kernels._dispatch import Choice, choose
from seqkit.kernels._local_attention_pallas import local_attention_pallas
from seqkit.kernels._local_attention_pallas_tpu import local_attention_pallas_tpu, unsupported


def _key_mask(batch, L, span=(8, 15)):
    # Keys a..b−1 masked: with a causal window w, queries a + w .. b − 1 see no key at
    # all (8..14 and w = 2: queries 10..14; 10..145 and w = 130: queries 140..144).
    m = np.ones((*batch, L), bool)
    m[..., span[0] : span[1]] = False
    return m


# (batch, L, dk, dv, window, causal, block_size, masked key span or None). Interpret
# mode takes any tile: blocks of 8 or 4 put several key steps in a window, with steps
# off both ends of the sequence; block 128 (the TPU tile) with L = 300 gives 3 tiles
# and 5 steps (3 when causal). L is never a tile multiple; windows 0 (self only) and
# >= L (dense).
CASES = {
    "symmetric-ragged": ((2,), 37, 8, 8, 5, False, 8, None),
    "causal-ragged": ((2,), 37, 8, 8, 5, True, 8, None),
    "causal-window0-dv4": ((), 20, 8, 4, 0, True, 8, None),
    "window-covers-all": ((1,), 19, 8, 8, 40, False, 4, None),
    "default-block-batch2x2": ((2, 2), 45, 8, 16, 7, False, None, None),
    "key-mask-empty-rows": ((2,), 30, 8, 8, 2, True, 8, (8, 15)),
    "block128-ragged": ((1,), 300, 8, 8, 140, False, 128, None),
    "block128-causal-key-mask": ((1,), 300, 8, 8, 130, True, 128, (10, 146)),
}


def _check(fn, batch, L, dk, dv, window, causal, km):
    q, k, v, g = _inputs(batch, L, dk, dv)
    empty = check_float32(fn, q, k, v, g, _allowed(L, window, causal, km))
    if km is not None:  # the key mask leaves rows with no allowed key
        assert empty.any()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_forward_and_grads_match_dense_float64(case):
    batch, L, dk, dv, window, causal, block, span = CASES[case]
    km = None if span is None else _key_mask(batch, L, span)
    fn = functools.partial(
        local_attention_pallas_tpu,
        key_mask=None if km is None else jnp.asarray(km),
        window=window,
        causal=causal,
        block_size=block,
        interpret=True,
    )
    _check(fn, batch, L, dk, dv, window, causal, km)


def test_tpu_interpreter_forward_and_grads():
    # The TPU interpreter simulates VMEM: scratch starts as NaN (so a step that read
    # its online-softmax state before step 0 wrote it would show) and an
    # out-of-bounds block read raises. Block 128, causal, a key mask with empty rows.
    L, window = 200, 130
    km = _key_mask((1,), L, (10, 146))
    fn = functools.partial(
        local_attention_pallas_tpu,
        key_mask=jnp.asarray(km),
        window=window,
        causal=True,
        interpret=pltpu.InterpretParams(),
    )
    _check(fn, (1,), L, 8, 8, window, True, km)


def test_float64_interpret(x64):
    q, k, v, g = _inputs((2,), 29, 8, 8, seed=1)
    o_ref, grads_ref = _reference(q, k, v, g, _allowed(29, 4, False))
    fn = functools.partial(local_attention_pallas_tpu, window=4, block_size=4, interpret=True)
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    out = fn(*qkv)
    assert out.dtype == jnp.float64
    assert_close(out, o_ref, rtol=1e-12)
    for got, want in zip(_grads(fn, jnp.asarray(g), *qkv), grads_ref, strict=True):
        assert_close(got, want, rtol=1e-12)


def test_bfloat16_forward():
    q, k, v, _ = _inputs((2,), 33, 16, 16, seed=2)
    qkv = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    out = local_attention_pallas_tpu(*qkv, window=6, causal=True, block_size=8, interpret=True)
    assert out.dtype == jnp.bfloat16
    rounded = [np.asarray(a, np.float64) for a in qkv]  # the reference sees the same inputs
    o_ref, _ = _reference(*rounded, np.zeros((2, 33, 16)), _allowed(33, 6, True))
    assert_close(np.asarray(out, np.float64), o_ref, rtol=2e-2)


# --- attention dropout ------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch, causal, masked, block",
    [((2,), False, False, 8), ((2, 2), True, True, 4)],
    ids=["batch2", "batch2x2-causal-masked"],
)
def test_dropout_forward_and_grads_match_dense_float64(x64, batch, causal, masked, block):
    # The keep mask from the stream's NumPy definition over the whole L × L grid, rows
    # the flattened batch; several key steps per window, steps off both ends, a key
    # mask with empty rows.
    L, d, window, rate, seed = 21, 4, 5, 0.3, 2024
    q, k, v, g = _inputs(batch, L, d, d, seed=4)
    km = _key_mask(batch, L) if masked else None
    drop = dropout_keep_np(seed, int(np.prod(batch)), L, L, rate).reshape(*batch, L, L) / (1 - rate)
    fn = functools.partial(
        local_attention_pallas_tpu,
        key_mask=None if km is None else jnp.asarray(km),
        window=window,
        causal=causal,
        block_size=block,
        dropout_rate=rate,
        dropout_seed=jnp.uint32(seed),
        interpret=True,
    )
    check_dropout_float64(fn, q, k, v, g, _allowed(L, window, causal, km), drop)


def check_tpu_equals_gpu(tpu, gpu, q, k, v, g, allowed, drop):
    """The TPU and GPU kernels with one dropout seed (float32, interpret mode) against
    each other and the float64 reference with dropout factors `drop`: output and
    gradients."""
    o_ref, grads_ref = _reference(q, k, v, g, allowed, drop)
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, g)]
    out = tpu(*f32[:3])
    assert_close(out, o_ref, rtol=2e-5)
    assert_close(out, gpu(*f32[:3]), rtol=2e-6)
    pairs = zip(_grads(tpu, f32[3], *f32[:3]), _grads(gpu, f32[3], *f32[:3]), grads_ref, strict=True)
    for got, other, want in pairs:
        assert_close(got, want, rtol=1e-4, atol=1e-6)
        assert_close(got, other, rtol=1e-5, atol=1e-6)


def test_dropout_tpu_interpreter_equals_the_gpu_kernel():
    # One seed, one stream: the TPU kernel (TPU interpreter: NaN-initialized VMEM,
    # checked block reads; tiles of 128) and the GPU kernel (tiles of 16) drop the
    # same weights, forward and backward.
    L, d, window, rate = 160, 8, 40, 0.2
    q, k, v, g = _inputs((2,), L, d, d, seed=6)
    common = dict(window=window, dropout_rate=rate, dropout_seed=jnp.uint32(77))
    tpu = functools.partial(local_attention_pallas_tpu, **common, interpret=pltpu.InterpretParams())
    gpu = functools.partial(local_attention_pallas, **common, block_size=16, interpret=True)
    drop = dropout_keep_np(77, 2, L, L, rate) / (1 - rate)
    check_tpu_equals_gpu(tpu, gpu, q, k, v, g, _allowed(L, window, False), drop)


def test_dropout_needs_a_seed_and_a_valid_rate():
    q, k, v, _ = (jnp.asarray(a, jnp.float32) for a in _inputs((), 24, 8, 8, seed=5))
    fn = functools.partial(local_attention_pallas_tpu, window=3, block_size=8, interpret=True)
    plain = fn(q, k, v)
    np.testing.assert_array_equal(fn(q, k, v, dropout_rate=0.5), plain)  # no seed: no dropout
    np.testing.assert_array_equal(fn(q, k, v, dropout_seed=jnp.uint32(1)), plain)  # rate 0
    key = jax.random.key(9)  # a PRNG key gives the seed jax.random.bits draws from it
    seed = jax.random.bits(key, (1,), jnp.uint32)[0]
    np.testing.assert_array_equal(
        fn(q, k, v, dropout_rate=0.5, dropout_seed=key), fn(q, k, v, dropout_rate=0.5, dropout_seed=seed)
    )
    assert not np.allclose(fn(q, k, v, dropout_rate=0.5, dropout_seed=key), plain)
    with pytest.raises(ValueError, match="0 <= dropout_rate < 1, got 1.0"):
        fn(q, k, v, dropout_rate=1.0, dropout_seed=key)


# --- dispatch ---------------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, dropout=False, block_size=None):
    fn = functools.partial(unsupported, dtype, dropout, block_size)
    return choose(impl, "local_attention", fn, platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "tpu") == Choice("pallas", interpret=False)
    assert _choose("auto", "tpu", dtype=jnp.bfloat16, block_size=256) == Choice("pallas", interpret=False)
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("pallas", "cpu", dtype=jnp.float64, block_size=3) == Choice("pallas", interpret=True)
    assert _choose("auto", "tpu", dropout=True) == Choice("pallas", interpret=False)
    # Calls the kernel does not serve fall back to XLA under "auto".
    for kwargs in ({"dtype": jnp.float64}, {"dtype": jnp.float16}, {"block_size": 64}):
        assert _choose("auto", "tpu", **kwargs) == Choice("xla")


@pytest.mark.parametrize(
    "platform, dtype, dropout, block_size, match",
    [
        ("gpu", jnp.float32, False, None, "written for TPU \\(Mosaic\\) and interpret mode, not gpu"),
        ("tpu", jnp.float64, False, None, "computes in float32 on tpu; got float64"),
        ("tpu", jnp.float16, False, None, "dtype float16 is not supported on tpu"),
        ("tpu", jnp.float32, False, 64, "multiple of 128 on tpu, got 64"),
        ("cpu", jnp.float32, False, 0, "positive integer, got 0"),
    ],
)
def test_dispatch_pallas_unsupported_raises(platform, dtype, dropout, block_size, match):
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        _choose("pallas", platform, dtype=dtype, dropout=dropout, block_size=block_size)


def test_local_attention_routes_by_platform(monkeypatch):
    """`local_attention`'s rule: the Mosaic kernel's on TPU, the Triton kernel's
    elsewhere; and on a TPU backend the call reaches the Mosaic kernel (run here in
    interpret mode), equal to the XLA path."""
    from seqkit.attention import _local

    rule = functools.partial(_local.sliding_unsupported, jnp.float32)
    assert choose("auto", "local_attention", functools.partial(rule, False), platform="tpu") == Choice(
        "pallas"
    )
    for platform in ("tpu", "gpu"):  # dropout is served on both
        assert choose("auto", "local_attention", functools.partial(rule, True), platform=platform) == Choice(
            "pallas"
        )

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return local_attention_pallas_tpu(*args, **(kwargs | {"interpret": True}))

    monkeypatch.setattr(_local, "backend", lambda: "tpu")
    monkeypatch.setattr(_local, "local_attention_pallas_tpu", spy)
    q, k, v = (jax.random.normal(jax.random.key(i), (40, 8)) for i in range(3))
    km = jnp.arange(40) < 33
    got = _local.local_attention(
        q, k, v, window_size=6, mode="sliding", causal=True, key_mask=km, impl="auto"
    )
    want = _local.local_attention(
        q, k, v, window_size=6, mode="sliding", causal=True, key_mask=km, impl="xla"
    )
    assert calls == [
        {"window": 5, "causal": True, "dropout_rate": 0.0, "dropout_seed": None, "interpret": False}
    ]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    # Dropout with a key reaches the kernel too, with the key as its seed; its mask is
    # the stream's (the definition in NumPy), not jax.random's.
    key = jax.random.key(3)
    dropped = _local.local_attention(
        q, k, v, window_size=6, mode="sliding", causal=True, key_mask=km, dropout_rate=0.25, key=key
    )
    assert calls[-1]["dropout_rate"] == 0.25 and calls[-1]["dropout_seed"] is key
    seed = int(jax.random.bits(key, (1,), jnp.uint32)[0])
    drop = dropout_keep_np(seed, 1, 40, 40, 0.25)[0] / 0.75
    f64 = [np.asarray(a, np.float64) for a in (q, k, v)]
    o_ref, _ = _reference(*f64, np.zeros((40, 8)), _allowed(40, 5, True, np.asarray(km)), drop)
    assert_close(dropped, o_ref, rtol=2e-5)


def test_bad_calls_raise():
    x = jnp.ones((10, 8), jnp.float32)
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas_tpu(x, x[:, :4], x, window=2, interpret=True)
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas_tpu(x, x, x.astype(jnp.bfloat16), window=2, interpret=True)
    with pytest.raises(ValueError, match="integer window >= 0, got -1"):
        local_attention_pallas_tpu(x, x, x, window=-1, interpret=True)
    with pytest.raises(ValueError, match="positive integer block_size, got 0"):
        local_attention_pallas_tpu(x, x, x, window=2, block_size=0, interpret=True)
    with pytest.raises(ValueError, match="multiple of 128 on tpu, got 64"):
        local_attention_pallas_tpu(x, x, x, window=2, block_size=64)
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas_tpu(x, x, x, jnp.ones((9,), bool), window=2, interpret=True)


# --- lowering for TPU without the hardware ------------------------------------------------
# jax.export runs JAX's lowering to Mosaic IR (block shapes against the (8, 128) tiling,
# every primitive's lowering rule, the grid's dimension semantics); the TPU compiler
# itself needs the hardware and is not run here.


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_tpu(dtype, causal, dropout):
    q = jnp.zeros((2, 300, 24), dtype)  # ragged L (3 tiles of 128) and head dimension (padded to 128)
    km = jnp.ones((2, 300), bool)
    fwd = functools.partial(
        local_attention_pallas_tpu,
        window=140,
        causal=causal,
        dropout_rate=dropout,
        dropout_seed=jnp.uint32(5),
    )
    grad = jax.grad(lambda q, k, v: jnp.sum(fwd(q, k, v, km).astype(jnp.float32) ** 2), argnums=(0, 1, 2))
    for fn, kernels in ((lambda q, k, v: fwd(q, k, v, km), 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(q, q, q)
        assert exported.platforms == ("tpu",)
        # forward: one kernel; gradient: the forward, dq and dk/dv kernels
        assert exported.mlir_module().count("tpu_custom_call") == kernels
