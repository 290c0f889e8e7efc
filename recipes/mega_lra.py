"""Mega and Mega-chunk on the six LRA tasks: `mega-listops`, `mega-text`,
`mega-retrieval`, `mega-image`, `mega-pathfinder`, `mega-pathx`, and
`mega-chunk-listops`, ..., `mega-chunk-pathx`.

`mega-pathfinder` is the recipe `mega` (`recipes/mega.py`) under its `FAMILY-TASK`
name: the same builder and values; `mega` keeps working.

Published setting: Ma, Zhou, Kong, He, Gui, Neubig, May and Zettlemoyer, "Mega:
Moving Average Equipped Gated Attention", ICLR 2023, as the authors run it:
facebookresearch/mega at aeaa4b4, the commands of `examples/mega/README.lra.md`
and the `mega_lra_*` architectures of `fairseq/models/lra/model.py`. Every task:
EMA dimension 16, SiLU, the FFN as wide as `v` (`ffn_mult=2`), simple
relative-position bias, mean pooling, Adam β = (0.9, 0.98), ε 1e-8, decoupled
weight decay on every parameter (EMA included: `ssm_lr = lr`), gradient clipping
1.0, linear warmup. As the code's EMA layer: a SiLU on the EMA's output
(`ema_silu`, absent from the paper's equations) and the EMA kernel truncated to
its first 1024 taps (Path-X 4096; `truncation`, no effect at L = 1024).

| task | d × layers | z / v | attention | norm | dropout | lr / wd | batch | warmup / total |
|---|---|---|---|---|---|---|---|---|
| ListOps | 80 × 6 | 64 / 160 | softmax | layer, post | 0.1 | 0.001 / 0.01 | 64 | 3k / 90k |
| Text | 128 × 4 | 64 / 256 | softmax | scale, post | 0.1 | 0.004 / 0.01 | 25 × 2 = 50 | 10k / 25k |
| Retrieval | 128 × 6 | 64 / 256 | softmax | scale, post | 0.1 | 0.003 / 0.04 | 8 × 8 = 64 | 10k / 91,960 |
| Image | 160 × 8 | 96 / 320 | laplace | batch, pre | 0 | 0.01 / 0.02 | 50 | 9k / 180k |
| Pathfinder | 128 × 6 | 64 / 256 | laplace | batch, pre | 0 | 0.01 / 0.01 | 128 | 50k / 250k |
| Path-X | 64 × 4 | 32 / 128 | laplace | sync batch, pre | 0 | 0.01 / 0.01 | 2 × 8 × 8 GPUs | 25k / 125k |

Mega attends over the whole sequence (`--chunk-size -1`); Mega-chunk over chunks
of c = 128 (the Mega-chunk setting; the state-spaces Mega ablations name the same
c = 128 for LRA Image). The README leaves the chunk size to the reader; a
different Path-X chunk, if the paper used one, could not be checked here.

Differences seqkit cannot express:

- Schedule: linear decay to 0 after a linear warmup from 1e-7 (Path-X: a
  quadratic warmup, `--warmup-power 2`); seqkit decays on a cosine.
- Norms: Text and Retrieval use ScaleNorm, which seqkit lacks: LayerNorm here.
  Path-X's synchronized BatchNorm is seqkit's BatchNorm over the batch.
- Dropout 0.1 (ListOps, Text, Retrieval) acts here on Mega's `X'` (the EMA
  output) and `Ĥ`, as in the code; the code also drops the embeddings and the FFN
  output, seqkit's block dropout would drop more (the whole update and the FFN
  hidden), so it stays 0.
- Head: the code's classifier has a hidden layer (`Linear → GELU → Linear`), and
  its Retrieval head reads `[u, v]`; seqkit's head is one linear map, and its
  `DualEncoder` reads `[u, v, u⊙v, u−v]`.
- Inputs: pixels normalized with (0.48, 0.24) for Image (as seqkit's gray values,
  122.6 / 61 on 0..255) and (0.5, 0.5) for Pathfinder/Path-X ([−1, 1]; seqkit
  [0, 1]); Text ≤ 4000 tokens (the architecture's 4002 positions).
- Pre-norm blocks gate the normalized input (see `seqkit.nn.Mega`).
"""

import dataclasses

from seqkit.nn import MegaConfig
from seqkit.train import Recipe

from . import _lra, mega
from ._spec import RecipeSpec

SOURCE = "facebookresearch/mega@aeaa4b4 examples/mega/README.lra.md + mega_lra_{arch} (Ma et al. 2023)"
CHUNK = 128


def _mega(
    z: int, v: int, attention: str, *, dropout: float = 0.0, chunk: int | None = None, truncation: int = 1024
) -> MegaConfig:
    return MegaConfig(
        z_dim=z,
        v_dim=v,
        ema_ndim=16,
        chunk_size=chunk,
        attention=attention,
        relative_position="simple",
        dropout=dropout,
        ema_silu=True,
        truncation=truncation,
    )


_COMMON = dict(ffn_mult=2, ffn_activation="silu", b1=0.9, b2=0.98, grad_clip=1.0, pool="mean")


def listops(chunk: int | None = None) -> Recipe:
    return _lra.lra_recipe(
        _name("listops", chunk), _description("listops", chunk), "listops",
        _mega(64, 160, "softmax", dropout=0.1, chunk=chunk),
        d_model=80, n_layers=6, norm="layer", prenorm=False, dropout=0.0,
        lr=0.001, weight_decay=0.01, ssm_lr=0.001, ssm_weight_decay=0.01, batch_size=64,
        warmup_steps=3000, total_steps=90_000, eval_every=1500, **_COMMON,
    )  # fmt: skip


def text(chunk: int | None = None) -> Recipe:
    return _lra.lra_recipe(
        _name("text", chunk), _description("text", chunk), "text",
        _mega(64, 256, "softmax", dropout=0.1, chunk=chunk),
        d_model=128, n_layers=4, norm="layer", prenorm=False, dropout=0.0,
        lr=0.004, weight_decay=0.01, ssm_lr=0.004, ssm_weight_decay=0.01, batch_size=50,
        warmup_steps=10_000, total_steps=25_000, eval_every=500,
        data_options={"max_length": 4000}, **_COMMON,
    )  # fmt: skip


def retrieval(chunk: int | None = None) -> Recipe:
    return _lra.lra_recipe(
        _name("retrieval", chunk), _description("retrieval", chunk), "retrieval",
        _mega(64, 256, "softmax", dropout=0.1, chunk=chunk),
        d_model=128, n_layers=6, norm="layer", prenorm=False, dropout=0.0,
        lr=0.003, weight_decay=0.04, ssm_lr=0.003, ssm_weight_decay=0.04, batch_size=64,
        warmup_steps=10_000, total_steps=91_960, eval_every=2298,
        data_options={"max_length": 4000}, **_COMMON,
    )  # fmt: skip


def image(chunk: int | None = None) -> Recipe:
    return _lra.lra_recipe(
        _name("image", chunk), _description("image", chunk), "image",
        _mega(96, 320, "laplace", chunk=chunk),
        d_model=160, n_layers=8, norm="batch", prenorm=True, dropout=0.0,
        lr=0.01, weight_decay=0.02, ssm_lr=0.01, ssm_weight_decay=0.02, batch_size=50,
        warmup_steps=9000, total_steps=180_000, eval_every=900, **_COMMON,
    )  # fmt: skip


def pathfinder(chunk: int | None = None) -> Recipe:
    """`recipes/mega.py`'s published setting, renamed (and chunked for Mega-chunk)."""
    r = mega.recipe()
    r = dataclasses.replace(r, name=_name("pathfinder", chunk), description=_description("pathfinder", chunk))
    return _lra.map_mixers(r, lambda m: dataclasses.replace(m, chunk_size=chunk))


def pathx(chunk: int | None = None) -> Recipe:
    return _lra.lra_recipe(
        _name("pathx", chunk), _description("pathx", chunk), "pathx",
        _mega(32, 128, "laplace", chunk=chunk, truncation=4096),
        d_model=64, n_layers=4, norm="batch", prenorm=True, dropout=0.0,
        lr=0.01, weight_decay=0.01, ssm_lr=0.01, ssm_weight_decay=0.01, batch_size=128,
        warmup_steps=25_000, total_steps=125_000, eval_every=1250, **_COMMON,
    )  # fmt: skip


def _name(task: str, chunk: int | None) -> str:
    return f"mega-{task}" if chunk is None else f"mega-chunk-{task}"


def _description(task: str, chunk: int | None) -> str:
    text = DESCRIPTIONS[task]
    return text if chunk is None else text.replace("Mega ", f"Mega-chunk (c={chunk}) ", 1)


DESCRIPTIONS = {
    "listops": "Mega on LRA ListOps (generated, L=2048), the authors' README setting",
    "text": "Mega on LRA Text (IMDb bytes, L=4000); needs the IMDb archive",
    "retrieval": "Mega dual encoder on LRA Retrieval (AAN pairs, 2x4000 bytes); needs LRA's TSVs",
    "image": "Mega on LRA Image (gray CIFAR-10, L=1024); needs the CIFAR-10 archive",
    "pathfinder": "Mega on Pathfinder-32 (L=1024, generated), the authors' README setting",
    "pathx": "Mega on Path-X (128x128, L=16384, generated), the authors' README setting",
}

_BUILD = {
    "listops": listops,
    "text": text,
    "retrieval": retrieval,
    "image": image,
    "pathfinder": pathfinder,
    "pathx": pathx,
}
_ARCH = {"listops": "listop", "text": "imdb", "retrieval": "aan", "image": "cifar10", "pathfinder": "pf32"}


def smoke_pathx(r: Recipe) -> Recipe:
    """`smoke`, with attention in chunks of 128: attention over all 16384 positions
    does not fit a CPU's memory."""
    return _lra.map_mixers(_lra.smoke(r), lambda m: dataclasses.replace(m, chunk_size=CHUNK))


def _spec(task: str, chunk: int | None) -> RecipeSpec:
    name = _name(task, chunk)
    presets = _lra.presets(task, smoke_pathx if task == "pathx" else _lra.smoke)
    return RecipeSpec(
        name=name,
        description=_description(task, chunk),
        build=lambda: _BUILD[task](chunk),
        presets=presets,
        task=_lra.TASK_TITLES[task],
        model="Mega" if chunk is None else "Mega-chunk",
        source=SOURCE.format(arch=_ARCH.get(task, "pf128")),
    )


SPECS = [_spec(task, chunk) for chunk in (None, CHUNK) for task in _BUILD]
