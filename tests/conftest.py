"""Test configuration shared by every test in seqkit.

Tests run on the CPU, with strict dtype promotion, and (through pytest's
`--jaxtyping-packages=seqkit,beartype.beartype`, set in pyproject.toml) with
every annotated function in `seqkit` checked by jaxtyping + beartype.

`tests/` deliberately has no `__init__.py`: pytest then puts only `tests/` on
`sys.path` (not the repository root), so the *installed* `seqkit` is imported,
exactly as users get it. Test file names must therefore be unique.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402

from helpers import enable_x64  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

# Tests compile thousands of small programs and run each a few times: compilation,
# not execution, is their cost, and XLA's optimization passes more than double it
# (measured: 76 s vs 34 s for a sample of the padding tests). They check results,
# never speed, so they compile with most optimizations off, except tests that
# train for hundreds of steps (the `optimized` fixture). Code run in a subprocess
# (the README's commands, the benchmarks, the CLI tests) and every user run keep
# XLA's defaults; SEQKIT_TEST_OPTIMIZE=1 runs the whole suite with them.
if os.environ.get("SEQKIT_TEST_OPTIMIZE", "0") != "1":
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture
def getkey():
    """Returns a function that hands out a fresh PRNG key on every call."""
    counter = iter(range(10**6))

    def _getkey():
        return jr.key(next(counter))

    return _getkey


@pytest.fixture
def x64():
    """Runs the test with 64-bit types enabled (float64 references, check_grads)."""
    with enable_x64():
        yield


@pytest.fixture
def optimized():
    """XLA's optimizations back on for the test: for tests that run hundreds of
    steps or long sequences, where execution, not compilation, is the cost."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test file.

    Every XLA:CPU executable keeps its machine code in memory maps of its own; a
    single process running the whole suite accumulates tens of thousands of them
    and crosses the kernel's per-process limit (`vm.max_map_count`, 65530 by
    default), where the next compile crashes the interpreter with a segmentation
    fault. Test files share no compiled programs, so clearing between files costs
    nothing but keeps the count (and the memory) bounded.
    """
    yield
    jax.clear_caches()


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` or `tpu` run only where JAX's default backend is that
    accelerator (`JAX_PLATFORMS=cuda pytest -m gpu`); elsewhere they are skipped,
    saying which backend this run has."""
    backend = jax.default_backend()
    for item in items:
        for accelerator in ("gpu", "tpu"):
            if accelerator in item.keywords and backend != accelerator:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"needs a {accelerator.upper()}: this run's JAX backend is {backend} (run "
                        f"with JAX_PLATFORMS={'cuda' if accelerator == 'gpu' else 'tpu'} -m {accelerator})"
                    )
                )
