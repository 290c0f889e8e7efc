"""S4: the DPLR state-space core, its Cauchy-kernel convolution kernel and step."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from seqkit._typing import ArrayLike
from seqkit.kernels import cauchy

from ._base import (
    AbstractSSMCore,
    DiscreteSystem,
    clamp_dt,
    complex_dtype,
    init_readout,
    negative_real,
    per_direction,
    tile_param,
    to_complex,
)
from ._discretize import discretize_bilinear
from ._hippo import hippo_legs


def s4_kernel(
    Lambda: Complex[ArrayLike, "H n"],
    P: Complex[ArrayLike, "H n"],
    B: Complex[ArrayLike, "H n"],
    C: Complex[ArrayLike, "*dirs H n"],
    dt: Float[ArrayLike, " H"],
    L: int,
    *,
    impl: Literal["auto", "xla", "pallas"] = "auto",
) -> Float[ArrayLike, "*dirs H L"]:
    """The S4 convolution kernel of a bilinear-discretized DPLR system (Gu, Goel
    and Ré, "Efficiently Modeling Long Sequences with Structured State Spaces",
    Algorithm 1).

    The continuous system per channel is `A = Λ − p p*` (stored as one member
    of each conjugate pair, `n = N/2` modes). With `C̃ = C (I − Ā^L)`, the
    truncated generating function `K̂(z) = C̃ (I − Ā z)⁻¹ B̄` is evaluated at the
    roots of unity through four Cauchy sums and the Woodbury identity,

    `K̂(z) = 2/(1+z) · [k_{C̃,B} − k_{C̃,p} (1 + k_{p*,p})⁻¹ k_{p*,B}]`,
    `k_{a,b}(z) = Σ a_n b_n / (g(z) − λ_n)`, `g(z) = (2/Δ)(1 − z)/(1 + z)`,

    each sum also running over the conjugate members; then `K = irfft(K̂)`.
    At `z_k = exp(−2πik/L)`, `g = (2i/Δ) tan(πk/L)` and `2/(1+z) = 1 + i tan(πk/L)`,
    so the Cauchy points are the imaginary numbers `i tan(πk/L)` for the poles
    `λΔ/2`. At `z = −1` (`k = L/2`) the closed form `K̂ = Δ Re Σ C̃ B` is used.

    **Arguments:**

    - `Lambda`: `(H, n)` diagonal part (`Re λ < 0`).
    - `P`: `(H, n)` low-rank vector `p`.
    - `B`: `(H, n)` input vector.
    - `C`: `(H, n)` or `(dirs, H, n)` output vectors `C̃` (several kernels share
      `Λ, p, B, Δ`, e.g. the two directions of a bidirectional core).
    - `dt`: `(H,)` step sizes Δ.
    - `L`: kernel length; `C̃` is taken to be learned for this length.
    - `impl`: the Cauchy kernel's implementation, `"auto"`, `"xla"` or `"pallas"`
      (see `seqkit.kernels.cauchy`).

    **Returns:** `(H, L)` or `(dirs, H, L)` real kernel.
    """
    if not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"expected a positive integer length L, got {L!r}")
    Lambda, P, B, C, dt = map(jnp.asarray, (Lambda, P, B, C, dt))
    H, n = Lambda.shape
    rdt = jnp.real(Lambda).dtype
    cdt = complex_dtype(rdt)
    lead = C.shape[:-2]
    Cs = C.reshape(-1, H, n).astype(cdt)  # (c, H, n)
    c = Cs.shape[0]
    K = L // 2 + 1
    t = np.tan(np.pi * np.arange(K) / L)
    nyquist = L % 2 == 0
    if nyquist:
        t[-1] = 0.0  # placeholder; this frequency is set in closed form below
    z = lax.complex(jnp.zeros(K, rdt), jnp.asarray(t, rdt))  # i tan(πk/L)
    half = to_complex((dt / 2).astype(rdt))  # (H,)
    lam = Lambda.astype(cdt) * half[:, None]
    Pc, Bc = P.astype(cdt), B.astype(cdt)
    v = jnp.concatenate(
        [
            jnp.moveaxis(Cs * Bc, 0, 1),  # (H, c, n)  C̃ B
            jnp.moveaxis(Cs * Pc, 0, 1),  # (H, c, n)  C̃ p
            (jnp.conj(Pc) * Bc)[:, None],  # (H, 1, n)  p* B
            (jnp.conj(Pc) * Pc)[:, None],  # (H, 1, n)  p* p
        ],
        axis=1,
    )
    r = cauchy(v, z, lam, impl=impl) * half[:, None, None]  # (H, 2c+2, K)
    r00, r01 = r[:, :c], r[:, c : 2 * c]
    r10, r11 = r[:, 2 * c : 2 * c + 1], r[:, 2 * c + 1 :]
    khat = (1.0 + z) * (r00 - r01 * r10 / (1.0 + r11))  # (H, c, K)
    if nyquist:
        cb = jnp.sum(jnp.moveaxis(Cs * Bc, 0, 1), axis=-1)  # (H, c)
        nyq = to_complex(dt[:, None].astype(rdt) * jnp.real(cb))
        khat = khat.at[..., -1].set(nyq)
    k = jnp.fft.irfft(khat, n=L, axis=-1).astype(rdt)  # (H, c, L)
    return jnp.moveaxis(k, 1, 0).reshape(*lead, H, L)


def _pairs(x: Array) -> Array:
    """Both members of each conjugate pair: `(..., n) -> (..., 2n)`."""
    return jnp.concatenate([x, jnp.conj(x)], axis=-1)


class S4(AbstractSSMCore):
    """S4 core: a DPLR state-space model per channel, convolved via the Cauchy kernel.

    Per channel, `x' = A x + B u`, `y = C x + D u` with `A = Λ − p p*` in the
    HiPPO-LegS eigenbasis (diagonal plus low rank), discretized with the
    bilinear transform. As in the S4 paper, `C̃ = C (I − Ā^{l_max})` is learned
    for the length `l_max`: an input of length `L ≤ l_max` sees the first `L`
    taps of that kernel; longer inputs are an error.

    ```python
    core = seqkit.ssm.S4(64, l_max=1024, key=jax.random.key(0))
    y = core(u)                      # u: (L, 64), L <= 1024
    y = jax.vmap(core)(u_batch)      # (batch, L, 64)
    ```

    Trainable leaves are real: `log(−Re Λ)`, `Im Λ`, `p`, `B`, `C̃` as real and
    imaginary parts, `D`, `log Δ`.

    Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State
    Spaces", ICLR 2022.
    """

    log_neg_re: Float[Array, "H n"]
    lambda_im: Float[Array, "H n"]
    p_re: Float[Array, "H n"]
    p_im: Float[Array, "H n"]
    b_re: Float[Array, "H n"]
    b_im: Float[Array, "H n"]
    c_re: Float[Array, "*dirs H n"]
    c_im: Float[Array, "*dirs H n"]
    D: Float[Array, " H"]
    log_dt: Float[Array, " H"]
    d_model: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    l_max: int = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        state_size: int = 64,
        *,
        l_max: int = 1024,
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `d_model`: channels `H`.
        - `state_size`: `N`, the (even) real state size; `N/2` complex modes are stored.
        - `l_max`: the length the kernel is learned for (longest input).
        - `bidirectional`: add a second kernel run over the reversed sequence.
        - `dt_min`, `dt_max`: range of the initial step sizes (log-uniform).
        - `key`: PRNG key.
        """
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        if l_max < 1:
            raise ValueError(f"l_max must be >= 1, got {l_max}")
        h = hippo_legs(state_size)
        n = state_size // 2
        H = d_model

        def tile(a):
            return tile_param(a, (H, n))

        lam = h.Lambda[:n]
        self.log_neg_re = tile(np.log(-lam.real))
        self.lambda_im = tile(lam.imag)
        self.p_re, self.p_im = tile(h.p[:n].real), tile(h.p[:n].imag)
        self.b_re, self.b_im = tile(h.b[:n].real), tile(h.b[:n].imag)
        self.c_re, self.c_im, self.D, self.log_dt = init_readout(key, H, n, bidirectional, dt_min, dt_max)
        self.d_model = d_model
        self.state_size = state_size
        self.l_max = l_max
        self.bidirectional = bidirectional

    def _params(self):
        Lambda = lax.complex(negative_real(self.log_neg_re), self.lambda_im)
        P = lax.complex(self.p_re, self.p_im)
        B = lax.complex(self.b_re, self.b_im)
        C = lax.complex(self.c_re, self.c_im)
        return Lambda, P, B, C, clamp_dt(self.log_dt)

    def ssm_parameters(self) -> tuple:
        """Λ, the low-rank factor p, B and log Δ (S4: SSM learning rate, no weight decay)."""
        return (
            self.log_neg_re,
            self.lambda_im,
            self.p_re,
            self.p_im,
            self.b_re,
            self.b_im,
            self.log_dt,
        )

    def skip(self) -> Float[Array, " d_model"]:
        return self.D

    def kernel(self, L: int) -> Float[Array, "*dirs d_model L"]:
        """The first `L` taps of the length-`l_max` kernel, `(d_model, L)` or
        `(2, d_model, L)`."""
        if L > self.l_max:
            raise ValueError(
                f"S4 kernel was built for l_max={self.l_max}; got a sequence of length {L}. "
                f"Construct S4(..., l_max>={L})."
            )
        return s4_kernel(*self._params(), self.l_max)[..., :L]

    def _systems(self, L: int | None) -> tuple[DiscreteSystem, ...]:
        del L  # C̃ is tied to l_max, not to the input length
        Lambda, P, B, C, dt = self._params()
        Pf = _pairs(P)
        A = jax.vmap(jnp.diag)(_pairs(Lambda)) - Pf[:, :, None] * jnp.conj(Pf)[:, None, :]
        A_bar, B_bar = discretize_bilinear(A, _pairs(B), dt)
        eye = jnp.eye(A.shape[-1], dtype=A.dtype)
        AL = jnp.linalg.matrix_power(A_bar, self.l_max)
        # C = C̃ (I − Ā^L)⁻¹, i.e. (I − Ā^L)ᵀ Cᵀ = C̃ᵀ.
        lhs = jnp.swapaxes(eye - AL, -1, -2)
        Cs = _pairs(C if self.bidirectional else C[None])  # (dirs, H, N)
        Cs = jnp.linalg.solve(jnp.broadcast_to(lhs, Cs.shape + Cs.shape[-1:]), Cs[..., None])[..., 0]
        return per_direction(A_bar, B_bar, Cs, self.D)
