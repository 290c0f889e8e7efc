"""The `seqkit plot` subcommand: training curves of run and sweep directories as a PNG.

Part of the command line (`seqkit.cli`). Reads what the trainer writes: each run
directory's `metrics.jsonl` (records `{"step", "split", "loss", "accuracy", ...}`)
and, when present, its `config.json` (the recipe's `name` and `preset`, for the
label); a sweep directory's `metrics.jsonl` (the same records with `"member"` and
the member's settings) and `sweep_config.json` (the swept keys). matplotlib is
optional (the `bench` extra); it is imported only here.
"""

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from seqkit._json import json_or_none

METRICS = "metrics.jsonl"
CONFIG = "config.json"
SWEEP_CONFIG = "sweep_config.json"
DEFAULT_OUT = "plot.png"
_LEGEND_INSIDE = 8  # more runs than this: the legend sits beside the panels
_LEGEND_ROWS = 30  # entries per legend column beside the panels
_LEGEND_WIDTH = 3.6  # inches of figure width per legend column beside the panels
_INSTALL = 'matplotlib is not installed; pip install "seqkit[bench]" (or ".[bench]" in a checkout)'


class PlotError(Exception):
    """A one-line user error: a path that is not a run directory, or holds no metrics."""


def _read_records(path: str) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl`; a line cut short by a kill ends them (as
    when the trainer resumes)."""
    if not os.path.isfile(path):
        raise PlotError(f"{path}: no such file; expected a run directory written by `seqkit train`")
    records = []
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break
                if isinstance(rec, dict) and "step" in rec:
                    records.append(rec)
    except (OSError, UnicodeDecodeError) as e:
        raise PlotError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not any(r.get("split") in ("train", "val") for r in records):
        raise PlotError(f"{path}: no train or val metric records")
    return records


def _read_json(path: str) -> dict[str, Any] | None:
    data = json_or_none(path)
    return data if isinstance(data, dict) else None


def _members(label: str, records: list[dict[str, Any]], config: dict[str, Any] | None):
    """A sweep's records as one curve per member, labelled with its settings (the
    swept keys and the seed, from the records `seqkit sweep` writes)."""
    grid = config.get("grid") if config else None
    keys = [*grid, "seed"] if isinstance(grid, dict) else ["seed"]
    by_member: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if isinstance(r.get("member"), int):
            by_member.setdefault(r["member"], []).append(r)
    if not by_member:
        raise PlotError(f"{label}: a sweep directory whose metrics.jsonl has no per-member records")
    runs = []
    for member, recs in sorted(by_member.items()):
        settings = ", ".join(f"{k}={recs[0][k]}" for k in keys if k in recs[0])
        runs.append((f"{label} member {member}" + (f" ({settings})" if settings else ""), recs))
    return runs


def read_runs(run_dir: str | os.PathLike) -> list[tuple[str, list[dict[str, Any]]]]:
    """The curves of one directory: `[(label, records)]`, one for a `seqkit train`
    run and one per member for a `seqkit sweep` directory.

    A run's label is the directory as given, with the recipe and preset from
    `config.json` when it has them; a member's adds its index and settings.
    Raises `PlotError` naming the path when `run_dir` is not a directory, or its
    `metrics.jsonl` is missing or holds no train or val records.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise PlotError(f"{run_dir}: not a run directory (no such directory)")
    records = _read_records(os.path.join(run_dir, METRICS))
    label = run_dir.rstrip("/\\") or run_dir
    sweep_config = os.path.join(run_dir, SWEEP_CONFIG)
    if os.path.isfile(sweep_config):
        return _members(label, records, _read_json(sweep_config))
    config = _read_json(os.path.join(run_dir, CONFIG)) or {}
    name, preset = config.get("name"), config.get("preset")
    if name:
        label = f"{label} ({name}" + (f", {preset})" if preset else ")")
    return [(label, records)]


def _colors(n: int) -> list[Any]:
    """`n` distinct colours: matplotlib's ten-colour cycle, or evenly spaced over a
    colormap when there are more runs than it has colours."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    cmap = colormaps["turbo"]
    return [cmap(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def plot_runs(run_dirs: Sequence[str | os.PathLike], *, metric: str = "both") -> Any:
    """A matplotlib `Figure` of train `metric` against step, one line per run
    (per member of a sweep), with its validation records as points in the same
    colour. The legend has one entry per run; with more than eight runs it sits
    beside the panels (the figure widens for it) and the colours come from a
    colormap, so no two runs share one.

    **Arguments:**

    - `run_dirs`: run directories of `seqkit train` or `seqkit sweep` (each with a
      `metrics.jsonl`).
    - `metric`: `"loss"`, `"accuracy"` or `"both"` (two panels side by side).

    **Returns:** the figure (one axes per metric; not saved). Raises `PlotError`
    for a bad run directory and `ImportError` without matplotlib.
    """
    if metric not in ("loss", "accuracy", "both"):
        raise ValueError(f"metric must be 'loss', 'accuracy' or 'both', got {metric!r}")
    runs = [run for d in run_dirs for run in read_runs(d)]  # every path checked before drawing
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    metrics = ["loss", "accuracy"] if metric == "both" else [metric]
    many = len(runs) > _LEGEND_INSIDE  # the legend goes beside the panels, not over the curves
    width = 6.0 * len(metrics) + (_LEGEND_WIDTH * math.ceil(len(runs) / _LEGEND_ROWS) if many else 0.0)
    fig = Figure(figsize=(width, 4.4), dpi=100)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colors = _colors(len(runs))
    handles: dict[str, Any] = {}  # one legend entry per run: its train line (val points if none)
    for ax, name in zip(axes, metrics, strict=True):
        for (label, records), color in zip(runs, colors, strict=True):
            for split, style in (("train", dict(linestyle="-")), ("val", dict(linestyle="none", marker="o"))):
                pts = [(r["step"], r[name]) for r in records if r.get("split") == split and name in r]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    tag = label if split == "train" else f"{label} val"
                    (line,) = ax.plot(xs, ys, color=color, label=tag, linewidth=1.3, markersize=4, **style)
                    handles.setdefault(label, line)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title(f"{name} (line: train, points: val)", fontsize=9)
        ax.grid(True, alpha=0.3)
    legend = dict(handles=list(handles.values()), labels=list(handles), frameon=False)
    if many:
        axes[-1].legend(
            **legend,
            fontsize=6,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            ncol=math.ceil(len(runs) / _LEGEND_ROWS),
        )
    else:
        axes[0].legend(**legend, fontsize=7)
    fig.tight_layout()
    return fig


def plot_command(args: argparse.Namespace) -> int:
    """Run `seqkit plot` from parsed arguments; returns the exit code."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _error(_INSTALL)
    try:
        fig = plot_runs(args.run_dirs, metric=args.metric)
    except PlotError as e:
        return _error(str(e))
    out = args.out or DEFAULT_OUT
    if not os.path.splitext(out)[1]:  # matplotlib would add it; say the name written
        out += ".png"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        fig.savefig(out)
    except FileExistsError:  # a file where the output's directory should be
        return _error(f"{out}: cannot write the figure: {os.path.dirname(out)} is not a directory")
    except (OSError, ValueError) as e:  # unwritable path, unknown image format
        reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        return _error(f"{out}: cannot write the figure: {reason}")
    print(f"wrote {out}")
    return 0


def _error(message: str) -> int:
    print(f"seqkit plot: error: {message}", file=sys.stderr)
    return 2


def add_plot_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `plot` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="draw train loss/accuracy (and val points) against step for run or sweep directories",
        description=(
            "Draw each run's train metric against step from its metrics.jsonl (one line per run, "
            "one per member of a sweep, val records as points) and write a PNG. Needs matplotlib: "
            'pip install "seqkit[bench]".'
        ),
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories of `seqkit train` or `seqkit sweep` (each member drawn as a run)",
    )
    p.add_argument(
        "--out",
        help=f"the figure, PNG unless its name ends in .pdf, .svg, ... (default: ./{DEFAULT_OUT})",
    )
    p.add_argument(
        "--metric",
        choices=("loss", "accuracy", "both"),
        default="both",
        help="the metric to draw; both: two panels side by side (default)",
    )
    p.set_defaults(func=plot_command)
    return p
