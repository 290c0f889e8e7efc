"""The TPU (Mosaic) Pallas sliding-window attention kernel: interpret mode on CPU
against a float64 NumPy computation with the dense `L × L` window mask, forward and
gradients, and its lowering for TPU by `jax.export`.

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; float64 1e-12;
bfloat16 forward 2e-2 (inputs rounded to 8 mantissa bits, products accumulated in
float32).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jaxtyping import TypeCheckError

from helpers import assert_close
from seqkit.kernels._dispatch import Choice, choose
from seqkit.kernels._local_attention_pallas_tpu import local_attention_pallas_tpu, unsupported


def _allowed(L, window, causal, key_mask=None):
    """The dense mask: `|i − j| <= w`, or `0 <= i − j <= w` when causal, and real keys."""
    d = np.arange(L)[:, None] - np.arange(L)[None, :]
    m = (d <= window) & (d >= (0 if causal else -window))
    return m if key_mask is None else m & key_mask[..., None, :]


def _reference(q, k, v, g, allowed):
    """Float64 `o` and the cotangents `(dq, dk, dv)` of `Σ g ⊙ o`, from the dense mask.

    With `P = softmax(S)`, `S = q kᵀ / sqrt(d)`: `dv = Pᵀ g`, `dS = P ⊙ (g vᵀ − rowsum)`,
    `dq = dS k / sqrt(d)`, `dk = dSᵀ q / sqrt(d)`; a row with no allowed key has
    `P = 0` (zero output, no gradient)."""
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
    o_ref, grads_ref = _reference(q, k, v, g, _allowed(L, window, causal, km))
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, g)]
    out = fn(*f32[:3])
    assert out.shape == (*batch, L, dv) and out.dtype == jnp.float32
    assert_close(out, o_ref, rtol=2e-5)
    grads = _grads(fn, f32[3], *f32[:3])
    for got, want, x in zip(grads, grads_ref, f32[:3], strict=True):
        assert got.shape == x.shape and got.dtype == jnp.float32
        assert_close(got, want, rtol=1e-4, atol=1e-6)  # atol: dq = dk = 0 when window = 0
    if km is not None:  # rows with no allowed key: zero output, zero and finite query gradients
        empty = ~_allowed(L, window, causal, km).any(-1)
        assert empty.any()
        assert np.all(np.asarray(out)[empty] == 0.0)
        assert np.all(np.asarray(grads[0])[empty] == 0.0)


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


# --- dispatch ---------------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, dropout=False, block_size=None):
    fn = functools.partial(unsupported, dtype, dropout, block_size)
    return choose(impl, "local_attention", fn, platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "tpu") == Choice("pallas", interpret=False)
    assert _choose("auto", "tpu", dtype=jnp.bfloat16, block_size=256) == Choice("pallas", interpret=False)
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("pallas", "cpu", dtype=jnp.float64, block_size=3) == Choice("pallas", interpret=True)
    # Calls the kernel does not serve fall back to XLA under "auto".
    for kwargs in ({"dtype": jnp.float64}, {"dtype": jnp.float16}, {"dropout": True}, {"block_size": 64}):
        assert _choose("auto", "tpu", **kwargs) == Choice("xla")


@pytest.mark.parametrize(
    "platform, dtype, dropout, block_size, match",
    [
        ("gpu", jnp.float32, False, None, "written for TPU \\(Mosaic\\) and interpret mode, not gpu"),
        ("tpu", jnp.float64, False, None, "computes in float32 on tpu; got float64"),
        ("tpu", jnp.float16, False, None, "dtype float16 is not supported on tpu"),
        ("tpu", jnp.float32, True, None, "dropout is not implemented"),
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
    assert choose("auto", "local_attention", functools.partial(rule, True), platform="tpu") == Choice("xla")
    assert choose("auto", "local_attention", functools.partial(rule, True), platform="gpu") == Choice(
        "pallas"
    )

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return local_attention_pallas_tpu(*args, **kwargs, interpret=True)

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
    assert calls == [{"window": 5, "causal": True}]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


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


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_tpu(dtype, causal):
    q = jnp.zeros((2, 300, 24), dtype)  # ragged L (3 tiles of 128) and head dimension (padded to 128)
    km = jnp.ones((2, 300), bool)
    fwd = functools.partial(local_attention_pallas_tpu, window=140, causal=causal)
    grad = jax.grad(lambda q, k, v: jnp.sum(fwd(q, k, v, km).astype(jnp.float32) ** 2), argnums=(0, 1, 2))
    for fn, kernels in ((lambda q, k, v: fwd(q, k, v, km), 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(q, q, q)
        assert exported.platforms == ("tpu",)
        # forward: one kernel; gradient: the forward, dq and dk/dv kernels
        assert exported.mlir_module().count("tpu_custom_call") == kernels
