"""Language modeling through the trainer: the per-position loss, the LM recipes,
`seqkit generate`."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from recipe_testing import two_steps

from seqkit import cli, recipes
from seqkit.train import RecipeError, override
from seqkit.train._loop import _eval_batch, _loss_and_correct

LM_RECIPES = [n for n in recipes.names() if recipes.SPECS[n].task == "byte LM"]


def _reference_ce(logits, labels, mask):
    """Per-example mean over real positions of −log softmax(logits)[label], in float64."""
    z = logits.astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    B, L, _ = z.shape
    out = np.zeros(B)
    acc = np.zeros(B)
    for b in range(B):
        real = [t for t in range(L) if mask[b, t]]
        out[b] = -np.mean([logp[b, t, labels[b, t]] for t in real])
        acc[b] = np.mean([np.argmax(z[b, t]) == labels[b, t] for t in real])
    return out, acc


def test_per_position_loss_is_the_mean_over_real_positions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(3, 7)).astype(np.int32)
    mask = np.ones((3, 7), bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    loss, correct = _loss_and_correct(logits, labels, mask)
    ref, acc = _reference_ce(logits, labels, mask)
    np.testing.assert_allclose(np.asarray(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(correct), acc)
    full, _ = _loss_and_correct(logits, labels)
    ref_full, _ = _reference_ce(logits, labels, np.ones((3, 7), bool))
    np.testing.assert_allclose(np.asarray(full), ref_full, rtol=1e-5)
    with pytest.raises(ValueError, match="per-position labels need a model with pool='none'"):
        _loss_and_correct(logits[:, 0], labels)


def test_nonfinite_logits_count_as_wrong_predictions():
    """argmax reads a row with a NaN as class 0: such a row must not score a class-0
    label as correct (a diverged model would score the share of class 0)."""
    nan, inf = float("nan"), float("inf")
    logits = np.array([[nan, 0.0, 0.0], [2.0, 0.0, 0.0], [inf, 0.0, 0.0], [0.0, nan, 5.0], [0.0, 3.0, 1.0]])
    labels = np.array([0, 0, 0, 2, 1])
    _, correct = _loss_and_correct(logits.astype(np.float32), labels)
    np.testing.assert_array_equal(np.asarray(correct), [0, 1, 0, 0, 1])
    # per position: the example's accuracy counts its finite, right rows only
    _, correct = _loss_and_correct(logits[None].astype(np.float32), labels[None])
    np.testing.assert_allclose(np.asarray(correct), [2 / 5])


def test_lm_recipes_are_registered_with_smoke_presets():
    assert set(LM_RECIPES) == {
        "s4-lm", "gss-lm", "mega-lm", "transformer-lm", "transformer-trime-lm", "perceiver-ar-lm",
        "block-recurrent-lm", "transformer-trime-long-lm",
    }  # fmt: skip
    pa = recipes.get("perceiver-ar-lm")
    assert (pa.model.latents, pa.data.max_length, recipes.get("perceiver-ar-lm", "smoke").model.latents) == (
        128, 512, 32
    )  # fmt: skip
    trime = recipes.get("transformer-trime-lm")
    assert trime.trainer.objective == "trime_local"
    assert trime.model == recipes.get("transformer-lm").model
    long = recipes.get("transformer-trime-long-lm")
    assert long.trainer.objective == "trime_long" and long.model == trime.model
    assert long.trainer.batch_options() == {"consecutive": True} and trime.trainer.batch_options() == {}
    for name in LM_RECIPES:
        r = recipes.get(name)
        assert r.model.pool == "none" and r.data.name == "pytext" and r.data.n_classes == 256
        assert r.model.norm == "layer"  # BatchNorm would mix statistics across positions


@pytest.mark.parametrize("name", LM_RECIPES)
def test_lm_recipe_two_steps(name):
    r = recipes.get(name, "smoke")
    losses, opt_state = two_steps(r)
    assert all(math.isfinite(x) for x in losses), losses
    if r.trainer.objective == "cross_entropy":
        # Untrained: close to the uniform cross-entropy over 256 bytes, ln 256 = 5.55 nats.
        assert abs(losses[0] - math.log(256)) < 1.0, losses
    else:  # TRIME: in-batch memories with the target's byte add to the numerator
        assert 0.0 < losses[0] < math.log(256) + 1.0, losses
    assert int(opt_state.total_notfinite) == 0


def test_lm_recipe_validation():
    r = recipes.get("gss-lm", "smoke")
    sources = r.make_sources()
    with pytest.raises(RecipeError, match=r"label per position.*use --set model.pool=none"):
        override(r, ["model.pool=mean"]).validate(sources)
    with pytest.raises(RecipeError, match=r"mixers.0 \(gss\) is not causal.*model.mixers.0.causal=true"):
        override(r, ["model.mixers.0.causal=false"]).validate(sources)
    s4 = recipes.get("s4-lm", "smoke")
    with pytest.raises(RecipeError, match=r"model.mixers.0.bidirectional=false"):
        override(s4, ["model.mixers.0.bidirectional=true"]).validate(sources)
    classify = recipes.get("s4-pathfinder", "smoke")
    classify = dataclasses.replace(classify, data=dataclasses.replace(classify.data, train_size=16))
    with pytest.raises(RecipeError, match="model.pool=none gives logits per position"):
        override(classify, ["model.pool=none"]).validate(classify.make_sources())


def test_train_then_generate_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "lm"
    steps = ["--set", "trainer.steps=2", "--set", "data.val_size=4", "--set", "data.test_size=4"]
    assert cli.main(["train", "gss-lm", "--preset", "smoke", "--out", str(out), "--no-progress", *steps]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["val_bits_per_token"] == pytest.approx(res["val_loss"] / math.log(2))
    assert "bits per token" in capsys.readouterr().out
    assert cli.main(["generate", str(out), "--prompt", "def f(x):", "-n", "12", "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("def f(x):")
    # Greedy decoding is deterministic.
    assert cli.main(["generate", str(out), "--prompt", "def f(x):", "-n", "12", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == text
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", str(out), "--prompt", "x", "--top-k", "0"])
    assert e.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err


def test_generate_from_a_perceiver_ar_run(tmp_path, capsys):
    """Perceiver AR has no recurrent state; `seqkit generate` runs the parallel
    model on every prefix. The prompt is shorter than the 32 latents."""
    out = tmp_path / "par"
    sets = ["--set", "trainer.steps=1", "--set", "data.val_size=2", "--set", "data.test_size=2"]
    argv = ["train", "perceiver-ar-lm", "--preset", "smoke", "--out", str(out), "--no-progress", *sets]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "import", "-n", "8", "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("import") and len(text.rstrip("\n").encode()) >= len("import") + 1


def test_perceiver_ar_recipe_refuses_options_its_model_does_not_have(tmp_path):
    """Perceiver AR is built with LayerNorm, pre-norm, GELU and learned positions:
    a recipe asking for anything else is refused, not quietly built the same."""
    smoke = recipes.get("perceiver-ar-lm", "smoke")
    assert smoke.model.positions == "learned"
    for setting, shown in (
        ("model.norm=batch", "model.norm=batch"),
        ("model.prenorm=false", "model.prenorm=False"),
        ("model.ffn_activation=relu", "model.ffn_activation=relu"),
        ("model.positions=sinusoidal", "model.positions=sinusoidal"),
    ):
        with pytest.raises(RecipeError, match=rf"Perceiver AR\) is built with norm=layer, .*; got {shown}$"):
            override(smoke, [setting]).build_model(np.zeros(64, np.int32), key=jax.random.key(0))


def test_generate_refuses_a_classifier_run(tmp_path, capsys):
    out = tmp_path / "clf"
    sets = ["--set", "trainer.steps=1", "--set", "data.train_size=16", "--set", "data.val_size=4"]
    sets += ["--set", "data.test_size=4"]
    argv = ["train", "s4-pathfinder", "--preset", "smoke", "--out", str(out), "--no-progress", *sets]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "not a byte-level language model: model.pool=mean (expected none)" in err
    assert "vocab_size" not in err  # only what does not match


@pytest.mark.slow
@pytest.mark.parametrize("name", LM_RECIPES)
def test_lm_smoke_preset_beats_the_unigram_model(name, tmp_path, capsys, optimized):
    from seqkit.data import make_source

    out = tmp_path / name
    assert cli.main(["train", name, "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    r = recipes.get(name, "smoke")
    val = make_source("pytext", "val", max_length=r.data.max_length, size=r.data.val_size)
    # The unigram model of exactly the evaluated bytes (fit on them: a lower bound
    # for any unigram model), in bits per byte.
    counts = np.bincount(np.concatenate([val[i]["label"] for i in range(len(val))]), minlength=256)
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * np.log2(p)).sum())
    assert res["skipped_updates"] == 0
    assert res["val_bits_per_token"] < unigram - 0.5, (res["val_bits_per_token"], unigram)
    if r.trainer.objective.startswith("trime"):
        # TRIME scores with its memories, which predict well before any training
        # (one step of trime-long already beats the unigram): it must beat that too.
        first = tmp_path / "one-step"
        argv = ["train", name, "--preset", "smoke", "--out", str(first), "--no-progress"]
        assert cli.main([*argv, "--set", "trainer.steps=1"]) == 0
        untrained = json.loads((first / "results.json").read_text())["val_bits_per_token"]
        assert res["val_bits_per_token"] < untrained - 0.3, (res["val_bits_per_token"], untrained)


def test_trime_objective_trains_the_model_on_its_in_batch_memories():
    """The step's loss is TRIME's (checked against its definition in test_trime.py)
    on the model's own features, not the plain cross-entropy."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import seqkit.train as st
    from seqkit.data import batches

    r = recipes.get("transformer-trime-lm", "smoke")
    sources = r.make_sources()
    built = r.build(sources=sources)
    batch = next(batches(sources["train"], batch_size=4, seed=0))
    model = eqx.nn.inference_mode(built.model)  # no dropout: the reference sees the same model
    opt_state = built.optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    metrics = {
        objective: st.make_train_step(built.optimizer, objective=objective)(
            model, built.state, opt_state, batch, st.step_key(0, 0)
        )[3]
        for objective in ("cross_entropy", "trime_batch", "trime_local")
    }
    hidden, _ = jax.vmap(lambda x: model.features(x, built.state))(jnp.asarray(batch["inputs"]))
    logits = jax.vmap(jax.vmap(model.head))(hidden)
    labels = jnp.asarray(batch["label"])
    for memory in ("batch", "local"):
        ref = float(jnp.mean(st.trime_batch_loss(logits, hidden, labels, memory=memory)))
        assert float(metrics[f"trime_{memory}"]["loss"]) == pytest.approx(ref, rel=1e-5)
    ce = float(jnp.mean(_loss_and_correct(logits, labels)[0]))
    assert float(metrics["cross_entropy"]["loss"]) == pytest.approx(ce, rel=1e-5)
    assert metrics["trime_batch"]["loss"] != metrics["cross_entropy"]["loss"]
    # Evaluation of a TRIME model: its distribution with local memories.
    weight = jnp.ones((4,), jnp.float32)
    total, _ = _eval_batch(model, built.state, batch, weight, "trime_local")
    local = float(jnp.sum(jnp.mean(st.trime_batch_loss(logits, hidden, labels, memory="local"), axis=1)))
    assert float(total) == pytest.approx(local, rel=1e-5)
    with pytest.raises(RecipeError, match="trainer.objective=trime_local trains a language model"):
        classify = recipes.get("s4-pathfinder", "smoke")
        classify = dataclasses.replace(classify, data=dataclasses.replace(classify.data, train_size=16))
        override(classify, ["trainer.objective=trime_local"]).validate(classify.make_sources())
