"""The one dispatcher: `impl` per call, and `use_impl` / `trainer.kernels` for a
whole computation (what `"auto"` means while tracing)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from seqkit.kernels import default_impl, use_impl, vandermonde
from seqkit.kernels._dispatch import Choice, choose

ok = lambda platform: None  # noqa: E731
gpu_only = lambda platform: None if platform == "gpu" else f"not on {platform}"  # noqa: E731


def test_choices_per_backend():
    assert choose("auto", "k", ok, platform="cpu") == Choice("xla")
    assert choose("auto", "k", ok, platform="gpu") == Choice("pallas")
    assert choose("auto", "k", gpu_only, platform="tpu") == Choice("xla")
    assert choose("pallas", "k", ok, platform="cpu") == Choice("pallas", interpret=True)
    assert choose("xla", "k", ok, platform="gpu") == Choice("xla")
    with pytest.raises(ValueError, match="k: impl='pallas' cannot serve this call on tpu: not on tpu"):
        choose("pallas", "k", gpu_only, platform="tpu")
    with pytest.raises(ValueError, match=r"k: expected impl in \('auto', 'xla', 'pallas'\), got 'cuda'"):
        choose("cuda", "k", ok, platform="gpu")


def test_use_impl_redirects_auto_only_and_nests():
    assert default_impl() == "auto"
    with use_impl("xla"):
        assert choose("auto", "k", ok, platform="gpu") == Choice("xla")
        assert choose("auto", "k", ok, platform="gpu", fast="cudnn") == Choice("xla")
        assert choose("pallas", "k", ok, platform="gpu") == Choice("pallas")  # explicit wins
        with use_impl("pallas"):
            assert choose("auto", "k", ok, platform="cpu") == Choice("pallas", interpret=True)
            with pytest.raises(ValueError, match="cannot serve this call on tpu"):
                choose("auto", "k", gpu_only, platform="tpu")  # as if impl='pallas' were written
        assert default_impl() == "xla"
    assert default_impl() == "auto"
    with pytest.raises(ValueError, match=r"expected impl in \('auto', 'xla', 'pallas'\), got 'fast'"):
        with use_impl("fast"):
            pass
    assert default_impl() == "auto"


def test_use_impl_reaches_the_traced_program(monkeypatch):
    """Inside the block, `impl="auto"` traces the Pallas kernel (interpret mode on
    CPU), also for a jitted kernel traced before outside it (the block is part of
    jit's cache key); outside it, the XLA path. The two agree."""
    import seqkit.kernels._vandermonde as module

    chosen = []
    original = module.choose

    def recording(impl, kernel, unsupported, **kw):
        chosen.append(original(impl, kernel, unsupported, **kw))
        return chosen[-1]

    monkeypatch.setattr(module, "choose", recording)
    v = jax.lax.complex(jr.normal(jr.key(0), (3, 5)), jr.normal(jr.key(1), (3, 5)))
    x = jax.lax.complex(-0.1 - 0.05 * jnp.arange(15.0).reshape(3, 5), jnp.full((3, 5), 0.3))
    f = jax.jit(lambda v, x: vandermonde(v, x, 37))
    ref = f(v, x)
    with use_impl("pallas"):
        got = jax.jit(lambda v, x: vandermonde(v, x, 37))(v, x)
    assert chosen == [Choice("xla"), Choice("pallas", interpret=True)]
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)
