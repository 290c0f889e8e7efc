"""Forward+backward time and compiled memory of the SSM cores next to the floor.

The floor is a plain FFT convolution of the same shape with a free kernel (the
least any convolutional SSM layer must do). Every core and the floor are timed
round-robin in one process, so ratios are measured side by side; the minimum over
repeats is reported (the least disturbed run).

    python benchmarks/ssm_layers.py                     # L in 1024, 4096, 16384
    python benchmarks/ssm_layers.py --lengths 4096 --repeats 5 --json out.json

With matplotlib (`pip install ".[bench]"`) it also draws time and the ratio to
the floor against L (`--plot`); `--rows` redraws from a `--json` file.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402

from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402
from seqkit.ssm import DSS, EMA, S4, S4D, fft_conv  # noqa: E402


class FreeKernel(eqx.Module):
    """The floor: `y = K ∗ u + D u` with `K` a free parameter."""

    k: jax.Array
    D: jax.Array

    def __call__(self, u):
        return fft_conv(u, self.k, self.D)


def make_layers(L, H, N, key):
    return {
        "floor (fft conv)": FreeKernel(jr.normal(key, (H, L)) / L, jnp.ones(H)),
        "S4": S4(H, N, l_max=L, key=key),
        "S4D": S4D(H, N, key=key),
        "DSS": DSS(H, N, key=key),
        "EMA": EMA(H, 16, key=key),
    }


def fwd_bwd(layer, u):
    params, static = eqx.partition(layer, eqx.is_array)

    def loss(p, u):
        y = jax.vmap(eqx.combine(p, static))(u)
        return jnp.mean(y**2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params


def measure(lengths, batch, H, N, repeats):
    rows = []
    for L in lengths:
        key = jr.key(0)
        u = jr.normal(key, (batch, L, H))
        layers = make_layers(L, H, N, key)
        fns = {}
        for name, layer in layers.items():
            f, p = fwd_bwd(layer, u)
            compiled = f.lower(p, u).compile()
            mem = compiled.memory_analysis()
            jax.block_until_ready(compiled(p, u))  # warm up
            fns[name] = (compiled, p, mem)
        best = {name: float("inf") for name in fns}
        for _ in range(repeats):  # round-robin: every layer sees the same machine state
            for name, (compiled, p, _) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(p, u))
                best[name] = min(best[name], time.perf_counter() - t0)
        floor_t = best["floor (fft conv)"]
        floor_m = fns["floor (fft conv)"][2].temp_size_in_bytes
        for name, (_, _, mem) in fns.items():
            rows.append(
                dict(
                    L=L,
                    layer=name,
                    ms=1e3 * best[name],
                    x_floor=best[name] / floor_t,
                    temp_mb=mem.temp_size_in_bytes / 2**20,
                    mem_x_floor=mem.temp_size_in_bytes / floor_m,
                )
            )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--state-size", type=int, default=64)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    parser.add_argument("--rows", help="redraw from rows saved by --json instead of measuring")
    args = parser.parse_args()
    title = (
        f"SSM cores, forward+backward, batch {args.batch}, d_model {args.d_model}, N {args.state_size} "
        f"(EMA: ndim 16); {jax.devices()[0].platform}, {os.cpu_count()} cores; min of {args.repeats}"
    )
    if args.rows:
        title, rows = load_rows(args.rows)
        print(title)
    else:
        print(title)
        rows = measure(args.lengths, args.batch, args.d_model, args.state_size, args.repeats)
    print(f"{'L':>6} {'layer':<18} {'ms':>9} {'x floor':>8} {'temp MiB':>9} {'mem x floor':>11}")
    for r in rows:
        print(
            f"{r['L']:>6} {r['layer']:<18} {r['ms']:>9.1f} {r['x_floor']:>8.2f} "
            f"{r['temp_mb']:>9.1f} {r['mem_x_floor']:>11.2f}"
        )
    if args.json:
        save_rows(args.json, title, rows)
    plot_panels(
        args.plot,
        title,
        "sequence length L",
        [
            dict(ylabel="time (ms)", series=series(rows, "layer", "L", "ms")),
            dict(ylabel="time / floor", series=series(rows, "layer", "L", "x_floor"), logy=False),
        ],
    )


if __name__ == "__main__":
    main()
