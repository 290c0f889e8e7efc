"""`hier-text`: a three-level hierarchical Transformer on LRA Text (IMDb bytes, L = 4096).

A hierarchical encoder reads a long document level by level
([`seqkit.nn.HierarchicalModel`][], `model.segments`): 2 Transformer blocks
within each 64-byte segment, mean-pooled to one vector per segment; 2 blocks
within each group of 8 segment vectors (512 bytes), pooled; 2 blocks over the
8 remaining vectors, pooled into the document's vector, and a linear head. At
this length no block attends over more than 64 positions (the top level holds
`L / 512` vectors: 64 up to 32K bytes).
Every level adds sinusoidal position embeddings counted within its segment or
group (the LRA Transformer's fixed embeddings on Text): attention and mean
pooling alone would read each level as an unordered set.

The data is LRA's Text task at the S4 papers' length (IMDb reviews as bytes,
4096 per document, Gu, Goel and Ré, ICLR 2022). The model's sizes follow the
LRA Transformer on Text (Tay et al., ICLR 2021: width 256, 4 heads, FFN 4·d,
dropout 0.1, weight decay 0.1, batch 32); the segment sizes, the 2 blocks per
level, AdamW lr 1e-3 and the 1k-warmup cosine schedule over 20k steps are
seqkit's choices, not a published setting.

Preset `smoke`: a 16-wide model on 128-byte documents (segments of 16, groups
of 4), 2 steps of 2 (the LRA smoke preset).
"""

import dataclasses

from seqkit.attention import MultiHeadAttentionConfig
from seqkit.train import ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._lra import data, smoke as lra_smoke

NAME = "hier-text"
DESCRIPTION = "three-level hierarchical Transformer on LRA Text (IMDb bytes, L=4096); needs IMDb"
TASK = "Text (IMDb)"
MODEL = "Hierarchical Transformer (3 levels)"
SOURCE = "LRA Transformer (Tay et al. 2021) widths; segments and schedule are seqkit's"


def recipe() -> Recipe:
    return Recipe(
        name=NAME,
        description=DESCRIPTION,
        model=ModelConfig(
            d_model=256,
            n_layers=2,
            mixers=[MultiHeadAttentionConfig(num_heads=4, dropout=0.1)],
            norm="layer",
            prenorm=True,
            dropout=0.1,
            ffn_mult=4,
            ffn_activation="gelu",
            pool="mean",
            positions="sinusoidal",
            segments=[64, 8],
        ),
        data=data("text", max_length=4096),
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=0.1, ssm_lr=1e-3, ssm_weight_decay=0.0),
        schedule=ScheduleConfig(warmup_steps=1000, total_steps=20_000),
        trainer=TrainerConfig(batch_size=32, eval_every=1000, checkpoint_every=1000, log_every=50),
    )


def smoke(r: Recipe) -> Recipe:
    """The LRA smoke preset (16 wide, 128-byte documents, 2 steps) with segments of 16 and groups of 4."""
    r = lra_smoke(r)
    return dataclasses.replace(r, model=dataclasses.replace(r.model, segments=[16, 4]))


PRESETS = {"smoke": smoke}
