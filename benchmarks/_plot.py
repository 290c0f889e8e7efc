"""Figures for the benchmark scripts.

Every script prints its table and, when matplotlib is installed (the `bench`
extra: `pip install ".[bench]"`), also writes a PNG next to it. Without
matplotlib the table is still printed and one line says how to get the figure.
"""

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_path(script: str) -> str:
    """`benchmarks/plots/<script>.png` (git-ignored)."""
    return str(HERE / "plots" / f"{Path(script).stem}.png")


def plot_panels(path: str, title: str, xlabel: str, panels: list[dict]) -> bool:
    """Side-by-side line plots, one per panel; returns whether the file was written.

    Each panel is `dict(ylabel=..., series={name: [(x, y), ...]}, logx=True,
    logy=True, hline=None)`; points with `y is None` (not run) are left out and
    `hline` draws a dashed reference line (e.g. a target ratio).
    """
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(no figure: matplotlib is not installed; pip install '.[bench]' to write {path})")
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, (name, points) in enumerate(panel["series"].items()):
            pts = [(x, y) for x, y in points if y is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                # 20 colours; past them, the same colours again with dotted/dash-dot lines
                dash = ("-", "--", ":", "-.")[i % 2 + 2 * (i // 20 % 2)]
                style = dict(color=plt.cm.tab20(i % 20), linestyle=dash)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.3, label=name, **style)
        if panel.get("hline") is not None:
            ax.axhline(panel["hline"], color="gray", linestyle="--", linewidth=1)
        if panel.get("logx", True):
            ax.set_xscale("log", base=2)
        if panel.get("logy", True):
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel["ylabel"])
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84 if len(labels) > 6 else 0.88, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")
    return True


def series(rows: list[dict], name_key: str, x_key: str, y_key: str) -> dict:
    """`{name: [(x, y), ...]}` from table rows, in row order."""
    out: dict = {}
    for r in rows:
        out.setdefault(r[name_key], []).append((r[x_key], r[y_key]))
    return out


def save_rows(path: str, title: str, rows: list[dict]) -> None:
    """Write a run's title and table rows (`--json`), for `load_rows` to redraw
    (its directory made first: `benchmarks/plots/` is not in a fresh clone)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(title=title, rows=rows), f, indent=1)


def load_rows(path: str) -> tuple[str, list[dict]]:
    """`(title, rows)` saved by `save_rows` (`--rows`): a redraw keeps the run's own title."""
    with open(path) as f:
        saved = json.load(f)
    return saved["title"], saved["rows"]
