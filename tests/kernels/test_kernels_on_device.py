"""The Pallas kernels compiled for a real accelerator (not interpret mode), against
the XLA paths on the same device: forward and gradients in float32, and memory
that grows linearly in L; attention dropout against a dense computation with the
stream's keep mask. Marked `gpu` / `tpu`: skipped (with the reason) unless JAX's
backend is that accelerator, e.g. `JAX_PLATFORMS=cuda pytest -m gpu`."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from seqkit.attention import bigbird_attention, local_attention, longformer_attention
from seqkit.kernels import (
    block_sparse_attention_pallas,
    block_sparse_attention_pallas_tpu,
    cauchy,
    linear_scan,
    local_attention_pallas,
    local_attention_pallas_tpu,
    vandermonde,
)
from seqkit.kernels._dropout import dropout_keep
from seqkit.kernels._scan import _CHUNK as _SCAN_CHUNK, _unsupported as _scan_unsupported
from seqkit.ssm import s4d_kernel

ACCELERATORS = [pytest.param("gpu", marks=pytest.mark.gpu), pytest.param("tpu", marks=pytest.mark.tpu)]
on_accelerator = pytest.mark.parametrize("accelerator", ACCELERATORS)


# On TPU the whole time axis of a channel block sits in VMEM: complex float32 fits
# up to L of about 1600 (the scan's own rule refuses 4096 there).
SCAN_SHAPE = {"gpu": (4096, 256), "tpu": (1024, 256)}


def test_on_device_scan_shapes_pass_the_kernels_rules():
    """Checked here, on any machine: an accelerator run must not stop at the
    kernel's own refusal before it compares anything."""
    for platform, (L, D) in SCAN_SHAPE.items():
        assert _scan_unsupported(jnp.float32, L, D, 2, _SCAN_CHUNK, platform) is None, platform


def _complex(key, shape, scale=1.0):
    k1, k2 = jr.split(key)
    return jax.lax.complex(scale * jr.normal(k1, shape), scale * jr.normal(k2, shape))


def _close(got, want, rtol=2e-4):
    """Equal up to float32 rounding relative to the largest entry."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(1.0, float(np.abs(want).max())))


def _both(f, *args):
    """`f(*args, impl)` and the gradient of the sum of its real part, per impl."""
    out = {}
    for impl in ("xla", "pallas"):
        g = jax.jit(
            jax.value_and_grad(
                lambda *a, impl=impl: jnp.sum(jnp.real(f(*a, impl))), argnums=tuple(range(len(args)))
            )
        )
        out[impl] = (jax.jit(lambda *a, impl=impl: f(*a, impl))(*args), *g(*args))
    return out


@on_accelerator
def test_vandermonde_on_device(accelerator):
    v = _complex(jr.key(0), (64, 32))
    x = jax.lax.complex(-jnp.exp(jr.normal(jr.key(1), (64, 32))) * 0.01, jr.normal(jr.key(2), (64, 32)))
    res = _both(lambda v, x, impl: vandermonde(v, x, 4096, impl=impl), v, x)
    for a, b in zip(res["pallas"], res["xla"], strict=True):
        jax.tree.map(_close, a, b)


@on_accelerator
def test_cauchy_on_device(accelerator):
    n, K = 32, 2048
    v = _complex(jr.key(0), (8, 2, n))
    freq = jnp.broadcast_to(jnp.pi * jnp.arange(n, dtype=jnp.float32), (8, n))
    lam = jax.lax.complex(-0.5 * jnp.ones((8, n)), freq)
    omega = jnp.exp(jax.lax.complex(jnp.zeros(K), -2 * jnp.pi * jnp.arange(K, dtype=jnp.float32) / K))
    z = 2.0 * (1 - omega) / (1 + omega)
    res = _both(lambda v, lam, impl: cauchy(v, z, lam, impl=impl), v, lam)
    for a, b in zip(res["pallas"], res["xla"], strict=True):
        jax.tree.map(_close, a, b)


@on_accelerator
def test_linear_scan_on_device(accelerator):
    L, D = SCAN_SHAPE[accelerator]
    a = jax.lax.complex(0.9 + 0.09 * jr.uniform(jr.key(0), (L, D)), 0.05 * jr.normal(jr.key(1), (L, D)))
    b = _complex(jr.key(2), (L, D))
    for reverse in (False, True):
        res = _both(lambda a, b, impl, reverse=reverse: linear_scan(a, b, reverse=reverse, impl=impl), a, b)
        for x, y in zip(res["pallas"], res["xla"], strict=True):
            jax.tree.map(_close, x, y)


@on_accelerator
def test_s4d_kernel_memory_is_linear_in_L(accelerator):
    """The compiled gradient of the S4D kernel with the Pallas Vandermonde kernel:
    its temporaries grow about linearly from L = 16K to 64K (H = 256, N/2 = 32)."""
    H, N2 = 256, 32

    def temp_bytes(L):
        def loss(dt):
            freq = jnp.broadcast_to(jnp.pi * jnp.arange(N2, dtype=jnp.float32), (H, N2))
            A = jax.lax.complex(-0.5 * jnp.ones((H, N2)), freq)
            B = C = jax.lax.complex(jnp.ones((H, N2)), jnp.zeros((H, N2)))
            return jnp.sum(s4d_kernel(A, B, C, dt, L, impl="pallas"))

        compiled = jax.jit(jax.grad(loss)).lower(jnp.full((H,), 0.01)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(16384), temp_bytes(65536)
    assert large < 6 * small, (small, large)
    assert large < H * N2 * 65536 * 8 / 4  # well under one (H, N/2, L) complex64 tensor


ATTENTION = {
    "sliding": lambda q, k, v, impl: local_attention(q, k, v, window_size=256, mode="sliding", impl=impl),
    "sliding-causal": lambda q, k, v, impl: local_attention(
        q, k, v, window_size=256, mode="sliding", causal=True, impl=impl
    ),
    "bigbird": lambda q, k, v, impl: bigbird_attention(
        q, k, v, block_size=64, num_random=3, num_global=2, seed=jr.key_data(jr.key(7)), impl=impl
    ),
    "longformer": lambda q, k, v, impl: longformer_attention(
        q, k, v, window_size=512, num_global=1, impl=impl
    ),
}


ATTENTION_CASES = [pytest.param("gpu", p, marks=pytest.mark.gpu) for p in ATTENTION] + [
    pytest.param("tpu", p, marks=pytest.mark.tpu) for p in ("sliding", "sliding-causal")
]


@pytest.mark.parametrize("accelerator, pattern", ATTENTION_CASES)
def test_attention_kernels_on_device(accelerator, pattern):
    """The sliding-window (Triton on GPU, Mosaic on TPU) and block-sparse (GPU)
    attention kernels against the XLA paths, 4 heads of 64 at L = 4000 (ragged),
    forward and gradients; float32 products at full precision on both paths."""
    q, k, v = (jr.normal(jr.key(i), (4, 4000, 64)) for i in range(3))
    one = ATTENTION[pattern]
    with jax.default_matmul_precision("highest"):
        res = _both(lambda q, k, v, impl: jax.vmap(lambda a, b, c: one(a, b, c, impl))(q, k, v), q, k, v)
    for a, b in zip(res["pallas"], res["xla"], strict=True):
        jax.tree.map(_close, a, b)


DROPOUT_CASES = [
    pytest.param(accelerator, kernel, marks=getattr(pytest.mark, accelerator))
    for accelerator in ("gpu", "tpu")
    for kernel in ("sliding", "block-sparse")
]


@pytest.mark.parametrize("accelerator, kernel", DROPOUT_CASES)
def test_attention_dropout_on_device(accelerator, kernel):
    """The sliding-window and block-sparse kernels with dropout (rate 0.1) against a
    dense float32 computation on the same device: softmax over the allowed keys,
    times the keep mask of the stream over the whole `L × L` grid (`dropout_keep`),
    over `1 − rate`; forward and gradients, 2 rows at L = 1000."""
    R, L, d, rate, seed = 2, 1000, 64, 0.1, 3
    q, k, v, g = (jr.normal(jr.key(i), (R, L, d)) for i in range(4))
    i, j = jnp.arange(L)[:, None], jnp.arange(L)[None, :]
    B = 128 if accelerator == "tpu" else 64
    if kernel == "sliding":
        fn = local_attention_pallas_tpu if accelerator == "tpu" else local_attention_pallas
        pattern = dict(window=200, block_size=B)
        allowed = jnp.abs(i - j) <= 200
    else:
        nb = -(-L // B)
        idx = jnp.stack([jnp.zeros(nb, int), jnp.arange(nb), (jnp.arange(nb) + 3) % nb], axis=1)
        fn = block_sparse_attention_pallas_tpu if accelerator == "tpu" else block_sparse_attention_pallas
        pattern = dict(block_idx=idx, block_size=B)
        tiles = jnp.zeros((nb, nb), bool).at[jnp.arange(nb)[:, None], idx].set(True)
        allowed = tiles[i // B, j // B]
    keep = dropout_keep(jnp.uint32(seed), jnp.arange(R)[:, None, None], i[None], j[None], rate)  # (R, L, L)

    def kernel_fn(q, k, v):
        return fn(q, k, v, **pattern, dropout_rate=rate, dropout_seed=jnp.uint32(seed))

    def dense(q, k, v):
        s = jnp.where(allowed, jnp.einsum("rqd,rkd->rqk", q, k) / np.sqrt(d), -jnp.inf)
        p = jax.nn.softmax(s, axis=-1)
        return jnp.einsum("rqk,rkd->rqd", jnp.where(keep, p / (1 - rate), 0.0), v)

    def outputs(f):
        loss = lambda *a: jnp.sum(g * f(*a))  # noqa: E731
        return (jax.jit(f)(q, k, v), *jax.jit(jax.value_and_grad(loss, (0, 1, 2)))(q, k, v))

    with jax.default_matmul_precision("highest"):
        got, want = outputs(kernel_fn), outputs(dense)
        plain = jax.jit(lambda q, k, v: fn(q, k, v, **pattern))(q, k, v)
    assert not np.allclose(got[0], plain)  # the mask drops something
    for a, b in zip(got, want, strict=True):
        jax.tree.map(_close, a, b)
