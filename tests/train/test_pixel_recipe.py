"""`pixel-text` and `pixel-pretrain` (Rust et al., "Language Modelling with Pixels",
ICLR 2023): PIXEL's patch size, length and ViT-Base encoder on rendered IMDb, two
real steps of each smoke preset (the fake IMDb archive; rendered Python source),
and fine-tuning that starts from a pretraining run's encoder (`model.init_from`)."""

import dataclasses
import math

import equinox as eqx
import jax
import numpy as np
import pytest
from fake_corpora import write_imdb
from recipe_testing import two_steps, with_data

import seqkit.nn as sn
import seqkit.train as st
from seqkit.data import batches, make_source
from seqkit.data._render import render_patches
from seqkit.recipes import pixel, pixel_pretrain
from seqkit.train import RecipeError, override


def test_pixel_text_structure():
    r = pixel.recipe()
    m = r.model
    # PIXEL: 16 x 16 patches, 529 of them; ViT-Base 768 x 12, 12 heads, MLP 4 x d.
    assert (r.data.name, r.data.patch_size, r.data.max_length) == ("imdb", 16, 529)
    assert (m.d_model, m.n_layers, m.mixers[0].num_heads, m.ffn_mult) == (768, 12, 12, 4)
    assert (m.pool, m.positions, m.norm, m.prenorm, m.ffn_activation) == (
        "cls",
        "learned",
        "layer",
        True,
        "gelu",
    )


def test_pixel_text_smoke_takes_two_finite_steps(tmp_path):
    r = with_data(
        pixel.PRESETS["smoke"](pixel.recipe()), {"imdb": write_imdb(tmp_path / "imdb", per_class=60)}
    )
    sources = r.make_sources()
    item = sources["train"][0]
    assert item["inputs"].shape == (64, 256) and item["mask"].any()
    losses, opt_state = two_steps(r)
    assert all(math.isfinite(v) for v in losses) and losses[0] > 0, losses
    assert int(opt_state.total_notfinite) == 0


# --- pixel-pretrain: PIXEL's masked-patch pretraining, and fine-tuning from it ---


def test_pixel_pretrain_has_pixel_texts_encoder():
    """`model.init_from` needs the same layout: the pretraining recipe's encoder is
    `pixel-text`'s (dropout aside), and the two smoke presets match too."""
    pre, fine = pixel_pretrain.recipe(), pixel.recipe()
    assert pre.trainer.objective == "masked_patches"
    assert (pre.data.name, pre.data.patch_size, pre.data.max_length) == ("pytext", 16, 529)
    # MAE's optimizer: AdamW (0.9, 0.95), weight decay 0.05, 1.5e-4 at batch 256.
    o = pre.optimizer
    assert (o.lr, o.b1, o.b2, o.weight_decay, pre.trainer.batch_size) == (1.5e-4, 0.9, 0.95, 0.05, 256)
    for a, b in ((pre, fine), (pixel_pretrain.smoke(pre), pixel.smoke(fine))):
        strip = lambda m: dataclasses.replace(  # noqa: E731
            m, dropout=0.0, mixers=[dataclasses.replace(x, dropout=0.0) for x in m.mixers]
        )
        assert strip(a.model) == strip(b.model)
        assert (a.data.patch_size, a.data.max_length) == (b.data.patch_size, b.data.max_length)


def test_rendered_pytext_is_the_chunk_drawn():
    """`pytext` with `patch_size`: chunk `i` of `4 N` bytes, rendered as PIXEL
    renders text, checked against the byte source read and rendered directly."""
    rendered = make_source("pytext", "val", patch_size=16, max_length=32, size=3)
    raw = make_source("pytext", "val", max_length=4 * 32, size=3)
    for i in range(3):
        text = np.asarray(raw[i]["inputs"]).astype(np.uint8).tobytes().decode("utf-8", "replace")
        patches, mask = render_patches(text, patch=16, max_patches=32)
        item = rendered[i]
        np.testing.assert_array_equal(item["inputs"], patches)
        np.testing.assert_array_equal(item["mask"], mask)
        assert item["inputs"].shape == (32, 256) and item["mask"].sum() > 8


def test_pixel_pretrain_smoke_takes_two_finite_steps():
    r = pixel_pretrain.smoke(pixel_pretrain.recipe())
    losses, opt_state = two_steps(r)
    # Normalized pixels have variance about 1: an untrained decoder's error is near it.
    assert all(math.isfinite(v) and 0.2 < v < 5.0 for v in losses), losses
    assert int(opt_state.total_notfinite) == 0


def _backbone_arrays(model):
    m = model.encoder if isinstance(model, sn.PixelPretrainer) else model
    return jax.tree.leaves(
        eqx.filter((m.encoder, m.cls_token, m.position_table, m.blocks, m.final_norm), eqx.is_array)
    )


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("pretrain") / "run")
    st.train(pixel_pretrain.smoke(pixel_pretrain.recipe()), run_dir, progress=False)
    return run_dir


def test_fine_tuning_starts_from_the_pretrained_encoder(tmp_path, pretrained_run):
    """`model.init_from`: every backbone array is the pretrained encoder's, the head
    is the fresh model's own, and the fine-tuning run takes real steps."""
    fine = with_data(pixel.smoke(pixel.recipe()), {"imdb": write_imdb(tmp_path / "imdb", per_class=60)})
    fresh = fine.build()
    started = dataclasses.replace(fine, model=dataclasses.replace(fine.model, init_from=pretrained_run))
    started.validate(fresh.sources)
    built = started.build(sources=fresh.sources)
    _, pre_model, _, _, _ = st.load_run(pretrained_run)
    assert isinstance(pre_model, sn.PixelPretrainer)
    got, want, scratch = (_backbone_arrays(m) for m in (built.model, pre_model, fresh.model))
    assert len(got) == len(want) > 10
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(a, b) for a, b in zip(got, scratch, strict=True))
    np.testing.assert_array_equal(np.asarray(built.model.head.weight), np.asarray(fresh.model.head.weight))
    losses, opt_state = two_steps(started)
    assert all(math.isfinite(v) for v in losses) and int(opt_state.total_notfinite) == 0


def test_init_from_errors(tmp_path, pretrained_run):
    fine = with_data(pixel.smoke(pixel.recipe()), {"imdb": write_imdb(tmp_path / "imdb", per_class=60)})
    missing = override(fine, [f"model.init_from={tmp_path / 'nowhere'}"])
    with pytest.raises(RecipeError, match="model.init_from: no run directory at .*nowhere"):
        missing.validate()
    (tmp_path / "empty").mkdir()
    empty = override(fine, [f"model.init_from={tmp_path / 'empty'}"])
    with pytest.raises(
        RecipeError, match="not a run directory to start from: config.json, checkpoint.eqx missing"
    ):
        empty.validate()
    wider = override(fine, [f"model.init_from={pretrained_run}", "model.d_model=48"])
    with pytest.raises(
        RecipeError,
        match=r"backbone array encoder.weight is float32 \(32, 256\), this model expects float32 \(48, 256\)",
    ):
        wider.build()
    deeper = override(
        fine, [f"model.init_from={pretrained_run}", f"model.n_layers={fine.model.n_layers + 1}"]
    )
    with pytest.raises(
        RecipeError,
        match=rf"another layout .*: its array final_norm.weight stands where this model has "
        rf"blocks\[{fine.model.n_layers}\]\.",
    ):
        deeper.build()


def test_masked_patches_needs_patches():
    tokens = override(
        pixel_pretrain.smoke(pixel_pretrain.recipe()), ["data.patch_size=null", "model.pool=none"]
    )
    sources = tokens.make_sources()
    with pytest.raises(
        RecipeError, match="masked_patches reconstructs real-valued patches.*set data.patch_size"
    ):
        tokens.validate(sources)


@pytest.mark.slow
def test_pixel_pretrain_cpu_preset_learns(tmp_path):
    """The cpu preset's val reconstruction loss ends well below the untrained
    model's and below predicting zeros (the normalized pixels' own mean square,
    computed here in NumPy on the same hidden patches). Measured: 0.745 against
    0.937 for zeros; the best constant patch scores about the same 0.745, so at
    this size the model learns the average glyph, not to read its context."""
    r = pixel_pretrain.cpu(pixel_pretrain.recipe())
    res = st.train(r, str(tmp_path / "run"), progress=False)
    built = r.build()
    untrained = st.evaluate(
        built.model, built.state, built.sources["val"], batch_size=r.trainer.batch_size,
        batches=batches, objective="masked_patches",
    )  # fmt: skip
    zeros = []
    one_pass = dict(seed=0, shuffle=False, drop_remainder=False, num_epochs=1)
    for i, b in enumerate(batches(built.sources["val"], batch_size=r.trainer.batch_size, **one_pass)):
        x, real = np.asarray(b["inputs"], np.float64), np.asarray(b["mask"])
        keys = jax.random.split(jax.random.split(jax.random.key(0))[0], len(x))
        hidden = np.asarray(jax.vmap(lambda k, m: sn.span_mask(k, m))(keys, real)) & real
        d = x.shape[-1]
        normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-6)
        per_patch = (normed**2).mean(-1)
        zeros += list((per_patch * hidden).sum(1) / np.maximum(hidden.sum(1), 1))
        assert d == 256 and i < 10
    zero_loss = float(np.mean(zeros))
    assert res["val_loss"] < 0.85 * zero_loss < untrained["loss"], (res["val_loss"], zero_loss, untrained)
