"""`s4-scifar`: S4 on sequential CIFAR-10 (RGB, L = 1024, 3 channels).

Published (Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State
Spaces", ICLR 2022; the authors' config state-spaces/s4 at e757cef,
`configs/experiment/cifar/s4-cifar.yaml`): 512 × 6, LayerNorm, post-norm, dropout 0.1, Δ ∈ [1e-3,
1e-1], AdamW lr 0.01 / wd 0.05 (SSM parameters lr 0.001, no wd; no wd on the norms
and biases, as `configs/config.yaml` groups them), batch 50, 200 epochs,
warmup 900 of 180k steps (45k train images / 50 × 200). Needs the CIFAR-10 python
archive in `--set data.data_dir=DIR` or `$SEQKIT_DATA`.

Differences: the config shares (A, B) between pairs of channels (`n_ssm: 2`) and
ties the dropout mask across positions; seqkit's S4 has one (A, B) per channel and
drops elements (0.1 on the S4 layer and on the residual).
"""

import dataclasses

from seqkit.nn import S4Config
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._presets import smoke

NAME = "s4-scifar"
DESCRIPTION = "S4 on sequential CIFAR-10 (RGB, L=1024), published setting; needs the CIFAR-10 archive"
TASK = "sCIFAR"
MODEL = "S4"
SOURCE = "state-spaces/s4@e757cef configs/experiment/cifar/s4-cifar.yaml (v4 config for S4, Gu et al. 2022)"


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=ModelConfig(
            d_model=512,
            n_layers=6,
            mixers=[S4Config(state_size=64, dt_min=1e-3, dt_max=1e-1, bidirectional=True, dropout=0.1)],
            norm="layer",
            prenorm=False,
            dropout=0.1,
            pool="mean",
        ),
        data=DataConfig(name="scifar", n_classes=10),
        optimizer=OptimizerConfig(
            lr=0.01, weight_decay=0.05, ssm_lr=0.001, ssm_weight_decay=0.0, decay_norms_and_biases=False
        ),
        schedule=ScheduleConfig(warmup_steps=900, total_steps=180_000),
        trainer=TrainerConfig(batch_size=50, eval_every=900, checkpoint_every=900, log_every=50),
    )


def gray(r: Recipe) -> Recipe:
    """LRA Image: grayscale CIFAR-10, BatchNorm, warmup 18k of 180k steps (as the recipe `s4-image`)."""
    return dataclasses.replace(
        r,
        model=dataclasses.replace(r.model, norm="batch"),
        data=dataclasses.replace(r.data, name="cifar_gray"),
        schedule=ScheduleConfig(warmup_steps=18_000, total_steps=180_000),
    )


PRESETS = {"smoke": smoke, "gray": gray}
