"""`s4-pathx`: S4 on LRA Path-X (128 × 128, L = 16384, contour length 14).

Published setting: the authors' current Path-X config, state-spaces/s4 at e757cef,
`configs/experiment/lra/s4-pathx.yaml` (the updated S4 of Gu, Goel and Ré,
"Efficiently Modeling Long Sequences with Structured State Spaces", ICLR 2022):
256 × 6, BatchNorm, pre-norm, no dropout, N = 64, Δ ∈ [1e-4, 1e-1],
AdamW lr 0.001 / wd 0.05, the SSM parameters (A, B, Δ) at lr 0.001 without weight
decay, no weight decay on the norms and biases (`configs/config.yaml`), batch 16, 50
epochs, warmup 50k of 500k steps (cosine).

Which Path-X learning rates. The repository's history holds five settings:

- 2021 (S4 v1, `lra/old/s4-lra-pathx.yaml`): lr 0.0005, plateau schedule, batch 32;
- 2022-08 (the S4D / HTTYH papers, `lra/s4-lra-pathx.yaml`): lr 0.0005, SSM lr
  0.0005, warmup 10k of 500k, batch 16;
- 2023-03-03 (commit 43f5b0c, the same file edited): lr 0.001, SSM lr 0.0005,
  warmup 50k (its comment: the original S4D/HTTYH papers use lr 5e-4); commit
  62a14bb later moved it, unchanged, to `lra/old/v3-s4-pathx.yaml`;
- 2023-04-01 (v4, `lra/s4-pathx.yaml`, commit 62a14bb): lr 0.002, SSM lr 0.001,
  warmup 50k;
- 2023-04-15 (commit 8bfbb60, "Update PathX config learning rate", unchanged since):
  lr 0.001, SSM lr 0.001.

This recipe takes the last: it is the authors' latest word on the config that
goes with the updated S4 the other `s4-*` recipes follow, and it replaced 0.002
on purpose. `s4d-pathx` keeps the 2022 setting its paper used.

Data are generated on the fly, or read from a cache written by `seqkit data
pathfinder --preset pathx` (`--set data.data_dir=DIR`).
"""

from seqkit.nn import S4Config
from seqkit.train import Recipe

from . import _lra
from ._presets import shrink

NAME = "s4-pathx"
DESCRIPTION = "S4 on Path-X (128x128, L=16384, generated), published setting"
TASK = "Path-X"
MODEL = "S4"
SOURCE = "state-spaces/s4@e757cef configs/experiment/lra/s4-pathx.yaml (v4 config for S4, Gu et al. 2022)"


def recipe() -> Recipe:
    return _lra.lra_recipe(
        NAME, DESCRIPTION, "pathx",
        S4Config(state_size=64, dt_min=1e-4, dt_max=1e-1, bidirectional=True),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.001, weight_decay=0.05, ssm_lr=0.001, batch_size=16,
        decay_norms_and_biases=False,
        warmup_steps=50_000, total_steps=500_000, eval_every=5000,
    )  # fmt: skip


def smoke(r: Recipe) -> Recipe:
    """A few minutes on a CPU: a 16-wide 2-layer model, 10 steps of 4 images at L = 16384."""
    return shrink(
        r,
        d_model=16,
        n_layers=2,
        sizes=(64, 16, 16),
        batch_size=4,
        warmup_steps=2,
        total_steps=10,
        eval_every=10,
        checkpoint_every=5,
        log_every=2,
    )


PRESETS = {"smoke": smoke}
