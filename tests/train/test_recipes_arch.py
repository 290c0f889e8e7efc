"""The architecture recipes: the Vision Transformer on image patches (`vit-cifar`,
`vit-pathfinder`) and the wide single-layer Transformer on the LRA text tasks
(`wide-listops`, `wide-text`, `wide-retrieval`).

Default tier: each recipe's declared structure (values typed here), the ViT model
built on its patched data, and two real optimizer steps of every smoke preset but
`wide-retrieval`'s. Slow tier: those of `wide-retrieval`, and `vit-pathfinder`'s
smoke preset trained from the command line.
"""

import json
import math

import jax.random as jr
import numpy as np
import pytest
from recipe_testing import two_steps, with_data, write_corpora

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.recipes as recipes
import seqkit.train as st
from seqkit import cli

VIT = ["vit-cifar", "vit-pathfinder"]
WIDE = ["wide-listops", "wide-text", "wide-retrieval"]

# ViT (Dosovitskiy et al. 2021): pre-norm LayerNorm blocks, GELU MLP 4·d wide, a
# class token, learned positions. Sizes and optimizer are seqkit's: 192 × 6, 3 heads,
# dropout 0.1, AdamW lr 1e-3 / wd 0.05, clip 1, batch 128. Per task: dataset, classes,
# patch, values per patch (P²·C), warmup, total.
VIT_TASK = {
    "vit-cifar": ("scifar", 10, 4, 4 * 4 * 3, 1760, 35_200),
    "vit-pathfinder": ("pathfinder32", 2, 4, 4 * 4 * 1, 2500, 62_500),
}

# LRA's base Transformer (google-research/long-range-arena@cd31e5c
# {listops,text_classification,matching}/configs/base_*_config.py): d, layers, heads per
# layer, FFN multiple, dataset, length.
LRA_TRANSFORMER = {
    "listops": (512, 4, 8, 2, "listops", 2000),
    "text": (256, 4, 4, 4, "imdb", 1000),
    "retrieval": (128, 4, 4, 4, "aan", 4000),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return write_corpora(tmp_path_factory.mktemp("corpora"))


@pytest.mark.parametrize("name", VIT)
def test_vit_structure(name):
    r = recipes.get(name)
    m, d, o = r.model, r.data, r.optimizer
    dataset, classes, patch, _, warmup, total = VIT_TASK[name]
    assert (m.d_model, m.n_layers, m.norm, m.prenorm, m.ffn_mult, m.ffn_activation) == (
        192, 6, "layer", True, 4, "gelu",
    )  # fmt: skip
    assert (m.pool, m.positions, m.dropout, m.dual) == ("cls", "learned", 0.1, False)
    assert [type(x) for x in m.mixers] == [sa.MultiHeadAttentionConfig]
    assert (m.mixers[0].num_heads, m.mixers[0].dropout, m.mixers[0].causal) == (3, 0.1, False)
    assert (d.name, d.n_classes, d.patch_size, d.as_tokens) == (dataset, classes, patch, None)
    assert (o.lr, o.weight_decay, o.ssm_lr, o.ssm_weight_decay) == (1e-3, 0.05, 1e-3, 0.05)
    assert (o.b1, o.b2, o.grad_clip) == (0.9, 0.999, 1.0)
    assert (r.trainer.batch_size, r.schedule.warmup_steps, r.schedule.total_steps) == (128, warmup, total)
    spec = recipes.SPECS[name]
    assert "smoke" in spec.presets and spec.model == "ViT" and "Dosovitskiy" in spec.source


@pytest.mark.parametrize("name", VIT)
def test_vit_reads_patches(name, corpora):
    """The model's input is ViT's: a linear map of P²·C values per patch, a class
    token and a learned table for 1 + 64 positions."""
    r = with_data(recipes.get(name, "smoke"), corpora)
    *_, values, _, _ = VIT_TASK[name]
    example = r.make_sources()["train"][0]["inputs"]
    assert example.shape == (64, values) and example.dtype == np.float32
    model, _ = r.build_model(example, key=jr.key(0))
    assert (model.encoder.in_features, model.encoder.out_features) == (values, 32)
    assert model.cls_token.shape == (32,) and model.position_table.shape == (65, 32)
    assert len(model.blocks) == 2


@pytest.mark.parametrize("task", list(LRA_TRANSFORMER))
def test_wide_structure(task):
    d, layers, heads, ffn, dataset, length = LRA_TRANSFORMER[task]
    r = recipes.get(f"wide-{task}")
    m = r.model
    assert (m.d_model, m.n_layers, m.ffn_mult, m.pool, m.positions, m.prenorm) == (
        d, 1, ffn, "cls", "sinusoidal", True,
    )  # fmt: skip
    assert [type(x) for x in m.mixers] == [sa.MultiHeadAttentionConfig]
    # All the deep model's heads in one layer; each head d / (layers · heads) wide.
    assert m.mixers[0].num_heads == layers * heads
    assert d % (layers * heads) == 0
    assert (r.data.name, r.data.max_length, m.dual) == (dataset, length, task == "retrieval")
    # Every other value is LRA's Transformer recipe's.
    deep = recipes.get(f"transformer-{task}")
    assert (deep.model.n_layers, deep.model.mixers[0].num_heads) == (layers, heads)
    same = (deep.optimizer, deep.schedule, deep.trainer, deep.data)
    assert (r.optimizer, r.schedule, r.trainer, r.data) == same
    assert (m.dropout, m.mixers[0].dropout) == (deep.model.dropout, deep.model.mixers[0].dropout)
    assert (m.dropout, m.mixers[0].dropout) == (0.1, 0.1)
    peak = 0.05 / math.sqrt(r.schedule.warmup_steps)
    assert r.optimizer.lr == pytest.approx(peak)
    spec = recipes.SPECS[f"wide-{task}"]
    assert "smoke" in spec.presets and "Brown" in spec.source and "long-range-arena" in spec.source


def test_wide_smoke_keeps_many_heads():
    for name in WIDE:
        m = recipes.get(name, "smoke").model
        assert (m.d_model, m.n_layers, m.mixers[0].num_heads) == (16, 1, 4)


# wide-retrieval runs the code path of wide-text (one more recipe of the same
# function) with a dual encoder: in the slow tier, to keep this file's default tier short.
SMOKE = [*VIT, "wide-listops", "wide-text", pytest.param("wide-retrieval", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_preset_takes_two_finite_steps(name, corpora):
    losses, opt_state = two_steps(with_data(recipes.get(name, "smoke"), corpora))
    assert all(math.isfinite(v) for v in losses), losses
    assert int(opt_state.total_notfinite) == 0
    assert losses[0] > 0


@pytest.mark.slow
def test_vit_pathfinder_smoke_trains_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "vit"
    assert cli.main(["train", "vit-pathfinder", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    r = recipes.get("vit-pathfinder", "smoke")
    assert res["steps"] == r.schedule.total_steps and res["skipped_updates"] == 0
    assert math.isfinite(res["val_loss"]) and math.isfinite(res["test_loss"])
    assert 0.0 <= res["val_accuracy"] <= 1.0 and res["val_examples"] == r.data.val_size


def test_hierarchical_recipe_structure_and_two_steps(tmp_path):
    r = recipes.get("hier-text")
    m = r.model
    assert (m.segments, m.n_layers, m.d_model, m.norm, m.positions, r.data.name, r.data.max_length) == (
        [64, 8], 2, 256, "layer", "sinusoidal", "imdb", 4096
    )  # fmt: skip
    smoke = with_data(recipes.get("hier-text", "smoke"), write_corpora(tmp_path))
    built = smoke.build()
    assert isinstance(built.model, snn.HierarchicalModel) and built.model.segments == (16, 4)
    assert len(built.model.levels) == 3
    # model.positions and model.prenorm reach every level (positions counted within segments)
    assert [lvl.positions for lvl in built.model.levels] == ["sinusoidal"] * 3
    learned = st.override(smoke, ["model.positions=learned", "model.prenorm=false"]).build().model
    assert [lvl.position_table.shape[0] for lvl in learned.levels] == [16, 4, 2]  # 128 = 2 · 4 · 16
    assert all(lvl.final_norm is None for lvl in learned.levels)  # post-norm
    losses, opt_state = two_steps(smoke)
    assert all(np.isfinite(losses)) and int(opt_state.total_notfinite) == 0
    with pytest.raises(st.RecipeError, match="product divides the data's length 128"):
        st.override(smoke, ["model.segments=16,16"]).build()
    with pytest.raises(
        st.RecipeError,
        match=r"got pool=none, norm=batch, dual=False \(--set model.pool=mean --set model.norm=layer\)$",
    ):
        st.override(smoke, ["model.norm=batch", "model.pool=none"]).build()
