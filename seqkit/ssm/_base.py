"""What every SSM core shares: the discrete system, the recurrent state, and the
conv/step machinery around an abstract `kernel`."""

import abc
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from seqkit._checks import check_mask, check_sequence
from seqkit._mixer import AbstractRecurrentMixer

from ._conv import fft_conv

# Guards on the learned parameters: Δ stays in [DT_CLAMP] and Re(λ) at or below
# −RE_LAMBDA_FLOOR, so the kernels never see log(0), Δ = inf or Re(λ) = 0.
DT_CLAMP = (1e-6, 10.0)
RE_LAMBDA_FLOOR = 1e-4


class DiscreteSystem(NamedTuple):
    """A discrete linear system `x_k = A_bar x_{k−1} + B_bar u_k`,
    `y_k = Re(C x_k) + D u_k`, one per channel.

    **Fields:**

    - `A_bar`: `(H, n, n)` complex (or `(H, n)` for a diagonal system, inside
      recurrent states).
    - `B_bar`: `(H, n)` complex.
    - `C`: `(H, n)` complex.
    - `D`: `(H,)` real.
    """

    A_bar: Array
    B_bar: Array
    C: Array
    D: Array

    def dense(self) -> "DiscreteSystem":
        """The same system with a dense `(H, n, n)` state matrix."""
        if self.A_bar.ndim == self.B_bar.ndim:
            A = jax.vmap(jnp.diag)(self.A_bar)
            return self._replace(A_bar=A)
        return self


class SSMState(NamedTuple):
    """State of an SSM core in recurrent mode.

    `x` is the hidden state; `system` is the discrete system the core was
    discretized to when the state was made (computed once by `init_state`, so
    each `step` costs `O(H n)` for diagonal and `O(H n²)` for DPLR cores). Make a
    new state after the parameters change.
    """

    x: Complex[Array, "H n"]
    system: DiscreteSystem


def default_float() -> jnp.dtype:
    """float32, or float64 when 64-bit types are enabled (as `jax.random.normal`)."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def tile_param(a, shape: tuple[int, ...]) -> Array:
    """A float64 NumPy init value broadcast to `shape`, in the default float dtype."""
    return jnp.asarray(np.broadcast_to(a, shape).copy(), default_float())


def complex_dtype(dtype) -> jnp.dtype:
    return jnp.dtype(jnp.complex128 if jnp.dtype(dtype) == jnp.float64 else jnp.complex64)


def to_complex(x: Array) -> Array:
    """A real array as complex of the matching precision (explicit under strict promotion)."""
    if jnp.iscomplexobj(x):
        return x
    return lax.complex(x, jnp.zeros_like(x))


def clamp_dt(log_dt: Array) -> Array:
    """Δ = exp(log Δ), clamped to `DT_CLAMP`, so `log Δ` can never produce a zero or infinite step."""
    lo, hi = DT_CLAMP
    return jnp.exp(jnp.clip(log_dt, math.log(lo), math.log(hi)))


def negative_real(log_neg_re: Array) -> Array:
    """Re(λ) = −exp(log(−Re λ)), kept at or below −RE_LAMBDA_FLOOR."""
    return -jnp.maximum(jnp.exp(log_neg_re), RE_LAMBDA_FLOOR)


def init_log_dt(key: PRNGKeyArray, H: int, dt_min: float, dt_max: float) -> Float[Array, " H"]:
    """log Δ uniform in `[log dt_min, log dt_max]`, within `DT_CLAMP` (Δ is clamped
    there in use, so a range outside it would start at the bound, with a zero
    gradient for log Δ: refused)."""
    lo, hi = DT_CLAMP
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"expected 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    if not lo <= dt_min <= dt_max <= hi:
        raise ValueError(
            f"expected {lo:g} <= dt_min <= dt_max <= {hi:g} (the range Δ is clamped to), "
            f"got dt_min={dt_min}, dt_max={dt_max}"
        )
    return jr.uniform(key, (H,), minval=math.log(dt_min), maxval=math.log(dt_max))


def init_readout(
    key: PRNGKeyArray, H: int, n: int, bidirectional: bool, dt_min: float, dt_max: float
) -> tuple[Array, Array, Array, Array]:
    """Initial output vectors, skip weights and step sizes shared by the complex cores.

    **Returns:** `(c_re, c_im, D, log_dt)`: `C ~ CN(0, 1)` per direction (real and
    imaginary parts of variance 1/2, shape `(H, n)` or `(2, H, n)`), `D ~ N(0, 1)`,
    and `log Δ` uniform in `[log dt_min, log dt_max]`.
    """
    ckey, dkey, tkey = jr.split(key, 3)
    dirs = (2,) if bidirectional else ()
    c = jr.normal(ckey, (2, *dirs, H, n)) * math.sqrt(0.5)
    return c[0], c[1], jr.normal(dkey, (H,)), init_log_dt(tkey, H, dt_min, dt_max)


def per_direction(
    A_bar: Array, B_bar: Array, C: Array, D: Array, *, stacked: bool = False
) -> tuple[DiscreteSystem, ...]:
    """One discrete system per direction, `D` in the first (forward) one.

    `C` carries a leading direction axis `(dirs, H, n)`; `A_bar` and `B_bar` are
    shared by the directions, or also stacked along a leading axis (`stacked=True`).
    """
    return tuple(
        DiscreteSystem(
            A_bar[i] if stacked else A_bar,
            B_bar[i] if stacked else B_bar,
            C[i],
            D if i == 0 else jnp.zeros_like(D),
        )
        for i in range(C.shape[0])
    )


def ssm_step(
    system: DiscreteSystem, x: Complex[Array, "H n"], u: Float[Array, " H"]
) -> tuple[Float[Array, " H"], Complex[Array, "H n"]]:
    """One step of `x ← A_bar x + B_bar u`, `y = Re(C x) + D u`."""
    uc = to_complex(u.astype(system.D.dtype))[:, None]
    if system.A_bar.ndim == x.ndim:
        x = system.A_bar * x + system.B_bar * uc
    else:
        x = jnp.einsum("hij,hj->hi", system.A_bar, x) + system.B_bar * uc
    y = jnp.real(jnp.sum(system.C * x, axis=-1)) + system.D * u.astype(system.D.dtype)
    return y, x


class AbstractSSMCore(AbstractRecurrentMixer):
    """An SSM core: the convolution `y = K ∗ u + D u` per channel, nothing else.

    Subclasses provide the kernel, the discrete system and their SSM parameters
    (`ssm_parameters`) from their own fields; this class provides convolution
    mode, recurrent mode (causal cores), padding masks and input checks. One
    example at a time: inputs are `(L, d_model)`, batch with `jax.vmap`.
    """

    d_model: eqx.AbstractVar[int]
    bidirectional: eqx.AbstractVar[bool]

    @property
    def causal(self) -> bool:
        """Whether the core is causal (runs one direction)."""
        return not self.bidirectional

    @abc.abstractmethod
    def kernel(self, L: int) -> Array:
        """The convolution kernel: `(d_model, L)`, or `(2, d_model, L)` when
        bidirectional (forward, then backward)."""

    def masked_kernel(self, L: int, mask: Array) -> Array:
        """The kernel applied to an input with padding `mask` (True = real): the
        plain kernel, except for cores whose kernel depends on the input length."""
        del mask
        return self.kernel(L)

    @abc.abstractmethod
    def skip(self) -> Float[Array, " d_model"]:
        """The skip weights `D`."""

    @abc.abstractmethod
    def ssm_parameters(self) -> tuple:
        """The state matrix, input and step-size leaves (trained at the SSM learning
        rate, no weight decay); the output map `C` and skip `D` are not among them."""

    @abc.abstractmethod
    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        """One discrete system per direction (diagonal ones may keep `A_bar`
        diagonal); `D` sits in the first, the backward one has `D = 0`."""

    def _check_dtype(self) -> None:
        dtype = self.skip().dtype
        if dtype not in (jnp.float32, jnp.float64):
            raise ValueError(
                f"{type(self).__name__}: SSM core parameters must be float32 or float64, got "
                f"{dtype}; keep the core in float32 (its kernels are complex and FFT-based) and "
                "cast the rest of the model"
            )

    def _check_input(self, u: Array) -> Array:
        self._check_dtype()
        u = check_sequence(u, self.d_model)
        return u.astype(self.skip().dtype)

    def __call__(
        self, u: Array, *, mask: Array | None = None, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L d_model"]:
        """`y = K ∗ u + D u` by FFT convolution.

        **Arguments:**

        - `u`: `(L, d_model)` real input (one example).
        - `mask`: optional bool `(L,)`, True at real positions. Padded inputs are
          replaced by zeros before the convolution, so they reach no real output in
          either direction.
        - `key`: unused (cores have no dropout); accepted for the mixer interface.

        **Returns:** `(L, d_model)`, in the parameters' dtype (float32 or float64;
        the input is cast to it).
        """
        del key
        u = self._check_input(u)
        L = u.shape[0]
        mask = check_mask(mask, L)
        if mask is None:
            return fft_conv(u, self.kernel(L), self.skip())
        u = jnp.where(mask[:, None], u, jnp.zeros_like(u))
        return fft_conv(u, self.masked_kernel(L, mask), self.skip())

    def discrete_system(self, L: int | None = None) -> DiscreteSystem | tuple[DiscreteSystem, DiscreteSystem]:
        """The equivalent discrete system(s), built from the parameters.

        `x_k = A_bar x_{k−1} + B_bar u_k`, `y_k = Re(C x_k) + D u_k` reproduces
        `__call__` for inputs of length `L` (needed only where the system
        depends on it, e.g. DSS-softmax). Bidirectional cores return
        `(forward, backward)`: `__call__(u)` equals the forward recurrence on `u`
        plus the backward recurrence on `u[::-1]`, reversed back.

        **Returns:** a [`seqkit.ssm.DiscreteSystem`][] with dense `A_bar`
        `(d_model, n, n)`, or a pair of them.
        """
        systems = tuple(s.dense() for s in self._systems(L))
        return systems if self.bidirectional else systems[0]

    def init_state(self, L: int | None = None) -> SSMState:
        """A zero state for recurrent mode (causal cores only).

        **Arguments:** `L`, the sequence length, where the system depends on it.
        """
        if self.bidirectional:
            raise ValueError("recurrent mode needs a causal core; this core is bidirectional")
        self._check_dtype()
        (system,) = self._systems(L)
        return SSMState(x=jnp.zeros(system.B_bar.shape, system.B_bar.dtype), system=system)

    def step(
        self, u_t: Array, state: SSMState, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], SSMState]:
        """One step of recurrent mode.

        **Arguments:** `u_t`, the `(d_model,)` input at one position; `state`;
        `key`, unused (cores have no dropout).

        **Returns:** `(y_t, state)`.
        """
        del key
        if self.bidirectional:
            raise ValueError("recurrent mode needs a causal core; this core is bidirectional")
        u_t = jnp.asarray(u_t)
        if u_t.shape != (self.d_model,):
            raise ValueError(f"expected a step input of shape ({self.d_model},), got {u_t.shape}")
        y, x = ssm_step(state.system, state.x, u_t)
        return y, state._replace(x=x)
