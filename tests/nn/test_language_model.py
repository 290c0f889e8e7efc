"""Causal language models: per-position logits (`pool="none"`), causality, and
generation through the step modes against the parallel model."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from seqkit import attention as sa, nn as snn, ssm

V, D, L_MAX = 11, 16, 32

CAUSAL = {
    "s4": snn.S4Config(state_size=8, bidirectional=False),
    "s4d": snn.S4DConfig(state_size=8, bidirectional=False),
    "s5": snn.S5Config(bidirectional=False),
    "gss": snn.GSSConfig(causal=True, state_size=16),
    "mega": snn.MegaConfig(causal=True, attention="softmax"),
    "mha": sa.MultiHeadAttentionConfig(num_heads=2, causal=True),
    "local": sa.LocalAttentionConfig(num_heads=2, causal=True, window_size=4),
    "linear": sa.LinearAttentionConfig(num_heads=2, causal=True),
}


def _lm(config, *, positions="none", norm="layer", dtype=jnp.float64):
    model, state = eqx.nn.make_with_state(snn.SequenceModel)(
        d_model=D,
        n_classes=V,
        vocab_size=V,
        n_layers=2,
        pool="none",
        norm=norm,
        ffn_mult=2,
        positions=positions,
        max_length=L_MAX if positions != "none" else None,
        mixer=lambda i, k: config.build(D, max_length=L_MAX, key=k),
        key=jr.key(3),
    )
    model = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, model)
    return eqx.nn.inference_mode(model), state


# The default tier covers an SSM layer, GSS, attention with a key/value cache and a
# sliding window; the slow tier the remaining step modes.
_SLOW = ("s4", "s5", "mega", "linear")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(CAUSAL)]
)
def test_greedy_generation_is_the_parallel_models_argmax(name, x64):
    """Generated token t is the argmax of the parallel model's logits on the
    prefix before it, and the step mode's logits are the parallel model's."""
    model, state = _lm(CAUSAL[name], positions="sinusoidal" if name == "mha" else "none")
    prompt = jnp.array([1, 4, 2, 7, 3], jnp.int32)
    n = 9
    tokens, logits = snn.generate(model, prompt, n, temperature=0, state=state, return_logits=True)
    assert tokens.shape == (n,) and tokens.dtype == jnp.int32
    full = jnp.concatenate([prompt, tokens])
    parallel, _ = model(full[:-1], state)  # row t predicts token t + 1
    np.testing.assert_allclose(np.asarray(logits), np.asarray(parallel), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(parallel, -1)[prompt.shape[0] - 1 :]), tokens)


def test_generation_reads_up_to_max_length_positions(x64):
    """The last new token is predicted, never read: a model of max_length 32
    continues a 2-token prompt by 31 tokens, the last the parallel model's argmax
    on all 32 positions."""
    model, state = _lm(CAUSAL["mha"], positions="learned")
    prompt = jnp.array([1, 2], jnp.int32)
    tokens, logits = snn.generate(model, prompt, 31, temperature=0, state=state, return_logits=True)
    full = jnp.concatenate([prompt, tokens])
    parallel, _ = model(full[:-1], state)
    assert full.shape == (33,) and logits.shape == (32, V)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(parallel), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(parallel, -1)[1:]), tokens)


@pytest.mark.parametrize("name", ["s4d", "gss", "mha", "local"])
def test_language_model_is_causal(name):
    """Changing the tokens from position t on leaves the logits before t alone
    (a dense check of every prefix length)."""
    model, state = _lm(CAUSAL[name], dtype=jnp.float32)
    x = jr.randint(jr.key(0), (12,), 0, V)
    base, _ = model(x, state)
    assert base.shape == (12, V)
    for t in (0, 5, 11):
        other = x.at[t:].set((x[t:] + 1 + jnp.arange(12 - t)) % V)
        out, _ = model(other, state)
        np.testing.assert_allclose(np.asarray(out[:t]), np.asarray(base[:t]), rtol=1e-5, atol=1e-5)
        assert not np.allclose(np.asarray(out[t:]), np.asarray(base[t:]))


def test_per_position_logits_ignore_padding():
    model, state = _lm(CAUSAL["s4d"], dtype=jnp.float32)
    x = jr.randint(jr.key(1), (10,), 0, V)
    mask = jnp.arange(10) < 7
    a, _ = model(x, state, mask=mask)
    b, _ = model(x.at[7:].set(0), state, mask=mask)
    np.testing.assert_allclose(np.asarray(a[:7]), np.asarray(b[:7]), rtol=1e-6, atol=1e-6)


def test_sampling_follows_the_tempered_softmax_and_top_k():
    logits = jnp.array([2.0, 1.0, 0.0, -1.0, 0.5])
    keys = jr.split(jr.key(0), 20_000)
    for temperature in (1.0, 0.5):
        draw = functools.partial(snn.sample_logits, logits, temperature=temperature)
        draws = np.asarray(jax.vmap(draw)(keys))
        p = np.exp(np.asarray(logits, np.float64) / temperature)
        p /= p.sum()
        freq = np.bincount(draws, minlength=5) / len(draws)
        # 4 standard errors of a binomial proportion at n = 20k.
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / len(draws)) + 1e-3), (freq, p)
    draws = np.asarray(jax.vmap(lambda k: snn.sample_logits(logits, k, top_k=2))(keys))
    assert set(np.unique(draws)) == {0, 1}
    p2 = np.exp([2.0, 1.0]) / np.exp([2.0, 1.0]).sum()
    assert abs(np.mean(draws == 0) - p2[0]) < 0.02
    assert int(snn.sample_logits(logits, keys[0], temperature=0)) == 0
    assert int(snn.sample_logits(logits, keys[0], top_k=1)) == 0
    # Ties with the k-th logit: exactly top_k candidates, never more.
    tied = jnp.array([3.0, 1.0, 1.0, 1.0, -2.0])
    draws = np.asarray(jax.vmap(lambda k: snn.sample_logits(tied, k, top_k=2))(keys[:2000]))
    assert len(set(np.unique(draws))) == 2 and 0 in draws


def test_sampled_generation_is_reproducible_and_vmaps():
    model, state = _lm(CAUSAL["gss"], dtype=jnp.float32)
    prompt = jnp.array([1, 2, 3])
    a = snn.generate(model, prompt, 6, temperature=1.0, top_k=5, key=jr.key(7), state=state)
    b = snn.generate(model, prompt, 6, temperature=1.0, top_k=5, key=jr.key(7), state=state)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(jnp.min(a)) >= 0 and int(jnp.max(a)) < V
    prompts = jnp.array([[1, 2, 3], [4, 5, 6]])
    both = jax.vmap(lambda p, k: snn.generate(model, p, 6, temperature=1.0, key=k, state=state))(
        prompts, jr.split(jr.key(0), 2)
    )
    assert both.shape == (2, 6)


def test_generation_refuses_a_length_dependent_mixer(x64):
    """DSS's softmax kernel is normalized over the whole length: row t of the
    parallel model on L positions is not its last row on the prefix of t + 1, so
    generate, which promises the latter, refuses models with it."""
    softmax = {
        "dss": snn.DSSConfig(variant="softmax", state_size=8, bidirectional=False),
        "gss": snn.GSSConfig(causal=True, state_size=16, variant="softmax"),
    }
    x = jr.randint(jr.key(1), (12,), 0, V)
    for name, config in softmax.items():
        model, state = _lm(config)
        assert model.length_dependent
        assert not _lm(CAUSAL["gss"])[0].length_dependent  # the exp kernel
        whole, prefix = model(x, state)[0][5], model(x[:6], state)[0][-1]
        assert float(jnp.max(jnp.abs(whole - prefix))) > 1e-4, name
        with pytest.raises(ValueError, match="length-dependent mixer .*variant='exp'"):
            snn.generate(model, jnp.array([1, 2]), 3, temperature=0, state=state)


def test_generate_checks_a_traced_prompt():
    """Under vmap the prompt is traced: the vocabulary check runs with the computation."""
    model, state = _lm(CAUSAL["s4d"], dtype=jnp.float32)
    run = jax.vmap(lambda p: snn.generate(model, p, 2, temperature=0, state=state))
    assert run(jnp.array([[1, 2, 10], [0, 3, 4]])).shape == (2, 2)
    with pytest.raises(Exception, match=r"prompt tokens in 0..10"):
        jax.block_until_ready(run(jnp.array([[1, 2, 50], [0, 3, 4]])))


def test_generate_errors():
    model, state = _lm(CAUSAL["s4d"], dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"prompt of integer tokens of shape \(P,\)"):
        snn.generate(model, jnp.zeros((2, 3), jnp.int32), 4, temperature=0, state=state)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        snn.generate(model, jnp.array([1]), 4, state=state)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite temperature >= 0"):
            snn.generate(model, jnp.array([1]), 4, temperature=bad, key=jr.key(0), state=state)
    for prompt in ([1, 11, 3], [1, -1, 3]):  # outside the vocabulary 0..10
        with pytest.raises(ValueError, match=r"prompt tokens in 0..10 .*, got tokens from -?\d+ to \d+"):
            snn.generate(model, jnp.array(prompt), 4, temperature=0, state=state)
    with pytest.raises(ValueError, match=r"top_k in 1..11"):
        snn.generate(model, jnp.array([1]), 4, top_k=12, key=jr.key(0), state=state)
    with pytest.raises(ValueError, match="n >= 1"):
        snn.generate(model, jnp.array([1]), 0, temperature=0, state=state)
    bidir, bstate = _lm(snn.S4DConfig(state_size=8, bidirectional=True), dtype=jnp.float32)
    with pytest.raises(ValueError, match="every mixer must be causal and recurrent"):
        snn.generate(bidir, jnp.array([1]), 4, temperature=0, state=bstate)
    positioned, pstate = _lm(CAUSAL["mha"], positions="learned", dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"\(2\) \+ n \(32\) - 1 = 33 positions read .* max_length=32"):
        snn.generate(positioned, jnp.array([1, 2]), 32, temperature=0, state=pstate)
    # BatchNorm's training statistics mix positions: a causal language model refuses
    # it, whatever mixer makes it causal (a fused SPADE layer, a bare SSM core too).
    spade = sa.SpadeConfig(causal=True, num_heads=2, window_size=4, state_size=4)
    for config in (*CAUSAL.values(), spade):
        with pytest.raises(ValueError, match="norm='batch' in a causal model with pool='none'"):
            _lm(config, norm="batch", dtype=jnp.float32)
    for core in (ssm.S4D, ssm.S5):
        with pytest.raises(ValueError, match="norm='batch' in a causal model with pool='none'"):
            eqx.nn.make_with_state(snn.SequenceModel)(
                d_model=D, n_classes=V, vocab_size=V, n_layers=1, pool="none", norm="batch",
                mixer=lambda i, k, core=core: core(D, 4, bidirectional=False, key=k), key=jr.key(0),
            )  # fmt: skip
    pooled, qstate = eqx.nn.make_with_state(snn.SequenceModel)(
        d_model=D, n_classes=V, vocab_size=V, n_layers=1, pool="mean",
        mixer=lambda i, k: CAUSAL["s4d"].build(D, max_length=L_MAX, key=k), key=jr.key(0),
    )  # fmt: skip
    with pytest.raises(ValueError, match="pool='none'"):
        snn.generate(pooled, jnp.array([1]), 4, temperature=0, state=qstate)


def test_dual_encoder_refuses_unpooled_encodings():
    # The type hint refuses it where annotations are checked (as in this suite), the
    # constructor's own check everywhere else.
    with pytest.raises((ValueError, TypeError), match="pool"):
        snn.DualEncoder(
            d_model=D, n_classes=2, vocab_size=V, n_layers=1, pool="none",
            mixer=lambda i, k: CAUSAL["s4d"].build(D, max_length=L_MAX, key=k), key=jr.key(0),
        )  # fmt: skip
