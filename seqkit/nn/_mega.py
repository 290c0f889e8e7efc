"""Mega: moving-average equipped gated attention, and its chunked (linear) form."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from seqkit._checks import check_mask, check_sequence
from seqkit.ssm import EMA

from ._normalized_ffn import NormalizedFFN

_ATTENTIONS = ("softmax", "laplace", "relu2")
_POSITIONS = ("simple", "rotary")

# Laplace attention function: the Gaussian CDF with μ = √½ and σ = √(1/4π),
# chosen so that it approximates relu² near the origin (Mega, §3.4 and App.).
_LAPLACE_MU = math.sqrt(0.5)
_LAPLACE_SIGMA = math.sqrt(1.0 / (4.0 * math.pi))


def laplace(x: Array) -> Array:
    """`f(x) = ½ [1 + erf((x − μ) / (σ √2))]`, `μ = √½`, `σ = √(1/4π)`."""
    return 0.5 * (1.0 + lax.erf((x - _LAPLACE_MU) / (_LAPLACE_SIGMA * math.sqrt(2.0))))


def simple_relative_bias(rel: Float[Array, " P"], span: int) -> Float[Array, "span span"]:
    """A learned bias per offset: `b[i, j] = rel[P_max − 1 + (j − i)]`.

    **Arguments:** `rel`, `(2·P_max − 1,)` biases for offsets `−(P_max−1)..P_max−1`;
    `span`, the attention span (`<= P_max`).

    **Returns:** the `(span, span)` Toeplitz bias.
    """
    max_length = (rel.shape[0] + 1) // 2
    if span > max_length:
        raise ValueError(f"simple relative bias covers spans up to {max_length}, got {span}")
    offsets = jnp.arange(span)[None, :] - jnp.arange(span)[:, None]
    return rel[max_length - 1 + offsets]


def _rotate(x: Float[Array, " z"], span: int) -> Float[Array, "span z"]:
    half = x.shape[0] // 2
    freqs = 10000.0 ** (-jnp.arange(half, dtype=x.dtype) / half)
    angle = jnp.arange(span, dtype=x.dtype)[:, None] * freqs[None, :]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    x1, x2 = x[None, :half], x[None, half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rotary_relative_bias(
    a: Float[Array, " z"], b: Float[Array, " z"], span: int
) -> Float[Array, "span span"]:
    """A rotary relative bias: `b[i, j] = ⟨R_i a, R_j b⟩` with `R_p` the rotary
    rotation at position `p` (frequencies `10000^{−k/(z/2)}`), which depends on
    `j − i` only, so it needs no maximum length.

    **Returns:** the `(span, span)` bias.
    """
    return _rotate(a, span) @ _rotate(b, span).T


def mega_attention(
    q: Float[Array, "L z"],
    k: Float[Array, "L z"],
    v: Float[Array, "L v"],
    bias: Float[Array, "c c"],
    mask: Bool[Array, " L"] | None = None,
    *,
    attention: str = "softmax",
    causal: bool = False,
) -> Float[Array, "L v"]:
    """Single-head attention within chunks of `c = bias.shape[0]` positions.

    The sequence is cut into consecutive chunks of `c` (the last one padded);
    position `i` attends to the positions `j` of its own chunk that are real
    (`mask`) and, if `causal`, not after `i`:

    - `"softmax"`: `O = softmax(Q Kᵀ / √z + b_rel) V`;
    - `"laplace"`, `"relu2"`: `O = f(Q Kᵀ / n_i + b_rel) V`, with `f` elementwise
      (`laplace`, or `relu(·)²`) and `n_i` the number of keys query `i` may see.

    `b_rel[i, j]` is the bias indexed by positions inside the chunk. With
    `c = L` this is ordinary (unchunked) attention, costing `O(L²)`; with a
    fixed `c` it costs `O(L c)` time and memory. A query with no visible key
    gets a zero output.

    **Arguments:**

    - `q`, `k`: `(L, z)` queries and keys; `v`: `(L, v)` values.
    - `bias`: `(c, c)` relative position bias; its size sets the chunk size.
    - `mask`: optional bool `(L,)`, True for real tokens.
    - `attention`: `"softmax"`, `"laplace"` or `"relu2"`.
    - `causal`: forbid attending to later positions.

    **Returns:** `(L, v)`.
    """
    if attention not in _ATTENTIONS:
        raise ValueError(f"attention must be one of {_ATTENTIONS}, got {attention!r}")
    L, z = q.shape
    c = bias.shape[0]
    n = -(-L // c)
    pad = n * c - L
    keep = jnp.ones((L,), jnp.bool_) if mask is None else mask
    if pad:
        q, k, v = (jnp.pad(a, ((0, pad), (0, 0))) for a in (q, k, v))
        keep = jnp.pad(keep, (0, pad))
    qc, kc, vc = (a.reshape(n, c, a.shape[-1]) for a in (q, k, v))
    allowed = jnp.broadcast_to(keep.reshape(n, 1, c), (n, c, c))
    if causal:
        allowed = allowed & jnp.tril(jnp.ones((c, c), jnp.bool_))[None]
    scores = jnp.einsum("nqz,nkz->nqk", qc, kc)
    if attention == "softmax":
        logits = scores / math.sqrt(z) + bias[None]
        top = jnp.max(jnp.where(allowed, logits, -jnp.inf), axis=-1, keepdims=True)
        top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top)))
        e = jnp.where(allowed, jnp.exp(jnp.where(allowed, logits - top, 0.0)), 0.0)
        total = jnp.sum(e, axis=-1, keepdims=True)
        weights = e / jnp.where(total > 0, total, jnp.ones_like(total))
    else:
        count = jnp.sum(allowed, axis=-1, keepdims=True).astype(q.dtype)
        logits = scores / jnp.maximum(count, 1.0) + bias[None]
        f = laplace(logits) if attention == "laplace" else jnp.square(jax.nn.relu(logits))
        weights = jnp.where(allowed, f, 0.0)
    out = jnp.einsum("nqk,nkv->nqv", weights, vc)
    return out.reshape(n * c, -1)[:L]


class Mega(eqx.Module):
    """A Mega block: moving-average equipped gated attention (SPEC §1.5)
    followed by Mega's normalized feed-forward block.

    With `X` the block input and `X_n = LN(X)` (pre-norm; post-norm skips it):

    - `X' = EMA(X_n)`, a multi-dimensional damped EMA including its `ω ⊙ x`
      term (bidirectional unless `causal`),
    - `Z = SiLU(X' W_z + b_z)`, `Q = κ_q ⊙ Z + μ_q`, `K = κ_k ⊙ Z + μ_k`,
    - `V = SiLU(X_n W_v + b_v)`,
    - `O = f(Q Kᵀ / scale + b_rel) V` (see [`seqkit.nn.mega_attention`][]),
    - `γ = SiLU(X' W_γ + b_γ)`, `φ = sigmoid(X' W_φ + b_φ)`,
    - `Ĥ = SiLU(X' W_h + (γ ⊙ O) U_h + b_h)`,
    - `Y = φ ⊙ Ĥ + (1 − φ) ⊙ X` (then `LN` if post-norm),
    - `out = NormalizedFFN(Y)`.

    `chunk_size=c` gives Mega-chunk: attention only within consecutive chunks
    of `c` positions while the EMA still runs over the whole sequence, so time
    and memory grow linearly with `L`. With `c >= L` it is the unchunked layer.

    The block carries its own residual paths, so stack it directly. One
    example at a time: `(L, d_model)` in and out; batch with `jax.vmap`.

    ```python
    block = seqkit.nn.Mega(128, z_dim=64, v_dim=256, chunk_size=128,
                           relative_position="rotary", key=jax.random.key(0))
    y = block(x, mask=mask, key=dropout_key)  # x: (L, 128), mask: (L,) bool
    ```

    Ma, Zhou, Kong, He, Gui, Neubig, May and Zettlemoyer, "Mega: Moving Average
    Equipped Gated Attention", ICLR 2023.
    """

    ema: EMA
    norm: eqx.nn.LayerNorm
    proj_v: eqx.nn.Linear
    proj_mx: eqx.nn.Linear
    qk_scale: Float[Array, "2 z"]
    qk_offset: Float[Array, "2 z"]
    proj_h: eqx.nn.Linear
    rel_bias: Float[Array, "..."]
    ffn: NormalizedFFN
    dropout: eqx.nn.Dropout
    d_model: int = eqx.field(static=True)
    z_dim: int = eqx.field(static=True)
    v_dim: int = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)
    attention: str = eqx.field(static=True)
    relative_position: str = eqx.field(static=True)
    max_length: int | None = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    prenorm: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        *,
        z_dim: int,
        v_dim: int,
        ema_ndim: int = 16,
        chunk_size: int | None = None,
        attention: str = "softmax",
        relative_position: str = "simple",
        max_length: int | None = None,
        causal: bool = False,
        prenorm: bool = True,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: model width `d`.
        - `z_dim`: width of the shared representation `Z` (queries and keys).
        - `v_dim`: width of the values `V` (the paper uses `2d`).
        - `ema_ndim`: EMA expansion dimensions per channel.
        - `chunk_size`: attend within chunks of this many positions (Mega-chunk);
          `None` attends over the whole sequence.
        - `attention`: `"softmax"`, `"laplace"` or `"relu2"`.
        - `relative_position`: `"simple"` (a learned bias per offset; needs
          `max_length`) or `"rotary"` (a rotary bias, any length).
        - `max_length`: the longest attention span allowed (the sequence length,
          or `chunk_size` when chunked). Required for `"simple"` without
          chunks; defaults to `chunk_size` when chunked. Longer inputs raise.
        - `causal`: causal EMA and attention (for language modelling).
        - `prenorm`: LayerNorm before each sublayer (default) or after it.
        - `ffn_dim`: hidden width of the feed-forward block (default `2d`).
        - `dropout`: dropout rate on `Ĥ` and inside the feed-forward block.
        - `key`: PRNG key.
        """
        for name, value in (
            ("d_model", d_model),
            ("z_dim", z_dim),
            ("v_dim", v_dim),
            ("ema_ndim", ema_ndim),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if attention not in _ATTENTIONS:
            raise ValueError(f"attention must be one of {_ATTENTIONS}, got {attention!r}")
        if relative_position not in _POSITIONS:
            raise ValueError(f"relative_position must be one of {_POSITIONS}, got {relative_position!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be None or an integer >= 1, got {chunk_size!r}")
        if max_length is None and chunk_size is not None:
            max_length = chunk_size
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be None or an integer >= 1, got {max_length!r}")
        if relative_position == "simple" and max_length is None:
            raise ValueError(
                "relative_position='simple' learns one bias per offset and needs a maximum "
                "attention span: pass max_length (or chunk_size)"
            )
        if relative_position == "rotary" and z_dim % 2:
            raise ValueError(f"relative_position='rotary' needs an even z_dim, got {z_dim}")
        ffn_dim = 2 * d_model if ffn_dim is None else ffn_dim
        ekey, vkey, mkey, skey, hkey, rkey, fkey = jr.split(key, 7)
        self.ema = EMA(d_model, ema_ndim, bidirectional=not causal, key=ekey)
        self.norm = eqx.nn.LayerNorm(d_model)
        self.proj_v = eqx.nn.Linear(d_model, v_dim, key=vkey)
        # One projection of X' for Z, γ, φ and the X' W_h + b_h term, in that order.
        self.proj_mx = eqx.nn.Linear(d_model, z_dim + v_dim + 2 * d_model, key=mkey)
        self.qk_scale = 1.0 + 0.1 * jr.normal(skey, (2, z_dim))
        self.qk_offset = jnp.zeros((2, z_dim))
        self.proj_h = eqx.nn.Linear(v_dim, d_model, use_bias=False, key=hkey)
        if relative_position == "simple":
            assert max_length is not None
            self.rel_bias = 0.02 * jr.normal(rkey, (2 * max_length - 1,))
        else:
            self.rel_bias = 0.02 * jr.normal(rkey, (2, z_dim))
        self.ffn = NormalizedFFN(d_model, ffn_dim, prenorm=prenorm, dropout=dropout, key=fkey)
        self.dropout = eqx.nn.Dropout(dropout)
        self.d_model = d_model
        self.z_dim = z_dim
        self.v_dim = v_dim
        self.chunk_size = chunk_size
        self.attention = attention
        self.relative_position = relative_position
        self.max_length = max_length
        self.causal = causal
        self.prenorm = prenorm

    def _bias(self, span: int) -> Float[Array, "span span"]:
        if self.relative_position == "simple":
            return simple_relative_bias(self.rel_bias, span)
        return rotary_relative_bias(self.rel_bias[0], self.rel_bias[1], span)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:**

        - `x`: `(L, d_model)`, one example.
        - `mask`: optional bool `(L,)` padding mask, True for real tokens.
          Padded positions enter the EMA as zeros and are never attended to, so
          they do not change the outputs at real positions.
        - `key`: PRNG key for dropout (needed only when dropout is active).

        **Returns:** `(L, d_model)`.
        """
        x = check_sequence(x, self.d_model)
        L = x.shape[0]
        mask = check_mask(mask, L)
        span = L if self.chunk_size is None else min(self.chunk_size, L)
        if self.max_length is not None and span > self.max_length:
            raise ValueError(
                f"attention span {span} (sequence length {L}, chunk_size {self.chunk_size}) "
                f"exceeds max_length={self.max_length}"
            )
        x = x.astype(self.qk_scale.dtype)
        xn = jax.vmap(self.norm)(x) if self.prenorm else x
        xe = xn if mask is None else jnp.where(mask[:, None], xn, jnp.zeros_like(xn))
        xp = self.ema(xe)  # X', including the EMA's ω ⊙ x term
        v = jax.nn.silu(jax.vmap(self.proj_v)(xn))
        mx = jax.vmap(self.proj_mx)(xp)
        zd, vd = self.z_dim, self.v_dim
        z = jax.nn.silu(mx[:, :zd])
        gamma = jax.nn.silu(mx[:, zd : zd + vd])
        phi = jax.nn.sigmoid(mx[:, zd + vd : zd + vd + self.d_model])
        h_in = mx[:, zd + vd + self.d_model :]
        q = z * self.qk_scale[0] + self.qk_offset[0]
        k = z * self.qk_scale[1] + self.qk_offset[1]
        o = mega_attention(q, k, v, self._bias(span), mask, attention=self.attention, causal=self.causal)
        h = jax.nn.silu(h_in + jax.vmap(self.proj_h)(gamma * o))
        dkey, fkey = (None, None) if key is None else jr.split(key)
        h = self.dropout(h, key=dkey)
        y = phi * h + (1.0 - phi) * x
        if not self.prenorm:
            y = jax.vmap(self.norm)(y)
        fkeys = None if fkey is None else jr.split(fkey, L)
        return jax.vmap(lambda y_t, k_t: self.ffn(y_t, key=k_t))(y, fkeys)
