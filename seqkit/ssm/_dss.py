"""DSS: diagonal state spaces with the exp or softmax kernel."""

from typing import Literal, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float, Int, PRNGKeyArray

from seqkit._typing import ArrayLike
from seqkit.kernels import vandermonde

from ._base import (
    AbstractSSMCore,
    DiscreteSystem,
    SSMState,
    clamp_dt,
    init_readout,
    negative_real,
    per_direction,
    tile_param,
    to_complex,
)
from ._hippo import legs


def _expm1c(z: Array) -> Array:
    """exp(z) − 1 for complex z, accurate for small |z|."""
    a, b = jnp.real(z), jnp.imag(z)
    s = jnp.sin(b / 2)
    return lax.complex(jnp.expm1(a) * jnp.cos(b) - 2.0 * s * s, jnp.exp(a) * jnp.sin(b))


def _geometric_sum(x: Array, L: int | Array) -> Array:
    """Σ_{l<L} exp(x l) for Re x ≤ 0, computed as expm1(xL)/expm1(x); `L` may be a
    traced scalar."""
    tiny = jnp.abs(x) < 1e-30
    safe = jnp.where(tiny, jnp.ones_like(x), x)
    if not isinstance(L, int):
        L = to_complex(jnp.asarray(L, jnp.real(x).dtype))
    return jnp.where(tiny, jnp.full_like(x, L), _expm1c(safe * L) / _expm1c(safe))


class DSSSoftmaxState(NamedTuple):
    """Recurrent state of a DSS-softmax core, whose growing modes run reflected.

    A mode with `Re λΔ > 0` normalised over `L` has `B̄ ≈ e^{−λΔ(L−1)}` and
    `Ā^{L−1} = e^{λΔ(L−1)}`: past `Re λΔ · L ≈ 88` (float32) one underflows and
    the other overflows, and no `(Ā, B̄, C)` recurrence holds the mode. Written
    with the kernel's reflection, `y_t ∋ Re(C e^{−λΔ(L−1−t)} g_t)` with
    `g_t = g_{t−1} + e^{−λΔ t} u_t / Σ_{l<L} e^{−λΔ l}`, every factor is at most
    1 in modulus. Decaying modes keep `x_t = Ā x_{t−1} + B̄ u_t`.

    **Fields:** `x` (the modes' states, `g` for growing ones); `system` (`Ā = 1` and
    `B̄ = 1/Σ e^{−λΔ l}` for growing modes); `rate`, `−λΔ` for a growing mode
    and 0 for a decaying one; `t`, the position of the next input; `last`, `L − 1`.
    """

    x: Complex[Array, "H n"]
    system: DiscreteSystem
    rate: Complex[Array, "H n"]
    t: Int[Array, ""]
    last: Int[Array, ""]


def dss_kernel(
    Lambda: Complex[ArrayLike, "H n"],
    W: Complex[ArrayLike, "*dirs H n"],
    dt: Float[ArrayLike, " H"],
    L: int,
    variant: Literal["exp", "softmax"] = "exp",
    *,
    length: int | ArrayLike | None = None,
    impl: Literal["auto", "xla", "pallas"] = "auto",
) -> Float[ArrayLike, "*dirs H L"]:
    """DSS kernel (Gupta, Gu and Berant, "Diagonal State Spaces are as Effective
    as Structured State Spaces", 2022), with `P_{n,l} = λ_n Δ l`:

    - `"exp"`: `K_l = Re Σ_n w_n (exp(λ_n Δ) − 1)/λ_n · exp(P_{n,l})` (needs `Re λ < 0`);
    - `"softmax"`: `K = Re(w · Λ⁻¹ · row_softmax(P))`, the softmax over `l < L` of a
      complex row, `exp(P_{n,l}) / Σ_{l'} exp(P_{n,l'})`. Any sign of `Re λ` is
      allowed: a growing mode is evaluated reflected, `exp(−λΔ(L−1−l))` over
      its own sum, which is the same softmax without overflow.

    **Arguments:**

    - `Lambda`: `(H, n)` poles.
    - `W`: `(H, n)` or `(dirs, H, n)` weights `w = C ⊙ B`.
    - `dt`: `(H,)` step sizes.
    - `L`: kernel length.
    - `variant`: `"exp"` or `"softmax"`.
    - `length`: the softmax's normalizing length `1 <= n <= L` (default `L`), a Python
      int (outside that range a `ValueError`) or a traced scalar (clipped into it):
      the taps `l < n` are then those of the length-`n` kernel (a padded sequence
      with `n` real positions sees the kernel of the unpadded one); the taps
      `l >= n` are unspecified.
    - `impl`: the Vandermonde product's implementation, `"auto"`, `"xla"` or
      `"pallas"` (see `seqkit.kernels.vandermonde`).

    **Returns:** `(*dirs, H, L)`.
    """
    Lambda, W, dt = map(jnp.asarray, (Lambda, W, dt))
    x = Lambda * to_complex(dt)[:, None]  # λΔ
    if variant == "exp":
        v = W * (_expm1c(x) / Lambda)
        return vandermonde(v, jnp.broadcast_to(x, v.shape), L, impl=impl)
    if variant != "softmax":
        raise ValueError(f"variant must be 'exp' or 'softmax', got {variant!r}")
    if length is not None:
        if isinstance(length, (int, np.integer)):
            if not 1 <= length <= L:
                raise ValueError(f"expected a normalizing length 1 <= length <= L={L}, got {length}")
        else:  # traced (a mask's real span): kept in range
            length = jnp.clip(jnp.asarray(length), 1, L)
    grows = jnp.real(x) > 0
    xs = jnp.where(grows, -x, x)  # Re(xs) ≤ 0
    v = W / Lambda / _geometric_sum(xs, L if length is None else length)
    zero = jnp.zeros_like(v)
    xb = jnp.broadcast_to(xs, v.shape)
    decaying = vandermonde(jnp.where(grows, zero, v), xb, L, impl=impl)
    growing = vandermonde(jnp.where(grows, v, zero), xb, L, impl=impl)
    if length is None:
        return decaying + growing[..., ::-1]
    # Reflect about n − 1 instead of L − 1: tap l of a growing mode is exp(−x(n−1−l)).
    n = jnp.asarray(length).astype(jnp.int32)
    taps = jnp.clip(n - 1 - jnp.arange(L, dtype=jnp.int32), 0, L - 1)
    return decaying + jnp.take(growing, taps, axis=-1)


class DSS(AbstractSSMCore):
    """DSS core: diagonal state space with `w = C ⊙ B` learned directly.

    Per channel, `N/2` complex modes `λ_n` (initialised from the diagonal of
    HiPPO-LegS's normal part), a step `Δ`, and weights `w`; the kernel is
    `dss_kernel(Λ, w, Δ, L, variant)`. For `"exp"`, `Re λ = −exp(θ)`; for
    `"softmax"`, `Re λ = θ` is unconstrained (the softmax normalises growth).

    The softmax kernel is normalised over the input length `L`, so it is not the
    first `L` taps of a longer kernel. With a padding mask it is normalised over
    the real span instead (from the first to the last real position), so an input
    padded on either side gives the outputs of the unpadded one at its real
    positions.

    ```python
    core = seqkit.ssm.DSS(64, variant="exp", key=jax.random.key(0))
    y = core(u)  # u: (L, 64)
    ```

    Gupta, Gu and Berant, "Diagonal State Spaces are as Effective as
    Structured State Spaces", NeurIPS 2022.
    """

    lambda_re: Float[Array, "H n"]
    lambda_im: Float[Array, "H n"]
    w_re: Float[Array, "*dirs H n"]
    w_im: Float[Array, "*dirs H n"]
    D: Float[Array, " H"]
    log_dt: Float[Array, " H"]
    d_model: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    variant: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        state_size: int = 64,
        *,
        variant: Literal["exp", "softmax"] = "exp",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: channels `H`.
        - `state_size`: `N`, the (even) real state size; `N/2` complex modes.
        - `variant`: `"exp"` or `"softmax"`.
        - `bidirectional`: add a second kernel run over the reversed sequence.
        - `dt_min`, `dt_max`: range of the initial step sizes (log-uniform).
        - `key`: PRNG key.
        """
        if variant not in ("exp", "softmax"):
            raise ValueError(f"variant must be 'exp' or 'softmax', got {variant!r}")
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        lam, _ = legs(state_size)
        H, n = d_model, state_size // 2

        def tile(a):
            return tile_param(a, (H, n))

        self.lambda_re = tile(np.log(-lam.real) if variant == "exp" else lam.real)
        self.lambda_im = tile(lam.imag)
        self.w_re, self.w_im, self.D, self.log_dt = init_readout(key, H, n, bidirectional, dt_min, dt_max)
        self.d_model = d_model
        self.state_size = state_size
        self.variant = variant
        self.bidirectional = bidirectional

    def _params(self):
        re = negative_real(self.lambda_re) if self.variant == "exp" else self.lambda_re
        Lambda = lax.complex(re, self.lambda_im)
        W = lax.complex(self.w_re, self.w_im)
        return Lambda, W, clamp_dt(self.log_dt)

    def ssm_parameters(self) -> tuple:
        """Λ and log Δ (DSS: SSM learning rate, no weight decay)."""
        return (
            self.lambda_re,
            self.lambda_im,
            self.log_dt,
        )

    def skip(self) -> Float[Array, " d_model"]:
        return self.D

    def kernel(self, L: int) -> Float[Array, "*dirs d_model L"]:
        """The kernel, `(d_model, L)` or `(2, d_model, L)`."""
        return dss_kernel(*self._params(), L, self.variant)

    def masked_kernel(self, L: int, mask: Array) -> Float[Array, "*dirs d_model L"]:
        """The kernel for an input with padding `mask`: DSS-softmax normalizes over the
        real span `n` (from the first to the last real position; `L` when none is
        real) rather than `L`. A real output then meets only lags `< n` (causal: back
        to the first real position; bidirectional: also on to the last), so padding on
        either side leaves the unpadded input's outputs; holes inside count as zeros."""
        if self.variant != "softmax":
            return self.kernel(L)
        first = jnp.argmax(mask).astype(jnp.int32)
        n = L - jnp.argmax(mask[::-1]).astype(jnp.int32) - first
        return dss_kernel(*self._params(), L, self.variant, length=n)

    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        Lambda, W, dt = self._params()
        x = Lambda * to_complex(dt)[:, None]
        A_bar = jnp.exp(x)
        if self.variant == "exp":
            B_bar, C = _expm1c(x) / Lambda, W
        else:
            if L is None:
                raise ValueError("the DSS-softmax system depends on the sequence length: pass L")
            # B̄ = 1 / Σ_{l<L} e^{xl}; a growing mode's sum is e^{x(L−1)} Σ e^{−xl}, so
            # its B̄ underflows to 0 (rather than NaN) where Ā^{L−1} overflows.
            grows = jnp.real(x) > 0
            xs = jnp.where(grows, -x, x)
            tail = jnp.where(grows, jnp.exp(xs * (L - 1)), jnp.ones_like(x))
            B_bar = tail / _geometric_sum(xs, L)
            C = W / Lambda
        return per_direction(A_bar, B_bar, C if self.bidirectional else C[None], self.D)

    @property
    def length_dependent(self) -> bool:
        """True for the softmax kernel, normalized over the sequence length."""
        return self.variant == "softmax"

    def init_state(self, L: int | None = None) -> SSMState | DSSSoftmaxState:
        """A zero state for recurrent mode (causal cores only).

        **Arguments:** `L`, the sequence length (the softmax variant normalises
        over it). The softmax variant's state is a [`seqkit.ssm.DSSSoftmaxState`][]:
        its growing modes run reflected, exact at any `L` (its
        `discrete_system(L)` holds them only while `Re λΔ · L` fits the dtype's
        exponent range).
        """
        state = super().init_state(L)
        if self.variant != "softmax":
            return state
        Lambda, _, dt = self._params()
        x = Lambda * to_complex(dt)[:, None]
        grows = jnp.real(x) > 0
        assert L is not None  # the softmax system needs it (checked in _systems)
        system = state.system._replace(
            A_bar=jnp.where(grows, jnp.ones_like(x), state.system.A_bar),
            B_bar=jnp.where(grows, 1.0 / _geometric_sum(-x, L), state.system.B_bar),
        )
        zero = jnp.zeros((), jnp.int32)
        rate = jnp.where(grows, -x, jnp.zeros_like(x))
        return DSSSoftmaxState(state.x, system, rate, zero, zero + (L - 1))

    def step(
        self, u_t: Array, state: SSMState | DSSSoftmaxState, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], SSMState | DSSSoftmaxState]:
        """One step of recurrent mode: `(y_t, state)` for the `(d_model,)` input `u_t`."""
        if not isinstance(state, DSSSoftmaxState):
            return super().step(u_t, state, key=key)
        u_t = jnp.asarray(u_t)
        if u_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {u_t.shape}")
        sys = state.system
        u = u_t.astype(sys.D.dtype)
        # the softmax is over the L steps given to init_state(L); past them a growing
        # mode's readout factor exp(−λΔ(last − t)) grows without bound
        t = eqx.error_if(
            state.t,
            state.t > state.last,
            "stepped past the length given to init_state(L); make the state with a larger L",
        )
        state = state._replace(t=t)
        real = jnp.real(state.rate).dtype
        t_in, t_out = (to_complex(jnp.asarray(v, real)) for v in (state.t, state.last - state.t))
        x = sys.A_bar * state.x + sys.B_bar * jnp.exp(state.rate * t_in) * to_complex(u)[:, None]
        y = jnp.real(jnp.sum(sys.C * jnp.exp(state.rate * t_out) * x, axis=-1)) + sys.D * u
        return y, state._replace(x=x, t=state.t + 1)
