import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from helpers import assert_close
from seqkit.ssm import fft_conv


def _direct(u, k, D):
    L, H = u.shape
    y = np.zeros((L, H))
    for t in range(L):
        for s in range(L):
            if k.ndim == 2 and s <= t:
                y[t] += k[:, t - s] * u[s]
            elif k.ndim == 3:
                if s <= t:
                    y[t] += k[0, :, t - s] * u[s]
                if s >= t:
                    y[t] += k[1, :, s - t] * u[s]
    return y + u * D


@pytest.mark.parametrize("L", [1, 2, 9, 32])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_conv_matches_direct_sum(L, bidirectional):
    rng = np.random.default_rng(L)
    H = 3
    u = rng.normal(size=(L, H))
    k = rng.normal(size=((2,) if bidirectional else ()) + (H, L + 3))
    D = rng.normal(size=H)
    y = fft_conv(jnp.asarray(u, jnp.float32), jnp.asarray(k, jnp.float32), jnp.asarray(D, jnp.float32))
    assert y.shape == (L, H) and y.dtype == jnp.float32
    assert_close(y, _direct(u, k[..., :L], D), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_fft_conv_half_precision_input(dtype):
    """The FFT takes float32 at least: a half-precision input is convolved in float32
    and returned in its own dtype, equal to the direct sum of the same rounded values."""
    rng = np.random.default_rng(5)
    u, k, D = rng.normal(size=(9, 2)), rng.normal(size=(2, 2, 9)), rng.normal(size=2)
    u, k, D = (jnp.asarray(a, dtype) for a in (u, k, D))
    y = fft_conv(u, k, D)
    assert y.dtype == dtype
    want = _direct(*(np.asarray(a, np.float64) for a in (u, k, D)))
    assert_close(y.astype(jnp.float32), want, rtol=0, atol=0.05 * np.max(np.abs(want)))


def test_fft_conv_grads(x64):
    rng = np.random.default_rng(0)
    u, k, D = rng.normal(size=(7, 2)), rng.normal(size=(2, 2, 7)), rng.normal(size=2)
    check_grads(fft_conv, (jnp.asarray(u), jnp.asarray(k), jnp.asarray(D)), order=1, modes=["rev"])


def test_fft_conv_rejects_short_kernel():
    with pytest.raises(ValueError, match="fewer than the input length"):
        fft_conv(jnp.zeros((8, 2)), jnp.zeros((2, 4)))


def test_fft_conv_rejects_integer_and_empty_inputs():
    # An integer u would cast the kernel to integers (0.5 -> 0): refused, not truncated.
    # Called past the test suite's type-check hook (`__wrapped__`), as a user calls it.
    conv = getattr(fft_conv, "__wrapped__", fft_conv)
    with pytest.raises(ValueError, match="expected a floating input u, got dtype int32"):
        conv(jnp.arange(3, dtype=jnp.int32)[:, None], jnp.asarray([[0.5, 0.25, 0.125]]))
    with pytest.raises(ValueError, match=r"shape \(L, H\) with L >= 1, got \(0, 2\)"):
        fft_conv(jnp.zeros((0, 2)), jnp.zeros((2, 4)))
