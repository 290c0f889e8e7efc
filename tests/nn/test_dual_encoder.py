"""DualEncoder (LRA Retrieval): one shared encoder for both documents, `[u, v, u⊙v, u−v]`,
an MLP head; token inputs with padding masks, checked in float64 against references
that encode each document on its own."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.ssm as ss
from helpers import assert_close

VOCAB, D, N_REAL, N_PAD = 11, 8, 8, 4


def s4d(d, key):
    k1, k2 = jr.split(key)
    return snn.SSMLayer(ss.S4D(d, state_size=8, bidirectional=True, key=k1), key=k2)


def mha(d, key):
    return sa.MultiHeadAttention(d, 2, key=key)


MIXERS = {"s4d": s4d, "mha": mha}
KWARGS = dict(vocab_size=VOCAB, d_model=D, n_classes=3, n_layers=2)


def _batched(model):
    return jax.vmap(
        lambda x, m, s: model(x, s, mask=m), axis_name="batch", in_axes=(0, 0, None), out_axes=(0, None)
    )


def np_head(model, u, v):
    """The head by hand in float64: MLP([u, v, u⊙v, u−v]) with ReLU between layers."""
    z = np.concatenate([u, v, u * v, u - v], axis=-1)
    for i, lin in enumerate(model.head):
        z = z @ np.asarray(lin.weight, np.float64).T + np.asarray(lin.bias, np.float64)
        if i < len(model.head) - 1:
            z = np.maximum(z, 0.0)
    return z


def _norms(encoder):
    return [b.norm for b in encoder.blocks] + [encoder.final_norm]


def _same_stats(norms_a, state_a, norms_b, state_b):
    for a, b in zip(norms_a, norms_b, strict=True):
        for x, y in zip(state_a.get(a.stats), state_b.get(b.stats), strict=True):
            assert_close(y, x, rtol=1e-10)


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_padding_is_invisible_to_both_models(x64, getkey, mixer, norm):
    """Token inputs with a padding mask: padded and unpadded inputs give the same
    logits and BatchNorm statistics, for a SequenceModel and a DualEncoder."""
    make = MIXERS[mixer]
    toks = jr.randint(getkey(), (2, 2, N_REAL), 1, VOCAB)  # (B, pair, L)
    junk = jr.randint(getkey(), (2, 2, N_PAD), 0, VOCAB)
    padded = jnp.concatenate([toks, junk], axis=-1)
    mask = jnp.broadcast_to(jnp.arange(N_REAL + N_PAD) < N_REAL, padded.shape)
    full = jnp.ones(toks.shape, bool)

    for cls, x, xp, m, mp in [
        (snn.SequenceModel, toks[:, 0], padded[:, 0], full[:, 0], mask[:, 0]),
        (snn.DualEncoder, toks, padded, full, mask),
    ]:
        model, state = eqx.nn.make_with_state(cls)(
            mixer=lambda i, k: make(D, k), norm=norm, key=getkey(), **KWARGS
        )

        @eqx.filter_jit
        def both(model, state, x=x, xp=xp, m=m, mp=mp):
            ref, s1 = _batched(model)(x, m, state)
            got, s2 = _batched(model)(xp, mp, state)
            return ref, got, s1, s2

        ref, got, s1, s2 = both(model, state)
        assert ref.shape == (2, 3) and bool(jnp.all(jnp.isfinite(ref)))
        assert_close(got, ref, rtol=1e-10)
        for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
            assert_close(b, a, rtol=1e-10)
        ref_i, got_i, _, _ = both(eqx.nn.inference_mode(model), s1)
        assert_close(got_i, ref_i, rtol=1e-10)


@pytest.mark.parametrize("norm", ["layer", "batch-inference"])
@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_logits_match_each_document_encoded_alone(x64, getkey, mixer, norm):
    """Documents of different lengths, padded to one: the logits equal the shared
    encoder run on each unpadded document separately, combined and headed in NumPy."""
    make = MIXERS[mixer]
    model, state = eqx.nn.make_with_state(snn.DualEncoder)(
        mixer=lambda i, k: make(D, k), norm=norm.split("-")[0], mlp_widths=(6, 5), key=getkey(), **KWARGS
    )
    assert [lin.weight.shape for lin in model.head] == [(6, 4 * D), (5, 6), (3, 5)]
    if norm == "batch-inference":
        # Running statistics away from their start, so that they matter.
        x = jr.randint(getkey(), (4, 2, N_REAL), 0, VOCAB)
        _, state = _batched(model)(x, jnp.ones(x.shape, bool), state)
        model = eqx.nn.inference_mode(model)
    L, lengths = N_REAL + N_PAD, (N_REAL + 2, N_REAL - 3)
    x = jr.randint(getkey(), (2, L), 0, VOCAB)
    mask = jnp.arange(L)[None, :] < jnp.array(lengths)[:, None]
    call = eqx.filter_jit(lambda m, x, k, s: m(x, s, mask=k))
    logits, new_state = call(model, x, mask, state)
    # The reference: the encoder alone (no pair axis, no mask) on each document's real tokens.
    features = eqx.filter_jit(lambda m, x, s: m.encoder.features(x, s)[0])
    u = np.asarray(features(model, x[0, : lengths[0]], state), np.float64)
    v = np.asarray(features(model, x[1, : lengths[1]], state), np.float64)
    assert_close(logits, np_head(model, u, v), rtol=1e-10)
    # ...and with the documents swapped, only u and v trade places.
    swapped, _ = call(model, x[::-1], mask[::-1], state)
    assert_close(swapped, np_head(model, v, u), rtol=1e-10)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True):
        assert_close(b, a, rtol=0)  # LayerNorm and inference mode leave the state alone


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_batchnorm_statistics_cover_both_documents(x64, getkey, mixer):
    """In training, BatchNorm normalizes over the batch and both documents' real
    positions: the same as one SequenceModel encoder run over a batch of 2B documents."""
    make = MIXERS[mixer]
    model, state = eqx.nn.make_with_state(snn.DualEncoder)(
        mixer=lambda i, k: make(D, k), norm="batch", key=getkey(), **KWARGS
    )
    B, L = 3, N_REAL + N_PAD
    x = jr.randint(getkey(), (B, 2, L), 0, VOCAB)
    lengths = jnp.array([[12, 5], [8, 9], [3, 12]])
    mask = jnp.arange(L) < lengths[..., None]
    logits, new_state = eqx.filter_jit(lambda m, x, k, s: _batched(m)(x, k, s))(model, x, mask, state)

    # The same weights in a SequenceModel whose BatchNorm reduces over "batch" only.
    plain, plain_state = eqx.nn.make_with_state(snn.SequenceModel)(
        mixer=lambda i, k: make(D, k), norm="batch", key=getkey(), **{**KWARGS, "n_classes": None}
    )
    plain = jax.tree.unflatten(jax.tree.structure(plain), jax.tree.leaves(model.encoder))
    feats, plain_new = jax.vmap(
        lambda x, m, s: plain.features(x, s, mask=m),
        axis_name="batch",
        in_axes=(0, 0, None),
        out_axes=(0, None),
    )(x.reshape(2 * B, L), mask.reshape(2 * B, L), plain_state)
    feats = np.asarray(feats, np.float64).reshape(B, 2, D)
    assert_close(logits, np_head(model, feats[:, 0], feats[:, 1]), rtol=1e-10)
    _same_stats(_norms(plain), plain_new, _norms(model.encoder), new_state)


def test_sequence_model_without_head_returns_features(getkey):
    kw = dict(mixer=lambda i, k: s4d(D, k), vocab_size=VOCAB, d_model=D, n_layers=1, pool="cls")
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(n_classes=2, key=jr.key(0), **kw)
    bare, _ = eqx.nn.make_with_state(snn.SequenceModel)(n_classes=None, key=jr.key(0), **kw)
    x = jr.randint(getkey(), (N_REAL,), 0, VOCAB)

    @eqx.filter_jit
    def run(model, bare, x):
        return bare(x, state)[0], model.features(x, state)[0], model(x, state)[0]

    feat, model_feat, logits = run(model, bare, x)
    assert bare.head is None and feat.shape == (D,)
    assert_close(feat, model_feat, rtol=0)
    assert_close(logits, model.head(feat), rtol=1e-6)


def test_dropout_masks_differ_between_documents(getkey):
    model, state = eqx.nn.make_with_state(snn.DualEncoder)(
        mixer=lambda i, k: s4d(D, k), dropout=0.5, key=getkey(), **KWARGS
    )
    x = jnp.broadcast_to(jr.randint(getkey(), (N_REAL,), 0, VOCAB), (2, N_REAL))

    @eqx.filter_jit
    def run(model, k):
        ku, kv = (None, None) if k is None else jr.split(k)
        u, _ = model.encoder.features(x[0], state, key=ku)
        v, _ = model.encoder.features(x[1], state, key=kv)
        return model(x, state, key=k)[0], u, v, model.combine(u, v)

    # Two identical documents: in inference u = v, so the head sees [u, u, u⊙u, 0].
    got, u, v, expected = run(eqx.nn.inference_mode(model), None)
    assert_close(u, v, rtol=0)
    assert_close(got, expected, rtol=1e-6)
    # In training each document draws its own dropout mask (u ≠ v).
    got, u, v, expected = run(model, getkey())
    assert not np.allclose(u, v)
    assert_close(got, expected, rtol=1e-6)


def test_errors(getkey):
    model, state = eqx.nn.make_with_state(snn.DualEncoder)(
        mixer=lambda i, k: s4d(D, k), key=getkey(), **KWARGS
    )
    with pytest.raises(ValueError, match=r"expected one example of two sequences, shape \(2, L\)"):
        model(jnp.zeros((N_REAL,), jnp.int32), state)
    with pytest.raises(ValueError, match=r"got int32 \(3, 8\)"):
        model(jnp.zeros((3, N_REAL), jnp.int32), state)
    with pytest.raises(ValueError, match=r"bool padding mask of shape \(2, 8\)"):
        model(jnp.zeros((2, N_REAL), jnp.int32), state, mask=jnp.ones((N_REAL,), bool))
    with pytest.raises(ValueError, match=r"expected integer tokens of shape \(L,\)"):
        model(jnp.zeros((2, N_REAL, 1)), state)
    with pytest.raises(ValueError, match="mlp_widths must be positive"):
        snn.DualEncoder(mixer=lambda i, k: s4d(D, k), mlp_widths=(0,), key=getkey(), **KWARGS)


def test_construction_vmaps_over_keys(getkey):
    """Sweeps build K models stacked on a leading axis: the constructor vmaps."""

    def build(k):
        return snn.DualEncoder(mixer=lambda i, k: s4d(D, k), key=k, **KWARGS)

    stacked = eqx.filter_vmap(build)(jr.split(getkey(), 2))
    assert stacked.head[0].weight.shape == (2, D, 4 * D)
    _, state = eqx.nn.make_with_state(build)(getkey())
    x = jr.randint(getkey(), (2, N_REAL), 0, VOCAB)
    per_member = eqx.filter_vmap(lambda m: eqx.nn.inference_mode(m)(x, state)[0])(stacked)
    assert per_member.shape == (2, 3) and not np.allclose(per_member[0], per_member[1])
