import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from helpers import assert_close, scan_steps
from seqkit.nn import SSMLayer
from seqkit.ssm import S4D


def _reference(layer, u):
    """core → GELU → Linear (→ GLU), written out in NumPy float64."""
    y = np.asarray(layer.core(u), np.float64)
    y = 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))  # GELU (tanh form)
    W = np.asarray(layer.output_map.weight, np.float64)
    b = np.asarray(layer.output_map.bias, np.float64)
    z = y @ W.T + b
    if layer.output == "glu":
        a, g = np.split(z, 2, axis=-1)
        z = a / (1 + np.exp(-g))
    return z


@pytest.mark.parametrize("output", ["glu", "linear"])
def test_ssm_layer_matches_reference(output, getkey):
    layer = SSMLayer(S4D(6, 8, key=getkey()), output=output, key=getkey())
    u = jr.normal(getkey(), (20, 6))
    assert_close(layer(u), _reference(layer, u), rtol=1e-5)


def test_ssm_layer_step_matches_call(getkey):
    layer = SSMLayer(S4D(4, 8, key=getkey()), key=getkey())
    u = jr.normal(getkey(), (16, 4))

    ys = scan_steps(layer, u, layer.init_state())
    assert_close(ys, layer(u), rtol=2e-3)


def test_ssm_layer_dropout_is_keyed_and_switchable(getkey):
    layer = SSMLayer(S4D(4, 8, key=getkey()), dropout=0.5, key=getkey())
    u = jr.normal(getkey(), (16, 4))
    k = getkey()
    a, b = layer(u, key=k), layer(u, key=k)
    assert_close(a, b, rtol=0)
    assert not np.allclose(a, layer(u, key=getkey()))
    frozen = eqx.nn.inference_mode(layer)
    assert_close(frozen(u), _reference(layer, u), rtol=1e-5)
    with pytest.raises(RuntimeError):
        layer(u)  # dropout active but no key given


def test_ssm_layer_batches_with_vmap(getkey):
    layer = SSMLayer(S4D(4, 8, bidirectional=True, key=getkey()), key=getkey())
    u = jr.normal(getkey(), (3, 16, 4))
    y = jax.vmap(layer)(u)
    assert y.shape == (3, 16, 4)
    assert_close(y[1], layer(u[1]), rtol=1e-5)
    assert jnp.all(jnp.isfinite(y))
