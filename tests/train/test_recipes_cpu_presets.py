"""The `cpu` presets of the generated tasks: every `FAMILY-listops` and
`FAMILY-pathfinder` recipe has one, all of a task share one size, data and schedule
(typed here), and each keeps the rest of its family's published setting, so that
their results compare across families. (Learning is checked in the slow tier for
SPADE, `test_train_cpu_presets.py`; measured accuracies are in `docs/results.md`.)"""

import dataclasses

import pytest

import seqkit.nn as snn
import seqkit.recipes as recipes

# d_model, n_layers, batch, warmup, total steps, (train, val, test)
CPU = {
    "listops": (64, 4, 32, 80, 800, (25_600, 500, 500)),
    "pathfinder": (32, 3, 32, 40, 400, (8000, 512, 512)),
}
FAMILIES = (
    "s4", "s4d", "dss", "mega", "mega-chunk", "transformer", "local", "sparse", "longformer",
    "bigbird", "linformer", "linear", "performer", "synthesizer", "sinkhorn", "reformer",
    "luna", "long-short", "kernelized",
)  # fmt: skip
NAMES = sorted(n for n in recipes.names() if n.rsplit("-", 1)[-1] in CPU and n.rsplit("-", 1)[0] in FAMILIES)
# The one preset that also changes the optimizer: the README's quick job, at lr 0.01.
LR_CHANGED = {"s4-pathfinder": 0.01}


def _task(name):
    return name.rsplit("-", 1)[-1]


def test_every_family_runs_both_generated_tasks_on_a_cpu():
    # 19 families on ListOps, 17 on Pathfinder (Transformer-LS and the kernelized
    # Transformer have no Pathfinder setting).
    assert sorted(NAMES) == sorted(
        [f"{f}-listops" for f in FAMILIES]
        + [f"{f}-pathfinder" for f in FAMILIES if f not in ("long-short", "kernelized")]
    )
    assert all("cpu" in recipes.SPECS[n].presets for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_preset_shrinks_size_data_and_schedule_only(name):
    r, full = recipes.get(name, "cpu"), recipes.get(name)
    r.validate()
    assert r.preset == "cpu"
    d, layers, batch, warmup, total, sizes = CPU[_task(name)]
    assert (r.model.d_model, r.model.n_layers, r.trainer.batch_size) == (d, layers, batch)
    assert (r.schedule.warmup_steps, r.schedule.total_steps) == (warmup, total)
    assert (r.data.train_size, r.data.val_size, r.data.test_size) == sizes
    if _task(name) == "listops":  # LRA's trees at the recipe's padded length, each seen once
        assert r.data.train_size == r.steps * r.trainer.batch_size
        expected_data = dataclasses.replace(
            full.data, train_size=sizes[0], val_size=sizes[1], test_size=sizes[2]
        )
    else:  # the easy level: contour length 6, solid snakes, kept in memory
        expected_data = dataclasses.replace(
            full.data,
            train_size=sizes[0],
            val_size=sizes[1],
            test_size=sizes[2],
            contour_length=6,
            style="continuous",
            memory_cache=True,
        )
    assert r.data == expected_data
    if name in LR_CHANGED:
        assert r.optimizer == dataclasses.replace(full.optimizer, lr=LR_CHANGED[name])
    else:
        assert r.optimizer == full.optimizer
    same = ("norm", "prenorm", "pool", "dual", "ffn_mult", "positions", "dropout")
    assert {f: getattr(r.model, f) for f in same} == {f: getattr(full.model, f) for f in same}
    # The mixers keep their options (heads, windows, features, dropout); Mega's widths
    # follow the model's (z = d/2, v = 2d: the published ratio for Text, Retrieval,
    # Pathfinder and Path-X; v = 2d for every task).
    for got, want in zip(r.model.mixers, full.model.mixers, strict=True):
        if isinstance(want, snn.MegaConfig):
            assert (got.z_dim, got.v_dim) == (None, None)  # None: d/2 and 2d
            want = dataclasses.replace(want, z_dim=None, v_dim=None)
        assert got == want


def test_every_cpu_presets_heads_divide_its_width():
    # LRA's Pathfinder Performer keeps its 8 heads: 8 heads of 4 at width 32.
    for name in NAMES:
        r = recipes.get(name, "cpu")
        for m in r.model.mixers:
            assert r.model.d_model % getattr(m, "num_heads", 1) == 0, name
