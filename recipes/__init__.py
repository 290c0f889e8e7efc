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
import types
from collections.abc import Callable

from seqkit.train import Recipe, RecipeError

from . import mega, s4_pathfinder, s4_pathx, s4_scifar, spade


@dataclasses.dataclass(frozen=True)
class RecipeSpec:
    """One recipe: its name (`FAMILY-TASK`), what it trains, where its settings come from.

    - `name`: e.g. `"s4d-listops"`.
    - `description`: one line.
    - `build`: `() -> Recipe`, the published setting.
    - `presets`: `{name: Recipe -> Recipe}`; every recipe has `smoke`.
    - `task`, `model`: e.g. `"ListOps"`, `"S4D"`.
    - `source`: the paper table or config the values come from.
    """

    name: str
    description: str
    build: Callable[[], Recipe]
    presets: dict[str, Callable[[Recipe], Recipe]]
    task: str = ""
    model: str = ""
    source: str = ""


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


_MODULES: tuple[types.ModuleType, ...] = (s4_pathfinder, s4_scifar, s4_pathx, spade, mega)
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
        raise RecipeError(f"unknown recipe {name!r}; available: {', '.join(names())}")
    spec = SPECS[name]
    recipe = spec.build()
    if preset == "default":
        return recipe
    if preset not in spec.presets:
        accepted = ", ".join(["default", *spec.presets])
        raise RecipeError(f"unknown preset {preset!r} for {name}; available: {accepted}")
    return dataclasses.replace(spec.presets[preset](recipe), preset=preset)
