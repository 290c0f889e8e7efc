"""What the LRA recipes of every family share: the six tasks' data, one builder that
writes a published row down as a `Recipe`, the seconds-long `smoke` preset, and
the minutes-long `cpu` preset of the two generated tasks.

Tasks (Tay et al., "Long Range Arena", ICLR 2021), inputs as the SSM and Mega
papers fed them:

| task | dataset | inputs | classes |
|---|---|---|---|
| `listops` | `listops` (generated, padded to 2048) | tokens, vocab 16, mask | 10 |
| `text` | `imdb` (bytes, needs the IMDb archive) | tokens, vocab 257, mask | 2 |
| `retrieval` | `aan` (byte pairs, needs LRA's TSVs) | 2 × tokens, vocab 257, masks (`model.dual`) | 2 |
| `image` | `cifar_gray` (needs the CIFAR-10 archive) | one normalized gray value per pixel | 10 |
| `pathfinder` | `pathfinder32`, contour length 14 | one value in [0, 1] per pixel | 2 |
| `pathx` | `pathx` (128 × 128), contour length 14 | one value in [0, 1] per pixel | 2 |
"""

import dataclasses
from collections.abc import Callable

from seqkit.nn import MegaConfig, MixerConfig
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._presets import cpu_listops, cpu_pathfinder, shrink
from ._spec import RecipeSpec

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")

# The task names `seqkit recipes` shows.
TASK_TITLES = {
    "listops": "ListOps",
    "text": "Text (IMDb)",
    "retrieval": "Retrieval (AAN)",
    "image": "Image (CIFAR-10 gray)",
    "pathfinder": "Pathfinder",
    "pathx": "Path-X",
}


def data(task: str, **options) -> DataConfig:
    """The `DataConfig` of an LRA task; `options` sets further fields (e.g. `max_length`)."""
    base = {
        "listops": dict(name="listops", n_classes=10, vocab_size=16),
        "text": dict(name="imdb", n_classes=2, vocab_size=257),
        "retrieval": dict(name="aan", n_classes=2, vocab_size=257),
        "image": dict(name="cifar_gray", n_classes=10),
        "pathfinder": dict(name="pathfinder32", contour_length=14, n_classes=2),
        "pathx": dict(name="pathx", contour_length=14, n_classes=2),
    }[task]
    return DataConfig(**{**base, **options})


def lra_recipe(
    name: str,
    description: str,
    task: str,
    mixer: MixerConfig,
    *,
    d_model: int,
    n_layers: int,
    norm: str,
    prenorm: bool,
    dropout: float,
    lr: float,
    weight_decay: float,
    ssm_lr: float,
    batch_size: int,
    warmup_steps: int,
    total_steps: int,
    ssm_weight_decay: float = 0.0,
    decay_norms_and_biases: bool = True,
    pool: str = "mean",
    ffn_mult: int = 0,
    ffn_activation: str = "gelu",
    b1: float = 0.9,
    b2: float = 0.999,
    grad_clip: float = 0.0,
    eval_every: int = 1000,
    data_options: dict | None = None,
) -> Recipe:
    """One published row as a `Recipe` (Retrieval gets `model.dual=True`)."""
    return Recipe(
        name=name,
        description=description,
        model=ModelConfig(
            d_model=d_model,
            n_layers=n_layers,
            mixers=[mixer],
            norm=norm,
            prenorm=prenorm,
            dropout=dropout,
            ffn_mult=ffn_mult,
            ffn_activation=ffn_activation,
            pool=pool,
            dual=task == "retrieval",
        ),
        data=data(task, **(data_options or {})),
        optimizer=OptimizerConfig(
            lr=lr,
            weight_decay=weight_decay,
            ssm_lr=ssm_lr,
            ssm_weight_decay=ssm_weight_decay,
            decay_norms_and_biases=decay_norms_and_biases,
            b1=b1,
            b2=b2,
            grad_clip=grad_clip,
        ),
        schedule=ScheduleConfig(warmup_steps=warmup_steps, total_steps=total_steps),
        trainer=TrainerConfig(
            batch_size=batch_size, eval_every=eval_every, checkpoint_every=1000, log_every=50
        ),
    )


# Text and Retrieval smoke runs keep this many bytes per document.
SMOKE_MAX_LENGTH = 128


def smoke(r: Recipe) -> Recipe:
    """Seconds on a CPU: a 16-wide 1-layer model, 2 steps of 2 on 16/8/8 examples
    (Text and Retrieval cut to 128 bytes; the other tasks' lengths are the data's).
    Mega's widths follow the model's (`z = d/2`, `v = 2d`)."""
    short = {"max_length": SMOKE_MAX_LENGTH} if r.data.name in ("imdb", "aan") else {}
    r = shrink(
        r,
        d_model=16,
        n_layers=1,
        sizes=(16, 8, 8),
        batch_size=2,
        warmup_steps=1,
        total_steps=2,
        eval_every=2,
        checkpoint_every=2,
        log_every=1,
        **short,
    )
    return map_mixers(r, _mega_widths_follow_model)


Preset = Callable[[Recipe], Recipe]

# The generated tasks' CPU jobs: one setting per task for every family, so that
# their results compare.
_CPU = {"listops": cpu_listops, "pathfinder": cpu_pathfinder}


def presets(task: str, smoke_preset: Preset = smoke) -> dict[str, Preset]:
    """A family's presets for `task`: `smoke`, and on ListOps and Pathfinder (the
    tasks seqkit generates) `cpu`, the task's CPU job (`cpu_listops`:
    64 wide, 4 layers, 800 steps of 32 on LRA's trees; `cpu_pathfinder`: 32 wide, 3
    layers, 400 steps of 32 at contour length 6). The published optimizer,
    mixer options, heads, norms and pooling stay; Mega's widths follow the model's."""
    out = {"smoke": smoke_preset}
    if task in _CPU:
        out["cpu"] = lambda r, shrink_to=_CPU[task]: map_mixers(shrink_to(r), _mega_widths_follow_model)
    return out


def _mega_widths_follow_model(m: MixerConfig) -> MixerConfig:
    return dataclasses.replace(m, z_dim=None, v_dim=None) if isinstance(m, MegaConfig) else m


def map_mixers(r: Recipe, f: Callable[[MixerConfig], MixerConfig]) -> Recipe:
    """`r` with every mixer config replaced by `f(config)`."""
    return dataclasses.replace(r, model=dataclasses.replace(r.model, mixers=[f(m) for m in r.model.mixers]))


# The file names of the tasks in the S4 repository's `configs/experiment/lra/`
# (`s4-lra-{name}.yaml`), which the SSM families' configs follow.
S4_CONFIG_NAME = {"text": "imdb", "retrieval": "aan", "image": "cifar"}


def family_specs(
    family: str,
    model: str,
    builds: dict[str, Callable[[], Recipe]],
    descriptions: dict[str, str],
    source: str,
) -> list[RecipeSpec]:
    """One `RecipeSpec` per task of a family whose settings come from S4-style
    per-task config files: `FAMILY-TASK`, the task's presets, and `source` with
    `{task}` filled in by the config's file name (`imdb`, `aan`, `cifar`, ...)."""
    return [
        RecipeSpec(
            name=f"{family}-{task}",
            description=descriptions[task],
            build=build,
            presets=presets(task),
            task=TASK_TITLES[task],
            model=model,
            source=source.format(task=S4_CONFIG_NAME.get(task, task)),
        )
        for task, build in builds.items()
    ]
