"""What every attention mixer shares: the query/key/value/output projections,
input and mask checks, and dropout keys."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from seqkit._checks import check_mask, check_sequence
from seqkit._mixer import AbstractMixer


class Projections(eqx.Module):
    """The four position-wise maps of multi-head attention, `d_model → d_model`."""

    query: eqx.nn.Linear
    key: eqx.nn.Linear
    value: eqx.nn.Linear
    output: eqx.nn.Linear
    num_heads: int = eqx.field(static=True)

    def __init__(self, d_model: int, num_heads: int, *, key: PRNGKeyArray):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        kq, kk, kv, ko = jr.split(key, 4)
        self.query = eqx.nn.Linear(d_model, d_model, key=kq)
        self.key = eqx.nn.Linear(d_model, d_model, key=kk)
        self.value = eqx.nn.Linear(d_model, d_model, key=kv)
        self.output = eqx.nn.Linear(d_model, d_model, key=ko)
        self.num_heads = num_heads

    def split(self, linear: eqx.nn.Linear, x: Float[Array, "L d"]) -> Float[Array, "h L dh"]:
        y = x @ linear.weight.T + linear.bias
        return y.reshape(x.shape[0], self.num_heads, -1).transpose(1, 0, 2)

    def qkv(self, x: Float[Array, "L d"]) -> tuple[Array, Array, Array]:
        """Queries, keys and values per head, each `(h, L, d_model/h)`."""
        return self.split(self.query, x), self.split(self.key, x), self.split(self.value, x)

    def merge(self, o: Float[Array, "h L dh"]) -> Float[Array, "L d"]:
        """Concatenate heads and apply the output map."""
        y = o.transpose(1, 0, 2).reshape(o.shape[1], -1)
        return y @ self.output.weight.T + self.output.bias


class AbstractAttention(AbstractMixer):
    """An attention mixer: `(L, d_model) → (L, d_model)` for one example, with an
    optional key-padding mask (`True` = real token). Batch with `jax.vmap`.

    Dropout (rate `dropout`) follows Equinox's convention: active unless
    `inference=True` (see `eqx.nn.inference_mode`), and then it needs a `key`.
    """

    d_model: eqx.AbstractVar[int]
    num_heads: eqx.AbstractVar[int]
    causal: eqx.AbstractVar[bool]
    dropout: eqx.AbstractVar[float]
    inference: eqx.AbstractVar[bool]

    def _check(self, x: Array, mask: Array | None) -> tuple[Array, Array | None]:
        x = check_sequence(x, self.d_model)
        return x, check_mask(mask, x.shape[0])

    def _rate(self) -> float:
        return 0.0 if self.inference else float(self.dropout)

    def _head_keys(self, key: PRNGKeyArray | None) -> Array | None:
        """One dropout key per head, or `None` when dropout is off."""
        if self._rate() <= 0.0:
            return None
        if key is None:
            raise ValueError(
                f"{type(self).__name__} has dropout={self.dropout}: pass key=... "
                "or set inference=True (eqx.nn.inference_mode)"
            )
        return jr.split(key, self.num_heads)

    def _standard(self, x: Array, mask: Array | None, key: PRNGKeyArray | None, attend) -> Array:
        """Project, run `attend(q, k, v, mask, rate, key) -> o` per head, merge.

        `q`, `k`, `v` are one head's `(L, d_h)`; `mask` the checked padding mask.
        """
        x, mask = self._check(x, mask)
        proj = self.proj  # pyright: ignore[reportAttributeAccessIssue]
        q, k, v = proj.qkv(x)
        rate = self._rate()
        o = map_heads(lambda q, k, v, kk: attend(q, k, v, mask, rate, kk), self._head_keys(key), q, k, v)
        return proj.merge(o)

    def _no_causal(self, why: str = "") -> None:
        if self.causal:
            raise ValueError(
                f"{type(self).__name__} has no causal form{': ' + why if why else ''}; use causal=False"
            )


def key_mask_or_ones(mask: Bool[Array, " L"] | None, L: int) -> Bool[Array, " L"]:
    return jnp.ones((L,), bool) if mask is None else mask


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
