"""Training over two processes on this machine (`jax.distributed`, CPU collectives
over localhost) computes what one process computes.

Each run is two subprocesses of `RUNNER` joined by `seqkit.train.init_distributed`
from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, with a
`data` mesh spanning both and the real grain pipeline (each process reads its
own rows of every batch). The expectation is the same recipe trained by this
process alone, without a mesh; the comparison reads the run directories back
with `test_mesh`'s helpers. Every subprocess has a timeout, so a hung collective
fails the test instead of blocking it."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from test_mesh import STEPS, assert_same_run
from train_fixtures import fake_devices_env, postnorm_recipe, sources

import seqkit.train as st
from seqkit.data import batches
from seqkit.train._recipe import CHECKED_EXAMPLES

N_TRAIN = 16 * (STEPS + 8)  # one epoch holds every batch of the run and what grain reads ahead
N_EVAL = 54  # the last evaluation batch has 6 rows: process 1's part of it is all padding
TIMEOUT = 300

RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys
    import jax
    # As tests/conftest.py sets it for in-process tests (compile time dominates).
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_disable_most_optimizations", True)
    import seqkit.train as st
    assert st.init_distributed()  # before anything else starts JAX
    from seqkit.data import batches
    from train_fixtures import crashing_batches, postnorm_recipe, sources

    out, mode, mesh, steps, n_train, n_eval = sys.argv[1:3] + sys.argv[3:4] + list(map(int, sys.argv[4:]))
    me = jax.process_index()
    report = {"processes": jax.process_count(), "local_devices": jax.local_device_count()}

    class Recorded:
        # The train source, recording which examples this process reads.
        def __init__(self, source):
            self.source, self.read = source, []
        def __len__(self):
            return len(self.source)
        def __getitem__(self, i):
            self.read.append(int(i))
            return self.source[i]

    def killed_at(after):
        # SIGKILL (no cleanup, no exit handlers) when training asks for batch `after`.
        return crashing_batches(after, crash=lambda: os.kill(os.getpid(), signal.SIGKILL), inner=batches)

    def train(run_dir, mesh=mesh, **kw):
        srcs = sources(n_train, n_eval)
        srcs["train"] = Recorded(srcs["train"])
        recipe = postnorm_recipe(steps=steps, mesh=mesh)
        kw = {"batches": batches, "progress": False, **kw}
        st.train(recipe, f"{out}/{run_dir}", sources=srcs, **kw)
        return srcs["train"].read

    def refused(name, run_dir, **kw):
        try:
            train(run_dir, **kw)
        except st.RecipeError as e:
            report[name] = str(e)

    if mode == "full":
        try:
            recipe, grid = postnorm_recipe(steps=steps, mesh=mesh), {"optimizer.lr": [0.01, 0.03]}
            st.sweep(recipe, grid, run_dir=f"{out}/sweep", sources=sources(), progress=False)
        except st.RecipeError as e:
            report["sweep"] = str(e)
        refused("no_mesh", "no-mesh", mesh="")
        refused("data_1", "data-1", mesh="data:1")
        refused("from_one", "from-one", resume=True)  # a checkpoint of one process
        report["read"] = train("full", progress=True)
    elif mode == "kill":
        train("killed", batches=killed_at(13))
    else:
        train("killed", resume=True, progress=True)
    with open(f"{out}/{mode}-{me}.json", "w") as f:
        json.dump(report, f)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script, out, mode, *, mesh, devices=1, processes=2):
    """Run `RUNNER` as `processes` processes of one run; return their
    `(returncode, output)`. A process still running after `TIMEOUT` seconds, or
    one left when another was killed, is killed."""
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for index in range(processes):
        env = fake_devices_env(
            devices,
            JAX_COORDINATOR_ADDRESS=address,
            JAX_NUM_PROCESSES=str(processes),
            JAX_PROCESS_ID=str(index),
        )
        args = [str(script), str(out), mode, mesh, str(STEPS), str(N_TRAIN), str(N_EVAL)]
        log = open(out / f"{mode}-{index}.log", "w+")
        procs.append((subprocess.Popen([sys.executable, "-P", *args], env=env, stdout=log, stderr=log), log))
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and any(proc.poll() is None for proc, _ in procs):
            if any(proc.poll() == -signal.SIGKILL for proc, _ in procs):
                # The others may wait on a collective with a dead peer: a short grace.
                deadline = min(deadline, time.monotonic() + 30)
            time.sleep(0.2)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    results = []
    for proc, log in procs:
        log.seek(0)
        results.append((proc.returncode, log.read()))
        log.close()
    return results


def _indices(p):
    """Process `p`'s example indices of the first `STEPS` batches and of every
    batch of the epoch: what it must read, and what it may read."""
    tc = postnorm_recipe().trainer
    rows = tc.batch_size // 2
    order = [
        b["label"] for b in batches(_Index(N_TRAIN), batch_size=tc.batch_size, seed=tc.seed, num_epochs=1)
    ]
    mine = np.concatenate([b[rows * p : rows * (p + 1)] for b in order]).tolist()
    return mine[: rows * STEPS], mine


class _Index:
    """A source whose example i is its own index (the order the pipeline draws)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"label": np.int64(i)}


def report(out, mode, index):
    return json.loads((out / f"{mode}-{index}.json").read_text())


def train_here(run_dir):
    recipe = postnorm_recipe(steps=STEPS)
    st.train(recipe, run_dir, sources=sources(N_TRAIN, N_EVAL), batches=batches, progress=False)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One process alone, then two processes with a data:2 mesh (one CPU device
    each): `(directory, [(returncode, output)] of the two)`."""
    out = tmp_path_factory.mktemp("distributed")
    script = out / "runner.py"
    script.write_text(RUNNER)
    train_here(out / "single")
    # A one-process checkpoint the two-process run must refuse to resume.
    shutil.copytree(out / "single", out / "from-one")
    (out / "from-one" / "results.json").unlink()
    return out, launch(script, out, "full", mesh="data:2")


def test_two_processes_equal_one(two_processes):
    out, results = two_processes
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert "mesh data:2 over 2 cpu devices in 2 processes" in results[0][1]
    assert "mesh data:" not in results[1][1]  # only process 0 prints
    reports = [report(out, "full", i) for i in range(2)]
    assert [(r["processes"], r["local_devices"]) for r in reports] == [(2, 1), (2, 1)]
    # Each process read only its own rows of every batch: disjoint halves. (The first
    # examples are read by both, as the recipe's validation reads them to check shapes
    # and token and label ranges; grain reads a few batches ahead.)
    checked = set(range(CHECKED_EXAMPLES))
    read = [set(r["read"]) - checked for r in reports]
    assert not read[0] & read[1]
    for p in range(2):
        must, may = _indices(p)
        assert set(must) - checked <= read[p] <= set(may) | checked
        assert len(read[p]) > 4 * CHECKED_EXAMPLES  # most of the run's rows are checked here
    assert_same_run(out / "full", out / "single")
    meta = json.loads((out / "full" / "checkpoint.eqx").open("rb").readline())
    assert meta["process_count"] == 2


def test_two_processes_refuse_bad_meshes_a_one_process_checkpoint_and_a_sweep(two_processes):
    out, results = two_processes
    assert [code for code, _ in results] == [0, 0]
    for r in (report(out, "full", i) for i in range(2)):
        assert "a run of 2 processes needs a mesh whose data axis spans them, e.g. data:2" in r["no_mesh"]
        assert "multiple of the process count 2" in r["data_1"] and "got 1" in r["data_1"]
        assert "checkpointed by a run of 1 process(es); this run has 2" in r["from_one"]
        assert r["sweep"].startswith("a sweep runs in one process; this one is 1 of 2")
    assert not (out / "no-mesh").exists() and not (out / "data-1").exists() and not (out / "sweep").exists()
    # Nothing overwritten: the refused run directory is the one-process run's.
    assert not (out / "from-one" / "results.json").exists()
    for name in ("checkpoint.eqx", "metrics.jsonl", "config.json"):
        assert (out / "from-one" / name).read_bytes() == (out / "single" / name).read_bytes()


def test_seqkit_sweep_launched_as_two_processes_refuses_in_both(tmp_path):
    """`seqkit sweep` started the way the docs start a two-process `seqkit train`:
    both processes join, both refuse with one line, and nothing is written (each
    would otherwise train every member into the one directory)."""
    address = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-P", "-m", "seqkit.cli", "sweep", "s4-pathfinder", "--preset", "smoke",
           "--grid", "optimizer.lr=1e-3,3e-3", "--no-progress", "--out", str(tmp_path / "sweep")]  # fmt: skip
    joined = {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2"}
    procs = [
        subprocess.Popen(
            cmd,
            env=fake_devices_env(1, **joined, JAX_PROCESS_ID=str(i)),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [proc.communicate(timeout=TIMEOUT)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 2, output[-2000:]
        assert "seqkit: error: a sweep runs in one process; this one is 1 of 2" in output
        assert "Traceback" not in output
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_two_processes_killed_and_resumed_equal_one(two_processes):
    """Two processes with two CPU devices each (data:2,model:2: parameters split
    within each process), both SIGKILLed fetching batch 13 (last checkpoint:
    step 10), then resumed by two new processes."""
    out = two_processes[0]
    script = out / "runner.py"
    killed = launch(script, out, "kill", mesh="data:2,model:2", devices=2)
    # Each process kills itself fetching batch 13, but a process still inside a
    # collective when its peer dies is aborted by the collective library first
    # (SIGABRT): a real crash all the same, and timing decides which comes first.
    codes = sorted(code for code, _ in killed)
    assert -signal.SIGKILL in codes and set(codes) <= {-signal.SIGKILL, -signal.SIGABRT}, [
        log[-2000:] for _, log in killed
    ]
    ckpt = out / "killed" / "checkpoint.eqx"
    assert json.loads(ckpt.open("rb").readline())["step"] == 10
    assert not (out / "killed" / "results.json").exists()

    # The checkpoint of two processes is refused by one, and nothing is overwritten.
    before = {p.name: p.read_bytes() for p in (out / "killed").iterdir()}
    with pytest.raises(st.RecipeError, match=r"checkpointed by a run of 2 process\(es\); this run has 1"):
        st.train(
            postnorm_recipe(steps=STEPS),
            out / "killed",
            resume=True,
            sources=sources(N_TRAIN, N_EVAL),
            batches=batches,
            progress=False,
        )
    assert {p.name: p.read_bytes() for p in (out / "killed").iterdir()} == before

    resumed = launch(script, out, "resume", mesh="data:2,model:2", devices=2)
    assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-3000:] + resumed[1][1][-3000:]
    assert "resuming" in resumed[0][1]
    assert_same_run(out / "killed", out / "single")


def test_init_distributed_reads_the_environment():
    assert not st.init_distributed({})  # nothing asks for several processes
    assert not st.init_distributed({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})  # not a step of several
    with pytest.raises(
        ValueError, match=r"needs all of .*got JAX_COORDINATOR_ADDRESS without JAX_NUM_PROCESSES"
    ):
        st.init_distributed({"JAX_COORDINATOR_ADDRESS": "localhost:1234"})
    with pytest.raises(ValueError, match=r"expected an int in JAX_NUM_PROCESSES; got 'two'"):
        st.init_distributed(
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}
        )
    with pytest.raises(ValueError, match=r"expected 0 <= JAX_PROCESS_ID < JAX_NUM_PROCESSES=2; got 2"):
        st.init_distributed(
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}
        )
