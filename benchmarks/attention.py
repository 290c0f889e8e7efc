"""Forward+backward time and compiled memory of every attention mixer, relative
to vanilla attention (the efficiency table of the Long Range Arena paper, Table 2,
measured on this machine).

Each mixer is batched with `jax.vmap` (batch 8, d_model 128, 2 heads by default)
and `jax.value_and_grad` of a mean-square loss is jitted over parameters and
input. Memory is from XLA's `compiled.memory_analysis()`: `temp` is the peak
scratch the program needs besides its arguments and outputs (the part that
grows with the attention pattern); `total` adds arguments and outputs
(parameters, input, gradients). Vanilla is `MultiHeadAttention(impl="dense")`,
the `L × L` reference; `mha-chunked` is seqkit's default online-softmax path.
Times are the minimum over `--repeats` round-robin runs in one process, so
ratios are side by side. A program whose `temp` exceeds `--max-temp-gb` is
compiled (memory reported) but not run. With matplotlib (`pip install
".[bench]"`) it also draws time and memory against L (`--plot`); `--rows`
redraws the table and figure from a `--json` file without measuring.

    python benchmarks/attention.py                    # L in 1024, 2048, 4096, 8192
    python benchmarks/attention.py --quick            # L = 1024, 2 repeats
    python benchmarks/attention.py --lengths 4096 --only vanilla mha-chunked local
    python benchmarks/attention.py --rows rows.json --plot attention.png
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402

import seqkit.attention as sa  # noqa: E402
from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402


def variants(L):
    """Name -> (class, options): the defaults (the papers' LRA settings), with the
    length-bound ones sized to L."""
    return {
        "vanilla": (sa.MultiHeadAttention, dict(impl="dense")),
        "mha-chunked": (sa.MultiHeadAttention, dict()),
        "local": (sa.LocalAttention, dict()),
        "local-sliding": (sa.LocalAttention, dict(mode="sliding")),
        "sparse-strided": (sa.SparseAttention, dict(pattern="strided")),
        "sparse-fixed": (sa.SparseAttention, dict()),
        "longformer": (sa.Longformer, dict()),
        "bigbird": (sa.BigBird, dict()),
        "linformer": (sa.Linformer, dict(max_len=L)),
        "linear": (sa.LinearAttention, dict()),
        "performer": (sa.Performer, dict()),
        "kernelized": (sa.KernelizedAttention, dict()),
        "synthesizer": (sa.Synthesizer, dict(max_len=L)),
        "synth-random-fact": (sa.Synthesizer, dict(max_len=L, mode="random", factorized=True)),
        "sinkhorn": (sa.SinkhornAttention, dict()),
        "reformer": (sa.ReformerAttention, dict()),
        "luna": (sa.LunaAttention, dict()),
        "longshort": (sa.LongShortAttention, dict()),
        "contextpool": (sa.ContextPool, dict()),
    }


def fwd_bwd(layer, x):
    params, static = eqx.partition(layer, eqx.is_inexact_array)

    def loss(p, x):
        y = jax.vmap(eqx.combine(p, static))(x)
        return jnp.mean(y**2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params


def measure(lengths, batch, d, heads, repeats, only, max_temp_gb, log):
    rows = []
    for L in lengths:
        key = jr.key(0)
        x = jr.normal(key, (batch, L, d))
        table = variants(L)
        names = [n for n in table if not only or n in only]
        fns = {}
        for name in names:
            cls, opts = table[name]
            f, p = fwd_bwd(cls(d, heads, key=key, **opts), x)
            t0 = time.perf_counter()
            compiled = f.lower(p, x).compile()
            mem = compiled.memory_analysis()
            runnable = mem.temp_size_in_bytes <= max_temp_gb * 2**30
            if runnable:
                jax.block_until_ready(compiled(p, x))  # warm up
            fns[name] = (compiled, p, mem, runnable)
            log(f"  L={L} {name}: compiled+warm in {time.perf_counter() - t0:.1f}s")
        best = {name: float("inf") for name in fns}
        for _ in range(repeats):  # round-robin: every mixer sees the same machine state
            for name, (compiled, p, _, runnable) in fns.items():
                if runnable:
                    t0 = time.perf_counter()
                    jax.block_until_ready(compiled(p, x))
                    best[name] = min(best[name], time.perf_counter() - t0)
        ref_t = best.get("vanilla", float("inf"))
        chunk_t = best.get("mha-chunked", float("inf"))
        ref_m = fns["vanilla"][2].temp_size_in_bytes if "vanilla" in fns else float("nan")
        for name, (_, _, mem, runnable) in fns.items():
            total = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
            rows.append(
                dict(
                    L=L,
                    mixer=name,
                    ms=1e3 * best[name] if runnable else None,
                    speedup=ref_t / best[name] if runnable and ref_t < float("inf") else None,
                    x_chunked=chunk_t / best[name] if runnable and chunk_t < float("inf") else None,
                    temp_mb=mem.temp_size_in_bytes / 2**20,
                    total_mb=total / 2**20,
                    mem_x_vanilla=mem.temp_size_in_bytes / ref_m,
                )
            )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--d-model", type=positive_int, default=128)
    parser.add_argument("--heads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--quick", action="store_true", help="L = 1024 and 2 repeats")
    parser.add_argument("--only", nargs="+", help="mixer names to run (vanilla is the reference)")
    parser.add_argument("--max-temp-gb", type=float, default=6.0)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--verbose", action="store_true", help="log compile progress")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    parser.add_argument("--rows", help="redraw from rows saved by --json instead of measuring")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.repeats = [1024], 2
    if args.only:
        known = set(variants(args.lengths[0]))
        unknown = [n for n in args.only if n not in known]
        if unknown:
            parser.error(f"unknown mixer {unknown[0]!r}; expected some of: {', '.join(sorted(known))}")
        if "vanilla" not in args.only:  # the reference of every ratio
            args.only = ["vanilla", *args.only]
    log = print if args.verbose else (lambda *a: None)
    title = (
        f"attention mixers, forward+backward, batch {args.batch}, d_model {args.d_model}, "
        f"{args.heads} heads; {jax.devices()[0].platform}, {os.cpu_count()} cores; min of {args.repeats}"
    )
    if args.rows:
        title, rows = load_rows(args.rows)
    else:
        rows = measure(
            args.lengths,
            args.batch,
            args.d_model,
            args.heads,
            args.repeats,
            args.only,
            args.max_temp_gb,
            log,
        )
    print(
        f"{title}; speed-up (vanilla time / time), vs chunked (mha-chunked time / time), "
        "memory relative to vanilla (dense)"
    )
    print(
        f"{'L':>6} {'mixer':<18} {'ms':>9} {'speed-up':>9} {'vs chunked':>10} {'temp MiB':>9} "
        f"{'total MiB':>10} {'mem x vanilla':>13}"
    )
    for r in rows:
        ms = f"{r['ms']:>9.1f}" if r["ms"] is not None else f"{'(skip)':>9}"
        sp = f"{r['speedup']:>9.2f}" if r["speedup"] is not None else f"{'-':>9}"
        sc = f"{r['x_chunked']:>10.2f}" if r["x_chunked"] is not None else f"{'-':>10}"
        print(
            f"{r['L']:>6} {r['mixer']:<18} {ms} {sp} {sc} {r['temp_mb']:>9.1f} "
            f"{r['total_mb']:>10.1f} {r['mem_x_vanilla']:>13.3f}"
        )
    if args.json:
        save_rows(args.json, title, rows)
    plot_panels(
        args.plot,
        title,
        "sequence length L",
        [
            dict(ylabel="time (ms)", series=series(rows, "mixer", "L", "ms")),
            dict(ylabel="compiled temporaries (MiB)", series=series(rows, "mixer", "L", "temp_mb")),
        ],
    )


if __name__ == "__main__":
    main()
