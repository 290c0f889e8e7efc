"""`spade`: SPADE on LRA Pathfinder (32 × 32, L = 1024, contour length 14).

SPADE (Zuo, Liu, Jiao, Charles, Manavoglu, Zhao and Gao, "Efficient Long Sequence
Modeling via State Space Augmented Transformer", 2022) puts an SSM in the bottom
layer, which carries global information, and efficient local attention in every
other layer. Here: an S4 layer at layer 0 and sliding-window local attention
(Xiong et al., 2022) in layers 1-5, `mixers=[S4Config(...), LocalAttentionConfig(...)]`,
`pattern=[0, 1, 1, 1, 1, 1]`; each block is pre-norm with a GELU FFN (a
Transformer block). In the paper the bottom layer runs its SSM alongside that
layer's local attention; here the bottom layer is the S4 layer alone.

Published settings used: the S4 layer, width, depth, BatchNorm and the optimizer
and schedule are S4's Pathfinder setting (Gu, Goel and Ré, ICLR 2022, as in
`s4-pathfinder`: 256 × 6, Δ ∈ [1e-3, 1e-1], AdamW lr 0.004 / wd 0.05, SSM
parameters lr 0.001 without wd, batch 64, warmup 50k of 500k steps). Not taken
from a paper (seqkit's choices): 4 heads, a sliding window of 128 (±127
positions) and the FFN width (2 × d_model).

Preset `cpu`: contour length 6 (`continuous` style: solid snakes), a 32-wide 2-layer
model (S4, then a sliding window of 16 with 2 heads), 400 steps of 32: about 75%
held-out accuracy (chance is 50%) in a few minutes on two CPU cores.
"""

import dataclasses

from seqkit.attention import LocalAttentionConfig
from seqkit.nn import S4Config
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._presets import shrink, smoke

NAME = "spade"
DESCRIPTION = "SPADE (S4 bottom layer, sliding local attention above) on Pathfinder-32; preset cpu"
TASK = "Pathfinder"
MODEL = "SPADE (S4 + local attention)"
SOURCE = "Zuo et al. 2022 (SPADE) structure; S4 LRA optimizer settings"


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=ModelConfig(
            d_model=256,
            n_layers=6,
            mixers=[
                S4Config(state_size=64, dt_min=1e-3, dt_max=1e-1, bidirectional=True),
                LocalAttentionConfig(num_heads=4, window_size=128, mode="sliding"),
            ],
            pattern=[0, 1, 1, 1, 1, 1],
            norm="batch",
            prenorm=True,
            dropout=0.0,
            ffn_mult=2,
            ffn_activation="gelu",
            pool="mean",
        ),
        data=DataConfig(name="pathfinder32", contour_length=14, n_classes=2),
        optimizer=OptimizerConfig(lr=0.004, weight_decay=0.05, ssm_lr=0.001, ssm_weight_decay=0.0),
        schedule=ScheduleConfig(warmup_steps=50_000, total_steps=500_000),
        trainer=TrainerConfig(batch_size=64, eval_every=2500, checkpoint_every=1000, log_every=50),
    )


def cpu(r: Recipe) -> Recipe:
    """The quick CPU job: contour length 6, S4 then a sliding window of 16, width 32, 400 steps of 32."""
    r = shrink(
        r,
        d_model=32,
        n_layers=2,
        sizes=(8000, 512, 512),
        batch_size=32,
        warmup_steps=40,
        total_steps=400,
        eval_every=100,
        checkpoint_every=50,
        log_every=10,
        contour_length=6,
        style="continuous",
        memory_cache=True,
    )
    s4, local = r.model.mixers
    local = dataclasses.replace(local, num_heads=2, window_size=16)
    model = dataclasses.replace(r.model, mixers=[s4, local])
    return dataclasses.replace(r, model=model, optimizer=dataclasses.replace(r.optimizer, lr=0.01))


PRESETS = {"smoke": smoke, "cpu": cpu}
