"""seqkit.kernels: each kernel's XLA path against its Pallas kernel.

For every kernel with an `impl` switch (Vandermonde, Cauchy, the diagonal linear
scan, sliding-window local attention, and the block-sparse attention kernel behind
BigBird and Longformer) and each length `L`, the forward and the
forward+backward (gradient of a sum of squares) are timed, `impl="xla"` and then
`impl="pallas"` on the same inputs, with the compiled program's temporary memory
(`memory_analysis()`) and, where the backend reports it (`device.memory_stats()`,
GPU), the peak device memory of the forward+backward. A true peak needs a fresh
process per case (the counter only grows), so on such backends every case runs in
its own subprocess, one after the other; `--no-isolate` runs them all in this
process and reports no peak.

    python benchmarks/kernels.py                                # GPU: L = 1K ... 64K
    python benchmarks/kernels.py --lengths 4096 16384 --only local_attention
    python benchmarks/kernels.py --quick                        # tiny sizes (CPU: interpret mode)

On CPU Pallas runs in interpret mode (the kernel's own code evaluated op by op:
exact and slow, meant for tests), so there the script runs `--quick` tiny sizes
and its times say nothing about the kernels' speed; peak memory is n/a.
With matplotlib (`pip install ".[bench]"`) it draws the times against `L`.
"""

import argparse
import functools
import inspect
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402
from seqkit.attention import bigbird_attention, local_attention, longformer_attention  # noqa: E402
from seqkit.kernels import cauchy, linear_scan, vandermonde  # noqa: E402

KERNELS = ("vandermonde", "cauchy", "linear_scan", "local_attention", "bigbird", "longformer")
GPU_LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
QUICK_LENGTHS = [64, 128]
# (full size, --quick size) of the other dimensions
SIZES = dict(
    channels=(256, 2),  # H: SSM channels (Vandermonde, Cauchy), scan width
    modes=(32, 4),  # n: modes per channel
    heads=(8, 2),  # attention heads
    head_dim=(64, 16),
    window=(256, 16),  # local attention: |i − j| < window; Longformer's window
    block=(64, 16),  # BigBird's block size
)


def _size(args, name):
    return SIZES[name][1 if args.quick else 0]


def _rng_complex(rng, shape, scale=1.0):
    return jnp.asarray(scale * (rng.normal(size=shape) + 1j * rng.normal(size=shape)), jnp.complex64)


def _accepts_impl(fn) -> bool:
    try:
        return "impl" in inspect.signature(inspect.unwrap(fn)).parameters
    except (TypeError, ValueError):
        return False


def make_case(kernel, L, args):
    """`(fn(impl) -> f(*inputs), inputs, grad argnums)` for one kernel at length `L`,
    or `None` when the kernel has no `impl` switch here."""
    rng = np.random.default_rng(0)
    H, n = _size(args, "channels"), _size(args, "modes")
    if kernel == "vandermonde":
        v = _rng_complex(rng, (H, n))
        x = jnp.asarray(-rng.uniform(1e-3, 0.1, (H, n)) + 1j * rng.normal(size=(H, n)), jnp.complex64)
        return (lambda impl: functools.partial(vandermonde, L=L, impl=impl)), (v, x), (0, 1)
    if kernel == "cauchy":
        if not _accepts_impl(cauchy):
            return None
        v = _rng_complex(rng, (H, 1, n))
        lam = jnp.asarray(-rng.uniform(0.1, 0.5, (H, n)) + 1j * rng.normal(size=(H, n)), jnp.complex64)
        z = jnp.exp(2j * jnp.pi * jnp.arange(L) / L).astype(jnp.complex64)
        return (lambda impl: lambda v, lam: cauchy(v, z, lam, impl=impl)), (v, lam), (0, 1)
    if kernel == "linear_scan":
        a = jnp.asarray(rng.uniform(0.5, 0.99, (L, H)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(L, H)), jnp.float32)
        return (lambda impl: functools.partial(linear_scan, impl=impl)), (a, b), (0, 1)
    if kernel == "local_attention":
        h, d, w = _size(args, "heads"), _size(args, "head_dim"), _size(args, "window")
        q, k, v = (jnp.asarray(rng.normal(size=(h, L, d)), jnp.float32) for _ in range(3))

        def fn(impl):
            one = functools.partial(local_attention, window_size=w, mode="sliding", causal=True, impl=impl)
            return jax.vmap(one)

        return fn, (q, k, v), (0, 1, 2)
    if kernel in ("bigbird", "longformer"):
        h, d = _size(args, "heads"), _size(args, "head_dim")
        q, k, v = (jnp.asarray(rng.normal(size=(h, L, d)), jnp.float32) for _ in range(3))
        if kernel == "bigbird":  # LRA's BigBird: 3 random and 2 global blocks
            seed = jax.random.key_data(jax.random.key(0))
            pattern = functools.partial(
                bigbird_attention, block_size=_size(args, "block"), num_random=3, num_global=2, seed=seed
            )
        else:  # one global token, as a CLS token
            pattern = functools.partial(longformer_attention, window_size=_size(args, "window"), num_global=1)

        def fn(impl):
            return jax.vmap(functools.partial(pattern, impl=impl))

        return fn, (q, k, v), (0, 1, 2)
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")


def _best(fn, repeats):
    """The fastest of `repeats` timed calls, after one untimed (compiling) call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_bytes():
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def measure(kernel, impl, L, args):
    """One table row, or `None` when the kernel is skipped."""
    case = make_case(kernel, L, args)
    if case is None:
        return None
    fn, inputs, argnums = case
    f = fn(impl)

    def loss(*xs):
        out = f(*xs)
        return jnp.sum(jnp.abs(out) ** 2) if jnp.iscomplexobj(out) else jnp.sum(out**2)

    fwd = jax.jit(f)
    both = jax.jit(jax.value_and_grad(loss, argnums=argnums))
    row = dict(kernel=kernel, impl=impl, L=L)
    try:
        temp = both.lower(*inputs).compile().memory_analysis()
        row["temp_mb"] = None if temp is None else temp.temp_size_in_bytes / 2**20
        row["fwd_ms"] = 1e3 * _best(lambda: jax.block_until_ready(fwd(*inputs)), args.repeats)
        row["fwd_bwd_ms"] = 1e3 * _best(lambda: jax.block_until_ready(both(*inputs)), args.repeats)
        peak = _peak_bytes()
        row["peak_mb"] = None if peak is None else peak / 2**20
    except Exception as e:  # e.g. out of memory at the longest lengths: report, go on
        row.update(fwd_ms=None, fwd_bwd_ms=None, peak_mb=None, error=f"{type(e).__name__}: {e}"[:200])
        row.setdefault("temp_mb", None)
    return row


def measure_isolated(kernel, impl, L, args):
    """`measure` in a fresh process, so that the device's peak counter is this case's."""
    cmd = [sys.executable, os.path.abspath(__file__), "--case", kernel, impl, str(L)]
    cmd += ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{") or ln == "null"]
    if res.returncode or not lines:
        err = (res.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return dict(kernel=kernel, impl=impl, L=L, fwd_ms=None, fwd_bwd_ms=None, temp_mb=None,
                    peak_mb=None, error=err)  # fmt: skip
    return json.loads(lines[-1])


def _fmt(x, width, digits, missing="n/a"):
    return f"{x:>{width}.{digits}f}" if x is not None else f"{missing:>{width}}"


def print_row(r):
    base = r.get("xla_fwd_bwd_ms")
    ratio = None if not base or r["fwd_bwd_ms"] is None else r["fwd_bwd_ms"] / base
    print(
        f"{r['L']:>6} {r['kernel']:<16} {r['impl']:<7} {_fmt(r['fwd_ms'], 9, 2)} "
        f"{_fmt(r['fwd_bwd_ms'], 11, 2)} {_fmt(ratio, 9, 2, '-')} "
        f"{_fmt(r['temp_mb'], 9, 1)} {_fmt(r['peak_mb'], 9, 1)}"
        + (f"  ({r['error']})" if r.get("error") else "")
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", help="default: 1K ... 64K on GPU, --quick sizes on CPU"
    )
    parser.add_argument("--only", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (automatic on CPU)")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--no-isolate", action="store_true", help="measure every case in this process")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    parser.add_argument("--rows", help="redraw the figure from rows saved by --json (no measuring)")
    parser.add_argument("--case", nargs=3, metavar=("KERNEL", "IMPL", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # one isolated measurement, for measure_isolated
        kernel, impl, L = args.case
        print(json.dumps(measure(kernel, impl, int(L), args)))
        return
    if args.rows:
        title, table = load_rows(args.rows)
        plot(table, title, args.plot)
        return
    backend = jax.default_backend()
    if backend == "cpu":
        args.quick = True  # interpret mode: only tiny sizes are reasonable
    lengths = args.lengths or (QUICK_LENGTHS if args.quick else GPU_LENGTHS)
    isolate = not args.no_isolate and _peak_bytes() is not None
    sizes = ", ".join(f"{k}={_size(args, k)}" for k in SIZES)
    pallas_note = "Pallas in interpret mode (times meaningless)" if backend == "cpu" else "Pallas compiled"
    title = (
        f"seqkit.kernels, XLA vs Pallas, float32, {sizes}; {jax.devices()[0].device_kind} "
        f"({backend}); {pallas_note}; min of {args.repeats}"
    )
    print(title)
    print(
        f"{'L':>6} {'kernel':<16} {'impl':<7} {'fwd ms':>9} {'fwd+bwd ms':>11} {'x xla':>9} "
        f"{'temp MiB':>9} {'peak MiB':>9}"
    )
    table = []
    for kernel in args.only:
        for L in lengths:
            xla = None
            for impl in ("xla", "pallas"):
                run = measure_isolated if isolate else measure
                row = run(kernel, impl, L, args)
                if row is None:
                    break
                if not isolate:  # one process: the peak counter holds every earlier case's
                    row["peak_mb"] = None
                if impl == "xla":
                    xla = row
                else:
                    row["xla_fwd_bwd_ms"] = xla["fwd_bwd_ms"]
                table.append(row)
                print_row(row)
            else:
                continue
            print(f"(skipped {kernel}: seqkit.kernels.{kernel} takes no impl= argument here)")
            break
        if args.json:  # after every kernel, so a run stopped part way keeps what it measured
            save_rows(args.json, title, table)
    plot(table, title, args.plot)


def plot(table, title, path):
    for r in table:
        r["case"] = f"{r['kernel']} {r['impl']}"
    panels = [
        dict(ylabel="forward (ms)", series=series(table, "case", "L", "fwd_ms")),
        dict(ylabel="forward+backward (ms)", series=series(table, "case", "L", "fwd_bwd_ms")),
    ]
    plot_panels(path, title, "sequence length L", panels)


if __name__ == "__main__":
    main()
