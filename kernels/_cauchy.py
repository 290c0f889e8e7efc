"""The Cauchy kernel `Σ_n v_n / (z_k − λ_n)`: the hot loop of the S4 kernel."""

import functools

import jax
import jax.numpy as jnp
from seqkit._typing import ArrayLike
from jaxtyping import Array, Complex, Inexact

from ._util import make_complex, real_dtype, split_complex

# Elements of one chunk's (batch, n, chunk) reciprocal tensor; bounds memory.
_CHUNK_ELEMENTS = 1 << 21


def _cauchy_chunk(v_re, v_im, lam_re, lam_im, z_re, z_im, conj_pairs: bool):
    # d = z − λ, laid out (..., n, k); reciprocal in real arithmetic (the
    # arguments are moderate, so the plain formula needs no overflow scaling).
    dr = z_re[..., None, :] - lam_re[..., :, None]
    di = z_im[..., None, :] - lam_im[..., :, None]
    den = dr * dr + di * di
    r_re, r_im = dr / den, -di / den
    if conj_pairs:
        # Second member of each pair: conj(v) / (z − conj(λ)).
        di2 = z_im[..., None, :] + lam_im[..., :, None]
        den2 = dr * dr + di2 * di2
        s_re, s_im = dr / den2, -di2 / den2
        top = jnp.concatenate([r_re + s_re, r_im + s_im], axis=-1)
        bot = jnp.concatenate([s_im - r_im, r_re - s_re], axis=-1)
    else:
        top = jnp.concatenate([r_re, r_im], axis=-1)
        bot = jnp.concatenate([-r_im, r_re], axis=-1)
    R = jnp.concatenate([top, bot], axis=-2)  # (..., 2n, 2k)
    V = jnp.concatenate([v_re, v_im], axis=-1)  # (..., M, 2n)
    out = jnp.matmul(V, R)  # (..., M, 2k)
    k = z_re.shape[-1]
    return out[..., :k], out[..., k:]


@functools.partial(jax.jit, static_argnames=("conj_pairs", "chunk_size"))
def cauchy(
    v: Inexact[ArrayLike, "*batch M n"],
    z: Inexact[ArrayLike, " K"],
    lam: Inexact[ArrayLike, "*batch n"],
    *,
    conj_pairs: bool = True,
    chunk_size: int | None = None,
) -> Complex[ArrayLike, "*batch M K"]:
    """Cauchy kernel `out[..., m, k] = Σ_n v[..., m, n] / (z[k] − lam[..., n])`.

    With `conj_pairs=True` (the default) each stored mode stands for a conjugate
    pair, and the sum also runs over the conjugates:
    `Σ_n v_n / (z_k − λ_n) + conj(v_n) / (z_k − conj(λ_n))` (SPEC §1.1).

    The XLA implementation works in real arithmetic and loops over chunks of
    `K`, recomputing each chunk in the backward pass, so memory stays
    `O(batch · n · chunk_size)` however long the sequence.

    **Arguments:**

    - `v`: `(*batch, M, n)` numerators, `M` vectors evaluated together.
    - `z`: `(K,)` evaluation points, shared by the batch.
    - `lam`: `(*batch, n)` poles.
    - `conj_pairs`: add the conjugate member of each pair.
    - `chunk_size`: evaluation points per chunk (default: sized for ~2M elements).

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
    v_re, v_im = split_complex(v)
    lam_re, lam_im = split_complex(lam)
    z_re, z_im = split_complex(z)
    z_re, z_im = z_re.astype(dtype), z_im.astype(dtype)
    K = z.shape[0]
    per_point = max(1, int(jnp.size(lam)))
    if chunk_size is None:
        chunk_size = max(16, _CHUNK_ELEMENTS // per_point)
    chunk_size = min(chunk_size, K)
    n_chunks = -(-K // chunk_size)
    pad = n_chunks * chunk_size - K
    # Pad with a point far from every pole; its results are dropped.
    z_re = jnp.pad(z_re, (0, pad), constant_values=1.0)
    z_im = jnp.pad(z_im, (0, pad))
    z_re = z_re.reshape(n_chunks, chunk_size)
    z_im = z_im.reshape(n_chunks, chunk_size)
    body = jax.checkpoint(
        functools.partial(_cauchy_chunk, v_re, v_im, lam_re, lam_im, conj_pairs=conj_pairs)
    )
    if n_chunks == 1:
        o_re, o_im = body(z_re[0], z_im[0])
    else:
        o_re, o_im = jax.lax.map(lambda zz: body(*zz), (z_re, z_im))
        o_re = jnp.moveaxis(o_re, 0, -2).reshape(*v.shape[:-1], n_chunks * chunk_size)
        o_im = jnp.moveaxis(o_im, 0, -2).reshape(*v.shape[:-1], n_chunks * chunk_size)
    return make_complex(o_re[..., :K], o_im[..., :K])
