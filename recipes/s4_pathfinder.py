"""`s4-pathfinder`: S4 on LRA Pathfinder (32 × 32, L = 1024, contour length 14).

Published setting for S4 (Gu, Goel and Ré, "Efficiently Modeling Long Sequences with
Structured State Spaces", ICLR 2022): the authors' current config, state-spaces/s4 at
e757cef, `configs/experiment/lra/s4-pathfinder.yaml` (version 4, 2023; see
`recipes/s4_lra.py` on how it relates to the published accuracies): 256 × 6,
BatchNorm, pre-norm, no dropout, Δ ∈ [1e-3, 1e-1], AdamW lr 0.004 / wd 0.05 (SSM
parameters lr 0.001, no wd; no wd on the norms and biases either, as
`configs/config.yaml` groups them), batch 64, 200 epochs, warmup 50k of 500k steps.
Data are generated on the fly (160k/20k/20k, the LRA split sizes).

Preset `cpu` is the README's main job: an easy level (contour length 6, the `continuous`
style of solid snakes) with a small model that learns well above chance in minutes on
two CPU cores.
"""

import dataclasses

from seqkit.nn import S4Config
from seqkit.train import Recipe

from . import _lra
from ._presets import cpu_pathfinder, smoke

NAME = "s4-pathfinder"
DESCRIPTION = "S4 on Pathfinder-32 (L=1024, generated), published setting; preset cpu is the quick CPU job"
TASK = "Pathfinder"
MODEL = "S4"
SOURCE = "state-spaces/s4@e757cef configs/experiment/lra/s4-pathfinder.yaml (v4, S4 of Gu et al. 2022)"


def recipe() -> Recipe:
    return _lra.lra_recipe(
        NAME, DESCRIPTION, "pathfinder",
        S4Config(state_size=64, dt_min=1e-3, dt_max=1e-1, bidirectional=True),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.004, weight_decay=0.05, ssm_lr=0.001, batch_size=64,
        decay_norms_and_biases=False,
        warmup_steps=50_000, total_steps=500_000, eval_every=2500,
    )  # fmt: skip


def cpu(r: Recipe) -> Recipe:
    """The quick CPU job: `cpu_pathfinder` (contour length 6, solid snakes, a 32-wide
    3-layer model, 400 steps of 32) at lr 0.01.

    It reads the `continuous` Pathfinder style (solid snakes, an easier task than
    LRA's dashed one, generated about 10x faster), so it learns in minutes; the
    published setting and the other presets use the LRA style."""
    r = cpu_pathfinder(r)
    return dataclasses.replace(r, optimizer=dataclasses.replace(r.optimizer, lr=0.01))


PRESETS = {"smoke": smoke, "cpu": cpu}
