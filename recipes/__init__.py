"""seqkit.recipes: training recipes with published hyperparameters, and their registry.

A recipe module either defines one recipe — `NAME`, `DESCRIPTION`,
`recipe() -> Recipe` (the published hyperparameters) and `PRESETS`, a dict of
functions `Recipe -> Recipe` — or a family's table of them as `SPECS`, a list of
[`RecipeSpec`][]s (one per task, e.g. `s4d-listops`, `s4d-text`, ...).
`get(name, preset)` returns a ready `seqkit.train.Recipe`; `seqkit train NAME
--preset P --set key=value` builds on it; `seqkit recipes` lists them with task,
model and source.
"""

import dataclasses
import difflib
import types

from seqkit.train import Recipe, RecipeError

from . import (
    dss_lra,
    hierarchical,
    lm,
    mega,
    mega_lra,
    pixel,
    pixel_pretrain,
    s4_lra,
    s4_pathfinder,
    s4_pathx,
    s4_scifar,
    s4d_lra,
    spade,
    transformers_lra,
    vit,
    wide,
)
from ._spec import RecipeSpec as RecipeSpec


def _from_module(m: types.ModuleType) -> RecipeSpec:
    """The spec of a one-recipe module (`NAME`, `DESCRIPTION`, `recipe`, `PRESETS`)."""
    return RecipeSpec(
        name=m.NAME,
        description=m.DESCRIPTION,
        build=m.recipe,
        presets=m.PRESETS,
        task=getattr(m, "TASK", ""),
        model=getattr(m, "MODEL", ""),
        source=getattr(m, "SOURCE", ""),
    )


def _specs(modules: tuple[types.ModuleType, ...]) -> dict[str, RecipeSpec]:
    specs: dict[str, RecipeSpec] = {}
    for m in modules:
        for spec in getattr(m, "SPECS", None) or [_from_module(m)]:
            if spec.name in specs:
                raise RuntimeError(f"two recipes named {spec.name!r} ({m.__name__})")
            if "smoke" not in spec.presets:
                raise RuntimeError(f"recipe {spec.name!r} has no smoke preset")
            specs[spec.name] = spec
    return specs


_MODULES: tuple[types.ModuleType, ...] = (
    s4_pathfinder,
    s4_scifar,
    s4_pathx,
    spade,
    mega,
    s4_lra,
    s4d_lra,
    dss_lra,
    mega_lra,
    transformers_lra,
    vit,
    wide,
    lm,
    hierarchical,
    pixel,
    pixel_pretrain,
)
SPECS: dict[str, RecipeSpec] = _specs(_MODULES)
DEFAULT = "s4-pathfinder"
DEFAULT_PRESET = "cpu"


def names() -> list[str]:
    """The recipe names."""
    return sorted(SPECS)


def describe() -> list[tuple[str, str, list[str]]]:
    """`(name, one-line description, presets)` for every recipe."""
    return [(n, SPECS[n].description, ["default", *SPECS[n].presets]) for n in names()]


def get(name: str, preset: str = "default") -> Recipe:
    """The recipe `name` with `preset` applied (`"default"`: the published setting)."""
    if name not in SPECS:
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise RecipeError(f"unknown recipe {name!r}; {hint}`seqkit recipes` lists all {len(SPECS)}")
    spec = SPECS[name]
    recipe = spec.build()
    if preset == "default":
        return recipe
    if preset not in spec.presets:
        accepted = ", ".join(["default", *spec.presets])
        raise RecipeError(f"unknown preset {preset!r} for {name}; available: {accepted}")
    return dataclasses.replace(spec.presets[preset](recipe), preset=preset)
