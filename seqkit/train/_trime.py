"""TRIME: the language-modeling objective with in-batch memories.

Zhong, Lei and Chen, "Training Language Models with Memory Augmentation", EMNLP
2022. A prediction at context `c` (final representation `h`, target token `y`)
may come from the vocabulary or from a memory `M` of other contexts `c_j` whose
next token `y_j` is known:

    P(y | c) ∝ exp(E_y · h) + Σ_{j ∈ M, y_j = y} exp(sim(h, h_j))

and the loss is `−log P(y | c)`: the output embedding's logit competes with
every memory whose next token is the target. Memories come from the batch
itself, `B` segments of `L` positions; the memories of position `t` of segment
`b` are, as real (unpadded) positions `(b', j)`:

- *local* (the paper's TRIMELM): `M = {(b, j) : j < t}`, the earlier positions
  of the same segment;
- *external* (in-batch examples): `M = {(b, j) : j < t} ∪ {(b', j) : b' ≠ b}`,
  also every position of the other segments;
- *long-term* (TRIMELM_long): `M = {(b, j) : j < t} ∪ {(b', j) : b' < b}`,
  also every position of the *earlier* segments, for a batch that holds `B`
  consecutive segments of one text in order (segment `b'` precedes `b`), so
  every memory lies before `c` in the text.

`sim(h, h') = h · h' / τ`,
the dot product the paper uses, scaled by `1/τ` with `τ = √d` by default
(seqkit's choice, as in scaled dot-product attention).
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def trime_loss(
    logits: Float[Array, "N V"],
    hidden: Float[Array, "N d"],
    targets: Int[Array, " N"],
    memory_hidden: Float[Array, "M d"],
    memory_targets: Int[Array, " M"],
    memory_mask: Bool[Array, "N M"],
    *,
    temperature: float | None = None,
) -> Float[Array, " N"]:
    """`−log P(y | c)` for `N` queries against `M` memories.

    **Arguments:**

    - `logits`: `(N, V)`, the output layer's logits `E_v · h` of each query.
    - `hidden`: `(N, d)`, the representations `h` the logits were computed from.
    - `targets`: `(N,)`, each query's next token `y`.
    - `memory_hidden`, `memory_targets`: `(M, d)` and `(M,)`, the memories'
      representations and next tokens.
    - `memory_mask`: `(N, M)` bool, which memories query `i` may use.
    - `temperature`: `τ` of `sim(h, h') = h · h' / τ`; `None` is `√d`.

    **Returns:** `(N,)` losses in nats. With no usable memory a query's loss is
    the plain cross-entropy of its logits.
    """
    tau = math.sqrt(hidden.shape[-1]) if temperature is None else float(temperature)
    if tau <= 0:
        raise ValueError(f"expected a temperature > 0, got {temperature}")
    dtype = jnp.float64 if logits.dtype == jnp.float64 else jnp.float32  # bf16/f16 logits: f32 sums
    logits = logits.astype(dtype)
    sim = (hidden.astype(dtype) @ memory_hidden.astype(dtype).T) / tau  # (N, M)
    neg = jnp.asarray(-jnp.inf, dtype)
    usable = jnp.where(memory_mask, sim, neg)
    same = memory_mask & (memory_targets[None, :] == targets[:, None])
    target_logit = jnp.take_along_axis(logits, targets[:, None].astype(jnp.int32), axis=1)  # (N, 1)
    # Each logsumexp has a finite entry (a logit), so gradients stay finite.
    log_num = jax.nn.logsumexp(jnp.concatenate([target_logit, jnp.where(same, sim, neg)], axis=1), axis=1)
    log_den = jax.nn.logsumexp(jnp.concatenate([logits, usable], axis=1), axis=1)
    return log_den - log_num


def trime_batch_loss(
    logits: Float[Array, "B L V"],
    hidden: Float[Array, "B L d"],
    targets: Int[Array, "B L"],
    mask: Bool[Array, "B L"] | None = None,
    *,
    memory: str = "local",
    temperature: float | None = None,
) -> Float[Array, "B L"]:
    """TRIME losses of a batch of segments, with the batch as the memory.

    Position `t` of segment `b` has the loss `−log P(y_{b,t} | c_{b,t})` of
    [`seqkit.train.trime_loss`][] with the memories

        M(b, t) = {(b, j) : j < t}                 memory="local"
                ∪ {(b', j) : b' ≠ b}               memory="batch"
                ∪ {(b', j) : b' < b}               memory="long"

    (one of the last two lines, or neither), keeping only real positions.

    - `memory="local"`: position `t` of a segment may use positions `j < t` of
      the same segment (their next tokens are inputs the model has seen).
    - `memory="batch"`: also every position of the other segments in the batch
      (the paper's external memory, built from in-batch examples).
    - `memory="long"`: also every position of the segments *before* `b` in the
      batch (the paper's long-term memory, TRIMELM_long): for rows that are
      consecutive segments of one text in order, the memories are then exactly
      the positions of the batch that precede `c_{b,t}` in the text.

    Padded positions (`mask` False) are never memories. **Returns:** `(B, L)`.
    """
    if memory not in ("local", "batch", "long"):
        raise ValueError(f"memory must be 'local', 'batch' or 'long', got {memory!r}")
    B, L, _ = logits.shape
    real = jnp.ones((B, L), bool) if mask is None else mask
    flat = lambda a: a.reshape((B * L, *a.shape[2:]))  # noqa: E731
    example = jnp.repeat(jnp.arange(B), L)
    position = jnp.tile(jnp.arange(L), B)
    same_example = example[:, None] == example[None, :]
    earlier = position[None, :] < position[:, None]
    allowed = same_example & earlier
    if memory == "batch":
        allowed = allowed | ~same_example
    elif memory == "long":
        allowed = allowed | (example[None, :] < example[:, None])  # rows before this one
    allowed = allowed & flat(real)[None, :]
    h, y = flat(hidden), flat(targets)
    loss = trime_loss(flat(logits), h, y, h, y, allowed, temperature=temperature)
    return loss.reshape(B, L)
