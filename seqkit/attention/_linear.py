"""Kernelized linear attention: elu+1 (Linear Transformer), FAVOR+ (Performer)
and learned spectral random features; parallel, causal prefix-sum and
recurrent forms."""

import abc
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Bool, Float, PRNGKeyArray, UInt32

from ._base import AbstractRecurrentAttention, AttentionHeads, as_key, key_data, map_heads, output_dropout

# ---------------------------------------------------------------------------
# feature maps


def elu_feature_map(x: Float[Array, "*b L d"]) -> Float[Array, "*b L d"]:
    """`φ(x) = elu(x) + 1` (Katharopoulos et al., "Transformers are RNNs", 2020)."""
    return jax.nn.elu(x) + 1.0


def orthogonal_gaussian(key: PRNGKeyArray, m: int, d: int) -> Float[Array, "m d"]:
    """`m` random directions in `R^d`, orthogonal within each block of `d`, with
    row norms distributed as those of `N(0, I_d)` vectors (Performer's ORFs).

    Each block is the `Q` of a Gaussian matrix's QR decomposition with its columns'
    signs fixed by `R`'s diagonal, which makes it uniformly (Haar) distributed
    (Mezzadri, "How to generate random matrices from the classical compact
    groups", 2007): each row is then a uniformly random direction, as the
    estimator `E[φ(q)·φ(k)] = exp(q·k/√d)` needs. A bare QR fixes the signs of
    `R`'s diagonal instead, which biases the directions."""
    n_blocks = -(-m // d)
    kq, kn = jr.split(key)
    G = jr.normal(kq, (n_blocks, d, d))
    Q, R = jnp.linalg.qr(G)
    signs = jnp.sign(jnp.diagonal(R, axis1=-2, axis2=-1))
    Q = Q * jnp.where(signs == 0, 1.0, signs)[:, None, :]  # column j times sign(R_jj)
    W = jnp.swapaxes(Q, -1, -2).reshape(n_blocks * d, d)[:m]
    norms = jnp.linalg.norm(jr.normal(kn, (m, d)), axis=-1)
    return W * norms[:, None]


def _prf(x, W, per_row: bool, key_mask=None):
    """Positive random features and the (stop-gradient) shift taken out of their log.

    Keys share one shift, the largest exponent over the real keys (`key_mask`),
    so padded keys never change the real ones' features."""
    d = x.shape[-1]
    m = W.shape[0]
    xs = x * jnp.asarray(d**-0.25, x.dtype)
    z = xs @ W.T - 0.5 * jnp.sum(xs * xs, axis=-1, keepdims=True)
    if per_row:
        shift = jnp.max(z, axis=-1, keepdims=True)
    else:
        zr = z if key_mask is None else jnp.where(key_mask[:, None], z, -jnp.inf)
        shift = jnp.max(zr, keepdims=True)
        shift = jnp.where(jnp.isfinite(shift), shift, jnp.zeros_like(shift))
    shift = lax.stop_gradient(shift)
    return jnp.exp(z - shift) / jnp.asarray(math.sqrt(m), x.dtype), shift[..., 0]


def positive_random_features(
    x: Float[Array, "L d"],
    W: Float[Array, "m d"],
    *,
    is_query: bool,
    key_mask: Bool[Array, " L"] | None = None,
) -> Float[Array, "L m"]:
    """FAVOR+ positive random features of the softmax kernel (Choromanski et al.,
    "Rethinking Attention with Performers", 2021):
    `φ(x) = exp(W x' − |x'|²/2) / sqrt(m)`, `x' = x / d^{1/4}`, so that
    `E[φ(q)·φ(k)] = exp(q·k / sqrt(d))`. For stability a constant is taken out of
    the exponent: per row for queries, one for all keys (the largest over the
    real keys, `key_mask`); both cancel in the attention normalizer.
    """
    return _prf(x, W, per_row=is_query, key_mask=key_mask)[0]


# ---------------------------------------------------------------------------
# linear attention given features


def _safe(den):
    # features are positive: den = 0 only when every key is masked (output 0)
    return jnp.where(den > 0, den, jnp.ones_like(den))


def linear_attention(
    phi_q: Float[Array, "L m"],
    phi_k: Float[Array, "L m"],
    v: Float[Array, "L dv"],
    *,
    causal: bool = False,
    key_mask: Bool[Array, " L"] | None = None,
    chunk_size: int = 64,
    key_shift: Float[Array, " L"] | None = None,
) -> Float[Array, "L dv"]:
    """`o_i = φ(q_i) Σ_j φ(k_j) v_jᵀ / φ(q_i) · Σ_j φ(k_j)` over `j` (over `j <= i`
    when causal).

    The causal form is a prefix sum over chunks: within a chunk the `c × c`
    quadratic form, across chunks a carried state `S = Σ φ(k) vᵀ`, `z = Σ φ(k)`
    (memory `O(L · (c + m))`, never `L × m × dv`).

    `key_shift`: the log-scale taken out of each key's features, so that the key
    features are `phi_k[j] · exp(key_shift[j])` (exponential feature maps keep
    `phi_k` near 1 this way). Keys are then weighted by `exp(key_shift[j] − M)`,
    with `M` the largest shift over the keys a query sees: over all real keys in
    the bidirectional form, over `j <= i` in the causal one (a running maximum,
    as the recurrence keeps), so a later key never changes an earlier output.
    """
    L, m = phi_q.shape
    if key_shift is not None and key_shift.shape != (L,):
        raise ValueError(f"expected key_shift of shape {(L,)}, got {key_shift.shape}")
    if key_mask is not None:
        phi_k = jnp.where(key_mask[:, None], phi_k, jnp.zeros_like(phi_k))
    if key_shift is None:
        s = jnp.zeros((L,), phi_k.dtype)
    else:
        s = key_shift.astype(phi_k.dtype)
    if key_mask is not None:
        s = jnp.where(key_mask, s, -jnp.inf)
    if not causal:
        w = jnp.exp(s - _finite(lax.stop_gradient(jnp.max(s))))
        phi_k = phi_k * w[:, None]
        S = phi_k.T @ v
        z = jnp.sum(phi_k, axis=0)
        return (phi_q @ S) / _safe(phi_q @ z)[:, None]
    c = min(chunk_size, L)
    n = -(-L // c)
    pad = n * c - L

    def chunks(a, fill=0.0):
        widths = ((0, pad),) + ((0, 0),) * (a.ndim - 1)
        return jnp.pad(a, widths, constant_values=fill).reshape(n, c, *a.shape[1:])

    tri = jnp.tril(jnp.ones((c, c), bool))

    def body(carry, xs):
        # S, z are stored relative to exp(M), M the largest key shift so far
        S, z, M = carry
        fq, fk, vc, sc = xs
        Mi = lax.stop_gradient(jnp.maximum(M, lax.cummax(sc)))  # per query: max over j <= i
        Mi = _finite(Mi)
        past = jnp.exp(M - Mi)  # 0 before any real key (M = −inf)
        w = jnp.exp(jnp.where(tri, sc[None, :] - Mi[:, None], -jnp.inf))
        a = (fq @ fk.T) * w
        num = past[:, None] * (fq @ S) + a @ vc
        den = past * (fq @ z) + jnp.sum(a, axis=-1)
        M_new = lax.stop_gradient(jnp.maximum(M, jnp.max(sc)))
        ref = _finite(M_new)
        fk = fk * jnp.exp(sc - ref)[:, None]
        old = jnp.exp(M - ref)
        S = S * old + fk.T @ vc
        z = z * old + jnp.sum(fk, axis=0)
        return (S, z, M_new), num / _safe(den)[:, None]

    init = (
        jnp.zeros((m, v.shape[1]), v.dtype),
        jnp.zeros((m,), v.dtype),
        jnp.asarray(-jnp.inf, phi_k.dtype),
    )
    xs = (chunks(phi_q), chunks(phi_k), chunks(v), chunks(s, -jnp.inf))
    _, o = lax.scan(body, init, xs)
    return o.reshape(n * c, -1)[:L]


def _finite(x):
    """`x` where finite, else 0 (a reference point for `exp(· − x)`)."""
    return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


class LinearState(NamedTuple):
    """Recurrent state of causal linear attention, per head: `S = Σ φ(k) vᵀ`
    `(h, m, d_h)` and `z = Σ φ(k)` `(h, m)`, both stored divided by
    `exp(shift)` `(h,)` (a running maximum that keeps exponential features finite)."""

    S: Array
    z: Array
    shift: Array


class _FeatureAttention(AbstractRecurrentAttention):
    """Linear attention with a feature map given by the subclass; the parallel
    (bidirectional or causal) call and the causal recurrence."""

    @abc.abstractmethod
    def _feature_weights(self) -> Float[Array, "h m dh"] | None:
        """The feature map's per-head weights (computed once per call), or `None`."""

    @abc.abstractmethod
    def _query_features(self, q: Float[Array, "h L dh"], W: Array | None) -> Float[Array, "h L m"]:
        """Query features per head."""

    @abc.abstractmethod
    def _key_features(self, k: Float[Array, "h L dh"], W: Array | None) -> tuple[Array, Array]:
        """Key features per head `(h, L, m)` and the log-shift taken out of each
        key's features `(h, L)` (zeros for feature maps that need none)."""

    def __call__(
        self, x: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`(L, d_model) → (L, d_model)`; `mask` `(L,)` boolean, `True` = real token.
        Dropout, if any, acts on each head's attention output."""
        x, mask = self.heads.check(x, mask)
        q, k, v = self.proj.qkv(x)
        W = self._feature_weights()
        fq = self._query_features(q, W)
        fk, shift = self._key_features(k, W)
        rate = self.heads.rate()
        o = map_heads(
            lambda a, b, c, s, kk: output_dropout(
                linear_attention(a, b, c, causal=self.causal, key_mask=mask, key_shift=s), rate, kk
            ),
            self.heads.head_keys(key, type(self).__name__),
            fq,
            fk,
            v,
            shift,
        )
        return self.proj.merge(o)

    def init_state(self, L: int | None = None) -> LinearState:
        """A zero state for recurrent mode (causal only; `L` is not needed)."""
        self._need_causal("init_state")
        h = self.num_heads
        dh = self.d_model // h
        dt = self.proj.value.weight.dtype
        zeros = jnp.zeros((h, 1, dh), dt)
        m = jax.eval_shape(lambda: self._query_features(zeros, self._feature_weights())).shape[-1]
        return LinearState(
            S=jnp.zeros((h, m, dh), dt), z=jnp.zeros((h, m), dt), shift=jnp.full((h,), -jnp.inf, dt)
        )

    def step(
        self, x_t: Float[Array, " d_model"], state: LinearState, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], LinearState]:
        """One step of the recurrence `S ← S + φ(k_t) v_tᵀ`, `z ← z + φ(k_t)`,
        `y_t = φ(q_t) S / φ(q_t)·z` (equal to the causal parallel form).

        **Returns:** `(y_t, state)`.
        """
        self._need_causal("step")
        x_t = self.heads.check_step(x_t)
        q, k, v = self.proj.qkv(x_t[None])
        W = self._feature_weights()
        fq = self._query_features(q, W)[:, 0]
        fk, s_t = self._key_features(k, W)
        fk, s_t = fk[:, 0], s_t[:, 0]
        shift = jnp.maximum(state.shift, s_t)
        old = jnp.exp(state.shift - shift)  # 0 at the first step (shift −inf)
        new = jnp.exp(s_t - shift)[:, None]
        S = state.S * old[:, None, None] + (new * fk)[:, :, None] * v[:, 0, None, :]
        z = state.z * old[:, None] + new * fk
        o = jnp.einsum("hm,hmd->hd", fq, S) / _safe(jnp.einsum("hm,hm->h", fq, z))[:, None]
        keys = self.heads.head_keys(key, type(self).__name__)
        if keys is not None:
            o = jax.vmap(lambda a, kk: output_dropout(a, self.heads.rate(), kk))(o[:, None], keys)[:, 0]
        return self.proj.merge(o[:, None])[0], LinearState(S=S, z=z, shift=shift)


class _RandomFeatureAttention(_FeatureAttention):
    """Linear attention with positive random features of given per-head weights
    (FAVOR+ and its learned-kernel variant)."""

    def _query_features(self, q, W):
        return jax.vmap(lambda a, w: positive_random_features(a, w, is_query=True))(q, W)

    def _key_features(self, k, W):
        return jax.vmap(lambda a, w: _prf(a, w, per_row=True))(k, W)


class LinearAttention(_FeatureAttention):
    """Linear Transformer attention (Katharopoulos et al., "Transformers are RNNs:
    Fast Autoregressive Transformers with Linear Attention", 2020).

    `o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j)`, `φ = elu + 1`; the causal
    form sums over `j <= i` by chunked prefix sums, and `init_state`/`step` run
    it as an RNN.

    ```python
    attn = LinearAttention(128, 2, causal=True, key=key)
    y = attn(x)
    state = attn.init_state()
    y0, state = attn.step(x[0], state)  # equals y[0]
    ```

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][].
    """

    heads: AttentionHeads

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=key
        )

    def _feature_weights(self):
        return None

    def _query_features(self, q, W):
        return elu_feature_map(q)

    def _key_features(self, k, W):
        return elu_feature_map(k), jnp.zeros(k.shape[:2], k.dtype)


class Performer(_RandomFeatureAttention):
    """Performer attention with FAVOR+ (Choromanski et al., "Rethinking Attention
    with Performers", 2021): softmax attention estimated with `num_features`
    positive orthogonal random features, `φ(x) = exp(W x' − |x'|²/2)/sqrt(m)`.
    The features are fixed at construction: regenerated on every call from
    the raw key bits stored in `seed` (an integer array, so never trained, and
    `eqx.filter_vmap` can build a stack of layers). Causal form and recurrent
    mode as [`seqkit.attention.LinearAttention`][].

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `num_features` (default 256).
    """

    heads: AttentionHeads
    seed: UInt32[Array, "..."]
    num_features: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        num_features: int = 256,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if num_features < 1:
            raise ValueError(f"expected num_features >= 1, got {num_features}")
        kp, ks = jr.split(key)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        self.seed = key_data(ks)
        self.num_features = num_features

    def random_matrix(self) -> Float[Array, "h m dh"]:
        """The random feature directions `W`, one `(m, d_h)` matrix per head."""
        dh = self.d_model // self.num_heads
        keys = jr.split(as_key(self.seed), self.num_heads)
        W = jax.vmap(lambda k: orthogonal_gaussian(k, self.num_features, dh))(keys)
        return W.astype(self.proj.value.weight.dtype)

    def _feature_weights(self):
        return self.random_matrix()


class KernelizedAttention(_RandomFeatureAttention):
    """Kernelized attention with a learned spectral distribution (Chowdhury et al.,
    "Learning the Transformer Kernel", 2022; the GMM-PRF variant).

    Random features `φ(x) = exp(ω x' − |x'|²/2)/sqrt(m)` (as FAVOR+) whose
    frequencies come from a learned Gaussian mixture per head:
    `ω_{c,i} = μ_c + exp(log σ_c) ⊙ ε_{c,i}`, `ε` fixed standard normal (the
    reparameterization; regenerated from the raw key bits in `seed`),
    `c = 1..num_components`. The kernel the features estimate is learned with
    the model. Causal and recurrent forms as
    [`seqkit.attention.LinearAttention`][].

    **Arguments:** as [`seqkit.attention.MultiHeadAttention`][], plus
    `num_features` (default 128) and `num_components` (default 2).
    """

    heads: AttentionHeads
    means: Float[Array, "h C dh"]
    log_scales: Float[Array, "h C dh"]
    seed: UInt32[Array, "..."]
    num_features: int = eqx.field(static=True)
    num_components: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        num_features: int = 128,
        num_components: int = 2,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        if num_components < 1 or num_features % num_components:
            raise ValueError(
                f"num_features={num_features} must be a multiple of num_components={num_components} >= 1"
            )
        kp, km, ks = jr.split(key, 3)
        self.heads = AttentionHeads(
            d_model, num_heads, causal=causal, dropout=dropout, inference=inference, key=kp
        )
        dh = d_model // num_heads
        self.means = 0.1 * jr.normal(km, (num_heads, num_components, dh))
        self.log_scales = jnp.zeros((num_heads, num_components, dh))
        self.seed = key_data(ks)
        self.num_features = num_features
        self.num_components = num_components

    def frequencies(self) -> Float[Array, "h m dh"]:
        """The current frequencies `ω`, `(h, num_features, d_h)`."""
        h, C, dh = self.means.shape
        eps = jr.normal(as_key(self.seed), (h, C, self.num_features // C, dh), self.means.dtype)
        w = self.means[:, :, None, :] + jnp.exp(self.log_scales)[:, :, None, :] * eps
        return w.reshape(h, self.num_features, dh)

    def _feature_weights(self):
        return self.frequencies()
