"""Vmapped sweeps: member k of a sweep is a solo `train` run of its settings; a sweep
killed mid-way resumes to the uninterrupted result; a non-finite member is skipped
alone; bad grids are one-line errors that write nothing (library and CLI)."""

import dataclasses
import json
import os
import shutil

import equinox as eqx
import jax
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
import seqkit.train._sweep as sweep_module
from seqkit import cli
from seqkit._cli_plot import plot_runs

# lr = 1e30 overflows the model after one step: its later updates are non-finite.
GRID = {"optimizer.lr": [0.01, 0.03, 1e30], "model.mixers.0.dt_max": [0.05, 0.1]}
BLOWN = range(8, 12)  # the members with lr = 1e30
SEEDS = [3, 4]


def study_recipe(**trainer):
    # LayerNorm, not the fixture's BatchNorm: with BatchNorm after it the encoder
    # bias has a zero gradient up to rounding, which Adam's normalized step turns
    # into ±lr moves that differ between any two float orders (vmapped or not).
    r = tiny_recipe(**{"steps": 4, "log_every": 1, "eval_every": 2, "checkpoint_every": 2, **trainer})
    return dataclasses.replace(r, model=dataclasses.replace(r.model, norm="layer", n_layers=1))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """3 learning rates × 2 dt ranges × 2 seeds = 12 members, each on its own data order."""
    run = tmp_path_factory.mktemp("sweep") / "study"
    res = st.sweep(
        study_recipe(),
        GRID,
        seeds=SEEDS,
        run_dir=run,
        sources=sources(),
        batches=batches,
        per_member_data=True,
        progress=False,
    )
    return res, run


def snapshot(path):
    if not os.path.exists(path):
        return None
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = (open(p, "rb").read(), os.stat(p).st_mtime_ns)
    return out


def same(a, b):
    """Equal as JSON (a blown member's NaN loss equals itself)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def records(run, split):
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split
    ]


def test_member_equals_solo_train(study, tmp_path):
    res, run = study
    members = st.sweep_members(study_recipe(), GRID, seeds=SEEDS)
    assert len(members) == len(res["members"]) == 12
    train_recs = records(run, "train")
    for k in (7,):  # differs from member 0 in lr, dt range and seed
        m = members[k]
        assert res["members"][k]["settings"] == m.settings
        solo = st.train(m.recipe, tmp_path / f"solo{k}", sources=sources(), batches=batches, progress=False)
        for key in ("val_loss", "test_loss", "val_accuracy", "test_accuracy"):
            np.testing.assert_allclose(res["members"][k][key], solo[key], rtol=1e-5, err_msg=key)
        mine = [r for r in train_recs if r["member"] == k]
        theirs = records(tmp_path / f"solo{k}", "train")
        assert [r["step"] for r in mine] == [r["step"] for r in theirs] == [1, 2, 3, 4]
        for a, b in zip(mine, theirs, strict=True):
            for key in ("loss", "accuracy", "grad_norm"):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
        # Parameters: the sweep's checkpoint, member k, against the solo checkpoint.
        _, model, state, _, _ = st.load_run(tmp_path / f"solo{k}", sources=sources())
        ours = load_member(run, members, k)
        for a, b in zip(
            jax.tree.leaves(ours), jax.tree.leaves(eqx.filter((model, state), eqx.is_array)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def load_member(run, members, k):
    """Member k's (model, state) arrays from the sweep's checkpoint, read with a
    template of K stacked solo-built models and optimizer states."""
    K = len(members)
    model, state, _, _ = members[0].recipe.build(sources=sources())
    opt = st.make_optimizer(
        learning_rate=0.1,
        weight_decay=0.1,
        warmup_steps=1,
        total_steps=2,
        grad_clip=1.0,
        hyperparams_as_arrays=True,
    )
    stack = lambda x: np.zeros((K, *np.shape(x)), np.asarray(x).dtype) if eqx.is_array(x) else x  # noqa: E731
    like = jax.tree.map(stack, (model, state, opt.init(eqx.filter(model, eqx.is_inexact_array))))
    (models, states, _), meta = st.load_checkpoint(run / "checkpoint.eqx", like)
    assert meta["members"] == K and meta["step"] == 4
    return [np.asarray(x)[k] for x in jax.tree.leaves(eqx.filter((models, states), eqx.is_array))]


def test_sweep_run_directory(study, capsys):
    res, run = study
    assert same(json.loads((run / "sweep.json").read_text()), res)
    assert res["steps"] == 4 and res["grid"] == GRID and res["seeds"] == SEEDS
    assert (run / "sweep.png").exists() and res["figure"] == "sweep.png"
    config = json.loads((run / "sweep_config.json").read_text())
    assert config["members"] == 12 and st.recipe_from_dict(config["recipe"]) == study_recipe()
    # One record per member per logged step, carrying the member's settings.
    train = records(run, "train")
    assert len(train) == 4 * 12
    assert {(r["member"], r["optimizer.lr"], r["model.mixers.0.dt_max"], r["seed"]) for r in train} == {
        (
            m["member"],
            m["settings"]["optimizer.lr"],
            m["settings"]["model.mixers.0.dt_max"],
            m["settings"]["seed"],
        )
        for m in res["members"]
    }
    assert [r["step"] for r in records(run, "val")] == [2] * 12 + [4] * 12
    assert [r["accuracy"] for r in records(run, "test")] == [m["test_accuracy"] for m in res["members"]]
    table = st.sweep_table(res)
    best = res["best_member"]
    assert f"{best}*" in table and "best by val accuracy" in table and len(table.splitlines()) == 14
    # A finished sweep resumes to its results and writes nothing.
    before = snapshot(run)
    again = st.sweep(
        study_recipe(),
        GRID,
        seeds=SEEDS,
        run_dir=run,
        resume=True,
        sources=sources(),
        batches=batches,
        per_member_data=True,
        progress=False,
    )
    assert same(again, res) and snapshot(run) == before
    assert "nothing to resume" in capsys.readouterr().err


def test_plot_draws_each_member_from_the_sweep_directory(study):
    res, run = study
    fig = plot_runs([run], metric="loss")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert len(lines) == 2 * 12  # each member's train line and val points
    train = records(run, "train")
    for m in res["members"]:
        s = m["settings"]
        label = (
            f"{run} member {m['member']} (optimizer.lr={s['optimizer.lr']}, "
            f"model.mixers.0.dt_max={s['model.mixers.0.dt_max']}, seed={s['seed']})"
        )
        mine = [r for r in train if r["member"] == m["member"]]
        assert list(lines[label].get_xdata()) == [r["step"] for r in mine] == [1, 2, 3, 4]
        np.testing.assert_array_equal(lines[label].get_ydata(), [r["loss"] for r in mine])  # NaN: blown
        vals = [r for r in records(run, "val") if r["member"] == m["member"]]
        np.testing.assert_array_equal(lines[f"{label} val"].get_ydata(), [r["loss"] for r in vals])


def test_resume_after_kill_matches_uninterrupted(study, tmp_path, capsys):
    res, _ = study
    run = tmp_path / "killed"
    kw = dict(seeds=SEEDS, sources=sources(), per_member_data=True, progress=False)
    # Dies drawing the 4th batch: the checkpoint of step 2 survives, step 3 is lost.
    with pytest.raises(Crash):
        st.sweep(study_recipe(), GRID, run_dir=run, batches=crashing_batches(3), **kw)
    assert not (run / "sweep.json").exists() and (run / "checkpoint.eqx").exists()
    # Checkpoints at other intervals change how the sweep executes, not what it computes.
    capsys.readouterr()
    resumed = st.sweep(
        study_recipe(checkpoint_every=3), GRID, run_dir=run, resume=True, batches=batches, **kw
    )
    assert "trainer.checkpoint_every: 2 there, 3 here" in capsys.readouterr().err
    for a, b in zip(resumed["members"], res["members"], strict=True):
        assert same(a, b)  # the same program on the same batches: bit for bit
    assert_same_log(run, study[1])


def test_resumed_log_reads_as_one_sweep(tmp_path, monkeypatch):
    """A checkpoint inside a train-record window (every 3 steps, records every 2),
    then a kill after the final records but before sweep.json: the resumed sweep's
    metrics.jsonl equals the uninterrupted sweep's record for record."""
    recipe = study_recipe(steps=6, log_every=2, checkpoint_every=3, eval_every=4)
    grid = {"optimizer.lr": [0.01, 0.03]}
    kw = dict(sources=sources(), progress=False)
    st.sweep(recipe, grid, run_dir=tmp_path / "full", batches=batches, **kw)
    run = tmp_path / "killed"
    # Dies drawing batch 5: the checkpoint of step 3 sits inside the window 3-4.
    with pytest.raises(Crash):
        st.sweep(recipe, grid, run_dir=run, batches=crashing_batches(4), **kw)
    monkeypatch.setattr(sweep_module, "write_json", dies_writing(sweep_module.write_json, "sweep.json"))
    with pytest.raises(Crash):
        st.sweep(recipe, grid, run_dir=run, resume=True, batches=batches, **kw)
    monkeypatch.undo()
    st.sweep(recipe, grid, run_dir=run, resume=True, batches=batches, **kw)
    assert_same_log(run, tmp_path / "full")


def test_member_equals_solo_train_for_every_optimizer_setting(tmp_path):
    """The settings each member reads from its own optimizer state: warmup,
    Adam's b2 and eps, both weight decays and the SSM learning rate. The member
    that differs from member 0 in all of them equals its solo run."""
    grid = {
        "schedule.warmup_steps": [1, 3],
        "optimizer.b2": [0.99, 0.999],
        "optimizer.eps": [1e-8, 1e-6],
        "optimizer.weight_decay": [0.0, 0.2],
        "optimizer.ssm_lr": [0.001, 0.02],
        "optimizer.ssm_weight_decay": [0.0, 0.1],
    }
    recipe = study_recipe(steps=4, eval_every=100)
    kw = dict(sources=sources(), batches=batches, progress=False)
    res = st.sweep(recipe, grid, run_dir=tmp_path / "sw", **kw)
    members = st.sweep_members(recipe, grid)
    last = members[-1]
    assert all(last.settings[k] == v[1] for k, v in grid.items())
    solo = st.train(last.recipe, tmp_path / "solo", **kw)
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(res["members"][-1][key], solo[key], rtol=1e-5, err_msg=key)
        assert res["members"][-1][key] != res["members"][0][key]
    mine = [r for r in records(tmp_path / "sw", "train") if r["member"] == len(members) - 1]
    for a, b in zip(mine, records(tmp_path / "solo", "train"), strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_fine_tuning_sweep_starts_members_from_init_from(tmp_path, monkeypatch):
    """`model.init_from`: every member starts from the pretrained run's backbone,
    as a solo run of its settings does (and not from scratch)."""
    # load_run rebuilds the pretrained run from its recipe: the fixture data is not registered.
    monkeypatch.setattr(st.Recipe, "make_sources", lambda self: sources())
    kw = dict(sources=sources(), batches=batches, progress=False)
    st.train(study_recipe(steps=3, eval_every=100, seed=7), tmp_path / "pre", **kw)
    scratch = study_recipe(steps=2, eval_every=100)
    tuned = dataclasses.replace(
        scratch, model=dataclasses.replace(scratch.model, init_from=str(tmp_path / "pre"))
    )
    grid = {"optimizer.weight_decay": [0.0, 0.1]}
    res = st.sweep(tuned, grid, run_dir=tmp_path / "tuned", **kw)
    fresh = st.sweep(scratch, grid, run_dir=tmp_path / "scratch", **kw)
    member = st.sweep_members(tuned, grid)[1]
    solo = st.train(member.recipe, tmp_path / "solo", **kw)
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(res["members"][1][key], solo[key], rtol=1e-5, err_msg=key)
        assert not np.isclose(res["members"][1][key], fresh["members"][1][key], rtol=1e-3), key
    mine = [r for r in records(tmp_path / "tuned", "train") if r["member"] == 1]
    for a, b in zip(mine, records(tmp_path / "solo", "train"), strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    # Killed after its step-1 checkpoint, it resumes after the pretrained run moved:
    # the checkpoint holds every array.
    killed = tmp_path / "killed"
    with pytest.raises(Crash):
        st.sweep(
            replace_trainer(tuned, checkpoint_every=1), grid, run_dir=killed, sources=sources(),
            batches=crashing_batches(1), progress=False,
        )  # fmt: skip
    assert (killed / "checkpoint.eqx").exists()
    os.rename(tmp_path / "pre", tmp_path / "moved")
    again = st.sweep(replace_trainer(tuned, checkpoint_every=1), grid, run_dir=killed, resume=True, **kw)
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(again["members"][1][key], res["members"][1][key], rtol=1e-5, err_msg=key)


def test_nonfinite_members_are_skipped_alone(study):
    """The lr = 1e30 members' non-finite updates are skipped and counted (their
    parameters stay finite); the other members never notice (and equal solo runs)."""
    res, run = study
    for r in res["members"]:
        assert (r["skipped_updates"] >= 1) == (r["member"] in BLOWN), r
    assert res["best_member"] not in BLOWN
    last = [r for r in records(run, "train") if r["step"] == 4]
    assert all(r["skipped_updates"] == res["members"][r["member"]]["skipped_updates"] for r in last)
    members = st.sweep_members(study_recipe(), GRID, seeds=SEEDS)
    for k in BLOWN:
        assert all(np.isfinite(x).all() for x in load_member(run, members, k))


@pytest.mark.slow
def test_shared_data_member_equals_solo_train(tmp_path):
    """Without per_member_data every member sees trainer.seed's batches: the member
    of that seed is a solo run of its settings."""
    recipe = study_recipe(steps=3, eval_every=100)
    grid = {"optimizer.lr": [0.01, 0.03]}
    res = st.sweep(
        recipe, grid, seeds=2, run_dir=tmp_path / "sw", sources=sources(), batches=batches, progress=False
    )
    solo_recipe = st.sweep_members(recipe, grid, seeds=2)[2].recipe  # lr 0.03, seed 3 = trainer.seed
    solo = st.train(solo_recipe, tmp_path / "solo", sources=sources(), batches=batches, progress=False)
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(res["members"][2][key], solo[key], rtol=1e-5)


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"optimizer.lrr": [0.1]}, "unknown key 'optimizer.lrr'"),
        ({"optimizer.lr": []}, "expected at least one value, got an empty list"),
        ({"optimizer.lr": [0.1, 0.1]}, "appears more than once"),
        ({"optimizer.lr": ["fast"]}, "optimizer.lr: expected a float"),
        ({"optimizer.lr": [-1.0]}, "optimizer.lr: expected a number >= 0.0"),
        (
            {"model.d_model": [8, 16]},
            "'model.d_model' cannot be swept in one vmapped program: it changes array shapes",
        ),
        ({"model.mixers.0.state_size": [8, 4]}, "'model.mixers.0.state_size' cannot be swept"),
        ({"model.n_layers": [2, 1]}, "'model.n_layers' cannot be swept"),
        ({"optimizer.grad_clip": [1.0, 0.0]}, "'optimizer.grad_clip' cannot be swept"),
        ({"trainer.batch_size": [16, 8]}, "training loop"),
        ({"trainer.seed": [1, 2]}, "--seeds"),
        ({"data.n_classes": [2, 3]}, "changes the data"),
        ({"model.mixers.0": ["s4d", "dss"]}, "it sets a list or a whole mixer, not one value"),
        ({"model.mixers.0.dt_max": [0.1, 1e-4]}, "dt_min <= dt_max"),
    ],
)
def test_bad_grid_is_one_line_error_and_writes_nothing(tmp_path, grid, message):
    run = tmp_path / "sw"
    with pytest.raises(st.RecipeError, match=None) as e:
        st.sweep(
            study_recipe(), grid, seeds=2, run_dir=run, sources=sources(), batches=batches, progress=False
        )
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not run.exists()


def test_resume_with_another_grid_is_refused(study):
    res, run = study
    before = snapshot(run)
    kw = dict(run_dir=run, sources=sources(), batches=batches, per_member_data=True, progress=False)
    with pytest.raises(st.RecipeError, match="holds a sweep of 12 members, this one has 16"):
        st.sweep(
            study_recipe(), {**GRID, "optimizer.lr": [0.01, 0.03, 0.1, 1e30]}, seeds=SEEDS, resume=True, **kw
        )
    with pytest.raises(st.RecipeError, match="another grid or seeds"):
        st.sweep(study_recipe(), {**GRID, "optimizer.lr": [0.01, 0.1, 1e30]}, seeds=SEEDS, resume=True, **kw)
    with pytest.raises(st.RecipeError, match="another grid or seeds"):
        st.sweep(study_recipe(), GRID, seeds=[3, 5], resume=True, **kw)
    # The same keys in another order number the members differently: member 1 would
    # be (lr 0.03, dt_max 0.05) instead of (lr 0.01, dt_max 0.1).
    swapped = dict(reversed(GRID.items()))
    assert swapped == GRID and st.sweep_members(study_recipe(), swapped, seeds=SEEDS)[2].settings != (
        st.sweep_members(study_recipe(), GRID, seeds=SEEDS)[2].settings
    )
    with pytest.raises(st.RecipeError, match=r"same grid keys in another order \(optimizer.lr, model"):
        st.sweep(study_recipe(), swapped, seeds=SEEDS, resume=True, **kw)
    with pytest.raises(st.RecipeError, match="already holds a run"):
        st.sweep(study_recipe(), GRID, seeds=SEEDS, **kw)
    assert snapshot(run) == before


def test_members_and_seeds():
    r = study_recipe()
    ms = st.sweep_members(r, {"optimizer.lr": ["1e-3", 0.01]}, seeds=2)
    assert [m.settings for m in ms] == [
        {"optimizer.lr": 0.001, "seed": 3},
        {"optimizer.lr": 0.001, "seed": 4},
        {"optimizer.lr": 0.01, "seed": 3},
        {"optimizer.lr": 0.01, "seed": 4},
    ]
    assert ms[2].recipe.optimizer.lr == 0.01 and ms[2].recipe.trainer.seed == 3
    for seeds, message in [
        (0, "count >= 1"),
        ([], "at least one seed"),
        ([1, 1], "distinct"),
        ([0, 2**32], r"ints in \[0, 2\*\*32\), got 4294967296"),  # a 32-bit key would alias it with 0
    ]:
        with pytest.raises(st.RecipeError, match=message):
            st.sweep_members(r, {}, seeds=seeds)


TINY = [
    "s4-pathfinder",
    "--preset",
    "smoke",
    *("--set", "model.d_model=8", "--set", "model.n_layers=1", "--set", "model.mixers.0.state_size=4"),
    *("--set", "data.train_size=16", "--set", "data.val_size=8", "--set", "data.test_size=8"),
    *("--set", "trainer.batch_size=8", "--set", "schedule.total_steps=2", "--set", "schedule.warmup_steps=1"),
]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grid", "model.d_model=8,16"], "'model.d_model' cannot be swept"),
        (["--grid", "optimizer.lrr=0.1"], "unknown key 'optimizer.lrr'"),
        (["--grid", "optimizer.lr="], "expected at least one value"),
        (["--grid", "optimizer.lr"], "--grid: expected KEY=V1,V2,..."),
        (["--grid", "optimizer.lr=0.1", "--grid", "optimizer.lr=0.2"], "given twice"),
        (["--grid", "optimizer.lr=0.1", "--seeds", "three"], "--seeds: expected a count"),
        (["--grid", "trainer.batch_size=8,4"], "training loop"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "sw"
    code = cli.main(["sweep", *TINY, *extra, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("seqkit: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists()


@pytest.mark.slow
def test_cli_sweep_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "sw"
    args = [
        "sweep",
        *TINY,
        "--grid",
        "optimizer.lr=1e-3,1e-2",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "best by val accuracy" in printed and "sweep directory" in printed
    res = json.loads((out / "sweep.json").read_text())
    assert len(res["members"]) == 4 and res["steps"] == 2
    assert cli.main([*args, "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err


def test_a_sweep_without_its_checkpoint_is_not_written_over(study, tmp_path):
    _, run = study
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    os.remove(copy / "checkpoint.eqx")
    before = snapshot(copy)
    kw = dict(
        seeds=SEEDS, run_dir=copy, sources=sources(), batches=batches, per_member_data=True, progress=False
    )
    for resume in (False, True):
        with pytest.raises(st.RecipeError, match="holds sweep_config.json, metrics.jsonl, sweep.json but no"):
            st.sweep(study_recipe(), GRID, resume=resume, **kw)
    assert snapshot(copy) == before


def test_a_sweep_directory_is_named_as_such_by_train_and_eval(study):
    _, run = study
    before = snapshot(run)
    for resume in (False, True):
        with pytest.raises(st.RecipeError, match=r"holds a sweep \(sweep_config.json\), not a training run"):
            st.train(study_recipe(), run, resume=resume, sources=sources(), batches=batches, progress=False)
    with pytest.raises(
        st.RecipeError, match=r"is a sweep directory \(sweep_config.json\), not a `seqkit train` run"
    ):
        st.evaluate_run(run, sources=sources())
    assert snapshot(run) == before
