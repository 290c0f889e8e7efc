"""`RecipeSpec`, in a file of its own so that a family's module can build its `SPECS`
while the registry (`seqkit.recipes`) imports it."""

import dataclasses
from collections.abc import Callable

from seqkit.train import Recipe


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
