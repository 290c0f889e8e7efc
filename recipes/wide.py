"""Wide single-layer Transformers on the LRA text tasks: `wide-listops`, `wide-text`,
`wide-retrieval`.

Brown, Zhao, Shumailov and Mullins ("Wide Attention Is The Way Forward For
Transformers?", 2022) trade depth for width: the number of layers and the number of
attention heads per layer change together while the total number of heads and
every other hyperparameter stay fixed; their widest model puts all the heads in a
single layer. Here the deep model is LRA's base Transformer (`transformer-TASK`,
google-research/long-range-arena@cd31e5c, see `recipes/transformers_lra.py`), and
the wide one is the same recipe with one layer holding all `n_layers × num_heads`
of its heads:

| recipe | LRA Transformer: d × layers, heads | wide: d × layers, heads | head width (deep → wide) |
|---|---|---|---|
| `wide-listops` | 512 × 4, 8 | 512 × 1, 32 | 64 → 16 |
| `wide-text` | 256 × 4, 4 | 256 × 1, 16 | 64 → 16 |
| `wide-retrieval` | 128 × 4, 4 | 128 × 1, 16 | 32 → 8 |

Everything else is LRA's published Transformer setting of the task, unchanged
(FFN multiple, dropout, CLS pooling, sinusoidal positions, optimizer, schedule,
batch, lengths; the list and the differences seqkit cannot express are in
`recipes/transformers_lra.py`).

seqkit's choice: the head width. seqkit's `MultiHeadAttention` splits `d_model`
among its heads (head width `d_model / num_heads`, Q/K/V `d_model` wide), so with
`d_model` kept, the wide layer's heads are `num_heads_deep / total` as wide as the
deep model's, and its attention has the parameters of one deep layer. Keeping
`d_model` is what "every other hyperparameter fixed" asks; the paper's own
attention code may size each head otherwise.
"""

import dataclasses

from seqkit.train import Recipe

from . import _lra, transformers_lra
from ._spec import RecipeSpec

TASKS = ("listops", "text", "retrieval")


def wide(r: Recipe) -> Recipe:
    """`r` with its layers folded into one: `n_layers = 1` and each mixer's
    `num_heads` multiplied by the old `n_layers`."""
    n = r.model.n_layers
    mixers = [dataclasses.replace(m, num_heads=m.num_heads * n) for m in r.model.mixers]
    return dataclasses.replace(r, model=dataclasses.replace(r.model, n_layers=1, mixers=mixers, pattern=None))


def _description(task: str) -> str:
    title = _lra.TASK_TITLES[task]
    return f"Wide single-layer Transformer on LRA {title}: LRA's Transformer, all heads in 1 layer"


def build(task: str) -> Recipe:
    """The recipe `wide-TASK`: `transformer-TASK` with its heads in one layer."""
    r = wide(transformers_lra.build("transformer", task))
    return dataclasses.replace(r, name=f"wide-{task}", description=_description(task))


def smoke(r: Recipe) -> Recipe:
    """`_lra.smoke` (16 wide, 1 layer, 2 steps of 2 on 16/8/8 examples, Text and
    Retrieval cut to 128 bytes) with 4 heads of 4: the wide shape, narrow heads."""
    r = _lra.smoke(r)
    mixers = [dataclasses.replace(m, num_heads=4) for m in r.model.mixers]
    return dataclasses.replace(r, model=dataclasses.replace(r.model, mixers=mixers))


SPECS = [
    RecipeSpec(
        name=f"wide-{task}",
        description=_description(task),
        build=lambda task=task: build(task),
        presets={"smoke": smoke},
        task=_lra.TASK_TITLES[task],
        model="Wide Transformer (1 layer)",
        source=f"Brown et al. 2022 (wide attention) on {transformers_lra._source('transformer', task)}",
    )
    for task in TASKS
]
