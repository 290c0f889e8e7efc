"""TRIME's objective against its definition, computed by explicit loops in float64."""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqkit.train as st
from seqkit import recipes
from seqkit.data import ByteSource, batches
from seqkit.train import RecipeError, override, trime_batch_loss, trime_loss
from seqkit.train._loop import _eval_batch


def _reference(logits, hidden, targets, mask, memory, tau):
    """−log P(y|c), P(y|c) = (e^{s_y} + Σ_{j∈M, y_j=y} e^{h·h_j/τ}) / (Σ_v e^{s_v} + Σ_{j∈M} e^{h·h_j/τ}),
    with M the local (j < t, same segment) memories, plus for "batch" every position of the
    other segments, for "long" every position of the earlier segments (rows b2 < b)."""
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
                    local = b2 == b and j < t
                    external = memory == "batch" and b2 != b
                    long_term = memory == "long" and b2 < b
                    if not (local or external or long_term):
                        continue
                    e = math.exp(float(np.dot(hidden[b, t], hidden[b2, j])) / tau)
                    den += e
                    if targets[b2, j] == targets[b, t]:
                        num += e
            out[b, t] = -math.log(num / den)
    return out


@pytest.mark.parametrize("memory", ["local", "batch", "long"])
def test_trime_batch_loss_matches_the_definition(memory, x64):
    rng = np.random.default_rng(0)
    B, L, V, d = 3, 6, 5, 4
    logits = rng.normal(size=(B, L, V))
    hidden = rng.normal(size=(B, L, d))
    targets = rng.integers(0, V, size=(B, L))
    mask = np.ones((B, L), bool)
    mask[2, 4:] = False
    mask[0, 5:] = False  # padding in a row that is a long-term memory of the others
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


def test_padding_is_never_a_memory_and_the_first_row_has_no_long_term_memory(x64):
    rng = np.random.default_rng(2)
    B, L, V, d = 3, 5, 4, 3
    logits = rng.normal(size=(B, L, V))
    hidden = rng.normal(size=(B, L, d))
    targets = rng.integers(0, V, size=(B, L))
    mask = np.ones((B, L), bool)
    mask[0, 3:] = False
    mask[1, 4:] = False
    # Whatever sits at padded positions: other representations, other next tokens.
    hidden2, targets2 = hidden.copy(), targets.copy()
    hidden2[~mask] = 10 * rng.normal(size=(int((~mask).sum()), d))
    targets2[~mask] = (targets2[~mask] + 1) % V
    logits, hidden, hidden2, targets, targets2, mask = map(
        jnp.asarray, (logits, hidden, hidden2, targets, targets2, mask)
    )
    for memory in ("local", "batch", "long"):
        a = np.asarray(trime_batch_loss(logits, hidden, targets, mask, memory=memory))
        b = np.asarray(trime_batch_loss(logits, hidden2, targets2, mask, memory=memory))
        np.testing.assert_allclose(a[mask], b[mask], rtol=1e-12, err_msg=memory)
    long = np.asarray(trime_batch_loss(logits, hidden, targets, mask, memory="long"))
    local = np.asarray(trime_batch_loss(logits, hidden, targets, mask, memory="local"))
    np.testing.assert_allclose(long[0], local[0], rtol=1e-12)  # no row precedes row 0
    assert not np.allclose(long[1:], local[1:])


def _chunks(stream, first, count, L):
    """Inputs and labels of chunks `first, ..., first + count - 1` of `stream`, cut by hand."""
    starts = [(first + r) * L for r in range(count)]
    inputs = np.stack([stream[s : s + L] for s in starts]).astype(np.int32)
    label = np.stack([stream[s + 1 : s + L + 1] for s in starts]).astype(np.int32)
    return inputs, label


def _group_of(batch, stream, n_groups, B, L):
    """The `g` whose chunks `g B, ..., g B + B - 1` the batch holds, in order (asserted unique)."""
    found = [
        g
        for g in range(n_groups)
        if all(map(np.array_equal, (batch["inputs"], batch["label"]), _chunks(stream, g * B, B, L)))
    ]
    assert len(found) == 1, f"expected the batch to be one group of {B} consecutive chunks, found {found}"
    return found[0]


def test_consecutive_batches_are_consecutive_chunks_of_the_byte_stream():
    L, B, n = 8, 3, 13  # 4 groups of 3 chunks and one chunk over
    source = ByteSource("pytext", "train", max_length=L, size=n)
    stream = np.asarray(source.stream())
    drawn = list(batches(source, batch_size=B, seed=7, consecutive=True, num_epochs=2))
    assert len(drawn) == 8
    groups = [_group_of(b, stream, 4, B, L) for b in drawn]
    # Each epoch is a permutation of the groups (the 13th chunk is dropped with the remainder).
    assert sorted(groups[:4]) == sorted(groups[4:]) == [0, 1, 2, 3], groups
    # Deterministic given the seed, and resumable at any step.
    again = list(batches(source, batch_size=B, seed=7, consecutive=True, num_epochs=2, start_step=5))
    assert [_group_of(b, stream, 4, B, L) for b in again] == groups[5:]
    # Unshuffled (evaluation): the groups in order, then the partial last one.
    unshuffled = dict(seed=0, shuffle=False, drop_remainder=False, num_epochs=1, consecutive=True)
    ordered = list(batches(source, batch_size=B, **unshuffled))
    assert [_group_of(b, stream, 4, B, L) for b in ordered[:4]] == [0, 1, 2, 3]
    last = _chunks(stream, 12, 1, L)
    assert np.array_equal(ordered[4]["inputs"], last[0]) and np.array_equal(ordered[4]["label"], last[1])


def _long_recipe(*sets):
    r = recipes.get("transformer-trime-long-lm", "smoke")
    return override(r, ["data.max_length=16", "trainer.batch_size=4", *sets])


def test_trime_long_step_and_evaluation_use_the_earlier_rows():
    """The step's loss and the evaluation's are TRIME's with long-term memory (the
    function checked against the definition above) on the model's own features."""
    import equinox as eqx

    r = _long_recipe()
    sources = r.make_sources()
    built = r.build(sources=sources)
    batch = next(batches(sources["train"], batch_size=4, seed=0, **r.trainer.batch_options()))
    model = eqx.nn.inference_mode(built.model)  # no dropout: the reference sees the same model
    opt_state = built.optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    step = st.make_train_step(built.optimizer, objective="trime_long")
    metrics = step(model, built.state, opt_state, batch, st.step_key(0, 0))[3]
    hidden, _ = jax.vmap(lambda x: model.features(x, built.state))(jnp.asarray(batch["inputs"]))
    logits = jax.vmap(jax.vmap(model.head))(hidden)
    labels = jnp.asarray(batch["label"])
    per_row = {
        m: jnp.mean(trime_batch_loss(logits, hidden, labels, memory=m), axis=1) for m in ("long", "local")
    }
    assert float(metrics["loss"]) == pytest.approx(float(jnp.mean(per_row["long"])), rel=1e-5)
    total, _ = _eval_batch(model, built.state, batch, jnp.ones((4,), jnp.float32), "trime_long")
    assert float(total) == pytest.approx(float(jnp.sum(per_row["long"])), rel=1e-5)
    assert float(total) != pytest.approx(float(jnp.sum(per_row["local"])), rel=1e-5)


def test_trime_long_trains_two_steps_through_the_trainer_on_consecutive_batches(tmp_path):
    r = _long_recipe("trainer.steps=2", "data.train_size=16", "data.val_size=6", "data.test_size=4")
    sources = r.make_sources()
    stream = np.asarray(sources["train"].stream())
    calls, drawn = [], []

    def recording(source, **kw):
        calls.append(kw)
        for b in batches(source, **kw):
            if kw["shuffle"]:
                drawn.append(b)
            yield b

    res = st.train(r, tmp_path / "run", sources=sources, batches=recording, progress=False)
    assert res["steps"] == 2 and res["skipped_updates"] == 0
    assert math.isfinite(res["val_loss"]) and res["val_examples"] == 6  # 4 + 2 (padded to 4)
    (train_call,) = [kw for kw in calls if kw["shuffle"]]
    assert train_call.get("consecutive") is True, train_call
    assert len(drawn) >= 2
    for b in drawn[:2]:  # the batches the two steps trained on
        _group_of(b, stream, 16 // 4, 4, 16)


class _Sequences:
    """Per-position labels, but each example an independent random sequence: no text to continue."""

    def __init__(self, n, L=16, seed=0):
        self.n, self.L, self.seed = n, L, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = np.random.default_rng([self.seed, i]).integers(0, 256, self.L + 1).astype(np.int32)
        return {"inputs": x[:-1], "label": x[1:]}


def test_trime_long_refuses_data_without_consecutive_segments(tmp_path):
    r = _long_recipe()
    sources = {"train": _Sequences(8), "val": _Sequences(4, seed=1), "test": _Sequences(4, seed=2)}
    expected = (
        r"trainer.objective=trime_long needs each batch to be consecutive segments of one text.*"
        r"the train split of data.name=pytext is _Sequences: use a byte corpus, or "
        r"--set trainer.objective=trime_local"
    )
    with pytest.raises(RecipeError, match=expected) as e:
        r.validate(sources)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    with pytest.raises(RecipeError, match=expected):
        st.train(r, tmp_path / "run", sources=sources, progress=False)
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written
    override(r, ["trainer.objective=trime_local"]).validate(sources)  # other objectives take it
    # A byte corpus held in memory is still consecutive chunks.
    cached = override(
        r, ["data.memory_cache=true", "data.train_size=8", "data.val_size=4", "data.test_size=4"]
    )
    cached.validate(cached.make_sources())
    classify = recipes.get("s4-pathfinder", "smoke")
    classify = dataclasses.replace(classify, data=dataclasses.replace(classify.data, train_size=16))
    with pytest.raises(RecipeError, match="trainer.objective=trime_long trains a language model"):
        override(classify, ["trainer.objective=trime_long"]).validate(classify.make_sources())
