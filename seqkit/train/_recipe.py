"""Recipes: a plain dataclass tree (model, data, optimizer, schedule, trainer) with
`build()`, and `--set key=value` overrides with type checking."""

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax.random as jr
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from seqkit import nn as snn, ssm

from ._optim import make_optimizer


class RecipeError(ValueError):
    """A recipe, preset, key or value that is not accepted (a one-line message)."""


@dataclasses.dataclass
class ModelConfig:
    """The `SequenceModel`: SSM mixers in residual blocks (SPEC §6)."""

    mixer: Literal["s4", "s4d", "dss"] = "s4"
    d_model: int = 256
    n_layers: int = 6
    state_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True
    norm: Literal["layer", "batch"] = "batch"
    prenorm: bool = True
    dropout: float = 0.0
    ffn_mult: int = 0
    pool: Literal["mean", "last", "cls"] = "mean"
    activation: Literal["gelu", "relu", "silu", "identity"] = "gelu"
    output: Literal["glu", "linear"] = "glu"


@dataclasses.dataclass
class DataConfig:
    """The data source (`seqkit.data.make_source`) and its splits."""

    name: str = "pathfinder32"
    contour_length: int | None = None
    data_dir: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    n_classes: int = 2
    vocab_size: int = 256
    worker_count: int = 0
    memory_cache: bool = False


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW with parameter groups: SSM parameters (Λ, p, B, log Δ) at `ssm_lr`."""

    lr: float = 0.004
    weight_decay: float = 0.05
    ssm_lr: float = 0.001
    ssm_weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 0.0


@dataclasses.dataclass
class ScheduleConfig:
    """Linear warmup then cosine decay, stepped per optimizer step."""

    warmup_steps: int = 1000
    total_steps: int = 10000


@dataclasses.dataclass
class TrainerConfig:
    """The training loop: batch size, length, evaluation, checkpoints, logging."""

    batch_size: int = 64
    steps: int | None = None
    eval_every: int = 1000
    eval_batch_size: int | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0


class MemoryCache:
    """A source that keeps every example it has produced (generated sets are then
    generated once, not once per epoch). For splits that fit in memory."""

    def __init__(self, source: Any):
        self.source = source
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        if i not in self.cache:
            self.cache[i] = self.source[i]
        return self.cache[i]

    def __getstate__(self):  # workers get the source, not the cache
        return {"source": self.source, "cache": {}}


class Built(NamedTuple):
    """What `Recipe.build()` returns."""

    model: eqx.Module
    state: eqx.nn.State
    optimizer: optax.GradientTransformation
    sources: dict[str, Any]


@dataclasses.dataclass
class Recipe:
    """A training recipe: everything a run needs, as plain data.

    Edit it in code (`dataclasses.replace`) or with `override(recipe, ["model.n_layers=4"])`;
    `build()` makes the model, its state, the optimizer and the data sources.
    """

    name: str = "custom"
    description: str = ""
    preset: str = "default"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    @property
    def steps(self) -> int:
        return self.trainer.steps if self.trainer.steps is not None else self.schedule.total_steps

    def make_sources(self) -> dict[str, Any]:
        """The train/val/test sources from `seqkit.data.make_source`."""
        try:
            from seqkit.data import make_source
        except ImportError as e:  # the data pipelines are an optional part of an install
            raise RecipeError(f"seqkit.data.make_source is not available: {e}") from None
        d = self.data
        options = {} if d.contour_length is None else {"contour_length": d.contour_length}
        sizes = {"train": d.train_size, "val": d.val_size, "test": d.test_size}
        sources = {
            split: make_source(d.name, split, data_dir=d.data_dir, seed=d.seed, size=size, **options)
            for split, size in sizes.items()
        }
        if d.memory_cache:
            sources = {k: MemoryCache(v) for k, v in sources.items()}
        return sources

    def build_model(
        self, example_inputs: np.ndarray, *, key: PRNGKeyArray
    ) -> tuple[eqx.Module, eqx.nn.State]:
        """The model for inputs shaped like `example_inputs` (one example)."""
        m = self.model
        x = np.asarray(example_inputs)
        L = x.shape[0] + (1 if m.pool == "cls" else 0)
        if np.issubdtype(x.dtype, np.integer):
            enc = {"vocab_size": self.data.vocab_size}
        elif x.ndim == 2:
            enc = {"d_in": x.shape[1]}
        else:
            raise RecipeError(f"expected examples of shape (L, C) or integer (L,), got {x.dtype} {x.shape}")

        def mixer(i: int, k: PRNGKeyArray):
            k1, k2 = jr.split(k)
            common = dict(bidirectional=m.bidirectional, dt_min=m.dt_min, dt_max=m.dt_max, key=k1)
            if m.mixer == "s4":
                core = ssm.S4(m.d_model, m.state_size, l_max=L, **common)
            elif m.mixer == "s4d":
                core = ssm.S4D(m.d_model, m.state_size, **common)
            else:
                core = ssm.DSS(m.d_model, m.state_size, **common)
            return snn.SSMLayer(core, activation=m.activation, output=m.output, dropout=m.dropout, key=k2)

        return eqx.nn.make_with_state(snn.SequenceModel)(
            d_model=m.d_model,
            n_classes=self.data.n_classes,
            n_layers=m.n_layers,
            mixer=mixer,
            norm=m.norm,
            prenorm=m.prenorm,
            dropout=m.dropout,
            ffn_mult=m.ffn_mult,
            pool=m.pool,
            key=key,
            **enc,
        )

    def build_optimizer(self) -> optax.GradientTransformation:
        o, s = self.optimizer, self.schedule
        return make_optimizer(
            learning_rate=o.lr,
            weight_decay=o.weight_decay,
            ssm_learning_rate=o.ssm_lr,
            ssm_weight_decay=o.ssm_weight_decay,
            warmup_steps=s.warmup_steps,
            total_steps=s.total_steps,
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            grad_clip=o.grad_clip or None,
        )

    def build(self, *, sources: Mapping[str, Any] | None = None, key: PRNGKeyArray | None = None) -> Built:
        """Model (with state), optimizer and data sources.

        **Arguments:** `sources`, a `{"train", "val", "test"}` mapping to use instead
        of `seqkit.data.make_source`; `key`, the model's init key (default: from
        `trainer.seed`).
        """
        srcs = dict(sources) if sources is not None else self.make_sources()
        if key is None:
            key = init_key(self.trainer.seed)
        model, state = self.build_model(srcs["train"][0]["inputs"], key=key)
        return Built(model, state, self.build_optimizer(), srcs)


def init_key(seed: int) -> PRNGKeyArray:
    """The model-initialization key of a run with this seed."""
    return jr.fold_in(jr.key(seed), 0)


def step_key(seed: int, step: int) -> PRNGKeyArray:
    """The dropout key of optimizer step `step`: a pure function of (seed, step)."""
    return jr.fold_in(jr.fold_in(jr.key(seed), 1), step)


# --- overrides --------------------------------------------------------------------------


def _parse(text: str, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, where)
            except RecipeError as e:
                errors.append(str(e))
        raise RecipeError(errors[0] if errors else f"{where}: cannot parse {text!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise RecipeError(f"{where}: expected one of {', '.join(map(str, choices))}; got {text!r}")
        return text
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise RecipeError(f"{where}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)  # accept 1e4 for step counts
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
            raise RecipeError(f"{where}: expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise RecipeError(f"{where}: expected a float, got {text!r}") from None
    if tp is str:
        return text
    raise RecipeError(f"{where}: cannot set a value of type {tp}")


def override(recipe: Recipe, assignments: Sequence[str]) -> Recipe:
    """A copy of `recipe` with `key=value` edits applied (`model.n_layers=4`).

    Values are parsed by the field's type (int, float, bool, str, a `Literal`'s
    choices, `none` for optional fields). An unknown key raises `RecipeError` naming
    the keys accepted at that level.
    """
    for assignment in assignments:
        if "=" not in assignment:
            raise RecipeError(f"expected key=value, got {assignment!r}")
        path, text = assignment.split("=", 1)
        recipe = _set(recipe, path.strip().split("."), text, prefix="")
    return recipe


def _set(node: Any, keys: list[str], text: str, *, prefix: str) -> Any:
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    key = keys[0]
    where = prefix + key
    if key not in names:
        level = f"under {prefix[:-1]!r}" if prefix else "at the top level"
        raise RecipeError(f"unknown key {where!r}; accepted {level}: {', '.join(names)}")
    value = getattr(node, key)
    if dataclasses.is_dataclass(value):
        if len(keys) == 1:
            sub = ", ".join(f.name for f in dataclasses.fields(value))
            raise RecipeError(f"{where!r} is a section; set one of its keys: {where}.KEY ({sub})")
        new = _set(value, keys[1:], text, prefix=where + ".")
    else:
        if len(keys) > 1:
            raise RecipeError(f"{where!r} is a value, not a section; use {where}=VALUE")
        new = _parse(text, hints[key], where)
    return dataclasses.replace(node, **{key: new})


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain JSON-ready data."""
    return dataclasses.asdict(recipe)


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Inverse of `recipe_to_dict` (unknown keys are an error)."""

    def build(cls, d):
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise RecipeError(
                f"unknown keys {sorted(unknown)} for {cls.__name__}; accepted: {', '.join(sorted(names))}"
            )
        kwargs = {}
        for k, v in d.items():
            tp = hints[k]
            kwargs[k] = build(tp, v) if dataclasses.is_dataclass(tp) else v
        return cls(**kwargs)

    return build(Recipe, data)
