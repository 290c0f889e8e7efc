"""Every attention variant with small options for tests (name, class, options, causal?)."""

import seqkit.attention as sa

# (id, class, small options, has a causal form)
VARIANTS = [
    ("mha", sa.MultiHeadAttention, dict(chunk_size=8), True),
    ("mha-dense", sa.MultiHeadAttention, dict(impl="dense"), True),
    ("local-block", sa.LocalAttention, dict(window_size=6), True),
    ("local-sliding", sa.LocalAttention, dict(window_size=5, mode="sliding"), True),
    ("sparse-strided", sa.SparseAttention, dict(pattern="strided", stride=5), True),
    ("sparse-fixed", sa.SparseAttention, dict(pattern="fixed", stride=6, summary=2), True),
    ("longformer", sa.Longformer, dict(window_size=6, num_global=2), True),
    ("bigbird", sa.BigBird, dict(block_size=4, num_random=1, num_global=1), True),
    ("linformer", sa.Linformer, dict(proj_dim=8, max_len=32), False),
    ("linear", sa.LinearAttention, dict(), True),
    ("performer", sa.Performer, dict(num_features=16), True),
    ("kernelized", sa.KernelizedAttention, dict(num_features=16), True),
    ("synth-dense", sa.Synthesizer, dict(max_len=32), True),
    ("synth-dense-fact", sa.Synthesizer, dict(max_len=32, factorized=True, factor=4), True),
    ("synth-random", sa.Synthesizer, dict(max_len=32, mode="random"), True),
    ("synth-random-fact", sa.Synthesizer, dict(max_len=32, mode="random", factorized=True), True),
    ("sinkhorn", sa.SinkhornAttention, dict(block_size=4), True),
    ("reformer", sa.ReformerAttention, dict(chunk_size=4), False),
    ("luna", sa.LunaAttention, dict(packed_len=4), False),
    ("longshort", sa.LongShortAttention, dict(window_size=6, rank=4), True),
    ("contextpool", sa.ContextPool, dict(max_support=3), True),
]

IDS = [v[0] for v in VARIANTS]
# near-duplicates of another entry: their property tests run in the slow tier only
SLOW_IDS = {"mha-dense", "synth-dense-fact", "synth-random"}


def params(variants):
    """pytest params with ids, the near-duplicates marked slow."""
    import pytest

    return [pytest.param(*v, id=v[0], marks=pytest.mark.slow if v[0] in SLOW_IDS else ()) for v in variants]


CAUSAL = [v for v in VARIANTS if v[3]]
NON_CAUSAL = [v for v in VARIANTS if not v[3]]


def forms(variants):
    """pytest params of every (variant, causal) form: the bidirectional one, and
    the causal one where it exists (ids `name` and `name-causal`)."""
    import pytest

    out = []
    for v in variants:
        for causal in (False, True) if v[3] else (False,):
            marks = pytest.mark.slow if v[0] in SLOW_IDS else ()
            out.append(pytest.param(*v[:3], causal, id=v[0] + ("-causal" if causal else ""), marks=marks))
    return out
