"""`seqkit plot`: training curves from run directories' metrics.jsonl, a PNG of the
right size whose axes hold exactly the logged metrics, and one-line errors with
exit code 2 (a bad run directory, no matplotlib). A sweep directory's curves (one
per member) are tested on a real sweep in tests/train/test_sweep.py."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from seqkit import cli
from seqkit._cli_plot import plot_runs
from seqkit.train import MetricsLog, Recipe, recipe_to_dict

# step -> (train loss, train accuracy); val records at some steps; one test record at the end.
RUNS = {
    "run_a": dict(
        train={10: (0.9, 0.50), 20: (0.7, 0.60), 30: (0.5, 0.75)},
        val={20: (0.8, 0.55), 30: (0.6, 0.70)},
        recipe=("s4-pathfinder", "smoke"),
    ),
    "run_b": dict(
        train={5: (1.2, 0.40), 10: (1.0, 0.45), 15: (0.95, 0.48), 20: (0.9, 0.52)},
        val={20: (1.1, 0.47)},
        recipe=None,
    ),
}


def write_runs(root):
    """The two runs as the trainer writes them (MetricsLog records, config.json for run_a)."""
    dirs = []
    for name, run in RUNS.items():
        d = root / name
        d.mkdir()
        log = MetricsLog(d / "metrics.jsonl")
        for step, (loss, acc) in run["train"].items():
            log.write({"step": step, "split": "train", "loss": loss, "accuracy": acc, "grad_norm": 1.0})
        for step, (loss, acc) in run["val"].items():
            log.write({"step": step, "split": "val", "loss": loss, "accuracy": acc, "examples": 8})
        last = max(run["train"])
        log.write({"step": last, "split": "test", "loss": 9.0, "accuracy": 0.0, "examples": 8})
        if run["recipe"] is not None:
            recipe = Recipe(name=run["recipe"][0], preset=run["recipe"][1])
            (d / "config.json").write_text(json.dumps(recipe_to_dict(recipe)))
        dirs.append(str(d))
    return dirs


def test_plot_writes_a_png_of_the_figure_size(tmp_path, capsys):
    dirs = write_runs(tmp_path)
    out = tmp_path / "figs" / "curves.png"
    assert cli.main(["plot", *dirs, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert out.stat().st_size > 1000
    fig = plot_runs(dirs)
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == tuple(np.round(fig.get_size_inches() * fig.dpi).astype(int)) == (1200, 440)

    single = tmp_path / "loss.png"
    assert cli.main(["plot", dirs[0], "--metric", "loss", "--out", str(single)]) == 0
    with Image.open(single) as img:
        assert img.size == (600, 440)


def test_default_output_is_plot_png_in_the_current_directory(tmp_path, monkeypatch, capsys):
    dirs = write_runs(tmp_path)
    cwd = tmp_path / "here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert cli.main(["plot", *dirs]) == 0
    assert (cwd / "plot.png").stat().st_size > 1000
    assert capsys.readouterr().out.strip() == "wrote plot.png"
    assert not any((tmp_path / name / "plot.png").exists() for name in RUNS)
    assert cli.main(["plot", *dirs, "--out", "curves"]) == 0  # no extension: a PNG named so
    assert capsys.readouterr().out.strip() == "wrote curves.png"
    with Image.open(cwd / "curves.png") as img:
        assert img.format == "PNG"


@pytest.mark.parametrize("metric", ["loss", "accuracy", "both"])
def test_figure_axes_hold_the_logged_metrics(tmp_path, metric):
    dirs = write_runs(tmp_path)
    fig = plot_runs(dirs, metric=metric)
    names = ["loss", "accuracy"] if metric == "both" else [metric]
    assert len(fig.axes) == len(names)
    for ax, name in zip(fig.axes, names, strict=True):
        assert ax.get_ylabel() == name and ax.get_xlabel() == "step"
        col = 0 if name == "loss" else 1
        lines = {line.get_label(): line for line in ax.get_lines()}
        labels = {"run_a": f"{dirs[0]} (s4-pathfinder, smoke)", "run_b": dirs[1]}
        assert set(lines) == {f"{lab}{suffix}" for lab in labels.values() for suffix in ("", " val")}
        for run, label in labels.items():
            train, val = lines[label], lines[f"{label} val"]
            steps = sorted(RUNS[run]["train"])
            assert list(train.get_xdata()) == steps
            assert list(train.get_ydata()) == [RUNS[run]["train"][s][col] for s in steps]
            vsteps = sorted(RUNS[run]["val"])
            assert list(val.get_xdata()) == vsteps
            assert list(val.get_ydata()) == [RUNS[run]["val"][s][col] for s in vsteps]
            assert val.get_linestyle() == "None" and val.get_marker() == "o"
            assert train.get_color() == val.get_color()  # a run's points share its line's colour
        assert lines[labels["run_a"]].get_color() != lines[labels["run_b"]].get_color()
        # the test record (loss 9.0, accuracy 0.0) is not drawn
        assert all(9.0 not in line.get_ydata() for line in ax.get_lines())


def _bad_dirs(tmp_path):
    (tmp_path / "no_metrics").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    (tmp_path / "only_test").mkdir()
    MetricsLog(tmp_path / "only_test" / "metrics.jsonl").write({"step": 3, "split": "test", "loss": 1.0})
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep_config.json").write_text("{}")
    # a sweep's log without its per-member records (say, written by another tool)
    MetricsLog(tmp_path / "sweep" / "metrics.jsonl").write({"step": 1, "split": "train", "loss": 1.0})
    return {
        "missing": (tmp_path / "nope", "not a run directory"),
        "no_metrics": (tmp_path / "no_metrics", "metrics.jsonl: no such file"),
        "empty": (tmp_path / "empty", "metrics.jsonl: no train or val metric records"),
        "only_test": (tmp_path / "only_test", "metrics.jsonl: no train or val metric records"),
        "file": (tmp_path / "a_file", "not a run directory"),
        "sweep": (tmp_path / "sweep", "a sweep directory whose metrics.jsonl has no per-member records"),
    }


@pytest.mark.parametrize("case", ["missing", "no_metrics", "empty", "only_test", "file", "sweep"])
def test_bad_run_directory_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, case):
    good = write_runs(tmp_path)
    path, message = _bad_dirs(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plot", good[0], str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("seqkit plot: error: ") and captured.err.count("\n") == 1
    assert str(path) in captured.err and message in captured.err
    assert captured.out == "" and not (tmp_path / "plot.png").exists()  # nothing drawn, nothing written


def test_without_matplotlib_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    dirs = write_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert cli.main(["plot", *dirs]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("seqkit plot: error: matplotlib is not installed")
    assert 'pip install "seqkit[bench]"' in captured.err
    assert not (tmp_path / "plot.png").exists()


def test_unwritable_output_is_one_line_with_exit_code_2(tmp_path, capsys):
    dirs = write_runs(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory is needed")
    out = blocker / "plot.png"
    assert cli.main(["plot", *dirs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqkit plot: error: ") and err.count("\n") == 1 and str(out) in err


def test_many_runs_get_one_legend_entry_each_beside_the_panels_in_distinct_colours(tmp_path):
    """A sweep of 12 members: twelve legend entries (train lines, not val points),
    the legend outside the panels, the figure widened for it, no colour repeated."""
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "sweep_config.json").write_text(json.dumps({"grid": {"optimizer.lr": [0.1, 0.2]}}))
    log = MetricsLog(d / "metrics.jsonl")
    for member in range(12):
        for step in (1, 2):
            for split in ("train", "val"):
                log.write(
                    {
                        "step": step,
                        "split": split,
                        "member": member,
                        "loss": 1.0 / (step + member),
                        "accuracy": 0.5,
                        "optimizer.lr": 0.1 * member,
                        "seed": 0,
                    }
                )
    fig = plot_runs([str(d)])
    assert tuple(fig.get_size_inches()) == (12.0 + 3.6, 4.4)
    assert fig.axes[0].get_legend() is None
    legend = fig.axes[1].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == [f"{d} member {m} (optimizer.lr={0.1 * m}, seed=0)" for m in range(12)]
    assert legend.get_bbox_to_anchor().x0 > fig.axes[1].get_window_extent().x1  # right of the panel
    colors = [tuple(np.round(line.get_color(), 6)) for line in fig.axes[0].get_lines()[::2]]
    assert len(set(colors)) == 12
    few = plot_runs(write_runs(tmp_path))  # two runs: the legend inside the first panel
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == [
        f"{tmp_path / 'run_a'} (s4-pathfinder, smoke)",
        str(tmp_path / "run_b"),
    ]
