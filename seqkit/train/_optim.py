"""Optimizers with parameter groups: SSM parameters at their own learning rate."""

import math

import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike, PyTree

from seqkit._mixer import ssm_parameter_labels


def param_labels(tree: PyTree) -> PyTree[str]:
    """Label every array leaf of `tree` `"ssm"` or `"default"`.

    The `"ssm"` leaves are those the model's mixers declare through
    `AbstractMixer.ssm_parameters()` (S4/S4D/DSS: Λ, p, B, log Δ; EMA: α, δ, β);
    everything else, including the cores' `C` and `D`, is `"default"`. A new
    family joins a group by declaring its leaves, not by editing the optimizer.
    Works on a model or on `eqx.filter(model, eqx.is_inexact_array)` (the shape
    optax sees).

    **Returns:** a pytree of strings with the structure of `tree`'s array leaves.
    """
    return ssm_parameter_labels(tree)


def cosine_warmup(peak: ArrayLike, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at
    `total_steps` (stepped per optimizer step). `peak` may be a traced array,
    so a vmapped sweep can vary it.

    `lr(t) = peak·t/w` for `t < w`, else `peak·½(1 + cos(π·min(1, (t−w)/(T−w))))`.
    """
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(
            f"expected warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}"
        )

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        p = jnp.asarray(peak, jnp.float32)
        warm = p * t / max(warmup_steps, 1)
        frac = jnp.clip((t - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
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
) -> optax.GradientTransformation:
    """AdamW with a linear-warmup cosine schedule; the peak learning rate and weight
    decay are stored as arrays in the optimizer state (`optax.inject_hyperparams`),
    so they can be read, changed, or vmapped over."""
    return optax.inject_hyperparams(
        _adamw_cosine, static_args=("b1", "b2", "eps", "warmup_steps", "total_steps")
    )(
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
) -> optax.GradientTransformation:
    """The training optimizer: clip → AdamW per parameter group → skip non-finite.

    - Global-norm gradient clipping at `grad_clip` (none when None or 0).
    - Two groups (`param_labels`): SSM parameters (Λ, p, B, log Δ) at
      `ssm_learning_rate` / `ssm_weight_decay`; everything else at `learning_rate` /
      `weight_decay`. Both follow the same warmup + cosine schedule.
    - `optax.apply_if_finite`: an update with a non-finite gradient is skipped; the
      state counts them (`opt_state.total_notfinite`).

    Apply it to `eqx.filter(model, eqx.is_inexact_array)`.

    **Returns:** an `optax.GradientTransformation`.
    """
    group = lambda lr, wd: adamw_cosine(  # noqa: E731
        lr, wd, warmup_steps=warmup_steps, total_steps=total_steps, b1=b1, b2=b2, eps=eps
    )
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(
        optax.multi_transform(
            {
                "ssm": group(ssm_learning_rate, ssm_weight_decay),
                "default": group(learning_rate, weight_decay),
            },
            param_labels,
        )
    )
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
