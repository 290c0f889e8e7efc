"""The Pallas sliding-window attention kernel (interpret mode on CPU) against a
float64 NumPy computation with the dense `L × L` window mask, forward and
gradients, and against the XLA path of `local_attention(mode="sliding")`; with
attention dropout, against the same reference with the keep mask built by a NumPy
twin of the hash (`helpers.dropout_keep_np`).

Tolerances (relative to the largest magnitude of the reference): float32 2e-5
forward and 1e-4 gradients (plus 1e-6 absolute) against float64; float64 1e-12; bfloat16 forward 2e-2
(inputs rounded to 8 mantissa bits, products accumulated in float32); float64 with
dropout 1e-10.
"""

import functools

import equinox as eqx
import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from helpers import assert_close, dropout_keep_np
from seqkit.attention import LocalAttention, local_attention
from seqkit.kernels import local_attention_pallas
from seqkit.kernels._dispatch import Choice, choose, use_impl
from seqkit.kernels._dropout import dropout_keep
from seqkit.kernels._local_attention_pallas import unsupported


def _allowed(L, window, causal, key_mask=None):
    """The dense mask: `|i − j| <= w`, or `0 <= i − j <= w` when causal, and real keys."""
    d = np.arange(L)[:, None] - np.arange(L)[None, :]
    m = (d <= window) & (d >= (0 if causal else -window))
    return m if key_mask is None else m & key_mask[..., None, :]


def _reference(q, k, v, g, allowed, drop=None):
    """Float64 `o` and the cotangents `(dq, dk, dv)` of `Σ g ⊙ o`, from the dense mask.

    With `P = softmax(S)`, `S = q kᵀ / sqrt(d)`: `dv = Pᵀ g`, `dS = P ⊙ (g vᵀ − rowsum)`,
    `dq = dS k / sqrt(d)`, `dk = dSᵀ q / sqrt(d)`; a row with no allowed key has
    `P = 0` (zero output, no gradient). With dropout factors `drop = z / (1 − rate)`:
    `o = (drop ⊙ P) v`, so `dv = (drop ⊙ P)ᵀ g` and `dP = drop ⊙ (g vᵀ)` in `dS`
    (whose row sum `Σ_j P dP` is still `g · o`)."""
    drop = 1.0 if drop is None else drop
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.where(allowed, np.einsum("...qd,...kd->...qk", q, k) * scale, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    den = p.sum(-1, keepdims=True)
    p = p / np.where(den > 0, den, 1.0)
    o = (drop * p) @ v
    dp = drop * (g @ np.swapaxes(v, -1, -2))
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dv = np.swapaxes(drop * p, -1, -2) @ g
    return o, (dq, dk, dv)


def _inputs(batch, L, dk, dv, seed=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.normal(size=(*batch, L, dk)) for _ in range(2))
    v, g = (rng.normal(size=(*batch, L, dv)) for _ in range(2))
    return q, k, v, g


def _grads(fn, g, *qkv):
    return jax.grad(lambda q, k, v: jnp.sum(g * fn(q, k, v)), argnums=(0, 1, 2))(*qkv)


def check_float32(fn, q, k, v, g, allowed):
    """`fn` on float32 inputs against the float64 reference of the dense mask
    `allowed`: output to 2e-5, gradients to 1e-4 (plus 1e-6 absolute: dq = dk = 0
    when the window is 0), shapes and dtypes kept; rows with no allowed key give a
    zero output and zero query gradients. Returns those rows' mask."""
    o_ref, grads_ref = _reference(q, k, v, g, allowed)
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, g)]
    out = fn(*f32[:3])
    assert out.shape == q.shape[:-1] + v.shape[-1:] and out.dtype == jnp.float32
    assert_close(out, o_ref, rtol=2e-5)
    grads = _grads(fn, f32[3], *f32[:3])
    for got, want, x in zip(grads, grads_ref, f32[:3], strict=True):
        assert got.shape == x.shape and got.dtype == jnp.float32
        assert_close(got, want, rtol=1e-4, atol=1e-6)
    empty = np.broadcast_to(~allowed.any(-1), out.shape[:-1])  # allowed may be shared by the batch
    assert np.all(np.asarray(out)[empty] == 0.0)
    assert np.all(np.asarray(grads[0])[empty] == 0.0)
    return empty


def check_dropout_float64(fn, q, k, v, g, allowed, drop):
    """`fn` (a kernel with dropout, float64 inputs in interpret mode) against the dense
    reference with the dropout factors `drop`: output and gradients to 1e-10, and the
    mask drops something."""
    o_ref, grads_ref = _reference(q, k, v, g, allowed, drop)
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    out = fn(*qkv)
    assert out.dtype == jnp.float64
    assert_close(out, o_ref, rtol=1e-10)
    for got, want in zip(_grads(fn, jnp.asarray(g), *qkv), grads_ref, strict=True):
        assert_close(got, want, rtol=1e-10, atol=1e-14)
    assert not np.allclose(out, _reference(q, k, v, g, allowed)[0])


# (batch, L, dk, dv, window, causal, block_size, key mask). Block 8 or 4 puts several
# tiles in a window; L is never a tile multiple; windows 0 (self only) and >= L (dense).
CASES = {
    "symmetric-ragged": ((2,), 37, 8, 8, 5, False, 8, False),
    "causal-ragged": ((2,), 37, 8, 8, 5, True, 8, False),
    "causal-window0-dv4": ((), 20, 8, 4, 0, True, 8, False),
    "window-covers-all": ((1,), 19, 8, 8, 40, False, 4, False),
    "default-block-batch2x2": ((2, 2), 45, 16, 8, 7, False, None, False),
    "key-mask-empty-rows": ((2,), 30, 8, 8, 2, True, 8, True),
}


def _key_mask(batch, L):
    # Keys 8..14 masked: with a causal window of 2, queries 10..14 see no key at all.
    m = np.ones((*batch, L), bool)
    m[..., 8:15] = False
    return m


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_forward_and_grads_match_dense_float64(case):
    batch, L, dk, dv, window, causal, block, masked = CASES[case]
    q, k, v, g = _inputs(batch, L, dk, dv)
    km = _key_mask(batch, L) if masked else None
    fn = functools.partial(
        local_attention_pallas,
        key_mask=None if km is None else jnp.asarray(km),
        window=window,
        causal=causal,
        block_size=block,
        interpret=True,
    )
    empty = check_float32(fn, q, k, v, g, _allowed(L, window, causal, km))
    if masked:  # the key mask leaves rows with no allowed key
        assert empty.any()


def test_float64_interpret(x64):
    q, k, v, g = _inputs((2,), 29, 8, 8, seed=1)
    o_ref, grads_ref = _reference(q, k, v, g, _allowed(29, 4, False))
    fn = functools.partial(local_attention_pallas, window=4, block_size=4, interpret=True)
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    out = fn(*qkv)
    assert out.dtype == jnp.float64
    assert_close(out, o_ref, rtol=1e-12)
    for got, want in zip(_grads(fn, jnp.asarray(g), *qkv), grads_ref, strict=True):
        assert_close(got, want, rtol=1e-12)


def test_bfloat16_forward():
    q, k, v, _ = _inputs((2,), 33, 16, 16, seed=2)
    qkv = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    out = local_attention_pallas(*qkv, window=6, causal=True, interpret=True)
    assert out.dtype == jnp.bfloat16
    rounded = [np.asarray(a, np.float64) for a in qkv]  # the reference sees the same inputs
    o_ref, _ = _reference(*rounded, np.zeros((2, 33, 16)), _allowed(33, 6, True))
    assert_close(np.asarray(out, np.float64), o_ref, rtol=2e-2)


@pytest.mark.parametrize("causal", [False, True])
def test_local_attention_sliding_pallas_matches_xla_under_vmap(causal):
    # One head per call, vmapped over heads as LocalAttention does; window_size W is
    # the kernel's window W − 1. A key mask with a padded tail, as a padded batch has.
    h, L, d, W = 2, 27, 8, 5
    q, k, v, g = (jnp.asarray(a, jnp.float32) for a in _inputs((h,), L, d, d, seed=3))
    km = jnp.arange(L) < 22

    def attend(impl, q, k, v):
        one = functools.partial(local_attention, window_size=W, mode="sliding", causal=causal, impl=impl)
        return jax.vmap(lambda q, k, v: one(q, k, v, key_mask=km))(q, k, v)

    pallas, xla = functools.partial(attend, "pallas"), functools.partial(attend, "xla")
    assert_close(pallas(q, k, v), xla(q, k, v), rtol=1e-5)
    o_ref, _ = _reference(
        *(np.asarray(a, np.float64) for a in (q, k, v, g)), _allowed(L, W - 1, causal, np.asarray(km))
    )
    assert_close(pallas(q, k, v), o_ref, rtol=2e-5)
    for a, b in zip(_grads(pallas, g, q, k, v), _grads(xla, g, q, k, v), strict=True):
        assert_close(a, b, rtol=1e-5)


# --- attention dropout ------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch, causal, masked",
    [((2,), False, False), ((2, 2), True, True)],
    ids=["batch2", "batch2x2-causal-masked"],
)
def test_dropout_forward_and_grads_match_dense_float64(x64, batch, causal, masked):
    # Rows are the flattened batch (4 rows for (2, 2)); key mask with empty rows.
    L, d, window, rate, seed = 21, 4, 5, 0.3, 2024
    q, k, v, g = _inputs(batch, L, d, d, seed=4)
    km = _key_mask(batch, L) if masked else None
    rows = int(np.prod(batch))
    drop = dropout_keep_np(seed, rows, L, L, rate).reshape(*batch, L, L) / (1 - rate)
    fn = functools.partial(
        local_attention_pallas,
        key_mask=None if km is None else jnp.asarray(km),
        window=window,
        causal=causal,
        block_size=8,
        dropout_rate=rate,
        dropout_seed=jnp.uint32(seed),
        interpret=True,
    )
    check_dropout_float64(fn, q, k, v, g, _allowed(L, window, causal, km), drop)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_stream_keeps_one_minus_rate_and_differs_by_seed_and_row(rate):
    # The stream alone (no kernel): the jnp helper is the NumPy definition; the kept
    # fraction is 1 − rate within 4 standard errors, and masks for another seed, another
    # row, or the neighbouring query or key agree as independent ones would.
    n = 256
    pos = jnp.arange(n)
    keep = jax.jit(dropout_keep, static_argnums=4)

    def mask(seed, row):
        return np.asarray(keep(jnp.uint32(seed), jnp.int32(row), pos[:, None], pos[None, :], rate))

    a = mask(1, 0)
    assert np.array_equal(a, dropout_keep_np(1, 1, n, n, rate)[0])
    assert np.array_equal(mask(1, 3), dropout_keep_np(1, 4, n, n, rate)[3])
    p = 1 - rate
    assert abs(a.mean() - p) < 4 * np.sqrt(p * (1 - p) / a.size)
    both = p * p + (1 - p) * (1 - p)  # P(two independent entries agree)
    se = np.sqrt(both * (1 - both) / a.size)
    for other in (mask(2, 0), mask(1, 1), np.roll(a, 1, axis=0), np.roll(a, 1, axis=1)):
        assert abs(np.mean(a == other) - both) < 4 * se


def test_local_attention_pallas_dropout_with_key():
    L, d, W, rate = 24, 8, 5, 0.25
    q, k, v, _ = (jnp.asarray(a, jnp.float32) for a in _inputs((), L, d, d, seed=5))
    key = jax.random.key(3)

    def run(**kw):
        return local_attention(q, k, v, window_size=W, mode="sliding", impl="pallas", **kw)

    plain = run()
    # dropout is off without a key or at rate 0: exactly the plain result
    np.testing.assert_array_equal(run(dropout_rate=rate), plain)
    np.testing.assert_array_equal(run(dropout_rate=0.0, key=key), plain)
    dropped = run(dropout_rate=rate, key=key)
    seed = jax.random.bits(key, (1,), jnp.uint32)[0]  # the seed the kernel draws from a key
    drop = dropout_keep_np(int(seed), 1, L, L, rate)[0] / (1 - rate)
    q64, k64, v64 = (np.asarray(a, np.float64) for a in (q, k, v))
    o_ref, _ = _reference(q64, k64, v64, np.zeros((L, d)), _allowed(L, W - 1, False), drop)
    assert_close(dropped, o_ref, rtol=2e-5)
    assert not np.allclose(dropped, plain)
    # One call per head under vmap, as AttentionHeads does with one key per head:
    # identical heads get different masks, and head h is the un-vmapped call with key h.
    keys = jax.random.split(key, 2)
    heads = jax.vmap(lambda kk: run(dropout_rate=rate, key=kk))(keys)
    assert not np.allclose(heads[0], heads[1])
    for h in range(2):
        assert_close(heads[h], run(dropout_rate=rate, key=keys[h]), rtol=1e-6)


def test_local_attention_module_dropout_runs_the_kernel():
    x = jax.random.normal(jax.random.key(0), (12, 8))
    attn = LocalAttention(8, 2, window_size=3, mode="sliding", dropout=0.5, key=jax.random.key(1))
    keys = attn.heads.head_keys(jax.random.key(2))
    seeds = jax.vmap(lambda kk: jax.random.bits(kk, (1,), jnp.uint32))(keys)
    assert seeds[0, 0] != seeds[1, 0]  # one seed per head, so heads get different masks
    with use_impl("pallas"):
        assert "pallas_call" in str(jax.make_jaxpr(lambda x, kk: attn(x, key=kk))(x, jax.random.key(2)))
        y = attn(x, key=jax.random.key(2))
        np.testing.assert_array_equal(y, attn(x, key=jax.random.key(2)))
        assert not np.allclose(y, attn(x, key=jax.random.key(3)))
        assert not np.allclose(y, eqx.nn.inference_mode(attn)(x))


def test_linear_memory_in_L():
    # The gradient program's temporaries grow like L · window, never L².
    L, d = 4096, 16
    q = jnp.zeros((L, d), jnp.float32)
    fn = functools.partial(local_attention_pallas, window=16, block_size=64, interpret=True)
    loss = lambda q, k, v: jnp.sum(fn(q, k, v) ** 2)
    mem = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile().memory_analysis()
    assert mem.temp_size_in_bytes < L * L * 4 / 8  # an eighth of one float32 L × L array


# --- dispatch ---------------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, dropout=False, block_size=None):
    fn = functools.partial(unsupported, dtype, dropout, block_size)
    return choose(impl, "local_attention", fn, platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("auto", "gpu") == Choice("pallas", interpret=False)
    assert _choose("auto", "gpu", dtype=jnp.bfloat16) == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu") == Choice("pallas", interpret=True)
    assert _choose("pallas", "cpu", dtype=jnp.float64, block_size=3) == Choice("pallas", interpret=True)
    assert _choose("xla", "gpu") == Choice("xla")
    # Calls the kernel does not serve fall back to XLA under "auto".
    assert _choose("auto", "tpu") == Choice("xla")
    assert _choose("auto", "gpu", dtype=jnp.float64) == Choice("xla")
    # Dropout is served (the kernel's own random stream).
    assert _choose("auto", "gpu", dropout=True) == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu", dropout=True) == Choice("pallas", interpret=True)


@pytest.mark.parametrize(
    "platform, dtype, block_size, match",
    [
        ("gpu", jnp.float64, None, "dtype float64 is not supported on gpu"),
        ("tpu", jnp.float32, None, "written for GPU \\(Triton\\) and interpret mode, not tpu"),
        ("gpu", jnp.float32, 24, "power of two >= 16 on gpu, got 24"),
        ("cpu", jnp.float32, 0, "positive integer, got 0"),
    ],
)
def test_dispatch_pallas_unsupported_raises(platform, dtype, block_size, match):
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        _choose("pallas", platform, dtype=dtype, block_size=block_size)


def test_impl_pallas_runs_the_kernel_and_auto_on_cpu_does_not():
    x = jnp.ones((10, 8), jnp.float32)

    def jaxpr(impl, mode="sliding"):
        fn = functools.partial(local_attention, window_size=3, mode=mode, impl=impl)
        return str(jax.make_jaxpr(fn)(x, x, x))

    assert "pallas_call" in jaxpr("pallas")
    assert "pallas_call" not in jaxpr("auto")
    assert "pallas_call" not in jaxpr("xla")
    assert "pallas_call" not in jaxpr("auto", mode="block")
    # The module keeps its CPU path (impl "auto").
    attn = LocalAttention(8, 2, window_size=3, mode="sliding", key=jax.random.key(0))
    assert "pallas_call" not in str(jax.make_jaxpr(attn)(x))


def test_bad_calls_raise():
    x = jnp.ones((10, 8), jnp.float32)
    with pytest.raises(ValueError, match="serves mode='sliding' only"):
        local_attention(x, x, x, window_size=3, mode="block", impl="pallas")
    with pytest.raises(ValueError, match="0 <= dropout_rate < 1, got 1.0"):
        local_attention_pallas(
            x, x, x, window=2, dropout_rate=1.0, dropout_seed=jnp.uint32(0), interpret=True
        )
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention(x, x, x, window_size=3, mode="sliding", impl="triton")
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas(x, x[:, :4], x, window=2, interpret=True)
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas(x, x, x.astype(jnp.bfloat16), window=2, interpret=True)
    with pytest.raises(ValueError, match="integer window >= 0, got -1"):
        local_attention_pallas(x, x, x, window=-1, interpret=True)
    with pytest.raises(ValueError, match="positive integer block_size, got 0"):
        local_attention_pallas(x, x, x, window=2, block_size=0, interpret=True)
    with pytest.raises((ValueError, TypeCheckError)):
        local_attention_pallas(x, x, x, jnp.ones((9,), bool), window=2, interpret=True)


# --- lowering for GPU without the hardware -------------------------------------------------
# jax.export runs JAX's lowering to Triton IR (block shapes, power-of-two sizes, every
# primitive's lowering rule); Triton's own compiler needs the hardware and is not run here.

TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


@pytest.mark.parametrize(
    "dtype, causal, dropout",
    [(t, c, 0.0) for t in (jnp.float32, jnp.bfloat16, jnp.float16) for c in (False, True)]
    + [(jnp.float32, True, 0.1)],  # with dropout: the hash's uint32 arithmetic, a traced seed
)
def test_exports_for_cuda(dtype, causal, dropout):
    q = jnp.zeros((2, 300, 24), dtype)  # ragged L and head dimension (padded to 32)
    km = jnp.ones((2, 300), bool)
    seed = jnp.uint32(7)
    fwd = functools.partial(
        local_attention_pallas, window=40, causal=causal, dropout_rate=dropout, platform="gpu"
    )

    def loss(q, k, v, seed):
        return jnp.sum(fwd(q, k, v, km, dropout_seed=seed).astype(jnp.float32) ** 2)

    grad = jax.grad(loss, argnums=(0, 1, 2))
    for fn, kernels in ((lambda q, k, v, seed: fwd(q, k, v, km, dropout_seed=seed), 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(q, q, q, seed)
        assert exported.platforms == ("cuda",)
        # forward: one kernel; gradient: the forward, dq and dk/dv kernels
        assert exported.mlir_module().count("__gpu$xla.gpu.triton") == kernels


def test_export_for_cuda_rejects_non_power_of_two_tiles():
    # The constraint `unsupported` states is the one Triton's lowering enforces.
    q = jnp.zeros((1, 100, 16), jnp.float32)
    fn = functools.partial(local_attention_pallas, window=8, block_size=24, platform="gpu")
    with pytest.raises(ValueError, match="power of 2"):
        jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(q, q, q)
