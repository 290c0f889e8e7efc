"""The SSM-family LRA recipes (S4, S4D, DSS, Mega, Mega-chunk): their default values
against the published settings (a table typed here from the sources, not imported
from the recipes), every recipe built shapes-only on its data, smoke presets that
take two finite optimizer steps, and a few small runs that learn.

Default tier: the tables, shapes-only builds of every recipe, and two real steps of
one recipe per family and per task. Slow tier: every recipe's training step traced
at its published sizes (shapes only: a real step of most of them is minutes of
compilation and memory on a CPU), a second per-family-and-task set of two real
steps, and Image, Text and Retrieval learning their fake corpora above chance.
Not tested here: ListOps learning (at LRA length a 60 s CPU run stays at the
majority-class rate, ~17%), Path-X learning (infeasible on a CPU), Pathfinder
learning (`test_train_cpu_presets.py`).
"""

import dataclasses

import numpy as np
import pytest
from fake_corpora import write_aan, write_cifar, write_imdb
from recipe_testing import assert_step_traces, two_steps, with_data, write_corpora

import seqkit.nn as snn
import seqkit.recipes as recipes
import seqkit.train as st

# ---------------------------------------------------------------------------------
# Published settings, typed from the sources.
#
# S4, S4D, DSS rows: d_model, n_layers, state size N, norm, prenorm, dropout (the
# SSM layer's and the residual's), (dt_min, dt_max), lr, SSM lr, weight decay,
# batch, warmup steps, total steps, pooling.
#
# S4: state-spaces/s4@e757cef configs/experiment/lra/s4-{listops,imdb,aan,cifar,
#   pathfinder,pathx}.yaml and cifar/s4-cifar.yaml (sCIFAR); layer defaults
#   (configs/model/layer/s4.yaml): A, B lr 0.001, wd 0; sCIFAR norm from
#   configs/model/base.yaml (layer); configs/config.yaml's optimizer_param_grouping
#   (bias_weight_decay and normalization_weight_decay False): no weight decay on the
#   backbone's norms and biases (S4 rows only).
# S4D: state-spaces/s4@b5dae46 configs/experiment/lra/s4-lra-*.yaml (the S4D paper's
#   runs, layer=s4d); cosine_warmup's default warmup 1000 where a config sets none.
# DSS: ag1988/dss@777084e README LRA commands + configs/experiment/s4-lra-*.yaml +
#   configs/model/layer/dss.yaml; epochs x (train examples // batch) steps, no warmup.
DT, DT_X = (1e-3, 1e-1), (1e-4, 1e-1)  # the Δ ranges (DSS Path-X: its own)
SSM_PUBLISHED = {
    "s4-listops": (256, 6, 4, "batch", False, 0.0, DT, 0.01, 0.001, 0.05, 32, 12_000, 120_000, "mean"),
    "s4-text": (256, 6, 4, "batch", True, 0.0, DT, 0.01, 0.001, 0.05, 16, 5000, 50_000, "mean"),
    "s4-retrieval": (256, 6, 4, "batch", True, 0.0, DT, 0.01, 0.001, 0.05, 64, 5000, 50_000, "mean"),
    "s4-image": (512, 6, 64, "batch", False, 0.1, DT, 0.01, 0.001, 0.05, 50, 18_000, 180_000, "mean"),
    "s4-pathfinder": (256, 6, 64, "batch", True, 0.0, DT, 0.004, 0.001, 0.05, 64, 50_000, 500_000, "mean"),
    "s4-pathx": (256, 6, 64, "batch", True, 0.0, DT_X, 0.001, 0.001, 0.05, 16, 50_000, 500_000, "mean"),
    "s4-scifar": (512, 6, 64, "layer", False, 0.1, DT, 0.01, 0.001, 0.05, 50, 900, 180_000, "mean"),
    "s4d-listops": (128, 8, 64, "batch", False, 0.0, DT, 0.01, 0.001, 0.05, 50, 1000, 80_000, "mean"),
    "s4d-text": (256, 6, 64, "batch", True, 0.0, DT, 0.01, 0.001, 0.05, 16, 1000, 50_000, "mean"),
    "s4d-retrieval": (256, 6, 64, "batch", True, 0.0, DT, 0.01, 0.001, 0.05, 64, 2500, 50_000, "mean"),
    "s4d-image": (512, 6, 64, "layer", False, 0.1, DT, 0.01, 0.001, 0.05, 50, 1000, 200_000, "mean"),
    "s4d-pathfinder": (256, 6, 64, "batch", True, 0.0, DT, 0.004, 0.001, 0.03, 64, 2500, 500_000, "last"),
    "s4d-pathx": (256, 6, 64, "batch", True, 0.0, DT_X, 0.0005, 0.0005, 0.05, 16, 10_000, 500_000, "mean"),
    "dss-listops": (128, 6, 64, "batch", False, 0.0, DT, 0.01, 0.001, 0.01, 50, 0, 96_000, "mean"),
    "dss-text": (128, 4, 64, "batch", True, 0.0, DT, 0.01, 0.001, 0.0, 50, 0, 20_000, "last"),
    "dss-retrieval": (256, 6, 64, "batch", True, 0.0, DT, 0.002, 0.001, 0.0, 64, 0, 57_450, "mean"),
    "dss-image": (512, 6, 64, "batch", False, 0.2, DT, 0.004, 0.001, 0.01, 50, 0, 180_000, "mean"),
    "dss-pathfinder": (256, 6, 64, "batch", True, 0.1, DT, 0.004, 0.001, 0.0, 100, 0, 320_000, "last"),
    "dss-pathx": (256, 6, 64, "batch", True, 0.0, (1e-4, 1e-2), 0.0005, 0.001, 0.0, 16, 0, 350_000, "mean"),
}  # fmt: skip

# Mega (facebookresearch/mega@aeaa4b4, examples/mega/README.lra.md commands and the
# mega_lra_* architectures): d_model, n_layers, z, v, attention, norm (ScaleNorm ->
# layer), prenorm, dropout (on X' and Ĥ), lr, weight decay (every parameter), batch
# (per-GPU batch x update-freq x GPUs), warmup, total updates.
MEGA_PUBLISHED = {
    "listops": (80, 6, 64, 160, "softmax", "layer", False, 0.1, 0.001, 0.01, 64, 3000, 90_000),
    "text": (128, 4, 64, 256, "softmax", "layer", False, 0.1, 0.004, 0.01, 25 * 2, 10_000, 25_000),
    "retrieval": (128, 6, 64, 256, "softmax", "layer", False, 0.1, 0.003, 0.04, 8 * 8, 10_000, 91_960),
    "image": (160, 8, 96, 320, "laplace", "batch", True, 0.0, 0.01, 0.02, 50, 9000, 180_000),
    "pathfinder": (128, 6, 64, 256, "laplace", "batch", True, 0.0, 0.01, 0.01, 128, 50_000, 250_000),
    "pathx": (64, 4, 32, 128, "laplace", "batch", True, 0.0, 0.01, 0.01, 2 * 8 * 8, 25_000, 125_000),
}
MEGA_CHUNK = 128
# The code's EMA (fairseq/modules/exponential_moving_average.py): SiLU on its output,
# the kernel truncated to `truncation_length` taps (mega_lra_* defaults: 1024, Path-X 4096).
MEGA_TRUNCATION = {
    "listops": 1024,
    "text": 1024,
    "retrieval": 1024,
    "image": 1024,
    "pathfinder": 1024,
    "pathx": 4096,
}

# Task -> (dataset, classes, vocabulary of token inputs or None for pixels, dual encoder).
TASK_DATA = {
    "listops": ("listops", 10, 16, False),
    "text": ("imdb", 2, 257, False),
    "retrieval": ("aan", 2, 257, True),
    "image": ("cifar_gray", 10, None, False),
    "pathfinder": ("pathfinder32", 2, None, False),
    "pathx": ("pathx", 2, None, False),
    "scifar": ("scifar", 10, None, False),
}
# Bytes per document: S4 and S4D 4096 (IMDb), DSS 2048 (l_max), Mega 4000 (4002
# positions); AAN 4000 for all.
TEXT_LENGTH = {"s4": 4096, "s4d": 4096, "dss": 2048, "mega": 4000, "mega-chunk": 4000}

MEGA_NAMES = [f"{family}-{task}" for family in ("mega", "mega-chunk") for task in MEGA_PUBLISHED]
ALL_NAMES = sorted([*SSM_PUBLISHED, *MEGA_NAMES])


def _family_task(name):
    family, task = name.rsplit("-", 1)
    return family, task


def _check_data(r, family, task):
    dataset, n_classes, vocab, dual = TASK_DATA[task]
    assert (r.data.name, r.data.n_classes, r.model.dual) == (dataset, n_classes, dual)
    if vocab is not None:
        assert r.data.vocab_size == vocab and not r.data.as_tokens
    else:
        assert r.data.as_tokens in (None, False)  # pixels as values, as the SSM/Mega papers fed them
    if task in ("pathfinder", "pathx"):
        assert r.data.contour_length == 14
    if task == "text":
        assert r.data.max_length == TEXT_LENGTH[family]
    if task == "retrieval":
        assert r.data.max_length == 4000


@pytest.mark.parametrize("name", sorted(SSM_PUBLISHED))
def test_ssm_recipe_is_the_published_setting(name):
    d, n, N, norm, pre, drop, dt, lr, ssm_lr, wd, bs, warm, total, pool = SSM_PUBLISHED[name]
    family, task = _family_task(name)
    r = recipes.get(name)
    assert r.name == name and r.preset == "default"
    m = r.model
    assert (m.d_model, m.n_layers, m.norm, m.prenorm, m.dropout, m.pool) == (d, n, norm, pre, drop, pool)
    assert m.pattern is None and m.ffn_mult == 0
    (mixer,) = m.mixers
    assert (mixer.state_size, (mixer.dt_min, mixer.dt_max), mixer.dropout) == (N, dt, drop)
    assert mixer.activation == "gelu"
    if family == "s4":
        assert isinstance(mixer, snn.S4Config) and mixer.bidirectional and mixer.output == "glu"
    elif family == "s4d":
        assert isinstance(mixer, snn.S4DConfig) and mixer.bidirectional and mixer.output == "glu"
        assert (mixer.init, mixer.discretization) == ("legs", "bilinear")  # S4D-LegS, the code's default
    else:
        assert isinstance(mixer, snn.DSSConfig) and not mixer.bidirectional and mixer.output == "linear"
        assert mixer.variant == "softmax"
    o = r.optimizer
    assert (o.lr, o.ssm_lr, o.weight_decay, o.ssm_weight_decay) == (lr, ssm_lr, wd, 0.0)
    assert (o.b1, o.b2, o.grad_clip) == (0.9, 0.999, 0.0)
    assert o.decay_norms_and_biases == (family != "s4")
    assert r.trainer.batch_size == bs
    assert (r.schedule.warmup_steps, r.schedule.total_steps, r.steps) == (warm, total, total)
    _check_data(r, family, task)


@pytest.mark.parametrize("name", MEGA_NAMES)
def test_mega_recipe_is_the_published_setting(name):
    family, task = _family_task(name)
    d, n, z, v, attention, norm, pre, drop, lr, wd, bs, warm, total = MEGA_PUBLISHED[task]
    r = recipes.get(name)
    m = r.model
    assert (m.d_model, m.n_layers, m.norm, m.prenorm, m.dropout, m.pool) == (d, n, norm, pre, 0.0, "mean")
    assert (m.ffn_mult, m.ffn_activation) == (2, "silu")
    (mega,) = m.mixers
    assert isinstance(mega, snn.MegaConfig)
    assert (mega.z_dim, mega.v_dim, mega.ema_ndim) == (z, v, 16)
    assert (mega.attention, mega.dropout) == (attention, drop)
    assert (mega.relative_position, mega.causal) == ("simple", False)
    assert mega.chunk_size == (None if family == "mega" else MEGA_CHUNK)
    assert (mega.ema_silu, mega.truncation) == (True, MEGA_TRUNCATION[task])
    o = r.optimizer
    assert (o.lr, o.weight_decay, o.ssm_lr, o.ssm_weight_decay) == (lr, wd, lr, wd)
    assert (o.b1, o.b2, o.eps, o.grad_clip) == (0.9, 0.98, 1e-8, 1.0)
    assert o.decay_norms_and_biases  # one parameter group in Mega's code
    assert r.trainer.batch_size == bs
    assert (r.schedule.warmup_steps, r.schedule.total_steps) == (warm, total)
    _check_data(r, family, task)


def test_registry_names_and_the_recipes_kept():
    names = set(recipes.names())
    assert set(ALL_NAMES) <= names
    for name in ALL_NAMES:
        spec = recipes.SPECS[name]
        assert spec.task and spec.model and spec.source and spec.description, name
        assert "smoke" in spec.presets
    # `mega` keeps working; `mega-pathfinder` is the same recipe under its task name.
    mega, pf = recipes.get("mega"), recipes.get("mega-pathfinder")
    assert dataclasses.replace(pf, name="mega", description=mega.description) == mega
    assert set(recipes.SPECS["mega"].presets) == {"smoke", "cpu"}
    tiny, full = recipes.get("mega", "smoke").model.mixers[0], mega.model.mixers[0]
    assert dataclasses.replace(tiny, z_dim=full.z_dim, v_dim=full.v_dim) == full  # only the widths shrink
    assert "cpu" in recipes.SPECS["mega-pathfinder"].presets
    assert recipes.get("s4-scifar", "gray").data.name == "cifar_gray"
    assert recipes.get("s4-pathfinder", "cpu").data.contour_length == 6


@pytest.mark.parametrize("name", sorted(set(ALL_NAMES) - {"s4-pathfinder", "s4-pathx", "s4-scifar"}))
def test_smoke_preset_is_tiny(name):
    r = recipes.get(name, "smoke")
    assert r.preset == "smoke"
    assert r.model.d_model <= 16 and r.model.n_layers <= 2 and r.trainer.batch_size <= 4
    assert r.steps <= 4 and (r.data.train_size, r.data.val_size, r.data.test_size) == (16, 8, 8)
    if r.data.name in ("imdb", "aan"):
        assert r.data.max_length <= 256
    # Only the size changes: the rest of the published setting stays.
    full = recipes.get(name)
    assert (r.model.norm, r.model.prenorm, r.model.pool, r.model.dual) == (
        full.model.norm,
        full.model.prenorm,
        full.model.pool,
        full.model.dual,
    )
    assert r.optimizer == full.optimizer
    assert type(r.model.mixers[0]) is type(full.model.mixers[0])


# ---------------------------------------------------------------------------------
# Builds and two steps.


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return write_corpora(tmp_path_factory.mktemp("corpora"))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_published_recipe_builds_on_its_data(name, corpora):
    r = with_data(recipes.get(name), corpora)
    sources = r.make_sources()
    r.validate(sources)  # types, ranges, split sizes, and the model built shapes-only
    x = np.asarray(sources["train"][0]["inputs"])
    assert x.shape[0] == 2 if r.model.dual else x.ndim in (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_NAMES)
def test_published_training_step_traces(name, corpora):
    """The whole training step at the published sizes (batch, width, depth, length),
    traced shapes-only: every recipe's options reach a step that type-checks."""
    assert_step_traces(with_data(recipes.get(name), corpora))


# Two real optimizer steps (compile-bound: 3-6 s each on two CPU cores): one recipe
# per family and per task in the default tier, a second such set in the slow tier.
# Every recipe's step is traced at its published sizes above, in the slow tier.
DEFAULT_TIER = {"s4-listops", "s4d-text", "dss-retrieval", "mega-image", "mega-chunk-pathfinder", "s4d-pathx"}
SLOW_TIER = {
    *("s4-image", "s4d-listops", "dss-pathfinder", "mega-retrieval", "mega-chunk-text", "s4-pathx"),
    "mega",  # the older CPU-sized Mega recipe
}


@pytest.mark.parametrize(
    "name", [*sorted(DEFAULT_TIER), *[pytest.param(n, marks=pytest.mark.slow) for n in sorted(SLOW_TIER)]]
)
def test_smoke_preset_takes_two_finite_steps(name, corpora):
    r = with_data(recipes.get(name, "smoke"), corpora)
    if name in ("s4-pathfinder", "s4-pathx", "s4-scifar", "mega"):
        # Their `smoke` is the older minutes-long preset: two steps of it on fewer examples.
        r = dataclasses.replace(r, data=dataclasses.replace(r.data, train_size=64, val_size=8, test_size=8))
    losses, opt_state = two_steps(r)
    assert all(np.isfinite(losses)), losses
    assert int(opt_state.total_notfinite) == 0


@pytest.mark.parametrize("tier", [DEFAULT_TIER, SLOW_TIER - {"mega"}])
def test_two_step_sets_cover_every_family_and_task(tier):
    assert tier <= set(ALL_NAMES)
    assert {_family_task(n)[0] for n in tier} == {"s4", "s4d", "dss", "mega", "mega-chunk"}
    assert {_family_task(n)[1] for n in tier} == set(MEGA_PUBLISHED)


# ---------------------------------------------------------------------------------
# Learning, slow tier: a small version of one recipe per task on its fake corpus.

SMALL_RUN = [
    "trainer.eval_every=1000",
    "trainer.checkpoint_every=1000",
    "trainer.log_every=50",
    "schedule.warmup_steps=10",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, corpus, sets, chance, threshold",
    [
        # Fake CIFAR: class c is brightness 20 + 20c ± 25. 100 val / 200 test images;
        # chance 0.10 (± 0.03), so 0.5 is far outside it.
        (
            "s4-image",
            lambda root: write_cifar(root),
            ["data.train_size=900", "data.val_size=100", "data.test_size=200", "schedule.total_steps=80"],
            0.10,
            0.5,
        ),
        # Fake IMDb: "great" or "awful" repeated; 80 val / 800 test reviews, first 128 bytes.
        (
            "s4d-text",
            lambda root: write_imdb(root, per_class=400),
            ["data.train_size=none", "data.val_size=none", "data.test_size=none", "schedule.total_steps=60"],
            0.5,
            0.8,
        ),
        # Fake AAN: label 1 when both papers repeat the same topic word; 200 val / 200 test
        # pairs (chance 0.50 ± 0.035); a dual encoder must compare the two documents.
        (
            "s4-retrieval",
            lambda root: write_aan(root, sizes=(1000, 200, 200)),
            ["data.train_size=none", "data.val_size=none", "data.test_size=none", "schedule.total_steps=150"],
            0.5,
            0.75,
        ),
    ],
    ids=["image", "text", "retrieval"],
)
def test_small_run_learns_above_chance(name, corpus, sets, chance, threshold, tmp_path, optimized):
    data_dir = corpus(tmp_path / "data")
    r = st.override(
        recipes.get(name, "smoke"),
        [f"data.data_dir={data_dir}", "model.d_model=32", "trainer.batch_size=16", *SMALL_RUN, *sets],
    )
    res = st.train(r, tmp_path / "run", progress=False)
    assert res["skipped_updates"] == 0
    assert res["val_accuracy"] > threshold and res["test_accuracy"] > threshold, (chance, res)
