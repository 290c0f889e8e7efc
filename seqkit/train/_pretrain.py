"""Masked-patch pretraining as a trainer objective (`trainer.objective=masked_patches`),
and starting a model from a pretrained run (`model.init_from=RUN_DIR`).

The objective is PIXEL's (Rust et al., "Language Modelling with Pixels", ICLR
2023; MAE's loss, He et al., CVPR 2022): per example, spans of about 25% of the
real patches are hidden ([`seqkit.nn.span_mask`][], spans of at most 6), the
model ([`seqkit.nn.PixelPretrainer`][]) predicts every patch's pixels, and the
example's loss is the mean squared error over its hidden patches against their
normalized pixels ([`seqkit.nn.masked_patch_loss`][]). The batch loss is the mean
of the examples' losses (MAE averages over every hidden patch of the batch; the
two differ only in how examples hiding different numbers of patches are
weighted). Evaluation hides spans drawn from a fixed key, so every evaluation
scores the same masks. Reconstruction has no accuracy: it is reported as NaN.
"""

import os
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, PRNGKeyArray

import seqkit.nn as snn

MASK_RATIO, MAX_SPAN = 0.25, 6  # PIXEL's span masking: R = 25%, spans of at most S = 6 patches
EVAL_MASK_SEED = 0


def masked_patch_objective(
    model: Any, state: eqx.nn.State, batch: Mapping[str, Array], key: PRNGKeyArray | None
) -> tuple[Array, Array, eqx.nn.State]:
    """Per-example masked-patch losses `(B,)`, NaN accuracies `(B,)` and the state.
    `key` None (evaluation): masks from a fixed key and no dropout."""
    if not isinstance(model, snn.PixelPretrainer):
        raise ValueError(
            f"trainer.objective=masked_patches trains a seqkit.nn.PixelPretrainer, got {type(model).__name__}"
        )
    patches = batch["inputs"]
    real = batch.get("mask")
    if real is None:
        real = jnp.ones(patches.shape[:2], bool)
    train = key is not None
    pred, hidden, state = snn.reconstruct_masked(
        model,
        state,
        patches,
        real,
        key if train else jr.key(EVAL_MASK_SEED),
        ratio=MASK_RATIO,
        max_span=MAX_SPAN,
        dropout=train,
    )
    loss = jax.vmap(snn.masked_patch_loss)(pred, patches.astype(pred.dtype), hidden, real)
    return loss, jnp.full(loss.shape, jnp.nan, loss.dtype), state


def check_patch_inputs(example: np.ndarray, data_name: str) -> None:
    """`masked_patches` needs real-valued patches `(N, D)`, `D >= 2`."""
    if example.ndim != 2 or not np.issubdtype(example.dtype, np.floating) or example.shape[1] < 2:
        raise ValueError(
            f"trainer.objective=masked_patches reconstructs real-valued patches, inputs (N, D) with "
            f"D >= 2 pixels; data.name={data_name} gives {example.dtype} {example.shape}: set "
            "data.patch_size (images, or text rendered as PIXEL renders it)"
        )


def _backbone(model: Any) -> Any:
    """The part of a model a pretrained run hands on: everything but the head."""
    if isinstance(model, snn.PixelPretrainer):
        model = model.encoder
    if not isinstance(model, snn.SequenceModel):
        raise ValueError(f"expected a SequenceModel or a PixelPretrainer, got {type(model).__name__}")
    return (model.encoder, model.cls_token, model.position_table, model.blocks, model.final_norm)


_BACKBONE = ("encoder", "cls_token", "position_table", "blocks", "final_norm")


def _named_arrays(backbone: tuple) -> list[tuple[str, Array]]:
    """The arrays of a `_backbone` tuple, each with its path (`blocks[0].norm.weight`)."""
    named = jax.tree_util.tree_flatten_with_path(eqx.filter(backbone, eqx.is_array))[0]
    return [(_BACKBONE[path[0].idx] + jax.tree_util.keystr(path[1:]), x) for path, x in named]


def transfer_backbone(model: Any, pretrained: Any, *, source: str = "the pretrained model") -> Any:
    """`model` with every array of its backbone (input projection, class token,
    position table, blocks, final norm: all but the head) taken from
    `pretrained` (a `SequenceModel`, or a `PixelPretrainer`'s encoder). The head
    keeps `model`'s fresh initialization; state indices stay `model`'s own.

    **Raises:** `ValueError` naming the first array whose shape or dtype differs.
    """
    target, given = _named_arrays(_backbone(model)), _named_arrays(_backbone(pretrained))
    for (name_a, a), (name_b, b) in zip(target, given, strict=False):
        if name_a != name_b:
            raise ValueError(
                f"{source} has a backbone of another layout (depth, mixers, pooling with a class token, "
                f"positions): its array {name_b} stands where this model has {name_a}"
            )
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"{source}: backbone array {name_a} is {b.dtype} {b.shape}, this model expects {a.dtype} "
                f"{a.shape} (same d_model, layers, mixers, patch size and length needed)"
            )
    if len(target) != len(given):
        longer, name = (
            ("it", given[len(target)][0])
            if len(given) > len(target)
            else ("this model", target[len(given)][0])
        )
        raise ValueError(
            f"{source} has {len(given)} backbone arrays, this model {len(target)}: the two differ in "
            f"layout (depth, mixers, pooling with a class token, positions); {longer} also has {name}"
        )
    leaves, treedef = jax.tree.flatten(_backbone(model))
    new = (x for _, x in given)
    parts = jax.tree.unflatten(treedef, [next(new) if eqx.is_array(x) else x for x in leaves])
    return eqx.tree_at(lambda m: _backbone(m), model, parts, is_leaf=lambda x: x is None)


def check_run_dir(run_dir: str) -> None:
    """A run directory to start from holds its configuration and a checkpoint.

    **Raises:** `FileNotFoundError` naming what is missing where."""
    from seqkit._paths import expand_path

    from ._loop import CHECKPOINT, CONFIG  # the loop imports this module

    path = expand_path(run_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no run directory at {path}; expected the --out of a `seqkit train` run")
    missing = [name for name in (CONFIG, CHECKPOINT) if not os.path.exists(os.path.join(path, name))]
    if missing:
        raise FileNotFoundError(f"{path} is not a run directory to start from: {', '.join(missing)} missing")
