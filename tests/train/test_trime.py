"""TRIME's objective against its definition, computed by explicit loops in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqkit.train import trime_batch_loss, trime_loss


def _reference(logits, hidden, targets, mask, memory, tau):
    """−log P(y|c), P(y|c) = (e^{s_y} + Σ_{j∈M, y_j=y} e^{h·h_j/τ}) / (Σ_v e^{s_v} + Σ_{j∈M} e^{h·h_j/τ}),
    with M the local (j < t, same segment) or local + external (other segments) memories."""
    B, L, V = logits.shape
    out = np.zeros((B, L))
    for b in range(B):
        for t in range(L):
            num = math.exp(logits[b, t, targets[b, t]])
            den = sum(math.exp(logits[b, t, v]) for v in range(V))
            for b2 in range(B):
                for j in range(L):
                    if not mask[b2, j]:
                        continue
                    if not ((b2 == b and j < t) or (memory == "batch" and b2 != b)):
                        continue
                    e = math.exp(float(np.dot(hidden[b, t], hidden[b2, j])) / tau)
                    den += e
                    if targets[b2, j] == targets[b, t]:
                        num += e
            out[b, t] = -math.log(num / den)
    return out


@pytest.mark.parametrize("memory", ["local", "batch"])
def test_trime_batch_loss_matches_the_definition(memory, x64):
    rng = np.random.default_rng(0)
    B, L, V, d = 3, 6, 5, 4
    logits = rng.normal(size=(B, L, V))
    hidden = rng.normal(size=(B, L, d))
    targets = rng.integers(0, V, size=(B, L))
    mask = np.ones((B, L), bool)
    mask[2, 4:] = False
    got = trime_batch_loss(
        jnp.asarray(logits), jnp.asarray(hidden), jnp.asarray(targets), jnp.asarray(mask), memory=memory
    )
    ref = _reference(logits, hidden, targets, mask, memory, math.sqrt(d))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-12)
    # A smaller temperature sharpens the memories' share.
    got_t = trime_batch_loss(
        jnp.asarray(logits), jnp.asarray(hidden), jnp.asarray(targets), jnp.asarray(mask), memory=memory,
        temperature=0.5,
    )  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(got_t), _reference(logits, hidden, targets, mask, memory, 0.5), rtol=1e-12
    )


def test_no_memory_is_cross_entropy_with_finite_gradients(x64):
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(4, 7)))
    hidden = jnp.asarray(rng.normal(size=(4, 3)))
    targets = jnp.asarray([0, 3, 6, 2])
    none = jnp.zeros((4, 4), bool)
    loss = trime_loss(logits, hidden, targets, hidden, targets, none)
    ce = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.asarray(targets)[:, None], 1)[:, 0]
    np.testing.assert_allclose(np.asarray(loss), ce, rtol=1e-12)
    grads = jax.grad(lambda h: trime_loss(logits, h, targets, h, targets, none).sum())(hidden)
    assert np.all(np.isfinite(np.asarray(grads)))
    with pytest.raises(ValueError, match="temperature > 0"):
        trime_loss(logits, hidden, targets, hidden, targets, none, temperature=0.0)
    with pytest.raises(ValueError, match="memory must be"):
        trime_batch_loss(logits[None], hidden[None], targets[None], memory="external")
