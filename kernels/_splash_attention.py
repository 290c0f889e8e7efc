"""Longformer attention on TPU through JAX's Pallas splash-attention kernel.

Splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`, shipped with
JAX) is a block-sparse flash attention for TPU (Mosaic): a static mask, given as
mask objects, is cut into tiles of 128 positions on the host; the tiles with no
allowed pair are skipped, and the kernel walks the rest with an online softmax
(Dao et al., "FlashAttention", 2022), forward and backward (a `custom_vjp` with
its own dq and dkv kernels). Here its mask is the Longformer pattern (Beltagy et
al., "Longformer: The Long-Document Transformer", 2020): a band of keys around
each query, or one of the first `num_global` keys, computed inside the kernel from
the positions (no `L × L` array exists), and padding is kept apart with splash's
segment ids.

BigBird (Zaheer et al., "Big Bird: Transformers for Longer Sequences", 2020) does
not go through splash: its random key blocks are drawn inside `jit` from a
per-layer seed, so the block pattern is a traced array, while splash processes
its mask into the kernel's block tables with NumPy while tracing and needs it
static. Splash's only traced alternative is a dense `(heads, L, L)` boolean mask,
which costs the `O(L²)` memory that block-sparse attention is meant to avoid; so
BigBird on TPU runs seqkit's own Mosaic kernel, `block_sparse_attention_pallas_tpu`,
whose tile lists are prefetched scalars. That kernel also takes Longformer's band
and global keys, and serves Longformer calls with attention dropout, which splash
does not have (`seqkit.attention._sparse.longformer_tpu_unsupported` holds the rule).
Tested in interpret mode against a dense-mask float64 reference, and lowered for
TPU by `jax.export`.
"""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from seqkit._typing import ArrayLike

# Splash lives in JAX's experimental tree and the mask below subclasses one of its
# private classes: a JAX without them must still import seqkit, so their absence
# is only a reason `splash_unsupported` gives (and "auto" then runs XLA).
try:
    from jax.experimental.pallas.ops.tpu import splash_attention as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

    _ComputableMask = splash_mask._ComputableMask
    _MISSING = None
except (ImportError, AttributeError) as error:  # pragma: no cover - depends on the JAX release
    splash = splash_mask = None
    _ComputableMask = object
    _MISSING = f"this JAX ({jax.__version__}) has no usable splash attention ({error})"

_DTYPES = ("bfloat16", "float32")
# Splash cuts the sequence into tiles of 128 positions (the lane width: its key
# tiles and its segment-id tiles must be lane multiples, and the length a tile
# multiple); head dimensions are padded with zeros to 128 lanes, as in the
# layouts splash is written for (zeros change no score and no output).
_LANES = 128
_BLOCK = 128


def splash_unsupported(dtype, dropout: bool, L: int, platform: str) -> str | None:
    """Why splash attention cannot serve a Longformer call on `platform` (`"cpu"`
    meaning interpret mode, which runs there), or `None`. The dispatcher's
    `unsupported` for `longformer_attention` on TPU.

    - TPU (Mosaic) and interpret mode only; GPU calls take the block-sparse Pallas
      kernel `seqkit.kernels.block_sparse_attention_pallas`.
    - float32 or bfloat16 (splash computes scores and its softmax in float32).
    - No attention dropout (splash has no random-number stream).
    - Any length `L >= 1`: splash wants a multiple of its 128-position tiles, so
      the sequence is padded to one with positions in a segment of their own.

    BigBird is not served: see the module docstring (its random blocks are traced,
    splash's masks static; it has `block_sparse_attention_pallas_tpu`).
    """
    name = jnp.dtype(dtype).name
    if _MISSING is not None:
        return _MISSING
    if platform not in ("cpu", "tpu"):
        return f"splash attention is written for TPU (Mosaic) and interpret mode, not {platform}"
    if name not in _DTYPES:
        return f"dtype {name} is not supported by splash attention (supported: {', '.join(_DTYPES)})"
    if dropout:
        return "attention dropout is not implemented in splash attention (use impl='xla')"
    if L < 1:
        return f"expected a sequence length >= 1, got {L}"
    return None


class _LongformerMask(_ComputableMask):
    """Query `i` sees key `j` when `i − lo <= j <= i + hi` or `j < g` (and `j <= i`
    when causal). Computed from the positions, on the host while splash builds its
    block tables and inside the kernel for the partial tiles (so only operators
    that NumPy and JAX share appear)."""

    def __init__(self, shape: tuple[int, int], lo: int, hi: int, g: int, causal: bool):
        self.params = (shape, lo, hi, g, causal)

        def allowed(q_ids, kv_ids):
            band = (q_ids - lo <= kv_ids) & (kv_ids <= q_ids + hi)
            glob = kv_ids < g
            if causal:
                glob = glob & (kv_ids <= q_ids)
            return band | glob

        super().__init__(shape=shape, mask_function=allowed)

    def __eq__(self, other: object):
        return isinstance(other, _LongformerMask) and self.params == other.params

    def __hash__(self):
        return hash((_LongformerMask, self.params))


@functools.lru_cache(maxsize=32)
def _kernel(heads: int, Lp: int, lo: int, hi: int, g: int, causal: bool, interpret: Any):
    """The splash kernel for one static pattern (building its block tables is NumPy
    work over every tile pair, so it is kept; the tables are concrete arrays)."""
    mask = splash_mask.MultiHeadMask([_LongformerMask((Lp, Lp), lo, hi, g, causal)] * heads)
    with jax.ensure_compile_time_eval():
        return splash.make_splash_mha(
            mask,
            block_sizes=splash.BlockSizes.get_default(),
            head_shards=1,
            q_seq_shards=1,
            interpret=interpret,
        )


def longformer_attention_splash(
    q: Float[ArrayLike, "*heads L dk"],
    k: Float[ArrayLike, "*heads L dk"],
    v: Float[ArrayLike, "*heads L dv"],
    key_mask: Bool[ArrayLike, " L"] | None = None,
    *,
    window_lo: int,
    window_hi: int,
    num_global: int,
    causal: bool = False,
    interpret: bool | Any = False,
) -> Float[Array, "*heads L dv"]:
    """Longformer's local-plus-global attention through splash attention.

    `o_i = Σ_j softmax_j(q_i · k_j / sqrt(dk)) v_j` over the keys `j` with
    `i − window_lo <= j <= i + window_hi` or `j < num_global` (the global keys;
    `j <= i` too when `causal`), and `key_mask[j]`. Every query is computed by that
    rule, the first `num_global` too: Longformer's global rows (full attention) are
    the caller's (`seqkit.attention.longformer_attention` overwrites them).

    The sequence is padded to a multiple of 128 positions and head dimensions to a
    multiple of 128 lanes with zeros. Keys with `key_mask[j] = False` and the added
    positions form segment 1, real keys and every query segment 0 (splash's
    `SegmentIds`: a query sees only keys of its own segment), so no query sees
    padding, a query at a masked position included (as in the XLA path), and a
    query with no real key in reach outputs 0.

    Differentiable through splash's `custom_vjp` (its dq and dkv kernels); batches
    under `jax.vmap`. float32 and bfloat16 (see `splash_unsupported`); the
    kernel's block tables are built on the host once per pattern and kept.

    **Arguments:**

    - `q`, `k`, `v`: `(L, dk)`, `(L, dk)`, `(L, dv)` for one head, or with a leading
      head axis `(H, L, ·)` (heads sharing `key_mask`); one dtype.
    - `key_mask`: optional `(L,)` boolean, `True` = real token.
    - `window_lo`, `window_hi`: how far back and ahead a query sees (`>= 0`).
    - `num_global`: the first `num_global` keys are seen by every query.
    - `causal`: the global keys only up to the query (`window_hi = 0` makes the
      band causal too).
    - `interpret`: run in Pallas's interpret mode (on CPU).

    **Returns:** the shape of `v` (`(L, dv)` or `(H, L, dv)`), in the inputs' dtype.
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    if q.ndim not in (2, 3) or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            "expected q, k of one shape (L, dk) or (H, L, dk) and v of shape (…, L, dv), "
            f"got {q.shape}, {k.shape}, {v.shape}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not jnp.issubdtype(q.dtype, jnp.floating):
        raise ValueError(f"expected q, k, v of one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, w in (("window_lo", window_lo), ("window_hi", window_hi), ("num_global", num_global)):
        if not isinstance(w, int) or w < 0:
            raise ValueError(f"expected an integer {name} >= 0, got {w!r}")
    single = q.ndim == 2
    if single:
        q, k, v = q[None], k[None], v[None]
    H, L, dk = q.shape
    dv = v.shape[-1]
    if key_mask is None:
        key_mask = jnp.ones((L,), bool)
    key_mask = jnp.asarray(key_mask)
    if key_mask.shape != (L,):
        raise ValueError(f"expected key_mask of shape {(L,)}, got {key_mask.shape}")
    Lp = -(-L // _BLOCK) * _BLOCK

    def pad(x):
        d = x.shape[-1]
        return jnp.pad(x, ((0, 0), (0, Lp - L), (0, -(-d // _LANES) * _LANES - d)))

    scale = jnp.asarray(1.0 / math.sqrt(dk), q.dtype)  # splash does not scale its scores
    # every query in segment 0 sees the real keys (segment 0) only, never padding (1)
    kv_segments = jnp.where(jnp.pad(key_mask, (0, Lp - L)), 0, 1).astype(jnp.int32)
    q_segments = jnp.zeros_like(kv_segments)
    g = min(num_global, L)
    kernel = _kernel(H, Lp, window_lo, window_hi, g, bool(causal), interpret)
    o = kernel(pad(q * scale), pad(k), pad(v), segment_ids=splash.SegmentIds(q=q_segments, kv=kv_segments))
    o = o[:, :L, :dv]
    o = jnp.where(_sees_a_key(key_mask, window_lo, window_hi, g, causal)[:, None], o, jnp.zeros_like(o))
    return o[0] if single else o


def _sees_a_key(key_mask, window_lo: int, window_hi: int, num_global: int, causal: bool):
    """`(L,)`: whether query `i` has a real key in its band or among the global keys
    (splash gives rows without one an average of masked values; they are 0)."""
    L = key_mask.shape[0]
    before = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(key_mask.astype(jnp.int32))])
    i = jnp.arange(L)
    band = before[jnp.minimum(i + window_hi + 1, L)] > before[jnp.maximum(i - window_lo, 0)]
    glob = before[jnp.minimum(i + 1, num_global) if causal else num_global] > 0
    return band | glob
