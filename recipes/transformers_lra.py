"""The Transformer and the efficient transformers on the LRA tasks: `FAMILY-TASK`, e.g.
`transformer-listops`, `performer-text`, `bigbird-retrieval`, `long-short-listops`.

Families and the sources of their settings:

- **LRA's eleven** (Tay et al., "Long Range Arena: A Benchmark for Efficient
  Transformers", ICLR 2021): `transformer` (`MultiHeadAttention`), `local`,
  `sparse`, `longformer`, `bigbird`, `linformer`, `linear`, `performer`,
  `synthesizer`, `sinkhorn`, `reformer`; on `listops`, `text`, `retrieval`,
  `image`, `pathfinder`, and `transformer-pathx`. Values from the configs the
  benchmark's authors say reproduce the paper's tables
  (google-research/long-range-arena@cd31e5c,
  `lra_benchmarks/{listops,text_classification,matching}/configs/*_base.py`,
  `image/configs/{cifar10,pathfinder32,pathfinder128}/*_base.py`), the models'
  defaults (`lra_benchmarks/models/*/*.py`) and the training scripts
  (`*/train.py`, `utils/train_utils.py`).
- **`luna`** (Ma et al., "Luna: Linear Unified Nested Attention", NeurIPS 2021):
  the README commands and `luna_lra_*` architectures of
  XuezheMax/fairseq-apollo@6135e5b (`examples/luna/README.lra.md`,
  `fairseq/models/luna_lra/model.py`, the code as the paper came out): `listops`,
  `text`, `retrieval`, `image`, `pathfinder`.
- **`long-short`** (Zhu et al., "Long-Short Transformer", NeurIPS 2021):
  NVIDIA/transformer-ls@1527c5c `lra/run_{listops,text,retrieval}.sh` and the
  defaults of `lra/run_tasks.py` (the setting the scripts call "Transformer-LS
  (w, r = 8, 32)"): `listops`, `text`, `retrieval`.
- **`kernelized`** (Chowdhury et al., "Learning the Transformer Kernel", TMLR 2022;
  the GMM-PRF kernel, seqkit's `KernelizedAttention`):
  cs1160701/OnLearningTheKernel@f8c3cd7 `{listops,text,retrieval}/train.py` and
  `model.py`: `listops`, `text`, `retrieval`.

Gaps (no recipe; the source gives no setting): Path-X for every family but the
Transformer (LRA ships one Path-X config, `pathfinder128/transformer_base.py`;
its table reports every model as failing Path-X); Luna Path-X (an architecture,
no command); Transformer-LS and the kernelized Transformer on Image, Pathfinder
and Path-X (their code covers the three text tasks).

Inputs as the sources fed them: ListOps tokens, Text and Retrieval bytes (vocab
257), Image and Pathfinder pixels as tokens (gray levels 0..255, vocab 256;
`data.as_tokens`). Every family: pre-norm blocks with a final LayerNorm (Luna:
post-norm), GELU FFN, no gradient clipping unless listed, Adam with decoupled
weight decay on every parameter (one group: `ssm_lr = lr`).

**LRA, per task** (`lr` is LRA's peak: ListOps, Text and Retrieval use
`0.05 · min(1, t/w) / √max(t, w)`, peaking at `0.05/√w`; Image and Pathfinder a
linear warmup to `lr` then a cosine; Adam β = (0.9, 0.98), ε = 1e-9):

| task | d × layers | heads | FFN | drop / attn | pool | positions | lr | wd | batch | warmup / total | L |
|---|---|---|---|---|---|---|---|---|---|---|---|
| ListOps | 512 × 4 | 8 | ×2 | 0.1 / 0.1 | CLS | sinusoidal | 0.05/√1000 | 0.1 | 32 | 1000 / 5000 | 2000 |
| Text | 256 × 4 | 4 | ×4 | 0.1 / 0.1 | CLS | sinusoidal | 0.05/√8000 | 0.1 | 32 | 8000 / 20000 | 1000 |
| Retrieval | 128 × 4 | 4 | ×4 | 0.1 / 0.1 | CLS | sinusoidal | 0.05/√8000 | 0.1 | 32 | 8000 / 5000 | 4000 |
| Image | below | below | below | 0.3 / 0.2 | CLS | learned | 5e-4 | 0 | 256 | 175 / 35000 | 1024 |
| Pathfinder | below | below | below | 0.1 / 0.1 | mean | sinusoidal | 1e-3 | 0 | 512 | 312 / 62400 | 1024 |
| Path-X | 32 × 1 | 2 | ×1 | 0.1 / 0.1 | mean | learned | 1e-3 | 0 | 64 | 2500 / 500000, clip 1 | 16384 |

`L` is the data's length (tokens, bytes per document, pixels). Retrieval's warmup
is longer than its run: the learning rate rises linearly for all 5000 steps in
both codes. Image and Pathfinder, per family (d × layers, heads, FFN multiple;
dropout where it is not the task's):

| family | Image | Pathfinder |
|---|---|---|
| transformer | 128 × 1, 8, ×1 | 32 × 4, 4, ×1, dropout 0.2 |
| local | 128 × 1, 2, ×1, mean pool | 64 × 2, 4, ×1 |
| sparse | 128 × 1, 8, ×1 | 32 × 1, 8, ×1, dropout 0.2 |
| longformer | 128 × 4, 4, ×1, mean pool | 32 × 2, 2, ×1 |
| bigbird | 128 × 1, 4, ×1 | 64 × 4, 2, ×1, dropout 0.2 |
| linformer | 128 × 1, 8, ×1 | 32 × 1, 2, ×1, dropout 0.2 |
| linear | 128 × 1, 8, ×1 | 128 × 1, 2, ×1, dropout 0.2 |
| performer | 128 × 1, 8, ×1 | 32 × 4, 8, ×1, dropout 0.2 |
| synthesizer | 128 × 1, 8, ×1 | 64 × 2, 4, ×1, dropout 0.2 |
| sinkhorn | 32 × 1, 1, ×2, dropout 0.1, wd 0.7, mean pool | 32 × 2, 4, ×2, dropout 0.2 |
| reformer | 64 × 4, 8, ×1 | 64 × 2, 8, ×1, dropout 0.2 |

BigBird's Image config writes `num_head = 4`, a key its model does not take; the
recipe uses the 4 heads it means.

Mixer options, from the LRA model code (`seqkit.attention`'s defaults where they
agree, see `docs/api/attention.md`): local: blocks of 50 (Image and Pathfinder
64); sparse: the fixed pattern, blocks of 50, 10 summaries; longformer: sliding
window 512 and no global token (`num_global=0`; LRA marks none); bigbird: blocks of
64, 3 random, 2 global; linformer: k = 16 (the Text config's
`low_rank_features = 32` sits outside `config.model`, which is all the script
passes on); performer: 256 features (ListOps: 2, its config's FAVOR+ softmax
kernel); synthesizer: "random" (the Text config's factorized keys are likewise
never read); sinkhorn: blocks of 50 (Image and Pathfinder 64); reformer: 1 hash
round into 10 buckets, the sorted sequence in 10 chunks (`chunk_size = ⌈L/10⌉`).
Attention-weight dropout as LRA applies it: not in the linear, Performer and
Reformer attention, whose LRA functions discard the rate (the sparse attention
passes it on to its softmax, so it drops weights like the Transformer's).
Pooling as LRA's code runs it: the Sinkhorn encoder pools by the mean and rejects
anything else (`sinkhorn_transformer.py`, `classifier_pool` must be `'MEAN'`), so
`sinkhorn-listops` (whose script sets no pooling), `sinkhorn-text` and
`sinkhorn-image` (whose configs ask for CLS, which that code raises on) pool by the
mean, with no CLS token; `sinkhorn-retrieval` keeps the CLS pooling of every
Retrieval recipe (the Sinkhorn dual encoder's own default). seqkit's mean skips
padded positions; LRA's averages over the padding too.

**Luna** (packed length 16, the README's `plen`; 128 and 256 via
`--set model.mixers.0.packed_len=256`; post-norm with a LayerNorm on the
embeddings; learned positions and a CLS token, mean pooling on Pathfinder; Adam
β = (0.9, 0.98), ε = 1e-8, `inverse_sqrt`: warmup from 1e-7 to `lr`, then
`lr·√(w/t)`):

| task | d × layers | heads | FFN | dropout / attn | lr | wd | batch | warmup / total | length |
|---|---|---|---|---|---|---|---|---|---|
| ListOps | 512 × 1 | 8 | ×4 | 0.1 / 0.1 | 1e-4 | 1e-4 | 32 | 1000 / 5000 | 2000 |
| Text | 256 × 4 | 4 | ×4 | 0.3 / 0.3 | 5e-5 | 1e-4 | 32 | 8000 / 20000 | 4000 |
| Retrieval | 128 × 4 | 4 | ×4 | 0.1 / 0.1 | 5e-4 | 1e-4 | 32 | 8000 / 20000 | 4000 |
| Image | 64 × 1 | 8 | ×2 | 0.3 / 0.1 | 5e-3 | 0 | 256 | 4000 / 35000 | 1024 |
| Pathfinder | 128 × 1 | 4 | ×1 | 0.2 / 0.1 | 1e-3 | 0 | 512 | 4000 / 62500 | 1024 |

Pathfinder's batch is 512 as the README has read since the authors' edit of
2022-04-12 (commit d4a632a, which changed that one value); at 6135e5b it read 256.

**Transformer-LS** (64 wide, 2 layers, 2 heads of 32, FFN ×2, learned positions,
pre-norm; r = 32 landmarks per head, segments of w = 8; AdamW β = (0.9, 0.999),
ε = 1e-6; PyTorch's `OneCycleLR`, linear: from `lr/25` up to `lr` over the
warmup, then linearly down to about 0):

| task | dropout / attn | lr | wd | batch | warmup / total | length |
|---|---|---|---|---|---|---|
| ListOps | 0 / 0 | 1e-4 | 0 | 32 | 1000 / 5000 | 2000 |
| Text | 0 / 0 | 1e-4 | 0.01 | 32 | 8000 / 20000 | 4000 |
| Retrieval | 0.1 / 0.1 | 1e-4 | 0.01 | 32 | 8000 / 30000 | 4096 |

Each query of the LS code attends to its segment of w tokens and w/2 beyond
either side; seqkit's window is centred on each query, `window_size // 2` each
side: `window_size = 2w = 16` reaches w each side, what the code's middle token
of a segment sees (its first and last tokens see w/2 on one side, 3w/2 on the
other).

**Kernelized** (GMM-PRF: one learned Gaussian per head, `num_components=1`;
`num_features` the code's `min(L, pow2(d_h · ln d_h))`; sinusoidal positions, a
CLS token, dropout 0.1, AdamW β = (0.9, 0.98), ε = 1e-9, wd 0.1, and LRA's
`base · min(1, t/w)/√max(t, w)` schedule, `lr` its peak):

| task | d × layers | heads | FFN | features | lr | batch | warmup / total | length |
|---|---|---|---|---|---|---|---|---|
| ListOps | 512 × 6 | 8 | ×4 | 256 | 5e-3/√1000 | 32 | 1000 / 12000 (4 epochs) | 2000 |
| Text | 256 × 4 | 4 | ×4 | 256 | 5e-2/√8000 | 8 | 8000 / 81250 (26 epochs) | 4000 |
| Retrieval | 128 × 4 | 4 | ×4 | 128 | 5e-2/√8000 | 32 | 8000 / 9194 (2 epochs) | 4000 |

(The Retrieval script also evaluates the checkpoint at step 5000.)

Differences seqkit cannot express:

- Schedules: seqkit warms up linearly from 0 and decays on a cosine to 0 at
  `total_steps`; LRA's ListOps, Text and Retrieval (and the kernelized
  Transformer's) decay as `1/√t`, Luna's as `√(w/t)`, Transformer-LS's linearly
  from `lr/25`; LRA's cosine (Image, Pathfinder) stops just short of 0.
- Widths: LRA's `qkv_dim` (the Q/K/V width, half of `d` in most Image and
  Pathfinder configs) is not a knob: seqkit's Q/K/V are `d_model` wide.
- Heads: LRA, Luna and Transformer-LS classify with a hidden layer
  (`Dense(mlp_dim) → ReLU → Dense`; LRA's Retrieval head has two, `mlp_dim` then
  `mlp_dim / 2`, and its Sinkhorn encoder none); seqkit's head is one linear map. For
  Retrieval, LRA's dual encoder reads `[u, v]` (Luna's too) and LRA's pooling
  takes each document's first position (its dual encoder prepends no CLS token);
  seqkit's `DualEncoder` reads `[u, v, u⊙v, u−v]` with a CLS token per document.
- CLS: LRA and the kernelized code start the CLS token at zero, seqkit at
  N(0, 0.02²); Transformer-LS adds it at the last layer only (`--cls_last_layer`),
  seqkit at the input.
- Dropout on the embeddings (every source) and Luna's LayerNorm on the embeddings
  are not there.
- Performer: LRA's default kernel is `generalized` (deterministic ReLU features);
  seqkit's `Performer` is FAVOR+ (ListOps' config asks for FAVOR+ anyway).
- Synthesizer: LRA adds the dot-product logits to the random ones
  (`ignore_dot_product=False`); seqkit's random Synthesizer has none.
- Sinkhorn: LRA sorts blocks with a plain softmax; seqkit balances with 8 Sinkhorn
  iterations at temperature 0.75.
- Kernelized: the code redraws its noise at every call and offsets by `|x|²`;
  seqkit keeps fixed noise and offsets by `|x|²/2` (the FAVOR+ form). Its blocks
  add the residual to the *normalized* input (`axial_ordering`); seqkit to the
  input.
- Luna's image input is CLS + 1024 pixels cut to 1024 positions (the last pixel
  dropped); seqkit keeps all 1024.
"""

import dataclasses
import math
from typing import Literal

from seqkit.attention import (
    BigBirdConfig,
    KernelizedAttentionConfig,
    LinearAttentionConfig,
    LinformerConfig,
    LocalAttentionConfig,
    LongformerConfig,
    LongShortAttentionConfig,
    LunaAttentionConfig,
    MultiHeadAttentionConfig,
    PerformerConfig,
    ReformerAttentionConfig,
    SinkhornAttentionConfig,
    SparseAttentionConfig,
    SynthesizerConfig,
)
from seqkit.nn import MixerConfig
from seqkit.train import ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from . import _lra
from ._spec import RecipeSpec


@dataclasses.dataclass(frozen=True)
class Setting:
    """One published row: the model around the mixer, the optimizer, the data length."""

    d_model: int
    n_layers: int
    num_heads: int
    ffn_mult: int
    dropout: float  # residual and FFN dropout (LRA's `dropout_rate`)
    attention_dropout: float  # the mixer's `dropout`
    pool: Literal["mean", "cls"]
    positions: Literal["sinusoidal", "learned"]
    lr: float  # the peak learning rate
    weight_decay: float
    batch_size: int
    warmup_steps: int
    total_steps: int
    eval_every: int
    max_length: int | None = None  # data.max_length (ListOps padding, bytes per document)
    b1: float = 0.9
    b2: float = 0.98
    eps: float = 1e-9
    grad_clip: float = 0.0
    prenorm: bool = True


def _rsqrt_peak(base: float, warmup: int) -> float:
    """The peak of `base · min(1, t/w) / √max(t, w)`, reached at `t = w`."""
    return base / math.sqrt(warmup)


# --- LRA --------------------------------------------------------------------------

LRA_FAMILIES = (
    "transformer", "local", "sparse", "longformer", "bigbird", "linformer",
    "linear", "performer", "synthesizer", "sinkhorn", "reformer",
)  # fmt: skip

_LRA_TASK = {
    "listops": Setting(
        d_model=512, n_layers=4, num_heads=8, ffn_mult=2, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(0.05, 1000), weight_decay=0.1,
        batch_size=32, warmup_steps=1000, total_steps=5000, eval_every=50, max_length=2000,
    ),
    "text": Setting(
        d_model=256, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(0.05, 8000), weight_decay=0.1,
        batch_size=32, warmup_steps=8000, total_steps=20_000, eval_every=100, max_length=1000,
    ),
    "retrieval": Setting(
        d_model=128, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(0.05, 8000), weight_decay=0.1,
        batch_size=32, warmup_steps=8000, total_steps=5000, eval_every=100, max_length=4000,
    ),
    # cifar10/base_cifar10_config.py: 45000 training images, 200 epochs of 256.
    "image": Setting(
        d_model=32, n_layers=1, num_heads=1, ffn_mult=2, dropout=0.3, attention_dropout=0.2,
        pool="cls", positions="learned", lr=5e-4, weight_decay=0.0,
        batch_size=256, warmup_steps=175, total_steps=35_000, eval_every=175,
    ),
    # pathfinder32/base_pathfinder32_config.py: 160000 examples, 200 epochs of 512.
    "pathfinder": Setting(
        d_model=32, n_layers=1, num_heads=2, ffn_mult=1, dropout=0.1, attention_dropout=0.1,
        pool="mean", positions="sinusoidal", lr=1e-3, weight_decay=0.0,
        batch_size=512, warmup_steps=312, total_steps=62_400, eval_every=312,
    ),
    # pathfinder128/base_pathfinder128_config.py: 160000 examples, 200 epochs of 64.
    "pathx": Setting(
        d_model=32, n_layers=1, num_heads=2, ffn_mult=1, dropout=0.1, attention_dropout=0.1,
        pool="mean", positions="learned", lr=1e-3, weight_decay=0.0,
        batch_size=64, warmup_steps=2500, total_steps=500_000, eval_every=2500, grad_clip=1.0,
    ),
}  # fmt: skip


def _shape(d, layers, heads, mult, **more):
    return dict(d_model=d, n_layers=layers, num_heads=heads, ffn_mult=mult, **more)


# Per-family image and Pathfinder configs (`emb_dim`, `num_layers`, `num_heads`,
# `mlp_dim / emb_dim`, and whatever else the family's file sets), and what a
# family's model code changes on another task.
_LRA_FAMILY = {
    ("transformer", "image"): _shape(128, 1, 8, 1),
    ("local", "image"): _shape(128, 1, 2, 1, pool="mean"),
    ("sparse", "image"): _shape(128, 1, 8, 1),
    ("longformer", "image"): _shape(128, 4, 4, 1, pool="mean"),
    ("bigbird", "image"): _shape(128, 1, 4, 1),  # the config's `num_head = 4`
    ("linformer", "image"): _shape(128, 1, 8, 1),
    ("linear", "image"): _shape(128, 1, 8, 1),
    ("performer", "image"): _shape(128, 1, 8, 1),
    ("synthesizer", "image"): _shape(128, 1, 8, 1),
    ("sinkhorn", "image"): _shape(32, 1, 1, 2, dropout=0.1, weight_decay=0.7, pool="mean"),
    ("reformer", "image"): _shape(64, 4, 8, 1),
    ("transformer", "pathfinder"): _shape(32, 4, 4, 1, dropout=0.2),
    ("local", "pathfinder"): _shape(64, 2, 4, 1),
    ("sparse", "pathfinder"): _shape(32, 1, 8, 1, dropout=0.2),
    ("longformer", "pathfinder"): _shape(32, 2, 2, 1),
    ("bigbird", "pathfinder"): _shape(64, 4, 2, 1, dropout=0.2),
    ("linformer", "pathfinder"): _shape(32, 1, 2, 1, dropout=0.2),
    ("linear", "pathfinder"): _shape(128, 1, 2, 1, dropout=0.2),
    ("performer", "pathfinder"): _shape(32, 4, 8, 1, dropout=0.2),
    ("synthesizer", "pathfinder"): _shape(64, 2, 4, 1, dropout=0.2),
    ("sinkhorn", "pathfinder"): _shape(32, 2, 4, 2, dropout=0.2),
    ("reformer", "pathfinder"): _shape(64, 2, 8, 1, dropout=0.2),
    # The Sinkhorn encoder pools by the mean only (see the module docstring).
    ("sinkhorn", "listops"): dict(pool="mean"),
    ("sinkhorn", "text"): dict(pool="mean"),
}

# Families whose LRA attention function discards its dropout rate.
_NO_ATTENTION_DROPOUT = ("linear", "performer", "reformer")


def _sequence_length(task: str, s: Setting) -> int:
    """The model's length: the data's, plus the CLS token."""
    data = {"image": 1024, "pathfinder": 1024, "pathx": 128 * 128}.get(task, s.max_length)
    assert data is not None
    return data + (s.pool == "cls")


def _lra_mixer(family: str, task: str, s: Setting) -> MixerConfig:
    pixels = task in ("image", "pathfinder", "pathx")
    rate = 0.0 if family in _NO_ATTENTION_DROPOUT else s.attention_dropout
    common = {"num_heads": s.num_heads, "dropout": rate}
    if family == "transformer":
        return MultiHeadAttentionConfig(**common)
    if family == "local":
        return LocalAttentionConfig(window_size=64 if pixels else 50, mode="block", **common)
    if family == "sparse":
        return SparseAttentionConfig(pattern="fixed", stride=50, summary=10, **common)
    if family == "longformer":
        return LongformerConfig(window_size=512, num_global=0, **common)
    if family == "bigbird":
        return BigBirdConfig(block_size=64, num_random=3, num_global=2, **common)
    if family == "linformer":
        return LinformerConfig(proj_dim=16, **common)
    if family == "linear":
        return LinearAttentionConfig(**common)
    if family == "performer":
        return PerformerConfig(num_features=2 if task == "listops" else 256, **common)
    if family == "synthesizer":
        return SynthesizerConfig(mode="random", factorized=False, trainable=True, **common)
    if family == "sinkhorn":
        return SinkhornAttentionConfig(block_size=64 if pixels else 50, **common)
    if family == "reformer":
        chunk = math.ceil(_sequence_length(task, s) / 10)
        return ReformerAttentionConfig(chunk_size=chunk, num_hashes=1, num_buckets=10, **common)
    raise AssertionError(family)


def _lra_setting(family: str, task: str) -> Setting:
    return dataclasses.replace(_LRA_TASK[task], **_LRA_FAMILY.get((family, task), {}))


# --- Luna, Transformer-LS, kernelized ---------------------------------------------

_LUNA = {
    "listops": Setting(
        d_model=512, n_layers=1, num_heads=8, ffn_mult=4, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="learned", lr=1e-4, weight_decay=1e-4, batch_size=32,
        warmup_steps=1000, total_steps=5000, eval_every=20, max_length=2000, eps=1e-8, prenorm=False,
    ),
    "text": Setting(
        d_model=256, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.3, attention_dropout=0.3,
        pool="cls", positions="learned", lr=5e-5, weight_decay=1e-4, batch_size=32,
        warmup_steps=8000, total_steps=20_000, eval_every=100, max_length=4000, eps=1e-8, prenorm=False,
    ),
    "retrieval": Setting(
        d_model=128, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="learned", lr=5e-4, weight_decay=1e-4, batch_size=32,
        warmup_steps=8000, total_steps=20_000, eval_every=2000, max_length=4000, eps=1e-8, prenorm=False,
    ),
    "image": Setting(
        d_model=64, n_layers=1, num_heads=8, ffn_mult=2, dropout=0.3, attention_dropout=0.1,
        pool="cls", positions="learned", lr=5e-3, weight_decay=0.0, batch_size=256,
        warmup_steps=4000, total_steps=35_000, eval_every=175, eps=1e-8, prenorm=False,
    ),
    "pathfinder": Setting(
        d_model=128, n_layers=1, num_heads=4, ffn_mult=1, dropout=0.2, attention_dropout=0.1,
        pool="mean", positions="learned", lr=1e-3, weight_decay=0.0, batch_size=512,
        warmup_steps=4000, total_steps=62_500, eval_every=312, eps=1e-8, prenorm=False,
    ),
}  # fmt: skip
LUNA_PACKED_LEN = 16

_LONG_SHORT = {
    "listops": Setting(
        d_model=64, n_layers=2, num_heads=2, ffn_mult=2, dropout=0.0, attention_dropout=0.0,
        pool="cls", positions="learned", lr=1e-4, weight_decay=0.0, batch_size=32,
        warmup_steps=1000, total_steps=5000, eval_every=50, max_length=2000, b2=0.999, eps=1e-6,
    ),
    "text": Setting(
        d_model=64, n_layers=2, num_heads=2, ffn_mult=2, dropout=0.0, attention_dropout=0.0,
        pool="cls", positions="learned", lr=1e-4, weight_decay=0.01, batch_size=32,
        warmup_steps=8000, total_steps=20_000, eval_every=500, max_length=4000, b2=0.999, eps=1e-6,
    ),
    "retrieval": Setting(
        d_model=64, n_layers=2, num_heads=2, ffn_mult=2, dropout=0.1, attention_dropout=0.1,
        pool="cls", positions="learned", lr=1e-4, weight_decay=0.01, batch_size=32,
        warmup_steps=8000, total_steps=30_000, eval_every=300, max_length=4096, b2=0.999, eps=1e-6,
    ),
}  # fmt: skip
LONG_SHORT_SEGMENT, LONG_SHORT_RANK = 8, 32

_KERNELIZED = {
    "listops": Setting(
        d_model=512, n_layers=6, num_heads=8, ffn_mult=4, dropout=0.1, attention_dropout=0.0,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(5e-3, 1000), weight_decay=0.1,
        batch_size=32, warmup_steps=1000, total_steps=4 * 3000, eval_every=100, max_length=2000,
    ),
    "text": Setting(
        d_model=256, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.1, attention_dropout=0.0,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(5e-2, 8000), weight_decay=0.1,
        batch_size=8, warmup_steps=8000, total_steps=26 * 3125, eval_every=100, max_length=4000,
    ),
    "retrieval": Setting(
        d_model=128, n_layers=4, num_heads=4, ffn_mult=4, dropout=0.1, attention_dropout=0.0,
        pool="cls", positions="sinusoidal", lr=_rsqrt_peak(5e-2, 8000), weight_decay=0.1,
        batch_size=32, warmup_steps=8000, total_steps=2 * math.ceil(147_086 / 32), eval_every=100,
        max_length=4000,
    ),
}  # fmt: skip
_KERNELIZED_FEATURES = {"listops": 256, "text": 256, "retrieval": 128}


def _other_mixer(family: str, task: str, s: Setting) -> MixerConfig:
    common = {"num_heads": s.num_heads, "dropout": s.attention_dropout}
    if family == "luna":
        return LunaAttentionConfig(packed_len=LUNA_PACKED_LEN, **common)
    if family == "long-short":
        return LongShortAttentionConfig(window_size=2 * LONG_SHORT_SEGMENT, rank=LONG_SHORT_RANK, **common)
    if family == "kernelized":
        return KernelizedAttentionConfig(num_features=_KERNELIZED_FEATURES[task], num_components=1, **common)
    raise AssertionError(family)


# --- recipes ----------------------------------------------------------------------

MODELS = {
    "transformer": "Transformer",
    "local": "Local Attention",
    "sparse": "Sparse Transformer",
    "longformer": "Longformer",
    "bigbird": "BigBird",
    "linformer": "Linformer",
    "linear": "Linear Transformer",
    "performer": "Performer",
    "synthesizer": "Synthesizer",
    "sinkhorn": "Sinkhorn Transformer",
    "reformer": "Reformer",
    "luna": "Luna",
    "long-short": "Transformer-LS",
    "kernelized": "Kernelized Transformer (GMM-PRF)",
}

_LRA_CONFIG_DIR = {
    "listops": "listops/configs",
    "text": "text_classification/configs",
    "retrieval": "matching/configs",
    "image": "image/configs/cifar10",
    "pathfinder": "image/configs/pathfinder32",
    "pathx": "image/configs/pathfinder128",
}


def _lra_config_file(family: str, task: str) -> str:
    name = {"sparse": "sparse_transformer", "linear": "linear_transformer"}.get(family, family)
    if family == "sinkhorn" and task in ("text", "retrieval"):
        name = "sinkhorn_transformer"
    return f"lra_benchmarks/{_LRA_CONFIG_DIR[task]}/{name}_base.py"


def _source(family: str, task: str) -> str:
    if family in LRA_FAMILIES:
        return f"google-research/long-range-arena@cd31e5c {_lra_config_file(family, task)} (Tay et al. 2021)"
    return {
        "luna": "XuezheMax/fairseq-apollo@6135e5b examples/luna/README.lra.md + luna_lra_* (Ma et al. 2021)",
        "long-short": "NVIDIA/transformer-ls@1527c5c lra/run_{task}.sh + lra/run_tasks.py (Zhu et al. 2021)",
        "kernelized": "cs1160701/OnLearningTheKernel@f8c3cd7 {task}/train.py (Chowdhury et al. 2022)",
    }[family].format(task=task)


def setting(family: str, task: str) -> Setting:
    """The published row of `FAMILY-TASK`."""
    if family in LRA_FAMILIES:
        return _lra_setting(family, task)
    return {"luna": _LUNA, "long-short": _LONG_SHORT, "kernelized": _KERNELIZED}[family][task]


def build(family: str, task: str) -> Recipe:
    """The recipe `FAMILY-TASK` with its published setting."""
    s = setting(family, task)
    mixer = _lra_mixer(family, task, s) if family in LRA_FAMILIES else _other_mixer(family, task, s)
    pixels = task in ("image", "pathfinder", "pathx")
    data_options: dict = {"as_tokens": True, "vocab_size": 256} if pixels else {}
    if s.max_length is not None:
        data_options["max_length"] = s.max_length
    return Recipe(
        name=f"{family}-{task}",
        description=_description(family, task),
        model=ModelConfig(
            d_model=s.d_model,
            n_layers=s.n_layers,
            mixers=[mixer],
            norm="layer",
            prenorm=s.prenorm,
            dropout=s.dropout,
            ffn_mult=s.ffn_mult,
            ffn_activation="gelu",
            pool=s.pool,
            dual=task == "retrieval",
            positions=s.positions,
        ),
        data=_lra.data(task, **data_options),
        optimizer=OptimizerConfig(
            lr=s.lr,
            weight_decay=s.weight_decay,
            ssm_lr=s.lr,
            ssm_weight_decay=s.weight_decay,
            b1=s.b1,
            b2=s.b2,
            eps=s.eps,
            grad_clip=s.grad_clip,
        ),
        schedule=ScheduleConfig(warmup_steps=s.warmup_steps, total_steps=s.total_steps),
        trainer=TrainerConfig(
            batch_size=s.batch_size, eval_every=s.eval_every, checkpoint_every=1000, log_every=50
        ),
    )


_DATA_NOTE = {
    "listops": "generated",
    "text": "IMDb bytes; needs the IMDb archive",
    "retrieval": "AAN pairs; needs LRA's TSVs",
    "image": "gray CIFAR-10 tokens; needs the CIFAR-10 archive",
    "pathfinder": "generated",
    "pathx": "128x128, generated",
}


def _description(family: str, task: str) -> str:
    source = {
        "luna": "the Luna code's",
        "long-short": "the Transformer-LS scripts'",
        "kernelized": "the paper code's",
    }
    whose = source.get(family, "LRA's")
    return f"{MODELS[family]} on LRA {_lra.TASK_TITLES[task]} ({_DATA_NOTE[task]}), {whose} config"


def smoke(r: Recipe) -> Recipe:
    """`_lra.smoke` (16 wide, 1 layer, 2 steps of 2 on 16/8/8 examples, Text and
    Retrieval cut to 128 bytes) with at most 2 heads."""
    r = _lra.smoke(r)
    return _lra.map_mixers(r, lambda m: dataclasses.replace(m, num_heads=min(m.num_heads, 2)))


TABLE: dict[str, tuple[str, ...]] = {
    **{f: ("listops", "text", "retrieval", "image", "pathfinder") for f in LRA_FAMILIES},
    "transformer": ("listops", "text", "retrieval", "image", "pathfinder", "pathx"),
    "luna": ("listops", "text", "retrieval", "image", "pathfinder"),
    "long-short": ("listops", "text", "retrieval"),
    "kernelized": ("listops", "text", "retrieval"),
}

SPECS = [
    RecipeSpec(
        name=f"{family}-{task}",
        description=_description(family, task),
        build=lambda family=family, task=task: build(family, task),
        presets=_lra.presets(task, smoke),
        task=_lra.TASK_TITLES[task],
        model=MODELS[family],
        source=_source(family, task),
    )
    for family, tasks in TABLE.items()
    for task in tasks
]
