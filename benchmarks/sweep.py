"""Training throughput of K sweep members vmapped into one program against K
sequential runs of the same model.

Both sides train the same K members (same architecture, learning rates spread
over a decade, one seed each) on the same batches, passed as NumPy arrays as the
trainer passes them (data loading itself is not timed; a sweep loads each batch
once, K runs K times):

- vmapped: `seqkit.train.make_sweep_step`, one jit-compiled program stepping all
  K members (what `seqkit sweep` runs);
- sequential: the solo training step (`make_train_step`) called once per member
  per step, K runs one after the other. All K share one compiled program here
  (hyperparameters as arrays in the optimizer state), so the sequential side pays
  one compilation, not the K that K separate `seqkit train` runs would pay: the
  ratio is of steady-state steps only, and the compile column shows the rest.

Time is the minimum over repeats, each side timed round-robin in one process.
Speed-up = sequential time / vmapped time for the same K × steps member-steps.

    python benchmarks/sweep.py                  # K in 1 2 4 8, L in 64 256, d_model 32, 2 layers
    python benchmarks/sweep.py --quick          # a toy size, seconds of stepping
    python benchmarks/sweep.py --members 1 8 --lengths 1024 --json out.json

On a CPU the vmapped program gains where per-step overhead (dispatch, small
ops) dominates and loses where K members' working set no longer fits the cache
(it behaves like one run with a K times larger batch): compare the lengths.

With matplotlib (`pip install ".[bench]"`) it also draws throughput and the
speed-up against K (`--plot`); `--rows` redraws from a `--json` file.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402
from seqkit.nn import S4DConfig  # noqa: E402
from seqkit.train import (  # noqa: E402
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    Recipe,
    ScheduleConfig,
    TrainerConfig,
    init_key,
    make_optimizer,
    make_sweep_step,
    make_train_step,
    step_key,
)


def make_recipe(L, d_model, n_layers, state_size, batch):
    return Recipe(
        name="bench-sweep",
        model=ModelConfig(
            d_model=d_model,
            n_layers=n_layers,
            mixers=[S4DConfig(state_size=state_size, dropout=0.1)],
            norm="layer",
            dropout=0.1,
        ),
        data=DataConfig(name="synthetic", n_classes=10),
        optimizer=OptimizerConfig(lr=0.004, weight_decay=0.05, grad_clip=1.0),
        schedule=ScheduleConfig(warmup_steps=10, total_steps=1000),
        trainer=TrainerConfig(batch_size=batch, seed=0),
    )


def array_optimizer(recipe, lr):
    o, s = recipe.optimizer, recipe.schedule
    return make_optimizer(
        learning_rate=lr,
        weight_decay=o.weight_decay,
        ssm_learning_rate=o.ssm_lr,
        warmup_steps=s.warmup_steps,
        total_steps=s.total_steps,
        grad_clip=o.grad_clip,
        hyperparams_as_arrays=True,
    )


def stack(trees):
    parts = [eqx.partition(t, eqx.is_array) for t in trees]
    return eqx.combine(jax.tree.map(lambda *xs: jnp.stack(xs), *[p[0] for p in parts]), parts[0][1])


def take(tree, k):
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[k], arrays), static)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def measure(members, L, d_model, n_layers, state_size, batch, steps, repeats):
    recipe = make_recipe(L, d_model, n_layers, state_size, batch)
    rng = np.random.default_rng(0)
    data = [
        {
            "inputs": rng.normal(size=(batch, L, 1)).astype(np.float32),
            "label": rng.integers(0, 10, size=batch).astype(np.int32),
        }
        for _ in range(4)
    ]
    K_max = max(members)
    seeds = list(range(K_max))
    lrs = [float(lr) for lr in np.geomspace(1e-3, 1e-2, K_max)]
    example = np.zeros((L, 1), np.float32)
    keys = jnp.stack([init_key(s) for s in seeds])
    models, states = eqx.filter_vmap(lambda k: recipe.build_model(example, key=k))(keys)
    params = eqx.filter(models, eqx.is_inexact_array)
    opts = [array_optimizer(recipe, lr) for lr in lrs]
    opt_states = stack([opt.init(take(params, k)) for k, opt in enumerate(opts)])
    n_params = sum(x.size for x in jax.tree.leaves(params)) // K_max

    # Sequential: one solo program (hyperparameters read from each member's state).
    solo = make_train_step(opts[0])
    seq = [[take(models, k), take(states, k), take(opt_states, k)] for k in range(K_max)]

    def run_sequential(K, n, start):
        for i in range(start, start + n):
            for k in range(K):
                m = seq[k]
                m[0], m[1], m[2], metrics = solo(m[0], m[1], m[2], data[i % len(data)], step_key(seeds[k], i))
        return metrics

    _, solo_compile = timed(run_sequential, 1, 1, 0)
    rows = []
    for K in members:
        vstep = make_sweep_step(opts[0])
        vm = [take(models, slice(0, K)), take(states, slice(0, K)), take(opt_states, slice(0, K))]

        def run_vmapped(n, start, K=K, vstep=vstep, vm=vm):
            for i in range(start, start + n):
                keys = jnp.stack([step_key(s, i) for s in seeds[:K]])
                vm[0], vm[1], vm[2], metrics = vstep(vm[0], vm[1], vm[2], data[i % len(data)], keys)
            return metrics

        _, compile_s = timed(run_vmapped, 1, 0)
        run_sequential(K, 1, 0)  # warm every member's buffers
        best_v = best_s = float("inf")
        for r in range(repeats):  # round-robin: both sides see the same machine state
            start = 1 + r * steps
            best_v = min(best_v, timed(run_vmapped, steps, start)[1])
            best_s = min(best_s, timed(run_sequential, K, steps, start)[1])
        rows.append(
            dict(
                L=L,
                K=K,
                vmapped_ms=1e3 * best_v / steps,
                sequential_ms=1e3 * best_s / steps,
                vmapped_ex_s=K * steps * batch / best_v,
                sequential_ex_s=K * steps * batch / best_s,
                speedup=best_s / best_v,
                compile_s=compile_s,
                solo_compile_s=solo_compile,
                n_params=int(n_params),
            )
        )
        print(
            f"  K={K}: vmapped {1e3 * best_v / steps:.1f} ms/step, sequential {1e3 * best_s / steps:.1f} "
            f"ms/step, speed-up {best_s / best_v:.2f}x",
            flush=True,
        )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="values of K")
    parser.add_argument(
        "--lengths", type=positive_int, nargs="+", help="sequence lengths L (default 64 256; --quick 64)"
    )
    parser.add_argument("--d-model", type=positive_int, help="model width (default 32; --quick 16)")
    parser.add_argument("--layers", type=positive_int, help="residual blocks (default 2; --quick 1)")
    parser.add_argument("--state-size", type=positive_int, default=32, help="S4D state size N")
    parser.add_argument("--batch", type=positive_int, help="batch size (default 16; --quick 8)")
    parser.add_argument("--steps", type=positive_int, help="steps per timed repeat (default 20; --quick 5)")
    parser.add_argument(
        "--repeats", type=positive_int, help="timed repeats, the minimum is kept (default 3; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="a toy size (smoke test)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    parser.add_argument("--rows", help="redraw from rows saved by --json instead of measuring")
    args = parser.parse_args()
    quick = args.quick
    lengths = args.lengths or ([64] if quick else [64, 256])
    d_model = args.d_model or (16 if quick else 32)
    layers = args.layers or (1 if quick else 2)
    batch = args.batch or (8 if quick else 16)
    steps = args.steps or (5 if quick else 20)
    repeats = args.repeats or (1 if quick else 3)
    title = (
        f"sweep: K members vmapped vs K sequential runs; S4D d_model {d_model}, {layers} layers, "
        f"N {args.state_size}, batch {batch}; {jax.devices()[0].platform}, {os.cpu_count()} cores; "
        f"min of {repeats} × {steps} steps"
    )
    if args.rows:  # the saved run's own title, not one made of this command's options
        title, rows = load_rows(args.rows)
        print(title, flush=True)
    else:
        print(title, flush=True)
        rows = []
        for L in lengths:
            print(f"L = {L}", flush=True)
            rows += measure(args.members, L, d_model, layers, args.state_size, batch, steps, repeats)
            if args.json:  # after each length, so a run stopped part way keeps what it measured
                save_rows(args.json, title, rows)
    print(
        f"{'L':>6} {'K':>3} {'vmapped ms':>11} {'sequential ms':>14} {'vmapped ex/s':>13} "
        f"{'sequential ex/s':>16} {'speed-up':>9} {'compile s':>10} {'solo compile s':>15}"
    )
    for r in rows:
        print(
            f"{r['L']:>6} {r['K']:>3} {r['vmapped_ms']:>11.1f} {r['sequential_ms']:>14.1f} "
            f"{r['vmapped_ex_s']:>13.0f} {r['sequential_ex_s']:>16.0f} {r['speedup']:>8.2f}x "
            f"{r['compile_s']:>10.1f} {r['solo_compile_s']:>15.1f}"
        )
    print(
        "(ms per step of all K members; ex/s counts member-examples; sequential runs would also "
        "compile K times: K × solo compile s)"
    )
    if args.json:
        save_rows(args.json, title, rows)
    for r in rows:
        r["kind_v"], r["kind_s"] = f"vmapped, L {r['L']}", f"sequential, L {r['L']}"
        r["length"] = f"L {r['L']}"
    thr = {**series(rows, "kind_v", "K", "vmapped_ex_s"), **series(rows, "kind_s", "K", "sequential_ex_s")}
    plot_panels(
        args.plot,
        title,
        "members K",
        [
            dict(ylabel="member-examples / s", series=thr),
            dict(
                ylabel="speed-up (sequential / vmapped time)",
                series=series(rows, "length", "K", "speedup"),
                logy=False,
                hline=1.5,
            ),
        ],
    )


if __name__ == "__main__":
    main()
