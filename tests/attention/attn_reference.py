"""Float64 NumPy references for the attention tests: dense masks built by
explicit loops, softmax from the definition."""

import numpy as np


def np_attention(q, k, v, mask=None, scale=None, drop=None):
    """softmax(scale q kᵀ, masked) v in float64; rows with no allowed key are 0.
    `drop`: optional `(Lq, Lk)` factors applied to the normalized weights (dropout:
    the keep mask over `1 − rate`)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ k.T
    out = np.zeros((q.shape[0], v.shape[1]))
    for i in range(q.shape[0]):
        allowed = np.ones(k.shape[0], bool) if mask is None else np.asarray(mask[i], bool)
        if not allowed.any():
            continue
        row = s[i, allowed]
        w = np.exp(row - row.max())
        w = w / w.sum()
        if drop is not None:
            w = w * np.asarray(drop[i], np.float64)[allowed]
        out[i] = w @ v[allowed]
    return out


def pattern_mask(L, rule):
    """Dense boolean mask from a rule(i, j) -> bool, by explicit loops."""
    return np.array([[bool(rule(i, j)) for j in range(L)] for i in range(L)])


def heads(module, x):
    """Per-head q, k, v (float64) from a module's `proj`."""
    x = np.asarray(x, np.float64)
    p = module.proj
    h = p.num_heads

    def lin(layer):
        y = x @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        return y.reshape(x.shape[0], h, -1).transpose(1, 0, 2)

    return lin(p.query), lin(p.key), lin(p.value)


def out(module, o):
    """Merge heads `(h, L, dh)` and apply the module's output map (float64)."""
    y = o.transpose(1, 0, 2).reshape(o.shape[1], -1)
    W = np.asarray(module.proj.output.weight, np.float64)
    return y @ W.T + np.asarray(module.proj.output.bias, np.float64)


def np_mha(module, x, mask=None):
    """Vanilla multi-head attention with the module's projections and a dense mask."""
    q, k, v = heads(module, x)
    o = np.stack([np_attention(q[i], k[i], v[i], mask) for i in range(q.shape[0])])
    return out(module, o)


def combined_mask(L, rule, key_mask=None, causal=False):
    def full(i, j):
        ok = rule(i, j)
        if causal:
            ok = ok and j <= i
        if key_mask is not None:
            ok = ok and bool(key_mask[j])
        return ok

    return pattern_mask(L, full)
