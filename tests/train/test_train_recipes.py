"""Recipes: the published hyperparameters (SPEC §6), presets, and `--set` overrides."""

import dataclasses

import pytest

import seqkit.recipes as recipes
import seqkit.train as st

# SPEC §6: d_model × layers, norm, prenorm, dropout, dt range, lr / wd, batch, warmup / total.
PUBLISHED = {
    "s4-scifar": (512, 6, "layer", False, 0.1, (1e-3, 1e-1), (0.01, 0.05), 50, (900, 180_000)),
    "s4-pathfinder": (256, 6, "batch", True, 0.0, (1e-3, 1e-1), (0.004, 0.05), 64, (50_000, 500_000)),
    "s4-pathx": (256, 6, "batch", True, 0.0, (1e-4, 1e-1), (0.001, 0.05), 16, (50_000, 500_000)),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_hyperparameters(name):
    r = recipes.get(name)
    d, n, norm, pre, drop, dt, (lr, wd), bs, (warm, total) = PUBLISHED[name]
    m = r.model
    assert (m.d_model, m.n_layers, m.norm, m.prenorm, m.dropout) == (d, n, norm, pre, drop)
    assert (m.dt_min, m.dt_max) == dt
    assert (m.mixer, m.state_size, m.bidirectional, m.pool, m.activation, m.output) == (
        "s4",
        64,
        True,
        "mean",
        "gelu",
        "glu",
    )
    o = r.optimizer
    assert (o.lr, o.weight_decay, o.ssm_lr, o.ssm_weight_decay, o.b1, o.b2) == (
        lr,
        wd,
        0.001,
        0.0,
        0.9,
        0.999,
    )
    assert r.trainer.batch_size == bs and (r.schedule.warmup_steps, r.schedule.total_steps) == (warm, total)
    assert r.steps == total
    assert "smoke" in recipes.RECIPES[name].PRESETS


def test_lra_image_preset():
    r = recipes.get("s4-scifar", "gray")
    assert (r.data.name, r.model.norm, r.schedule.warmup_steps, r.schedule.total_steps) == (
        "cifar_gray",
        "batch",
        18_000,
        180_000,
    )


def test_registry_errors_and_listing():
    assert recipes.names() == ["s4-pathfinder", "s4-pathx", "s4-scifar"]
    assert all(desc for _, desc, _ in recipes.describe())
    with pytest.raises(st.RecipeError, match="unknown recipe 'x'; available: s4-pathfinder"):
        recipes.get("x")
    with pytest.raises(st.RecipeError, match="unknown preset 'big' for s4-pathx; available: default, smoke"):
        recipes.get("s4-pathx", "big")
    assert recipes.get("s4-pathfinder", "cpu").preset == "cpu"


def test_override_types_and_errors():
    r = recipes.get("s4-pathfinder", "smoke")
    r2 = st.override(
        r,
        [
            "model.n_layers=4",
            "model.prenorm=false",
            "optimizer.lr=3e-3",
            "data.contour_length=none",
            "model.norm=layer",
            "schedule.total_steps=1e3",
            "data.data_dir=/tmp/x",
        ],
    )
    assert (r2.model.n_layers, r2.model.prenorm, r2.optimizer.lr) == (4, False, 0.003)
    assert (r2.data.contour_length, r2.model.norm, r2.schedule.total_steps, r2.data.data_dir) == (
        None,
        "layer",
        1000,
        "/tmp/x",
    )
    assert r.model.n_layers == 2  # the original is untouched
    cases = {
        "model.widht=3": "unknown key 'model.widht'; accepted under 'model': mixer, d_model",
        "optim.lr=1": "unknown key 'optim'; accepted at the top level: name, description, preset, model",
        "model.n_layers=2.5": "model.n_layers: expected an int, got '2.5'",
        "model.prenorm=maybe": "expected a bool",
        "model.pool=max": "expected one of mean, last, cls; got 'max'",
        "model=1": "'model' is a section",
        "model.d_model.x=1": "is a value, not a section",
        "model.d_model": "expected key=value",
    }
    for text, msg in cases.items():
        with pytest.raises(st.RecipeError) as e:
            st.override(r, [text])
        assert msg in str(e.value) and "\n" not in str(e.value)


def test_dict_roundtrip():
    r = st.override(recipes.get("s4-scifar", "smoke"), ["data.data_dir=/d"])
    assert st.recipe_from_dict(st.recipe_to_dict(r)) == r
    bad = st.recipe_to_dict(r)
    bad["model"]["depth"] = 3
    with pytest.raises(st.RecipeError, match="unknown keys"):
        st.recipe_from_dict(bad)


def test_build_from_sources():
    from train_fixtures import sources

    r = dataclasses.replace(
        recipes.get("s4-pathfinder", "smoke"), data=st.DataConfig(name="sign", n_classes=2)
    )
    built = r.build(sources=sources(n_train=32, n_eval=8))
    assert built.model.d_model == 32 and len(built.model.blocks) == 2
    assert built.model.blocks[0].mixer.core.l_max == 16
