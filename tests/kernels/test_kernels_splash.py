"""Longformer attention through JAX's splash-attention kernel: interpret mode on
CPU against a float64 NumPy computation with the dense `L × L` mask, forward and
gradients, under `jax.vmap`, its lowering for TPU by `jax.export`, and the route
`longformer_attention` takes on a TPU backend.

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; bfloat16 forward
2e-2 (inputs rounded to 8 mantissa bits, scores and softmax in float32).
"""

import functools

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_close
from seqkit.kernels._block_sparse_pallas_tpu import block_sparse_attention_pallas_tpu
from seqkit.kernels._dispatch import Choice, choose
from seqkit.kernels._splash_attention import longformer_attention_splash, splash_unsupported


def _allowed(L, lo, hi, g, causal, key_mask):
    """The dense mask: `i − lo <= j <= i + hi`, or `j < g` (`j <= i` when causal), and real keys."""
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    glob = (j < g) & ((j <= i) if causal else True)
    return (((i - lo <= j) & (j <= i + hi)) | glob) & key_mask[None, :]


def _reference(q, k, v, g, allowed):
    """Float64 `o` and the cotangents `(dq, dk, dv)` of `Σ g ⊙ o`; a row with no
    allowed key is 0."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.where(allowed, np.einsum("...qd,...kd->...qk", q, k) * scale, -np.inf)
    top = np.max(s, axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    p = p / np.maximum(p.sum(-1, keepdims=True), np.finfo(np.float64).tiny)
    o = p @ v
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    return o, (ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, np.swapaxes(p, -1, -2) @ g)


def _inputs(batch, L, dk, dv, seed=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.normal(size=(*batch, L, dk)) for _ in range(2))
    v, g = (rng.normal(size=(*batch, L, dv)) for _ in range(2))
    return q, k, v, g


# (heads, L, dk, dv, lo, hi, num_global, causal, real tokens). L is never a tile
# multiple (padded to 256 here); windows reach across tiles; the key mask pads the
# end of the sequence or leaves a hole in it.
CASES = {
    "symmetric-global3": ((), 200, 8, 8, 20, 20, 3, False, 170),
    "causal-global5-heads2": ((2,), 150, 16, 8, 40, 0, 5, True, None),
    "wide-window-hole": ((), 140, 8, 16, 130, 130, 0, False, "hole"),
    # queries inside a hole wider than the window, no global keys: no real key in reach
    "narrow-window-hole": ((), 140, 8, 8, 5, 5, 0, False, "hole"),
    "causal-hole-global2": ((2,), 150, 8, 8, 12, 0, 2, True, "hole"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_forward_and_grads_match_dense_float64(case):
    heads, L, dk, dv, lo, hi, g, causal, real = CASES[case]
    km = np.ones(L, bool)
    if real == "hole":
        km[30:60] = False
    elif real is not None:
        km[real:] = False
    q, k, v, ct = _inputs(heads, L, dk, dv)
    o_ref, grads_ref = _reference(q, k, v, ct, _allowed(L, lo, hi, g, causal, km))
    fn = functools.partial(
        longformer_attention_splash,
        key_mask=jnp.asarray(km),
        window_lo=lo,
        window_hi=hi,
        num_global=g,
        causal=causal,
        interpret=True,
    )
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, ct)]
    out = np.asarray(fn(*f32[:3]))
    assert out.shape == (*heads, L, dv) and np.all(np.isfinite(out))
    assert_close(out, o_ref, rtol=2e-5)  # every row: queries at masked positions too
    grads = jax.grad(lambda q, k, v: jnp.sum(f32[3] * fn(q, k, v)), argnums=(0, 1, 2))(*f32[:3])
    for got, want in zip(grads, grads_ref, strict=True):
        assert np.all(np.isfinite(got))
        assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_vmap_over_heads_and_bfloat16():
    q, k, v, ct = _inputs((2,), 130, 8, 8, seed=1)
    km = jnp.arange(130) < 120
    fn = functools.partial(
        longformer_attention_splash, key_mask=km, window_lo=9, window_hi=9, num_global=2, interpret=True
    )
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, ct)]
    np.testing.assert_allclose(jax.vmap(fn)(*f32[:3]), fn(*f32[:3]), rtol=1e-6, atol=1e-6)
    loss = lambda f: lambda q, k, v: jnp.sum(f32[3] * f(q, k, v))  # noqa: E731
    g_vmap = jax.grad(loss(jax.vmap(fn)), argnums=(0, 1, 2))(*f32[:3])
    g_heads = jax.grad(loss(fn), argnums=(0, 1, 2))(*f32[:3])
    for a, b in zip(g_vmap, g_heads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    bf = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    out = fn(*bf)
    assert out.dtype == jnp.bfloat16
    o_ref, _ = _reference(
        *(np.asarray(a, np.float64) for a in bf),
        np.zeros((2, 130, 8)),
        _allowed(130, 9, 9, 2, False, np.asarray(km)),
    )
    assert_close(np.asarray(out, np.float64)[:, :120], o_ref[:, :120], rtol=2e-2)


# --- lowering for TPU without the hardware ------------------------------------------------
# jax.export runs JAX's lowering to Mosaic IR; the TPU compiler needs the hardware.


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_tpu(dtype):
    q = jnp.zeros((2, 300, 24), dtype)  # 2 heads through vmap, ragged L, head dimension 24
    km = jnp.arange(300) < 280
    one = functools.partial(
        longformer_attention_splash, key_mask=km, window_lo=64, window_hi=0, num_global=2, causal=True
    )
    fwd = jax.vmap(one)
    grad = jax.grad(lambda q, k, v: jnp.sum(fwd(q, k, v).astype(jnp.float32) ** 2), argnums=(0, 1, 2))
    for fn in (fwd, grad):
        exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(q, q, q)
        assert exported.platforms == ("tpu",)
        assert "tpu_custom_call" in exported.mlir_module()


# --- dispatch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "platform, dtype, dropout, L, match",
    [
        ("gpu", jnp.float32, False, 64, "written for TPU \\(Mosaic\\) and interpret mode, not gpu"),
        ("tpu", jnp.float64, False, 64, "dtype float64 is not supported"),
        ("tpu", jnp.float16, False, 64, "dtype float16 is not supported"),
        ("tpu", jnp.float32, True, 64, "dropout is not implemented"),
        ("cpu", jnp.float32, False, 0, "sequence length >= 1, got 0"),
    ],
)
def test_splash_unsupported(platform, dtype, dropout, L, match):
    rule = functools.partial(splash_unsupported, dtype, dropout, L)
    assert choose("auto", "longformer_attention", rule, platform=platform) == Choice("xla")
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        choose("pallas", "longformer_attention", rule, platform=platform)


def test_longformer_routes_to_splash_on_tpu(monkeypatch):
    """On a TPU backend `longformer_attention` reaches splash (run here in interpret
    mode), equal to the XLA path on every row; with dropout, which splash lacks,
    it reaches the TPU block-sparse kernel, whose mask is the GPU kernel's for one
    key."""
    from seqkit.attention import _sparse

    rule = functools.partial(splash_unsupported, jnp.float32, False, 300)
    assert choose("auto", "longformer_attention", rule, platform="tpu") == Choice("pallas")
    assert choose("pallas", "longformer_attention", rule, platform="cpu") == Choice("pallas", interpret=True)

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return longformer_attention_splash(*args, **{**kwargs, "interpret": True})

    monkeypatch.setattr(_sparse, "backend", lambda: "tpu")
    monkeypatch.setattr(_sparse, "longformer_attention_splash", spy)
    q, k, v = (jax.random.normal(jax.random.key(i), (150, 8)) for i in range(3))
    km = jnp.arange(150) < 140
    for causal in (False, True):
        kw = dict(window_size=20, num_global=3, causal=causal, key_mask=km)
        got = _sparse.longformer_attention(q, k, v, **kw, impl="auto")
        want = _sparse.longformer_attention(q, k, v, **kw, impl="xla")
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
        assert np.all(np.isfinite(got))
    assert [c["window_hi"] for c in calls] == [10, 0] and calls[0]["window_lo"] == 10
    kernel_calls = []

    def kernel_spy(*args, **kwargs):
        kernel_calls.append(kwargs)
        return block_sparse_attention_pallas_tpu(*args, **{**kwargs, "interpret": True})

    monkeypatch.setattr(_sparse, "block_sparse_attention_pallas_tpu", kernel_spy)
    kw = dict(window_size=20, num_global=3, key_mask=km, dropout_rate=0.1, key=jax.random.key(5))
    got = _sparse.longformer_attention(q, k, v, **kw, impl="auto")
    assert len(calls) == 2  # not splash
    assert len(kernel_calls) == 1 and kernel_calls[0]["block_size"] == 128
    assert kernel_calls[0]["band"] == (10, 10) and kernel_calls[0]["num_global_keys"] == 3
    monkeypatch.undo()  # a CPU backend again: impl="pallas" is the GPU kernel in interpret mode
    gpu = _sparse.longformer_attention(q, k, v, **kw, impl="pallas")
    np.testing.assert_allclose(got, gpu, rtol=2e-5, atol=2e-6)
    assert not np.allclose(got, _sparse.longformer_attention(q, k, v, **{**kw, "dropout_rate": 0.0}))
