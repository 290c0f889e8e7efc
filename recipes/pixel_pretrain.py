"""`pixel-pretrain`: PIXEL's masked-patch pretraining on text rendered as images
(Rust, Lotz, Bugliarello, Salesky, de Lhoneux and Elliott, "Language Modelling
with Pixels", ICLR 2023), on text that needs no download: this Python's standard
library (`pytext`).

Each example is a chunk of the corpus drawn as one line 16 pixels high and cut
into `N` patches of 16 × 16 (`DataConfig(name="pytext", patch_size=16,
max_length=N)`). About 25% of the real patches are hidden in spans of at most 6
(`seqkit.nn.span_mask`), a ViT encoder with a class token reads the sequence
with every hidden patch replaced by a learned mask patch, a linear decoder
predicts every patch's pixels, and the loss is the mean squared error over the
hidden patches against their normalized pixels (MAE's `norm_pix_loss`):
`trainer.objective=masked_patches` ([`seqkit.nn.PixelPretrainer`][]).

The encoder is exactly `pixel-text`'s (ViT-Base, 768 wide, 12 layers of 12
heads, MLP 3072, 529 patches), so a finished run fine-tunes on IMDb with

    seqkit train pixel-text --set model.init_from=runs/pixel-pretrain

(the smoke presets of the two match as well).

PIXEL's values: 16-pixel patches, 529 patches, ViT-Base, the masking (25%,
spans of at most 6) and the normalized-pixel loss. MAE's optimizer (He et al.,
"Masked Autoencoders Are Scalable Vision Learners", CVPR 2022): AdamW with
β = (0.9, 0.95), weight decay 0.05, learning rate 1.5e-4 at batch 256, warmup
then a cosine. seqkit's choices: the corpus (PIXEL pretrains on English
Wikipedia and BookCorpus, about 3.2B words: `--set data.name=enwik8` reads a
larger text when you have it), the steps (2,000, about 256 passes over pytext's
1,998 training chunks of 529 patches), a linear decoder and mask patches placed
in the encoder's input (PIXEL's decoder is 8 Transformer layers 512 wide and its
encoder reads only the visible patches), no dropout while pretraining (MAE uses
none), and the renderer (Pillow's built-in font; PIXEL uses PangoCairo with Go
Noto fonts).
"""

import dataclasses

from seqkit.train import DataConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from . import pixel
from .vit import vit_model

NAME = "pixel-pretrain"
DESCRIPTION = (
    "PIXEL's masked-patch pretraining of pixel-text's encoder on rendered Python source (no download)"
)
TASK = "Pretraining (rendered text)"
MODEL = "PIXEL (ViT on rendered text)"
SOURCE = "Rust et al. 2023 (PIXEL) masking, patches, length, ViT-Base; MAE's optimizer; steps seqkit's choice"

LR, WEIGHT_DECAY, BATCH = 1.5e-4, 0.05, 256  # MAE: base lr 1.5e-4 at batch 256, AdamW (0.9, 0.95)
TOTAL, WARMUP = 2000, 100


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=vit_model(pixel.D_MODEL, pixel.N_LAYERS, pixel.NUM_HEADS, ffn_mult=pixel.FFN_MULT, dropout=0.0),
        data=DataConfig(name="pytext", patch_size=pixel.PATCH, max_length=pixel.MAX_PATCHES),
        optimizer=OptimizerConfig(
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            ssm_lr=LR,
            ssm_weight_decay=WEIGHT_DECAY,
            b1=0.9,
            b2=0.95,
            grad_clip=0.0,
        ),
        schedule=ScheduleConfig(warmup_steps=WARMUP, total_steps=TOTAL),
        trainer=TrainerConfig(
            batch_size=BATCH, eval_every=500, checkpoint_every=250, log_every=25, objective="masked_patches"
        ),
    )


def smoke(r: Recipe) -> Recipe:
    """Seconds on a CPU: `pixel-text`'s own smoke preset (32 wide, 2 layers of 2
    heads, 64 patches; 2 steps of 4 on 16/8/8 chunks), so that a smoke
    fine-tuning run starts from a smoke pretraining run."""
    return pixel.smoke(r)


def cpu(r: Recipe) -> Recipe:
    """Minutes on a CPU: the smoke model (so `pixel-text`'s smoke preset can start
    from it) trained 300 steps of 16 chunks, lr 1e-3 with 30 warmup steps."""
    r = smoke(r)
    return dataclasses.replace(
        r,
        data=dataclasses.replace(r.data, train_size=4800, val_size=64, test_size=64),
        optimizer=dataclasses.replace(r.optimizer, lr=1e-3, ssm_lr=1e-3),
        schedule=ScheduleConfig(warmup_steps=30, total_steps=300),
        trainer=dataclasses.replace(
            r.trainer, batch_size=16, eval_every=100, checkpoint_every=100, log_every=10
        ),
    )


PRESETS = {"smoke": smoke, "cpu": cpu}
