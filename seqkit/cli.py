"""The `seqkit` command: train, eval, recipes, data, plot, sweep, generate, demo."""

import argparse
import math
import os
import sys
import time

import seqkit
from seqkit._cli_common import _one_line, _Usage, _user_errors, positive_int
from seqkit._cli_data import add_data_parser
from seqkit._cli_generate import add_generate_parser
from seqkit._cli_plot import add_plot_parser
from seqkit._cli_sweep import add_sweep_parser
from seqkit._paths import expand_path


def _fail(message: str) -> int:
    print(f"seqkit: error: {message}", file=sys.stderr)
    return 2


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from seqkit import ssm

    key = jax.random.key(args.seed)
    L, H = args.length, args.width
    t = np.linspace(0, 8 * np.pi, L)
    # A generated multichannel signal: chirps with different rates per channel.
    u = jnp.asarray(np.sin(np.outer(t, 1 + np.arange(H) / H) * t[:, None] / 8), jnp.float32)
    cores = {
        "S4": ssm.S4(H, l_max=L, key=key),
        "S4D": ssm.S4D(H, key=key),
        "DSS": ssm.DSS(H, key=key),
        "EMA": ssm.EMA(H, key=key),
    }
    print(f"seqkit demo: SSM cores on a generated {L}x{H} signal (conv mode vs step mode)")
    print(f"{'core':<5} {'conv ms':>9} {'step ms':>9} {'max |conv - step|':>18}")
    for name, core in cores.items():
        conv = jax.jit(core.__call__)
        y = conv(u).block_until_ready()
        t0 = time.perf_counter()
        y = conv(u).block_until_ready()
        t_conv = time.perf_counter() - t0

        @jax.jit
        def run_steps(u, core=core):
            def body(state, u_t):
                y_t, state = core.step(u_t, state)
                return state, y_t

            return jax.lax.scan(body, core.init_state(L), u)[1]

        ys = run_steps(u).block_until_ready()
        t0 = time.perf_counter()
        ys = run_steps(u).block_until_ready()
        t_step = time.perf_counter() - t0
        err = float(jnp.max(jnp.abs(y - ys)))
        print(f"{name:<5} {1e3 * t_conv:>9.2f} {1e3 * t_step:>9.2f} {err:>18.2e}")
    return 0


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _scores(results: dict) -> str:
    """Accuracy, and for language models bits per token first."""
    val, test = 100 * results["val_accuracy"], 100 * results["test_accuracy"]
    if math.isnan(val):  # an objective with no accuracy (masked-patch pretraining)
        return f"val loss {results['val_loss']:.4f}, test loss {results['test_loss']:.4f}"
    acc = f"val accuracy {val:.2f}%, test accuracy {test:.2f}%"
    if "val_bits_per_token" in results:
        bits = f"{results['val_bits_per_token']:.3f} / {results['test_bits_per_token']:.3f} bits per token"
        return f"val / test {bits}, next-token {acc}"
    return acc


def _summary(results: dict, run_dir: str) -> str:
    steps = results["steps"]
    return (
        f"{results['recipe']} ({results['preset']}): {_scores(results)} after {steps} "
        f"step{'' if steps == 1 else 's'} in {_duration(results['wall_time_s'])} "
        f"({results['train_examples_per_s']:.1f} ex/s with compilation and validation); "
        f"run directory {run_dir}"
    )


def _train(args: argparse.Namespace) -> int:
    import jax

    from seqkit import recipes
    from seqkit.train import CheckpointError, RecipeError, init_distributed, override, train

    out = args.train_dir = expand_path(args.out or os.path.join("runs", f"{args.recipe}-{args.preset}"))
    try:
        # A process of a multi-process run joins it before anything starts JAX.
        init_distributed()
        recipe = override(recipes.get(args.recipe, args.preset), args.sets)
        recipe.validate()  # keys, kinds, types, ranges and pattern, before generating any data
        sources = recipe.make_sources()
    except _user_errors() as e:
        raise _Usage(_one_line(e)) from None
    try:
        # train() validates the model against the data before it writes or compiles anything.
        results = train(recipe, out, resume=args.resume, progress=not args.no_progress, sources=sources)
    except (RecipeError, CheckpointError, OSError) as e:
        raise _Usage(_one_line(e)) from None
    if jax.process_index() == 0:  # one summary for a multi-process run
        print(_summary(results, out))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from seqkit.train import evaluate_run

    try:
        out = evaluate_run(args.run_dir)
    except _user_errors() as e:
        raise _Usage(_one_line(e)) from None
    print(f"{out['recipe']} ({out['preset']}) at step {out['step']}: {_scores(out)}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from seqkit import recipes

    specs = [recipes.SPECS[n] for n in recipes.names()]
    rows = [("recipe", "task", "model", "presets", "source")] + [
        (s.name, s.task, s.model, ", ".join(["default", *s.presets]), s.source) for s in specs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"seqkit {seqkit.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a recipe; writes a run directory ending with results.json")
    tr.add_argument("recipe", help="recipe name (see `seqkit recipes`)")
    tr.add_argument("--preset", default="default", help="recipe preset (e.g. smoke, cpu)")
    tr.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="edit the recipe, e.g. --set model.n_layers=4 (repeatable)",
    )
    tr.add_argument("--out", help="run directory (default runs/RECIPE-PRESET)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a run directory's checkpoint on val and test")
    ev.add_argument("run_dir", help="the --out of a `seqkit train` run (its checkpoint and config.json)")
    ev.set_defaults(func=_eval)

    rc = sub.add_parser("recipes", help="list the recipes with one-line descriptions")
    rc.set_defaults(func=_recipes)

    add_data_parser(sub)
    add_plot_parser(sub)
    add_sweep_parser(sub)
    add_generate_parser(sub)

    demo = sub.add_parser(
        "demo", help="run every convolutional SSM core in conv and step mode on a generated signal"
    )
    demo.add_argument("--length", type=positive_int, default=1024, help="signal length L (default 1024)")
    demo.add_argument("--width", type=positive_int, default=32, help="channels H (default 32)")
    demo.add_argument("--seed", type=int, default=0, help="the cores' initialization seed (default 0)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _Usage as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        # a run's last checkpoint is whole (written atomically): nothing to clean up
        print(f"\n{_interrupted(getattr(args, 'train_dir', None))}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`seqkit recipes | head`): stop quietly, and keep
        # Python's exit-time flush of stdout from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _interrupted(run_dir: str | None) -> str:
    """What a Ctrl-C leaves: for `train` and `sweep` (which set `args.train_dir`),
    whether the run directory has a checkpoint to resume from."""
    if run_dir is None or not os.path.isdir(run_dir):
        return "seqkit: interrupted"
    if os.path.exists(os.path.join(run_dir, "checkpoint.eqx")):
        return f"seqkit: interrupted; {run_dir} continues from its last checkpoint with --resume"
    return f"seqkit: interrupted before the first checkpoint: nothing to resume in {run_dir}"


if __name__ == "__main__":
    sys.exit(main())
