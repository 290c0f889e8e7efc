"""Sampling from a causal language model through its recurrent step mode."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._perceiver_ar import PerceiverAR
from ._sequence_model import SequenceModel


def _check_language_model(model: SequenceModel | PerceiverAR) -> None:
    if isinstance(model, PerceiverAR):
        return  # tokens in, one logit per token out, by construction
    if not isinstance(model, SequenceModel):
        raise TypeError(f"expected a seqkit.nn.SequenceModel or PerceiverAR, got {type(model).__name__}")
    if not isinstance(model.encoder, eqx.nn.Embedding):
        raise ValueError(
            "generate needs a model of integer tokens (built with vocab_size=...), not of real inputs"
        )
    vocab = model.encoder.num_embeddings
    if model.head is None or model.head.out_features != vocab:
        out = None if model.head is None else model.head.out_features
        raise ValueError(
            f"generate needs a head with one logit per token of the vocabulary (n_classes={vocab}), got {out}"
        )
    if model.length_dependent:
        raise ValueError(
            "generate needs a model whose logits at a position depend only on the tokens up to it; "
            "this one has a length-dependent mixer (DSS's softmax kernel, normalized over the whole "
            "sequence length), so the number of tokens asked for would change the earlier ones' "
            "distribution: use DSS's variant='exp' (GSS's default) for a model that generates"
        )
    if model.pooling not in ("none", "last"):
        raise ValueError(
            "generate needs next-token logits at every position: pool='none' (or 'last'), "
            f"got {model.pooling!r}"
        )


def _has_state(model: eqx.Module) -> bool:
    leaves = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, eqx.nn.StateIndex))
    return any(isinstance(x, eqx.nn.StateIndex) for x in leaves)


def _check_sampling(temperature: float | int, top_k: int | None, vocab: int) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):  # NaN fails both
        raise ValueError(f"expected a finite temperature >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"expected top_k in 1..{vocab} (the vocabulary), got {top_k}")


def sample_logits(
    logits: Float[Array, " V"], key: PRNGKeyArray, *, temperature: float | int = 1.0, top_k: int | None = None
) -> Int[Array, ""]:
    """One token from next-token `logits`.

    `temperature = 0` takes the argmax; otherwise the token is drawn from
    `softmax(logits / temperature)`, restricted to the `top_k` largest logits
    when `top_k` is given (Fan, Lewis and Dauphin, "Hierarchical Neural Story
    Generation", ACL 2018). `temperature` and `top_k` are Python numbers (they
    pick the computation).
    """
    _check_sampling(temperature, top_k, logits.shape[-1])
    if temperature == 0:
        return jnp.argmax(logits).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        # exactly the top_k indices (ties with the k-th value do not widen the set)
        keep = jnp.zeros(scaled.shape, bool).at[jax.lax.top_k(scaled, top_k)[1]].set(True)
        scaled = jnp.where(keep, scaled, -jnp.inf)
    return jr.categorical(key, scaled).astype(jnp.int32)


@eqx.filter_jit
def _run(model, state, rec, prompt, keys, temperature, top_k):
    def feed(rec, tok):
        logits, rec = model.step(tok, rec, state)
        return rec, logits

    rec, prompt_logits = jax.lax.scan(feed, rec, prompt)

    def body(carry, k):
        logits, rec = carry
        tok = sample_logits(logits, k, temperature=temperature, top_k=top_k)
        logits, rec = model.step(tok, rec, state)
        return (logits, rec), (tok, logits)

    # every new token but the last is fed back; the last is only predicted
    (last_logits, _), (tokens, logits) = jax.lax.scan(body, (prompt_logits[-1], rec), keys[:-1])
    last = sample_logits(last_logits, keys[-1], temperature=temperature, top_k=top_k)
    return jnp.concatenate([tokens, last[None]]), jnp.concatenate([prompt_logits, logits])


@eqx.filter_jit
def _run_windows(model, state, prompt, n, keys, temperature, top_k):
    """Perceiver AR: the parallel model on every prefix of one buffer. Position
    `t` predicts token `t + 1`: the prompt's own (teacher-forced) while
    `t + 1 < P`, else a sampled one written into the buffer."""
    P = prompt.shape[0]
    # the positions the model reads: the last new token is predicted, never read
    buffer = jnp.zeros((P + n - 1,), jnp.int32).at[:P].set(prompt)

    def body(buffer, t):
        logits = model.next_logits(buffer, t, state)
        k = keys[jnp.maximum(t - (P - 1), 0)]  # new token i uses keys[i]
        tok = sample_logits(logits, k, temperature=temperature, top_k=top_k)
        tok = jnp.where(t + 1 < P, buffer[jnp.minimum(t + 1, P + n - 2)], tok)
        return buffer.at[t + 1].set(tok, mode="drop"), (tok, logits)

    _, (toks, logits) = jax.lax.scan(body, buffer, jnp.arange(P + n - 1))
    return toks[P - 1 :], logits


def generate(
    model: SequenceModel | PerceiverAR,
    prompt: Array,
    n: int,
    *,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    key: PRNGKeyArray | None = None,
    state: eqx.nn.State | None = None,
    return_logits: bool = False,
) -> Int[Array, " n"] | tuple[Int[Array, " n"], Float[Array, "m V"]]:
    """Continue `prompt` by `n` tokens sampled from a causal language model.

    The model is a [`seqkit.nn.SequenceModel`][] of integer tokens with
    `pool="none"` and one logit per vocabulary entry, every mixer causal and
    recurrent (SSM layers, GSS, Mega, causal attention with its key/value cache,
    linear attention, ...). It runs in inference mode through its step mode: the
    prompt is fed one token at a time, then each sampled token is fed back, so a
    token costs one step, not a pass over the whole prefix. The step mode gives
    the parallel model's logits, so with `temperature=0` every token is the
    argmax of the parallel model applied to the prefix before it.

    A [`seqkit.nn.PerceiverAR`][] has no recurrent state (its latent window
    moves with every token): each token is the parallel model on the prefix
    before it (`PerceiverAR.next_logits`, one compiled computation over a
    buffer of `P + n − 1` tokens), each costing a cross-attention over the prefix
    and the latent stack.

    One sequence; batch with `jax.vmap` over `prompt` and `key`. Compiled once per
    prompt length, `n`, `temperature == 0` and `top_k`.

    **Arguments:**

    - `model`: the language model.
    - `prompt`: `(P,)` integer tokens in `0..V−1`, `P >= 1`. The model reads
      `P + n − 1` positions (the last new token is predicted, never read), at
      most its `max_length`.
    - `n`: tokens to generate, `>= 1`.
    - `temperature`: `0` for greedy decoding, else the softmax temperature.
    - `top_k`: sample among the `top_k` most likely tokens only (None: all).
    - `key`: PRNG key (needed unless `temperature=0`).
    - `state`: the model's `eqx.nn.State` (needed when it has BatchNorm layers,
      whose running statistics it holds).
    - `return_logits`: also return the next-token logits at every position fed.

    **Returns:** the `n` new tokens, `(n,)` int32; with `return_logits`, also
    the logits `(P + n - 1, V)`: row `t` predicts token `t + 1` of
    `prompt ++ tokens`.
    """
    _check_language_model(model)
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 1 or prompt.shape[0] < 1 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise ValueError(
            f"expected a prompt of integer tokens of shape (P,), P >= 1 (vmap for a batch), "
            f"got {prompt.dtype} {prompt.shape}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected n >= 1 tokens to generate, got {n!r}")
    perceiver = isinstance(model, PerceiverAR)
    vocab = (model.embedding if perceiver else model.encoder).num_embeddings
    _check_sampling(temperature, top_k, vocab)
    if temperature != 0 and key is None:
        raise ValueError("sampling with temperature > 0 needs a PRNG key (or temperature=0 for greedy)")
    if state is None:
        if _has_state(model):
            raise ValueError(
                "this model has BatchNorm layers: pass state= (the eqx.nn.State it was trained with)"
            )
        state = eqx.nn.State(model)
    if not isinstance(prompt, jax.core.Tracer):  # a concrete prompt (not under vmap/jit)
        low, high = int(jnp.min(prompt)), int(jnp.max(prompt))
        if low < 0 or high >= vocab:
            raise ValueError(
                f"expected prompt tokens in 0..{vocab - 1} (the model's vocabulary), got tokens "
                f"from {low} to {high}"
            )
    else:  # under vmap or jit: the same check when the computation runs
        prompt = eqx.error_if(
            prompt,
            jnp.any((prompt < 0) | (prompt >= vocab)),
            f"generate: expected prompt tokens in 0..{vocab - 1} (the model's vocabulary)",
        )
    # The model reads the prompt and every new token but the last, which it predicts.
    total = prompt.shape[0] + n - 1
    if model.max_length is not None and total > model.max_length:
        raise ValueError(
            f"prompt ({prompt.shape[0]}) + n ({n}) - 1 = {total} positions read (the last new "
            f"token is predicted, never read), beyond the model's max_length={model.max_length} "
            "(its position embeddings)"
        )
    keys = jr.split(jr.key(0) if key is None else key, n)
    if perceiver:
        tokens, logits = _run_windows(
            eqx.nn.inference_mode(model), state, prompt.astype(jnp.int32), n, keys, float(temperature), top_k
        )
        return (tokens, logits) if return_logits else tokens
    try:
        rec = model.init_state(total)
    except ValueError as e:
        raise ValueError(
            f"generate steps the model through prompt ({prompt.shape[0]}) + n ({n}) - 1 = {total} "
            f"positions, and it cannot: {e} (every mixer must be causal and recurrent, and built "
            "for that many positions)"
        ) from e
    tokens, logits = _run(
        eqx.nn.inference_mode(model), state, rec, prompt.astype(jnp.int32), keys, float(temperature), top_k
    )
    return (tokens, logits) if return_logits else tokens
