"""What the Pallas kernels share: compiler parameters, power-of-two tile sizes, the
mode-axis block, the rules a tile size must follow per platform, and the argument
checks of the attention kernels (their dropout stream is `_dropout`)."""

import math

import jax.numpy as jnp
import numpy as np

# GPU (Triton) and TPU (Mosaic) kernels compute in float32 (or narrower).
FLOAT32_PLATFORMS = ("gpu", "tpu")
# Triton's smallest matrix-product operand, and the least power of two a GPU tile takes.
MIN_GPU_TILE = 16


def next_pow2(k: int) -> int:
    """The least power of two `>= k` (1 for `k <= 1`)."""
    return 1 << max(0, math.ceil(math.log2(max(1, k))))


def mode_block(n: int, platform: str) -> int:
    """Modes (poles) reduced per step: 128 on TPU (dynamic lane slices of the mode axis
    stay 128-aligned); elsewhere a power of two in `[16, 32]`."""
    if platform == "tpu":
        return 128
    return min(32, max(MIN_GPU_TILE, next_pow2(n)))


def float32_unsupported(dtype, platform: str) -> str | None:
    """Why a kernel computing in float32 on GPU/TPU cannot take `dtype` (a real
    dtype, or a complex one by its real part) there, or `None`."""
    dtype = jnp.dtype(dtype)
    if platform in FLOAT32_PLATFORMS and jnp.finfo(dtype).bits > 32:
        return f"the kernel computes in float32 on {platform}; got {dtype} inputs (use impl='xla')"
    return None


def i32(n) -> jnp.ndarray:
    """`n` as an int32 scalar, for loop bounds and index arithmetic inside kernels: a
    Python int becomes int64 under `jax_enable_x64`, and Mosaic (TPU) rejects index
    arithmetic that mixes int32 and int64."""
    return jnp.int32(n)


def tile_unsupported(name: str, size: int | None, platform: str) -> str | None:
    """Why `name=size` cannot be a tile size on `platform`, or `None` (`None` size:
    the kernel's default). A positive integer everywhere (interpret mode takes any);
    a power of two `>= 16` on GPU (Triton tensors have power-of-two sizes,
    matrix-product operands at least 16 wide); a multiple of 128 on TPU (the lane
    width)."""
    if size is None:
        return None
    if not isinstance(size, int) or size < 1:
        return f"{name} must be a positive integer, got {size!r}"
    if platform == "gpu" and (size < MIN_GPU_TILE or size & (size - 1)):
        return f"{name} must be a power of two >= {MIN_GPU_TILE} on gpu, got {size}"
    if platform == "tpu" and size % 128:
        return f"{name} must be a multiple of 128 on tpu, got {size}"
    return None


def compiler_params(
    platform: str, *, interpret: bool = False, dims: int = 1, num_warps: int = 4, num_stages: int | None = 1
):
    """Triton's on GPU (not Mosaic GPU, which wants warpgroup-sized, 128-byte rows),
    Mosaic's on TPU with every one of the `dims` grid dimensions parallel, and
    none in interpret mode or on CPU. `num_stages=None` is Triton's default."""
    if interpret or platform not in ("gpu", "tpu"):
        return None
    if platform == "gpu":
        from jax.experimental.pallas import triton as pltriton

        return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)
    from jax.experimental.pallas import tpu as pltpu

    return pltpu.CompilerParams(dimension_semantics=("parallel",) * dims)


# ---------------------------------------------------------------------------------------
# Argument checks shared by the attention kernels' public wrappers.


def check_qkv(q, k, v):
    """`q, k, v` as arrays, checked: `(*batch, L, dk)`, `(*batch, L, dk)`,
    `(*batch, L, dv)`, one float dtype; a `ValueError` naming what came instead."""
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    if q.ndim < 2 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            "expected q, k of one shape (*batch, L, dk) and v of shape (*batch, L, dv), "
            f"got {q.shape}, {k.shape}, {v.shape}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not jnp.issubdtype(q.dtype, jnp.floating):
        raise ValueError(f"expected q, k, v of one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return q, k, v


def check_key_mask(key_mask, shape: tuple[int, ...]):
    """`key_mask` as an array of `shape` (`(*batch, L)`), or `None`."""
    if key_mask is None:
        return None
    key_mask = jnp.asarray(key_mask)
    if key_mask.shape != shape:
        raise ValueError(f"expected key_mask of shape {shape}, got {key_mask.shape}")
    return key_mask


def check_block_idx(block_idx, nb: int):
    """`block_idx` as an integer `(nb, g)` array: one row of key tiles per query tile."""
    block_idx = jnp.asarray(block_idx)
    if block_idx.ndim != 2 or block_idx.shape[0] != nb or not jnp.issubdtype(block_idx.dtype, jnp.integer):
        raise ValueError(
            f"expected an integer block_idx of shape ({nb}, g) (one row per query tile), "
            f"got {block_idx.dtype} {block_idx.shape}"
        )
    return block_idx


def check_band(band, num_global_keys) -> None:
    """`band` None or a pair of integers `(lo, hi) >= 0`; `num_global_keys` an
    integer `>= 0`: the position rule of the block-sparse kernels."""
    if band is not None and not (
        isinstance(band, tuple) and len(band) == 2 and all(isinstance(x, int) and x >= 0 for x in band)
    ):
        raise ValueError(f"expected band None or a pair of integers (lo, hi) >= 0, got {band!r}")
    if not isinstance(num_global_keys, int) or num_global_keys < 0:
        raise ValueError(f"expected an integer num_global_keys >= 0, got {num_global_keys!r}")


def padded_attention_inputs(q, k, v, key_mask, scale: float, Lp: int, dkp: int, dvp: int):
    """What the attention kernels read: `q · scale`, `k`, `v` as rows `(R, Lp, d)`
    (`R` the flattened batch) padded with zeros to `Lp` positions and head widths
    `dkp`, `dvp` (zeros change no score and no output), and the int32 key mask
    `(R, Lp)`: 1 at a real, unmasked key, 0 at a masked one or padding. The scale
    is applied once here, not to every score tile."""
    *batch, L, dk = q.shape
    dv = v.shape[-1]
    R = int(np.prod(batch, dtype=np.int64))

    def pad(a, d, cols):
        return jnp.pad(a.reshape(R, L, d), ((0, 0), (0, Lp - L), (0, cols - d)))

    km = jnp.broadcast_to(jnp.arange(Lp) < L, (R, Lp))
    if key_mask is not None:
        km = km & jnp.pad(key_mask.reshape(R, L), ((0, 0), (0, Lp - L)))
    qs = q * jnp.asarray(scale, q.dtype)
    return pad(qs, dk, dkp), pad(k, dk, dkp), pad(v, dv, dvp), km.astype(jnp.int32)
