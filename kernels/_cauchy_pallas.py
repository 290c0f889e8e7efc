"""The Cauchy kernel `Σ_n v_n / (z_k − λ_n)` as a Pallas kernel, forward and backward.

Reached through `seqkit.kernels.cauchy(..., impl="pallas")` (or `impl="auto"` on GPU
and TPU); `kernels/_cauchy.py` holds the XLA reference it is tested against.
"""

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Complex, Inexact

from seqkit._typing import ArrayLike

from . import _dispatch
from ._pallas_common import compiler_params, float32_unsupported, i32, mode_block, next_pow2, tile_unsupported
from ._util import real_dtype, split_complex

# Vectors (rows of `v`) per tile: 16 on GPU (Triton's smallest matrix-product operand),
# else 8 (TPU sublanes). S4 evaluates 4 or 6 vectors: one tile, padded.
_BLOCK_M = {"gpu": 16, "tpu": 8, "cpu": 8}


class _Config(NamedTuple):
    """Static description of one call (hashable: a `custom_vjp` non-differentiable argument)."""

    n: int  # number of poles before padding
    K: int  # number of evaluation points before padding
    n_pad: int  # padded number of poles (a multiple of block_n)
    block_k: int  # evaluation points per tile (the output's lane dimension)
    block_m: int  # vectors per tile
    block_n: int  # poles per step of the in-tile loop
    conj_pairs: bool
    interpret: bool
    platform: str  # "cpu" (interpret), "gpu" or "tpu": picks the compiler parameters


def _default_block_k(K: int, platform: str) -> int:
    """Evaluation points per tile: 128 lanes on TPU; elsewhere a power of two in
    `[16, 64]` (a tile's `(block_n, block_k)` reciprocals stay within registers)."""
    if platform == "tpu":
        return 128
    return min(64, max(16, next_pow2(K)))


def unsupported(dtype, chunk_size: int | None, platform: str) -> str | None:
    """Why the Pallas kernel cannot serve a call on `platform` (`"cpu"` meaning
    interpret mode), or `None`. The dispatcher's `unsupported` for `cauchy`.

    - GPU and TPU compute in float32: float64 and complex128 inputs are unsupported
      there (float16 and bfloat16 inputs are computed in float32, as on the XLA path).
    - `chunk_size` (evaluation points per tile) is a power of two `>= 16` on GPU
      (Triton tensors have power-of-two sizes, matrix-product operands at least 16
      wide) and a multiple of 128 on TPU (the lane width); any positive integer in
      interpret mode.
    """
    return float32_unsupported(dtype, platform) or tile_unsupported("chunk_size", chunk_size, platform)


# ---------------------------------------------------------------------------------------
# Kernels. Reciprocals are formed in (block_n, block_k) blocks, r[n, k] = 1/(z_k − λ_n)
# from a (block_n, 1) column of poles and a (1, block_k) row of points, never (n, K).
# The forward's grid runs over tiles of points and loops over blocks of poles; the
# backward's grid runs over blocks of poles and loops over tiles of points, so the
# cotangents of v and λ (sums over k) are finished inside one program, and only the
# cotangent of z (a sum over n, and over the batch) is left as a few partials.


def _iota(shape, axis, start):
    return start + lax.broadcasted_iota(jnp.int32, shape, axis)


def _valid(cfg: _Config, n0, k0):
    """Where `(n, k)` in the block at poles `n0…` and points `k0…` is a real pole and a
    real point, or `None` where the call has no padding to mask."""
    shape = (cfg.block_n, cfg.block_k)
    valid = _iota(shape, 1, k0) < cfg.K if cfg.K % cfg.block_k else None
    if cfg.n != cfg.n_pad:
        n_ok = _iota(shape, 0, n0) < cfg.n
        valid = n_ok if valid is None else valid & n_ok
    return valid


def _reciprocals(lam_re, lam_im, z_re, z_im, valid, conj_pairs):
    """Real/imaginary parts of r = 1/(z − λ) and s = 1/(z − conj λ) (`None` without
    conjugate pairs), `(block_n, block_k)`. Padding (`valid` false) gets exactly zero,
    so a padded pole (stored as 0) that meets a point never makes inf or NaN."""
    dr = z_re - lam_re

    def one(di):
        # 1/(dr + i di) = (dr − i di) / (dr² + di²); moderate arguments, no scaling.
        den = dr * dr + di * di
        if valid is None:
            inv = 1.0 / den
        else:
            inv = jnp.where(valid, 1.0 / jnp.where(valid, den, 1.0), 0.0)
        return dr * inv, -di * inv

    r = one(z_im - lam_im)
    return r, (one(z_im + lam_im) if conj_pairs else None)


def _square(r):
    return None if r is None else (r[0] * r[0] - r[1] * r[1], 2.0 * r[0] * r[1])


def _sums(r, s):
    """`a = r + s` and `b = r − s` (real/imaginary parts), the combinations in which a
    conjugate pair enters the products; `a = b = r` without pairs."""
    if s is None:
        return r, r
    return (r[0] + s[0], r[1] + s[1]), (r[0] - s[0], r[1] - s[1])


def _dot(a, b, trans_b=False):
    # a @ b, or a @ bᵀ; full float32 products (no TF32 on GPU, no bfloat16 passes on TPU).
    dims = (((1,), (1 if trans_b else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=lax.Precision.HIGHEST, preferred_element_type=a.dtype)


def _apply(w_re, w_im, r, s):
    """`Σ_n w_n r[n, k] + conj(w_n) s[n, k]` for a `(block_m, block_n)` block `w`, as
    four real `(M, n) × (n, k)` products (the forward with `w = v`, and `Q` below):

    Re = w_re Re(r + s) − w_im Im(r − s),  Im = w_re Im(r + s) + w_im Re(r − s)."""
    (a_re, a_im), (b_re, b_im) = _sums(r, s)
    return _dot(w_re, a_re) - _dot(w_im, b_im), _dot(w_re, a_im) + _dot(w_im, b_re)


def _contract(g_re, g_im, r, s):
    """`Σ_k G_k r[n, k] + conj(G_k s[n, k])` for a `(block_m, block_k)` block `G`, as
    four real `(M, k) × (k, n)` products:

    Re = G_re Re(r + s) − G_im Im(r + s),  Im = G_re Im(r − s) + G_im Re(r − s)."""
    (a_re, a_im), (b_re, b_im) = _sums(r, s)
    re = _dot(g_re, a_re, trans_b=True) - _dot(g_im, a_im, trans_b=True)
    im = _dot(g_re, b_im, trans_b=True) + _dot(g_im, b_re, trans_b=True)
    return re, im


def _rows(a):
    return jnp.sum(a, axis=0, keepdims=True)


def _forward_kernel(
    v_re_ref, v_im_ref, lam_re_ref, lam_im_ref, z_re_ref, z_im_ref, o_re_ref, o_im_ref, *, cfg
):
    # out[m, k] = Σ_n v[m, n] r[n, k] + conj(v[m, n]) s[n, k], over blocks of poles.
    bn = cfg.block_n
    z_re, z_im = z_re_ref[...], z_im_ref[...]  # (1, block_k)
    k0 = pl.program_id(2) * cfg.block_k  # outside the loop: no interpret-mode rule inside one

    def body(j, acc):
        n0 = pl.multiple_of(j * bn, bn)
        cols, rows = pl.ds(n0, bn), (slice(None), pl.ds(n0, bn))
        valid = _valid(cfg, n0, k0)
        r, s = _reciprocals(lam_re_ref[cols, :], lam_im_ref[cols, :], z_re, z_im, valid, cfg.conj_pairs)
        re, im = _apply(v_re_ref[rows], v_im_ref[rows], r, s)
        return acc[0] + re, acc[1] + im

    zero = jnp.zeros((cfg.block_m, cfg.block_k), o_re_ref.dtype)
    o_re_ref[...], o_im_ref[...] = lax.fori_loop(i32(0), i32(cfg.n_pad // bn), body, (zero, zero))


def _backward_kernel(
    g_re_ref, g_im_ref, v_re_ref, v_im_ref, lam_re_ref, lam_im_ref, z_re_ref, z_im_ref,
    w_re_ref, w_im_ref, l_re_ref, l_im_ref, q_re_ref, q_im_ref, *, cfg,
):  # fmt: skip
    # For one block of vectors and poles, with G the complex output cotangent
    # (`_cauchy_padded_bwd`), over tiles of points:
    #   W[m, n] = Σ_k G r + conj(G s)                    (ct_v)
    #   Λ[n]    = Σ_m v ⊙ Σ_k (G r² + conj(G s²))        (ct_λ; summed over vector blocks outside)
    #   Z[k]    = Σ_m G ⊙ Σ_n (v r² + conj(v) s²)        (−ct_z; summed over blocks outside)
    bk = cfg.block_k
    v_re, v_im = v_re_ref[...], v_im_ref[...]  # (block_m, block_n)
    lam_re, lam_im = lam_re_ref[...], lam_im_ref[...]  # (block_n, 1)
    n0 = pl.program_id(2) * cfg.block_n  # outside the loop: no interpret-mode rule inside one

    def body(t, acc):
        k0 = pl.multiple_of(t * bk, bk)
        cols = (slice(None), pl.ds(k0, bk))
        g_re, g_im = g_re_ref[cols], g_im_ref[cols]
        valid = _valid(cfg, n0, k0)
        r, s = _reciprocals(lam_re, lam_im, z_re_ref[cols], z_im_ref[cols], valid, cfg.conj_pairs)
        r2, s2 = _square(r), _square(s)
        w_re, w_im = _contract(g_re, g_im, r, s)
        y_re, y_im = _contract(g_re, g_im, r2, s2)
        q_re, q_im = _apply(v_re, v_im, r2, s2)
        q_re_ref[cols] = _rows(g_re * q_re - g_im * q_im)
        q_im_ref[cols] = _rows(g_re * q_im + g_im * q_re)
        return acc[0] + w_re, acc[1] + w_im, acc[2] + y_re, acc[3] + y_im

    zero = jnp.zeros((cfg.block_m, cfg.block_n), v_re.dtype)
    n_tiles = z_re_ref.shape[1] // bk
    w_re, w_im, y_re, y_im = lax.fori_loop(i32(0), i32(n_tiles), body, (zero,) * 4)
    w_re_ref[...], w_im_ref[...] = w_re, w_im
    l_re_ref[...] = _rows(v_re * y_re - v_im * y_im)
    l_im_ref[...] = _rows(v_re * y_im + v_im * y_re)


# ---------------------------------------------------------------------------------------
# pallas_call wrappers on padded real planes: v (R, Mp, n), λ (R, n, 1), z (1, Kp),
# output/cotangent (R, Mp, Kp). Forward grid (R, Mp / block_m, Kp / block_k); backward
# grid (R, Mp / block_m, n / block_n).


def _compiler_params(cfg: _Config, dims: int):
    return compiler_params(cfg.platform, interpret=cfg.interpret, dims=dims)


def _forward_call(cfg: _Config, parts: tuple[Array, ...]) -> tuple[Array, Array]:
    v_re, _, _, _, z_re, _ = parts
    (R, Mp, n), Kp = v_re.shape, z_re.shape[1]
    vecs = pl.BlockSpec((None, cfg.block_m, n), lambda r, m, t: (r, m, 0))
    poles = pl.BlockSpec((None, n, 1), lambda r, m, t: (r, 0, 0))
    points = pl.BlockSpec((1, cfg.block_k), lambda r, m, t: (0, t))
    tile = pl.BlockSpec((None, cfg.block_m, cfg.block_k), lambda r, m, t: (r, m, t))
    out = jax.ShapeDtypeStruct((R, Mp, Kp), v_re.dtype)
    return pl.pallas_call(
        functools.partial(_forward_kernel, cfg=cfg),
        out_shape=(out, out),
        grid=(R, Mp // cfg.block_m, Kp // cfg.block_k),
        in_specs=[vecs, vecs, poles, poles, points, points],
        out_specs=(tile, tile),
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 3),
        name="cauchy_fwd",
    )(*parts)


def _backward_call(cfg: _Config, g: tuple[Array, Array], parts: tuple[Array, ...]) -> tuple[Array, ...]:
    """`W` `(R, Mp, n)`, vector-block partials of `Λ` `(R, Mb, 1, n)` and block
    partials of `Z` `(R, Mb NB, 1, Kp)` (real/imaginary parts); the caller sums the
    partials (`Mb = Mp / block_m` vector blocks, `NB = n / block_n` pole blocks: a few)."""
    v_re, _, _, _, z_re, _ = parts
    (R, Mp, n), Kp = v_re.shape, z_re.shape[1]
    bm, bn = cfg.block_m, cfg.block_n
    Mb, NB = Mp // bm, n // bn
    rows = pl.BlockSpec((None, bm, Kp), lambda r, m, j: (r, m, 0))
    vecs = pl.BlockSpec((None, bm, bn), lambda r, m, j: (r, m, j))
    poles = pl.BlockSpec((None, bn, 1), lambda r, m, j: (r, j, 0))
    points = pl.BlockSpec((1, Kp), lambda r, m, j: (0, 0))
    l_spec = pl.BlockSpec((None, None, 1, bn), lambda r, m, j: (r, m, 0, j))
    q_spec = pl.BlockSpec((None, None, 1, Kp), lambda r, m, j: (r, m * NB + j, 0, 0))
    dt = v_re.dtype
    w = jax.ShapeDtypeStruct((R, Mp, n), dt)
    lam = jax.ShapeDtypeStruct((R, Mb, 1, n), dt)
    q = jax.ShapeDtypeStruct((R, Mb * NB, 1, Kp), dt)
    return pl.pallas_call(
        functools.partial(_backward_kernel, cfg=cfg),
        out_shape=(w, w, lam, lam, q, q),
        grid=(R, Mb, NB),
        in_specs=[rows, rows, vecs, vecs, poles, poles, points, points],
        out_specs=(vecs, vecs, l_spec, l_spec, q_spec, q_spec),
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 3),
        name="cauchy_bwd",
    )(*g, *parts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _cauchy_padded(cfg: _Config, parts: tuple[Array, ...]) -> tuple[Array, Array]:
    return _forward_call(cfg, parts)


def _cauchy_padded_fwd(cfg, parts):
    return _forward_call(cfg, parts), parts


def _cauchy_padded_bwd(cfg, parts, g):
    # Real planes in and out. The output planes' cotangents (g_re, g_im) are those of
    # the complex cotangent G = g_re − i g_im (JAX transposes lax.complex to
    # (Re G, −Im G)); from G, JAX's complex cotangents are
    #   ct_v = Σ_k G r + conj(G s) = W,   ct_λ = Λ,   ct_z = −Z,
    # and an input plane pair (x_re, x_im) gets (Re ct_x, −Im ct_x).
    g_re, g_im = g
    w_re, w_im, l_re, l_im, q_re, q_im = _backward_call(cfg, (g_re, -g_im), parts)
    l_re, l_im = (jnp.sum(a, axis=1).reshape(a.shape[0], -1, 1) for a in (l_re, l_im))  # (R, n, 1)
    q_re, q_im = (jnp.sum(a, axis=(0, 1)) for a in (q_re, q_im))  # (1, Kp)
    return ((w_re, -w_im, l_re, -l_im, -q_re, q_im),)


_cauchy_padded.defvjp(_cauchy_padded_fwd, _cauchy_padded_bwd)


@functools.partial(jax.jit, static_argnames=("conj_pairs", "chunk_size", "interpret", "platform"))
def cauchy_pallas(
    v: Inexact[ArrayLike, "*batch M n"],
    z: Inexact[ArrayLike, " K"],
    lam: Inexact[ArrayLike, "*batch n"],
    *,
    conj_pairs: bool = True,
    chunk_size: int | None = None,
    interpret: bool = False,
    platform: Literal["gpu", "tpu", "cpu"] | None = None,
) -> Complex[Array, "*batch M K"]:
    """Pallas Cauchy kernel `out[..., m, k] = Σ_n v[..., m, n] / (z[k] − lam[..., n])`,
    plus `conj(v[..., m, n]) / (z[k] − conj(lam[..., n]))` with `conj_pairs=True`.

    The forward computes the output tile by tile: a grid over batch rows, blocks
    of `b_m` vectors (16 on GPU, 8 elsewhere) and tiles of `chunk_size` points.
    Inside a tile the poles are reduced in blocks of `b_n` (at most 32 on GPU,
    128 on TPU): the `(b_n, chunk_size)` reciprocals `r[n, k] = 1/(z_k − λ_n)` and
    `s[n, k] = 1/(z_k − conj λ_n)` are formed once and applied to the `b_m`
    vectors as real matrix products,

    `Re out[m, k] += Σ_n Re v_mn Re(r + s)[n, k] − Im v_mn Im(r − s)[n, k]`,
    `Im out[m, k] += Σ_n Re v_mn Im(r + s)[n, k] + Im v_mn Re(r − s)[n, k]`

    (`s = 0` without conjugate pairs), so `(batch, n, K)` never exists. Complex
    numbers are real/imaginary planes (Pallas on GPU and TPU has no complex
    dtypes). The wrapper pads `n` (with zero weights), `M` and `K`, and slices the
    result; padded reciprocals are set to exactly zero, so a padded pole never
    meets a point.

    Differentiable in `v`, `z` and `lam` through a `custom_vjp` whose backward is a
    second kernel. With `G` the output cotangent and JAX's pairing `Re(G t)` of a
    cotangent with a tangent,

    `ct_v[m, n] = Σ_k G_mk r[n, k] + conj(G_mk s[n, k])`,
    `ct_λ[n] = Σ_m v_mn Σ_k (G_mk r[n, k]² + conj(G_mk s[n, k]²))`,
    `ct_z[k] = −Σ_m G_mk Σ_n (v_mn r[n, k]² + conj(v_mn) s[n, k]²)`

    (the `s` terms only with `conj_pairs`). Its grid runs over batch rows, vector
    blocks and pole blocks, each program looping over the tiles of points, so the
    sums over `k` finish in one program; `ct_z` is left as one partial per vector
    and pole block (a few per batch row), which the wrapper adds. A backward
    program reads its vectors' whole cotangent rows `(b_m, K)` and all points
    (on TPU these blocks sit in VMEM, double-buffered: about `16 (b_m + 16) K`
    bytes, 3 MiB at `K = 8192`).

    Lowers with the Triton backend on GPU (chosen through Triton compiler
    parameters) and with Mosaic on TPU; both lowerings are checked without the
    hardware by `jax.export` for `platforms=["cuda"]` and `["tpu"]` (the tests
    do), which runs JAX's lowering to Triton / Mosaic IR, not the final
    compilers. Float32 arithmetic there (any real or complex float input is
    computed in float32, the output is complex64, as on the XLA path); float64
    in interpret mode. Constraints (`unsupported`): no float64 on GPU/TPU;
    `chunk_size` a power of two `>= 16` on GPU and a multiple of 128 on TPU.

    **Arguments:**

    - `v`: `(*batch, M, n)` numerators, `M` vectors evaluated together.
    - `z`: `(K,)` evaluation points, shared by the batch.
    - `lam`: `(*batch, n)` poles.
    - `conj_pairs`: add the conjugate member of each pair.
    - `chunk_size`: evaluation points per tile (default: 128 on TPU; elsewhere
      the power of two in `[16, 64]` nearest `K`).
    - `interpret`: run in Pallas's interpret mode (as on CPU, where it is the only mode).
    - `platform`: `"gpu"`, `"tpu"` or `"cpu"` (default: the default backend, as
      `jax.default_backend()` names it): the target whose compiler parameters
      and default block sizes to use (ignored in interpret mode). It may differ
      from the machine's backend when lowering ahead of time with `jax.export`.

    **Returns:** `(*batch, M, K)` complex (complex128 for float64 inputs, else complex64).
    """
    v, z, lam = jnp.asarray(v), jnp.asarray(z), jnp.asarray(lam)
    dtype = real_dtype(v, z, lam)
    if v.ndim < 2 or lam.ndim < 1 or v.shape[:-2] != lam.shape[:-1] or v.shape[-1] != lam.shape[-1]:
        raise ValueError(
            f"expected v of shape (*batch, M, n) and lam of shape (*batch, n) with the same "
            f"batch and n, got v {v.shape} and lam {lam.shape}"
        )
    if z.ndim != 1:
        raise ValueError(f"expected z of shape (K,), got {z.shape}")
    *batch, M, n = v.shape
    K = z.shape[0]
    if min(M, n, K) < 1:
        raise ValueError(f"expected at least one vector, pole and point, got M={M}, n={n}, K={K}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"expected a positive integer chunk_size, got {chunk_size!r}")
    platform = "cpu" if interpret else (platform or _dispatch.backend())
    interpret = platform not in _dispatch.ACCELERATORS  # "cpu": interpret mode
    bk = chunk_size or _default_block_k(K, platform)
    bn = mode_block(n, platform)
    bm = _BLOCK_M[platform]
    n_pad, M_pad, K_pad = (-(-a // b) * b for a, b in ((n, bn), (M, bm), (K, bk)))
    cfg = _Config(n, K, n_pad, bk, bm, bn, conj_pairs, interpret, platform)
    compute = jnp.float64 if dtype == jnp.float64 else jnp.float32
    R = int(np.prod(batch, dtype=np.int64))

    def planes(a, shape, pad):
        return tuple(jnp.pad(p.astype(compute).reshape(shape), pad) for p in split_complex(a))

    v_re, v_im = planes(v, (R, M, n), ((0, 0), (0, M_pad - M), (0, n_pad - n)))
    lam_re, lam_im = planes(lam, (R, n, 1), ((0, 0), (0, n_pad - n), (0, 0)))
    z_re, z_im = planes(z, (1, K), ((0, 0), (0, K_pad - K)))
    out_re, out_im = _cauchy_padded(cfg, (v_re, v_im, lam_re, lam_im, z_re, z_im))
    out = lax.complex(out_re[:, :M, :K], out_im[:, :M, :K])
    return out.reshape(*batch, M, K)
