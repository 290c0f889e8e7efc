"""The attention-family LRA recipes (the Transformer, LRA's ten efficient transformers,
Luna, Transformer-LS, the kernelized Transformer): their default values against the
published settings (tables typed here from the sources, not imported from the
recipes), every recipe built shapes-only on its data, smoke presets that take two
finite optimizer steps, and position embeddings reaching the model.

Default tier: the tables, shapes-only builds of every recipe, and two real steps of
one recipe per task but Path-X. Slow tier: every recipe's training step traced at its
published sizes (shapes only), and two real steps of one recipe of every other family.
"""

import math
from math import ceil

import jax.random as jr
import numpy as np
import pytest
from recipe_testing import assert_step_traces, two_steps, with_data, write_corpora

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.recipes as recipes
import seqkit.train as st

# ---------------------------------------------------------------------------------
# Published settings, typed from the sources.
#
# LRA: google-research/long-range-arena@cd31e5c. ListOps, Text, Retrieval:
# {listops,text_classification,matching}/configs/base_*_config.py (every family's
# file changes only model_type; keys outside `config.model` are not read by the
# Text script), lr = 0.05 / sqrt(warmup) the peak of "constant * linear_warmup *
# rsqrt_decay" (ListOps' script uses the scheduler's default warmup, 1000).
# Models: dropout_rate = attention_dropout_rate = 0.1 (the models' defaults), CLS
# pooling, sinusoidal positions (learn_pos_emb False). Image: cifar10/*, 45000
# images, 200 epochs of 256; Pathfinder: pathfinder32/*, 160000, 200 epochs of 512;
# Path-X: pathfinder128/transformer_base.py, 200 epochs of 64, grad clip 1.
#
# Row: d_model, n_layers, heads, FFN multiple (mlp_dim / emb_dim), dropout,
# attention dropout, pool, positions, peak lr, weight decay, batch, warmup, total,
# data.max_length, grad clip.
SIN, LEARN = "sinusoidal", "learned"
PEAK_1K, PEAK_8K = 0.05 / math.sqrt(1000), 0.05 / math.sqrt(8000)
LRA_TASK = {
    "listops": (512, 4, 8, 2, 0.1, 0.1, "cls", SIN, PEAK_1K, 0.1, 32, 1000, 5000, 2000, 0.0),
    "text": (256, 4, 4, 4, 0.1, 0.1, "cls", SIN, PEAK_8K, 0.1, 32, 8000, 20_000, 1000, 0.0),
    "retrieval": (128, 4, 4, 4, 0.1, 0.1, "cls", SIN, PEAK_8K, 0.1, 32, 8000, 5000, 4000, 0.0),
    "image": (32, 1, 1, 2, 0.3, 0.2, "cls", LEARN, 5e-4, 0.0, 256, 175, 175 * 200, None, 0.0),
    "pathfinder": (32, 1, 2, 1, 0.1, 0.1, "mean", SIN, 1e-3, 0.0, 512, 312, 312 * 200, None, 0.0),
    "pathx": (32, 1, 2, 1, 0.1, 0.1, "mean", LEARN, 1e-3, 0.0, 64, 2500, 2500 * 200, None, 1.0),
}  # fmt: skip
# Per-family Image and Pathfinder files: (emb_dim, num_layers, num_heads, mlp/emb),
# and the other keys each sets. BigBird's Image file writes `num_head = 4`.
LRA_IMAGE = {
    "transformer": (128, 1, 8, 1, {}),
    "local": (128, 1, 2, 1, {"pool": "mean"}),
    "sparse": (128, 1, 8, 1, {}),
    "longformer": (128, 4, 4, 1, {"pool": "mean"}),
    "bigbird": (128, 1, 4, 1, {}),
    "linformer": (128, 1, 8, 1, {}),
    "linear": (128, 1, 8, 1, {}),
    "performer": (128, 1, 8, 1, {}),
    "synthesizer": (128, 1, 8, 1, {}),
    "sinkhorn": (32, 1, 1, 2, {"dropout": 0.1, "weight_decay": 0.7, "pool": "mean"}),
    "reformer": (64, 4, 8, 1, {}),
}
LRA_PATHFINDER = {
    "transformer": (32, 4, 4, 1, {"dropout": 0.2}),
    "local": (64, 2, 4, 1, {}),
    "sparse": (32, 1, 8, 1, {"dropout": 0.2}),
    "longformer": (32, 2, 2, 1, {}),
    "bigbird": (64, 4, 2, 1, {"dropout": 0.2}),
    "linformer": (32, 1, 2, 1, {"dropout": 0.2}),
    "linear": (128, 1, 2, 1, {"dropout": 0.2}),
    "performer": (32, 4, 8, 1, {"dropout": 0.2}),
    "synthesizer": (64, 2, 4, 1, {"dropout": 0.2}),
    "sinkhorn": (32, 2, 4, 2, {"dropout": 0.2}),
    "reformer": (64, 2, 8, 1, {"dropout": 0.2}),
}
LRA_FAMILIES = list(LRA_IMAGE)
LRA_TASKS = ["listops", "text", "retrieval", "image", "pathfinder"]
# LRA attention functions that discard their dropout rate (linear_attention.py
# `del dropout_rate`; the Performer and Reformer functions take none); the sparse
# attention hands it to flax's dot_product_attention (sparse_attention.py).
LRA_NO_ATTENTION_DROPOUT = {"linear", "performer", "reformer"}
# The Sinkhorn encoder's classifier pools by the mean and raises on any other
# `classifier_pool` (sinkhorn_transformer.py, default 'MEAN'); ListOps' script
# passes none, Text's and Image's configs pass 'CLS' (which it cannot run).
SINKHORN_MEAN_POOL = {"listops", "text", "image"}

# Luna: XuezheMax/fairseq-apollo@6135e5b, examples/luna/README.lra.md commands and
# fairseq/models/luna_lra/model.py (post-norm, learned positions, a prepended CLS;
# Pathfinder mean pooling); projection length 16. Pathfinder's batch: 512 since the
# README's edit d4a632a (256 at 6135e5b).
LUNA = {
    "listops": (512, 1, 8, 4, 0.1, 0.1, "cls", LEARN, 1e-4, 1e-4, 32, 1000, 5000, 2000, 0.0),
    "text": (256, 4, 4, 4, 0.3, 0.3, "cls", LEARN, 5e-5, 1e-4, 32, 8000, 20_000, 4000, 0.0),
    "retrieval": (128, 4, 4, 4, 0.1, 0.1, "cls", LEARN, 5e-4, 1e-4, 32, 8000, 20_000, 4000, 0.0),
    "image": (64, 1, 8, 2, 0.3, 0.1, "cls", LEARN, 5e-3, 0.0, 256, 4000, 35_000, None, 0.0),
    "pathfinder": (128, 1, 4, 1, 0.2, 0.1, "mean", LEARN, 1e-3, 0.0, 512, 4000, 62_500, None, 0.0),
}  # fmt: skip
# Transformer-LS: NVIDIA/transformer-ls@1527c5c lra/run_{listops,text,retrieval}.sh and
# lra/run_tasks.py defaults (embedding 64, FFN 128, 2 heads, 2 layers, learned
# positions, warmup 8000 / 20000 steps unless the script says); w = 8, r = 32.
LONG_SHORT = {
    "listops": (64, 2, 2, 2, 0.0, 0.0, "cls", LEARN, 1e-4, 0.0, 32, 1000, 5000, 2000, 0.0),
    "text": (64, 2, 2, 2, 0.0, 0.0, "cls", LEARN, 1e-4, 0.01, 32, 8000, 20_000, 4000, 0.0),
    "retrieval": (64, 2, 2, 2, 0.1, 0.1, "cls", LEARN, 1e-4, 0.01, 32, 8000, 30_000, 4096, 0.0),
}  # fmt: skip
# Kernelized (GMM-PRF): cs1160701/OnLearningTheKernel@f8c3cd7 {task}/train.py, model.py:
# epochs x ceil(train examples / batch) steps (96000, 25000, 147086 examples),
# peak lr = LEARNING_RATE / sqrt(WARMUP_STEPS) (5e-3 for ListOps, 5e-2 for the others);
# features min(L, pow2(d_h ln d_h)).
KERNELIZED = {
    "listops": (512, 6, 8, 4, 0.1, 0.0, "cls", SIN, PEAK_1K / 10, 0.1, 32, 1000, 4 * 3000, 2000, 0.0),
    "text": (256, 4, 4, 4, 0.1, 0.0, "cls", SIN, PEAK_8K, 0.1, 8, 8000, 26 * 3125, 4000, 0.0),
    "retrieval": (128, 4, 4, 4, 0.1, 0.0, "cls", SIN, PEAK_8K, 0.1, 32, 8000, 2 * 4597, 4000, 0.0),
}  # fmt: skip
FEATURES = {"listops": 256, "text": 256, "retrieval": 128}

# (b1, b2, eps) of each source's Adam.
ADAM = {
    "lra": (0.9, 0.98, 1e-9),
    "luna": (0.9, 0.98, 1e-8),
    "long-short": (0.9, 0.999, 1e-6),
    "kernelized": (0.9, 0.98, 1e-9),
}

# Task -> (dataset, classes, vocabulary, dual encoder, tokens from pixels, sequence length or None).
TASK_DATA = {
    "listops": ("listops", 10, 16, False, False),
    "text": ("imdb", 2, 257, False, False),
    "retrieval": ("aan", 2, 257, True, False),
    "image": ("cifar_gray", 10, 256, False, True),
    "pathfinder": ("pathfinder32", 2, 256, False, True),
    "pathx": ("pathx", 2, 256, False, True),
}
PIXELS = {"image": 1024, "pathfinder": 1024, "pathx": 128 * 128}


def lra_row(family, task):
    d, n, h, mult, drop, adrop, pool, pos, lr, wd, bs, warm, total, length, clip = LRA_TASK[task]
    table = {"image": LRA_IMAGE, "pathfinder": LRA_PATHFINDER}.get(task)
    if table is not None:
        d, n, h, mult, extra = table[family]
        drop, pool, wd = extra.get("dropout", drop), extra.get("pool", pool), extra.get("weight_decay", wd)
    if family == "sinkhorn" and task in SINKHORN_MEAN_POOL:
        pool = "mean"
    return d, n, h, mult, drop, adrop, pool, pos, lr, wd, bs, warm, total, length, clip


def published(family, task):
    if family in LRA_IMAGE:
        return lra_row(family, task)
    return {"luna": LUNA, "long-short": LONG_SHORT, "kernelized": KERNELIZED}[family][task]


def expected_mixer(family, task, L):
    """(config class, options) of the LRA code's / the paper code's mixer; `L` the model length."""
    pixels = task in PIXELS
    return {
        "transformer": (sa.MultiHeadAttentionConfig, {}),
        "local": (sa.LocalAttentionConfig, {"window_size": 64 if pixels else 50, "mode": "block"}),
        "sparse": (sa.SparseAttentionConfig, {"pattern": "fixed", "stride": 50, "summary": 10}),
        "longformer": (sa.LongformerConfig, {"window_size": 512, "num_global": 0}),
        "bigbird": (sa.BigBirdConfig, {"block_size": 64, "num_random": 3, "num_global": 2}),
        "linformer": (sa.LinformerConfig, {"proj_dim": 16}),
        "linear": (sa.LinearAttentionConfig, {}),
        "performer": (sa.PerformerConfig, {"num_features": 2 if task == "listops" else 256}),
        "synthesizer": (sa.SynthesizerConfig, {"mode": "random", "factorized": False, "trainable": True}),
        "sinkhorn": (sa.SinkhornAttentionConfig, {"block_size": 64 if pixels else 50}),
        # 1 hash round, 10 buckets, the sorted sequence in 10 chunks.
        "reformer": (sa.ReformerAttentionConfig, dict(num_hashes=1, num_buckets=10, chunk_size=ceil(L / 10))),
        "luna": (sa.LunaAttentionConfig, {"packed_len": 16}),
        "long-short": (sa.LongShortAttentionConfig, {"window_size": 16, "rank": 32}),
        "kernelized": (sa.KernelizedAttentionConfig, dict(num_features=FEATURES.get(task), num_components=1)),
    }[family]  # fmt: skip


TABLE = {
    **{f: LRA_TASKS for f in LRA_FAMILIES},
    "transformer": [*LRA_TASKS, "pathx"],
    "luna": LRA_TASKS,
    "long-short": ["listops", "text", "retrieval"],
    "kernelized": ["listops", "text", "retrieval"],
}
ALL_NAMES = sorted(f"{family}-{task}" for family, tasks in TABLE.items() for task in tasks)
# What the sources do not give: no recipe.
GAPS = [
    *(f"{f}-pathx" for f in LRA_FAMILIES if f != "transformer"),
    "luna-pathx",
    *(f"{f}-{t}" for f in ("long-short", "kernelized") for t in ("image", "pathfinder", "pathx")),
]


def family_task(name):
    family, task = name.rsplit("-", 1)
    return family, task


def model_length(task, length, pool):
    return (PIXELS[task] if task in PIXELS else length) + (pool == "cls")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_recipe_is_the_published_setting(name):
    family, task = family_task(name)
    d, n, h, mult, drop, adrop, pool, pos, lr, wd, bs, warm, total, length, clip = published(family, task)
    r = recipes.get(name)
    assert r.name == name and r.preset == "default"
    m = r.model
    assert (m.d_model, m.n_layers, m.ffn_mult, m.dropout) == (d, n, mult, drop)
    assert (m.pool, m.positions) == (pool, pos)
    assert (m.norm, m.prenorm, m.ffn_activation, m.pattern) == ("layer", family != "luna", "gelu", None)
    (mixer,) = m.mixers
    cls, options = expected_mixer(family, task, model_length(task, length, pool))
    assert type(mixer) is cls
    assert {k: getattr(mixer, k) for k in options} == options
    lra_discards = family in LRA_NO_ATTENTION_DROPOUT and task in TASK_DATA
    assert (mixer.num_heads, mixer.causal, mixer.dropout) == (h, False, 0.0 if lra_discards else adrop)
    o = r.optimizer
    b1, b2, eps = ADAM["lra" if family in LRA_IMAGE else family]
    assert o.lr == pytest.approx(lr, rel=1e-12) and o.weight_decay == wd
    assert (o.ssm_lr, o.ssm_weight_decay) == (o.lr, o.weight_decay)  # one parameter group
    assert (o.b1, o.b2, o.eps, o.grad_clip) == (b1, b2, eps, clip)
    assert r.trainer.batch_size == bs
    assert (r.schedule.warmup_steps, r.schedule.total_steps, r.steps) == (warm, total, total)
    dataset, classes, vocab, dual, pixels = TASK_DATA[task]
    dd = r.data
    assert (dd.name, dd.n_classes, dd.vocab_size, m.dual) == (dataset, classes, vocab, dual)
    assert dd.max_length == length and bool(dd.as_tokens) == pixels
    if task in ("pathfinder", "pathx"):
        assert dd.contour_length == 14


def test_registry_names_sources_and_gaps():
    names = set(recipes.names())
    assert set(ALL_NAMES) <= names
    assert not set(GAPS) & names
    for name in ALL_NAMES:
        family, task = family_task(name)
        spec = recipes.SPECS[name]
        assert spec.task and spec.model and spec.description and "smoke" in spec.presets
        repo = {"luna": "fairseq-apollo", "long-short": "transformer-ls", "kernelized": "OnLearningTheKernel"}
        assert repo.get(family, "google-research/long-range-arena") in spec.source, spec.source
    assert recipes.SPECS["sinkhorn-text"].source.endswith(
        "text_classification/configs/sinkhorn_transformer_base.py (Tay et al. 2021)"
    )
    assert "pathfinder128/transformer_base.py" in recipes.SPECS["transformer-pathx"].source


@pytest.mark.parametrize("name", ALL_NAMES)
def test_smoke_preset_is_tiny(name):
    r = recipes.get(name, "smoke")
    full = recipes.get(name)
    assert r.preset == "smoke"
    assert r.model.d_model <= 16 and r.model.n_layers == 1 and r.model.mixers[0].num_heads <= 2
    assert r.trainer.batch_size <= 4 and r.steps <= 4
    assert (r.data.train_size, r.data.val_size, r.data.test_size) == (16, 8, 8)
    if r.data.name in ("imdb", "aan"):
        assert r.data.max_length <= 256
    # Only the size changes: the rest of the published setting stays.
    for key in ("norm", "prenorm", "pool", "dual", "positions", "ffn_mult", "dropout"):
        assert getattr(r.model, key) == getattr(full.model, key), key
    assert r.optimizer == full.optimizer
    assert type(r.model.mixers[0]) is type(full.model.mixers[0])


# ---------------------------------------------------------------------------------
# Builds, positions and two steps.


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return write_corpora(tmp_path_factory.mktemp("corpora"))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_published_recipe_builds_on_its_data(name, corpora):
    r = with_data(recipes.get(name), corpora)
    sources = r.make_sources()
    r.validate(sources)  # types, ranges, split sizes, and the model built shapes-only
    x = np.asarray(sources["train"][0]["inputs"])
    family, task = family_task(name)
    length = published(family, task)[13]
    assert x.dtype == np.int32 and x.shape[-1] == (PIXELS[task] if task in PIXELS else length)


@pytest.mark.parametrize(
    "name, table",
    [("transformer-image", (1025, 16)), ("transformer-pathfinder", None), ("luna-text", (129, 16))],
)
def test_model_gets_its_position_embeddings(name, table, corpora):
    """`model.positions` reaches the SequenceModel (through the DualEncoder too) with
    the data's length, the CLS token included."""
    r = with_data(recipes.get(name, "smoke"), corpora)
    sources = r.make_sources()
    model, _ = r.build_model(sources["train"][0]["inputs"], key=jr.key(0))
    encoder = model.encoder if r.model.dual else model
    assert encoder.positions == r.model.positions
    if table is None:  # sinusoidal: nothing to train
        assert encoder.position_table is None and encoder.max_length == 1024
    else:
        assert encoder.position_table.shape == table and encoder.max_length == table[0]


# Two real optimizer steps (compile-bound: 3-25 s each on two CPU cores): one recipe
# per task in the default tier, one of every other family in the slow tier (every
# attention kind also takes two steps through a recipe in test_train_mixers.py).
# Every recipe's step is traced at its published sizes, in the slow tier; Path-X
# (transformer-pathx: full attention over 16384 positions) only so, since one real
# step of it takes minutes on a CPU even at the smoke preset's width.
DEFAULT_TIER = {"transformer-text", "local-pathfinder", "luna-retrieval", "performer-image", "linear-listops"}
SLOW_TIER = {
    "sparse-retrieval", "longformer-image", "bigbird-pathfinder", "linformer-image", "synthesizer-pathfinder",
    "sinkhorn-text", "reformer-text", "long-short-text", "kernelized-text",
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [*sorted(DEFAULT_TIER), *[pytest.param(n, marks=pytest.mark.slow) for n in sorted(SLOW_TIER)]]
)
def test_smoke_preset_takes_two_finite_steps(name, corpora):
    losses, opt_state = two_steps(with_data(recipes.get(name, "smoke"), corpora))
    assert all(np.isfinite(losses)), losses
    assert int(opt_state.total_notfinite) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_NAMES)
def test_published_training_step_traces(name, corpora):
    """The whole training step at the published sizes (batch, width, depth, length),
    traced shapes-only: every recipe's options reach a step that type-checks."""
    assert_step_traces(with_data(recipes.get(name), corpora))


def test_two_step_sets_cover_every_family_and_task():
    assert DEFAULT_TIER | SLOW_TIER <= set(ALL_NAMES)
    assert {family_task(n)[1] for n in DEFAULT_TIER} == set(LRA_TASKS)
    assert {family_task(n)[0] for n in DEFAULT_TIER | SLOW_TIER} == set(TABLE)


def test_positions_default_keeps_other_recipes_unchanged():
    """Recipes written before `model.positions` existed add no positions."""
    for name in ("s4-listops", "mega-image", "s4d-text"):
        assert recipes.get(name).model.positions == "none"
    assert st.ModelConfig().positions == "none"
    r = st.override(recipes.get("transformer-text", "smoke"), ["model.positions=learned"])
    assert r.model.positions == "learned"
    with pytest.raises(st.RecipeError, match="one of none, sinusoidal, learned"):
        st.override(r, ["model.positions=rotary"])
    assert isinstance(snn.SequenceModel, type)
