"""seqkit.recipes: one small Python file per training recipe, and their registry.

Each recipe module defines `NAME`, `DESCRIPTION`, `recipe() -> Recipe` (the
published hyperparameters) and `PRESETS`, a dict of functions `Recipe -> Recipe`.
`get(name, preset)` returns a ready `seqkit.train.Recipe`; `seqkit train NAME
--preset P --set key=value` builds on it.
"""

import dataclasses
import types

from seqkit.train import Recipe, RecipeError

from . import mega, s4_pathfinder, s4_pathx, s4_scifar, spade

_MODULES: tuple[types.ModuleType, ...] = (s4_pathfinder, s4_scifar, s4_pathx, spade, mega)
RECIPES: dict[str, types.ModuleType] = {m.NAME: m for m in _MODULES}
DEFAULT = "s4-pathfinder"
DEFAULT_PRESET = "cpu"


def names() -> list[str]:
    """The recipe names."""
    return sorted(RECIPES)


def describe() -> list[tuple[str, str, list[str]]]:
    """`(name, one-line description, presets)` for every recipe."""
    return [(n, RECIPES[n].DESCRIPTION, ["default", *RECIPES[n].PRESETS]) for n in names()]


def get(name: str, preset: str = "default") -> Recipe:
    """The recipe `name` with `preset` applied (`"default"`: the published setting)."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; available: {', '.join(names())}")
    module = RECIPES[name]
    recipe = module.recipe()
    if preset == "default":
        return recipe
    if preset not in module.PRESETS:
        accepted = ", ".join(["default", *module.PRESETS])
        raise RecipeError(f"unknown preset {preset!r} for {name}; available: {accepted}")
    return dataclasses.replace(module.PRESETS[preset](recipe), preset=preset)
