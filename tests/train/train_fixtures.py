"""A tiny in-memory data source and batcher with the interface of seqkit.data
(`source[i] -> {"inputs", "label"}`; `batches(source, *, batch_size, seed, ...)`),
so the trainer is tested without the data pipelines."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

from seqkit.nn import S4DConfig
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig


class SignSource:
    """Example i: a length-L sequence of noise around ±shift; label 1 when the shift is +."""

    def __init__(self, n, *, L=16, shift=0.5, seed=0, tokens=False):
        self.n, self.L, self.shift, self.seed, self.tokens = n, L, shift, seed, tokens

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        label = np.int32(i % 2)
        x = rng.normal(self.shift * (2 * label - 1), 1.0, (self.L, 1)).astype(np.float32)
        if self.tokens:
            return {"inputs": np.clip((x[:, 0] + 4) * 4, 0, 31).astype(np.int32), "label": label}
        return {"inputs": x, "label": label}


def batches(
    source,
    *,
    batch_size,
    seed,
    shuffle=True,
    drop_remainder=True,
    start_step=0,
    num_epochs=None,
    worker_count=0,
):
    """Global batch b of epoch e holds permutation(seed, e)[b*B:(b+1)*B]; resumable by step."""
    n = len(source)
    per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
    step = start_step
    while num_epochs is None or step < num_epochs * per_epoch:
        epoch, b = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        idx = order[b * batch_size : (b + 1) * batch_size]
        items = [source[int(i)] for i in idx]
        yield {k: np.stack([it[k] for it in items]) for k in items[0]}
        step += 1


def sources(n_train=256, n_eval=64, **kw):
    return {
        "train": SignSource(n_train, seed=0, **kw),
        "val": SignSource(n_eval, seed=1, **kw),
        "test": SignSource(n_eval, seed=2, **kw),
    }


def tiny_recipe(**trainer):
    tc = dict(batch_size=16, steps=None, eval_every=10, checkpoint_every=5, log_every=5, seed=3)
    tc.update(trainer)
    return Recipe(
        name="tiny",
        model=ModelConfig(
            d_model=8,
            n_layers=2,
            mixers=[S4DConfig(state_size=8, dropout=0.1)],
            norm="batch",
            dropout=0.1,
        ),
        data=DataConfig(name="sign", n_classes=2),
        optimizer=OptimizerConfig(lr=0.01, weight_decay=0.05, grad_clip=1.0),
        schedule=ScheduleConfig(warmup_steps=5, total_steps=40),
        trainer=TrainerConfig(**tc),
    )


def postnorm_recipe(**trainer):
    """`tiny_recipe` with post-norm blocks, for comparing runs over several devices.

    With pre-norm the encoder's bias is cancelled by the norms, its gradient is
    rounding noise, and Adam turns that noise into lr-sized steps whose sign follows
    the reduction order; post-norm gives every parameter a real gradient."""
    recipe = tiny_recipe(**trainer)
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, prenorm=False))


def replace_trainer(recipe, **kw):
    return dataclasses.replace(recipe, trainer=dataclasses.replace(recipe.trainer, **kw))


class Crash(Exception):
    """Raised by `crashing_batches`: a kill in the middle of a run."""


def _raise_crash():
    raise Crash


def crashing_batches(after, *, crash=_raise_crash, inner=None):
    """`batches` (or `inner`, a batcher with its signature) that calls `crash()`
    when training asks for batch `after` (evaluation passes, unshuffled, are not
    counted). `crash` raises `Crash` by default."""
    inner = batches if inner is None else inner

    def make(source, **kw):
        it = inner(source, **kw)
        if not kw.get("shuffle", True):
            return it  # evaluation passes are not counted

        def gen():
            for i, b in enumerate(it):
                if i == after:
                    crash()
                yield b

        return gen()

    return make


def fake_devices_env(n_devices: int, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports these fixtures and sees
    `n_devices` fake CPU devices (fixed before JAX starts, hence a subprocess).

    No empty entry in `PYTHONPATH`: it would mean the working directory, and from
    the repository root the source tree would shadow the installed package."""
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(paths),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
        **extra,
    )


def run_on_fake_devices(out, runner: str, n_devices: int, *args: str) -> tuple[dict, str]:
    """Run the script text `runner` as `out/runner.py OUT ARGS...` in a subprocess
    with `n_devices` fake CPU devices; it must exit 0 and print a JSON report as its
    last line. Returns `(report, stderr)`."""
    script = out / "runner.py"
    script.write_text(runner)
    proc = subprocess.run(
        [sys.executable, "-P", str(script), str(out), *args],
        env=fake_devices_env(n_devices),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


# Record keys that measure time: they differ between any two runs.
TIMING_KEYS = ("examples_per_s", "elapsed_s")


def assert_same_log(run_dir, reference_dir):
    """`run_dir`'s metrics.jsonl holds the records of `reference_dir`'s, in the same
    order with the same values (timings aside): a resumed run's log reads as one run."""

    def records(d):
        return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]

    got, want = records(run_dir), records(reference_dir)
    assert [(r["step"], r["split"], r.get("member")) for r in got] == [
        (r["step"], r["split"], r.get("member")) for r in want
    ]
    for r, ref in zip(got, want, strict=True):
        assert set(r) == set(ref)
        for k in set(r) - set(TIMING_KEYS):
            if isinstance(r[k], float):
                np.testing.assert_allclose(r[k], ref[k], rtol=1e-12, err_msg=f"{k} at step {r['step']}")
            else:
                assert r[k] == ref[k], (k, r["step"])


def dies_writing(write_json, filename):
    """`write_json` that raises `Crash` instead of writing `filename`: a kill
    between a run's last records and its results file."""

    def write(path, data):
        if os.path.basename(path) == filename:
            raise Crash
        write_json(path, data)

    return write
