"""Recurrent mode of the causal attention mixers: `jax.lax.scan` of `step` over a
sequence equals the parallel call (float64), also past the window; the
bidirectional forms refuse to step."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import seqkit.attention as sa
from seqkit.nn import AbstractRecurrentMixer

D, H = 8, 2

RECURRENT = [
    pytest.param(sa.MultiHeadAttention, dict(chunk_size=4), id="mha"),
    pytest.param(sa.LocalAttention, dict(window_size=3, mode="sliding"), id="local-sliding"),
    pytest.param(sa.LocalAttention, dict(window_size=1, mode="sliding"), id="local-sliding-w1"),
    pytest.param(sa.LocalAttention, dict(window_size=4, mode="block"), id="local-block"),
    pytest.param(sa.LinearAttention, dict(), id="linear"),
    pytest.param(sa.Performer, dict(num_features=8), id="performer"),
    pytest.param(sa.KernelizedAttention, dict(num_features=8), id="kernelized"),
]


@pytest.mark.parametrize("cls,opts", RECURRENT)
def test_scan_of_step_equals_parallel(x64, getkey, cls, opts):
    L = 10  # longer than every window and block above
    m = cls(D, H, causal=True, key=getkey(), **opts)
    assert isinstance(m, AbstractRecurrentMixer)
    x = 2.0 * jr.normal(getkey(), (L, D), jnp.float64)

    @eqx.filter_jit
    def both(m, x):
        def body(state, x_t):
            y_t, state = m.step(x_t, state)
            return state, y_t

        return jax.lax.scan(body, m.init_state(L), x)[1], m(x)

    steps, parallel = both(m, x)
    assert steps.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(steps), np.asarray(parallel), rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls,opts", RECURRENT)
def test_bidirectional_form_does_not_step(getkey, cls, opts):
    m = cls(D, H, key=getkey(), **opts)
    with pytest.raises(ValueError, match="causal"):
        m.init_state(4)
    state = cls(D, H, causal=True, key=getkey(), **opts).init_state(4)
    with pytest.raises(ValueError, match="causal"):
        m.step(jnp.zeros((D,)), state)


def test_kv_cache_needs_its_length_and_bounds_it(getkey):
    m = sa.MultiHeadAttention(D, H, causal=True, key=getkey())
    with pytest.raises(ValueError, match="needs L"):
        m.init_state()
    state = m.init_state(1)
    assert state.k.shape == (H, 1, D // H)
    with pytest.raises(ValueError, match=r"step input of shape \(8,\)"):
        m.step(jnp.zeros((D + 1,)), state)
    _, state = m.step(jnp.ones((D,)), state)
    with pytest.raises(Exception, match=r"cache is full \(1 positions\); make the state with a larger"):
        m.step(jnp.ones((D,)), state)


def test_local_cache_is_bounded(getkey):
    sliding = sa.LocalAttention(D, H, causal=True, window_size=5, mode="sliding", key=getkey())
    block = sa.LocalAttention(D, H, causal=True, window_size=5, mode="block", key=getkey())
    assert sliding.init_state().k.shape == (H, 4, D // H)  # the last window_size - 1 positions
    assert block.init_state(1000).k.shape == (H, 5, D // H)


@pytest.mark.parametrize("cls,opts", RECURRENT)
def test_step_refuses_an_input_wider_than_its_state(getkey, cls, opts):
    """The state holds the parameters' dtype: a float32 step into bfloat16
    parameters is refused by name (the parallel call, which keeps no state,
    promotes); a narrower input steps."""
    m = cls(D, H, causal=True, key=getkey(), **opts)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16) if eqx.is_inexact_array(a) else a, m)
    with jax.numpy_dtype_promotion("standard"):  # the suite runs with strict promotion
        with pytest.raises(ValueError, match="parameters' dtype bfloat16 .*got float32"):
            half.step(jnp.ones((D,), jnp.float32), half.init_state(4))
        y, _ = m.step(jnp.ones((D,), jnp.bfloat16), m.init_state(4))
    assert y.dtype == jnp.float32
