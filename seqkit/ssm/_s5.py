"""S5: one multi-input multi-output diagonal state space per layer, run as a parallel scan."""

import math
from typing import Literal, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from seqkit._checks import check_mask
from seqkit._typing import ArrayLike
from seqkit.kernels import linear_scan

from ._base import (
    AbstractSSMCore,
    DiscreteSystem,
    clamp_dt,
    complex_dtype,
    default_float,
    init_log_dt,
    negative_real,
    tile_param,
    to_complex,
)
from ._discretize import discretize_bilinear, discretize_zoh
from ._hippo import hippo_legs


class S5State(NamedTuple):
    """State of [`seqkit.ssm.S5`][] in recurrent mode: the complex state `x`, `(n,)`."""

    x: Complex[Array, " n"]


def s5_discretize(
    Lambda: Complex[ArrayLike, "*#batch #n"],
    dt: Float[ArrayLike, "*#batch #n"],
    discretization: Literal["zoh", "bilinear"] = "zoh",
) -> tuple[Complex[Array, "..."], Complex[Array, "..."]]:
    """Discretize the diagonal system `x' = Λ x + B u` with a step `Δ` per state.

    Returns `Λ̄` and the input gain `γ`, with `B̄ = γ ⊙ B` row by row (`γ` does not
    depend on `B`, so a per-step discretization never forms an `(L, n, H)` tensor):

    - `"zoh"`: `Λ̄ = exp(ΛΔ)`, `γ = (Λ̄ − 1)/Λ`;
    - `"bilinear"`: `Λ̄ = (1 − ΔΛ/2)⁻¹ (1 + ΔΛ/2)`, `γ = (1 − ΔΛ/2)⁻¹ Δ`.

    **Arguments:**

    - `Lambda`: `(..., n)` complex eigenvalues.
    - `dt`: step sizes, broadcastable to `Lambda` (one per state, and per position
      for irregular sampling). `Δ = 0` gives `Λ̄ = 1`, `γ = 0`.
    - `discretization`: `"zoh"` or `"bilinear"`.

    **Returns:** `(Lambda_bar, gamma)`, both of the broadcast shape.
    """
    Lambda, dt = jnp.asarray(Lambda), jnp.asarray(dt)
    shape = jnp.broadcast_shapes(Lambda.shape, dt.shape)
    # Each state is a one-dimensional system (trailing axis of size 1) with input 1,
    # so the shared discretizations give Λ̄ and γ = B̄ / B exactly.
    A = jnp.broadcast_to(Lambda, shape)[..., None]
    dt = jnp.broadcast_to(dt, shape)
    if discretization == "zoh":
        A_bar, gamma = discretize_zoh(A, jnp.ones_like(A), dt)
    elif discretization == "bilinear":
        A_bar, gamma = discretize_bilinear(A, jnp.ones_like(A), dt)
    else:
        raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
    return A_bar[..., 0], gamma[..., 0]


def s5_scan(
    Lambda_bar: Complex[ArrayLike, "*#batch n"],
    Bu: Complex[ArrayLike, "L n"],
    *,
    reverse: bool = False,
    impl: Literal["auto", "xla", "pallas"] = "auto",
) -> Complex[Array, "L n"]:
    """The states of `x_k = Λ̄_k x_{k−1} + (B̄u)_k`, `x_{−1} = 0`, by a parallel scan.

    The elements `(Λ̄_k, (B̄u)_k)` compose as `(a₁, b₁) ∘ (a₂, b₂) = (a₂a₁, a₂b₁ + b₂)`,
    which is associative, so `jax.lax.associative_scan` evaluates the recurrence in
    `O(log L)` depth (Smith, Warrington and Linderman, "Simplified State Space
    Layers for Sequence Modeling", ICLR 2023). This is
    `seqkit.kernels.linear_scan` with `impl="xla"`; its Pallas kernel (a
    chunked sequential scan) serves `impl="pallas"`, and `impl="auto"` on GPU/TPU.

    **Arguments:**

    - `Lambda_bar`: `(n,)` for a time-invariant system or `(L, n)` for one
      discretized per position (irregular sampling).
    - `Bu`: `(L, n)`, the discretized inputs `B̄_k u_k`.
    - `reverse`: run from the end: `x_k = Λ̄_k x_{k+1} + (B̄u)_k`, `x_L = 0`.
    - `impl`: `"auto"`, `"xla"` or `"pallas"` (see `seqkit.kernels.linear_scan`).

    **Returns:** `(L, n)`, the states.
    """
    return linear_scan(Lambda_bar, Bu, reverse=reverse, impl=impl)


def _init_eigensystem(state_size: int, blocks: int, conj_sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """`(Λ, V)`: `blocks` copies of HiPPO-N's eigenvalues of size `P/J`, and the
    block-diagonal eigenvectors `(P, n)` of the kept modes (float64 NumPy)."""
    size = state_size // blocks
    h = hippo_legs(size)
    keep = slice(0, size // 2) if conj_sym else slice(0, size)
    lam = np.tile(h.Lambda[keep], blocks)
    V = np.kron(np.eye(blocks), h.V[:, keep])
    return lam, V


class S5(AbstractSSMCore):
    r"""S5 core: one multi-input multi-output (MIMO) diagonal state space for all channels.

    Where S4D runs `H` single-input single-output systems, S5 runs one system with
    input `u ∈ R^H` and a complex state `x ∈ C^P`:

    `x'(t) = Λ x(t) + B u(t)`,  `y(t) = Re(C x(t)) + D ⊙ u(t)`,

    with `Λ = diag(λ)`, `B ∈ C^{P×H}`, `C ∈ C^{H×P}`, `D ∈ R^H` and a timescale
    `Δ_p` per state. Discretized by zero-order hold (`Λ̄ = exp(ΛΔ)`,
    `B̄ = (Λ̄ − 1)/Λ ⊙ B`) or bilinear (`Λ̄ = (1 − ΔΛ/2)⁻¹(1 + ΔΛ/2)`,
    `B̄ = (1 − ΔΛ/2)⁻¹ Δ B`), the recurrence `x_k = Λ̄ x_{k−1} + B̄ u_k`,
    `y_k = Re(C x_k) + D ⊙ u_k` is evaluated by a parallel scan
    ([`seqkit.ssm.s5_scan`][]), not by a convolution.

    **Initialization.** `Λ` holds the eigenvalues of HiPPO-N, the normal part
    `A + P Pᵀ` of HiPPO-LegS (`P_n = sqrt(n + 1/2)`, all `Re λ = −1/2`), of size
    `P/J` repeated over `J = blocks` blocks (a block-diagonal init). With `V` the
    (block-diagonal, unitary) eigenvectors, real `B ∈ R^{P×H}` and `C ∈ R^{H×P}`
    are drawn LeCun-normal (variance `1/H` and `1/P`) and stored in the eigenbasis,
    `B̃ = V⁻¹ B`, `C̃ = C V`. `log Δ ~ U[log dt_min, log dt_max]` per stored state,
    `D ~ N(0, 1)`.

    **Conjugate symmetry** (`conj_sym=True`, the default): a real system's
    eigenvalues come in conjugate pairs, so only the `n = P/2` with positive imaginary
    part are stored and the output is `y = 2 Re(C̃ x) + D ⊙ u`. With `conj_sym=False`
    all `n = P` modes are stored and `y = Re(C̃ x) + D ⊙ u`.

    **Bidirectional** (`bidirectional=True`): a second scan runs from the end of the
    sequence with the same `Λ̄`, `B̄` (and the same per-position steps) and its own
    `C̃_b`; the two readouts are summed, `y_k = Re(C̃ x_k) + Re(C̃_b x^b_k) + D ⊙ u_k`
    with `x^b_k = Λ̄_k x^b_{k+1} + B̄_k u_k`; equivalently one `[C̃, C̃_b] ∈ C^{H×2n}`
    acting on the concatenated forward and backward states.

    **Irregular sampling**: `core(u, timesteps=t)` scales every step, `Δ_k = Δ · t_k`,
    and discretizes per position (`Λ̄_k`, `B̄_k`). Under zero-order hold this is the
    exact solution of `x' = diag(Δ)(Λ x + B u)` with `u_k` held over the interval
    of length `t_k` that ends at sample `k`.

    ```python
    core = seqkit.ssm.S5(64, state_size=64, blocks=4, key=jax.random.key(0))
    y = core(u)                        # u: (L, 64), any L
    y = core(u, timesteps=gaps)        # gaps: (L,) positive, irregular sampling
    ```

    One example at a time: `u` is `(L, d_model)`; batch with `jax.vmap`. S5 is an
    SSM core for [`seqkit.nn.SSMLayer`][] (activation, dropout and output map
    follow it), but it has no per-channel convolution kernel: `kernel` and
    `discrete_system` raise `NotImplementedError`.

    Smith, Warrington and Linderman, "Simplified State Space Layers for Sequence
    Modeling", ICLR 2023.
    """

    log_neg_re: Float[Array, " n"]
    lambda_im: Float[Array, " n"]
    b_re: Float[Array, "n H"]
    b_im: Float[Array, "n H"]
    c_re: Float[Array, "*dirs H n"]
    c_im: Float[Array, "*dirs H n"]
    D: Float[Array, " H"]
    log_dt: Float[Array, " n"]
    d_model: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    blocks: int = eqx.field(static=True)
    conj_sym: bool = eqx.field(static=True)
    discretization: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    impl: str = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        state_size: int = 64,
        *,
        blocks: int = 1,
        conj_sym: bool = True,
        discretization: Literal["zoh", "bilinear"] = "zoh",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        impl: Literal["auto", "xla", "pallas"] = "auto",
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: channels `H`.
        - `state_size`: `P`, the state size of the real system (`n = P/2` complex
          modes stored with `conj_sym`, `n = P` without).
        - `blocks`: `J`, the number of HiPPO-N blocks of size `P/J` (even) in the init.
        - `conj_sym`: store one mode of each conjugate pair and read out `2 Re(·)`.
        - `discretization`: `"zoh"` or `"bilinear"`.
        - `bidirectional`: add a second scan over the reversed sequence (own `C`).
        - `dt_min`, `dt_max`: range of the initial step sizes (log-uniform).
        - `impl`: the scan's implementation, `"auto"`, `"xla"` or `"pallas"`
          (see `seqkit.kernels.linear_scan`); every choice gives the same states.
        - `key`: PRNG key.
        """
        if impl not in ("auto", "xla", "pallas"):
            raise ValueError(f"impl must be 'auto', 'xla' or 'pallas', got {impl!r}")
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        if blocks < 1 or state_size % blocks or (state_size // blocks) % 2 or state_size < 2:
            raise ValueError(
                "expected state_size to split into `blocks` blocks of an even size >= 2, "
                f"got state_size={state_size} and blocks={blocks}"
            )
        lam, V = _init_eigensystem(state_size, blocks, conj_sym)
        H, P, n = d_model, state_size, lam.shape[0]
        bkey, ckey, dkey, tkey = jr.split(key, 4)
        dirs = (2,) if bidirectional else ()
        cdtype = complex_dtype(default_float())
        Vc = jnp.asarray(V, cdtype)
        # Real B and C, moved into the eigenbasis: B̃ = V⁻¹ B = V* B (V unitary), C̃ = C V.
        B = jr.normal(bkey, (P, H)) / math.sqrt(H)
        C = jr.normal(ckey, (*dirs, H, P)) / math.sqrt(P)
        B_tilde = Vc.conj().T @ to_complex(B)
        C_tilde = to_complex(C) @ Vc
        self.log_neg_re = tile_param(np.log(-lam.real), (n,))
        self.lambda_im = tile_param(lam.imag, (n,))
        self.b_re, self.b_im = jnp.real(B_tilde), jnp.imag(B_tilde)
        self.c_re, self.c_im = jnp.real(C_tilde), jnp.imag(C_tilde)
        self.D = jr.normal(dkey, (H,))
        self.log_dt = init_log_dt(tkey, n, dt_min, dt_max)
        self.d_model = d_model
        self.state_size = state_size
        self.blocks = blocks
        self.conj_sym = conj_sym
        self.discretization = discretization
        self.bidirectional = bidirectional
        self.impl = impl

    def _params(self):
        """`(Λ (n,), B̃ (n, H), C̃ (dirs, H, n), Δ (n,))`."""
        Lambda = lax.complex(negative_real(self.log_neg_re), self.lambda_im)
        B = lax.complex(self.b_re, self.b_im)
        C = lax.complex(self.c_re, self.c_im)
        return Lambda, B, C if self.bidirectional else C[None], clamp_dt(self.log_dt)

    def _readout(self, C: Array, x: Array) -> Array:
        """`Re(C x)` per position, doubled for the conjugate partners that are not stored."""
        y = jnp.real(x @ C.T)
        return 2.0 * y if self.conj_sym else y

    def ssm_parameters(self) -> tuple:
        """Λ, B and log Δ (SSM learning rate, no weight decay); `C` and `D` are not."""
        return (self.log_neg_re, self.lambda_im, self.b_re, self.b_im, self.log_dt)

    def skip(self) -> Float[Array, " d_model"]:
        return self.D

    def kernel(self, L: int) -> Array:
        """Not defined: S5 mixes channels, so it has no `(d_model, L)` kernel."""
        raise NotImplementedError("S5 is a MIMO system run as a scan; it has no per-channel kernel")

    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        raise NotImplementedError("S5 is a MIMO system; it has no per-channel discrete system")

    def __call__(
        self,
        u: Array,
        *,
        mask: Array | None = None,
        timesteps: ArrayLike | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "L d_model"]:
        """The parallel scan over the sequence.

        **Arguments:**

        - `u`: `(L, d_model)` real input (one example).
        - `mask`: optional bool `(L,)`, True at real positions. Padded inputs are
          replaced by zeros, so they reach no real output in either direction.
        - `timesteps`: optional `(L,)` finite, non-negative step multipliers for
          irregular sampling: position `k` is discretized with `Δ · timesteps[k]`,
          the time elapsed since position `k − 1` (padding may use 0 or 1).
        - `key`: unused (cores have no dropout); accepted for the mixer interface.

        **Returns:** `(L, d_model)`.
        """
        del key
        u = self._check_input(u)
        L = u.shape[0]
        mask = check_mask(mask, L)
        if mask is not None:
            u = jnp.where(mask[:, None], u, jnp.zeros_like(u))
        Lambda, B, C, dt = self._params()
        if timesteps is not None:
            dt = dt[None, :] * self._check_timesteps(timesteps, (L,))[:, None]
        Lambda_bar, gamma = s5_discretize(Lambda, dt, self.discretization)
        Bu = gamma * (to_complex(u) @ B.T)
        y = self._readout(C[0], s5_scan(Lambda_bar, Bu, impl=self.impl))
        if self.bidirectional:
            y = y + self._readout(C[1], s5_scan(Lambda_bar, Bu, reverse=True, impl=self.impl))
        return y + self.D * u

    def _check_timesteps(
        self, timesteps: ArrayLike, shape: tuple[int, ...], name: str = "timesteps"
    ) -> Array:
        t = jnp.asarray(timesteps)
        if t.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {t.shape}")
        if not jnp.issubdtype(t.dtype, jnp.floating):
            raise ValueError(f"expected a real floating {name}, got dtype {t.dtype}")
        # values are known only at run time (under jit too): a runtime error, not a NaN later
        t = eqx.error_if(
            t,
            ~jnp.all(jnp.isfinite(t) & (t >= 0)),
            "expected finite, non-negative timesteps (step multipliers); got a negative, inf or NaN one",
        )
        return t.astype(self.D.dtype)

    def init_state(self, L: int | None = None) -> S5State:
        """A zero state for recurrent mode (causal cores only); `L` is unused."""
        del L
        if self.bidirectional:
            raise ValueError("recurrent mode needs a causal core; this core is bidirectional")
        n = self.log_dt.shape[0]
        return S5State(x=jnp.zeros((n,), complex_dtype(self.D.dtype)))

    def step(
        self,
        u_t: Array,
        state: S5State,
        *,
        timestep: ArrayLike | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " d_model"], S5State]:
        """One step of recurrent mode, `O(n·H)`.

        **Arguments:** `u_t`, the `(d_model,)` input at one position; `state`;
        `timestep`, an optional scalar step multiplier (as `timesteps[k]` in
        `__call__`); `key`, unused.

        **Returns:** `(y_t, state)`.
        """
        del key
        if self.bidirectional:
            raise ValueError("recurrent mode needs a causal core; this core is bidirectional")
        u_t = jnp.asarray(u_t)
        if u_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {u_t.shape}")
        u_t = u_t.astype(self.D.dtype)
        Lambda, B, C, dt = self._params()
        if timestep is not None:
            dt = dt * self._check_timesteps(timestep, (), "timestep")
        # The discretization is recomputed each step: it costs O(n), less than B̃ u.
        Lambda_bar, gamma = s5_discretize(Lambda, dt, self.discretization)
        x = Lambda_bar * state.x + gamma * (B @ to_complex(u_t))
        y = self._readout(C[0], x[None])[0] + self.D * u_t
        return y, S5State(x=x)
