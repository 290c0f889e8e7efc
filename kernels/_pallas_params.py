"""The Pallas compiler parameters every kernel passes to `pallas_call`."""


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
