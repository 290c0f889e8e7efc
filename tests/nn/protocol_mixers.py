"""Every mixer seqkit has, as small factories for the protocol tests.

Each entry: `(id, factory(d_model, causal, key) -> mixer, directions)`, where
`directions` names the forms the mixer has (`"causal"`, `"bidirectional"`).
Block sizes are 4 (or divide 4), so sequences of 8 real positions padded to 12
keep every block either real or padding.
"""

import jax.random as jr

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.ssm as ss

BOTH = ("causal", "bidirectional")
MAX_LEN = 16


def _ssm(core_cls, **opts):
    def make(d, causal, key):
        k1, k2 = jr.split(key)
        return snn.SSMLayer(core_cls(d, bidirectional=not causal, key=k1, **opts), key=k2)

    return make


def _attn(cls, **opts):
    def make(d, causal, key):
        return cls(d, 2, causal=causal, key=key, **opts)

    return make


MIXERS = [
    ("s4", _ssm(ss.S4, state_size=8, l_max=MAX_LEN), BOTH),
    ("s4d", _ssm(ss.S4D, state_size=8), BOTH),
    ("dss", _ssm(ss.DSS, state_size=8), BOTH),
    ("dss-softmax", _ssm(ss.DSS, state_size=8, variant="softmax"), BOTH),
    ("ema", _ssm(ss.EMA, ndim=4), BOTH),
    ("s5", _ssm(ss.S5, state_size=8, blocks=2), BOTH),
    ("mha", _attn(sa.MultiHeadAttention, chunk_size=4), BOTH),
    ("local-block", _attn(sa.LocalAttention, window_size=4), BOTH),
    ("local-sliding", _attn(sa.LocalAttention, window_size=3, mode="sliding"), BOTH),
    ("sparse-strided", _attn(sa.SparseAttention, pattern="strided", stride=4), BOTH),
    ("sparse-fixed", _attn(sa.SparseAttention, pattern="fixed", stride=4, summary=1), BOTH),
    ("longformer", _attn(sa.Longformer, window_size=4, num_global=1), BOTH),
    ("bigbird", _attn(sa.BigBird, block_size=4, num_random=1, num_global=1), BOTH),
    ("linformer", _attn(sa.Linformer, proj_dim=4, max_len=MAX_LEN), ("bidirectional",)),
    ("linear", _attn(sa.LinearAttention), BOTH),
    ("performer", _attn(sa.Performer, num_features=8), BOTH),
    ("kernelized", _attn(sa.KernelizedAttention, num_features=8), BOTH),
    ("synth-dense", _attn(sa.Synthesizer, max_len=MAX_LEN), BOTH),
    ("synth-random", _attn(sa.Synthesizer, max_len=MAX_LEN, mode="random"), BOTH),
    ("sinkhorn", _attn(sa.SinkhornAttention, block_size=4), BOTH),
    ("reformer", _attn(sa.ReformerAttention, chunk_size=4), ("bidirectional",)),
    ("luna", _attn(sa.LunaAttention, packed_len=4), ("bidirectional",)),
    ("longshort", _attn(sa.LongShortAttention, window_size=4, rank=2), BOTH),
    ("contextpool", _attn(sa.ContextPool, max_support=3), BOTH),
    (
        "gss",
        lambda d, causal, key: snn.GSS(d, ssm_dim=4, expansion=2, state_size=8, causal=causal, key=key),
        BOTH,
    ),
    (
        "spade",
        lambda d, causal, key: sa.SpadeConfig(num_heads=2, window_size=4, state_size=8, causal=causal).build(
            d, max_length=MAX_LEN, key=key
        ),
        BOTH,
    ),
    (
        "block-recurrent",
        lambda d, causal, key: snn.BlockRecurrent(d, 2, block_size=4, num_state=3, causal=causal, key=key),
        ("causal",),
    ),
    (
        "mega",
        lambda d, causal, key: snn.Mega(
            d, z_dim=4, v_dim=8, ema_ndim=2, chunk_size=4, causal=causal, key=key
        ),
        BOTH,
    ),
]


def cases():
    """`(id, factory, causal)` for every mixer and each of its forms."""
    return [(f"{name}-{form}", make, form == "causal") for name, make, forms in MIXERS for form in forms]
