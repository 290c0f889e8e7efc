"""The Cauchy kernel `Σ_n v_n / (z_k − λ_n)`: the hot loop of the S4 kernel."""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Complex, Inexact

from seqkit._typing import ArrayLike

from ._cauchy_pallas import cauchy_pallas, unsupported as _pallas_unsupported
from ._dispatch import Impl, backend, choose, resolving_auto
from ._pallas_common import tile_unsupported
from ._util import complex_of, real_dtype

# Elements of one chunk's (batch, n, chunk) reciprocal tensor: bounds memory and
# keeps a chunk's working set in cache (measured fastest near 2^19 on CPU).
_CHUNK_ELEMENTS = 1 << 19


def _reciprocals(z: Array, lam: Array, conj_pairs: bool) -> tuple[Array, Array | None]:
    """`r = 1/(z − λ)` and `s = 1/(z − conj λ)`, laid out `(..., n, k)`, in real
    arithmetic (the arguments are moderate, so no overflow scaling is needed)."""
    z_re, z_im = jnp.real(z), jnp.imag(z)
    lam_re, lam_im = jnp.real(lam)[..., :, None], jnp.imag(lam)[..., :, None]
    dr = z_re - lam_re
    di = z_im - lam_im
    den = dr * dr + di * di
    r = lax.complex(dr / den, -di / den)
    if not conj_pairs:
        return r, None
    di2 = z_im + lam_im
    den2 = dr * dr + di2 * di2
    return r, lax.complex(dr / den2, -di2 / den2)


def _mm(a: Array, b: Array) -> Array:
    """`a @ b` at full float32 precision (no TF32 or bfloat16 passes on an
    accelerator), as the Pallas kernels compute it."""
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def _forward_chunk(v, lam, z, conj_pairs):
    r, s = _reciprocals(z, lam, conj_pairs)
    out = _mm(v, r)
    if conj_pairs:
        out = out + _mm(jnp.conj(v), s)
    return out


def _backward_chunk(v, lam, z, G, conj_pairs):
    """Cotangents of one chunk. JAX pairs a complex cotangent `G` with a tangent
    `t` as `Re(G t)`; with `dr = r² dλ`, `ds = s² conj(dλ)`, `dr/dz = −r²`:
    `ct_v = G rᵀ + conj(G) conj(s)ᵀ`, `ct_λ = Σ_m v ⊙ (G (r²)ᵀ + conj(G) conj(s²)ᵀ)`,
    `ct_z = −Σ_m G ⊙ (v r² + conj(v) s²)`."""
    r, s = _reciprocals(z, lam, conj_pairs)
    r2 = r * r
    rT = jnp.swapaxes
    W = _mm(G, rT(r, -1, -2))
    Y = _mm(G, rT(r2, -1, -2))
    Q = _mm(v, r2)
    if conj_pairs:
        s2 = s * s
        Gc = jnp.conj(G)
        W = W + _mm(Gc, rT(jnp.conj(s), -1, -2))
        Y = Y + _mm(Gc, rT(jnp.conj(s2), -1, -2))
        Q = Q + _mm(jnp.conj(v), s2)
    ct_z = -jnp.sum(G * Q, axis=tuple(range(G.ndim - 1)))
    return W, Y, ct_z


def _split(z: Array, chunk: int) -> tuple[Array, int]:
    K = z.shape[0]
    n_chunks = -(-K // chunk)
    # Pad by repeating the last point: its reciprocals are finite wherever the real
    # points' are (a constant could sit on a pole), and its results are dropped.
    z = jnp.pad(z, (0, n_chunks * chunk - K), mode="edge")
    return z.reshape(n_chunks, chunk), K


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _cauchy(v, z, lam, conj_pairs, chunk):
    zc, K = _split(z, chunk)
    out = lax.map(lambda zz: _forward_chunk(v, lam, zz, conj_pairs), zc)  # (c, ..., M, chunk)
    out = jnp.moveaxis(out, 0, -2)
    return out.reshape(*out.shape[:-2], -1)[..., :K]


def _cauchy_fwd(v, z, lam, conj_pairs, chunk):
    return _cauchy(v, z, lam, conj_pairs, chunk), (v, z, lam)


def _cauchy_bwd(conj_pairs, chunk, res, G):
    v, z, lam = res
    zc, K = _split(z, chunk)
    pad = zc.size - K
    G = jnp.pad(G, [(0, 0)] * (G.ndim - 1) + [(0, pad)])
    Gc = jnp.moveaxis(G.reshape(*G.shape[:-1], -1, chunk), -2, 0)  # (c, ..., M, chunk)

    def body(acc, zG):
        W, Y, ct_z = _backward_chunk(v, lam, zG[0], zG[1], conj_pairs)
        return (acc[0] + W, acc[1] + Y), ct_z

    zero = jnp.zeros(v.shape, v.dtype)
    (W, Y), ct_z = lax.scan(body, (zero, zero), (zc, Gc))
    ct_lam = jnp.sum(v * Y, axis=-2)
    return W, ct_z.reshape(-1)[:K], ct_lam


_cauchy.defvjp(_cauchy_fwd, _cauchy_bwd)


@resolving_auto
@functools.partial(jax.jit, static_argnames=("conj_pairs", "chunk_size", "impl"))
def cauchy(
    v: Inexact[ArrayLike, "*batch M n"],
    z: Inexact[ArrayLike, " K"],
    lam: Inexact[ArrayLike, "*batch n"],
    *,
    conj_pairs: bool = True,
    chunk_size: int | None = None,
    impl: Impl = "auto",
) -> Complex[Array, "*batch M K"]:
    """Cauchy kernel `out[..., m, k] = Σ_n v[..., m, n] / (z[k] − lam[..., n])`.

    With `conj_pairs=True` (the default) each stored mode stands for a conjugate
    pair, and the sum also runs over the conjugates:
    `Σ_n v_n / (z_k − λ_n) + conj(v_n) / (z_k − conj(λ_n))`, as the S4 kernel needs
    for its conjugate-pair modes (Gu, Goel and Ré, "Efficiently Modeling Long
    Sequences with Structured State Spaces", 2022).

    The XLA implementation loops over chunks of `K` in both directions, with a
    hand-written backward pass (itself a chunked Cauchy contraction), so memory
    stays `O(batch · n · chunk_size)` however long the sequence and nothing of
    size `(batch, n, K)` is stored for the gradient. Differentiable in `v`, `z`
    and `lam`.

    **Arguments:**

    - `v`: `(*batch, M, n)` numerators, `M` vectors evaluated together.
    - `z`: `(K,)` evaluation points, shared by the batch.
    - `lam`: `(*batch, n)` poles.
    - `conj_pairs`: add the conjugate member of each pair.
    - `chunk_size`: evaluation points per chunk (default: sized for ~512k elements
      on the XLA path; the Pallas kernel's tile width, 128 on TPU and at most 64
      elsewhere).
    - `impl`: `"auto"` (Pallas on GPU/TPU when the kernel supports the call, XLA
      otherwise and on CPU), `"xla"` or `"pallas"` (interpret mode on CPU; a call
      the kernel does not support, e.g. float64 on GPU, is a `ValueError`). The
      Pallas kernel computes tiles of the output in real arithmetic, with a Pallas
      backward; see `cauchy_pallas`.

    **Returns:** `(*batch, M, K)` complex.
    """
    dtype = real_dtype(v, z, lam)
    if v.shape[:-2] != lam.shape[:-1] or v.shape[-1] != lam.shape[-1]:
        raise ValueError(
            f"expected v of shape (*batch, M, n) and lam of shape (*batch, n) with the same "
            f"batch and n, got v {v.shape} and lam {lam.shape}"
        )
    if z.ndim != 1:
        raise ValueError(f"expected z of shape (K,), got {z.shape}")
    cdt = complex_of(dtype)
    if v.size == 0 or z.size == 0:  # no poles (a sum of nothing), points, vectors or batch
        return jnp.zeros((*v.shape[:-1], z.shape[0]), cdt)
    choice = choose(impl, "cauchy", functools.partial(_pallas_unsupported, cdt, chunk_size))
    if choice.impl == "pallas":
        return cauchy_pallas(
            v,
            z,
            lam,
            conj_pairs=conj_pairs,
            chunk_size=chunk_size,
            interpret=choice.interpret,
            platform=backend(),
        )
    if why := tile_unsupported("chunk_size", chunk_size, "xla"):  # (the Pallas path checks its own)
        raise ValueError(why)
    v, z, lam = (jnp.asarray(a).astype(cdt) for a in (v, z, lam))
    K = z.shape[0]
    if chunk_size is None:
        max_chunk = max(16, _CHUNK_ELEMENTS // max(1, lam.size))
        n_chunks = -(-K // max_chunk)
        chunk_size = -(-K // n_chunks)  # equal chunks, little padding
    return _cauchy(v, z, lam, conj_pairs, min(chunk_size, K))
