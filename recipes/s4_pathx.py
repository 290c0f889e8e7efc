"""`s4-pathx`: S4 on LRA Path-X (128 × 128, L = 16384, contour length 14).

Published (Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State
Spaces", ICLR 2022, appendix, LRA table): 256 × 6, BatchNorm, pre-norm, no dropout, Δ ∈
[1e-4, 1e-1], AdamW lr 0.001 / wd 0.05 (SSM parameters lr 0.001, no wd), batch 16, 50
epochs, warmup 50k of 500k steps. Data are generated on the fly, or read from a cache
written by `seqkit data pathfinder --preset pathx` (`--set data.data_dir=DIR`).
"""

from seqkit.nn import S4Config
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._presets import shrink

NAME = "s4-pathx"
DESCRIPTION = "S4 on Path-X (128x128, L=16384, generated), published setting"
TASK = "Path-X"
MODEL = "S4"
SOURCE = "Gu et al. 2022 (S4), appendix LRA table"


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=ModelConfig(
            d_model=256,
            n_layers=6,
            mixers=[S4Config(state_size=64, dt_min=1e-4, dt_max=1e-1, bidirectional=True)],
            norm="batch",
            prenorm=True,
            dropout=0.0,
            pool="mean",
        ),
        data=DataConfig(name="pathx", contour_length=14, n_classes=2),
        optimizer=OptimizerConfig(lr=0.001, weight_decay=0.05, ssm_lr=0.001, ssm_weight_decay=0.0),
        schedule=ScheduleConfig(warmup_steps=50_000, total_steps=500_000),
        trainer=TrainerConfig(batch_size=16, eval_every=5000, checkpoint_every=1000, log_every=50),
    )


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
