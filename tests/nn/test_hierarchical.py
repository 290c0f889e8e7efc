"""The hierarchical encoder against an explicit loop over levels and segments."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from seqkit import attention as sa, nn as snn

V, D = 17, 8


def _mixer(level, i, key):
    if level == 0:
        return snn.S4DConfig(state_size=4).build(D, max_length=8, key=key)
    return sa.MultiHeadAttention(D, 2, key=key)


def _model(segments=(4, 2), **kwargs):
    return eqx.nn.make_with_state(snn.HierarchicalModel)(
        d_model=D, n_classes=3, segments=segments, mixer=_mixer, n_layers=1, vocab_size=V, ffn_mult=2,
        key=jr.key(0), **kwargs,
    )  # fmt: skip


def _reference(model, state, x, mask):
    """Level by level, segment by segment, in Python: each level's encoder on one
    segment at a time, pooled, then the next level on the pooled vectors."""
    h, real = list(x), list(mask)
    for level, enc in enumerate(model.levels):
        if level == len(model.segments):
            feat, _ = enc.features(jnp.stack(h), state, mask=jnp.asarray(real))
            return model.head(feat)
        s = model.segments[level]
        nh, nreal = [], []
        for start in range(0, len(h), s):
            seg, m = jnp.stack(h[start : start + s]), jnp.asarray(real[start : start + s])
            nh.append(enc.features(seg, state, mask=m)[0])
            nreal.append(bool(np.any(np.asarray(m))))
        h, real = nh, nreal
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"positions": "learned", "max_length": 24}, {"positions": "sinusoidal", "prenorm": False}],
    ids=["plain", "learned", "sinusoidal-postnorm"],
)
def test_hierarchy_matches_an_explicit_loop_over_segments(x64, kwargs):
    """Each level's encoder on one segment at a time (its positions counted within
    the segment or group), pooled, then the next level."""
    model, state = _model(**kwargs)
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
    x = jr.randint(jr.key(1), (24,), 0, V)  # 24 = 3 groups of 2 segments of 4
    mask = np.ones(24, bool)
    mask[13:] = False  # a partly padded segment and wholly padded ones above
    got, _ = model(x, state, mask=jnp.asarray(mask))
    ref = _reference(model, state, x, mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-10)
    # Padding is invisible: other values there give the same logits.
    other, _ = model(x.at[13:].set(5), state, mask=jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(other), np.asarray(got), rtol=1e-10, atol=1e-10)


def test_every_level_reads_its_inputs():
    model, state = _model()
    x = jr.randint(jr.key(2), (24,), 0, V)
    base, _ = model(x, state)
    for t in (0, 11, 23):  # a token in the first, middle and last segment moves the logits
        out, _ = model(x.at[t].set((x[t] + 1) % V), state)
        assert not np.allclose(np.asarray(out), np.asarray(base))
    batched = jax.vmap(lambda x: model(x, state)[0])(jnp.stack([x, x]))
    np.testing.assert_allclose(np.asarray(batched[0]), np.asarray(base), rtol=1e-5, atol=1e-6)


def test_positions_make_every_level_see_order():
    """Without positions, attention levels read their segments and groups as sets
    (a permutation inside a segment, or of whole segments, leaves the logits be);
    with positions at every level, both permutations move the logits."""

    def attention(level, i, key):
        return sa.MultiHeadAttention(D, 2, key=key)

    x = jr.randint(jr.key(3), (16,), 0, V)
    # swap two tokens in every segment; swap two segments of a group
    inside = jnp.concatenate([jnp.array([1, 0, 2, 3]) + 4 * g for g in range(4)])
    segments = jnp.concatenate([jnp.arange(4) + 4 * g for g in (1, 0, 2, 3)])
    for positions, moves in (("none", False), ("sinusoidal", True), ("learned", True)):
        model, state = eqx.nn.make_with_state(snn.HierarchicalModel)(
            d_model=D, n_classes=3, segments=(4, 2), mixer=attention, n_layers=1, vocab_size=V,
            positions=positions, max_length=16, key=jr.key(0),
        )  # fmt: skip
        base = np.asarray(model(x, state)[0])
        for perm in (inside, segments):
            moved = np.abs(np.asarray(model(x[perm], state)[0]) - base).max()
            assert (moved > 1e-4) if moves else (moved < 1e-5), (positions, moved)
    assert [lvl.position_table.shape[0] for lvl in model.levels] == [4, 2, 2]  # 16 = 2 groups of 2 of 4


def test_hierarchy_errors():
    model, state = _model()
    with pytest.raises(ValueError, match=r"multiple of 8 \(segments \[4, 2\]\), got 20"):
        model(jnp.zeros((20,), jnp.int32), state)
    with pytest.raises(ValueError, match="segments of at least one positive size"):
        _model(segments=())
    with pytest.raises(ValueError, match="positions='learned' needs max_length"):
        _model(positions="learned")
    with pytest.raises((ValueError, TypeError), match="pool"):  # the type checker or the constructor
        _model(pool="cls")


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_max_length_counts_the_padding_to_a_whole_group(positions):
    """A document of max_length = 20 tokens, padded to 24 (a multiple of 4 · 2) as
    the call needs, runs: the top level holds ceil(20 / 8) = 3 positions."""
    model, state = _model(positions=positions, max_length=20)
    x = jnp.zeros((24,), jnp.int32).at[:20].set(jnp.arange(20) % V)
    logits, _ = model(x, state, mask=jnp.arange(24) < 20)
    assert logits.shape == (3,) and bool(jnp.all(jnp.isfinite(logits)))
