"""The `seqkit sweep` subcommand: a hyperparameter study as one vmapped program.

Part of the command line (`seqkit.cli`); errors go through its one error path
(one line on stderr, exit code 2).
"""

import argparse
import os

from seqkit._paths import expand_path


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`["optimizer.lr=1e-3,3e-3", ...]` as `{"optimizer.lr": ["1e-3", "3e-3"]}`;
    values stay text (the sweep parses them by the key's type)."""
    from seqkit.train import RecipeError

    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"--grid: expected KEY=V1,V2,..., got {item!r}")
        if key in grid:
            raise RecipeError(f"--grid: the key {key!r} is given twice; list all its values in one --grid")
        grid[key] = [v.strip() for v in text.split(",")] if text.strip() else []
    return grid


def parse_seeds(text: str) -> int | list[int]:
    """`"3"` (three seeds from `trainer.seed` on) or `"0,5,7"` (those seeds)."""
    from seqkit.train import RecipeError

    try:
        if "," in text:
            return [int(s) for s in text.split(",")]
        return int(text)
    except ValueError:
        raise RecipeError(
            f"--seeds: expected a count or a comma-separated list of ints, got {text!r}"
        ) from None


def sweep_command(args: argparse.Namespace) -> int:
    """Run `seqkit sweep ...` from parsed arguments; returns the exit code."""
    from seqkit import recipes
    from seqkit._cli_common import _one_line, _Usage, _user_errors
    from seqkit.train import CheckpointError, RecipeError, init_distributed, override, sweep, sweep_table
    from seqkit.train._sweep import check_sweepable

    out = args.train_dir = expand_path(args.out or os.path.join("runs", f"sweep-{args.recipe}-{args.preset}"))
    try:
        # Launched as one of several processes (the JAX_* variables, or SLURM), join
        # them first, so that the sweep can refuse in every one of them.
        init_distributed()
        grid = parse_grid(args.grid)
        seeds = parse_seeds(args.seeds)
        recipe = override(recipes.get(args.recipe, args.preset), args.sets)
        check_sweepable(recipe)
        recipe.validate()  # keys, kinds, types and ranges, before generating any data
        sources = recipe.make_sources()
    except _user_errors() as e:
        raise _Usage(_one_line(e)) from None
    try:
        results = sweep(
            recipe,
            grid,
            seeds=seeds,
            run_dir=out,
            resume=args.resume,
            progress=not args.no_progress,
            sources=sources,
            per_member_data=args.per_member_data,
            member_devices=args.member_devices,
        )
    except (RecipeError, CheckpointError, OSError) as e:
        raise _Usage(_one_line(e)) from None
    print(sweep_table(results))
    figure = (
        os.path.join(out, results["figure"]) if results["figure"] else "none (matplotlib is not installed)"
    )
    print(f"sweep directory {out} (sweep.json, metrics.jsonl; figure {figure})")
    return 0


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Register `seqkit sweep` on the `seqkit` command's subparsers."""
    sw = subparsers.add_parser(
        "sweep",
        help="train a grid of hyperparameters × seeds as one vmapped program; writes sweep.json",
        description=(
            "Train every combination of --grid values, each with every seed, as one jit-compiled "
            "vmapped program (same architecture; learning rates, weight decays, warmup, init "
            "options such as dt ranges and seeds may differ). Writes per-member metrics, one "
            "checkpoint of all members, sweep.json, a table and a figure."
        ),
    )
    sw.add_argument("recipe", help="recipe name (see `seqkit recipes`)")
    sw.add_argument("--preset", default="default", help="recipe preset (e.g. smoke, cpu)")
    sw.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="edit the base recipe, e.g. --set model.n_layers=4 (repeatable)",
    )
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one key, e.g. --grid optimizer.lr=1e-3,3e-3 (repeatable: the product is swept)",
    )
    sw.add_argument(
        "--seeds",
        default="1",
        help="number of seeds per grid point (trainer.seed, +1, ...) or a list such as 0,5,7 (default 1)",
    )
    sw.add_argument("--out", help="sweep directory (default runs/sweep-RECIPE-PRESET)")
    sw.add_argument("--resume", action="store_true", help="continue the sweep in --out from its checkpoint")
    sw.add_argument(
        "--per-member-data",
        action="store_true",
        help="each member draws batches in its own seed's order (default: all see the same batches)",
    )
    sw.add_argument(
        "--member-devices",
        type=int,
        default=None,
        metavar="N",
        help="split the members over the first N devices (N divides the member count; default one device)",
    )
    sw.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    sw.set_defaults(func=sweep_command)
    return sw
