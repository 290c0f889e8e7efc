"""Shared pieces of the mixer tests in tests/nn: float64 NumPy building blocks,
a causality check, and a small synthetic training task.

Recall task: each example is a sequence of random tokens from a small vocabulary with one
position marked; the label is the token at the marked position. Features are
the one-hot token plus a marker flag. Chance accuracy is `1 / vocab`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from helpers import to_np


def np_layernorm(x, ln):
    """`eqx.nn.LayerNorm` in float64, from its parameters."""
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * to_np(ln.weight) + to_np(ln.bias)


def np_linear(x, lin):
    """`eqx.nn.Linear` in float64, from its parameters."""
    y = x @ to_np(lin.weight).T
    return y if lin.bias is None else y + to_np(lin.bias)


def future_dependence(f, x):
    """`(J, future)`: `J[t, s] = max |∂f(x)_t / ∂x_s|` over channels (by `jacfwd`)
    and the boolean mask of the pairs with `s > t`."""
    L = x.shape[0]
    J = np.abs(np.asarray(jax.jit(jax.jacfwd(f))(x))).max(axis=(1, 3))
    return J, np.triu(np.ones((L, L), bool), 1)


def recall_batch(key, n, L, vocab, lo, hi):
    """`n` examples of length `L` whose marked position is uniform in `[lo, hi)`."""
    tkey, pkey = jr.split(key)
    tokens = jr.randint(tkey, (n, L), 0, vocab)
    pos = jr.randint(pkey, (n,), lo, hi)
    marker = jax.nn.one_hot(pos, L)[..., None]
    x = jnp.concatenate([jax.nn.one_hot(tokens, vocab), marker], axis=-1)
    return x, tokens[jnp.arange(n), pos]


class RecallModel(eqx.Module):
    embed: eqx.nn.Linear
    mixer: eqx.Module
    head: eqx.nn.Linear
    readout: str = eqx.field(static=True)

    def __call__(self, x):
        h = self.mixer(jax.vmap(self.embed)(x))
        return self.head(jnp.mean(h, axis=0) if self.readout == "mean" else h[-1])


# The default-tier recall task: short sequences, 4 tokens (chance 0.25), small batches.
QUICK_RECALL = {"L": 32, "vocab": 4, "lo": 0, "lr": 1e-2, "batch": 32}


def fit_recall(mixer, d_model, *, key, L, vocab, lo, hi, readout, steps, lr, batch=64):
    """Train `embed → mixer → readout → head` with Adam; return held-out accuracy."""
    mkey, hkey, dkey, tkey = jr.split(key, 4)
    model = RecallModel(
        eqx.nn.Linear(vocab + 1, d_model, key=mkey),
        mixer,
        eqx.nn.Linear(d_model, vocab, key=hkey),
        readout,
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(lr)

    def loss_fn(params, x, y):
        logits = jax.vmap(eqx.combine(params, static))(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, k):
        params, state = carry
        x, y = recall_batch(k, batch, L, vocab, lo, hi)
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    @jax.jit
    def train(params):
        carry = (params, opt.init(params))
        (params, _), _ = jax.lax.scan(step, carry, jr.split(dkey, steps))
        return params

    # optax's Adam mixes Python floats with its int32 step count, which strict
    # promotion rejects; the model itself is traced under strict promotion first.
    jax.eval_shape(loss_fn, params, *recall_batch(dkey, 2, L, vocab, lo, hi))
    with jax.numpy_dtype_promotion("standard"):
        model = eqx.combine(train(params), static)
    x, y = recall_batch(tkey, 512, L, vocab, lo, hi)
    pred = jnp.argmax(eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(model, x), axis=-1)
    return float(jnp.mean(pred == y))
