"""S4D: diagonal state-space core with a Vandermonde kernel."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from seqkit._typing import ArrayLike

from ._base import (
    AbstractSSMCore,
    DiscreteSystem,
    clamp_dt,
    init_readout,
    negative_real,
    per_direction,
    tile_param,
    to_complex,
)
from ._discretize import discretize_bilinear, discretize_zoh
from ._hippo import inv, legs, lin
from ._powers import power_kernel

_INITS = {"legs": legs, "lin": lin, "inv": inv}


def _diag_discretize(Lambda, B, dt, discretization):
    """`(A_bar, B_bar, log_A_bar)` for a diagonal system, `log_A_bar` as
    `power_kernel` takes it (a function of the mask of poles at 0)."""
    dtc = to_complex(dt)[..., None]
    if discretization == "zoh":
        A_bar, B_bar = discretize_zoh(Lambda, B, dt)
        return A_bar, B_bar, lambda zero: Lambda * dtc
    if discretization == "bilinear":
        A_bar, B_bar = discretize_bilinear(Lambda, B, dt)
        # Ā = 0 for a real pole with Δ|λ|/2 = 1: a pole at 0, whose log is not taken
        return A_bar, B_bar, lambda zero: jnp.log(jnp.where(zero, jnp.ones_like(A_bar), A_bar))
    raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")


def s4d_kernel(
    Lambda: Complex[ArrayLike, "H n"],
    B: Complex[ArrayLike, "H n"],
    C: Complex[ArrayLike, "*dirs H n"],
    dt: Float[ArrayLike, " H"],
    L: int,
    discretization: Literal["zoh", "bilinear"] = "zoh",
    *,
    impl: Literal["auto", "xla", "pallas"] = "auto",
) -> Float[ArrayLike, "*dirs H L"]:
    """S4D kernel `K_l = 2 Re Σ_n C_n B̄_n Ā_n^l` (Gu et al., "On the Parameterization and
    Initialization of Diagonal State Space Models", 2022).

    Each stored mode stands for a conjugate pair, hence the `2 Re`.

    **Arguments:**

    - `Lambda`: `(H, n)` poles (`Re λ < 0`).
    - `B`, `C`: `(H, n)` input and output vectors; `C` may carry leading
      directions `(dirs, H, n)`.
    - `dt`: `(H,)` step sizes.
    - `L`: kernel length.
    - `discretization`: `"zoh"` or `"bilinear"`.
    - `impl`: the Vandermonde product's implementation, `"auto"`, `"xla"` or
      `"pallas"` (see `seqkit.kernels.vandermonde`).

    **Returns:** `(*dirs, H, L)`.
    """
    Lambda, B, C, dt = map(jnp.asarray, (Lambda, B, C, dt))
    A_bar, B_bar, log_A_bar = _diag_discretize(Lambda, B, dt, discretization)
    v = 2.0 * C * B_bar
    return power_kernel(v, jnp.broadcast_to(A_bar, v.shape), log_A_bar, L, impl=impl)


class S4D(AbstractSSMCore):
    """S4D core: a diagonal complex state-space model per channel.

    `A = diag(Λ)` with `N/2` stored modes (each a conjugate pair), discretized
    by zero-order hold or bilinear transform; the kernel
    `K_l = 2 Re Σ C_n B̄_n Ā_n^l` is a Vandermonde product computed without
    the `(H, N/2, L)` tensor.

    ```python
    core = seqkit.ssm.S4D(64, init="lin", key=jax.random.key(0))
    y = core(u)  # u: (L, 64), any L
    ```

    Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of
    Diagonal State Space Models", NeurIPS 2022.
    """

    log_neg_re: Float[Array, "H n"]
    lambda_im: Float[Array, "H n"]
    b_re: Float[Array, "H n"]
    b_im: Float[Array, "H n"]
    c_re: Float[Array, "*dirs H n"]
    c_im: Float[Array, "*dirs H n"]
    D: Float[Array, " H"]
    log_dt: Float[Array, " H"]
    d_model: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    init: str = eqx.field(static=True)
    discretization: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        state_size: int = 64,
        *,
        init: Literal["legs", "lin", "inv"] = "legs",
        discretization: Literal["zoh", "bilinear"] = "zoh",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: channels `H`.
        - `state_size`: `N`, the (even) real state size; `N/2` complex modes.
        - `init`: `"legs"` (diagonal of HiPPO-LegS's normal part), `"lin"` or `"inv"`.
        - `discretization`: `"zoh"` or `"bilinear"`.
        - `bidirectional`: add a second kernel run over the reversed sequence.
        - `dt_min`, `dt_max`: range of the initial step sizes (log-uniform).
        - `key`: PRNG key.
        """
        if init not in _INITS:
            raise ValueError(f"init must be one of {sorted(_INITS)}, got {init!r}")
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        lam, b = _INITS[init](state_size)
        H, n = d_model, state_size // 2

        def tile(a):
            return tile_param(a, (H, n))

        self.log_neg_re = tile(np.log(-lam.real))
        self.lambda_im = tile(lam.imag)
        self.b_re, self.b_im = tile(b.real), tile(b.imag)
        self.c_re, self.c_im, self.D, self.log_dt = init_readout(key, H, n, bidirectional, dt_min, dt_max)
        self.d_model = d_model
        self.state_size = state_size
        self.init = init
        self.discretization = discretization
        self.bidirectional = bidirectional

    def _params(self):
        Lambda = lax.complex(negative_real(self.log_neg_re), self.lambda_im)
        B = lax.complex(self.b_re, self.b_im)
        C = lax.complex(self.c_re, self.c_im)
        return Lambda, B, C, clamp_dt(self.log_dt)

    def ssm_parameters(self) -> tuple:
        """Λ, B and log Δ (S4D: SSM learning rate, no weight decay)."""
        return (
            self.log_neg_re,
            self.lambda_im,
            self.b_re,
            self.b_im,
            self.log_dt,
        )

    def skip(self) -> Float[Array, " d_model"]:
        return self.D

    def kernel(self, L: int) -> Float[Array, "*dirs d_model L"]:
        """The kernel, `(d_model, L)` or `(2, d_model, L)`."""
        return s4d_kernel(*self._params(), L, self.discretization)

    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        del L
        Lambda, B, C, dt = self._params()
        A_bar, B_bar, _ = _diag_discretize(Lambda, B, dt, self.discretization)
        return per_direction(A_bar, B_bar, 2.0 * (C if self.bidirectional else C[None]), self.D)
