"""The one mixer protocol, checked over every mixer seqkit has: padding never changes a
real output (inside a SequenceModel, with BatchNorm and with LayerNorm), recurrent
forms are recurrent, construction vmaps over keys, and a causal model steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from protocol_mixers import MIXERS, cases

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.ssm as ss
from helpers import assert_close

D_IN, D, N_REAL, N_PAD = 3, 8, 8, 4
CASES = [pytest.param(make, causal, id=name) for name, make, causal in cases()]
# The padding tests in the default tier: every mixer's bidirectional form (where
# trailing padding could reach real positions through the backward direction), or
# its causal form when that is its only one; the other forms in the slow tier.
_BOTH_FORMS = {name for name, _, forms in MIXERS if len(forms) == 2}
PADDING_CASES = [
    pytest.param(make, causal, id=name, marks=pytest.mark.slow)
    if causal and name.removesuffix("-causal") in _BOTH_FORMS
    else pytest.param(make, causal, id=name)
    for name, make, causal in cases()
]
RECURRENT = {
    "s4", "s4d", "dss", "dss-softmax", "ema", "s5", "mha", "local-block", "local-sliding",
    "linear", "performer", "kernelized", "gss", "mega", "spade", "block-recurrent",
}  # fmt: skip


def _model(make, causal, norm, key, n_layers=2):
    return eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=D_IN,
        d_model=D,
        n_classes=3,
        n_layers=n_layers,
        mixer=lambda i, k: make(D, causal, k),
        norm=norm,
        pool="last" if causal else "mean",
        key=key,
    )


def _batched(model):
    return jax.vmap(
        lambda x, m, s: model(x, s, mask=m),
        axis_name="batch",
        in_axes=(0, 0, None),
        out_axes=(0, None),
    )


@pytest.mark.parametrize("norm", ["batch", pytest.param("layer", marks=pytest.mark.slow)])
@pytest.mark.parametrize("make,causal", PADDING_CASES)
def test_padding_never_changes_logits(x64, getkey, make, causal, norm):
    model, state = _model(make, causal, norm, getkey())
    x = jr.normal(getkey(), (N_REAL, D_IN))
    junk = 5.0 * jr.normal(getkey(), (N_PAD, D_IN))
    padded = jnp.concatenate([x, junk])
    mask = jnp.arange(N_REAL + N_PAD) < N_REAL

    @eqx.filter_jit
    def both(model, state):
        ref, s1 = _batched(model)(x[None], jnp.ones((1, N_REAL), bool), state)
        got, s2 = _batched(model)(padded[None], mask[None], state)
        return ref, got, s1, s2

    ref, got, s1, s2 = both(model, state)
    assert bool(jnp.all(jnp.isfinite(ref)))
    assert_close(got, ref, rtol=1e-10)
    # BatchNorm's running statistics saw the same real positions.
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        assert_close(b, a, rtol=1e-10)
    # ...and inference mode (running statistics) agrees too.
    ref_i, got_i, _, _ = both(eqx.nn.inference_mode(model), s1)
    assert_close(got_i, ref_i, rtol=1e-10)


@pytest.mark.parametrize("make,causal", PADDING_CASES)
def test_nonfinite_values_at_padded_positions_never_reach_real_outputs(getkey, make, causal):
    """Outputs at padded positions are unspecified, so the layer below may leave inf
    or NaN there: every mixer's real outputs, and their gradients, are those of
    finite padding. The last block, chunk or window holds real and padded positions
    both (7 real of 12)."""
    m = make(D, causal, getkey())
    n_real, L = N_REAL - 1, N_REAL + N_PAD
    x = jr.normal(getkey(), (L, D))
    mask = jnp.arange(L) < n_real

    @eqx.filter_jit
    @eqx.filter_value_and_grad(has_aux=True)
    def f(m, x):
        y = m(x, mask=mask)[:n_real]
        return jnp.sum(jnp.sin(y)), y

    (_, y), g = f(m, x)
    for bad in (jnp.nan, jnp.inf):
        (_, got), got_g = f(m, jnp.where(mask[:, None], x, bad))
        assert_close(got, y, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(g), strict=True):
            assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,make,forms", MIXERS, ids=[m[0] for m in MIXERS])
def test_every_mixer_follows_the_protocol(getkey, name, make, forms):
    for form in forms:
        m = make(D, form == "causal", getkey())
        assert isinstance(m, snn.AbstractMixer) and m.d_model == D
        assert isinstance(m, snn.AbstractRecurrentMixer) == (name in RECURRENT), name
        if isinstance(m, snn.AbstractRecurrentMixer) and form == "bidirectional":
            with pytest.raises(ValueError):
                m.init_state(12)


# Attention variants have their own construction test (tests/attention).
NON_ATTENTION = [
    c for c in CASES if not isinstance(c.values[0](D, c.values[1], jr.key(0)), sa.AbstractAttention)
]


@pytest.mark.parametrize("make,causal", NON_ATTENTION)
def test_construction_vmaps_over_keys(getkey, make, causal):
    keys = jr.split(getkey(), 3)
    stacked = eqx.filter_vmap(lambda k: make(D, causal, k))(keys)
    single = make(D, causal, keys[1])
    member = jax.tree.map(lambda a: a[1] if eqx.is_array(a) else a, stacked)
    assert jax.tree.structure(member) == jax.tree.structure(single)
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(single), strict=True):
        if eqx.is_array(a):
            np.testing.assert_array_equal(
                np.asarray(jax.random.key_data(a) if _is_key(a) else a),
                np.asarray(jax.random.key_data(b) if _is_key(b) else b),
            )
        else:
            assert a == b


def _is_key(a):
    return jnp.issubdtype(a.dtype, jax.dtypes.prng_key)


def test_sequence_model_construction_vmaps(getkey):
    def build(k):
        return _model(MIXERS[1][1], False, "batch", k)[0]

    stacked = eqx.filter_vmap(build)(jr.split(getkey(), 2))
    assert stacked.head.weight.shape == (2, 3, D)
    x = jr.normal(getkey(), (N_REAL, D_IN))
    _, state = _model(MIXERS[1][1], False, "batch", getkey())
    per_member = eqx.filter_vmap(
        lambda m: eqx.nn.inference_mode(m)(x, state)[0],
    )(stacked)
    assert per_member.shape == (2, 3) and not np.allclose(per_member[0], per_member[1])


def test_causal_model_steps_like_its_parallel_call(x64, getkey):
    L = 10
    ks = jr.split(getkey(), 8)
    mixers = [
        snn.SSMLayer(ss.S4D(D, state_size=8, key=ks[0]), key=ks[1]),
        sa.MultiHeadAttention(D, 2, causal=True, key=ks[2]),
        sa.LocalAttention(D, 2, causal=True, window_size=3, mode="sliding", key=ks[3]),
        snn.SSMLayer(ss.S4(D, state_size=8, l_max=L, key=ks[4]), key=ks[5]),
        sa.LinearAttention(D, 2, causal=True, key=ks[6]),
    ]
    for pool in ("last", "mean"):
        model, state = eqx.nn.make_with_state(snn.SequenceModel)(
            d_in=D_IN, d_model=D, n_classes=3, mixer=mixers, norm="batch", ffn_mult=2, pool=pool, key=ks[7]
        )
        x = jr.normal(getkey(), (L, D_IN))
        # Move BatchNorm's running statistics away from (0, 1) first.
        _, state = _batched(model)(x[None], jnp.ones((1, L), bool), state)
        model = eqx.nn.inference_mode(model)

        def body(carry, x_t, model=model, state=state):
            logits, carry = model.step(x_t, carry, state)
            return carry, logits

        _, stepped = jax.lax.scan(body, model.init_state(L), x)
        for t in (0, 4, L - 1):
            ref, _ = eqx.filter_jit(model)(x[: t + 1], state)
            assert_close(stepped[t], ref, rtol=1e-10)


def test_bad_masks_and_mixers_raise(getkey):
    model, state = _model(MIXERS[1][1], False, "layer", getkey())
    x = jnp.zeros((6, D_IN))
    with pytest.raises(ValueError, match=r"padding mask of shape \(6,\)"):
        model(x, state, mask=jnp.ones((5,), bool))
    with pytest.raises(ValueError, match="bool padding mask"):
        model(x, state, mask=jnp.ones((6,), jnp.int32))
    with pytest.raises(TypeError, match="AbstractMixer"):
        snn.SequenceModel(d_in=1, d_model=D, n_classes=2, mixer=[lambda x: x], key=getkey())
    with pytest.raises(ValueError, match="width d_model=8"):
        snn.SequenceModel(
            d_in=1, d_model=D, n_classes=2, mixer=[sa.LinearAttention(4, 2, key=getkey())], key=getkey()
        )
    with pytest.raises(ValueError, match="no recurrent mode"):
        bidir, _ = _model(MIXERS[4][1], False, "layer", getkey())
        snn.SequenceModel.init_state(
            eqx.tree_at(lambda m: m.blocks[0].mixer, bidir, sa.Linformer(D, 2, max_len=8, key=getkey()))
        )


def test_every_dropout_rate_is_checked(getkey):
    """A dropout probability outside [0, 1) (NaN too) is refused by every layer
    that takes one, with the same message."""
    k = getkey()
    layers = {
        "SSMLayer": lambda p: snn.SSMLayer(ss.S4D(D, state_size=4, key=k), dropout=p, key=k),
        "GSS": lambda p: snn.GSS(D, ssm_dim=2, expansion=2, state_size=4, dropout=p, key=k),
        "Mega": lambda p: snn.Mega(D, z_dim=4, v_dim=4, ema_ndim=2, chunk_size=4, dropout=p, key=k),
        "BlockRecurrent": lambda p: snn.BlockRecurrent(D, 2, block_size=4, num_state=2, dropout=p, key=k),
        "ResidualBlock": lambda p: snn.ResidualBlock(sa.LinearAttention(D, 2, key=k), D, dropout=p, key=k),
        "ResidualBlock+FFN": lambda p: snn.ResidualBlock(
            sa.LinearAttention(D, 2, key=k), D, ffn_mult=2, dropout=p, key=k
        ),
        "MultiHeadAttention": lambda p: sa.MultiHeadAttention(D, 2, dropout=p, key=k),
    }
    for name, make in layers.items():
        make(0.25)
        for p in (2.0, -0.5, 1.0, float("nan")):
            with pytest.raises(ValueError, match=r"expected 0 <= dropout < 1, got"):
                make(p)
                pytest.fail(f"{name} accepted dropout={p}")
