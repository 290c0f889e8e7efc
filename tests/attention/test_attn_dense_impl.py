"""Dense attention's `impl="auto" | "xla" | "cudnn"`: the choice per backend and call,
the constraints' messages, CPU behaviour unchanged, and the cuDNN path's plumbing
(layout, scale, causality, vmap) with jax's own XLA implementation standing in for
cuDNN, which needs an NVIDIA GPU."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import seqkit.attention._core as core
from helpers import assert_close
from seqkit.attention import (
    MultiHeadAttention,
    causal_mask,
    chunked_dot_product_attention,
    dot_product_attention,
)
from seqkit.kernels._dispatch import Choice, choose


def _reference(q, k, v, causal):
    """Float64 softmax attention with the dense causal mask (or none)."""
    s = np.einsum("...qd,...kd->...qk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def _qkv(shape, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))


def _choose(impl, platform, q, k, v, mask=None, causal=False, dropout=False):
    unsupported = functools.partial(core.cudnn_unsupported, q, k, v, mask, causal, dropout)
    return choose(impl, "dot_product_attention", unsupported, platform=platform, fast="cudnn")


def test_choice_per_backend():
    q = jnp.zeros((2, 16, 64), jnp.bfloat16)
    assert _choose("auto", "cpu", q, q, q) == Choice("xla")
    assert _choose("auto", "gpu", q, q, q) == Choice("cudnn")
    assert _choose("auto", "gpu", q, q, q, causal=True) == Choice("cudnn")
    assert _choose(
        "cudnn", "gpu", q.astype(jnp.float16), q.astype(jnp.float16), q.astype(jnp.float16)
    ) == Choice("cudnn")
    assert _choose("xla", "gpu", q, q, q) == Choice("xla")
    assert _choose("auto", "tpu", q, q, q) == Choice("xla")
    # Calls cuDNN does not serve fall back to XLA under "auto".
    f32 = q.astype(jnp.float32)
    assert _choose("auto", "gpu", f32, f32, f32) == Choice("xla")
    assert _choose("auto", "gpu", q, q, q, mask=jnp.ones((16, 16), bool)) == Choice("xla")
    assert _choose("auto", "gpu", q, q, q, dropout=True) == Choice("xla")


@pytest.mark.parametrize(
    "platform, shapes, dtype, kwargs, match",
    [
        ("cpu", ((16, 64),) * 3, jnp.bfloat16, {}, "NVIDIA GPUs only, not cpu"),
        (
            "gpu",
            ((16, 64),) * 3,
            jnp.float32,
            {},
            "one dtype in \\('bfloat16', 'float16'\\), got \\['float32'\\]",
        ),
        ("gpu", ((16, 12),) * 3, jnp.bfloat16, {}, "multiple of 8 and <= 128, got dk=12, dv=12"),
        ("gpu", ((16, 256),) * 3, jnp.bfloat16, {}, "got dk=256"),
        ("gpu", ((16, 64), (16, 64), (16, 32)), jnp.bfloat16, {}, "dk == dv"),
        ("gpu", ((2, 16, 64), (1, 16, 64), (1, 16, 64)), jnp.bfloat16, {}, "one leading shape"),
        ("gpu", ((16, 64),) * 3, jnp.bfloat16, dict(mask=jnp.ones((16, 16), bool)), "without a mask"),
        ("gpu", ((8, 64), (16, 64), (16, 64)), jnp.bfloat16, dict(causal=True), "Lq == Lk, got 8 and 16"),
        ("gpu", ((16, 64),) * 3, jnp.bfloat16, dict(dropout=True), "dropout is not supported"),
    ],
)
def test_cudnn_unsupported_raises(platform, shapes, dtype, kwargs, match):
    q, k, v = (jnp.zeros(s, dtype) for s in shapes)
    with pytest.raises(ValueError, match=f"impl='cudnn' cannot serve this call on {platform}: .*{match}"):
        _choose("cudnn", platform, q, k, v, **kwargs)


def test_impl_cudnn_on_cpu_raises_and_unknown_impl_is_rejected():
    q, k, v = _qkv((8, 16), jnp.bfloat16)
    with pytest.raises(ValueError, match="dot_product_attention: impl='cudnn' cannot serve this call on cpu"):
        dot_product_attention(q, k, v, impl="cudnn")
    with pytest.raises(ValueError, match="chunked_dot_product_attention: impl='cudnn'"):
        chunked_dot_product_attention(q, k, v, impl="cudnn")
    with pytest.raises((ValueError, TypeCheckError)):
        dot_product_attention(q, k, v, impl="pallas")


def test_cpu_paths_unchanged():
    # "auto" is the XLA computation on CPU, bit for bit; causal=True is the causal mask.
    q, k, v = _qkv((2, 12, 8))
    mask = causal_mask(12)
    old = core.attention_with_lse(q, k, v, mask)[0]
    for impl in ("auto", "xla"):
        assert np.array_equal(dot_product_attention(q, k, v, mask, impl=impl), old)
        assert np.array_equal(dot_product_attention(q, k, v, causal=True, impl=impl), old)
    assert_close(old, _reference(*(np.asarray(a, np.float64) for a in (q, k, v)), True), rtol=1e-5)
    one = functools.partial(chunked_dot_product_attention, causal=True, chunk_size=5)
    assert np.array_equal(one(q[0], k[0], v[0]), one(q[0], k[0], v[0], impl="xla"))


@pytest.fixture
def cudnn_via_xla(monkeypatch):
    """Pretend to be on a GPU and run the cuDNN path with jax's XLA implementation,
    recording each call's `implementation` and layout."""
    calls = []
    real = jax.nn.dot_product_attention

    def stand_in(q, k, v, *args, implementation=None, **kwargs):
        calls.append((implementation, q.shape, kwargs.get("is_causal")))
        # jax's XLA implementation promotes bfloat16 logits to float32 implicitly
        with jax.numpy_dtype_promotion("standard"):
            return real(q, k, v, *args, implementation="xla", **kwargs)

    def on_gpu(*args, **kwargs):
        return choose(*args, **kwargs, platform="gpu")

    monkeypatch.setattr(jax.nn, "dot_product_attention", stand_in)
    monkeypatch.setattr(core, "choose", on_gpu)
    return calls


@pytest.mark.parametrize("causal", [False, True])
def test_cudnn_path_layout_scale_and_causality(cudnn_via_xla, causal):
    q, k, v = _qkv((2, 3, 16, 8), jnp.bfloat16, seed=1)
    expected = _reference(*(np.asarray(a, np.float64) for a in (q, k, v)), causal)
    out = dot_product_attention(q, k, v, causal=causal)
    assert out.shape == (2, 3, 16, 8) and out.dtype == jnp.bfloat16
    assert_close(np.asarray(out, np.float64), expected, rtol=2e-2)
    assert cudnn_via_xla == [("cudnn", (6, 16, 1, 8), causal)]  # (*b) flattened, one head each
    # Per head under vmap, as MultiHeadAttention calls the chunked path.
    one = functools.partial(chunked_dot_product_attention, causal=causal)
    out = jax.vmap(jax.vmap(one))(q, k, v)
    assert_close(np.asarray(out, np.float64), expected, rtol=2e-2)
    assert cudnn_via_xla[-1][0] == "cudnn"


def test_mha_takes_the_cudnn_path_only_without_padding(cudnn_via_xla):
    mha = MultiHeadAttention(16, 2, causal=True, key=jax.random.key(0))
    mha = jax.tree.map(lambda a: a.astype(jnp.bfloat16) if eqx.is_inexact_array(a) else a, mha)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(12, 16)), jnp.bfloat16)
    y = mha(x)
    assert cudnn_via_xla and all(c[0] == "cudnn" for c in cudnn_via_xla)
    n = len(cudnn_via_xla)
    y_masked = mha(x, mask=jnp.ones((12,), bool))  # a padding mask keeps the XLA path
    assert len(cudnn_via_xla) == n
    assert_close(np.asarray(y, np.float32), np.asarray(y_masked, np.float32), rtol=3e-2)
