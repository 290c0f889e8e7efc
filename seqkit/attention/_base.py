"""What every attention mixer shares, in one place: the query/key/value/output
projections, the head count, causality, dropout and the input and mask checks
([`seqkit.attention.AttentionHeads`][]). Each variant holds one of these and
adds its pattern function and its options."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, UInt32

from seqkit._checks import check_mask, check_sequence, dropout_rate, finite_padding
from seqkit._mixer import AbstractMixer, AbstractRecurrentMixer


def split_heads(linear: eqx.nn.Linear, x: Float[Array, "L d"], num_heads: int) -> Float[Array, "h L dh"]:
    """`x W + b` cut into `num_heads` heads."""
    y = x @ linear.weight.T + linear.bias
    return y.reshape(x.shape[0], num_heads, -1).transpose(1, 0, 2)


def merge_heads(o: Float[Array, "h L dh"]) -> Float[Array, "L d"]:
    """The heads concatenated along the feature axis (the inverse of `split_heads`' cut)."""
    return o.transpose(1, 0, 2).reshape(o.shape[1], -1)


class Projections(eqx.Module):
    """The position-wise maps of multi-head attention, `d_model → d_model`.

    `qk="separate"` (default): query, key, value and output maps.
    `qk="shared"`: keys come from the query map (Reformer's shared QK), so there
    is no key map. `qk="none"`: value and output maps only (Synthesizer).
    """

    query: eqx.nn.Linear | None
    key: eqx.nn.Linear | None
    value: eqx.nn.Linear
    output: eqx.nn.Linear
    num_heads: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        qk: Literal["separate", "shared", "none"] = "separate",
        key: PRNGKeyArray,
    ):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if qk not in ("separate", "shared", "none"):
            raise ValueError(f"qk must be 'separate', 'shared' or 'none', got {qk!r}")
        kq, kk, kv, ko = jr.split(key, 4)
        self.query = None if qk == "none" else eqx.nn.Linear(d_model, d_model, key=kq)
        self.key = eqx.nn.Linear(d_model, d_model, key=kk) if qk == "separate" else None
        self.value = eqx.nn.Linear(d_model, d_model, key=kv)
        self.output = eqx.nn.Linear(d_model, d_model, key=ko)
        self.num_heads = num_heads

    def split(self, linear: eqx.nn.Linear, x: Float[Array, "L d"]) -> Float[Array, "h L dh"]:
        """`x W + b` cut into heads."""
        return split_heads(linear, x, self.num_heads)

    def qkv(
        self, x: Float[Array, "L d"], kv: Float[Array, "Lk d"] | None = None
    ) -> tuple[Array, Array, Array]:
        """Queries from `x`, keys and values from `kv` (default `x`), each
        `(h, ·, d_model/h)`. With shared QK the keys are the key inputs' queries."""
        if self.query is None:
            raise ValueError("these projections have no query map (qk='none')")
        kv = x if kv is None else kv
        q = self.split(self.query, x)
        k = self.split(self.query if self.key is None else self.key, kv)
        return q, k, self.split(self.value, kv)

    def merge(self, o: Float[Array, "h L dh"]) -> Float[Array, "L d"]:
        """Concatenate heads and apply the output map."""
        return merge_heads(o) @ self.output.weight.T + self.output.bias


class AttentionHeads(eqx.Module):
    """The part every attention mixer shares: the projections, the number of
    heads, causality, the dropout rate and the inference flag, with the input
    checks, the dropout keys and the project → per-head pattern → merge path.

    A variant holds one (`heads`) and supplies its pattern function, e.g.
    `heads.attend(local_pattern, x, mask, key)`.

    Dropout (rate `dropout`) follows Equinox's convention: active unless
    `inference=True` (see `eqx.nn.inference_mode`), and then it needs a `key`.
    """

    proj: Projections
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        inference: bool = False,
        qk: Literal["separate", "shared", "none"] = "separate",
        key: PRNGKeyArray,
    ):
        self.proj = Projections(d_model, num_heads, qk=qk, key=key)
        self.d_model = d_model
        self.num_heads = num_heads
        self.causal = causal
        self.dropout = dropout_rate(dropout)
        self.inference = inference

    def check(self, x: Array, mask: Array | None) -> tuple[Array, Array | None]:
        """`x` as `(L, d_model)` and `mask` as bool `(L,)` (or `None`), or a ValueError.

        Non-finite values at padded positions come back as zeros
        (`seqkit._checks.finite_padding`), so they meet a zero attention weight as
        0, not as `0 · NaN = NaN`."""
        x = check_sequence(x, self.d_model)
        mask = check_mask(mask, x.shape[0])
        return finite_padding(x, mask), mask

    def check_step(self, x_t: Array) -> Array:
        """One position's input as `(d_model,)`, or a ValueError. The state that
        `init_state` makes holds the parameters' dtype, so a wider input (float32
        into bfloat16 parameters) is refused rather than failing inside the update."""
        x_t = jnp.asarray(x_t)
        if x_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {x_t.shape}")
        dtype = self.proj.value.weight.dtype
        if jnp.promote_types(x_t.dtype, dtype) != dtype:
            raise ValueError(
                f"expected a step input of the parameters' dtype {dtype} (the recurrent state's), "
                f"got {x_t.dtype}; cast the input, or the parameters, to one dtype"
            )
        return x_t

    def rate(self) -> float:
        """The dropout rate in force (0 in inference mode)."""
        return 0.0 if self.inference else float(self.dropout)

    def head_keys(self, key: PRNGKeyArray | None, owner: str = "attention") -> Array | None:
        """One dropout key per head, or `None` when dropout is off."""
        if self.rate() <= 0.0:
            return None
        if key is None:
            raise ValueError(
                f"{owner} has dropout={self.dropout}: pass key=... "
                "or set inference=True (eqx.nn.inference_mode)"
            )
        return jr.split(key, self.num_heads)

    def attend(
        self,
        pattern,
        x: Array,
        mask: Array | None,
        key: PRNGKeyArray | None,
        *per_head: Array,
        kv: Array | None = None,
        owner: str = "attention",
    ) -> Float[Array, "L d_model"]:
        """Project, run the pattern on every head, merge.

        `pattern(q, k, v, *per_head_i, key_mask=mask, dropout_rate=rate, key=k_i)`
        gets one head's `(L, d_h)` queries, keys and values, that head's slice of
        each `per_head` array (leading axis `h`), the checked padding mask, the
        dropout rate in force and the head's dropout key (or `None`). Keys and
        values come from `kv` when given (default `x`).
        """
        x, mask = self.check(x, mask)
        q, k, v = self.proj.qkv(x, kv)
        rate = self.rate()
        o = map_heads(
            lambda *a: pattern(*a[:-1], key_mask=mask, dropout_rate=rate, key=a[-1]),
            self.head_keys(key, owner),
            q,
            k,
            v,
            *per_head,
        )
        return self.proj.merge(o)


class AbstractAttention(AbstractMixer):
    """An attention mixer: `(L, d_model) → (L, d_model)` for one example, with an
    optional key-padding mask (`True` = real token). Batch with `jax.vmap`.

    Every variant holds an [`seqkit.attention.AttentionHeads`][] as `heads`
    (projections, head count, causality, dropout) and adds its pattern and
    options; `d_model`, `num_heads`, `causal`, `dropout` and `proj` read through
    to it. Dropout follows Equinox's convention: active unless in inference mode
    (`eqx.nn.inference_mode`), and then it needs a `key`.

    **Padding**: padded positions (`mask` False) never influence real ones. A
    sequence padded at its end gives its real positions the same outputs as
    the unpadded sequence, `m(x[:n]) == m(concat(x[:n], junk), mask=arange(L) <
    n)[:n]`, for any `n` and `L` (no block-size constraint): blocks are counted
    from position 0, and whatever depends on the length (random blocks, sorting,
    buckets, length projections, pooling) uses the real positions only.
    """

    heads: eqx.AbstractVar[AttentionHeads]

    @property
    def d_model(self) -> int:
        return self.heads.d_model

    @property
    def num_heads(self) -> int:
        return self.heads.num_heads

    @property
    def causal(self) -> bool:
        return self.heads.causal

    @property
    def dropout(self) -> float:
        return self.heads.dropout

    @property
    def proj(self) -> Projections:
        return self.heads.proj

    def _attend(
        self, pattern, x: Array, mask: Array | None, key: PRNGKeyArray | None, *per_head: Array, kv=None
    ) -> Float[Array, "L d_model"]:
        """[`seqkit.attention.AttentionHeads.attend`][] with this mixer's name in its errors."""
        return self.heads.attend(pattern, x, mask, key, *per_head, kv=kv, owner=type(self).__name__)

    def _no_causal(self, why: str = "") -> None:
        if self.causal:
            raise ValueError(
                f"{type(self).__name__} has no causal form{': ' + why if why else ''}; use causal=False"
            )


class AbstractRecurrentAttention(AbstractAttention, AbstractRecurrentMixer):
    """An attention mixer that also runs one position at a time in its causal
    form (`init_state`, `step`); its bidirectional form raises a `ValueError` there."""

    def _need_causal(self, what: str) -> None:
        if not self.causal:
            raise ValueError(
                f"{type(self).__name__}.{what} runs the causal form only; build it with causal=True"
            )


def key_mask_or_ones(mask: Bool[Array, " L"] | None, L: int) -> Bool[Array, " L"]:
    return jnp.ones((L,), bool) if mask is None else mask


def key_data(key: PRNGKeyArray) -> UInt32[Array, "..."]:
    """The raw bits of a PRNG key, to store on a module: an integer array (never
    trained or weight-decayed) that `eqx.tree_serialise_leaves` saves and
    `eqx.filter_vmap` stacks."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jr.key_data(key)
    return jnp.asarray(key, jnp.uint32)


def as_key(seed: Array) -> PRNGKeyArray:
    """A typed PRNG key from raw key bits (or a typed key, unchanged)."""
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    return jr.wrap_key_data(seed)


def output_dropout(
    o: Float[Array, "*b L dh"], rate: float, key: PRNGKeyArray | None
) -> Float[Array, "*b L dh"]:
    """Dropout on attention outputs, for variants with no explicit weights."""
    if rate <= 0.0 or key is None:
        return o
    keep = jr.bernoulli(key, 1.0 - rate, o.shape)
    return jnp.where(keep, o / (1.0 - rate), jnp.zeros_like(o))


def map_heads(fn, keys: Array | None, *arrays: Array) -> Array:
    """`jax.vmap` of `fn(*arrays_for_one_head, key)` over the leading head axis."""
    if keys is None:
        return jax.vmap(lambda *a: fn(*a, None))(*arrays)
    return jax.vmap(fn)(*arrays, keys)
