"""PIXEL's pretraining objective (Rust et al., "Language Modelling with Pixels",
ICLR 2023; MAE's loss, He et al. 2022): span masks checked run by run against
their definition, the loss against a NumPy computation of its formula, and a
tiny model that lowers the loss on a fixed batch of rendered Python source lines."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import seqkit.attention as sa
import seqkit.nn as sn
from seqkit.data import make_source
from seqkit.data._render import render_patches
from seqkit.nn._pixel import PixelPretrainer, masked_patch_loss, pixel_pretraining_loss, span_mask


def runs(hidden):
    """(start, length) of every run of consecutive True, by a loop."""
    out, start = [], None
    for j, h in enumerate([*hidden, False]):
        if h and start is None:
            start = j
        if not h and start is not None:
            out.append((start, j - start))
            start = None
    return out


def test_span_mask_hides_about_ratio_of_real_patches_in_short_spans():
    N, n, ratio, S = 128, 100, 0.25, 6
    real = jnp.arange(N) < n
    hidden = np.asarray(
        jax.vmap(lambda k: span_mask(k, real, ratio=ratio, max_span=S))(jr.split(jr.key(0), 300))
    )
    budget = int(np.floor(ratio * n + 0.5))
    counts = hidden.sum(axis=1)
    assert not hidden[:, n:].any()  # never padding
    assert counts.max() <= budget
    assert 0.2 <= counts.mean() / n <= 0.25, counts.mean() / n
    lengths = []
    for row in hidden:
        for _start, length in runs(row):
            assert 1 <= length <= S
            lengths.append(length)
    assert 2.0 < np.mean(lengths) < S  # spans, not single patches
    assert len({tuple(np.flatnonzero(r)) for r in hidden}) == len(hidden)  # the key matters


def test_span_mask_needs_the_real_patches_first():
    """Spans are drawn over positions 0..n-1: with padding in front no real patch
    could be hidden, so such a mask is refused, eagerly and under vmap."""
    padded_in_front = jnp.arange(16) >= 6
    with pytest.raises(Exception, match="expected the real patches as a prefix"):
        jax.block_until_ready(span_mask(jr.key(1), padded_in_front))
    masks = jnp.stack([jnp.arange(16) < 10, padded_in_front])
    with pytest.raises(Exception, match="expected the real patches as a prefix"):
        jax.block_until_ready(jax.vmap(span_mask)(jr.split(jr.key(2), 2), masks))
    assert 0 < int(span_mask(jr.key(1), jnp.arange(16) < 10).sum()) <= 3  # a prefix of 10: budget 3


def test_span_mask_with_no_real_patch_hides_nothing():
    assert not span_mask(jr.key(1), jnp.zeros(16, bool)).any()
    with pytest.raises(ValueError, match="expected ratio in"):
        span_mask(jr.key(1), jnp.ones(16, bool), ratio=1.5)


def numpy_loss(pred, target, hidden, real, normalize):
    total, count = 0.0, 0
    for j in range(pred.shape[0]):
        if not (hidden[j] and real[j]):
            continue
        t = target[j].astype(np.float64)
        if normalize:
            mu = t.sum() / t.size
            var = ((t - mu) ** 2).sum() / (t.size - 1)
            t = (t - mu) / np.sqrt(var + 1e-6)
        total += ((pred[j] - t) ** 2).mean()
        count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("normalize", [True, False])
def test_masked_patch_loss_matches_its_definition(normalize):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(12, 16)).astype(np.float32)
    target = rng.uniform(size=(12, 16)).astype(np.float32)
    target[3] = 0.0  # a blank patch: normalized to zeros
    hidden = rng.uniform(size=12) < 0.5
    hidden[3] = True
    real = np.arange(12) < 10
    got = masked_patch_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(hidden), jnp.asarray(real),
                            normalize=normalize)  # fmt: skip
    np.testing.assert_allclose(float(got), numpy_loss(pred, target, hidden, real, normalize), rtol=1e-5)
    none = masked_patch_loss(jnp.asarray(pred), jnp.asarray(target), jnp.zeros(12, bool), jnp.asarray(real))
    assert float(none) == 0.0


def pretrainer(key, *, pool="none", max_patches=32):
    """A 2-layer attention encoder of 32 wide with learned positions, wrapped."""
    k_enc, k_wrap = jr.split(key)
    encoder = sn.SequenceModel(
        d_model=32, n_classes=None, n_layers=2, d_in=256, pool=pool, positions="learned",
        max_length=max_patches, ffn_mult=2, mixer=lambda i, k: sa.MultiHeadAttention(32, 2, key=k), key=k_enc,
    )  # fmt: skip
    return PixelPretrainer(encoder, key=k_wrap)


@pytest.fixture(scope="module")
def rendered_lines():
    """Eight lines of this Python's standard library, rendered to 32 patches each."""
    item = make_source("pytext", "train", max_length=4096)[3]
    text = np.asarray(item["inputs"]).astype(np.uint8).tobytes().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if len(line.strip()) >= 30][:8]
    assert len(lines) == 8
    rendered = [render_patches(line, max_patches=32) for line in lines]
    return jnp.asarray(np.stack([p for p, _ in rendered])), jnp.asarray(np.stack([m for _, m in rendered]))


def test_pretraining_gives_finite_gradients_and_lowers_the_loss(rendered_lines):
    x, real = rendered_lines
    model, state = eqx.nn.make_with_state(pretrainer)(jr.key(1))
    grad_fn = eqx.filter_value_and_grad(pixel_pretraining_loss, has_aux=True)
    opt = optax.adam(5e-3)

    @eqx.filter_jit
    def step(model, state, opt_state):
        (loss, state), grads = grad_fn(model, state, x, real, jr.key(5))  # fixed batch and mask
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, opt_state, loss, grads

    losses = []
    # optax's Adam mixes Python floats with its int32 step count, which strict
    # promotion rejects (the loss alone runs under strict promotion in the tests above).
    with jax.numpy_dtype_promotion("standard"):
        opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
        for i in range(25):
            model, state, opt_state, loss, grads = step(model, state, opt_state)
            losses.append(float(loss))
            if i == 0:
                leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
                assert all(bool(jnp.isfinite(g).all()) for g in leaves)
                assert float(jnp.abs(grads.mask_patch).sum()) > 0  # the mask patch is trained
    assert np.isfinite(losses).all()
    # Measured: 1.31 -> 0.74 in 25 steps.
    assert losses[-1] < 0.75 * losses[0], losses


def test_hidden_pixels_never_reach_the_prediction():
    """A hidden patch is replaced by the mask patch before the encoder: changing
    its pixels changes no prediction, while changing a visible patch does."""
    model, state = eqx.nn.make_with_state(pretrainer)(jr.key(2), pool="cls", max_patches=9)
    model = eqx.nn.inference_mode(model)
    x = jr.uniform(jr.key(3), (8, 256))
    real = jnp.arange(8) < 7
    hidden = jnp.zeros(8, bool).at[2].set(True).at[3].set(True)
    pred, _ = model(x, hidden, real, state)
    assert pred.shape == (8, 256)  # the class token's features are dropped
    changed_hidden, _ = model(x.at[2].set(1.0 - x[2]), hidden, real, state)
    changed_visible, _ = model(x.at[4].set(1.0 - x[4]), hidden, real, state)
    np.testing.assert_array_equal(np.asarray(changed_hidden), np.asarray(pred))
    assert float(jnp.abs(changed_visible - pred)[:7].max()) > 1e-4


def test_pretrainer_needs_a_patch_encoder():
    mixer = lambda i, k: sa.MultiHeadAttention(8, 2, key=k)  # noqa: E731
    tokens = sn.SequenceModel(
        d_model=8, n_classes=None, n_layers=1, vocab_size=16, mixer=mixer, key=jr.key(0)
    )
    with pytest.raises(ValueError, match="reading real-valued patches .* token embedding"):
        PixelPretrainer(tokens, key=jr.key(1))
