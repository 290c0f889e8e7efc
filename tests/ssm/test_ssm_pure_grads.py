"""Gradients of the pure kernel functions against finite differences (float64),
and the parameterization rule that every trainable leaf is real."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.test_util import check_grads

from seqkit.ssm import DSS, EMA, S4, S4D, dss_kernel, ema_kernel, s4_kernel, s4d_kernel

H, n = 2, 3


def _complex(rng, shape, re=None):
    real = rng.normal(size=shape) if re is None else re
    return jnp.asarray(real + 1j * rng.normal(size=shape))


@pytest.fixture
def params(x64):
    rng = np.random.default_rng(0)
    return dict(
        Lambda=_complex(rng, (H, n), re=-rng.uniform(0.2, 1.0, (H, n))),
        P=_complex(rng, (H, n)),
        B=_complex(rng, (H, n)),
        C=_complex(rng, (2, H, n)),
        dt=jnp.asarray(rng.uniform(0.01, 0.2, H)),
    )


def _check(f, args):
    check_grads(f, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


@pytest.mark.parametrize("L", [9, 16])
def test_s4_kernel_grads(params, L):
    p = params
    _check(lambda *a: s4_kernel(*a, L), (p["Lambda"], p["P"], p["B"], p["C"], p["dt"]))


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s4d_kernel_grads(params, discretization):
    p = params
    _check(lambda *a: s4d_kernel(*a, 11, discretization), (p["Lambda"], p["B"], p["C"], p["dt"]))


@pytest.mark.parametrize("variant", ["exp", "softmax"])
def test_dss_kernel_grads(params, variant):
    p = params
    lam = p["Lambda"].at[0, 0].set(0.4 + 1.0j)  # one growing mode: allowed for softmax
    lam = lam if variant == "softmax" else p["Lambda"]
    _check(lambda *a: dss_kernel(*a, 11, variant), (lam, p["C"], p["dt"]))


def test_ema_kernel_grads(x64):
    rng = np.random.default_rng(1)
    a, d = (jnp.asarray(rng.uniform(0.1, 0.9, (H, 4))) for _ in range(2))
    b, e = (jnp.asarray(rng.normal(size=(H, 4))) for _ in range(2))
    _check(lambda *args: ema_kernel(*args, 13), (a, d, b, e))


@pytest.mark.parametrize(
    "core",
    [
        lambda k: S4(4, 8, l_max=32, bidirectional=True, key=k),
        lambda k: S4D(4, 8, key=k),
        lambda k: DSS(4, 8, variant="softmax", key=k),
        lambda k: EMA(4, 3, bidirectional=True, key=k),
    ],
)
def test_trainable_leaves_are_real_and_grads_finite(core):
    core = core(jr.key(0))
    leaves = jax.tree.leaves(eqx.filter(core, eqx.is_inexact_array))
    assert leaves and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)
    u = jr.normal(jr.key(1), (32, 4))
    grads = eqx.filter_grad(lambda c: jnp.mean(c(u) ** 2))(core)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
