"""Construction of every attention variant: `eqx.filter_vmap` builds a stack of
layers (one per key) whose members equal the layers built alone, and the random
state a layer keeps is raw key bits (integer arrays), never trained."""

import io

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from attn_variants import VARIANTS, params

import seqkit.attention as sa
from helpers import assert_close, tree_allclose

L, D, H = 11, 16, 2


@pytest.mark.parametrize("name,cls,opts,_", params(VARIANTS))
def test_vmapped_construction_matches_each_key(getkey, name, cls, opts, _):
    keys = jr.split(getkey(), 3)
    stacked = eqx.filter_vmap(lambda k: cls(D, H, key=k, **opts))(keys)
    x = jr.normal(getkey(), (L, D))
    call = eqx.filter_jit(lambda m, x: m(x))  # members and lone layers share one compilation
    for i in range(3):
        alone = cls(D, H, key=keys[i], **opts)
        member = jax.tree.map(lambda a, i=i: a[i] if eqx.is_array(a) else a, stacked)
        assert tree_allclose(member, alone, rtol=1e-6, atol=1e-7)
        assert_close(call(member, x), call(alone, x), rtol=1e-6)


RANDOM = [
    (sa.BigBird, dict(block_size=4, num_random=1, num_global=1)),
    (sa.Performer, dict(num_features=8)),
    (sa.KernelizedAttention, dict(num_features=8)),
    (sa.ReformerAttention, dict(chunk_size=4)),
]


@pytest.mark.parametrize("cls,opts", RANDOM, ids=lambda p: getattr(p, "__name__", ""))
def test_random_state_is_raw_key_bits(getkey, cls, opts):
    m = cls(D, H, key=getkey(), **opts)
    assert m.seed.dtype == jnp.uint32
    arrays = jax.tree.leaves(eqx.filter(m, eqx.is_array))
    assert not any(jnp.issubdtype(a.dtype, jax.dtypes.prng_key) for a in arrays)
    # not a trainable (inexact) leaf: optimizers and weight decay never see it
    assert eqx.filter(m, eqx.is_inexact_array).seed is None
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, m)
    buf.seek(0)
    other = cls(D, H, key=getkey(), **opts)
    back = eqx.tree_deserialise_leaves(buf, other)
    assert bool(jnp.all(back.seed == m.seed))
