"""Mega: moving-average equipped gated attention, and its chunked (linear) form."""

import math
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from seqkit._checks import check_mask, check_sequence, dropout_rate, finite_padding
from seqkit._mixer import AbstractRecurrentMixer
from seqkit.ssm import EMA, SSMState

_ATTENTIONS = ("softmax", "laplace", "relu2")
_POSITIONS = ("simple", "rotary")

# Laplace attention function: the Gaussian CDF with μ = √½ and σ = √(1/4π),
# chosen so that it approximates relu² near the origin (Mega, §3.4 and App.).
_LAPLACE_MU = math.sqrt(0.5)
_LAPLACE_SIGMA = math.sqrt(1.0 / (4.0 * math.pi))


def laplace(x: Array) -> Array:
    """`f(x) = ½ [1 + erf((x − μ) / (σ √2))]`, `μ = √½`, `σ = √(1/4π)`."""
    return 0.5 * (1.0 + lax.erf((x - _LAPLACE_MU) / (_LAPLACE_SIGMA * math.sqrt(2.0))))


def _simple_bias(rel: Array, qpos: Array, kpos: Array) -> Array:
    """`b[i, j] = rel[P_max − 1 + (kpos_j − qpos_i)]`."""
    max_length = (rel.shape[0] + 1) // 2
    return rel[max_length - 1 + kpos[None, :] - qpos[:, None]]


def simple_relative_bias(rel: Float[Array, " P"], span: int) -> Float[Array, "span span"]:
    """A learned bias per offset: `b[i, j] = rel[P_max − 1 + (j − i)]`.

    **Arguments:** `rel`, `(2·P_max − 1,)` biases for offsets `−(P_max−1)..P_max−1`;
    `span`, the attention span (`<= P_max`).

    **Returns:** the `(span, span)` Toeplitz bias.
    """
    max_length = (rel.shape[0] + 1) // 2
    if span > max_length:
        raise ValueError(f"simple relative bias covers spans up to {max_length}, got {span}")
    pos = jnp.arange(span)
    return _simple_bias(rel, pos, pos)


def _rotate(x: Float[Array, " z"], positions: Int[Array, " P"]) -> Float[Array, "P z"]:
    """`R_p x` for each `p`: the pair `(x_k, x_{k+z/2})` turned by `p · 10000^{−k/(z/2)}`."""
    half = x.shape[0] // 2
    freqs = 10000.0 ** (-jnp.arange(half, dtype=x.dtype) / half)
    angle = positions.astype(x.dtype)[:, None] * freqs[None, :]
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
    pos = jnp.arange(span)
    return _rotate(a, pos) @ _rotate(b, pos).T


def _attention_weights(scores: Array, bias: Array, allowed: Array, attention: str) -> Array:
    """Attention weights over the last axis (keys) from the scores `Q Kᵀ` (already
    divided by `√z` for softmax, see `_scale_scores`), the bias, and the keys each
    query may see; `bias` and `allowed` broadcast against `scores`."""
    if attention == "softmax":
        logits = scores + bias
        top = jnp.max(jnp.where(allowed, logits, -jnp.inf), axis=-1, keepdims=True)
        top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top)))
        e = jnp.where(allowed, jnp.exp(jnp.where(allowed, logits - top, 0.0)), 0.0)
        total = jnp.sum(e, axis=-1, keepdims=True)
        return e / jnp.where(total > 0, total, jnp.ones_like(total))
    count = jnp.sum(allowed, axis=-1, keepdims=True).astype(scores.dtype)
    logits = scores / jnp.maximum(count, 1.0) + bias
    f = laplace(logits) if attention == "laplace" else jnp.square(jax.nn.relu(logits))
    return jnp.where(allowed, f, 0.0)


def _scale_scores(scores: Array, z: int, attention: str) -> Array:
    # softmax divides by √z; laplace and relu² divide by the number of visible keys.
    return scores / math.sqrt(z) if attention == "softmax" else scores


def mega_attention(
    q: Float[Array, "L z"],
    k: Float[Array, "L z"],
    v: Float[Array, "L v"],
    bias: Float[Array, "c c"],
    mask: Bool[Array, " L"] | None = None,
    *,
    attention: Literal["softmax", "laplace", "relu2"] = "softmax",
    causal: bool = False,
) -> Float[Array, "L v"]:
    """Single-head attention within chunks of `c = bias.shape[0]` positions.

    The sequence is cut into consecutive chunks of `c` (the last one padded);
    position `i` attends to the positions `j` of its own chunk that are real
    (`mask`) and, if `causal`, not after `i`:

    - `"softmax"`: `O = softmax(Q Kᵀ / √z + b_rel) V`;
    - `"laplace"`, `"relu2"`: `O = f(Q Kᵀ / n_i + b_rel) V`, with `f` elementwise
      (`laplace`, or `relu(·)²`) and `n_i` the number of keys query `i` may see.

    `b_rel[i mod c, j mod c]` is the bias indexed by positions inside the chunk.
    With `c >= L` this is ordinary (unchunked) attention, costing `O(L²)`; with a
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
    if q.ndim != 2 or k.shape != q.shape or v.ndim != 2 or v.shape[0] != q.shape[0]:
        raise ValueError(
            f"expected q and k of one shape (L, z) and v of shape (L, v), got q {q.shape}, "
            f"k {k.shape}, v {v.shape}"
        )
    if bias.ndim != 2 or bias.shape[0] != bias.shape[1] or bias.shape[0] < 1:
        raise ValueError(f"expected a square (c, c) relative position bias, c >= 1, got shape {bias.shape}")
    L, z = q.shape
    mask = check_mask(mask, L)
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
    scores = _scale_scores(jnp.einsum("nqz,nkz->nqk", qc, kc), z, attention)
    weights = _attention_weights(scores, bias[None], allowed, attention)
    out = jnp.einsum("nqk,nkv->nqv", weights, vc)
    return out.reshape(n * c, -1)[:L]


class MegaState(NamedTuple):
    """Recurrent state of a causal [`seqkit.nn.Mega`][].

    **Fields:**

    - `ema`: the EMA's [`seqkit.ssm.SSMState`][].
    - `keys`: `(C, z)` and `values`: `(C, v)`, the key/value cache of the current
      attention span, `C = chunk_size` (chunked) or the `L` given to `init_state`.
      Slot `p` holds position `p` of the span; slots after the current position
      are stale and never read.
    - `position`: the number of positions stepped so far (int32 scalar).
    """

    ema: SSMState
    keys: Array
    values: Array
    position: Array


class Mega(AbstractRecurrentMixer):
    """Mega's moving-average equipped gated attention, as a mixer.

    For the mixer's input `X ∈ R^{L×d}`:

    - `X' = EMA(X)`, a multi-dimensional damped EMA including its `ω ⊙ X` term
      (bidirectional unless `causal`),
    - `Z = SiLU(X' W_z + b_z)`, `Q = κ_q ⊙ Z + μ_q`, `K = κ_k ⊙ Z + μ_k`,
    - `V = SiLU(X W_v + b_v)`,
    - `O = f(Q Kᵀ / τ + b_rel) V`, with `f = softmax` and `τ = √z`, or `f` laplace
      or relu² and `τ` the number of keys a query sees (see [`seqkit.nn.mega_attention`][]),
    - `γ = SiLU(X' W_γ + b_γ)`, `φ = sigmoid(X' W_φ + b_φ)`,
    - `Ĥ = SiLU(X' W_h + (γ ⊙ O) U_h + b_h)`,
    - `mixer(X) = φ ⊙ (Ĥ − X)`,

    so that a residual sum gives Mega's gated residual,
    `X + mixer(X) = φ ⊙ Ĥ + (1 − φ) ⊙ X`.

    **In a block.** The Mega block (gated attention, then Mega's normalized
    feed-forward network) is a [`seqkit.nn.ResidualBlock`][] with a SiLU FFN,
    `ResidualBlock(Mega(...), d, ffn_mult=2, ffn_activation="silu", prenorm=...)`:

    - post-norm (`prenorm=False`), exactly the paper's block (up to where dropout
      acts, below):
      `Y = LN(φ ⊙ Ĥ + (1 − φ) ⊙ X)`, then `LN₂(Y + W₂ SiLU(W₁ Y + b₁) + b₂)`.
    - pre-norm (`prenorm=True`): with `X_n = LN(X)` the mixer's input (so `φ`,
      `Ĥ` are computed from `X_n`), `Y = X + φ ⊙ (Ĥ − X_n)`, then
      `Y + W₂ SiLU(W₁ LN₂(Y) + b₁) + b₂`. The residual stream `X` always passes
      through and the gate interpolates between `Ĥ` and the input the mixer saw.
      Mega's reference code gates the raw residual instead,
      `X + φ ⊙ (Ĥ − X)`; the two differ by `φ ⊙ (X − X_n)`.

    Dropout: the mixer's `dropout` acts on `X'` (before the projections that read
    it) and on `Ĥ` (`φ ⊙ (drop(Ĥ) − X)`), as in Mega's code; a block's `dropout`
    also drops elements of the whole update `mixer(X)`, and acts inside and after
    the FFN.

    Two options follow Mega's code where it departs from the paper's equations:
    `ema_silu=True` makes `X' = SiLU(EMA(X))` (the code's EMA layer ends with a
    SiLU), and `truncation=T` keeps the EMA kernel's first `T` taps (the code's
    LRA models truncate to 1024, Path-X to 4096; convolution mode only).

    `chunk_size=c` gives Mega-chunk: attention only within consecutive chunks
    of `c` positions while the EMA still runs over the whole sequence, so time
    and memory grow linearly with `L`. A padding `mask` zeroes padded inputs of
    the EMA and hides them from attention, so they reach no real output. Chunks
    count from position 0 of the input, padding included: padding after the real
    positions leaves the real outputs as without it, while padding before them
    moves the chunk boundaries and so changes which positions attend to each
    other.

    A causal Mega is also a recurrence: `init_state(L)` and `step` run the EMA
    one position at a time with a key/value cache for attention (the chunk, reset
    at chunk boundaries, or the whole sequence when unchunked), equal to
    `__call__`. One example at a time: `(L, d_model)` in and out; batch with
    `jax.vmap`.

    ```python
    mixer = Mega(128, z_dim=64, v_dim=256, chunk_size=128, relative_position="rotary", key=k1)
    block, state = eqx.nn.make_with_state(ResidualBlock)(
        mixer, 128, ffn_mult=2, ffn_activation="silu", key=k2)
    y, state = block(x, state, mask=mask, key=dropout_key)  # x: (L, 128), mask: (L,) bool
    ```

    Ma, Zhou, Kong, He, Gui, Neubig, May and Zettlemoyer, "Mega: Moving Average
    Equipped Gated Attention", ICLR 2023.
    """

    ema: EMA
    proj_v: eqx.nn.Linear
    proj_mx: eqx.nn.Linear
    qk_scale: Float[Array, "2 z"]
    qk_offset: Float[Array, "2 z"]
    proj_h: eqx.nn.Linear
    rel_bias: Float[Array, "..."]
    dropout: eqx.nn.Dropout
    d_model: int = eqx.field(static=True)
    z_dim: int = eqx.field(static=True)
    v_dim: int = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)
    attention: str = eqx.field(static=True)
    relative_position: str = eqx.field(static=True)
    max_length: int | None = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    ema_silu: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        *,
        z_dim: int,
        v_dim: int,
        ema_ndim: int = 16,
        chunk_size: int | None = None,
        attention: Literal["softmax", "laplace", "relu2"] = "softmax",
        relative_position: Literal["simple", "rotary"] = "simple",
        max_length: int | None = None,
        causal: bool = False,
        dropout: float = 0.0,
        ema_silu: bool = False,
        truncation: int | None = None,
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
          or `chunk_size` when chunked; at least `chunk_size`). Required for
          `"simple"` without chunks; defaults to `chunk_size` when chunked.
          Longer spans raise.
        - `causal`: causal EMA and attention (for language modelling); enables
          recurrent mode.
        - `dropout`: dropout rate on `X'` and on `Ĥ`.
        - `ema_silu`: `X' = SiLU(EMA(X))`, as Mega's code (the paper has no SiLU there).
        - `truncation`: keep only the EMA kernel's first `truncation` taps (`None`:
          all); a truncated EMA has no recurrent mode.
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
        if chunk_size is not None and max_length is not None and max_length < chunk_size:
            raise ValueError(
                f"max_length must be at least chunk_size={chunk_size} (a chunk is an attention span), "
                f"got {max_length}"
            )
        if relative_position == "simple" and max_length is None:
            raise ValueError(
                "relative_position='simple' learns one bias per offset and needs a maximum "
                "attention span: pass max_length (or chunk_size)"
            )
        if relative_position == "rotary" and z_dim % 2:
            raise ValueError(f"relative_position='rotary' needs an even z_dim, got {z_dim}")
        ekey, vkey, mkey, skey, hkey, rkey = jr.split(key, 6)
        self.ema = EMA(d_model, ema_ndim, bidirectional=not causal, truncation=truncation, key=ekey)
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
        self.dropout = eqx.nn.Dropout(dropout_rate(dropout))
        self.d_model = d_model
        self.z_dim = z_dim
        self.v_dim = v_dim
        self.chunk_size = chunk_size
        self.attention = attention
        self.relative_position = relative_position
        self.max_length = max_length
        self.causal = causal
        self.ema_silu = ema_silu

    def _bias(self, qpos: Int[Array, " P"], kpos: Int[Array, " C"]) -> Float[Array, "P C"]:
        """`b_rel` between query positions `qpos` and key positions `kpos` (inside a span)."""
        if self.relative_position == "simple":
            return _simple_bias(self.rel_bias, qpos, kpos)
        return _rotate(self.rel_bias[0], qpos) @ _rotate(self.rel_bias[1], kpos).T

    def _gates(self, xp: Float[Array, "*L d_model"]):
        """`Q, K, γ, φ` and `X' W_h + b_h` from the EMA output `X'`."""
        mx = jnp.einsum("...d,ed->...e", xp, self.proj_mx.weight) + self.proj_mx.bias
        zd, vd, d = self.z_dim, self.v_dim, self.d_model
        z = jax.nn.silu(mx[..., :zd])
        gamma = jax.nn.silu(mx[..., zd : zd + vd])
        phi = jax.nn.sigmoid(mx[..., zd + vd : zd + vd + d])
        h_in = mx[..., zd + vd + d :]
        q = z * self.qk_scale[0] + self.qk_offset[0]
        k = z * self.qk_scale[1] + self.qk_offset[1]
        return q, k, gamma, phi, h_in

    def _ema_output(self, e: Array, key: PRNGKeyArray | None) -> Array:
        """`X' = drop(EMA(X))`, or `drop(SiLU(EMA(X)))` with `ema_silu`."""
        return self.dropout(jax.nn.silu(e) if self.ema_silu else e, key=key)

    def _update(self, x, o, gamma, phi, h_in, key):
        """`φ ⊙ (drop(Ĥ) − X)` with `Ĥ = SiLU(X' W_h + b_h + (γ ⊙ O) U_h)`."""
        h = jax.nn.silu(h_in + (gamma * o) @ self.proj_h.weight.T)
        return phi * (self.dropout(h, key=key) - x)

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """**Arguments:**

        - `x`: `(L, d_model)`, one example.
        - `mask`: optional bool `(L,)` padding mask, True for real tokens.
          Padded positions enter the EMA as zeros and are never attended to
          (inf or NaN there is made 0 first), so they do not change the outputs
          at real positions.
        - `key`: PRNG key for dropout (needed only when dropout is active).

        **Returns:** `φ ⊙ (Ĥ − X)`, `(L, d_model)`.
        """
        x = check_sequence(x, self.d_model)
        L = x.shape[0]
        mask = check_mask(mask, L)
        x = finite_padding(x, mask)  # inf or NaN at padded positions enters as 0
        span = L if self.chunk_size is None else min(self.chunk_size, L)
        if self.max_length is not None and span > self.max_length:
            raise ValueError(
                f"attention span {span} (sequence length {L}, chunk_size {self.chunk_size}) "
                f"exceeds max_length={self.max_length}"
            )
        x = x.astype(self.qk_scale.dtype)
        k_ema, k_h = (None, None) if key is None else jr.split(key)  # dropout of X', of Ĥ
        xp = self._ema_output(self.ema(x, mask=mask), k_ema)  # X', the EMA's ω ⊙ x term included
        v = jax.nn.silu(jax.vmap(self.proj_v)(x))
        q, k, gamma, phi, h_in = self._gates(xp)
        pos = jnp.arange(span, dtype=jnp.int32)
        o = mega_attention(q, k, v, self._bias(pos, pos), mask, attention=self.attention, causal=self.causal)
        return self._update(x, o, gamma, phi, h_in, k_h)

    def init_state(self, L: int | None = None) -> MegaState:
        """A fresh state for `step` (causal Mega only).

        **Arguments:** `L`, the longest sequence that will be stepped through:
        required without chunks (the key/value cache holds `L` positions); ignored
        when chunked (the cache holds one chunk and restarts at its boundaries).
        """
        if not self.causal:
            raise ValueError("recurrent mode needs a causal Mega (causal=True); this one is bidirectional")
        if self.chunk_size is not None:
            C = self.chunk_size
        elif L is None:
            raise ValueError(
                "an unchunked Mega caches keys and values for the whole sequence: "
                "pass its length, init_state(L)"
            )
        else:
            C = L
        if self.max_length is not None and C > self.max_length:
            raise ValueError(f"attention span {C} (init_state({L})) exceeds max_length={self.max_length}")
        dtype = self.qk_scale.dtype
        return MegaState(
            ema=self.ema.init_state(),
            keys=jnp.zeros((C, self.z_dim), dtype),
            values=jnp.zeros((C, self.v_dim), dtype),
            position=jnp.zeros((), jnp.int32),
        )

    def step(
        self, x_t: Array, state: MegaState, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], MegaState]:
        """One position of recurrent mode: the EMA advances one step, the new key
        and value enter the cache at the position inside the current span, and the
        query attends to the cached positions up to and including it.

        **Arguments:** `x_t`, the `(d_model,)` input at one position; `state`
        from `init_state` or the previous `step`; `key` for dropout.

        **Returns:** `(y_t, state)`.
        """
        if not self.causal:
            raise ValueError("recurrent mode needs a causal Mega (causal=True); this one is bidirectional")
        x_t = jnp.asarray(x_t)
        if x_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {x_t.shape}")
        x_t = x_t.astype(self.qk_scale.dtype)
        C = state.keys.shape[0]
        if self.chunk_size is None:
            t = eqx.error_if(
                state.position,
                state.position >= C,
                "stepped past the length given to init_state(L); make the state with a larger L",
            )
            p = t
        else:
            p = state.position % C  # a new chunk starts at p = 0; older slots are masked out
        k_ema, k_h = (None, None) if key is None else jr.split(key)  # dropout of X', of Ĥ
        e, ema_state = self.ema.step(x_t, state.ema)
        xp = self._ema_output(e, k_ema)
        v = jax.nn.silu(self.proj_v(x_t))
        q, k, gamma, phi, h_in = self._gates(xp)
        keys = lax.dynamic_update_index_in_dim(state.keys, k, p, 0)
        values = lax.dynamic_update_index_in_dim(state.values, v, p, 0)
        slots = jnp.arange(C, dtype=jnp.int32)
        scores = _scale_scores((keys @ q)[None], self.z_dim, self.attention)
        weights = _attention_weights(scores, self._bias(p[None], slots), (slots <= p)[None], self.attention)
        o = (weights @ values)[0]
        y = self._update(x_t, o, gamma, phi, h_in, k_h)
        return y, MegaState(ema=ema_state, keys=keys, values=values, position=state.position + 1)
