"""DSS on the six LRA tasks: `dss-listops`, `dss-text`, `dss-retrieval`, `dss-image`,
`dss-pathfinder`, `dss-pathx`.

Published setting: Gupta, Gu and Berant, "Diagonal State Spaces are as Effective as
Structured State Spaces", NeurIPS 2022, as the authors' repository runs it:
ag1988/dss at 777084e, the README's LRA commands (`model=dss
experiment=s4-lra-TASK` plus per-task flags), `configs/experiment/s4-lra-{listops,
imdb,aan,cifar,pathfinder,pathx}.yaml` (the S4 v1 LRA configs), and the DSS layer
of `configs/model/layer/dss.yaml`: N = 64, the softmax kernel, one direction
(`bidirectional: false`), GELU, then a plain linear output map (no GLU), Δ ∈
[1e-3, 1e-1], Λ and Δ at lr 0.001 without weight decay. AdamW (0.9, 0.999).

| task | d × layers | norm | dropout | lr / wd | batch | epochs → steps | pool | README flags |
|---|---|---|---|---|---|---|---|---|
| ListOps | 128 × 6 | batch, post | 0 | 0.01 / 0.01 | 50 | 50 → 96k | mean | Δ lr 0.02 |
| Text (2048) | 128 × 4 | batch, pre | 0 | 0.01 / 0 | 50 | 40 → 20k | last | Δ lr 0.02 |
| Retrieval | 256 × 6 | batch, pre | 0 | 0.002 / 0 | 64 | 25 → 57,450 | mean | |
| Image | 512 × 6 | batch, post | 0.2 | 0.004 / 0.01 | 50 | 200 → 180k | mean | 200 epochs |
| Pathfinder | 256 × 6 | batch, pre | 0.1 | 0.004 / 0 | 100 | 200 → 320k | last | |
| Path-X | 256 × 6 | batch, pre | 0 | 0.0005 / 0 | 16 | 35 → 350k | mean | Δ ∈ [1e-4, 1e-2], Δ lr 1e-4 |

(Weight decay 0 where the config sets none: the AdamW default of that code. Steps
= epochs × training examples // batch, with the LRA split sizes: ListOps 96k, IMDb
25k, AAN 147,086, CIFAR 45k, Pathfinder 160k.)

Differences seqkit cannot express:

- Schedule: the configs reduce the lr by 0.2 when validation accuracy has not
  improved for `patience` epochs (ListOps 5, Text 10, Retrieval 20, Image 10,
  Pathfinder 13, Path-X 40), with no warmup; seqkit decays on a cosine over the
  same number of steps, also without warmup.
- Δ's own lr (ListOps and Text 0.02, Path-X 1e-4): seqkit trains Λ and Δ in one
  SSM group, at Λ's 0.001.
- DSS shares one Λ across channels and keeps separate Δ for Re and Im
  (`sep_dt_re_im`); seqkit's DSS has Λ per channel and one Δ. The code trains
  the weights `W` (C·B) at 0.001 too, without weight decay; seqkit trains them
  at the base lr with the base weight decay (0.01 on ListOps and Image).
- Image: dropout tied across positions in the code; element dropout here (0.2 on
  the DSS layer and on the residual). Pathfinder and Path-X pixels are normalized
  to [−1, 1] in the code, [0, 1] here. The IMDb vocabulary is characters seen ≥ 15
  times there, bytes here.

The README's test accuracies (at the best validation checkpoint): ListOps 60.6,
Text 84.8, Retrieval 87.8, Image 85.7, Pathfinder 84.6, Path-X 87.8.
"""

from seqkit.nn import DSSConfig

from . import _lra

SOURCE = "ag1988/dss@777084e README LRA commands + configs/experiment/s4-lra-{task}.yaml (Gupta et al. 2022)"


def _dss(*, dropout: float = 0.0, dt_min: float = 1e-3, dt_max: float = 1e-1) -> DSSConfig:
    return DSSConfig(
        state_size=64,
        variant="softmax",
        bidirectional=False,
        dt_min=dt_min,
        dt_max=dt_max,
        activation="gelu",
        output="linear",
        dropout=dropout,
    )


def listops():
    return _lra.lra_recipe(
        "dss-listops", DESCRIPTIONS["listops"], "listops", _dss(),
        d_model=128, n_layers=6, norm="batch", prenorm=False, dropout=0.0,
        lr=0.01, weight_decay=0.01, ssm_lr=0.001, batch_size=50,
        warmup_steps=0, total_steps=96_000, eval_every=1920,
    )  # fmt: skip


def text():
    return _lra.lra_recipe(
        "dss-text", DESCRIPTIONS["text"], "text", _dss(),
        d_model=128, n_layers=4, norm="batch", prenorm=True, dropout=0.0,
        lr=0.01, weight_decay=0.0, ssm_lr=0.001, batch_size=50,
        warmup_steps=0, total_steps=20_000, pool="last", eval_every=500,
        data_options={"max_length": 2048},
    )  # fmt: skip


def retrieval():
    return _lra.lra_recipe(
        "dss-retrieval", DESCRIPTIONS["retrieval"], "retrieval", _dss(),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.002, weight_decay=0.0, ssm_lr=0.001, batch_size=64,
        warmup_steps=0, total_steps=57_450, eval_every=2298,
        data_options={"max_length": 4000},
    )  # fmt: skip


def image():
    return _lra.lra_recipe(
        "dss-image", DESCRIPTIONS["image"], "image", _dss(dropout=0.2),
        d_model=512, n_layers=6, norm="batch", prenorm=False, dropout=0.2,
        lr=0.004, weight_decay=0.01, ssm_lr=0.001, batch_size=50,
        warmup_steps=0, total_steps=180_000, eval_every=900,
    )  # fmt: skip


def pathfinder():
    return _lra.lra_recipe(
        "dss-pathfinder", DESCRIPTIONS["pathfinder"], "pathfinder", _dss(dropout=0.1),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.1,
        lr=0.004, weight_decay=0.0, ssm_lr=0.001, batch_size=100,
        warmup_steps=0, total_steps=320_000, pool="last", eval_every=1600,
    )  # fmt: skip


def pathx():
    return _lra.lra_recipe(
        "dss-pathx", DESCRIPTIONS["pathx"], "pathx", _dss(dt_min=1e-4, dt_max=1e-2),
        d_model=256, n_layers=6, norm="batch", prenorm=True, dropout=0.0,
        lr=0.0005, weight_decay=0.0, ssm_lr=0.001, batch_size=16,
        warmup_steps=0, total_steps=350_000, eval_every=10_000,
    )  # fmt: skip


DESCRIPTIONS = {
    "listops": "DSS (softmax) on LRA ListOps (generated, L=2048), the authors' README setting",
    "text": "DSS (softmax) on LRA Text (IMDb bytes, L=2048); needs the IMDb archive",
    "retrieval": "DSS dual encoder on LRA Retrieval (AAN pairs, 2x4000 bytes); needs LRA's TSVs",
    "image": "DSS (softmax) on LRA Image (gray CIFAR-10, L=1024); needs the CIFAR-10 archive",
    "pathfinder": "DSS (softmax) on Pathfinder-32 (L=1024, generated), the authors' README setting",
    "pathx": "DSS (softmax) on Path-X (128x128, L=16384, generated), the authors' README setting",
}

_BUILD = {
    "listops": listops,
    "text": text,
    "retrieval": retrieval,
    "image": image,
    "pathfinder": pathfinder,
    "pathx": pathx,
}
SPECS = _lra.family_specs("dss", "DSS", _BUILD, DESCRIPTIONS, SOURCE)
