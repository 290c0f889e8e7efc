"""The Block-Recurrent Transformer layer: attention within blocks of tokens, a gated
recurrent state carried from block to block."""

import dataclasses
import math
from typing import ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from seqkit._checks import check_mask, check_sequence, dropout_rate, finite_padding
from seqkit._mixer import AbstractRecurrentMixer
from seqkit.attention._base import merge_heads, split_heads
from seqkit.attention._core import dot_product_attention

from ._mixer_config import MixerConfig

Gate = Literal["fixed", "lstm"]


class BlockRecurrentState(NamedTuple):
    """Recurrent state of [`seqkit.nn.BlockRecurrent`][]: the recurrent state `S`
    `(M, d)`; the previous block's token keys and values `(h, W, d_h)` and which
    of them are real `(W,)`; the current block's keys and values so far; the next
    position `t` (an int32 scalar; `t mod W` is the place in the block)."""

    S: Float[Array, "M d"]
    prev_k: Float[Array, "h W dh"]
    prev_v: Float[Array, "h W dh"]
    prev_mask: Bool[Array, " W"]
    cur_k: Float[Array, "h W dh"]
    cur_v: Float[Array, "h W dh"]
    t: Int[Array, ""]


class BlockRecurrent(AbstractRecurrentMixer):
    """The recurrent layer of the Block-Recurrent Transformer (Hutchins, Schlag, Wu,
    Dyer and Neyshabur, "Block-Recurrent Transformers", NeurIPS 2022). Causal only.

    The sequence is cut into blocks of `W = block_size` tokens (the last block may
    be partial) and a state of `M = num_state` vectors `S_b ∈ R^{M×d}` is carried
    from block to block, starting from learned vectors `S_0`. Attention is
    multi-head (`h = num_heads`, `softmax(q kᵀ / sqrt(d_h)) v` per head); keys and
    values are shared by the two directions, queries are not.

    For block `b` with (normalized) tokens `X_b ∈ R^{W×d}`:

    - keys and values of the tokens `K_x = X_b W_k^x`, `V_x = X_b W_v^x`; of the
      state `Ŝ = LN(S_b) + P` (`P` learned state position embeddings),
      `K_s = Ŝ W_k^s`, `V_s = Ŝ W_v^s` (every map has a bias);
    - **vertical** (tokens): `y = W_o^x [A(X_b W_q^x, [K_x^{b-1}; K_x], ·);
      A(X_b W_c^x, K_s, V_s)] + b_o^x`. The self-attention is a sliding window:
      token `t` of the block sees the `W` tokens of the previous block and the
      tokens `≤ t` of its own (the first block: its own only);
    - **horizontal** (state): `h = W_o^s [A(Ŝ W_q^s, K_s, V_s); A(Ŝ W_c^s, K_x,
      V_x)] + b_o^s` (self-attention of the state, cross-attention to the
      block's tokens), then the gate, which replaces the residual connection:
      - `gate="fixed"`: `S_{b+1} = S_b ⊙ σ(g) + tanh(W_z h + b_z) ⊙ (1 − σ(g))`,
        `g` a learned vector initialized to `log 9` (`σ(g) = 0.9`: mostly carry);
      - `gate="lstm"`: `z = tanh(W_z h + b_z)`, `i = σ(W_i h + b_i)`,
        `f = σ(W_f h + b_f)`, `S_{b+1} = S_b ⊙ f + z ⊙ i`, with `b_f = 1`,
        `b_i = −1` at initialization (the paper's offsets: keep the state at first).

    The output is the vertical direction's `y`, `(L, d_model)`; the layer runs the
    whole sequence as a `jax.lax.scan` over blocks. The token LayerNorm and the
    residual sum of the paper's vertical direction are the enclosing
    [`seqkit.nn.ResidualBlock`][]'s (pre-norm); the feed-forward sub-block too.
    Tokens carry no position signal here (the paper adds T5 relative biases); the
    state's MLP and second gate of the paper's horizontal direction are left out.

    **Padding** (`mask` False): padded tokens are never attended to, by tokens or
    by the state, and a block of padding alone leaves the state and the previous
    block as they were, so the padded values never change a real output. Padding
    on the right, or whole blocks of it in front, gives the unpadded sequence's
    outputs; other padding in front moves the block boundaries (blocks are cut at
    `0, W, 2W, ...` of the padded sequence) and so changes them: pad on the right.

    **Step mode**: `init_state()` and `step(x_t, state)` keep the state, the
    previous block's keys and values and the current block's so far; `step`
    emits the parallel call's output at `t` and, when a block completes, applies
    the gate. Equal to the parallel call.

    ```python
    layer = BlockRecurrent(128, 4, block_size=64, num_state=64, key=jax.random.key(0))
    y = layer(x)                                  # x: (L, 128)
    y0, state = layer.step(x[0], layer.init_state())
    ```
    """

    tok_query: eqx.nn.Linear
    tok_cross_query: eqx.nn.Linear
    tok_key: eqx.nn.Linear
    tok_value: eqx.nn.Linear
    tok_output: eqx.nn.Linear
    state_query: eqx.nn.Linear
    state_cross_query: eqx.nn.Linear
    state_key: eqx.nn.Linear
    state_value: eqx.nn.Linear
    state_output: eqx.nn.Linear
    state_norm: eqx.nn.LayerNorm
    state_init: Float[Array, "M d"]
    state_pos: Float[Array, "M d"]
    gate_z: eqx.nn.Linear
    gate_i: eqx.nn.Linear | None
    gate_f: eqx.nn.Linear | None
    gate_bias: Float[Array, " d"] | None
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    block_size: int = eqx.field(static=True)
    num_state: int = eqx.field(static=True)
    gate: str = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        block_size: int = 64,
        num_state: int = 64,
        gate: str = "fixed",
        causal: bool = True,
        dropout: float = 0.0,
        inference: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`, `num_heads`: width and heads (`d_model % num_heads == 0`).
        - `block_size`: `W`, the tokens per block (the window of the self-attention).
        - `num_state`: `M`, the number of state vectors.
        - `gate`: `"fixed"` or `"lstm"` (see above).
        - `causal`: must be True (the layer is causal by construction).
        - `dropout`: attention-weight dropout rate.
        - `key`: PRNG key for the initial parameters.
        """
        if not causal:
            raise ValueError(
                "BlockRecurrent is causal by construction (a state carried forward block by "
                "block); expected causal=True, got causal=False"
            )
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads} (>= 1)")
        if block_size < 1:
            raise ValueError(f"expected block_size >= 1, got {block_size}")
        if num_state < 1:
            raise ValueError(f"expected num_state >= 1, got {num_state}")
        if gate not in ("fixed", "lstm"):
            raise ValueError(f"gate must be 'fixed' or 'lstm', got {gate!r}")
        d = d_model
        ks = iter(jr.split(key, 16))

        def lin(n_in=d):
            return eqx.nn.Linear(n_in, d, key=next(ks))

        self.tok_query, self.tok_cross_query, self.tok_key, self.tok_value = lin(), lin(), lin(), lin()
        self.tok_output = lin(2 * d)
        self.state_query, self.state_cross_query, self.state_key, self.state_value = (
            lin(),
            lin(),
            lin(),
            lin(),
        )
        self.state_output = lin(2 * d)
        self.state_norm = eqx.nn.LayerNorm(d)
        self.state_init = jr.normal(next(ks), (num_state, d))
        self.state_pos = jr.normal(next(ks), (num_state, d)) / math.sqrt(d)
        self.gate_z = lin()
        if gate == "lstm":
            gi, gf = lin(), lin()
            self.gate_i = eqx.tree_at(lambda m: m.bias, gi, jnp.full((d,), -1.0, gi.weight.dtype))
            self.gate_f = eqx.tree_at(lambda m: m.bias, gf, jnp.full((d,), 1.0, gf.weight.dtype))
            self.gate_bias = None
        else:
            self.gate_i = self.gate_f = None
            self.gate_bias = jnp.full((d,), math.log(9.0), self.gate_z.weight.dtype)
        self.d_model = d
        self.num_heads = num_heads
        self.block_size = block_size
        self.num_state = num_state
        self.gate = gate
        self.dropout = dropout_rate(dropout)
        self.inference = inference

    @property
    def causal(self) -> bool:
        return True

    # -- pieces shared by the parallel call and the step -----------------------

    def _heads(self, linear: eqx.nn.Linear, x: Float[Array, "n d"]) -> Float[Array, "h n dh"]:
        return split_heads(linear, x, self.num_heads)

    def _rate(self) -> float:
        return 0.0 if self.inference else self.dropout

    def _keys(self, key: PRNGKeyArray | None, n: int) -> list:
        if self._rate() <= 0.0:
            return [None] * n
        if key is None:
            raise ValueError(
                f"BlockRecurrent has dropout={self.dropout}: pass key=... "
                "or set inference=True (eqx.nn.inference_mode)"
            )
        return list(jr.split(key, n))

    def _attend(self, q, k, v, mask, key):
        return merge_heads(dot_product_attention(q, k, v, mask, dropout_rate=self._rate(), key=key))

    def _state_heads(self, S: Float[Array, "M d"]):
        """Queries (self, cross), keys and values of the state, `(h, M, d_h)` each."""
        s = jax.vmap(self.state_norm)(S) + self.state_pos.astype(S.dtype)
        return tuple(
            self._heads(f, s)
            for f in (self.state_query, self.state_cross_query, self.state_key, self.state_value)
        )

    def _tokens_out(self, qx, cx, k, v, self_mask, ks, vs, keys) -> Float[Array, "n d"]:
        """The vertical direction for queries `qx`, `cx` `(h, n, d_h)` over token keys
        `k`, `v` (allowed by `self_mask`) and the state's keys `ks`, `vs`."""
        a = self._attend(qx, k, v, self_mask, keys[0])
        c = self._attend(cx, ks, vs, None, keys[1])
        out = jnp.concatenate([a, c], axis=-1)
        return out @ self.tok_output.weight.T + self.tok_output.bias

    def _update(self, S, sq, sc, ks, vs, kx, vx, kmask, keys) -> Float[Array, "M d"]:
        """The horizontal direction and the gate: `S_b → S_{b+1}`."""
        a = self._attend(sq, ks, vs, None, keys[0])
        c = self._attend(sc, kx, vx, kmask[None, :], keys[1])
        h = jnp.concatenate([a, c], axis=-1) @ self.state_output.weight.T + self.state_output.bias

        def lin(f):
            return h @ f.weight.T + f.bias

        z = jnp.tanh(lin(self.gate_z))
        if self.gate == "fixed":
            assert self.gate_bias is not None
            g = jax.nn.sigmoid(self.gate_bias).astype(S.dtype)
            return S * g + z * (1.0 - g)
        assert self.gate_i is not None and self.gate_f is not None
        return S * jax.nn.sigmoid(lin(self.gate_f)) + z * jax.nn.sigmoid(lin(self.gate_i))

    # -- parallel ---------------------------------------------------------------

    def __call__(
        self,
        x: Array,
        *,
        mask: Array | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "L d_model"]:
        """**Arguments:** `x` `(L, d_model)`; `mask` optional bool `(L,)`, True = real
        token; `key` for dropout. **Returns:** `(L, d_model)`."""
        x = check_sequence(x, self.d_model)
        L = x.shape[0]
        mask = check_mask(mask, L)
        x = finite_padding(x, mask)  # inf or NaN at padded positions enters as 0
        W, h = self.block_size, self.num_heads
        nb = -(-L // W)
        pad = nb * W - L
        m = jnp.ones((L,), bool) if mask is None else mask
        xp = jnp.pad(x, ((0, pad), (0, 0)))
        mp = jnp.pad(m, (0, pad)).reshape(nb, W)

        def blocks(f):  # (h, nb·W, dh) -> (nb, h, W, dh)
            return self._heads(f, xp).reshape(h, nb, W, -1).transpose(1, 0, 2, 3)

        qx, cx, kx, vx = (
            blocks(f) for f in (self.tok_query, self.tok_cross_query, self.tok_key, self.tok_value)
        )
        own = jnp.tril(jnp.ones((W, W), bool))
        keys = self._keys(key, 1)[0]
        bkeys = None if keys is None else jr.split(keys, nb)

        def body(carry, xs):
            S, pk, pv, pm = carry
            qb, cb, kb, vb, mb, kk = xs
            dk = [None] * 4 if kk is None else list(jr.split(kk, 4))
            sq, sc, ks, vs = self._state_heads(S)
            self_mask = jnp.concatenate([jnp.broadcast_to(pm[None, :], (W, W)), own & mb[None, :]], axis=1)
            K = jnp.concatenate([pk, kb], axis=1)
            V = jnp.concatenate([pv, vb], axis=1)
            y = self._tokens_out(qb, cb, K, V, self_mask, ks, vs, dk[:2])
            # A block of padding alone leaves the state and the previous block as they were
            real = jnp.any(mb)
            S = jnp.where(real, self._update(S, sq, sc, ks, vs, kb, vb, mb, dk[2:]), S)
            keep = (jnp.where(real, new, old) for new, old in ((kb, pk), (vb, pv), (mb, pm)))
            return (S, *keep), y

        init = self._empty(x.dtype)
        carry0 = (init.S, init.prev_k, init.prev_v, init.prev_mask)
        _, y = lax.scan(body, carry0, (qx, cx, kx, vx, mp, bkeys))
        return y.reshape(nb * W, -1)[:L]

    # -- recurrent --------------------------------------------------------------

    def _empty(self, dtype) -> BlockRecurrentState:
        W, h = self.block_size, self.num_heads
        zeros = jnp.zeros((h, W, self.d_model // h), dtype)
        return BlockRecurrentState(
            S=self.state_init.astype(dtype),
            prev_k=zeros,
            prev_v=zeros,
            prev_mask=jnp.zeros((W,), bool),
            cur_k=zeros,
            cur_v=zeros,
            t=jnp.zeros((), jnp.int32),
        )

    def init_state(self, L: int | None = None) -> BlockRecurrentState:
        """The state before the first position: `S_0` and empty key/value blocks.
        `L` is not needed (the state's size does not depend on it)."""
        if L is not None and L < 1:
            raise ValueError(f"expected L >= 1 (or None), got {L}")
        return self._empty(self.tok_key.weight.dtype)

    def step(
        self, x_t: Array, state: PyTree, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], BlockRecurrentState]:
        """Position `t`: its output, and the state after it (the gate applied when
        `t` ends a block). **Returns:** `(y_t, state)`."""
        x_t = jnp.asarray(x_t)
        if x_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {x_t.shape}")
        if not isinstance(state, BlockRecurrentState):
            raise ValueError(
                f"expected the BlockRecurrentState from init_state() or step(), got {type(state).__name__}"
            )
        W = self.block_size
        keys = self._keys(key, 1)[0]
        dk = [None] * 4 if keys is None else list(jr.split(keys, 4))
        p = state.t % W
        xq = x_t[None]
        qx, cx, kx, vx = (
            self._heads(f, xq) for f in (self.tok_query, self.tok_cross_query, self.tok_key, self.tok_value)
        )
        cur_k = lax.dynamic_update_slice_in_dim(state.cur_k, kx, p, axis=1)
        cur_v = lax.dynamic_update_slice_in_dim(state.cur_v, vx, p, axis=1)
        own = jnp.arange(W, dtype=p.dtype) <= p
        self_mask = jnp.concatenate([state.prev_mask, own])[None, :]
        sq, sc, ks, vs = self._state_heads(state.S)
        K = jnp.concatenate([state.prev_k, cur_k], axis=1)
        V = jnp.concatenate([state.prev_v, cur_v], axis=1)
        y = self._tokens_out(qx, cx, K, V, self_mask, ks, vs, dk[:2])[0]

        def finish(_):
            S = self._update(state.S, sq, sc, ks, vs, cur_k, cur_v, jnp.ones((W,), bool), dk[2:])
            zeros = jnp.zeros_like(cur_k)
            return BlockRecurrentState(S, cur_k, cur_v, jnp.ones((W,), bool), zeros, zeros, state.t + 1)

        def carry_on(_):
            return state._replace(cur_k=cur_k, cur_v=cur_v, t=state.t + 1)

        return y, lax.cond(p == W - 1, finish, carry_on, None)


@dataclasses.dataclass
class BlockRecurrentConfig(MixerConfig):
    """[`seqkit.nn.BlockRecurrent`][], kind `"block_recurrent"` (Hutchins et al.,
    "Block-Recurrent Transformers", NeurIPS 2022). Options: `num_heads`,
    `block_size` (`W`), `num_state` (`M`), `gate` (`"fixed"` or `"lstm"`),
    `dropout`; `causal` must stay True (the layer is causal by construction)."""

    kind: ClassVar[str] = "block_recurrent"
    num_heads: int = 4
    block_size: int = 64
    num_state: int = 64
    gate: Gate = "fixed"
    dropout: float = 0.0
    causal: bool = True

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> BlockRecurrent:
        return BlockRecurrent(d_model, **self.options(), key=key)
