"""The Vision Transformer on seqkit's image tasks: `vit-cifar` (sequential CIFAR-10,
RGB) and `vit-pathfinder` (Pathfinder 32 × 32, contour length 14).

ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021) reads an image `x ∈ R^{H×W×C}` as `N = HW/P²`
flattened patches `x_p ∈ R^{N × (P²·C)}`, embeds them linearly and prepends a
learned class token:

`z_0 = [x_class; x_p^1 E; …; x_p^N E] + E_pos`,
`z'_l = MSA(LN(z_{l−1})) + z_{l−1}`, `z_l = MLP(LN(z'_l)) + z'_l`,
`y = LN(z_L^0)`,

with `E_pos` learned 1-D position embeddings and an MLP of two layers with a GELU.
In seqkit this is a composition: the data's `patch_size` option
(`seqkit.data.patchify`: `(H·W, C)` row-major pixels → `(N, P²·C)` patches) and
`SequenceModel(d_in=P²·C, pool="cls", positions="learned")` with pre-norm
LayerNorm blocks of `MultiHeadAttention` and a GELU FFN (its encoder `Linear` is
`E`, its final LayerNorm and CLS pooling give `LN(z_L^0)`).

From the ViT paper: the structure above, the MLP 4 × d wide (every ViT size),
and patches rather than pixels as tokens. The paper's sizes are for 224-pixel
ImageNet images and pre-training; it gives none for 32-pixel images trained from
scratch, so these values are **seqkit's choices**: patches of 4 (64 tokens for a
32 × 32 image; 48 values per CIFAR patch, 16 per Pathfinder patch), d_model 192
with 3 heads of 64 (the width and heads of DeiT-Ti, Touvron et al. 2021, at half
its 12 layers: 6 layers), dropout 0.1, AdamW (β = 0.9, 0.999) lr 1e-3, weight
decay 0.05 on every parameter, gradient clipping at global norm 1, batch 128,
linear warmup then a cosine to 0:

| recipe | data | tokens × values | warmup / total | epochs |
|---|---|---|---|---|
| `vit-cifar` | `scifar`, 45k training images | 64 × 48 | 1760 / 35200 | 100 of 352 steps |
| `vit-pathfinder` | `pathfinder32`, contour length 14, 160k | 64 × 16 | 2500 / 62500 | 50 of 1250 steps |

Differences: ViT's classification head during pre-training is an MLP with one
hidden layer; seqkit's head is one linear map (ViT's fine-tuning head). The class
token starts at `N(0, 0.02²)`. No data augmentation (ViT trains on ImageNet with
random crops and flips; seqkit's sources have none).

`vit-cifar` needs the CIFAR-10 python archive (`--set data.data_dir=DIR` or
`$SEQKIT_DATA`); Pathfinder is generated.
"""

import dataclasses

from seqkit.attention import MultiHeadAttentionConfig
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from . import _presets
from ._spec import RecipeSpec

PATCH = 4
D_MODEL, N_LAYERS, NUM_HEADS = 192, 6, 3
FFN_MULT = 4  # ViT's MLP width, 4 × d
DROPOUT = 0.1
LR, WEIGHT_DECAY, BATCH = 1e-3, 0.05, 128

_DATA = {
    "cifar": DataConfig(name="scifar", n_classes=10, patch_size=PATCH),
    "pathfinder": DataConfig(name="pathfinder32", contour_length=14, n_classes=2, patch_size=PATCH),
}
# (warmup steps, total steps, steps per epoch) at batch 128.
_SCHEDULE = {"cifar": (5 * 352, 100 * 352, 352), "pathfinder": (2 * 1250, 50 * 1250, 1250)}
_TASK = {"cifar": "sCIFAR (patches)", "pathfinder": "Pathfinder (patches)"}
_DESCRIPTION = {
    "cifar": "ViT on CIFAR-10 RGB as 64 patches of 4x4x3; needs the CIFAR-10 archive",
    "pathfinder": "ViT on Pathfinder-32 as 64 patches of 4x4",
}


def vit_model(d_model: int, n_layers: int, num_heads: int, *, ffn_mult: int, dropout: float) -> ModelConfig:
    """ViT's encoder over patch embeddings: pre-norm LayerNorm Transformer blocks with
    a GELU MLP, a class token and learned positions (Dosovitskiy et al., ICLR 2021)."""
    return ModelConfig(
        d_model=d_model,
        n_layers=n_layers,
        mixers=[MultiHeadAttentionConfig(num_heads=num_heads, dropout=dropout)],
        norm="layer",
        prenorm=True,
        dropout=dropout,
        ffn_mult=ffn_mult,
        ffn_activation="gelu",
        pool="cls",
        positions="learned",
    )


def build(task: str) -> Recipe:
    """The recipe `vit-TASK` (`task`: `"cifar"` or `"pathfinder"`)."""
    warmup, total, epoch = _SCHEDULE[task]
    return Recipe(
        name=f"vit-{task}",
        description=_DESCRIPTION[task],
        model=vit_model(D_MODEL, N_LAYERS, NUM_HEADS, ffn_mult=FFN_MULT, dropout=DROPOUT),
        data=_DATA[task],
        optimizer=OptimizerConfig(
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            ssm_lr=LR,
            ssm_weight_decay=WEIGHT_DECAY,
            b1=0.9,
            b2=0.999,
            grad_clip=1.0,
        ),
        schedule=ScheduleConfig(warmup_steps=warmup, total_steps=total),
        trainer=TrainerConfig(batch_size=BATCH, eval_every=epoch, checkpoint_every=epoch, log_every=50),
    )


def smoke(r: Recipe) -> Recipe:
    """`_presets.smoke` (32 wide, 2 layers, 30 steps of 16 on 512 examples) with 2
    heads of 16 and no dropout."""
    r = _presets.smoke(r)
    mixers = [dataclasses.replace(m, num_heads=2, dropout=0.0) for m in r.model.mixers]
    return dataclasses.replace(r, model=dataclasses.replace(r.model, mixers=mixers, dropout=0.0))


SPECS = [
    RecipeSpec(
        name=f"vit-{task}",
        description=_DESCRIPTION[task],
        build=lambda task=task: build(task),
        presets={"smoke": smoke},
        task=_TASK[task],
        model="ViT",
        source="Dosovitskiy et al. 2021 (ViT) structure; sizes and optimizer seqkit's choices",
    )
    for task in ("cifar", "pathfinder")
]
