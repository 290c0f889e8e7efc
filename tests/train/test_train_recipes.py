"""Recipes: the published hyperparameters, presets, `--set` overrides (mixers and
layer patterns included) and their JSON round trip."""

import dataclasses
import json

import numpy as np
import pytest

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.recipes as recipes
import seqkit.train as st

# Gu, Goel and Ré, ICLR 2022 (appendix): d_model × layers, norm, prenorm, dropout, dt range,
# lr / wd, batch, warmup / total.
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
    (s4,) = m.mixers
    assert isinstance(s4, snn.S4Config) and m.pattern is None and m.pool == "mean"
    assert (s4.dt_min, s4.dt_max, s4.state_size, s4.bidirectional, s4.activation, s4.output) == (
        *dt,
        64,
        True,
        "gelu",
        "glu",
    )
    assert s4.dropout == drop  # the S4 layer's own dropout, as the residual's
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
    assert "smoke" in recipes.SPECS[name].presets


def test_lra_image_preset():
    r = recipes.get("s4-scifar", "gray")
    assert (r.data.name, r.model.norm, r.schedule.warmup_steps, r.schedule.total_steps) == (
        "cifar_gray",
        "batch",
        18_000,
        180_000,
    )


def test_spade_recipe():
    r = recipes.get("spade")
    m = r.model
    fused, local = m.mixers
    # Zuo et al. 2022: an SSM fused with local attention in the bottom layer, local attention above.
    assert m.pattern == [0, 1, 1, 1, 1, 1] and m.n_layers == 6
    assert isinstance(fused, sa.SpadeConfig) and fused.combine == "concat" and not fused.causal
    assert (fused.state_size, fused.dt_min, fused.dt_max, fused.mode) == (64, 1e-3, 1e-1, "sliding")
    assert isinstance(local, sa.LocalAttentionConfig) and local.mode == "sliding" and not local.causal
    assert (m.d_model, m.norm, m.prenorm, m.ffn_mult) == (256, "batch", True, 2)
    assert (r.data.name, r.data.contour_length) == ("pathfinder32", 14)
    cpu = recipes.get("spade", "cpu")
    assert cpu.model.pattern == [0] + [1] * (cpu.model.n_layers - 1) and cpu.data.contour_length == 6
    cpu.validate()
    recipes.get("spade", "smoke").validate()


def test_mega_recipe():
    r = recipes.get("mega")
    m = r.model
    (mega,) = m.mixers
    # Ma et al. 2023, the LRA Pathfinder setting (examples/mega/README.lra.md, mega_lra_pf32).
    assert isinstance(mega, snn.MegaConfig)
    assert (mega.z_dim, mega.v_dim, mega.ema_ndim, mega.chunk_size) == (64, 256, 16, None)
    assert (mega.attention, mega.relative_position, mega.causal, mega.dropout) == (
        "laplace",
        "simple",
        False,
        0.0,
    )
    assert (m.d_model, m.n_layers, m.norm, m.prenorm, m.dropout) == (128, 6, "batch", True, 0.0)
    assert (m.ffn_mult, m.ffn_activation, m.pool) == (2, "silu", "mean")
    o = r.optimizer
    assert (o.lr, o.weight_decay, o.ssm_lr, o.ssm_weight_decay, o.b1, o.b2, o.grad_clip) == (
        0.01,
        0.01,
        0.01,
        0.01,
        0.9,
        0.98,
        1.0,
    )
    assert r.trainer.batch_size == 128 and (r.schedule.warmup_steps, r.schedule.total_steps) == (
        50_000,
        250_000,
    )
    recipes.get("mega", "cpu").validate()
    recipes.get("mega", "smoke").validate()


def test_registry_errors_and_listing():
    assert {"mega", "s4-pathfinder", "s4-pathx", "s4-scifar", "spade"} <= set(recipes.names())
    assert recipes.names() == sorted(recipes.names())
    assert all(desc for _, desc, _ in recipes.describe())
    with pytest.raises(st.RecipeError, match="unknown recipe 'x'; `seqkit recipes` lists all"):
        recipes.get("x")
    with pytest.raises(st.RecipeError, match="unknown recipe 's4-txt'; did you mean s4-text"):
        recipes.get("s4-txt")
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
        "model.widht=3": "unknown key 'model.widht'; accepted under 'model': d_model, n_layers, mixers",
        "optim.lr=1": "unknown key 'optim'; accepted at the top level: name, description, preset, model",
        "model.n_layers=2.5": "model.n_layers: expected an int, got '2.5'",
        "model.prenorm=maybe": "expected a bool",
        "model.pool=max": "expected one of mean, last, cls, none; got 'max'",
        "model=1": "'model' is a section",
        "model.d_model.x=1": "is a value, not a section",
        "model.d_model": "expected key=value",
    }
    for text, msg in cases.items():
        with pytest.raises(st.RecipeError) as e:
            st.override(r, [text])
        assert msg in str(e.value) and "\n" not in str(e.value)


def test_mixer_overrides():
    r = recipes.get("s4-pathfinder", "smoke")
    spade = st.override(
        r,
        [
            "model.mixers.0.state_size=32",
            "model.mixers.1=local",  # one past the end: appended at the kind's defaults
            "model.mixers.1.mode=sliding",
            "model.mixers.1.window_size=64",
            "model.n_layers=4",
            "model.pattern=0,1,1,1",
        ],
    )
    s4, local = spade.model.mixers
    assert s4 == dataclasses.replace(r.model.mixers[0], state_size=32)
    assert local == sa.LocalAttentionConfig(mode="sliding", window_size=64)
    assert spade.model.pattern == [0, 1, 1, 1] and spade.model.layer_mixers() == [s4, local, local, local]
    assert r.model.mixers == [snn.S4Config()] and r.model.pattern is None  # the original is untouched
    # A list of kinds, each at its defaults; an entry replaced by another kind.
    hybrid = st.override(r, ["model.mixers=s4d,mega", "model.mixers.1=gss", "model.pattern=none"])
    assert hybrid.model.mixers == [snn.S4DConfig(), snn.GSSConfig()] and hybrid.model.pattern is None
    hybrid.validate()  # 2 mixers, n_layers 2: one per layer
    # Options typed by their kind: Literal choices, optional ints, bools.
    e = st.override(
        r, ["model.mixers=mega", "model.mixers.0.chunk_size=64", "model.mixers.0.attention=laplace"]
    )
    assert e.model.mixers == [snn.MegaConfig(chunk_size=64, attention="laplace")]
    e = st.override(e, ["model.mixers.0.chunk_size=none", "model.mixers.0.causal=true"])
    assert e.model.mixers[0].chunk_size is None and e.model.mixers[0].causal is True


@pytest.mark.parametrize(
    "sets, message",
    [
        # unknown kind: the valid kinds
        (["model.mixers.0=s6"], "model.mixers.0: unknown mixer kind 's6'; expected one of: bigbird,"),
        (["model.mixers=s4,locl"], "model.mixers.1: unknown mixer kind 'locl'; expected one of:"),
        # unknown option: the valid options of that kind
        (
            ["model.mixers.0.stat_size=32"],
            "unknown option 'model.mixers.0.stat_size' for mixer kind 's4'; expected one of: activation, "
            "output, dropout, state_size, dt_min, dt_max, bidirectional",
        ),
        (["model.mixers=local", "model.mixers.0.state_size=8"], "for mixer kind 'local'; expected one of:"),
        (["model.mixers.0.kind=local"], "to change the kind use model.mixers.0=KIND"),
        # bad values: what was expected
        (["model.mixers.0.state_size=big"], "model.mixers.0.state_size: expected an int, got 'big'"),
        (
            ["model.mixers=local", "model.mixers.0.mode=diagonal"],
            "expected one of block, sliding; got 'diagonal'",
        ),
        (["model.mixers.0.bidirectional=maybe"], "model.mixers.0.bidirectional: expected a bool"),
        (["model.pattern=0,one"], "model.pattern.1: expected an int, got 'one'"),
        # indices that do not exist
        (["model.mixers.3=local"], "model.mixers.3: expected an index in 0..0, or 1 to append a mixer"),
        (
            ["model.mixers.1.state_size=8"],
            "model.mixers.1: expected an index in 0..0 (model.mixers has 1 entry)",
        ),
        (["model.mixers.x.state_size=8"], "model.mixers.x: expected an index in 0..0"),
    ],
)
def test_mixer_override_errors(sets, message):
    with pytest.raises(st.RecipeError) as e:
        st.override(recipes.get("s4-pathfinder", "smoke"), sets)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["model.mixers=s4,local,mha"],
            "model.mixers: 3 mixers for n_layers=2; expected 1 (used by every layer), 2 (one per layer), "
            "or a model.pattern of 2 indices in 0..2",
        ),
        (
            ["model.mixers=s4,local", "model.pattern=0,1,1"],
            "model.pattern: expected 2 mixer indices (one per",
        ),
        (
            ["model.mixers=s4,local", "model.pattern=0,2"],
            "model.pattern: expected indices in 0..1 (model.mixers ",
        ),
        (["model.mixers="], "model.mixers: expected at least one mixer, got none"),
        (["model.n_layers=0"], "model.n_layers: expected an int >= 1, got 0"),
        (["schedule.total_steps=0"], "schedule.total_steps: expected an int >= 1, got 0"),
        (["optimizer.lr=inf"], "optimizer.lr: expected a finite number >= 0.0 (and within float32's"),
        (["optimizer.grad_clip=inf"], "optimizer.grad_clip: expected a finite number >= 0.0 (and"),
        # beyond float32's range: inf in training (inf x 0 = NaN in the first warmup update)
        (
            ["optimizer.lr=1e39"],
            "optimizer.lr: expected a finite number >= 0.0 (and within float32's 3.403e+38), got 1e+39",
        ),
        # the cosine schedule is 0 from update total_steps on: later updates would be wasted
        (
            ["schedule.total_steps=30", "schedule.warmup_steps=3", "trainer.steps=31"],
            "trainer.steps=31 runs past the schedule (schedule.total_steps=30, warmup_steps=3): "
            "updates from 31 on would train at learning rate 0; set schedule.total_steps=31",
        ),
        # a warmup past the schedule's end (LRA's Retrieval) peaks at update warmup + 1
        (
            ["schedule.total_steps=5", "schedule.warmup_steps=8", "trainer.steps=10"],
            "updates from 10 on would train at learning rate 0",
        ),
        # PRNG keys and the batch order take 32-bit seeds: 2**32 would alias 0.
        (["trainer.seed=4294967296"], "trainer.seed: expected an int >= 0 and < 4294967296, got 4294967296"),
    ],
)
def test_pattern_errors_are_caught_by_validate(sets, message):
    # Edits apply in any order (n_layers may come after pattern); validate judges the result.
    recipe = st.override(recipes.get("s4-pathfinder", "smoke"), sets)
    with pytest.raises(st.RecipeError) as e:
        recipe.validate()
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_dict_roundtrip():
    r = st.override(recipes.get("s4-scifar", "smoke"), ["data.data_dir=/d"])
    assert st.recipe_from_dict(st.recipe_to_dict(r)) == r
    for name in recipes.names():
        r = recipes.get(name)
        assert st.recipe_from_dict(json.loads(json.dumps(st.recipe_to_dict(r)))) == r
    hybrid = st.override(
        recipes.get("spade", "cpu"),
        ["model.mixers.1.window_size=8", "model.mixers=s4,local,mega", "model.mixers.2.chunk_size=16"],
    )
    data = json.loads(json.dumps(st.recipe_to_dict(hybrid)))
    assert [m["kind"] for m in data["model"]["mixers"]] == ["s4", "local", "mega"]
    assert data["model"]["mixers"][2]["chunk_size"] == 16 and data["model"]["pattern"] == [0, 1]
    assert st.recipe_from_dict(data) == hybrid
    bad = st.recipe_to_dict(r)
    bad["model"]["depth"] = 3
    with pytest.raises(st.RecipeError, match="unknown keys"):
        st.recipe_from_dict(bad)
    cases = {
        ("kind", "s6"): "model.mixers.1: unknown mixer kind 's6'; expected one of:",
        ("window", 8): "unknown keys ['window'] for LocalAttentionConfig (model.mixers.1)",
        ("window_size", "8"): "model.mixers.1.window_size: expected an int, got '8'",
        ("mode", "diagonal"): "model.mixers.1.mode: expected one of block, sliding; got 'diagonal'",
    }
    for (key, value), message in cases.items():
        bad = json.loads(json.dumps(data))
        bad["model"]["mixers"][1][key] = value
        with pytest.raises(st.RecipeError) as e:
            st.recipe_from_dict(bad)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    bad = json.loads(json.dumps(data))
    del bad["model"]["mixers"][0]["kind"]
    with pytest.raises(st.RecipeError, match="model.mixers.0: expected a 'kind'"):
        st.recipe_from_dict(bad)


def test_build_from_sources():
    from train_fixtures import sources

    r = dataclasses.replace(
        recipes.get("s4-pathfinder", "smoke"), data=st.DataConfig(name="sign", n_classes=2)
    )
    built = r.build(sources=sources(n_train=32, n_eval=8))
    assert built.model.d_model == 32 and len(built.model.blocks) == 2
    assert built.model.blocks[0].mixer.core.l_max == 16  # S4's kernel length: the data's


def test_data_options_reach_the_source_only_when_set(monkeypatch):
    import seqkit.data

    seen = []

    def fake_make_source(name, split, **kw):
        seen.append(kw)
        return [0]

    monkeypatch.setattr(seqkit.data, "make_source", fake_make_source)
    sets = ["data.max_length=512", "data.as_tokens=true"]
    recipe = st.override(recipes.get("s4-pathfinder", "smoke"), sets)
    recipe.make_sources()
    assert all(kw["max_length"] == 512 and kw["as_tokens"] is True for kw in seen)
    assert all("style" not in kw for kw in seen)  # unset: the dataset's default
    with pytest.raises(st.RecipeError, match="data.max_length: expected an int >= 1, got 0"):
        st.override(recipe, ["data.max_length=0"]).validate()


class PairSource:
    """Items like AAN's: `inputs` int32 (2, L), `mask` bool (2, L), `label` int32 (1 when
    the two documents are drawn from the same half of the vocabulary)."""

    def __init__(self, n, *, L=16, vocab=32, seed=0):
        self.n, self.L, self.vocab, self.seed = n, L, vocab, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        label = np.int32(i % 2)
        half = self.vocab // 2
        lo = rng.integers(0, 2)
        his = (lo, lo if label else 1 - lo)
        lengths = rng.integers(self.L // 2, self.L + 1, size=2)
        inputs = np.zeros((2, self.L), np.int32)
        mask = np.arange(self.L)[None, :] < lengths[:, None]
        for j, h in enumerate(his):
            inputs[j, : lengths[j]] = rng.integers(1 + h * half, (h + 1) * half, size=lengths[j])
        return {"inputs": inputs, "mask": mask, "label": label}


def pair_sources(n_train=32, n_eval=8, **kw):
    return {
        split: PairSource(n, seed=s, **kw)
        for split, n, s in (("train", n_train, 0), ("val", n_eval, 1), ("test", n_eval, 2))
    }


def test_dual_recipe_builds_a_dual_encoder():
    r = recipes.get("s4-pathfinder", "smoke")
    r = st.override(r, ["model.dual=true", "data.name=pairs", "data.vocab_size=32", "data.n_classes=2"])
    assert r.model.dual and st.recipe_from_dict(json.loads(json.dumps(st.recipe_to_dict(r)))) == r
    r.validate(pair_sources())
    built = r.build(sources=pair_sources())
    assert isinstance(built.model, snn.DualEncoder) and built.model.n_classes == 2
    encoder = built.model.encoder
    assert encoder.head is None and encoder.encoder.num_embeddings == 32
    assert encoder.blocks[0].mixer.core.l_max == 16  # one document's length, not 2 × 16


def test_dual_recipe_trains(tmp_path):
    from train_fixtures import batches, tiny_recipe

    recipe = tiny_recipe(steps=2, eval_every=100, log_every=1, checkpoint_every=100, batch_size=4)
    recipe = st.override(recipe, ["model.dual=true", "data.name=pairs", "data.vocab_size=32"])
    res = st.train(recipe, tmp_path, sources=pair_sources(), batches=batches, progress=False)
    assert res["steps"] == 2 and res["skipped_updates"] == 0
    assert np.isfinite(res["val_loss"]) and np.isfinite(res["test_loss"])
    train_recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train_recs if r["split"] == "train"] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in train_recs)
    _, model, state, srcs, meta = st.load_run(tmp_path, sources=pair_sources())
    assert isinstance(model, snn.DualEncoder) and meta["step"] == 2
    ev = st.evaluate(model, state, srcs["test"], batch_size=4, batches=batches)
    assert ev["accuracy"] == res["test_accuracy"]


def test_dual_and_data_disagree(tmp_path):
    from train_fixtures import batches, sources, tiny_recipe

    single = tiny_recipe(steps=2)
    cases = [
        (
            st.override(single, ["model.dual=true"]),
            sources(n_train=32, n_eval=8, tokens=True),
            "model.dual=true needs examples holding two sequences, inputs (2, L) or (2, L, C); "
            "data.name=sign gives int32 (16,)",
        ),
        (
            st.override(single, ["model.dual=true"]),
            sources(n_train=32, n_eval=8),
            "data.name=sign gives float32 (16, 1)",
        ),
        (
            st.override(single, ["data.name=pairs"]),
            pair_sources(),
            "data.name=pairs gives examples holding two sequences, inputs int32 (2, 16); "
            "a single-sequence model reads (L,) or (L, C): use --set model.dual=true",
        ),
    ]
    for recipe, srcs, message in cases:
        with pytest.raises(st.RecipeError) as e:
            recipe.validate(srcs)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
        # train() refuses before anything is written.
        with pytest.raises(st.RecipeError, match="model.dual"):
            st.train(recipe, tmp_path / "run", sources=srcs, batches=batches, progress=False)
        assert not (tmp_path / "run").exists()
