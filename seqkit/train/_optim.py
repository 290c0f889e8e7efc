"""Optimizers with parameter groups: SSM parameters at their own learning rate."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import ArrayLike, PyTree

from seqkit._mixer import AbstractMixer, outermost, ssm_parameter_labels
from seqkit.nn import ResidualBlock, SequenceNorm

_NORMS = (SequenceNorm, eqx.nn.LayerNorm, eqx.nn.RMSNorm, eqx.nn.GroupNorm, eqx.nn.BatchNorm)


def param_labels(tree: PyTree, *, decay_norms_and_biases: bool = True) -> PyTree[str]:
    """Label every array leaf of `tree` `"ssm"`, `"default"` or `"no_decay"`.

    The `"ssm"` leaves are those the model's mixers declare through
    `AbstractMixer.ssm_parameters()` (S4/S4D/DSS: Λ, p, B, log Δ; EMA: α, δ, β);
    everything else, including the cores' `C` and `D`, is `"default"`. A new
    family joins a group by declaring its leaves, not by editing the optimizer.

    With `decay_norms_and_biases=False`, `"no_decay"` marks the scales and offsets
    of every normalization layer, and the biases of the linear and convolution
    layers and the embedding tables inside the residual blocks and mixers (not
    the model's input encoder nor its classification head), as the S4 authors'
    training code leaves them out of weight decay (`state-spaces/s4`,
    `optimizer_param_grouping`, which applies to the backbone).

    Works on a model or on `eqx.filter(model, eqx.is_inexact_array)` (the shape
    optax sees).

    **Returns:** a pytree of strings with the structure of `tree`'s array leaves.
    """
    labels = ssm_parameter_labels(tree)
    if decay_norms_and_biases:
        return labels

    def where(t):
        return [x for x in _undecayed(t) if x is not None]

    if not where(labels):
        return labels
    return eqx.tree_at(where, labels, replace_fn=lambda label: "no_decay" if label == "default" else label)


def _undecayed(tree: PyTree) -> list:
    """The leaves `param_labels` marks `"no_decay"` (with `None`s where a module has
    no bias)."""
    found = [p for norm in outermost(tree, _NORMS) for p in (norm.weight, norm.bias)]
    for part in outermost(tree, (ResidualBlock, AbstractMixer)):
        for layer in outermost(part, (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.Embedding)):
            found.append(layer.weight if isinstance(layer, eqx.nn.Embedding) else layer.bias)
    return found


def cosine_warmup(peak: ArrayLike, warmup_steps: ArrayLike, total_steps: ArrayLike) -> optax.Schedule:
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at
    `total_steps` (stepped per optimizer step). Any argument may be a traced
    array, so a vmapped sweep can vary it; integer step counts are checked here,
    array ones are not.

    `lr(t) = peak·t/w` for `t < w`, else `peak·½(1 + cos(π·min(1, (t−w)/(T−w))))`.
    """
    if isinstance(warmup_steps, (int, np.integer)) and isinstance(total_steps, (int, np.integer)):
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(
                f"expected warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}"
            )
        w_div, d_div = max(warmup_steps, 1), max(total_steps - warmup_steps, 1)
    else:
        # The same float32 arithmetic as the integer case: the divisors are exact integers.
        w_i, t_i = jnp.asarray(warmup_steps, jnp.int32), jnp.asarray(total_steps, jnp.int32)
        w_div = jnp.maximum(w_i, 1).astype(jnp.float32)
        d_div = jnp.maximum(t_i - w_i, 1).astype(jnp.float32)
        warmup_steps = w_i.astype(jnp.float32)

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        p = jnp.asarray(peak, jnp.float32)
        warm = p * t / w_div
        frac = jnp.clip((t - warmup_steps) / d_div, 0.0, 1.0)
        decay = p * 0.5 * (1.0 + jnp.cos(math.pi * frac))
        return jnp.where(t < warmup_steps, warm, decay)

    return schedule


def _adamw_cosine(learning_rate, weight_decay, b1, b2, eps, *, warmup_steps, total_steps):
    return optax.adamw(
        cosine_warmup(learning_rate, warmup_steps, total_steps),
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
    )


def adamw_cosine(
    learning_rate: float,
    weight_decay: float,
    *,
    warmup_steps: int,
    total_steps: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    hyperparams_as_arrays: bool = False,
) -> optax.GradientTransformation:
    """AdamW with a linear-warmup cosine schedule; the peak learning rate and weight
    decay are stored as arrays in the optimizer state (`optax.inject_hyperparams`),
    so they can be read, changed, or vmapped over.

    With `hyperparams_as_arrays`, so are `warmup_steps`, `total_steps`, `b1`, `b2`
    and `eps` (a vmapped sweep varies them per member); by default they are
    constants of the transformation, which keeps the state of existing checkpoints.
    """
    static = () if hyperparams_as_arrays else ("b1", "b2", "eps", "warmup_steps", "total_steps")
    return optax.inject_hyperparams(_adamw_cosine, static_args=static)(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        b1=b1,
        b2=b2,
        eps=eps,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
    )


def make_optimizer(
    *,
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    ssm_learning_rate: float = 1e-3,
    ssm_weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    grad_clip: float | None = None,
    decay_norms_and_biases: bool = True,
    hyperparams_as_arrays: bool = False,
) -> optax.GradientTransformation:
    """The training optimizer: clip → AdamW per parameter group → skip non-finite.

    - Global-norm gradient clipping at `grad_clip` (none when None or 0).
    - Two groups (`param_labels`): SSM parameters (Λ, p, B, log Δ) at
      `ssm_learning_rate` / `ssm_weight_decay`; everything else at `learning_rate` /
      `weight_decay`. Both follow the same warmup + cosine schedule.
    - `decay_norms_and_biases=False` adds a third group: normalization parameters
      and the biases inside the blocks (`param_labels`) at `learning_rate` with no
      weight decay.
    - `optax.apply_if_finite`: an update with a non-finite gradient is skipped; the
      state counts them (`opt_state.total_notfinite`).
    - `hyperparams_as_arrays`: every numeric hyperparameter (both groups' learning
      rates and weight decays, warmup and total steps, `b1`, `b2`, `eps`, the
      clipping norm) is an array in the optimizer state, and the transformation
      reads it from there: states of optimizers that differ only in these values
      have one structure, so one `update` serves all of them, stacked and vmapped
      ([`seqkit.train.sweep`][]). Whether to clip at all stays a structural choice.
      Off by default: the learning rates and weight decays alone are arrays.

    Apply it to `eqx.filter(model, eqx.is_inexact_array)`.

    **Returns:** an `optax.GradientTransformation`.
    """
    group = lambda lr, wd: adamw_cosine(  # noqa: E731
        lr,
        wd,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        b1=b1,
        b2=b2,
        eps=eps,
        hyperparams_as_arrays=hyperparams_as_arrays,
    )
    if hyperparams_as_arrays:
        cosine_warmup(0.0, warmup_steps, total_steps)  # the range checks of the integer form
    parts = []
    if grad_clip:
        if hyperparams_as_arrays:
            parts.append(optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=grad_clip))
        else:
            parts.append(optax.clip_by_global_norm(grad_clip))
    groups = {
        "ssm": group(ssm_learning_rate, ssm_weight_decay),
        "default": group(learning_rate, weight_decay),
    }
    if not decay_norms_and_biases:
        groups["no_decay"] = group(learning_rate, 0.0)
    labels = lambda tree: param_labels(tree, decay_norms_and_biases=decay_norms_and_biases)  # noqa: E731
    parts.append(optax.multi_transform(groups, labels))
    tx = optax.apply_if_finite(optax.chain(*parts), max_consecutive_errors=2**31 - 1)
    return _standard_promotion(tx)


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    # optax mixes Python floats with int32 step counts (`b1 ** count`), which seqkit's
    # strict dtype promotion rejects; the optimizer's own arithmetic runs under JAX's
    # standard promotion rules, everything else stays strict.
    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params)

    return optax.GradientTransformation(init, update)
