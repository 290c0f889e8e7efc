"""Vmapped hyperparameter studies: K members of one architecture trained by one
compiled step, with per-member metrics, one checkpoint and exact resume."""

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from seqkit._paths import expand_path
from seqkit.kernels import use_impl

from ._checkpoint import load_checkpoint, read_json, save_checkpoint, write_json
from ._logging import MetricsLog, Progress, TrainWindow
from ._loop import (
    CHECKPOINT,
    METRICS,
    SWEEP_CONFIG,
    _announce_execution_changes,
    _check_no_checkpoint_files,
    _comparable_recipe,
    _default_batches,
    _discard_unstarted,
    _eval_batch,
    _finished_results,
    _from_checkpoint,
    _make_run_dir,
    _pad,
    _step_function,
)
from ._mesh import no_mesh
from ._recipe import Recipe, RecipeError, config_differences, init_key, override, recipe_to_dict, step_key

SWEEP = "sweep.json"
FIGURE = "sweep.png"

# Sections whose keys only change values inside the optimizer state (with
# `hyperparams_as_arrays`) or the model's initial arrays; a key elsewhere changes
# what every member shares (the data, the loop), so it cannot differ per member.
_MODEL_SECTIONS = ("model",)
_OPTIMIZER_SECTIONS = ("optimizer", "schedule")


@dataclasses.dataclass(frozen=True)
class SweepMember:
    """One member of a sweep.

    - `index`: its position on the leading (member) axis.
    - `settings`: its grid values by key, and its `"seed"`.
    - `recipe`: the recipe a solo `seqkit.train.train` run of this member would use.
    """

    index: int
    settings: dict[str, Any]
    recipe: Recipe


# --- the members ------------------------------------------------------------------


def _text(value: Any) -> str:
    """A grid value as `override` parses it (Python values or their strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return getattr(value, "kind", None) or str(value)  # a mixer config by its kind


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _get(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else getattr(node, part)
    return node


def _seed_list(recipe: Recipe, seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
        raise RecipeError(f"seeds (--seeds): expected a count >= 1 or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise RecipeError(f"seeds (--seeds): expected a count >= 1, got {seeds}")
        return [recipe.trainer.seed + i for i in range(seeds)]
    out = list(seeds)
    if not out:
        raise RecipeError("seeds: expected at least one seed, got an empty list")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise RecipeError(f"seeds: expected ints in [0, 2**32), got {s!r}")
    if len(set(out)) != len(out):
        raise RecipeError(f"seeds: expected distinct seeds, got {out}")
    return out


def _not_vmappable(key: str, reason: str, value: Any) -> RecipeError:
    return RecipeError(
        f"grid key {key!r} cannot be swept in one vmapped program: {reason}; "
        f"run each of its values as a separate sweep (--set {key}={_text(value)})"
    )


def _check_section(key: str, value: Any) -> None:
    section = key.split(".")[0]
    if key == "trainer.seed":
        raise RecipeError(
            "grid key 'trainer.seed': a sweep's seeds are set with seeds= (--seeds N or --seeds 0,1,2)"
        )
    if section in _MODEL_SECTIONS + _OPTIMIZER_SECTIONS:
        return
    reason = {
        "trainer": "it is a setting of the training loop all members share (batches, steps, evaluation)",
        "data": "it changes the data all members share",
    }.get(section, "it is not a hyperparameter of the model or the optimizer")
    raise _not_vmappable(key, reason, value)


def sweep_members(
    recipe: Recipe, grid: Mapping[str, Sequence[Any]], *, seeds: int | Sequence[int] = 1
) -> list[SweepMember]:
    """The members of a sweep: every combination of `grid` values, each with every seed.

    Member `k` is `(combination k // n_seeds, seed k % n_seeds)`, the grid keys
    varying in their given order (the last fastest). Values are parsed like
    `--set` values (by the key's type), so `"1e-3"` and `0.001` are the same
    value. `seeds` is a count (`trainer.seed`, `trainer.seed + 1`, ...) or a list.

    **Raises:** `RecipeError` (one line) for a key that does not exist, an empty
    or repeated value, a value of the wrong type or range, or a key that cannot
    differ between members of one program (the data, the training loop,
    `trainer.seed`). Whether a model or optimizer key keeps the members' shapes
    equal is checked by `sweep`, which needs the data's example shape.
    """
    if not isinstance(grid, Mapping):
        raise RecipeError(f"grid: expected a mapping of key to a list of values, got {grid!r}")
    seed_list = _seed_list(recipe, seeds)
    parsed: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise RecipeError(f"grid: expected keys like 'optimizer.lr', got {key!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise RecipeError(f"grid key {key!r}: expected a list of values, got {values!r}")
        if len(values) == 0:
            raise RecipeError(f"grid key {key!r}: expected at least one value, got an empty list")
        vals = []
        for v in values:
            vals.append(_get(override(recipe, [f"{key}={_text(v)}"]), key))
            if not isinstance(vals[-1], (bool, int, float, str, type(None))):
                raise _not_vmappable(key, "it sets a list or a whole mixer, not one value", v)
        for i, v in enumerate(vals):
            if v in vals[:i]:
                raise RecipeError(f"grid key {key!r}: the value {v!r} appears more than once")
        _check_section(key, vals[0])
        parsed[key] = vals
    members = []
    for combo in itertools.product(*parsed.values()):
        edits = [f"{k}={_text(v)}" for k, v in zip(parsed, combo, strict=True)]
        for seed in seed_list:
            r = override(recipe, [*edits, f"trainer.seed={seed}"])
            settings = {**dict(zip(parsed, combo, strict=True)), "seed": seed}
            members.append(SweepMember(len(members), settings, r))
    return members


# --- the vmappability check ------------------------------------------------------


def _member_optimizer(recipe: Recipe) -> optax.GradientTransformation:
    """`recipe.build_optimizer()` with every hyperparameter an array in the state."""
    return recipe.build_optimizer(hyperparams_as_arrays=True)


def _shapes(recipe: Recipe, example: np.ndarray) -> Any:
    """Model, state and optimizer state of `recipe`, shapes only where possible."""

    def make(key):
        model, state = recipe.build_model(example, key=key)
        opt_state = _member_optimizer(recipe).init(eqx.filter(model, eqx.is_inexact_array))
        return model, state, opt_state

    try:
        return eqx.filter_eval_shape(make, jr.key(0))
    except jax.errors.ConcretizationTypeError:
        return make(jr.key(0))  # a constructor that needs concrete values: build for real


def _difference(a: Any, b: Any) -> str | None:
    """How two (shape) trees differ: array shapes or dtypes, the static structure
    (static fields, the layout of modules and optimizer state), or a non-array value."""
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    statics = []
    if len(la) == len(lb):
        for (path, x), (_, y) in zip(la, lb, strict=True):
            # The trees are (model, state, opt_state): name the part, then the path in it.
            where = ("model", "state", "opt_state")[path[0].idx] + jax.tree_util.keystr(path[1:])
            if hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(y, "shape") and hasattr(y, "dtype"):
                if (x.shape, x.dtype) != (y.shape, y.dtype):
                    shapes = f"{x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
                    return f"it changes array shapes ({where}: {shapes})"
            elif type(x) is not type(y) or x != y:
                statics.append(f"it changes a static value ({where}: {x!r} vs {y!r})")
    else:
        return f"it changes the number of arrays ({len(la)} vs {len(lb)}: layers, modules or optimizer state)"
    if ta != tb:
        return "it changes the static structure (a static field or the layout of modules and optimizer state)"
    return statics[0] if statics else None


def _check_vmappable(members: list[SweepMember], grid_keys: list[str], example: np.ndarray) -> None:
    """A `RecipeError` naming the grid key whose values give members different
    shapes, static fields, optimizer structure or run length."""
    cache: dict[str, Any] = {}

    def shapes(m: SweepMember) -> Any:
        r = m.recipe
        text = json.dumps(recipe_to_dict(dataclasses.replace(r, trainer=members[0].recipe.trainer)))
        if text not in cache:
            try:
                cache[text] = _shapes(r, example)
            except RecipeError as e:
                where = ", ".join(f"{k}={_text(m.settings[k])}" for k in grid_keys)
                raise RecipeError(f"grid values {where}: {e}") from None
        return cache[text]

    first = members[0]
    reference = shapes(first)
    # One key at a time against member 0, so the error names the key.
    for key in grid_keys:
        for m in members:
            if any(m.settings[k] != first.settings[k] for k in grid_keys if k != key):
                continue
            if m.recipe.steps != first.recipe.steps:
                raise _not_vmappable(key, "it changes the number of training steps", m.settings[key])
            if m.recipe.trainer.objective != first.recipe.trainer.objective:
                raise _not_vmappable(key, "it changes the training objective", m.settings[key])
            why = _difference(reference, shapes(m))
            if why is not None:
                raise _not_vmappable(key, why, m.settings[key])
    # Then every combination (keys that are harmless alone could still interact).
    for m in members:
        why = _difference(reference, shapes(m))
        if why is not None or m.recipe.steps != first.recipe.steps:
            combo = ", ".join(f"{k}={_text(m.settings[k])}" for k in grid_keys)
            raise RecipeError(
                f"the grid combination {combo} cannot be swept with the others in one vmapped "
                f"program: {why or 'it changes the number of training steps'}; run it as a separate sweep"
            )


# --- stacking --------------------------------------------------------------------


def _stack(trees: list[Any], how: Callable = jnp.stack) -> Any:
    """Array leaves stacked (or concatenated) on a new leading axis; the rest from `trees[0]`."""
    parts = [eqx.partition(t, eqx.is_array) for t in trees]
    arrays = jax.tree.map(lambda *xs: how(xs), *[p[0] for p in parts])
    return eqx.combine(arrays, parts[0][1])


def _take(tree: Any, index: Any) -> Any:
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[index], arrays), static)


def _build_members(members: list[SweepMember], example: np.ndarray) -> tuple[Any, Any]:
    """The members' models and states stacked on a leading axis.

    Members that differ only in seed and optimizer settings share a model
    recipe: each such group is built in one `eqx.filter_vmap` over its init keys
    (the same values as building each member alone); groups (e.g. one per
    `dt_max`, an init option the constructors take as a Python float) are then
    concatenated in member order. A group whose recipe sets `model.init_from`
    then takes that run's backbone, member by member, as `train` does."""
    groups: dict[str, list[int]] = {}
    for m in members:
        text = json.dumps(recipe_to_dict(m.recipe)["model"], sort_keys=True)
        groups.setdefault(text, []).append(m.index)
    parts, order = [], []
    for idxs in groups.values():
        recipe = members[idxs[0]].recipe
        keys = [init_key(members[i].settings["seed"]) for i in idxs]

        def build(k, recipe=recipe):
            return recipe.build_model(example, key=k)

        try:
            part = eqx.filter_vmap(build)(jnp.stack(keys))
        except jax.errors.ConcretizationTypeError:
            part = _stack([build(k) for k in keys])  # a constructor that needs concrete keys
        if recipe.model.init_from is not None:
            transfer = recipe.backbone_transfer()
            model, state = part
            model = _stack([transfer(_take(model, i)) for i in range(len(idxs))])
            part = (model, state)
        parts.append(part)
        order.extend(idxs)
    built = parts[0] if len(parts) == 1 else _stack(parts, jnp.concatenate)
    if order != list(range(len(members))):
        built = _take(built, jnp.asarray(np.argsort(order)))
    return built


def _init_opt_states(members: list[SweepMember], models: Any) -> Any:
    """Each member's optimizer state from its own optimizer (its hyperparameters
    as arrays), stacked: `opt_state.….hyperparams["learning_rate"]` has shape `(K,)`."""
    optimizers = [_member_optimizer(m.recipe) for m in members]

    @eqx.filter_jit  # one small program instead of K × (ops per init) dispatches
    def init(params):
        return _stack([opt.init(_take(params, k)) for k, opt in enumerate(optimizers)])

    return init(eqx.filter(models, eqx.is_inexact_array))


def make_sweep_step(
    optimizer: optax.GradientTransformation,
    *,
    per_member_data: bool = False,
    objective: str = "cross_entropy",
) -> Callable:
    """The jit-compiled step of a sweep: `make_train_step`'s step vmapped over members.

    `step(models, states, opt_states, batch, keys) -> (models, states, opt_states,
    metrics)`, every argument stacked on a leading member axis of size K, except
    `batch` when `per_member_data` is False (all members see the same batch).
    `optimizer` must be built with `hyperparams_as_arrays=True`: it reads each
    member's hyperparameters from that member's `opt_state`. A member whose
    gradient is non-finite keeps its parameters, optimizer and BatchNorm state
    (its `opt_state.total_notfinite` counts it); the others step on.
    """
    member = eqx.if_array(0)
    in_axes = (member, member, member, member if per_member_data else None, member)
    return eqx.filter_jit(eqx.filter_vmap(_step_function(optimizer, objective), in_axes=in_axes))


@eqx.filter_jit
def _eval_members(models, states, batch, weight, objective="cross_entropy"):
    member = eqx.if_array(0)
    return eqx.filter_vmap(_eval_batch, in_axes=(member, member, None, None, None))(
        models, states, batch, weight, objective
    )


def _evaluate_members(
    models, states, source, *, batch_size: int, batches: Callable, objective: str = "cross_entropy"
) -> list[dict[str, float]]:
    """`seqkit.train.evaluate` for every member at once (one pass over `source`)."""
    models = eqx.nn.inference_mode(models)
    it = batches(source, batch_size=batch_size, seed=0, shuffle=False, drop_remainder=False, num_epochs=1)
    loss, correct, n = 0.0, 0.0, 0
    for batch in it:
        k = len(batch["label"])
        padded, weight = _pad(batch, batch_size)
        b_loss, b_correct = _eval_members(models, states, padded, jnp.asarray(weight), objective)
        loss = loss + np.asarray(b_loss, np.float64)
        correct = correct + np.asarray(b_correct, np.float64)
        n += k
    K = jax.tree.leaves(eqx.filter(models, eqx.is_array))[0].shape[0]
    if n == 0:
        return [{"loss": float("nan"), "accuracy": float("nan"), "examples": 0}] * K
    return [{"loss": float(loss[i]) / n, "accuracy": float(correct[i]) / n, "examples": n} for i in range(K)]


@dataclasses.dataclass(frozen=True)
class _Placement:
    """Where a sweep's arrays live: one device (`mesh` None), or the member axis
    split over a `("members",)` mesh."""

    mesh: jax.sharding.Mesh | None = None

    def split(self, tree: Any) -> Any:
        """Arrays stacked on a leading member axis, split over the mesh."""
        if self.mesh is None:
            return tree
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("members"))
        return jax.tree.map(lambda a: jax.device_put(a, sharding) if eqx.is_array(a) else a, tree)

    def copy(self, tree: Any) -> Any:
        """Arrays every member reads (a shared batch), copied to every device."""
        if self.mesh is None:
            return tree
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)

    def members(self, trees: tuple[Any, Any, Any]) -> dict[str, Any]:
        models, states, opt_states = (self.split(t) for t in trees)
        return {"models": models, "states": states, "opt_states": opt_states}


def _member_placement(K: int, member_devices: int | None) -> _Placement:
    """The placement of `K` members over `member_devices` devices, checked."""
    if member_devices is None:
        return _Placement()
    n = len(jax.devices())
    if isinstance(member_devices, bool) or not isinstance(member_devices, int) or member_devices < 1:
        raise RecipeError(f"member_devices: expected a positive number of devices, got {member_devices!r}")
    if member_devices > n:
        raise RecipeError(
            f"member_devices={member_devices} (--member-devices), but this process has {n} device(s) "
            f"({jax.default_backend()}); on a CPU, fake devices with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={member_devices} set before JAX starts"
        )
    if K % member_devices:
        raise RecipeError(
            f"member_devices={member_devices} must divide the {K} members (grid points x seeds) so "
            "that every device trains as many"
        )
    devices = np.asarray(jax.devices()[:member_devices])
    return _Placement(jax.sharding.Mesh(devices, ("members",)))


# --- the run directory -----------------------------------------------------------


@dataclasses.dataclass
class _Sweep:
    models: Any
    states: Any
    opt_states: Any
    step: int = 0
    elapsed: float = 0.0
    window: dict[str, Any] | None = None  # the train-record window a checkpoint noted


def _sweep_config(recipe: Recipe, grid: dict[str, list[Any]], seeds: list[int], per_member_data: bool):
    return {
        "recipe": recipe_to_dict(recipe),
        "grid": grid,
        "seeds": seeds,
        "per_member_data": per_member_data,
        "members": int(math.prod(len(v) for v in grid.values()) * len(seeds)),
    }


def _comparable(config: Any) -> Any:
    """A sweep configuration less what its recipe may change on a resume (the data
    directory, the intervals of logging, validation and checkpoints), as for a
    training run."""
    if isinstance(config, dict) and isinstance(config.get("recipe"), dict):
        return {**config, "recipe": _comparable_recipe(config["recipe"])}
    return config


def _open_sweep_dir(run_dir: str, config: dict[str, Any], *, resume: bool, bar: Progress) -> bool:
    """Refuse to overwrite a run or to resume a different sweep; create the
    directory; remove temporaries of interrupted writes. Returns whether it was created."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RecipeError(f"run directory {run_dir} is a file; expected a directory (or a new path)")
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    config_path = os.path.join(run_dir, SWEEP_CONFIG)
    if os.path.exists(ckpt_path) and not resume:
        raise RecipeError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and os.path.exists(ckpt_path) and not os.path.exists(config_path):
        raise RecipeError(f"{run_dir} holds a training run, not a sweep ({SWEEP_CONFIG} is missing)")
    if resume and os.path.exists(config_path):
        saved = read_json(config_path, "the sweep's configuration")
        if saved.get("members") != config["members"]:
            raise RecipeError(
                f"{run_dir} holds a sweep of {saved.get('members')} members, this one has "
                f"{config['members']}; resume it with the same --grid and --seeds"
            )
        saved_grid = saved.get("grid")
        if (
            isinstance(saved_grid, dict)
            and saved_grid == config["grid"]
            and list(saved_grid) != list(config["grid"])
        ):  # dict equality ignores order, but the order numbers the members
            raise RecipeError(
                f"{run_dir} holds a sweep over the same grid keys in another order "
                f"({', '.join(saved_grid)}); the order of --grid numbers the members, so "
                "resume it with the --grid options in that order"
            )
        if (saved_grid, saved.get("seeds")) != (config["grid"], config["seeds"]):
            raise RecipeError(
                f"{run_dir} holds a sweep over another grid or seeds (grid {saved.get('grid')}, seeds "
                f"{saved.get('seeds')}); resume it with the same --grid and --seeds"
            )
        if _comparable(saved) != _comparable(config):
            where = config_differences(_comparable(saved), _comparable(config))
            raise RecipeError(
                f"{run_dir} holds a sweep of a different configuration ({where}); "
                "resume it with the same recipe, preset, --set and data mode"
            )
        if os.path.exists(ckpt_path):
            _announce_execution_changes(saved.get("recipe"), config["recipe"], bar)
    if not os.path.exists(ckpt_path):

        def same(saved: Any) -> bool:
            return _comparable(saved) == _comparable(config) and list(saved.get("grid") or {}) == list(
                config["grid"]
            )

        _check_no_checkpoint_files(run_dir, SWEEP_CONFIG, SWEEP, same, "--out", bar)
    if resume and not os.path.exists(ckpt_path):
        bar.notice(f"no checkpoint in {run_dir}: starting a fresh sweep")
    return _make_run_dir(run_dir, bar)


# --- the sweep -------------------------------------------------------------------


def sweep(
    recipe: Recipe,
    grid: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 1,
    run_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    sources: Mapping[str, Any] | None = None,
    per_member_data: bool = False,
    batches: Callable[..., Iterator[Mapping[str, np.ndarray]]] | None = None,
    member_devices: int | None = None,
) -> dict[str, Any]:
    """Train every combination of `grid` values × `seeds` as one vmapped program.

    The K members share the architecture and differ in anything that only
    changes array *values*: learning rates, weight decays, warmup, Adam's betas
    (all arrays in each member's optimizer state,
    `make_optimizer(hyperparams_as_arrays=True)`), initialization options such as
    a mixer's `dt_min`/`dt_max`, and the seed (init and dropout keys). Models,
    BatchNorm states and optimizer states are stacked on a leading member axis
    (construction vmapped over the members' init keys) and one jit-compiled,
    `eqx.filter_vmap`ped `make_train_step` step trains them all on the same batches
    (in the order of `recipe.trainer.seed`), or with `per_member_data` each on its
    own seed's order. Member `k` follows exactly the computation of a solo
    `train(sweep_members(...)[k].recipe)` (with `per_member_data`, or a data order
    that does not depend on the seed), up to float rounding.

    A member whose update is non-finite is skipped (parameters and optimizer
    state unchanged) and counted in its `skipped_updates`; the others go on.

    Keys that change shapes or static structure (`model.d_model`,
    `model.n_layers`, a mixer's `state_size`, `trainer.batch_size`, the data,
    clipping on/off, ...) cannot share a program: the members are built
    shapes-only (`eqx.filter_eval_shape`) and compared first, and such a key
    raises a one-line `RecipeError` naming it (run its values as separate sweeps).

    `run_dir` receives `sweep_config.json` (recipe, grid, seeds), `metrics.jsonl`
    (a train/val/test record per member and step, with `member` and its
    settings), `checkpoint.eqx` (all members, written atomically every
    `trainer.checkpoint_every` steps; `resume=True` continues at the global step,
    ending as an uninterrupted sweep would), and at the end `sweep.json` (each
    member's settings, final val/test accuracy and skipped updates) and
    `sweep.png` (val accuracy against each swept value, one line per seed; a
    one-line note instead when matplotlib is missing). Bad input raises before
    anything is written.

    **Arguments:**

    - `recipe`: the base `Recipe`; grid values replace its values.
    - `grid`: `{"optimizer.lr": [1e-3, 3e-3], "model.mixers.0.dt_max": [0.01, 0.1]}`
      (keys as for `override`; values as Python values or strings).
    - `seeds`: a count (`trainer.seed`, `trainer.seed + 1`, ...) or a list of seeds.
    - `run_dir`, `resume`, `progress`, `sources`, `batches`: as for `train`.
    - `per_member_data`: each member draws batches in its own seed's order.
    - `member_devices`: put the members on a mesh axis of this many devices
      (`"members"`, the first devices of `jax.devices()`): each device holds and
      trains `K / member_devices` members, the batch is copied to every device
      (with `per_member_data`, split by member). The members never communicate,
      so the program is the same per device; results equal the one-device
      sweep's to float rounding. `None` (default): one device.

    **Returns:** the content of `sweep.json`.
    """
    check_sweepable(recipe)
    _from_checkpoint(recipe, run_dir, resume).validate()
    with use_impl(recipe.trainer.kernels):  # what impl="auto" means while tracing
        return _sweep(recipe, grid, seeds, run_dir, resume, progress, sources, per_member_data, batches,
                      member_devices)  # fmt: skip


def check_sweepable(recipe: Recipe) -> None:
    """Refuse, before anything else, what a sweep cannot run: several processes (a
    sweep is one process; each would train every member into the same directory) and
    a trainer mesh (a sweep places members, not batches, on devices)."""
    if jax.process_count() > 1:
        raise RecipeError(
            f"a sweep runs in one process; this one is 1 of {jax.process_count()} "
            "(unset JAX_NUM_PROCESSES / JAX_COORDINATOR_ADDRESS, or launch one process); "
            "to spread members over this host's devices use member_devices "
            "(seqkit sweep --member-devices N)"
        )
    if not no_mesh(str(recipe.trainer.mesh)):
        raise RecipeError(
            f"trainer.mesh={recipe.trainer.mesh}: a sweep places members, not batches, on devices; "
            "leave trainer.mesh unset and use member_devices (seqkit sweep --member-devices N)"
        )


def _sweep(recipe, grid, seeds, run_dir, resume, progress, sources, per_member_data, batches, member_devices):
    members = sweep_members(recipe, grid, seeds=seeds)
    place = _member_placement(len(members), member_devices)
    grid_keys = list(grid)
    grid_values = {k: _unique([m.settings[k] for m in members]) for k in grid_keys}
    seed_list = _seed_list(recipe, seeds)
    run_dir = expand_path(run_dir)
    srcs = dict(sources) if sources is not None else recipe.make_sources()
    # What builds the members: on a resume from a checkpoint, without model.init_from
    # (the checkpoint holds every array; the pretrained runs may have moved).
    builders = [dataclasses.replace(m, recipe=_from_checkpoint(m.recipe, run_dir, resume)) for m in members]
    for r in {json.dumps(recipe_to_dict(m.recipe)): m.recipe for m in builders}.values():
        r.validate()
    builders[0].recipe.validate(srcs)
    example = np.asarray(srcs["train"][0]["inputs"])
    _check_vmappable(builders, grid_keys, example)
    batches = batches if batches is not None else _default_batches()
    config = _sweep_config(recipe, grid_values, seed_list, per_member_data)
    bar = Progress(recipe.steps, enabled=progress)
    created = _open_sweep_dir(run_dir, config, resume=resume, bar=bar)
    if resume and (done := _finished_results(recipe, run_dir, SWEEP)) is not None:
        bar.notice(f"{run_dir} finished at step {done['steps']}: nothing to resume, nothing written")
        return done
    try:
        models, states = _build_members(builders, example)
        run = _Sweep(models, states, _init_opt_states(members, models))
        run = _start_or_resume(run_dir, run, config, resume=resume, bar=bar)
        run = dataclasses.replace(run, **place.members((run.models, run.states, run.opt_states)))
        step_fn = make_sweep_step(
            _member_optimizer(members[0].recipe),
            per_member_data=per_member_data,
            objective=recipe.trainer.objective,
        )
        run = _step_loop(recipe, run_dir, run, members, config, step_fn, srcs, batches, bar, place)
        bar.close()
        return _finish(recipe, run_dir, run, members, config, srcs, batches, bar)
    except BaseException:
        _discard_unstarted(run_dir, created, SWEEP_CONFIG)
        raise


def _start_or_resume(
    run_dir: str, run: _Sweep, config: dict[str, Any], *, resume: bool, bar: Progress
) -> _Sweep:
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    log = MetricsLog(os.path.join(run_dir, METRICS))
    if resume and os.path.exists(ckpt_path):
        (models, states, opt_states), meta = load_checkpoint(
            ckpt_path, (run.models, run.states, run.opt_states)
        )
        if meta.get("members") != config["members"] or meta.get("seeds") != config["seeds"]:
            raise RecipeError(
                f"the checkpoint in {run_dir} holds {meta.get('members')} members of seeds "
                f"{meta.get('seeds')}; expected {config['members']} of seeds {config['seeds']}"
            )
        bar.message(f"resuming {run_dir} at step {meta['step']}/{bar.total}")
        log.truncate(meta["step"], size=meta.get("log_bytes"))
        return _Sweep(models, states, opt_states, meta["step"], meta["elapsed_s"], meta.get("window"))
    log.truncate(-1)
    write_json(os.path.join(run_dir, SWEEP_CONFIG), config)
    return run


def _save(path: str, recipe: Recipe, run: _Sweep, config: dict[str, Any], log: MetricsLog) -> None:
    meta = {
        "step": run.step,
        "data_position": run.step,
        "seeds": config["seeds"],
        "members": config["members"],
        "elapsed_s": run.elapsed,
        "recipe": recipe.name,
        "log_bytes": log.size(),
        "window": run.window,
    }
    save_checkpoint(path, (run.models, run.states, run.opt_states), meta)


def _record(member: SweepMember) -> dict[str, Any]:
    return {"member": member.index, **member.settings}


def _step_loop(
    recipe: Recipe,
    run_dir: str,
    run: _Sweep,
    members: list[SweepMember],
    config: dict[str, Any],
    step_fn: Callable,
    srcs: Mapping[str, Any],
    batches: Callable,
    bar: Progress,
    place: "_Placement",
) -> _Sweep:
    """Steps from `run.step` to `recipe.steps`, as `train`'s loop: per-member train
    records every `log_every`, validation every `eval_every`, a checkpoint every
    `checkpoint_every` and at the end."""
    per_member_data = config["per_member_data"]
    tc = recipe.trainer
    total, K = recipe.steps, len(members)
    eval_bs = tc.eval_batch_size or tc.batch_size
    log = MetricsLog(os.path.join(run_dir, METRICS))
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    models, states, opt_states, step, elapsed = run.models, run.states, run.opt_states, run.step, run.elapsed
    seeds = [m.settings["seed"] for m in members]
    data_seeds = sorted(set(seeds)) if per_member_data else [tc.seed]

    def stream(seed):
        return batches(
            srcs["train"],
            batch_size=tc.batch_size,
            seed=seed,
            shuffle=True,
            drop_remainder=True,
            start_step=step,
            worker_count=recipe.data.worker_count,
            **tc.batch_options(),
        )

    its = {s: stream(s) for s in data_seeds}
    if step < total:
        n = int(sum(x.size for x in jax.tree.leaves(eqx.filter(models, eqx.is_inexact_array)))) // K
        bar.message(f"compiling the sweep step ({K} members of {n:,} parameters, batch {tc.batch_size})")
    first = True
    window = TrainWindow(run.window)
    t_segment = time.perf_counter()
    elapsed_at_segment = elapsed
    while step < total:
        if per_member_data:
            drawn = {s: next(it) for s, it in its.items()}
            batch = place.split({k: np.stack([drawn[s][k] for s in seeds]) for k in drawn[seeds[0]]})
        else:
            batch = place.copy(next(its[tc.seed]))
        keys = place.split(jnp.stack([step_key(s, step) for s in seeds]))
        models, states, opt_states, metrics = step_fn(models, states, opt_states, batch, keys)
        step += 1
        if first:
            jax.block_until_ready(metrics)
            bar.message(f"compiled; first step done in {time.perf_counter() - t_segment:.1f} s")
            first = False
        window.add(metrics)
        elapsed = elapsed_at_segment + time.perf_counter() - t_segment
        if step % tc.log_every == 0 or step == total:
            means = window.means()
            eps = window.examples_per_s(tc.batch_size * K)
            skipped = np.asarray(opt_states.total_notfinite)
            for m in members:
                log.write(
                    {
                        "step": step,
                        "split": "train",
                        **_record(m),
                        **{k: float(v[m.index]) for k, v in means.items()},
                        "skipped_updates": int(skipped[m.index]),
                        "examples_per_s": eps,
                        "elapsed_s": elapsed,
                    }
                )
            with np.errstate(all="ignore"):
                loss, acc = float(np.nanmean(means["loss"])), float(np.nanmean(means["accuracy"]))
            bar.update(step, loss=loss, accuracy=acc, examples_per_s=eps)
            window = TrainWindow()
        if step % tc.eval_every == 0 and step < total:
            t_eval = time.perf_counter()
            res = _evaluate_members(
                models,
                states,
                srcs["val"],
                batch_size=eval_bs,
                batches=batches,
                objective=recipe.trainer.objective,
            )
            for m in members:
                log.write({"step": step, "split": "val", **_record(m), **res[m.index]})
            best = max(r["accuracy"] for r in res)
            bar.message(f"step {step}: best val accuracy {100 * best:.2f}% of {K} members")
            window.pause(time.perf_counter() - t_eval)
        if step % tc.checkpoint_every == 0 or step == total:
            noted = _Sweep(models, states, opt_states, step, elapsed, window.carry())
            _save(ckpt_path, recipe, noted, config, log)
    return _Sweep(models, states, opt_states, step, elapsed)


def _finish(
    recipe: Recipe,
    run_dir: str,
    run: _Sweep,
    members: list[SweepMember],
    config: dict[str, Any],
    srcs: Mapping[str, Any],
    batches: Callable,
    bar: Progress,
) -> dict[str, Any]:
    eval_bs = recipe.trainer.eval_batch_size or recipe.trainer.batch_size
    scored = {"batch_size": eval_bs, "batches": batches, "objective": recipe.trainer.objective}
    val = _evaluate_members(run.models, run.states, srcs["val"], **scored)
    test = _evaluate_members(run.models, run.states, srcs["test"], **scored)
    log = MetricsLog(os.path.join(run_dir, METRICS))
    for m in members:
        log.write({"step": run.step, "split": "val", **_record(m), **val[m.index]})
        log.write({"step": run.step, "split": "test", **_record(m), **test[m.index]})
    skipped = np.asarray(run.opt_states.total_notfinite)
    rows = [
        {
            "member": m.index,
            "settings": m.settings,
            "val_accuracy": val[m.index]["accuracy"],
            "val_loss": val[m.index]["loss"],
            "test_accuracy": test[m.index]["accuracy"],
            "test_loss": test[m.index]["loss"],
            "skipped_updates": int(skipped[m.index]),
        }
        for m in members
    ]
    finite = [r for r in rows if math.isfinite(r["val_accuracy"]) and math.isfinite(r["val_loss"])]
    best = max(finite, key=lambda r: r["val_accuracy"])["member"] if finite else None
    K = len(members)
    n_params = int(sum(x.size for x in jax.tree.leaves(eqx.filter(run.models, eqx.is_inexact_array)))) // K
    results = {
        "recipe": recipe.name,
        "preset": recipe.preset,
        "grid": config["grid"],
        "seeds": config["seeds"],
        "per_member_data": config["per_member_data"],
        "steps": run.step,
        "wall_time_s": run.elapsed,
        "n_params": n_params,
        "train_examples_per_s": run.step * recipe.trainer.batch_size * K / max(run.elapsed, 1e-9),
        "best_member": best,
        "members": rows,
        "figure": None,
    }
    fig = os.path.join(run_dir, FIGURE)
    if plot_sweep(results, fig):
        results["figure"] = FIGURE
    else:
        bar.notice(f"no figure: matplotlib is not installed (pip install matplotlib to draw {fig})")
    write_json(os.path.join(run_dir, SWEEP), results)
    return results


# --- the table and the figure -------------------------------------------------------


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def sweep_table(results: Mapping[str, Any]) -> str:
    """The members of a sweep's results (`sweep.json`) as a text table: settings,
    final val and test accuracy, skipped updates; the best member (by val
    accuracy, among members with a finite val loss) is marked `*` and named on
    the last line."""
    keys = [*results["grid"], "seed"]
    head = ["member", *keys, "val acc", "test acc", "skipped"]
    rows = []
    for r in results["members"]:
        mark = "*" if r["member"] == results.get("best_member") else " "
        rows.append(
            [
                f"{r['member']}{mark}",
                *(_fmt(r["settings"][k]) for k in keys),
                f"{100 * r['val_accuracy']:.2f}%",
                f"{100 * r['test_accuracy']:.2f}%",
                str(r["skipped_updates"]),
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [head, *rows]]
    best = results.get("best_member")
    if best is not None:
        r = results["members"][best]
        settings = ", ".join(f"{k}={_fmt(r['settings'][k])}" for k in keys)
        lines.append(
            f"best by val accuracy: member {best} ({settings}): val {100 * r['val_accuracy']:.2f}%, "
            f"test {100 * r['test_accuracy']:.2f}%"
        )
    return "\n".join(lines)


def plot_sweep(results: Mapping[str, Any], path: str) -> bool:
    """Draw a sweep's final val accuracy against each swept value (one panel per
    grid key, one line per seed, averaged over the other keys' values) to `path`.

    **Returns:** whether the figure was written (False when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = list(results["grid"]) or ["seed"]
    rows = results["members"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = results["grid"].get(key, results["seeds"])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        pos = {v: (v if numeric else i) for i, v in enumerate(values)}
        for i, seed in enumerate(results["seeds"]):
            xs, ys = [], []
            for v in values:
                accs = [
                    r["val_accuracy"]
                    for r in rows
                    if r["settings"]["seed"] == seed and r["settings"].get(key, r["settings"]["seed"]) == v
                ]
                accs = [a for a in accs if math.isfinite(a)]
                if accs:
                    xs.append(pos[v])
                    ys.append(100 * float(np.mean(accs)))
            ax.plot(xs, ys, marker="o", linewidth=1.3, color=plt.cm.tab10(i % 10), label=f"seed {seed}")
        if numeric and min(values) > 0 and max(values) >= 10 * min(values):
            ax.set_xscale("log")
            ax.minorticks_off()
        # Ticks at the swept values, written as on the command line.
        ax.set_xticks(list(pos.values()), [_fmt(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel("final val accuracy (%)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8, frameon=False)
    title = f"{results['recipe']} ({results['preset']}): {len(rows)} members, {results['steps']} steps"
    if len(keys) > 1:
        title += "; each point: mean over the other keys' values"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
