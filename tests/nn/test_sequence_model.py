"""SequenceModel, ResidualBlock, SequenceNorm and pool against float64 NumPy references."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import seqkit.nn as snn
from helpers import assert_close
from seqkit.ssm import S4, S4D


class TimeMix(snn.AbstractMixer):
    """A mixer with a simple closed form: y_t = tanh(x_t W + x_{t-1} V) (x_{-1} = 0)."""

    W: jax.Array
    V: jax.Array
    d_model: int = eqx.field(static=True)

    def __init__(self, d, *, key):
        k1, k2 = jr.split(key)
        self.W = jr.normal(k1, (d, d)) / np.sqrt(d)
        self.V = jr.normal(k2, (d, d)) / np.sqrt(d)
        self.d_model = d

    def __call__(self, x, *, mask=None, key=None):
        prev = jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]], axis=0)
        return jnp.tanh(x @ self.W + prev @ self.V)


def np_timemix(m, x):
    W, V = np.asarray(m.W, np.float64), np.asarray(m.V, np.float64)
    prev = np.concatenate([np.zeros_like(x[:1]), x[:-1]], axis=0)
    return np.tanh(x @ W + prev @ V)


def np_layernorm(x, ln):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * np.asarray(ln.weight) + np.asarray(ln.bias)


def np_batchnorm(xs, bn):
    # xs: (B, L, d); statistics per channel over batch and length.
    mu = xs.mean(axis=(0, 1))
    var = ((xs - mu) ** 2).mean(axis=(0, 1))
    return (xs - mu) / np.sqrt(var + bn.eps) * np.asarray(bn.weight) + np.asarray(bn.bias)


def np_linear(lin, x):
    return x @ np.asarray(lin.weight, np.float64).T + np.asarray(lin.bias, np.float64)


def np_model(model, xs, norm, table=None):
    """The whole forward pass, batch at once, in float64 NumPy (dropout 0, no FFN);
    `table` holds position embeddings added to the encoded inputs."""
    h = np_linear(model.encoder, xs.astype(np.float64))
    if table is not None:
        h = h + table[: h.shape[1]]

    def nrm(n, h):
        if norm == "layer":
            return np.stack([np_layernorm(e, n) for e in h])
        return np_batchnorm(h, n)

    for blk in model.blocks:
        mix = lambda h, blk=blk: np.stack([np_timemix(blk.mixer, e) for e in h])  # noqa: E731
        if blk.prenorm:
            h = h + mix(nrm(blk.norm, h))
        else:
            h = nrm(blk.norm, h + mix(h))
    if model.final_norm is not None:
        h = nrm(model.final_norm, h)
    return np_linear(model.head, h.mean(axis=1))


def batched(model):
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_forward_matches_reference(getkey, norm, prenorm):
    d, L, B = 8, 12, 3
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=2,
        d_model=d,
        n_classes=3,
        n_layers=2,
        mixer=lambda i, k: TimeMix(d, key=k),
        norm=norm,
        prenorm=prenorm,
        key=getkey(),
    )
    x = jr.normal(getkey(), (B, L, 2))
    logits, state = batched(model)(x, state)
    assert logits.shape == (B, 3)
    assert_close(logits, np_model(model, np.asarray(x, np.float64), norm), rtol=1e-4)


def test_batchnorm_running_statistics(getkey):
    d, L, B = 4, 10, 5
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=d,
        d_model=d,
        n_classes=2,
        n_layers=1,
        mixer=lambda i, k: TimeMix(d, key=k),
        norm="batch",
        prenorm=True,
        key=getkey(),
    )
    x = 3.0 + 2.0 * jr.normal(getkey(), (B, L, d))
    _, new_state = batched(model)(x, state)
    # The first block's norm sees the encoder output: its running mean moved toward
    # the batch mean by (1 - momentum) = 0.1.
    bn = model.blocks[0].norm
    h = np_linear(model.encoder, np.asarray(x, np.float64))
    mean, var = new_state.get(bn.stats)
    assert_close(mean, 0.1 * h.mean(axis=(0, 1)), rtol=1e-4)
    assert_close(var, 0.9 + 0.1 * h.var(axis=(0, 1)), rtol=1e-4)
    # Inference uses the stored statistics: the output no longer depends on the batch.
    inf = eqx.nn.inference_mode(model)
    one, _ = batched(inf)(x[:1], new_state)
    all_, _ = batched(inf)(x, new_state)
    assert_close(one[0], all_[0], rtol=1e-5)


def test_token_inputs_ffn_cls_and_mixer_list(getkey):
    d, L = 16, 20
    k1, k2 = jr.split(getkey())
    # "S4 at layer 0, another mixer elsewhere" as one argument.
    mixers = [snn.SSMLayer(S4(d, l_max=L + 1, bidirectional=True, key=k1), key=k2), TimeMix(d, key=getkey())]
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        vocab_size=11,
        d_model=d,
        n_classes=4,
        mixer=mixers,
        ffn_mult=2,
        pool="cls",
        dropout=0.1,
        key=getkey(),
    )
    assert len(model.blocks) == 2 and isinstance(model.blocks[0].mixer.core, S4)
    toks = jr.randint(getkey(), (L,), 0, 11)
    y1, _ = model(toks, state, key=getkey())
    y2, _ = model(toks, state, key=getkey())
    assert y1.shape == (4,) and not np.allclose(y1, y2)  # dropout is active in training
    inf = eqx.nn.inference_mode(model)
    assert_close(inf(toks, state)[0], inf(toks, state, key=getkey())[0], rtol=0)


def test_cls_pooling_needs_a_bidirectional_mixer(getkey):
    """The class token comes first, and a causal mixer shows position 0 only itself:
    with only causal mixers the logits could not depend on the input, so
    SequenceModel and DualEncoder refuse it. One bidirectional mixer is enough."""
    from seqkit.attention import MultiHeadAttention

    d = 8
    kw = dict(vocab_size=11, d_model=d, n_classes=3, pool="cls", key=getkey())
    causal = [
        snn.SSMLayer(S4D(d, 4, key=getkey()), key=getkey()),
        MultiHeadAttention(d, 2, causal=True, key=getkey()),
    ]
    assert all(m.causal for m in causal)  # S4D's own default is causal
    for cls in (snn.SequenceModel, snn.DualEncoder):
        with pytest.raises(ValueError, match="pool='cls' with only causal mixers"):
            cls(mixer=causal, **kw)
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        mixer=[causal[0], MultiHeadAttention(d, 2, key=getkey())], **kw
    )
    a, b = (model(jr.randint(getkey(), (6,), 0, 11), state)[0] for _ in range(2))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4  # the class token reads the input


def test_causal_last_pooling_ignores_padding(getkey):
    d, L, pad = 8, 16, 5

    def mixer(i, key):
        k1, k2 = jr.split(key)
        return snn.SSMLayer(S4D(d, key=k1), key=k2)

    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=1,
        d_model=d,
        n_classes=2,
        n_layers=2,
        mixer=mixer,
        pool="last",
        key=getkey(),
    )
    x = jr.normal(getkey(), (L, 1))
    padded = jnp.concatenate([x, 100.0 * jr.normal(getkey(), (pad, 1))])
    mask = jnp.arange(L + pad) < L
    ref, _ = model(x, state)
    got, _ = model(padded, state, mask=mask)
    assert_close(got, ref, rtol=1e-4)


@pytest.mark.parametrize("kind", ["mean", "last", "cls"])
def test_pool_reference(getkey, kind):
    x = jr.normal(getkey(), (7, 3))
    mask = jnp.array([1, 1, 0, 1, 1, 0, 0], bool)
    xn, mn = np.asarray(x, np.float64), np.asarray(mask)
    expected = {"mean": xn[mn].mean(0), "last": xn[4], "cls": xn[0]}[kind]
    assert_close(snn.pool(x, kind, mask), expected, rtol=1e-6)
    expected = {"mean": xn.mean(0), "last": xn[-1], "cls": xn[0]}[kind]
    assert_close(snn.pool(x, kind), expected, rtol=1e-6)
    # A non-finite value at a padded position does not reach the pooled vector.
    poisoned = x.at[2].set(jnp.nan).at[6].set(jnp.inf)
    expected = {"mean": xn[mn].mean(0), "last": xn[4], "cls": xn[0]}[kind]
    assert_close(snn.pool(poisoned, kind, mask), expected, rtol=1e-6)


def test_pool_rejects_unknown_kinds(getkey):
    x = jr.normal(getkey(), (7, 3))
    for mask in (None, jnp.ones(7, bool)):
        with pytest.raises((ValueError, TypeError), match="max"):
            snn.pool(x, "max", mask)


def test_errors(getkey):
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=2,
        d_model=4,
        n_classes=2,
        n_layers=1,
        mixer=lambda i, k: TimeMix(4, key=k),
        key=getkey(),
    )
    with pytest.raises(ValueError, match=r"expected real input of shape \(L, 2\)"):
        model(jnp.zeros((5, 3)), state)
    with pytest.raises(ValueError, match="factory"):
        snn.SequenceModel(
            d_in=2, d_model=4, n_classes=2, n_layers=2, mixer=TimeMix(4, key=getkey()), key=getkey()
        )
    with pytest.raises(ValueError, match="exactly one of"):
        snn.SequenceModel(
            d_model=4, n_classes=2, n_layers=1, mixer=lambda i, k: TimeMix(4, key=k), key=getkey()
        )
    with pytest.raises(ValueError, match="expected 3 mixers"):
        snn.SequenceModel(
            d_in=1, d_model=4, n_classes=2, n_layers=3, mixer=[TimeMix(4, key=getkey())], key=getkey()
        )


def test_nonfinite_inputs_spread_in_conv_mode_and_the_check_catches_them(getkey):
    d, L = 4, 16
    core = S4D(d, state_size=4, key=getkey())
    u = jr.normal(getkey(), (L, d)).at[L - 1, 0].set(jnp.nan)
    # Convolution mode: the FFT mixes every position, so the NaN reaches the
    # *earlier* outputs of its channel too; the recurrence keeps them finite.
    y = core(u)
    assert bool(jnp.isnan(y[0, 0])) and bool(jnp.all(jnp.isfinite(y[:, 1:])))
    from helpers import scan_steps

    assert bool(jnp.all(jnp.isfinite(scan_steps(core, u, core.init_state())[:-1])))

    def mixer(i, key):
        k1, k2 = jr.split(key)
        return snn.SSMLayer(S4D(d, key=k1), key=k2)

    kwargs = dict(d_in=1, d_model=d, n_classes=2, n_layers=1, mixer=mixer, key=getkey())
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(check_finite=True, **kwargs)
    call = eqx.filter_jit(lambda m, x, mask: batched_masked(m)(x, mask, state)[0])
    x = jr.normal(getkey(), (2, L, 1))
    mask = jnp.ones((2, L), bool).at[1, L - 3 :].set(False)
    assert bool(jnp.all(jnp.isfinite(call(model, x, mask))))
    # A NaN in the padding is fine: padded positions are never read.
    assert bool(jnp.all(jnp.isfinite(call(model, x.at[1, L - 1, 0].set(jnp.nan), mask))))
    with pytest.raises(Exception, match="NaN or infinity at a real position"):
        jax.block_until_ready(call(model, x.at[1, 3, 0].set(jnp.inf), mask))
    # Off by default: the NaN just spreads to the logits.
    plain, _ = eqx.nn.make_with_state(snn.SequenceModel)(**kwargs)
    assert bool(jnp.isnan(call(plain, x.at[1, 3, 0].set(jnp.nan), mask)[1]).any())


def batched_masked(model):
    return jax.vmap(
        lambda x, m, s: model(x, s, mask=m), axis_name="batch", in_axes=(0, 0, None), out_axes=(0, None)
    )


# --- position embeddings ------------------------------------------------------------


def np_sinusoidal(L, d):
    """Vaswani et al.'s table in float64: sin at even, cos at odd channels."""
    p = np.arange(L, dtype=np.float64)[:, None]
    i = np.arange(d)[None, :]
    angle = p / 10000.0 ** ((i - i % 2) / d)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


@pytest.mark.parametrize("d", [8, 7, 1])
def test_sinusoidal_positions_match_the_formula(x64, d):
    L = 300
    got = snn.sinusoidal_positions(jnp.arange(L), d, dtype=jnp.float64)
    assert got.shape == (L, d) and got.dtype == jnp.float64
    assert_close(got, np_sinusoidal(L, d), rtol=0, atol=1e-12)
    # Any positions, in any order: rows of the same table.
    idx = jnp.array([299, 0, 17, 17])
    assert_close(
        snn.sinusoidal_positions(idx, d, dtype=jnp.float64),
        np_sinusoidal(L, d)[np.asarray(idx)],
        rtol=0,
        atol=1e-12,
    )


def _positions_model(key, positions, *, pool="mean", norm="layer", max_length=None, d_in=2, d=8, n_layers=2):
    return eqx.nn.make_with_state(snn.SequenceModel)(
        d_in=d_in,
        d_model=d,
        n_classes=3,
        n_layers=n_layers,
        mixer=lambda i, k: TimeMix(d, key=k),
        norm=norm,
        pool=pool,
        positions=positions,
        max_length=max_length,
        key=key,
    )


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_positions_are_added_to_the_encoded_inputs(x64, getkey, positions):
    d, L, B = 8, 12, 3
    key = getkey()
    model, state = _positions_model(key, positions, max_length=L, d=d)
    x = jr.normal(getkey(), (B, L, 2))
    logits, _ = batched(model)(x, state)
    table = np_sinusoidal(L, d) if positions == "sinusoidal" else np.asarray(model.position_table)
    if positions == "learned":
        assert table.shape == (L, d) and 0.01 < table.std() < 0.03  # N(0, 0.02²), as LRA's
    assert_close(logits, np_model(model, np.asarray(x, np.float64), "layer", table), rtol=1e-10)
    # The same key without positions: the same weights (the table draws from a key
    # of its own), other logits.
    plain, _ = _positions_model(key, "none", d=d)
    others = [leaf for leaf in jax.tree.leaves(model) if leaf is not model.position_table]
    for a, b in zip(jax.tree.leaves(plain), others, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(batched(plain)(x, state)[0]), np.asarray(logits), rtol=1e-3)


def test_default_adds_no_positions(getkey):
    model, state = _positions_model(getkey(), "none")
    assert model.positions == "none" and model.position_table is None and model.max_length is None
    assert_close(model.position_embedding(jnp.arange(4)), np.zeros((4, 8)), rtol=0)


def test_learned_table_is_trained(getkey):
    model, state = _positions_model(getkey(), "learned", max_length=10)
    x = jr.normal(getkey(), (10, 2))
    grads = eqx.filter_grad(lambda m: jnp.sum(m(x, state)[0] ** 2))(model)
    assert grads.position_table.shape == (10, 8) and bool(jnp.all(jnp.any(grads.position_table != 0, axis=1)))
    assert any(
        leaf is model.position_table for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    )


MHA_D = 8


def _mha(i, key):
    from seqkit.attention import MultiHeadAttention

    return MultiHeadAttention(MHA_D, 2, key=key)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("pool", ["mean", "cls"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_positions_keep_padding_invisible(x64, getkey, positions, pool, side):
    """Padded and unpadded inputs give the same logits and BatchNorm statistics, for a
    SequenceModel and a DualEncoder (whose documents share the table), with the
    padding after the tokens or before them (real tokens keep positions 0..n-1)."""
    n_real, n_pad, vocab = 7, 5, 11
    L = n_real + n_pad + (pool == "cls")
    toks = jr.randint(getkey(), (2, 2, n_real), 1, vocab)  # (B, pair, L)
    junk = jr.randint(getkey(), (2, 2, n_pad), 0, vocab)
    real = jnp.arange(n_real + n_pad) < n_real
    if side == "right":
        padded = jnp.concatenate([toks, junk], axis=-1)
    else:
        padded, real = jnp.concatenate([junk, toks], axis=-1), real[::-1]
    mask = jnp.broadcast_to(real, padded.shape)
    full = jnp.ones(toks.shape, bool)
    kwargs = dict(
        vocab_size=vocab, d_model=MHA_D, n_classes=3, n_layers=2, mixer=_mha, ffn_mult=2, norm="batch"
    )

    @eqx.filter_jit
    def both(model, state, x, m, xp, mp):
        call = jax.vmap(
            lambda x, m, s: model(x, s, mask=m), axis_name="batch", in_axes=(0, 0, None), out_axes=(0, None)
        )
        return call(x, m, state), call(xp, mp, state)

    for cls, x, xp, m, mp in [
        (snn.SequenceModel, toks[:, 0], padded[:, 0], full[:, 0], mask[:, 0]),
        (snn.DualEncoder, toks, padded, full, mask),
    ]:
        model, state = eqx.nn.make_with_state(cls)(
            pool=pool, positions=positions, max_length=L, key=getkey(), **kwargs
        )
        (ref, s1), (got, s2) = both(model, state, x, m, xp, mp)
        assert bool(jnp.all(jnp.isfinite(ref)))
        assert_close(got, ref, rtol=1e-10)
        for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
            assert_close(b, a, rtol=1e-10)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_causal_model_with_positions_steps_like_its_parallel_call(x64, getkey, positions):
    from seqkit.attention import LinearAttention, MultiHeadAttention

    d, L = 8, 10
    k1, k2, k3 = jr.split(getkey(), 3)
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        vocab_size=11, d_model=d, n_classes=3, norm="batch", ffn_mult=2, pool="mean",
        mixer=[MultiHeadAttention(d, 2, causal=True, key=k1), LinearAttention(d, 2, causal=True, key=k2)],
        positions=positions, max_length=L, key=k3,
    )  # fmt: skip
    x = jr.randint(getkey(), (L,), 0, 11)
    _, state = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x[None], state)
    model = eqx.nn.inference_mode(model)

    @jax.jit
    def stepped(reset):
        def body(carry, x_t):
            logits, new = model.step(x_t, carry, state)
            # `reset`: every step sees position 0 (the blocks' states kept).
            return new._replace(position=jnp.where(reset, 0, new.position)), logits

        return jax.lax.scan(body, model.init_state(L), x)

    carry, logits = stepped(False)
    assert int(carry.position) == L
    parallel = eqx.filter_jit(lambda model, x: model(x, state)[0])
    for t in (3, L - 1):
        assert_close(logits[t], parallel(model, x[: t + 1]), rtol=1e-10)
    # The position index matters: without it the logits differ.
    assert not np.allclose(np.asarray(stepped(True)[1][-1]), np.asarray(logits[-1]))


def test_position_errors(getkey):
    with pytest.raises(ValueError, match="needs max_length"):
        _positions_model(getkey(), "learned")
    with pytest.raises((ValueError, TypeError)):  # the type checker or the constructor
        _positions_model(getkey(), "rotary")
    model, state = _positions_model(getkey(), "learned", max_length=6)
    with pytest.raises(ValueError, match="at most max_length=6 positions"):
        model(jnp.zeros((7, 2)), state)
    model, state = _positions_model(getkey(), "sinusoidal", pool="cls", max_length=6)
    model(jnp.zeros((5, 2)), state)  # 5 inputs + the class token
    with pytest.raises(ValueError, match=r"class token included"):
        model(jnp.zeros((6, 2)), state)
    model, state = _positions_model(getkey(), "sinusoidal", max_length=6)
    with pytest.raises(ValueError, match="L <= max_length=6"):
        model.init_state(7)


@pytest.mark.parametrize("junk", [np.nan, np.inf, 1e200])
def test_batchnorm_statistics_never_see_padded_values(x64, getkey, junk):
    """BatchNorm's batch and running statistics are those of the real positions
    (NumPy, float64), whatever sits at padded ones: NaN, inf, or a value whose
    square overflows."""
    B, L, d, n = 3, 6, 4, 4  # n real positions per sequence
    norm, state = eqx.nn.make_with_state(snn.SequenceNorm)(d, "batch")
    x = 2.0 + 3.0 * jr.normal(getkey(), (B, L, d))
    mask = jnp.broadcast_to(jnp.arange(L) < n, (B, L))
    x = jnp.where(mask[..., None], x, junk)
    call = lambda x, m, s: norm(x, s, mask=m)  # noqa: E731
    run = jax.vmap(call, axis_name="batch", in_axes=(0, 0, None), out_axes=(0, None))
    y, state = run(x, mask, state)
    real = np.asarray(x)[:, :n].reshape(-1, d)
    mean, var = real.mean(0), real.var(0)
    assert_close(y[:, :n], ((np.asarray(x)[:, :n] - mean) / np.sqrt(var + 1e-5)), rtol=1e-10)
    run_mean, run_var = state.get(norm.stats)
    assert_close(run_mean, 0.1 * mean, rtol=1e-10)
    assert_close(run_var, 0.9 + 0.1 * var, rtol=1e-10)
