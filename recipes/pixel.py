"""`pixel-text`: PIXEL's input on LRA Text: IMDb reviews rendered as images, read
by a Vision Transformer (Rust, Lotz, Bugliarello, Salesky, de Lhoneux and Elliott,
"Language Modelling with Pixels", ICLR 2023).

PIXEL draws a text as one line 16 pixels high and cuts it into `N` patches of
16 × 16 pixels, `x_p ∈ R^{N × 256}` (at most 529: a 16 × 8464 image), with an
attention mask over the patches that hold text; its encoder is ViT-MAE's,
`z_0 = [x_class; x_p^1 E; …; x_p^N E] + E_pos`, pre-norm LayerNorm blocks of
multi-head attention and a GELU MLP `4 × d` wide, and a classifier on the class
token for fine-tuning. Here: `DataConfig(name="imdb", patch_size=16,
max_length=529)` (`seqkit.data.RenderedTextSource`: each review rendered with the
font inside Pillow, 1 = ink) and `SequenceModel(d_in=256, pool="cls",
positions="learned")`.

PIXEL's values: 16-pixel patches, 529 patches, and the encoder's size, ViT-Base
(768 wide, 12 layers, 12 heads of 64, MLP 3072, the 86M-parameter PIXEL-base).
seqkit's choices: the task (PIXEL is evaluated on GLUE, POS tagging, dependency
parsing and NER, not on IMDb), training from scratch by default (PIXEL fine-tunes
its pretrained encoder: `pixel-pretrain` pretrains this encoder, and
`--set model.init_from=RUN_DIR` starts from it), the font and
renderer (PIXEL uses PangoCairo with Go Noto fonts and ends the text with a black
patch), dropout 0.1, AdamW (β = 0.9, 0.999) lr 1e-4, weight decay 0.05,
gradient clipping at 1, batch 32, 10% warmup then a cosine to 0 over 20 epochs
of the 22,500 training reviews (704 steps each).

Needs the IMDb archive (`--set data.data_dir=DIR` or `$SEQKIT_DATA`). Rendering
costs about 30-50 ms a review on one CPU core: use `data.worker_count` or
`data.memory_cache`.
"""

import dataclasses

from seqkit.train import DataConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from . import _presets
from .vit import vit_model

NAME = "pixel-text"
DESCRIPTION = "PIXEL's input: IMDb reviews rendered as 16x16-pixel patches, ViT-Base; needs the IMDb archive"
TASK = "Text (rendered)"
MODEL = "PIXEL (ViT on rendered text)"
SOURCE = "Rust et al. 2023 (PIXEL) patches, length and ViT-Base size; optimizer and schedule seqkit's choices"

PATCH, MAX_PATCHES = 16, 529  # PIXEL
D_MODEL, N_LAYERS, NUM_HEADS, FFN_MULT = 768, 12, 12, 4  # ViT-Base, PIXEL's encoder
DROPOUT = 0.1
LR, WEIGHT_DECAY, BATCH = 1e-4, 0.05, 32
EPOCH = 704  # ceil(22,500 / 32)
TOTAL = 20 * EPOCH


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=vit_model(D_MODEL, N_LAYERS, NUM_HEADS, ffn_mult=FFN_MULT, dropout=DROPOUT),
        data=DataConfig(name="imdb", patch_size=PATCH, max_length=MAX_PATCHES, n_classes=2),
        optimizer=OptimizerConfig(
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            ssm_lr=LR,
            ssm_weight_decay=WEIGHT_DECAY,
            b1=0.9,
            b2=0.999,
            grad_clip=1.0,
        ),
        schedule=ScheduleConfig(warmup_steps=TOTAL // 10, total_steps=TOTAL),
        trainer=TrainerConfig(batch_size=BATCH, eval_every=EPOCH, checkpoint_every=EPOCH, log_every=50),
    )


def smoke(r: Recipe) -> Recipe:
    """Seconds on a CPU: 32 wide, 2 layers of 2 heads, no dropout, 64 patches per
    review, 2 steps of 4 on 16/8/8 reviews."""
    r = _presets.shrink(
        r,
        d_model=32,
        n_layers=2,
        sizes=(16, 8, 8),
        batch_size=4,
        warmup_steps=1,
        total_steps=2,
        eval_every=2,
        checkpoint_every=2,
        log_every=1,
        max_length=64,
    )
    mixers = [dataclasses.replace(m, num_heads=2, dropout=0.0) for m in r.model.mixers]
    return dataclasses.replace(r, model=dataclasses.replace(r.model, mixers=mixers, dropout=0.0))


PRESETS = {"smoke": smoke}
