"""The `seqkit` command: listing, one-line errors with exit code 2, and a tiny train/eval run."""

import json
import subprocess
import sys

import pytest

import seqkit.recipes
from seqkit import cli


def run(*args):
    return subprocess.run(
        [sys.executable, "-P", "-m", "seqkit.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_recipes_lists_every_recipe(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["recipe", "task", "model", "presets", "source"]
    assert [line.split()[0] for line in out[1:]] == seqkit.recipes.names()
    assert all("smoke" in line for line in out[1:])
    assert all(spec.task and spec.model and spec.source for spec in seqkit.recipes.SPECS.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "nope"],
            "unknown recipe 'nope'; `seqkit recipes` lists all",
        ),
        (["train", "s4-pathx", "--preset", "huge"], "unknown preset 'huge' for s4-pathx"),
        (
            ["train", "s4-pathx", "--set", "model.depth=3"],
            "unknown key 'model.depth'; accepted under 'model':",
        ),
        (["train", "s4-pathx", "--set", "trainer.batch_size=big"], "trainer.batch_size: expected an int"),
        (
            ["train", "s4-scifar", "--preset", "smoke", "--set", "data.data_dir=/nonexistent/dir"],
            "/nonexistent/dir/cifar-10-python.tar.gz",
        ),
        (["eval", "/nonexistent/run"], "no run directory at /nonexistent/run"),
        (
            ["train", "spade", "--set", "model.mixers.1=locl"],
            "model.mixers.1: unknown mixer kind 'locl'; expected",
        ),
        (
            ["train", "spade", "--set", "model.mixers.1.widow_size=3"],
            "unknown option 'model.mixers.1.widow_size' for mixer kind 'local'; expected one of: num_heads,",
        ),
        (
            ["train", "spade", "--set", "model.mixers.1.mode=diag"],
            "expected one of block, sliding; got 'diag'",
        ),
        (["train", "spade", "--set", "model.pattern=0,1,1"], "model.pattern: expected 6 mixer indices"),
        # Data the embedding table or the classifier cannot take (a gather would clamp).
        (
            ["train", "s4-listops", "--preset", "smoke", "--set", "data.name=pathfinder32"]
            + ["--set", "data.as_tokens=true", "--set", "data.n_classes=2"],
            "data.name=pathfinder32 gives token ids in [0, 255] (first 16 training examples); "
            "data.vocab_size=16 expects them in [0, 15]: set data.vocab_size to at least 256",
        ),
        (
            ["train", "s4-listops", "--preset", "smoke", "--set", "data.n_classes=5"],
            "data.name=listops gives labels in [0, 9] (first 16 training examples); "
            "data.n_classes=5 expects them in [0, 4]: set data.n_classes to at least 10",
        ),
        # A constructor's objection, found before anything is written or compiled.
        (
            ["train", "spade", "--set", "model.mixers.1.num_heads=3"],
            "model.mixers.1 (local, layer 1): d_model=256 must be divisible by num_heads=3",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, args, message):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqkit: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_then_eval_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [
        "model.d_model=8",
        "data.train_size=32",
        "data.val_size=8",
        "data.test_size=8",
        "trainer.batch_size=8",
        "schedule.total_steps=3",
        "trainer.log_every=1",
        # A hybrid from the command line: S4D below, sliding local attention above.
        "model.mixers=s4d,local",
        "model.mixers.0.state_size=8",
        "model.mixers.1.mode=sliding",
        "model.mixers.1.num_heads=2",
        "model.n_layers=2",
        "model.pattern=0,1",
    ]
    args = ["train", "s4-pathfinder", "--preset", "smoke", "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("s4-pathfinder (smoke): val accuracy") and "after 3 steps" in line
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 3 and 0 <= res["test_accuracy"] <= 1 and res["wall_time_s"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["d_model"] == 8 and config["preset"] == "smoke"
    assert [m["kind"] for m in config["model"]["mixers"]] == ["s4d", "local"]
    assert config["model"]["mixers"][1]["mode"] == "sliding" and config["model"]["pattern"] == [0, 1]
    assert (out / "metrics.jsonl").exists() and (out / "checkpoint.eqx").exists()
    assert cli.main(args) == 2  # the run exists: resume it or choose another --out
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["eval", str(out)]) == 0
    assert "at step 3: val accuracy" in capsys.readouterr().out
    ev = json.loads((out / "eval.json").read_text())
    assert ev["test_accuracy"] == res["test_accuracy"] and ev["val_accuracy"] == res["val_accuracy"]


def test_module_entry_point_and_data_subcommand():
    proc = run("data", "list")
    assert proc.returncode == 0 and "pathfinder32" in proc.stdout


def test_demo_runs_every_core_and_refuses_a_bad_size(capsys):
    assert cli.main(["demo", "--length", "48", "--width", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "seqkit demo: SSM cores on a generated 48x3 signal (conv mode vs step mode)"
    cores = {row.split()[0]: float(row.split()[-1]) for row in rows[2:]}
    assert set(cores) == {"S4", "S4D", "DSS", "EMA"}
    assert all(err < 1e-3 for err in cores.values()), cores  # the two modes agree (float32)
    for bad in (["--length", "0"], ["--width", "-2"], ["--length", "many"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["demo", *bad])
        assert exc.value.code == 2
        assert f"argument {bad[0]}: expected a positive integer" in capsys.readouterr().err
