"""The Pallas block-sparse attention kernel (interpret mode on CPU) against a float64
NumPy computation with the dense `L × L` visibility matrix built from the tile lists
and the position rule, forward (with the log normalizers) and gradients, and
`bigbird_attention` / `longformer_attention` with `impl="pallas"` against their XLA
paths. With attention dropout, against the same reference with the keep mask built
by the NumPy twin of the kernels' hash (`helpers.dropout_keep_np`, as in the sliding-window
kernel's tests, which also test the stream itself).

Tolerances (relative to the largest magnitude of the reference): float64 1e-10;
float32 2e-5 forward and 1e-4 gradients (plus 1e-6 absolute) against float64;
float32 Pallas against float32 XLA 1e-5.
"""

import functools

import jax
import jax.export  # a submodule: older JAX does not import it with `jax`
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import seqkit.attention as sa
from helpers import assert_close, dropout_keep_np
from seqkit.attention._sparse import _longformer_tiles
from seqkit.kernels import block_sparse_attention_pallas, use_impl
from seqkit.kernels._block_sparse_pallas import _Config, _tile_lists, unsupported
from seqkit.kernels._dispatch import Choice, choose


def _visible(L, B, idx, causal=False, band=None, num_global=0, key_mask=None):
    """The dense rule from the definition: key tile of `j` listed for the query tile
    of `i`, real key, `j <= i` when causal, band or global key."""
    nb = -(-L // B)
    idx = np.asarray(idx)
    listed = (idx[:, :, None] == np.arange(nb)[None, None, :]).any(1)  # (nb, nb)
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    ok = listed[i // B, j // B]
    if causal:
        ok = ok & (j <= i)
    if band is not None:
        lo, hi = band
        ok = ok & (((j - i >= -lo) & (j - i <= hi)) | (j < num_global))
    return ok if key_mask is None else ok & key_mask[..., None, :]


def _reference(q, k, v, g, h, allowed, drop=None):
    """Float64 `o`, `lse` and the cotangents `(dq, dk, dv)` of `Σ g ⊙ o + Σ h ⊙ lse`.

    With `P = softmax(S)`, `S = q kᵀ / sqrt(d)`: `dv = Pᵀ g`,
    `dS = P ⊙ (g vᵀ − rowsum(P ⊙ g vᵀ) + h)` (`∂lse/∂S = P`), `dq = dS k / sqrt(d)`,
    `dk = dSᵀ q / sqrt(d)`; a row with no allowed key has `P = 0`, `lse = −inf`.
    With dropout factors `drop = z / (1 − rate)`: `o = (drop ⊙ P) v`, so
    `dv = (drop ⊙ P)ᵀ g` and `g vᵀ` becomes `drop ⊙ (g vᵀ)` in `dS`; `lse` is the
    undropped one."""
    drop = 1.0 if drop is None else drop
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.where(allowed, np.einsum("...qd,...kd->...qk", q, k) * scale, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    den = p.sum(-1, keepdims=True)
    lse = np.where(den > 0, m + np.log(np.where(den > 0, den, 1.0)), -np.inf)[..., 0]
    p = p / np.where(den > 0, den, 1.0)
    o = (drop * p) @ v
    dp = drop * (g @ np.swapaxes(v, -1, -2))
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True) + h[..., None])
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dv = np.swapaxes(drop * p, -1, -2) @ g
    return o, lse, (dq, dk, dv)


def _inputs(batch, L, dk, dv, seed=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.normal(size=(*batch, L, dk)) for _ in range(2))
    v, g = (rng.normal(size=(*batch, L, dv)) for _ in range(2))
    return q, k, v, g, rng.normal(size=(*batch, L))


def _messy_lists(nb, seed=0):
    """Random tiles with repeats, `−1`, `nb` and beyond; query tile 1 lists nothing real."""
    idx = np.random.default_rng(seed).integers(-2, nb + 2, size=(nb, 5))
    idx[:, 3] = idx[:, 0]  # a repeat in every row
    idx[1] = [-1, nb, nb + 1, -1, -2]
    return idx


def _key_mask(batch, L):
    # Keys 8..14 masked: with a causal band or tile, some queries see no key at all.
    m = np.ones((*batch, L), bool)
    m[..., 8:15] = False
    return m


def _lists(kind, L, B, causal, band, G):
    nb = -(-L // B)
    if kind == "messy":
        return _messy_lists(nb)
    if kind == "longformer":
        return _longformer_tiles(L, B, band[0], band[1], G)
    km = jnp.arange(L) < L - 3
    return np.asarray(sa.bigbird_block_indices(L, B, 2, 1, causal, jr.key(3), km))


# (batch, L, dk, dv, block, lists, causal, band, num_global_keys, key mask). L is never
# a tile multiple; "messy" lists have repeats and out-of-range entries and an empty row.
CASES = {
    "messy-ragged-batch2": ((2,), 37, 8, 8, 8, "messy", False, None, 0, False),
    "messy-causal-key-mask-dv4": ((), 30, 8, 4, 8, "messy", True, None, 0, True),
    "bigbird-causal-block4": ((1,), 29, 8, 8, 4, "bigbird", True, None, 0, False),
    "band-global-batch2x2": ((2, 2), 45, 8, 8, 8, "longformer", False, (5, 3), 11, True),
    "band-global-causal": ((), 38, 4, 8, 8, "longformer", True, (6, 0), 3, True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_forward_lse_and_grads_match_dense_float64(x64, case):
    batch, L, dk, dv, B, kind, causal, band, G, masked = CASES[case]
    q, k, v, g, h = _inputs(batch, L, dk, dv)
    km = _key_mask(batch, L) if masked else None
    idx = _lists(kind, L, B, causal, band, G)
    allowed = _visible(L, B, idx, causal, band, G, km)
    o_ref, lse_ref, grads_ref = _reference(q, k, v, g, h, allowed)
    fn = functools.partial(
        block_sparse_attention_pallas,
        block_idx=jnp.asarray(idx),
        key_mask=None if km is None else jnp.asarray(km),
        block_size=B,
        causal=causal,
        band=band,
        num_global_keys=G,
        interpret=True,
        return_lse=True,
    )
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    o, lse = fn(*qkv)
    assert o.shape == (*batch, L, dv) and o.dtype == jnp.float64 and lse.dtype == jnp.float64
    assert_close(o, o_ref, rtol=1e-10)
    empty = np.broadcast_to(~allowed.any(-1), lse.shape)
    np.testing.assert_array_equal(np.asarray(lse) == -np.inf, empty)
    assert_close(np.where(empty, 0.0, lse), np.where(empty, 0.0, lse_ref), rtol=1e-10)

    def loss(q, k, v):
        o, lse = fn(q, k, v)
        return jnp.sum(g * o) + jnp.sum(jnp.where(jnp.isfinite(lse), h * lse, 0.0))

    grads = jax.grad(loss, argnums=(0, 1, 2))(*qkv)
    for got, want in zip(grads, grads_ref, strict=True):
        assert_close(got, want, rtol=1e-10)
    if kind == "messy":  # rows with no allowed key (tile 1): zero output and query gradient
        assert empty.any()
        assert np.all(np.asarray(o)[empty] == 0.0)
        assert np.all(np.asarray(grads[0])[empty] == 0.0)


@pytest.mark.parametrize("case", ["messy-ragged-batch2", "band-global-batch2x2"])
def test_dropout_forward_lse_and_grads_match_dense_float64(x64, case):
    # Rows are the flattened batch (4 rows for (2, 2)); the lse is the undropped one.
    batch, L, dk, dv, B, kind, causal, band, G, masked = CASES[case]
    rate, seed = 0.2, 99
    q, k, v, g, h = _inputs(batch, L, dk, dv, seed=6)
    km = _key_mask(batch, L) if masked else None
    idx = _lists(kind, L, B, causal, band, G)
    allowed = _visible(L, B, idx, causal, band, G, km)
    drop = dropout_keep_np(seed, int(np.prod(batch)), L, L, rate).reshape(*batch, L, L) / (1 - rate)
    o_ref, lse_ref, grads_ref = _reference(q, k, v, g, h, allowed, drop)
    fn = functools.partial(
        block_sparse_attention_pallas,
        block_idx=jnp.asarray(idx),
        key_mask=None if km is None else jnp.asarray(km),
        block_size=B,
        causal=causal,
        band=band,
        num_global_keys=G,
        dropout_rate=rate,
        dropout_seed=jnp.uint32(seed),
        interpret=True,
        return_lse=True,
    )
    qkv = [jnp.asarray(a) for a in (q, k, v)]
    o, lse = fn(*qkv)
    assert_close(o, o_ref, rtol=1e-10)
    empty = np.broadcast_to(~allowed.any(-1), lse.shape)
    assert_close(np.where(empty, 0.0, lse), np.where(empty, 0.0, lse_ref), rtol=1e-10)

    def loss(q, k, v):
        o, lse = fn(q, k, v)
        return jnp.sum(g * o) + jnp.sum(jnp.where(jnp.isfinite(lse), h * lse, 0.0))

    for got, want in zip(jax.grad(loss, argnums=(0, 1, 2))(*qkv), grads_ref, strict=True):
        assert_close(got, want, rtol=1e-10)


def test_float32_with_traced_lists():
    # The lists are an argument of the jitted function (traced), as BigBird's random blocks.
    L, B = 37, 8
    q, k, v, g, _ = _inputs((2,), L, 8, 8, seed=1)
    km = _key_mask((2,), L)
    idx = _messy_lists(-(-L // B), seed=1)
    o_ref, _, grads_ref = _reference(q, k, v, g, np.zeros((2, L)), _visible(L, B, idx, key_mask=km))
    f32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v, g)]

    @jax.jit
    def fn(q, k, v, idx):
        return block_sparse_attention_pallas(q, k, v, idx, jnp.asarray(km), block_size=B, interpret=True)

    out = fn(*f32[:3], jnp.asarray(idx))
    assert out.dtype == jnp.float32
    assert_close(out, o_ref, rtol=2e-5)
    loss = lambda q, k, v: jnp.sum(f32[3] * fn(q, k, v, jnp.asarray(idx)))
    for got, want in zip(jax.grad(loss, argnums=(0, 1, 2))(*f32[:3]), grads_ref, strict=True):
        assert got.dtype == jnp.float32
        assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_tile_lists_are_compact_and_transposed():
    # Per query tile: distinct in-range tiles ascending, then a count; per key tile,
    # the query tiles listing it, as a segment of the pairs. Causal drops later tiles.
    nb, B = 6, 4
    idx = _messy_lists(nb, seed=2)
    for causal in (False, True):
        cfg = _Config(nb * B, nb * B, B, causal, None, 0, True, "cpu")
        lists, pairs, bounds = (np.asarray(a) for a in _tile_lists(cfg, jnp.asarray(idx)))
        want = [
            sorted({t for t in row if 0 <= t < nb and (not causal or t <= n)}) for n, row in enumerate(idx)
        ]
        for n, tiles in enumerate(want):
            assert lists[n, 0] == len(tiles) and list(lists[n, 1 : 1 + len(tiles)]) == tiles
        for m in range(nb):
            start, stop = bounds[m]
            assert list(pairs[start:stop]) == [n for n in range(nb) if m in want[n]]
        assert bounds[-1, 1] == sum(map(len, want))  # work: the number of pairs


# --- bigbird_attention and longformer_attention: impl="pallas" equals impl="xla" ---------


def _grads(fn, g, *qkv):
    return jax.grad(lambda q, k, v: jnp.sum(g * fn(q, k, v)), argnums=(0, 1, 2))(*qkv)


def _compare(pattern, L, h=2, seed=4):
    # One head per call, vmapped over heads as the modules do; a key mask with a
    # padded tail, as a padded batch has.
    q, k, v, g = (jnp.asarray(a, jnp.float32) for a in _inputs((h,), L, 8, 8, seed=seed)[:4])
    km = jnp.arange(L) < L - 5

    def attend(impl, q, k, v):
        return jax.vmap(lambda q, k, v: pattern(q, k, v, key_mask=km, impl=impl))(q, k, v)

    pallas = jax.jit(functools.partial(attend, "pallas"))
    xla = jax.jit(functools.partial(attend, "xla"))
    assert_close(pallas(q, k, v), xla(q, k, v), rtol=1e-5)
    for a, b in zip(_grads(pallas, g, q, k, v), _grads(xla, g, q, k, v), strict=True):
        assert_close(a, b, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_pallas_matches_xla(causal):
    pattern = functools.partial(
        sa.bigbird_attention, block_size=8, num_random=2, num_global=1, seed=jr.key(5), causal=causal
    )
    _compare(pattern, 45)


@pytest.mark.parametrize("w, g, causal", [(6, 3, True), (9, 0, False), (5, 70, False)])
def test_longformer_pallas_matches_xla(w, g, causal):
    # L = 80: two tiles of 64 (the default tile); g = 70 puts global keys in both.
    pattern = functools.partial(sa.longformer_attention, window_size=w, num_global=g, causal=causal)
    _compare(pattern, 80, h=1)


def test_bigbird_and_longformer_pallas_dropout_with_key():
    # Dropout is off without a key or at rate 0 (exactly the plain result); with both,
    # the band/window part is the kernel with a seed drawn from the pattern's dropout
    # key, and heads vmapped with one key each (as AttentionHeads does) get different
    # masks although their inputs are identical.
    L, w, rate = 40, 6, 0.3
    q, k, v = (jnp.asarray(a, jnp.float32) for a in _inputs((), L, 8, 8, seed=7)[:3])
    key = jr.key(11)
    patterns = {
        "bigbird": functools.partial(
            sa.bigbird_attention, block_size=8, num_random=1, num_global=1, seed=jr.key(5), causal=True
        ),
        "longformer": functools.partial(sa.longformer_attention, window_size=w, num_global=0),
    }
    for name, pattern in patterns.items():
        run = jax.jit(
            lambda kk, rate, pattern=pattern: pattern(q, k, v, dropout_rate=rate, key=kk, impl="pallas"),
            static_argnums=1,
        )
        plain = run(None, 0.0)
        np.testing.assert_array_equal(run(None, rate), plain)
        np.testing.assert_array_equal(run(key, 0.0), plain)
        dropped = run(key, rate)
        assert not np.allclose(dropped, plain), name
        heads = jax.vmap(lambda kk, run=run: run(kk, rate))(jr.split(key, 2))
        assert not np.allclose(heads[0], heads[1]), name
    # Longformer without global keys is one kernel call, seeded by the first of its keys.
    r = w // 2
    want = block_sparse_attention_pallas(
        q, k, v, _longformer_tiles(L, 64, r, r, 0), jnp.ones((L,), bool), block_size=64, band=(r, r),
        dropout_rate=rate, dropout_seed=jr.split(key, 3)[0], interpret=True,
    )  # fmt: skip
    assert_close(run(key, rate), want, rtol=1e-6)  # the same mask (a wrong one is off by O(1))


# --- dispatch and errors -------------------------------------------------------------------


def _choose(impl, platform, dtype=jnp.float32, dropout=False, block_size=None):
    fn = functools.partial(unsupported, dtype, dropout, block_size)
    return choose(impl, "bigbird_attention", fn, platform=platform)


def test_dispatch_choice_per_backend():
    assert _choose("auto", "cpu") == Choice("xla")
    assert _choose("auto", "gpu", block_size=64) == Choice("pallas", interpret=False)
    assert _choose("pallas", "cpu", dtype=jnp.float64, block_size=3) == Choice("pallas", interpret=True)
    # Calls the kernel does not serve fall back to XLA under "auto".
    assert _choose("auto", "gpu", block_size=24) == Choice("xla")
    assert _choose("auto", "tpu", block_size=128) == Choice("xla")
    # Dropout is served (the kernel's own random stream).
    assert _choose("auto", "gpu", dropout=True, block_size=16) == Choice("pallas", interpret=False)


@pytest.mark.parametrize(
    "platform, dtype, dropout, block_size, match",
    [
        ("gpu", jnp.float64, False, 16, "dtype float64 is not supported on gpu"),
        ("tpu", jnp.float32, False, 128, "written for GPU \\(Triton\\) and interpret mode, not tpu"),
        ("gpu", jnp.float32, False, 24, "power of two >= 16 on gpu, got 24"),
        ("gpu", jnp.float32, False, 8, "power of two >= 16 on gpu, got 8"),
    ],
)
def test_dispatch_pallas_unsupported_raises(platform, dtype, dropout, block_size, match):
    with pytest.raises(ValueError, match=f"impl='pallas' cannot serve this call on {platform}: .*{match}"):
        _choose("pallas", platform, dtype=dtype, dropout=dropout, block_size=block_size)


def test_impl_choice_and_use_impl_reach_the_modules():
    x = jnp.ones((20, 8), jnp.float32)
    bigbird = functools.partial(
        sa.bigbird_attention, block_size=4, num_random=1, num_global=1, seed=jr.key(0)
    )
    longformer = functools.partial(sa.longformer_attention, window_size=4, num_global=1)
    for fn in (bigbird, longformer):
        assert "pallas_call" in str(jax.make_jaxpr(functools.partial(fn, impl="pallas"))(x, x, x))
        assert "pallas_call" not in str(jax.make_jaxpr(fn)(x, x, x))  # "auto" on CPU
    # The modules have no impl field: "auto" follows use_impl (the trainer's kernels setting).
    for module in (
        sa.BigBird(8, 2, block_size=4, num_random=1, num_global=1, key=jr.key(0)),
        sa.Longformer(8, 2, window_size=4, num_global=1, key=jr.key(0)),
    ):
        assert "pallas_call" not in str(jax.make_jaxpr(module)(x))
        with use_impl("pallas"):
            assert "pallas_call" in str(jax.make_jaxpr(module)(x))


def test_bad_calls_raise():
    x = jnp.ones((10, 8), jnp.float32)
    idx = np.zeros((2, 1), np.int32)  # 2 tiles of 8
    with pytest.raises(ValueError, match="0 <= dropout_rate < 1, got -0.1"):
        block_sparse_attention_pallas(
            x, x, x, idx, block_size=8, dropout_rate=-0.1, dropout_seed=jnp.uint32(0), interpret=True
        )
    with pytest.raises((ValueError, TypeCheckError)):
        sa.longformer_attention(x, x, x, window_size=4, num_global=1, impl="triton")
    kernel = functools.partial(block_sparse_attention_pallas, block_size=8, interpret=True)
    with pytest.raises(ValueError, match=r"block_idx of shape \(2, g\)"):
        kernel(x, x, x, np.zeros((3, 1), np.int32))
    with pytest.raises((ValueError, TypeCheckError)):
        kernel(x, x, x, np.zeros((2, 1), np.float32))
    with pytest.raises((ValueError, TypeCheckError)):
        kernel(x, x[:, :4], x, idx)
    with pytest.raises((ValueError, TypeCheckError)):
        kernel(x, x, x.astype(jnp.bfloat16), idx)
    with pytest.raises((ValueError, TypeCheckError)):
        kernel(x, x, x, idx, jnp.ones((9,), bool))
    with pytest.raises(ValueError, match=r"band None or a pair of integers \(lo, hi\) >= 0"):
        kernel(x, x, x, idx, band=(2, -1))
    with pytest.raises(ValueError, match="num_global_keys >= 0"):
        kernel(x, x, x, idx, band=(2, 2), num_global_keys=-1)
    with pytest.raises(ValueError, match="positive integer block_size, got 0"):
        block_sparse_attention_pallas(x, x, x, idx, block_size=0, interpret=True)
    # No tile at all: zero outputs (every row sees no key).
    assert np.all(np.asarray(kernel(x, x, x, np.zeros((2, 0), np.int32))) == 0.0)


def test_linear_memory_in_L():
    # The gradient program's temporaries grow like L · (tiles per list), never L².
    L, B, d = 4096, 64, 16
    q = jnp.zeros((L, d), jnp.float32)
    idx = _longformer_tiles(L, B, 32, 32, 1)
    fn = functools.partial(
        block_sparse_attention_pallas,
        block_idx=idx,
        block_size=B,
        band=(32, 32),
        num_global_keys=1,
        interpret=True,
    )
    loss = lambda q, k, v: jnp.sum(fn(q, k, v) ** 2)
    mem = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile().memory_analysis()
    assert mem.temp_size_in_bytes < L * L * 4 / 8  # an eighth of one float32 L × L array


# --- lowering for GPU without the hardware -------------------------------------------------
# jax.export runs JAX's lowering to Triton IR (block shapes, power-of-two sizes, every
# primitive's lowering rule); Triton's own compiler needs the hardware and is not run here.

TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


@pytest.mark.parametrize(
    "dtype, pattern, dropout",
    [(t, p, 0.0) for t in (jnp.float32, jnp.bfloat16) for p in ("bigbird-causal", "longformer")]
    + [(jnp.bfloat16, "longformer", 0.1)],  # with dropout: the hash's uint32 arithmetic, a traced seed
)
def test_exports_for_cuda(dtype, pattern, dropout):
    L, B = 300, 64  # ragged L and head dimension (padded to 32); 5 tiles
    q = jnp.zeros((2, L, 24), dtype)
    km = jnp.ones((2, L), bool)
    if pattern == "longformer":
        opts = dict(band=(40, 40), num_global_keys=3)
        idx = jnp.asarray(_longformer_tiles(L, B, 40, 40, 3))
    else:  # window, global and random tiles: 5 slots, the random ones a traced argument
        opts = dict(causal=True)
        idx = jnp.zeros((5, 5), jnp.int32)
    fwd = functools.partial(
        block_sparse_attention_pallas, block_size=B, dropout_rate=dropout, platform="gpu", **opts
    )
    seed = jnp.uint32(7)

    def loss(q, k, v, idx, seed):
        return jnp.sum(fwd(q, k, v, idx, km, dropout_seed=seed).astype(jnp.float32) ** 2)

    grad = jax.grad(loss, argnums=(0, 1, 2))
    for fn, kernels in ((lambda q, k, v, idx, seed: fwd(q, k, v, idx, km, dropout_seed=seed), 1), (grad, 3)):
        exported = jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(
            q, q, q, idx, seed
        )
        assert exported.platforms == ("cuda",)
        # forward: one kernel; gradient: the forward, dq and dk/dv kernels
        assert exported.mlir_module().count("__gpu$xla.gpu.triton") == kernels


def test_export_for_cuda_rejects_non_power_of_two_tiles():
    # The constraint `unsupported` states is the one Triton's lowering enforces.
    q = jnp.zeros((1, 96, 16), jnp.float32)
    fn = functools.partial(block_sparse_attention_pallas, block_size=24, platform="gpu")
    with pytest.raises(ValueError, match="power of 2"):
        jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[TRITON])(
            q, q, q, jnp.zeros((4, 2), jnp.int32)
        )
