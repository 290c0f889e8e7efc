"""The trainer end to end on a tiny in-memory task: it learns, logs, checkpoints, and a
run interrupted after a checkpoint resumes to exactly the results of an uninterrupted run."""

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_fixtures import (
    Crash,
    assert_same_log,
    batches,
    crashing_batches,
    dies_writing,
    replace_trainer,
    sources,
    tiny_recipe,
)

import seqkit.train as st
import seqkit.train._loop as loop


def test_train_learns_and_writes_run_dir(tmp_path, capsys, optimized):
    res = st.train(tiny_recipe(), tmp_path, sources=sources(), batches=batches, progress=True)
    err = capsys.readouterr().err
    assert "step 40/40" in err and "ex/s" in err and "ETA" in err and "acc" in err
    assert res["steps"] == 40 and res["skipped_updates"] == 0
    assert res["val_accuracy"] > 0.8 and res["test_accuracy"] > 0.8  # chance is 0.5
    assert json.loads((tmp_path / "results.json").read_text()) == res
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["d_model"] == 8 and st.recipe_from_dict(config) == tiny_recipe()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["split"] == "train"] == list(range(5, 41, 5))
    assert {r["split"] for r in recs} == {"train", "val", "test"}
    with pytest.raises(st.RecipeError, match="already holds a run"):
        st.train(tiny_recipe(), tmp_path, sources=sources(), batches=batches, progress=False)
    # The checkpoint reloads to a model with the same test accuracy.
    recipe, model, state, srcs, meta = st.load_run(tmp_path, sources=sources())
    assert meta["step"] == 40 and meta["seed"] == 3
    ev = st.evaluate(model, state, srcs["test"], batch_size=16, batches=batches)
    assert ev["accuracy"] == res["test_accuracy"]


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    full = st.train(tiny_recipe(), tmp_path / "full", sources=sources(), batches=batches, progress=False)
    run = tmp_path / "crashed"
    # Dies while fetching batch 13: the last checkpoint is step 10, steps 11-13 are lost.
    with pytest.raises(Crash):
        st.train(tiny_recipe(), run, sources=sources(), batches=crashing_batches(13), progress=False)
    assert not (run / "results.json").exists()
    resumed = st.train(tiny_recipe(), run, resume=True, sources=sources(), batches=batches, progress=False)
    for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "steps", "skipped_updates"):
        assert resumed[k] == full[k], k
    assert_same_log(run, tmp_path / "full")  # the lost steps were logged once, after the resume
    with pytest.raises(st.RecipeError, match=r"different configuration \(trainer.seed: 3 there, 4 here\)"):
        st.train(tiny_recipe(seed=4), run, resume=True, sources=sources(), batches=batches, progress=False)
    # Without its config.json the settings cannot be compared: refused, nothing written.
    (run / "config.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(st.RecipeError, match=r"holds a checkpoint but no config\.json"):
        st.train(tiny_recipe(seed=4), run, resume=True, sources=sources(), batches=batches, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resumed_log_reads_as_one_run(tmp_path, monkeypatch):
    """A checkpoint inside a train-record window (every 7 steps, records every 5),
    then a kill after the final val/test records but before results.json: the
    resumed run's metrics.jsonl equals the uninterrupted run's record for record
    (the window's mean over all its steps, the final records once)."""
    recipe = tiny_recipe(steps=20, checkpoint_every=7, log_every=5, eval_every=6)
    st.train(recipe, tmp_path / "full", sources=sources(), batches=batches, progress=False)
    run = tmp_path / "killed"
    # Dies fetching batch 9: the last checkpoint is step 7, inside the window 6-10.
    with pytest.raises(Crash):
        st.train(recipe, run, sources=sources(), batches=crashing_batches(9), progress=False)
    monkeypatch.setattr(loop, "write_json", dies_writing(loop.write_json, "results.json"))
    with pytest.raises(Crash):
        st.train(recipe, run, resume=True, sources=sources(), batches=batches, progress=False)
    monkeypatch.undo()
    assert not (run / "results.json").exists()
    st.train(recipe, run, resume=True, sources=sources(), batches=batches, progress=False)
    assert_same_log(run, tmp_path / "full")


def test_nonfinite_updates_are_skipped_and_counted(tmp_path):
    class Poisoned:
        def __init__(self, src):
            self.src = src

        def __len__(self):
            return len(self.src)

        def __getitem__(self, i):
            ex = dict(self.src[i])
            if i == 0:
                ex["inputs"] = np.full_like(ex["inputs"], np.nan)
            return ex

    srcs = sources()
    srcs["train"] = Poisoned(srcs["train"])
    res = st.train(tiny_recipe(eval_every=100), tmp_path, sources=srcs, batches=batches, progress=False)
    # Steps that saw example 0 (40 steps of 16 over 256 examples, reshuffled per epoch).
    order = [np.random.default_rng([3, e]).permutation(256) for e in range(3)]
    visited = [order[0], order[1], order[2][: (40 - 32) * 16]]
    seen = sum(int(0 in v) for v in visited)
    assert res["skipped_updates"] == seen >= 2
    assert np.isfinite(res["val_loss"]) and res["val_accuracy"] > 0.8
    _, model, state, _, _ = st.load_run(tmp_path, sources=sources())
    leaves = jax.tree.leaves(eqx.filter((model, state), eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


@pytest.mark.slow
def test_token_inputs_and_progress_lines(tmp_path, capsys):
    recipe = tiny_recipe(steps=10, eval_every=100, log_every=5)
    res = st.train(recipe, tmp_path, sources=sources(tokens=True), batches=batches, progress=True)
    assert res["steps"] == 10
    err = capsys.readouterr().err
    assert "step 10/10" in err and "ex/s" in err and "ETA" in err and "acc" in err
    assert os.path.exists(tmp_path / "checkpoint.eqx")


def test_trainer_kernels_setting_runs_the_pallas_kernels(tmp_path):
    """`trainer.kernels=pallas` traces the S4D model's Vandermonde kernel as Pallas
    (interpret mode here) and trains to the same numbers as `xla`; a bad value is
    one error naming the key."""
    import seqkit.kernels._vandermonde as module

    seen = []
    choose = module.choose

    def recording(impl, kernel, unsupported, **kw):
        out = choose(impl, kernel, unsupported, **kw)
        seen.append(out.impl)
        return out

    results = {}
    for kernels in ("xla", "pallas"):
        seen.clear()
        recipe = replace_trainer(tiny_recipe(steps=2, eval_every=2, checkpoint_every=2), kernels=kernels)
        module.choose = recording
        try:
            results[kernels] = st.train(
                recipe, tmp_path / kernels, sources=sources(), batches=batches, progress=False
            )
        finally:
            module.choose = choose
        assert seen and set(seen) == {kernels}, seen
    # The kernels agree to float32 rounding (their own tests); two Adam steps, whose
    # first updates are about lr * sign(g), magnify that to ~1e-4 here.
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(results["pallas"][key], results["xla"][key], rtol=5e-4)
    with pytest.raises(st.RecipeError, match="trainer.kernels"):
        st.override(tiny_recipe(steps=2), ["trainer.kernels=cuda"])


def test_files_without_a_checkpoint_are_not_written_over(tmp_path, capsys):
    """A directory with no checkpoint but a run's files (a finished run whose
    checkpoint was removed, the user's own config.json) is refused and left as it
    was; a start of this same run that stopped before its first checkpoint starts
    again."""
    recipe = replace_trainer(tiny_recipe(), steps=2, eval_every=100, checkpoint_every=100)
    kw = dict(sources=sources(), batches=batches, progress=False)
    done = tmp_path / "done"
    st.train(recipe, done, **kw)
    os.remove(done / "checkpoint.eqx")
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text('{"mine": 1}')
    for run, present in ((done, "config.json, metrics.jsonl, results.json"), (user, "config.json")):
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        with pytest.raises(st.RecipeError, match=f"holds {present} but no checkpoint.eqx: nothing to resume"):
            st.train(recipe, run, **kw)
        with pytest.raises(st.RecipeError, match=f"{run} holds"):  # these files, or another configuration
            st.train(recipe, run, resume=True, **kw)
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # A start of this run killed before its first checkpoint: its config and log only.
    os.remove(done / "results.json")
    res = st.train(recipe, done, progress=True, sources=sources(), batches=batches)
    assert "stopped before its first checkpoint: starting again" in capsys.readouterr().err
    assert res["steps"] == 2 and (done / "checkpoint.eqx").exists()
    # ... but not another run's start
    os.remove(done / "checkpoint.eqx")
    os.remove(done / "results.json")
    with pytest.raises(st.RecipeError, match="holds config.json, metrics.jsonl but no checkpoint.eqx"):
        st.train(replace_trainer(recipe, seed=4), done, **kw)


def test_a_fine_tune_resumes_after_its_pretrained_run_moved(tmp_path, monkeypatch):
    """The checkpoint holds every array: resuming a `model.init_from` run does not
    read the pretrained run again, so moving it away does not strand the run."""
    import dataclasses

    # loading the pretrained run builds its recipe's sources: the fixture's, here
    monkeypatch.setattr(st.Recipe, "make_sources", lambda self: sources())
    kw = dict(sources=sources(), progress=False)
    st.train(replace_trainer(tiny_recipe(), steps=5), tmp_path / "pre", batches=batches, **kw)
    fine = tiny_recipe(seed=4)
    fine = dataclasses.replace(fine, model=dataclasses.replace(fine.model, init_from=str(tmp_path / "pre")))
    full = st.train(fine, tmp_path / "full", batches=batches, **kw)
    with pytest.raises(Crash):
        st.train(fine, tmp_path / "crashed", batches=crashing_batches(13), **kw)
    os.rename(tmp_path / "pre", tmp_path / "moved")
    with pytest.raises(st.RecipeError, match="model.init_from: no run directory"):
        st.train(fine, tmp_path / "new", batches=batches, **kw)  # a fresh start needs it
    resumed = st.train(fine, tmp_path / "crashed", resume=True, batches=batches, **kw)
    for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "steps"):
        assert resumed[k] == full[k], k
    assert st.evaluate_run(tmp_path / "crashed", sources=sources())["test_accuracy"] == full["test_accuracy"]


def test_a_run_resumes_after_its_data_directory_moved(tmp_path):
    """data.data_dir says where the files are, not what is computed: a resume with
    another one is accepted (a changed setting that is computed is not)."""
    import dataclasses

    recipe = replace_trainer(tiny_recipe(), steps=3, eval_every=100, checkpoint_every=100)
    kw = dict(sources=sources(), batches=batches, progress=False)
    done = st.train(recipe, tmp_path, **kw)
    moved = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, data_dir="/elsewhere/data"))
    assert st.train(moved, tmp_path, resume=True, **kw) == done
    seeded = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, seed=9))
    with pytest.raises(st.RecipeError, match=r"different configuration \(data.seed: 0 there, 9 here\)"):
        st.train(seeded, tmp_path, resume=True, **kw)
    # A run saved before a setting existed has its default (the behaviour it ran with).
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["optimizer"]["decay_norms_and_biases"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert st.train(recipe, tmp_path, resume=True, **kw) == done
    undecayed = dataclasses.replace(
        recipe, optimizer=dataclasses.replace(recipe.optimizer, decay_norms_and_biases=False)
    )
    with pytest.raises(st.RecipeError, match=r"optimizer.decay_norms_and_biases: True there, False here"):
        st.train(undecayed, tmp_path, resume=True, **kw)


def test_a_resume_may_change_how_often_it_logs_validates_and_checkpoints(tmp_path, capsys):
    """The intervals of logging, validation and checkpoints, and the data workers,
    change how a run executes, not what it computes: a run killed mid-way resumes
    with other values to the uninterrupted run's results, says what changed, and
    its saved configuration keeps the values it started with."""
    import dataclasses

    recipe = tiny_recipe(steps=12, checkpoint_every=4, log_every=2, eval_every=4)
    kw = dict(sources=sources(), progress=False)
    full = st.train(recipe, tmp_path / "full", batches=batches, **kw)
    run = tmp_path / "killed"
    with pytest.raises(Crash):  # dies drawing batch 7: the checkpoint of step 4 survives
        st.train(recipe, run, batches=crashing_batches(7), **kw)
    saved = json.loads((run / "config.json").read_text())
    other = replace_trainer(recipe, checkpoint_every=5, log_every=3, eval_every=5)
    data = dataclasses.replace(other.data, worker_count=2, memory_cache=True)
    other = dataclasses.replace(other, data=data)
    capsys.readouterr()
    resumed = st.train(other, run, resume=True, batches=batches, **kw)
    for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "steps", "skipped_updates"):
        assert resumed[k] == full[k], k
    err = capsys.readouterr().err
    assert "trainer.eval_every: 4 there, 5 here" in err and "data.worker_count: 0 there, 2 here" in err
    assert "data.memory_cache: false there, true here" in err.lower()
    assert json.loads((run / "config.json").read_text()) == saved
    logged = [json.loads(line) for line in open(run / "metrics.jsonl")]
    train_steps = [r["step"] for r in logged if r.get("split") == "train"]
    assert train_steps == [2, 4, 6, 9, 12]  # every 2 steps before the kill, every 3 after
