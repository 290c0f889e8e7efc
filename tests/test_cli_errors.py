"""User mistakes through the `seqkit` command, each in a subprocess as a user runs it:
one line on stderr, exit code 2, and nothing written or changed on disk. Also the
run-directory rules: a fresh start under `--resume` says so first, a finished run
resumes to its results without writing, temporaries of interrupted writes go away,
and every file of a run has the same mode."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

import seqkit
from seqkit import cli

# A tiny run of a real recipe: two steps, a checkpoint after each.
TINY = [
    "s4-pathfinder",
    "--preset",
    "smoke",
    "--set",
    "model.d_model=8",
    "--set",
    "model.n_layers=1",
    "--set",
    "model.mixers.0.state_size=4",
    "--set",
    "data.train_size=16",
    "--set",
    "data.val_size=8",
    "--set",
    "data.test_size=8",
    "--set",
    "trainer.batch_size=8",
    "--set",
    "schedule.warmup_steps=1",
    "--set",
    "schedule.total_steps=2",
    "--set",
    "trainer.log_every=1",
    "--set",
    "trainer.checkpoint_every=1",
]


def seqkit_cli(*args, cwd=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        # -P: the working directory (the repository root under pytest) is not put on
        # sys.path, so the installed seqkit runs, as for a user, not the source tree.
        [sys.executable, "-P", "-m", "seqkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


def snapshot(path):
    """Every file under `path` with its bytes, mode and modification time (None: no path)."""
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        st = os.stat(path)
        return {"": (open(path, "rb").read(), st.st_mode, st.st_mtime_ns)}
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (open(p, "rb").read(), st.st_mode, st.st_mtime_ns)
    return out


def assert_one_line_error(proc, message):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    err = proc.stderr
    assert err.count("\n") == 1 and err.startswith(("seqkit: error: ", "seqkit data: error: ")), err
    assert "Traceback" not in err
    assert message in err, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, started with `--resume` into a directory that holds only
    a leftover checkpoint temporary (a kill during a write)."""
    run_dir = tmp_path_factory.mktemp("runs") / "pf"
    run_dir.mkdir()
    (run_dir / ".ckpt-x1y2z3").write_bytes(b"half a checkpoint")
    proc = seqkit_cli("train", *TINY, "--out", run_dir, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def copy_run(finished, tmp_path):
    run_dir, _ = finished
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)  # copy2: contents, modes and times
    return dst


def test_resume_without_checkpoint_starts_fresh_and_says_so_first(finished):
    run_dir, proc = finished
    lines = proc.stderr.splitlines()
    assert lines[0] == f"no checkpoint in {run_dir}: starting a fresh run"
    assert (run_dir / "results.json").exists()


def test_leftover_temporaries_are_removed_on_the_next_start(finished):
    run_dir, proc = finished
    assert "removed 1 temporary file(s) of an interrupted write" in proc.stderr
    assert ".ckpt-x1y2z3" in proc.stderr
    assert sorted(os.listdir(run_dir)) == ["checkpoint.eqx", "config.json", "metrics.jsonl", "results.json"]


def test_a_compiling_line_comes_before_the_first_step(finished):
    lines = finished[1].stderr.splitlines()
    compiling = [i for i, line in enumerate(lines) if line.startswith("compiling the training step")]
    first_step = [i for i, line in enumerate(lines) if line.startswith("step 1/2")]
    assert compiling and first_step and compiling[0] < first_step[0], lines


def test_every_file_of_a_run_has_the_same_mode(finished):
    run_dir, _ = finished
    modes = {name: stat.S_IMODE(os.stat(run_dir / name).st_mode) for name in os.listdir(run_dir)}
    assert len(set(modes.values())) == 1, modes
    umask = os.umask(0)
    os.umask(umask)
    assert modes["checkpoint.eqx"] == 0o666 & ~umask


def test_resuming_a_finished_run_prints_its_results_and_writes_nothing(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    before = snapshot(run_dir)
    proc = seqkit_cli("train", *TINY, "--out", run_dir, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == f"{run_dir} finished at step 2: nothing to resume, nothing written"
    summary = finished[1].stdout.strip().replace(str(finished[0]), str(run_dir))
    assert proc.stdout.strip() == summary  # the same results line as the run itself printed
    assert snapshot(run_dir) == before


def test_version():
    from importlib.metadata import version

    proc = seqkit_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"seqkit {seqkit.__version__}"
    assert seqkit.__version__ == version("seqkit")


# --- the bad-input table --------------------------------------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"\x00not json at all")


def case_value(key):
    def make(tmp_path, finished):
        out = tmp_path / "run"
        return ["train", *TINY, "--set", key, "--out", out], out

    return make


def case_out_is_a_file(tmp_path, finished):
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    return ["train", *TINY, "--out", out], out


def case_out_under_a_file(tmp_path, finished):
    (tmp_path / "notes.txt").write_text("my notes")
    return ["train", *TINY, "--out", tmp_path / "notes.txt" / "run"], tmp_path


def case_resume_truncated_checkpoint(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "results.json").unlink()  # an unfinished run: resuming reads the checkpoint
    _truncate(run_dir / "checkpoint.eqx")
    return ["train", *TINY, "--out", run_dir, "--resume"], run_dir


def case_resume_garbage_config(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    _garbage(run_dir / "config.json")
    return ["train", *TINY, "--out", run_dir, "--resume"], run_dir


def case_eval_truncated_checkpoint(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    _truncate(run_dir / "checkpoint.eqx")
    return ["eval", run_dir], run_dir


def case_eval_garbage_checkpoint(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    _garbage(run_dir / "checkpoint.eqx")
    return ["eval", run_dir], run_dir


def case_eval_garbage_config(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    _garbage(run_dir / "config.json")
    return ["eval", run_dir], run_dir


def case_eval_missing_dir(tmp_path, finished):
    return ["eval", tmp_path / "no-such-run"], tmp_path / "no-such-run"


def case_cifar_truncated(tmp_path, finished):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 60)  # a gzip header, cut
    return ["train", "s4-scifar", "--preset", "smoke", "--set", f"data.data_dir={data}"], tmp_path


def case_pathfinder_too_small(tmp_path, finished):
    return ["data", "pathfinder", "--size", "2", "--out", tmp_path / "pf"], tmp_path


def case_pathfinder_out_under_a_file(tmp_path, finished):
    (tmp_path / "notes.txt").write_text("my notes")
    return ["data", "pathfinder", "--size", "20", "--out", tmp_path / "notes.txt" / "pf"], tmp_path


CASES = {
    "negative width": (case_value("model.d_model=-5"), "model.d_model: expected an int >= 1, got -5"),
    "batch size 0": (case_value("trainer.batch_size=0"), "trainer.batch_size: expected an int >= 1, got 0"),
    "log every 0": (case_value("trainer.log_every=0"), "trainer.log_every: expected an int >= 1, got 0"),
    "dropout 1": (case_value("model.dropout=1"), "model.dropout: expected a number >= 0.0 and < 1.0"),
    "out is a file": (case_out_is_a_file, "notes.txt is a file; expected a directory"),
    "out under a file": (case_out_under_a_file, "cannot create run directory"),
    "resume, truncated checkpoint": (
        case_resume_truncated_checkpoint,
        "checkpoint.eqx is truncated, corrupt or of another configuration",
    ),
    "resume, garbage config": (
        case_resume_garbage_config,
        "config.json is not readable: expected the run's configuration (JSON)",
    ),
    "eval, truncated checkpoint": (
        case_eval_truncated_checkpoint,
        "checkpoint.eqx is truncated, corrupt or of another configuration",
    ),
    "eval, garbage checkpoint": (
        case_eval_garbage_checkpoint,
        "checkpoint.eqx is not a seqkit checkpoint: expected a JSON header line",
    ),
    "eval, garbage config": (
        case_eval_garbage_config,
        "config.json is not readable: expected the run's configuration (JSON)",
    ),
    "truncated CIFAR archive": (case_cifar_truncated, "cifar-10-python.tar.gz is not a readable gzip tar"),
    "pathfinder size 2": (case_pathfinder_too_small, "expected size >= 6 so that every split"),
    "pathfinder out under a file": (case_pathfinder_out_under_a_file, "notes.txt"),
    "eval, no run directory": (
        case_eval_missing_dir,
        "no-such-run; expected the --out of a `seqkit train` run",
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, tmp_path, finished):
    make, message = CASES[name]
    args, watched = make(tmp_path, finished)
    before = snapshot(watched)
    proc = seqkit_cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, message)
    assert snapshot(watched) == before  # nothing created, written or removed
    assert not (tmp_path / "runs").exists()


def test_eval_checks_the_directory_is_writable_before_evaluating(finished, tmp_path, monkeypatch, capsys):
    import tempfile

    import seqkit.train._loop as loop

    run_dir = copy_run(finished, tmp_path)

    def refuse(*args, dir=None, **kw):
        raise PermissionError(13, "Permission denied", dir)

    def never(*args, **kw):
        raise AssertionError("evaluated a run whose results cannot be written")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(loop, "evaluate", never)
    assert cli.main(["eval", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == f"seqkit: error: cannot write to {run_dir}: Permission denied\n"
    assert not (run_dir / "eval.json").exists()


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C during a command: no traceback, a pointer to --resume, the shell's 130."""

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_recipes", interrupted)
    assert cli.main(["recipes"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "seqkit: interrupted"
    assert "Traceback" not in err


def test_an_interrupted_run_says_whether_it_can_resume(tmp_path, monkeypatch, capsys):
    """`train` and `sweep` point to --resume only when their directory has a checkpoint."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("seqkit.train.train", interrupted)
    monkeypatch.setattr("seqkit.train.sweep", interrupted)
    for command in (["train", "s4-pathfinder"], ["sweep", "s4-pathfinder", "--grid", "optimizer.lr=0.1,0.2"]):
        run = tmp_path / command[0]
        run.mkdir()
        argv = [*command, "--preset", "smoke", "--out", str(run), "--no-progress"]
        assert cli.main(argv) == 130
        assert capsys.readouterr().err.strip() == (
            f"seqkit: interrupted before the first checkpoint: nothing to resume in {run}"
        )
        (run / "checkpoint.eqx").write_bytes(b"")
        assert cli.main(argv) == 130
        assert capsys.readouterr().err.strip() == (
            f"seqkit: interrupted; {run} continues from its last checkpoint with --resume"
        )


def test_a_closed_pipe_stops_quietly():
    """`seqkit recipes | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "seqkit.cli", "recipes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    )
    proc.stdout.read(10)  # the header's first bytes, then hang up
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
