"""S4 on LRA ListOps, Text, Retrieval and Image: `s4-listops`, `s4-text`,
`s4-retrieval`, `s4-image` (Pathfinder, Path-X and sCIFAR are `s4-pathfinder`,
`s4-pathx`, `s4-scifar`).

Published setting: the authors' current LRA configs, state-spaces/s4 at e757cef
(2024-02), `configs/experiment/lra/s4-{listops,imdb,aan,cifar}.yaml` (written for
the repository's version 4, 2023-04-01) with the layer defaults of
`configs/model/layer/s4.yaml` and the training defaults of `configs/config.yaml`,
for the S4 of Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured
State Spaces", ICLR 2022. Every task: 6 layers, bidirectional S4 with HiPPO-LegS,
Δ ∈ [1e-3, 1e-1], GELU then GLU, mean pooling over the real positions, AdamW
(0.9, 0.999), linear warmup then cosine decay per step, the SSM's A and B at lr
0.001 without weight decay, and no weight decay on the norms and biases of the
layers (`optimizer_param_grouping`, in the code since 2023-07;
`optimizer.decay_norms_and_biases=false`).

| task | d × layers | N | norm | dropout | lr / wd | batch | warmup / total (epochs) |
|---|---|---|---|---|---|---|---|
| ListOps | 256 × 6 | 4 | batch, post | 0 | 0.01 / 0.05 | 32 | 12k / 120k (40) |
| Text (IMDb, 4096) | 256 × 6 | 4 | batch, pre | 0 | 0.01 / 0.05 | 16 | 5k / 50k (32) |
| Retrieval (AAN) | 256 × 6 | 4 | batch, pre | 0 | 0.01 / 0.05 | 64 | 5k / 50k (20) |
| Image (gray) | 512 × 6 | 64 | batch, post | 0.1 | 0.01 / 0.05 | 50 | 18k / 180k (200) |

Differences seqkit cannot express (stated, not hidden):

- ListOps, Text, Retrieval: the configs train Δ at the base lr (0.01, no weight
  decay) and only A, B at 0.001; seqkit has one SSM group, so Δ trains at 0.001.
- ListOps, Text, Retrieval and Image share one (A, B) across all channels
  (`n_ssm: 1`); seqkit's S4 has one per channel. The v4 code maps Δ through a
  softplus; seqkit stores log Δ.
- Image: the config ties the dropout mask across positions (`tie_dropout`); seqkit
  drops elements. Dropout 0.1 is set on the S4 layer and on the residual.
- Inputs: the configs' character vocabularies (ListOps ~18 symbols, IMDb chars
  seen ≥ 15 times) versus seqkit's ListOps tokens (16) and raw bytes (257); the
  Retrieval head is `Linear(4d, d) → GELU → Linear` on `[u, v, u⊙v, u−v]`, seqkit's
  `DualEncoder` uses ReLU.

The repository's table of approximate final accuracies (models/s4/experiments.md):
ListOps 59.5, Text 86.5, Retrieval 91.0, Image 88.5 (Pathfinder 94.0, Path-X 96.0).
It was written in 2022 for the earlier configs (version 3, now
`configs/experiment/lra/old/v3-s4-*.yaml`: for example ListOps 128 × 8 with N = 64
and 80k steps, the values `s4d-listops` uses with the S4D layer), and kept
unchanged when these configs replaced them; no accuracy is published for these
settings themselves. It is the figure seqkit compares against.

`s4-listops` also has a `cpu` preset, as every ListOps recipe does: the published
task (generated, LRA's trees) with a 64-wide 4-layer model and 800 steps of 32,
which learns well above chance in about 15 minutes on two CPU cores.
"""

from seqkit.nn import S4Config

from . import _lra

SOURCE = "state-spaces/s4@e757cef configs/experiment/lra/s4-{task}.yaml (v4 configs for S4, Gu et al. 2022)"


def _s4(state_size: int, dropout: float = 0.0) -> S4Config:
    return S4Config(state_size=state_size, dt_min=1e-3, dt_max=1e-1, bidirectional=True, dropout=dropout)


def listops():
    return _lra.lra_recipe(
        "s4-listops", DESCRIPTIONS["listops"], "listops", _s4(4),
        d_model=256, n_layers=6, norm="batch", prenorm=False, dropout=0.0,
        lr=0.01, weight_decay=0.05, ssm_lr=0.001, batch_size=32,
        decay_norms_and_biases=False,
        warmup_steps=12_000, total_steps=120_000, eval_every=3000,
    )  # fmt: skip


def text():
    return _lra.lra_recipe(
        "s4-text", DESCRIPTIONS["text"], "text", _s4(4),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.01, weight_decay=0.05, ssm_lr=0.001, batch_size=16,
        decay_norms_and_biases=False,
        warmup_steps=5000, total_steps=50_000, eval_every=1562,
        data_options={"max_length": 4096},
    )  # fmt: skip


def retrieval():
    return _lra.lra_recipe(
        "s4-retrieval", DESCRIPTIONS["retrieval"], "retrieval", _s4(4),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.01, weight_decay=0.05, ssm_lr=0.001, batch_size=64,
        decay_norms_and_biases=False,
        warmup_steps=5000, total_steps=50_000, eval_every=2298,
        data_options={"max_length": 4000},
    )  # fmt: skip


def image():
    return _lra.lra_recipe(
        "s4-image", DESCRIPTIONS["image"], "image", _s4(64, dropout=0.1),
        d_model=512, n_layers=6, norm="batch", prenorm=False, dropout=0.1,
        lr=0.01, weight_decay=0.05, ssm_lr=0.001, batch_size=50,
        decay_norms_and_biases=False,
        warmup_steps=18_000, total_steps=180_000, eval_every=900,
    )  # fmt: skip


DESCRIPTIONS = {
    "listops": "S4 on LRA ListOps (generated, L=2048), the authors' updated config",
    "text": "S4 on LRA Text (IMDb bytes, L=4096), the authors' updated config; needs the IMDb archive",
    "retrieval": "S4 dual encoder on LRA Retrieval (AAN pairs, 2x4000 bytes); needs LRA's TSVs",
    "image": "S4 on LRA Image (gray CIFAR-10, L=1024), the authors' updated config; needs the archive",
}

_BUILD = {"listops": listops, "text": text, "retrieval": retrieval, "image": image}
SPECS = _lra.family_specs("s4", "S4", _BUILD, DESCRIPTIONS, SOURCE)
