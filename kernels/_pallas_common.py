"""What the Pallas kernels share: compiler parameters, power-of-two tile sizes, the
mode-axis block, and the rules a tile size must follow per platform."""

import math

import jax.numpy as jnp

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
