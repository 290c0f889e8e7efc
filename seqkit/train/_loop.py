"""The training loop: a jit-compiled pure step, evaluation, checkpoints, metrics."""

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from seqkit._json import json_or_none
from seqkit._paths import expand_path
from seqkit.kernels import use_impl

from ._checkpoint import load_checkpoint, read_json, remove_temporaries, save_checkpoint, write_json
from ._distributed import host_arrays, is_main_process, process_eval_batches, process_part
from ._logging import MetricsLog, Progress, TrainWindow
from ._mesh import describe_mesh, make_mesh, shard_batch, shard_params, sharded_step
from ._pretrain import masked_patch_objective
from ._recipe import Recipe, RecipeError, config_differences, recipe_from_dict, recipe_to_dict, step_key
from ._trime import trime_batch_loss

CHECKPOINT = "checkpoint.eqx"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SWEEP_CONFIG = "sweep_config.json"  # what makes a directory a sweep's (seqkit.train.sweep)
RESULTS = "results.json"


def _batched(model):
    # BatchNorm reduces over the named vmapped axis (Equinox's convention).
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))


def _forward(model, state, batch: Mapping[str, Array], key: PRNGKeyArray | None, call=None):
    """`model` vmapped over the batch (`axis_name="batch"`), one dropout key per
    example; `call(x, state, mask, key) -> (out, state)` replaces `model(...)`."""
    inputs = batch["inputs"]
    B = inputs.shape[0]
    mask = batch.get("mask")

    def one(x, state, m, k):
        if call is not None:
            return call(x, state, m, k)
        return model(x, state, mask=m, key=k)

    keys = None if key is None else jax.random.split(key, B)
    f = jax.vmap(
        one,
        axis_name="batch",
        in_axes=(0, None, None if mask is None else 0, None if keys is None else 0),
        out_axes=(0, None),
    )
    return f(inputs, state, mask, keys)


def _loss_and_correct(logits, labels, mask=None):
    """Per-example cross-entropy (nats) and accuracy, `(B,)` each.

    A label per example, `(B,)` against logits `(B, K)`; or a label per position
    (language modeling: the next token), `(B, L)` against `(B, L, K)`, where an
    example's loss and accuracy are the means over its real positions (`mask`);
    logits for only the last `n < L` positions, `(B, n, K)`, score the last `n`
    labels. A prediction whose logits are not all finite counts as wrong.
    """
    labels = labels.astype(jnp.int32)
    if (
        logits.ndim == 3
        and labels.ndim == 2
        and logits.shape[0] == labels.shape[0]
        and logits.shape[1] < labels.shape[1]
    ):
        # A model that predicts only the last positions (Perceiver AR's latents).
        n = logits.shape[1]
        labels = labels[:, -n:]
        mask = None if mask is None else mask[:, -n:]
    if logits.shape[:-1] != labels.shape:
        per_token = labels.ndim == 2
        raise ValueError(
            f"expected logits of shape {labels.shape} + (classes,) for labels {labels.shape}, got "
            f"{logits.shape}" + ("; per-position labels need a model with pool='none'" if per_token else "")
        )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    # Logits with a NaN or infinity predict nothing: argmax would read them as class 0.
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    correct = ((jnp.argmax(logits, axis=-1) == labels) & finite).astype(jnp.float32)
    if labels.ndim == 2:
        w = jnp.ones(labels.shape, loss.dtype) if mask is None else mask.astype(loss.dtype)
        n = jnp.maximum(jnp.sum(w, axis=1), 1.0)
        loss = jnp.sum(loss * w, axis=1) / n
        correct = jnp.sum(correct * w, axis=1) / n
    return loss, correct


OBJECTIVES = ("cross_entropy", "trime_local", "trime_batch", "trime_long", "masked_patches")


def make_train_step(
    optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh | None = None,
    *,
    objective: str = "cross_entropy",
) -> Callable:
    """The jit-compiled pure training step for `optimizer`.

    `step(model, state, opt_state, batch, key) -> (model, state, opt_state, metrics)`:
    vmaps the model over the batch (`axis_name="batch"`), takes the mean
    cross-entropy, its gradient, and one optimizer update. `batch` holds `inputs`
    `(B, L, C)` or `(B, L)`, `label` `(B,)` and optionally `mask` `(B, L)`; or,
    for language modeling, `label` `(B, L)`, the next token at every position
    (a model with `pool="none"`; the loss is the mean over real positions).
    `metrics` holds `loss`, `accuracy` and `grad_norm` as device scalars. Nothing
    in it depends on Python-side state, so it can be vmapped over stacked models.

    With a `mesh` (`seqkit.train.make_mesh`) the step expects its inputs
    placed on it (model, state, optimizer state by `seqkit.train.shard_params`,
    the batch by `seqkit.train.shard_batch`) and returns them placed the same
    way; `jit` partitions the same computation over the devices (BatchNorm
    statistics and the mean loss stay over the whole batch).

    `objective`: `"cross_entropy"` (the default), or for language models
    (per-position labels, `pool="none"`) TRIME's objective with in-batch
    memories ([`seqkit.train.trime_loss`][]): `"trime_local"` (earlier positions
    of the same segment), `"trime_batch"` (also every position of the other
    segments) or `"trime_long"` (also every position of the earlier segments of
    the batch: its rows must be consecutive segments of one text, in order, as
    `seqkit.data.batches(..., consecutive=True)` draws them). `accuracy` is
    always the argmax of the model's own logits; `evaluate` scores TRIME-trained
    models with local memories (`trime_long`: local and long-term).
    `"masked_patches"`: PIXEL's masked-patch reconstruction for a
    [`seqkit.nn.PixelPretrainer`][] on real-valued patches (no labels used;
    `accuracy` is NaN), see `seqkit.train._pretrain`.
    """
    step = _step_function(optimizer, objective)
    return eqx.filter_jit(step if mesh is None else sharded_step(step, mesh))


def _step_function(optimizer: optax.GradientTransformation, objective: str = "cross_entropy") -> Callable:
    """`make_train_step`'s step before `jit`: what a sweep vmaps over its members
    (the optimizer reads its hyperparameters from `opt_state`, so one function
    serves members that differ only in those)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")

    def step(model, state, opt_state, batch, key):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss_fn(params, state):
            m = eqx.combine(params, static)
            if objective == "cross_entropy":
                logits, state = _forward(m, state, batch, key)
                loss, correct = _loss_and_correct(logits, batch["label"], batch.get("mask"))
            elif objective == "masked_patches":
                loss, correct, state = masked_patch_objective(m, state, batch, key)
            else:
                loss, correct, state = _trime(m, state, batch, key, objective.removeprefix("trime_"))
            return jnp.mean(loss), (state, jnp.mean(correct))

        (loss, (new_state, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        grad_norm = optax.tree.norm(grads)
        # A step the optimizer skips (non-finite gradient) leaves BatchNorm statistics alone too.
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(loss)
        state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_state, state)
        metrics = {"loss": loss, "accuracy": acc, "grad_norm": grad_norm}
        return eqx.combine(params, static), state, opt_state, metrics

    return step


def _trime(model, state, batch: Mapping[str, Array], key: PRNGKeyArray | None, memory: str):
    """Per-example TRIME loss (mean over real positions), accuracy and state."""
    if not hasattr(model, "features") or getattr(model, "pooling", None) != "none" or model.head is None:
        raise ValueError("the TRIME objective needs a SequenceModel with pool='none' and a head")
    labels, mask = batch["label"], batch.get("mask")
    if labels.ndim != 2:
        raise ValueError(f"the TRIME objective needs a label per position, (B, L); got {labels.shape}")

    def call(x, state, m, k):
        h, state = model.features(x, state, mask=m, key=k)
        return (h, jax.vmap(model.head)(h)), state

    (hidden, logits), state = _forward(model, state, batch, key, call)
    per_position = trime_batch_loss(logits, hidden, labels.astype(jnp.int32), mask, memory=memory)
    w = jnp.ones(labels.shape, per_position.dtype) if mask is None else mask.astype(per_position.dtype)
    n = jnp.maximum(jnp.sum(w, axis=1), 1.0)
    _, correct = _loss_and_correct(logits, labels, mask)
    return jnp.sum(per_position * w, axis=1) / n, correct, state


@eqx.filter_jit
def _eval_batch(model, state, batch, weight: Float[Array, " B"], objective: str = "cross_entropy"):
    if objective == "cross_entropy":
        logits, _ = _forward(model, state, batch, None)
        loss, correct = _loss_and_correct(logits, batch["label"], batch.get("mask"))
    elif objective == "masked_patches":  # the same masks at every evaluation
        loss, correct, _ = masked_patch_objective(model, state, batch, None)
    else:  # TRIME: its own distribution, with what precedes each position in the text as memory
        memory = "long" if objective == "trime_long" else "local"
        loss, correct, _ = _trime(model, state, batch, None, memory)
    return jnp.sum(loss * weight), jnp.sum(correct * weight)


def _pad(batch: Mapping[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = len(batch["label"])
    weight = np.zeros((size,), np.float32)
    weight[:n] = 1.0
    if n == size:
        return dict(batch), weight
    padded = {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in batch.items()}
    return padded, weight


def evaluate(
    model: eqx.Module,
    state: eqx.nn.State,
    source: Any,
    *,
    batch_size: int,
    batches: Callable[..., Iterator[Mapping[str, np.ndarray]]],
    mesh: jax.sharding.Mesh | None = None,
    objective: str = "cross_entropy",
) -> dict[str, float]:
    """Mean loss and accuracy of `model` (in inference mode) over all of `source`.

    `objective` as in `make_train_step`: a model trained with TRIME is scored by
    TRIME's distribution with local memories only (the earlier positions of the
    same segment: `P(y|c)` is then a proper next-token distribution that uses
    nothing after `c`; other evaluation segments are not used as memory). A
    model trained with `"trime_long"` keeps its long-term memory: the earlier
    rows of the same evaluation batch, which are the preceding chunks of the
    text (unshuffled batches of `batch_size` consecutive examples, so the
    first row of each batch has local memories only; the zero-weight rows that
    pad the last batch come after every real row and are never memories).

    The last partial batch is padded to `batch_size` with zero weight, so one
    compiled shape serves the whole pass. With a `mesh`, `model` and `state` are
    placed on it (`seqkit.train.shard_params`, unless they are) and every batch
    is split over its `data` axis (`batch_size` a multiple of the `data` size).

    **Returns:** `{"loss", "accuracy", "examples"}`.
    """
    model = eqx.nn.inference_mode(model)
    if mesh is not None:  # a no-op for arrays already placed so
        model, state = shard_params((model, state), mesh)
    total_loss, total_correct, n = 0.0, 0.0, 0
    if jax.process_count() > 1:  # each process reads its rows of every batch
        if mesh is None:
            raise ValueError(f"evaluating in a run of {jax.process_count()} processes needs a mesh; got None")
        it = process_eval_batches(batches, source, batch_size)
    else:
        one_pass = dict(shuffle=False, drop_remainder=False, num_epochs=1)
        unpadded = batches(source, batch_size=batch_size, seed=0, **one_pass)
        it = ((*_pad(b, batch_size), len(b["label"])) for b in unpadded)
    for padded, weight, k in it:
        if mesh is not None:
            padded, weight = shard_batch((padded, weight), mesh)
        loss, correct = _eval_batch(model, state, padded, jnp.asarray(weight), objective)
        total_loss += float(loss)
        total_correct += float(correct)
        n += k
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "examples": 0}
    return {"loss": total_loss / n, "accuracy": total_correct / n, "examples": n}


def _default_batches():
    try:
        from seqkit.data import batches
    except ImportError as e:
        raise RecipeError(f"seqkit.data.batches is not available: {e}") from None
    return batches


def _n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))))


@dataclasses.dataclass
class _Run:
    """What a run carries from step to step, and what its checkpoint holds."""

    model: eqx.Module
    state: eqx.nn.State
    opt_state: Any
    step: int = 0
    elapsed: float = 0.0
    window: dict[str, Any] | None = None  # the train-record window a checkpoint noted


def train(
    recipe: Recipe,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    sources: Mapping[str, Any] | None = None,
    batches: Callable[..., Iterator[Mapping[str, np.ndarray]]] | None = None,
) -> dict[str, Any]:
    """Train `recipe`, writing everything to `run_dir`; return the final results.

    `run_dir` receives `config.json` (the resolved recipe), `metrics.jsonl` (train
    and eval records), `checkpoint.eqx` (model, BatchNorm state, optimizer state,
    step, data position and seed; written atomically every
    `trainer.checkpoint_every` steps and at the end) and finally `results.json`
    (`val_accuracy`, `test_accuracy`, `steps`, `wall_time_s`, ...).

    The recipe is validated (`Recipe.validate`: types, value ranges, the model
    built shapes-only) before anything is written or compiled, so a bad recipe
    raises a one-line `RecipeError` and leaves `run_dir` untouched; a run that fails
    before its first checkpoint removes what it wrote. Temporaries of an
    interrupted write (a kill during a checkpoint) are removed on the next start.

    With `trainer.mesh` set, the run is spread over this host's devices (see
    `TrainerConfig`): batches are split over the `data` axis, the model, its
    state and the optimizer state are placed on the mesh (again after loading a
    checkpoint, which holds plain host arrays), and a line names the mesh.

    In a run of several processes (`seqkit.train.init_distributed`, called
    before JAX starts) every process calls `train` with the same arguments and
    the same `run_dir`, on a file system they all see: the mesh spans the
    processes, each one reads only its own rows of every batch (the global batch
    is the one-process batch, so results agree with one process to float
    rounding), and only process 0 writes files and prints. The checkpoint records
    the process count; resuming with another count is a `RecipeError` that
    writes nothing.

    Every random choice is a pure function of the seed and the step: the model
    init key, the per-step dropout key (`fold_in(key, step)`), and the data order
    (batches resume at the global step). So a run killed at any point and resumed
    (`resume=True`) ends with the same results as an uninterrupted one.

    **Arguments:**

    - `recipe`: the `Recipe`.
    - `run_dir`: output directory (created).
    - `resume`: continue from `run_dir`'s checkpoint; with none, start fresh and say
      so; a finished run returns its saved results and writes nothing.
    - `progress`: print a progress line to stderr.
    - `sources`: `{"train", "val", "test"}` sources to use instead of the recipe's.
    - `batches`: batching function with the signature of `seqkit.data.batches`.

    **Returns:** the results dict (also written to `results.json`).
    """
    builder = _from_checkpoint(recipe, run_dir, resume)
    builder.validate()  # trainer.kernels among the rest
    # `trainer.kernels` decides what every kernel's impl="auto" means while tracing.
    with use_impl(recipe.trainer.kernels):
        return _train(
            recipe, builder, run_dir, resume=resume, progress=progress, sources=sources, batches=batches
        )


def _from_checkpoint(recipe: Recipe, run_dir: str | os.PathLike, resume: bool) -> Recipe:
    """The recipe that builds the model: on a resume from a checkpoint, without
    `model.init_from` (the checkpoint holds every array, so the run it started from
    is not read again, and may have moved)."""
    if recipe.model.init_from is None or not resume:
        return recipe
    if not os.path.isfile(os.path.join(expand_path(run_dir), CHECKPOINT)):
        return recipe
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, init_from=None))


def _train(
    recipe: Recipe, builder: Recipe, run_dir: str | os.PathLike, *, resume, progress, sources, batches
) -> dict[str, Any]:
    """`train`, with `builder` the recipe that builds the model (`_from_checkpoint`)."""
    run_dir = expand_path(run_dir)
    srcs = dict(sources) if sources is not None else recipe.make_sources()
    builder.validate(srcs)
    batches = batches if batches is not None else _default_batches()
    # One process of a multi-process run (the first) writes files and prints.
    bar = Progress(recipe.steps, enabled=progress, silent=not is_main_process())
    created = _open_run_dir(recipe, run_dir, resume=resume, bar=bar)
    if resume and (done := _finished_results(recipe, run_dir)) is not None:
        bar.notice(f"{run_dir} finished at step {done['steps']}: nothing to resume, nothing written")
        return done
    try:
        mesh = make_mesh(recipe.trainer.mesh) if recipe.trainer.mesh_sizes() else None
        if mesh is not None:
            bar.message(describe_mesh(mesh))
        model, state, optimizer, srcs = builder.build(sources=srcs)
        run = _Run(model, state, optimizer.init(eqx.filter(model, eqx.is_inexact_array)))
        run = _start_or_resume(recipe, run_dir, run, resume=resume, bar=bar)
        if mesh is not None:
            placed = shard_params((run.model, run.state, run.opt_state), mesh)
            run = dataclasses.replace(run, model=placed[0], state=placed[1], opt_state=placed[2])
        step = make_train_step(optimizer, mesh, objective=recipe.trainer.objective)
        run = _step_loop(recipe, run_dir, run, step, srcs, batches, bar, mesh)
        bar.close()
        return _finish(recipe, run_dir, run, srcs, batches, mesh)
    except BaseException:
        if is_main_process():
            _discard_unstarted(run_dir, created)
        raise


def _open_run_dir(recipe: Recipe, run_dir: str, *, resume: bool, bar: Progress) -> bool:
    """Make `run_dir` ready: refuse to overwrite a run or to resume one of another
    configuration, say when `resume` finds no checkpoint, create the directory and
    remove the temporaries of interrupted writes. Returns whether it was created."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RecipeError(f"run directory {run_dir} is a file; expected a directory (or a new path)")
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    config_path = os.path.join(run_dir, CONFIG)
    if os.path.isfile(os.path.join(run_dir, SWEEP_CONFIG)):
        raise RecipeError(
            f"{run_dir} holds a sweep ({SWEEP_CONFIG}), not a training run; choose another --out"
        )
    if os.path.exists(ckpt_path) and not resume:
        raise RecipeError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    current = recipe_to_dict(recipe)
    new = _comparable_recipe(current)
    if resume and os.path.exists(ckpt_path) and not os.path.exists(config_path):
        raise RecipeError(
            f"{run_dir} holds a checkpoint but no {CONFIG}, so the settings to resume with cannot be "
            f"checked against the run's; put its {CONFIG} back, or start a new run with another --out"
        )
    if resume and os.path.exists(config_path):
        saved = read_json(config_path, "the run's configuration")
        stored = _comparable_recipe(saved)
        if stored != new:
            raise RecipeError(
                f"{run_dir} holds a run of a different configuration ({config_differences(stored, new)}); "
                "resume it with the same recipe, preset and --set"
            )
        if os.path.exists(ckpt_path):
            _announce_execution_changes(saved, current, bar)
    if not os.path.exists(ckpt_path):
        _check_no_checkpoint_files(
            run_dir, CONFIG, RESULTS, lambda stored: _comparable_recipe(stored) == new, "--out", bar
        )
    if resume and not os.path.exists(ckpt_path):
        # Restart scripts pass --resume every time: a first start is normal, a typo is visible.
        bar.notice(f"no checkpoint in {run_dir}: starting a fresh run")
    return _make_run_dir(run_dir, bar) if is_main_process() else False


def _check_no_checkpoint_files(
    run_dir: str,
    config_name: str,
    results_name: str,
    same_config: Callable[[Any], bool],
    option: str,
    bar: Progress,
) -> None:
    """`run_dir` has no checkpoint, and a new run will write `config_name`, the
    metrics log and `results_name` in it. Refuse when it already holds any of them,
    unless they are a start of this same configuration stopped before its first
    checkpoint (nothing to lose): a finished run whose checkpoint was removed, or
    another run's or the user's files, are never written over unasked."""
    present = [n for n in (config_name, METRICS, results_name) if os.path.isfile(os.path.join(run_dir, n))]
    if not present:
        return
    if results_name not in present and config_name in present:
        stored = json_or_none(os.path.join(run_dir, config_name))
        if stored is not None and same_config(stored):
            bar.notice(
                f"{run_dir} holds a start of this run stopped before its first checkpoint: starting again"
            )
            return
    raise RecipeError(
        f"{run_dir} holds {', '.join(present)} but no {CHECKPOINT}: nothing to resume, and a new "
        f"run would write over them; remove them or choose another {option}"
    )


# Where a run reads its data and how it executes, not what it computes: a run may
# resume on another mesh, after its data directory moved, with another number of
# data workers (the batches are the same for any), or logging, validating and
# checkpointing at other intervals (the model and results are the same).
_NOT_COMPARED = {
    "trainer": ("mesh", "log_every", "eval_every", "checkpoint_every"),
    "data": ("data_dir", "worker_count", "memory_cache"),
}


def _comparable_recipe(config: Any) -> Any:
    """A recipe's data less the settings in `_NOT_COMPARED`, for comparing a resumed
    run's settings with its saved ones. A setting added to seqkit after a run was
    saved takes its default there (the behaviour the run had), so the run still
    resumes unless the new recipe sets it otherwise."""
    try:
        config = recipe_to_dict(recipe_from_dict(config))
    except (RecipeError, TypeError, ValueError, AttributeError):
        pass  # compared as saved: the difference is reported key by key
    return _split_recipe(config, keep=False)


def _split_recipe(config: Any, *, keep: bool) -> Any:
    """`config` with only (`keep`) or without the settings in `_NOT_COMPARED`."""
    if not isinstance(config, dict):
        return config if not keep else {}
    out = {} if keep else dict(config)
    for section, keys in _NOT_COMPARED.items():
        if isinstance(config.get(section), dict):
            part = {k: v for k, v in config[section].items() if (k in keys) == keep}
            if part or not keep:
                out[section] = part
    return out


def _announce_execution_changes(stored: Any, new: Any, bar: Progress) -> None:
    """Say which settings in `_NOT_COMPARED` a resume changes (`"trainer.log_every:
    50 there, 10 here"`); they are accepted, and the saved configuration keeps the
    values the run started with."""
    where = config_differences(_split_recipe(stored, keep=True), _split_recipe(new, keep=True), limit=8)
    if where:
        bar.notice(f"resuming with other settings that do not change what is computed: {where}")


def _make_run_dir(run_dir: str, bar: Progress) -> bool:
    """Create `run_dir` (a `RecipeError` naming it when that fails or it is not
    writable) and remove the temporaries of interrupted writes, saying so. Returns
    whether it was created."""
    created = not os.path.exists(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise RecipeError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    _check_writable(run_dir)
    removed = remove_temporaries(run_dir)
    if removed:
        names = ", ".join(os.path.basename(p) for p in removed)
        bar.notice(f"removed {len(removed)} temporary file(s) of an interrupted write in {run_dir}: {names}")
    return created


def _check_writable(directory: str) -> None:
    """A `RecipeError` naming `directory` unless a file can be created in it (a real
    attempt: permission bits do not bind root, a read-only file system does)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise RecipeError(f"cannot write to {directory}: {e.strerror or e}") from None


def _finished_results(recipe: Recipe, run_dir: str, name: str = RESULTS) -> dict[str, Any] | None:
    """The saved results (file `name`) of a run that already ran all its steps, else `None`."""
    results_path = os.path.join(run_dir, name)
    if not (os.path.exists(results_path) and os.path.exists(os.path.join(run_dir, CHECKPOINT))):
        return None
    results = read_json(results_path, "the run's results")
    return results if results.get("steps") == recipe.steps else None


def _discard_unstarted(run_dir: str, created: bool, config_name: str = CONFIG) -> None:
    """After a failure before the first checkpoint, remove what this run wrote (its
    configuration file `config_name`, the metrics log, temporaries), so a failed
    start leaves no half-made run directory behind."""
    if os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        return  # a resumable run: keep everything
    for name in (config_name, METRICS):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            os.remove(path)
    remove_temporaries(run_dir)
    if created and os.path.isdir(run_dir) and not os.listdir(run_dir):
        os.rmdir(run_dir)


def _start_or_resume(recipe: Recipe, run_dir: str, run: _Run, *, resume: bool, bar: Progress) -> _Run:
    """The run restored from `run_dir`'s checkpoint (`resume`), or `run` at step 0
    with `config.json` written and the metrics log emptied."""
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    log = MetricsLog(os.path.join(run_dir, METRICS), enabled=is_main_process())
    if resume and os.path.exists(ckpt_path):
        (model, state, opt_state), meta = load_checkpoint(ckpt_path, (run.model, run.state, run.opt_state))
        if meta["seed"] != recipe.trainer.seed:
            raise RecipeError(
                f"checkpoint seed {meta['seed']} differs from trainer.seed {recipe.trainer.seed}"
            )
        count = meta.get("process_count", 1)  # checkpoints from before the key: one process
        if count != jax.process_count():
            raise RecipeError(
                f"{run_dir} was checkpointed by a run of {count} process(es); this run has "
                f"{jax.process_count()}: resume it with {count} (JAX_NUM_PROCESSES, srun -n), "
                "or start a new run in another --out"
            )
        bar.message(f"resuming {run_dir} at step {meta['step']}/{recipe.steps}")
        log.truncate(meta["step"], size=meta.get("log_bytes"))
        return _Run(model, state, opt_state, meta["step"], meta["elapsed_s"], meta.get("window"))
    log.truncate(-1)
    if is_main_process():
        write_json(os.path.join(run_dir, CONFIG), recipe_to_dict(recipe))
    return run


def _step_loop(
    recipe: Recipe,
    run_dir: str,
    run: _Run,
    train_step: Callable,
    srcs: Mapping[str, Any],
    batches: Callable[..., Iterator[Mapping[str, np.ndarray]]],
    bar: Progress,
    mesh: jax.sharding.Mesh | None = None,
) -> _Run:
    """Steps from `run.step` to `recipe.steps`: logging every `log_every`, validation
    every `eval_every`, a checkpoint every `checkpoint_every` and at the end. With a
    `mesh`, each batch is split over its `data` axis."""
    tc = recipe.trainer
    total = recipe.steps
    eval_bs = tc.eval_batch_size or tc.batch_size
    log = MetricsLog(os.path.join(run_dir, METRICS), enabled=is_main_process())
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    model, state, opt_state, step, elapsed = run.model, run.state, run.opt_state, run.step, run.elapsed
    it = batches(
        srcs["train"],
        batch_size=tc.batch_size,
        seed=tc.seed,
        shuffle=True,
        drop_remainder=True,
        start_step=step,
        worker_count=recipe.data.worker_count,
        **tc.batch_options(),
        **process_part(),
    )
    if step < total:
        shape = "x".join(map(str, np.shape(srcs["train"][0]["inputs"])))
        bar.message(
            f"compiling the training step ({_n_params(model):,} parameters, batch {tc.batch_size} of {shape})"
        )
    first = True
    window = TrainWindow(run.window)
    t_segment = time.perf_counter()
    elapsed_at_segment = elapsed
    while step < total:
        batch = next(it)
        if mesh is not None:
            batch = shard_batch(batch, mesh)
        model, state, opt_state, metrics = train_step(model, state, opt_state, batch, step_key(tc.seed, step))
        step += 1
        if first:
            jax.block_until_ready(metrics)
            bar.message(f"compiled; first step done in {time.perf_counter() - t_segment:.1f} s")
            first = False
        window.add(metrics)
        elapsed = elapsed_at_segment + time.perf_counter() - t_segment
        if step % tc.log_every == 0 or step == total:
            _log_train(
                log,
                bar,
                window,
                step=step,
                elapsed=elapsed,
                recipe=recipe,
                skipped=int(opt_state.total_notfinite),
            )
            window = TrainWindow()
        if step % tc.eval_every == 0 and step < total:
            t_eval = time.perf_counter()
            res = evaluate(
                model,
                state,
                srcs["val"],
                batch_size=eval_bs,
                batches=batches,
                mesh=mesh,
                objective=recipe.trainer.objective,
            )
            log.write({"step": step, "split": "val", **res})
            acc = "" if math.isnan(res["accuracy"]) else f"accuracy {100 * res['accuracy']:.2f}%, "
            bar.message(f"step {step}: val {acc}loss {res['loss']:.4f}")
            window.pause(time.perf_counter() - t_eval)
        if step % tc.checkpoint_every == 0 or step == total:
            _save(ckpt_path, recipe, _Run(model, state, opt_state, step, elapsed, window.carry()), log)
    return _Run(model, state, opt_state, step, elapsed)


def _log_train(
    log: MetricsLog,
    bar: Progress,
    window: TrainWindow,
    *,
    step: int,
    elapsed: float,
    recipe: Recipe,
    skipped: int,
) -> None:
    """One train record: the window's mean metrics, throughput and skipped updates."""
    means = {k: float(v) for k, v in window.means().items()}
    eps = window.examples_per_s(recipe.trainer.batch_size)
    log.write(
        {
            "step": step,
            "split": "train",
            **means,
            "examples_per_s": eps,
            "skipped_updates": skipped,
            "elapsed_s": elapsed,
        }
    )
    bar.update(step, loss=means["loss"], accuracy=means["accuracy"], examples_per_s=eps)


def _save(path: str, recipe: Recipe, run: _Run, log: MetricsLog) -> None:
    """Write the checkpoint from the first process; every process calls it (the
    arrays split over processes are gathered first, a collective). Its header
    notes the metrics log's length and the open train-record window, so a resumed
    run's log continues exactly this one's."""
    meta = {
        "step": run.step,
        "data_position": run.step,
        "seed": recipe.trainer.seed,
        "elapsed_s": run.elapsed,
        "recipe": recipe.name,
        "process_count": jax.process_count(),
        "log_bytes": log.size(),
        "window": run.window,
    }
    tree = host_arrays((run.model, run.state, run.opt_state))
    if is_main_process():
        save_checkpoint(path, tree, meta)


def _finish(
    recipe: Recipe,
    run_dir: str,
    run: _Run,
    srcs: Mapping[str, Any],
    batches,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Evaluate on val and test, write `results.json`, return the results."""
    eval_bs = recipe.trainer.eval_batch_size or recipe.trainer.batch_size
    scored = {"batch_size": eval_bs, "batches": batches, "mesh": mesh, "objective": recipe.trainer.objective}
    val = evaluate(run.model, run.state, srcs["val"], **scored)
    test = evaluate(run.model, run.state, srcs["test"], **scored)
    log = MetricsLog(os.path.join(run_dir, METRICS), enabled=is_main_process())
    log.write({"step": run.step, "split": "val", **val})
    log.write({"step": run.step, "split": "test", **test})
    results = {
        "recipe": recipe.name,
        "preset": recipe.preset,
        "val_accuracy": val["accuracy"],
        "val_loss": val["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_examples": val["examples"],
        "test_examples": test["examples"],
        "steps": run.step,
        "skipped_updates": int(run.opt_state.total_notfinite),
        "n_params": _n_params(run.model),
        "wall_time_s": run.elapsed,
        "train_examples_per_s": run.step * recipe.trainer.batch_size / max(run.elapsed, 1e-9),
    }
    if _per_position(srcs["val"], recipe.trainer.objective):
        results.update(_bits(val, "val") | _bits(test, "test"))
    if is_main_process():
        write_json(os.path.join(run_dir, RESULTS), results)
    return results


def _per_position(source: Any, objective: str = "cross_entropy") -> bool:
    """Whether `source` has a label per position (language modeling) that the
    loss scores (masked-patch pretraining scores pixels, not labels)."""
    return objective != "masked_patches" and len(source) > 0 and np.ndim(source[0]["label"]) == 1


def _bits(res: Mapping[str, float], split: str) -> dict[str, float]:
    """The mean loss in bits per token (bits per byte on a byte corpus)."""
    return {f"{split}_bits_per_token": res["loss"] / math.log(2)}


def load_run(
    run_dir: str | os.PathLike, *, sources=None
) -> tuple[Recipe, eqx.Module, eqx.nn.State, dict, dict]:
    """The recipe, model and state of a run directory's checkpoint.

    **Returns:** `(recipe, model, state, sources, meta)`.
    """
    run_dir = expand_path(run_dir)
    config_path = os.path.join(run_dir, CONFIG)
    ckpt_path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isdir(run_dir):
        raise RecipeError(f"no run directory at {run_dir}; expected the --out of a `seqkit train` run")
    if os.path.isfile(os.path.join(run_dir, SWEEP_CONFIG)):
        raise RecipeError(
            f"{run_dir} is a sweep directory ({SWEEP_CONFIG}), not a `seqkit train` run; its results "
            "are in sweep.json"
        )
    for p in (config_path, ckpt_path):
        if not os.path.exists(p):
            raise RecipeError(f"{run_dir} is not a run directory: {os.path.basename(p)} is missing")
    recipe = recipe_from_dict(read_json(config_path, "the run's configuration"))
    # The checkpoint holds every array: the run it started from is not read again.
    model, state, optimizer, srcs = _from_checkpoint(recipe, run_dir, True).build(sources=sources)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    (model, state, _), meta = load_checkpoint(ckpt_path, (model, state, opt_state))
    return recipe, model, state, srcs, meta


EVAL = "eval.json"


def evaluate_run(run_dir: str | os.PathLike, *, sources=None) -> dict[str, Any]:
    """Evaluate a run directory's checkpoint on val and test; write `eval.json`.

    The directory is checked to be writable before the (possibly long) evaluation,
    and `eval.json` is written atomically.

    **Returns:** `{"recipe", "preset", "step", "val_accuracy", "val_loss",
    "test_accuracy", "test_loss", "eval_time_s"}` (the content of `eval.json`).
    """
    run_dir = expand_path(run_dir)
    recipe, model, state, srcs, meta = load_run(run_dir, sources=sources)
    _check_writable(run_dir)  # before the evaluation, not after it
    bs = recipe.trainer.eval_batch_size or recipe.trainer.batch_size
    batches = _default_batches()
    t0 = time.perf_counter()
    with use_impl(recipe.trainer.kernels):
        res = {
            split: evaluate(
                model, state, srcs[split], batch_size=bs, batches=batches, objective=recipe.trainer.objective
            )
            for split in ("val", "test")
        }
    out = {
        "recipe": recipe.name,
        "preset": recipe.preset,
        "step": meta["step"],
        "val_accuracy": res["val"]["accuracy"],
        "val_loss": res["val"]["loss"],
        "test_accuracy": res["test"]["accuracy"],
        "test_loss": res["test"]["loss"],
        "eval_time_s": time.perf_counter() - t0,
    }
    if _per_position(srcs["val"], recipe.trainer.objective):
        out.update(_bits(res["val"], "val") | _bits(res["test"], "test"))
    write_json(os.path.join(run_dir, EVAL), out)
    return out
