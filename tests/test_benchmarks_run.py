"""The benchmark scripts run end to end at toy sizes (slow tier): each prints its
table, and asks for a figure where matplotlib is available."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "ssm_layers": "--lengths 64 --batch 1 --d-model 8 --state-size 4 --repeats 1",
    "attention": "--lengths 64 --batch 1 --d-model 8 --repeats 1 --only vanilla mha-chunked local performer",
    "attention_fused": "--lengths 64 --batch 1 --heads 1 --head-dim 8 --repeats 1",
    "attention_dropout": "--lengths 64 --batch 1 --heads 1 --head-dim 8 --repeats 1",
    "mega_memory": "--lengths 64 128 --d-model 8 --z-dim 4 --v-dim 8 --chunk 32",
    # XLA against Pallas (interpret mode on CPU) for every kernel with an impl switch
    "kernels": "--quick --lengths 64 --repeats 1",
    # both protocols through the trainer's step at toy size: an SSM, a kernel method and
    # vanilla (every kind trains through a recipe in tests/train/test_train_mixers.py)
    "lra_efficiency": "--quick --lengths 256 --only s4 linear performer",
    # vmapped sweep members against sequential runs, K = 1 and 2 at the --quick size
    "sweep": "--quick --lengths 64 --members 1 2 --steps 2",
}
# Seconds a script may take; most take well under the default.
TIMEOUT = {"lra_efficiency": 900}
# Scripts whose saved rows are redrawn (`--json`, then `--rows`).
REDRAWN = ["attention_fused", "kernels", "ssm_layers"]
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """`measured(script)`: the script's one measuring run at its toy size, with a
    figure (`--plot`) and, for the redrawn scripts, its rows saved (`--json`). Each
    script measures once per session; both tests below read the same run."""
    runs = {}

    def run(script):
        if script not in runs:
            out = tmp_path_factory.mktemp(script)
            plot, saved = out / f"{script}.png", out / "rows.json"
            cmd = [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *CASES[script].split()]
            cmd += ["--plot", str(plot)]
            if script in REDRAWN:
                cmd += ["--json", str(saved)]
            res = subprocess.run(
                cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT.get(script, 600)
            )
            runs[script] = (res, plot, saved)
        return runs[script]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(measured, script):
    res, plot, _ = measured(script)
    assert res.returncode == 0, res.stderr[-2000:]
    lengths = ("64 ", "128 ", "256 ", "512 ")
    lines = [ln for ln in res.stdout.splitlines() if ln.strip().startswith(lengths)]
    assert lines, res.stdout  # table rows for the requested lengths
    assert plot.exists() or "matplotlib is not installed" in res.stdout
    if script == "lra_efficiency":  # both tables (LRA's, S4's), each with vanilla and the three
        assert sorted(ln.split()[1] for ln in lines) == sorted(2 * ["vanilla", "s4", "linear", "performer"])


@pytest.mark.slow
@pytest.mark.parametrize("script", REDRAWN)
def test_benchmark_redraws_saved_rows(measured, tmp_path, script):
    """`--json` saves the run's title and rows; `--rows` redraws them with that title."""
    first, _, saved = measured(script)
    assert first.returncode == 0, first.stderr[-2000:]
    plot = tmp_path / "again.png"
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{script}.py")]
    again = subprocess.run(
        [*cmd, "--rows", str(saved), "--plot", str(plot)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert plot.exists() or "matplotlib is not installed" in again.stdout
    if script == "ssm_layers":  # the table is printed again, under the saved run's title
        assert first.stdout.splitlines()[0] == again.stdout.splitlines()[0]
        assert [ln for ln in first.stdout.splitlines() if ln.strip().startswith("64 ")] == [
            ln for ln in again.stdout.splitlines() if ln.strip().startswith("64 ")
        ]
