"""A run killed with SIGKILL mid-run and restarted with resume=True ends with exactly the
results of an uninterrupted run (separate processes, as a user would see it)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

RUNNER = textwrap.dedent(
    """
    import dataclasses, sys, time
    import jax
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from train_fixtures import batches, sources, tiny_recipe
    import seqkit.train as st

    def slow_batches(source, **kw):
        for b in batches(source, **kw):
            time.sleep(0.05)  # give the test time to kill the run between checkpoints
            yield b

    run_dir, resume = sys.argv[1], sys.argv[2] == "1"
    recipe = tiny_recipe(steps=60, checkpoint_every=7)
    # a schedule as long as the run (the fixture's is 40 steps)
    recipe = dataclasses.replace(recipe, schedule=st.ScheduleConfig(warmup_steps=5, total_steps=60))
    st.train(recipe, run_dir, resume=resume, sources=sources(), batches=slow_batches, progress=False)
    """
)


def spawn(script, run_dir, resume):
    # No empty entry in PYTHONPATH: it would mean the working directory, and from the
    # repository root the source tree would shadow the installed package.
    paths = [HERE, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        [sys.executable, str(script), str(run_dir), "1" if resume else "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def checkpoint_step(run_dir):
    path = run_dir / "checkpoint.eqx"
    if not path.exists():
        return -1
    with open(path, "rb") as f:
        return json.loads(f.readline())["step"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    full = spawn(script, tmp_path / "full", False)
    assert full.wait(timeout=600) == 0, full.stderr.read().decode()[-2000:]

    run = tmp_path / "killed"
    proc = spawn(script, run, False)
    deadline = time.time() + 600
    while checkpoint_step(run) < 14 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_step(run)
    assert 14 <= killed_at < 60 and not (run / "results.json").exists()

    resumed = spawn(script, run, True)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    for k in (
        "val_accuracy",
        "val_loss",
        "test_accuracy",
        "test_loss",
        "steps",
        "skipped_updates",
        "n_params",
    ):
        assert a[k] == b[k], k
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)
