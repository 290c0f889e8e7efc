"""Mixer configs of the SSM layers: `SSMLayer` around an S4, S4D, DSS, S5 or EMA core."""

import abc
import dataclasses
from typing import ClassVar, Literal

import jax.random as jr
from jaxtyping import PRNGKeyArray

from seqkit.ssm import DSS, EMA, S4, S4D, S5, AbstractSSMCore

from ._mixer_config import MixerConfig
from ._ssm_layer import SSMLayer


@dataclasses.dataclass
class _SSMLayerConfig(MixerConfig):
    """The layer options every SSM config shares ([`seqkit.nn.SSMLayer`][]):
    `activation` after the core, `output` map (`"glu"` or `"linear"`), `dropout`."""

    activation: Literal["gelu", "relu", "silu", "identity"] = "gelu"
    output: Literal["glu", "linear"] = "glu"
    dropout: float = 0.0

    @abc.abstractmethod
    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> AbstractSSMCore:
        """The SSM core these options describe."""

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> SSMLayer:
        ckey, lkey = jr.split(key)
        return SSMLayer(
            self.core(d_model, max_length=max_length, key=ckey),
            activation=self.activation,
            output=self.output,
            dropout=self.dropout,
            key=lkey,
        )


@dataclasses.dataclass
class S4Config(_SSMLayerConfig):
    """`SSMLayer(S4(...))`, kind `"s4"`: the DPLR S4 layer, its kernel learned for the
    model's sequence length (`l_max = max_length`).

    Options: `state_size` `N`, the initial step range `dt_min`/`dt_max`,
    `bidirectional`, and the layer's `activation`, `output`, `dropout`.
    Defaults are the S4 LRA setting (bidirectional, as for classification).

    Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State
    Spaces", ICLR 2022.
    """

    kind: ClassVar[str] = "s4"
    state_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True

    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> S4:
        return S4(
            d_model,
            self.state_size,
            l_max=max_length,
            bidirectional=self.bidirectional,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            key=key,
        )


@dataclasses.dataclass
class S4DConfig(_SSMLayerConfig):
    """`SSMLayer(S4D(...))`, kind `"s4d"`: the diagonal S4 layer.

    Options: `state_size`, `init` (`"legs"`, `"lin"`, `"inv"`), `discretization`
    (`"zoh"`, `"bilinear"`), `bidirectional`, `dt_min`/`dt_max`, and the layer's
    `activation`, `output`, `dropout`.

    Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of
    Diagonal State Space Models", NeurIPS 2022.
    """

    kind: ClassVar[str] = "s4d"
    state_size: int = 64
    init: Literal["legs", "lin", "inv"] = "legs"
    discretization: Literal["zoh", "bilinear"] = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True

    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> S4D:
        return S4D(
            d_model,
            self.state_size,
            init=self.init,
            discretization=self.discretization,
            bidirectional=self.bidirectional,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            key=key,
        )


@dataclasses.dataclass
class DSSConfig(_SSMLayerConfig):
    """`SSMLayer(DSS(...))`, kind `"dss"`: the diagonal state space layer.

    Options: `state_size`, `variant` (`"exp"`, `"softmax"`), `bidirectional`,
    `dt_min`/`dt_max`, and the layer's `activation`, `output`, `dropout`.

    Gupta, Gu and Berant, "Diagonal State Spaces are as Effective as Structured
    State Spaces", NeurIPS 2022.
    """

    kind: ClassVar[str] = "dss"
    state_size: int = 64
    variant: Literal["exp", "softmax"] = "exp"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True

    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> DSS:
        return DSS(
            d_model,
            self.state_size,
            variant=self.variant,
            bidirectional=self.bidirectional,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            key=key,
        )


@dataclasses.dataclass
class S5Config(_SSMLayerConfig):
    """`SSMLayer(S5(...))`, kind `"s5"`: the simplified state space layer, one MIMO
    diagonal system for all channels, run as a parallel scan.

    Options: `state_size` `P`, `blocks` (HiPPO-N blocks in the init), `conj_sym`,
    `discretization` (`"zoh"`, `"bilinear"`), `bidirectional`, `dt_min`/`dt_max`,
    and the layer's `activation`, `output`, `dropout`.

    Smith, Warrington and Linderman, "Simplified State Space Layers for Sequence
    Modeling", ICLR 2023.
    """

    kind: ClassVar[str] = "s5"
    state_size: int = 64
    blocks: int = 1
    conj_sym: bool = True
    discretization: Literal["zoh", "bilinear"] = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = True

    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> S5:
        return S5(
            d_model,
            self.state_size,
            blocks=self.blocks,
            conj_sym=self.conj_sym,
            discretization=self.discretization,
            bidirectional=self.bidirectional,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            key=key,
        )


@dataclasses.dataclass
class EMAConfig(_SSMLayerConfig):
    """`SSMLayer(EMA(...))`, kind `"ema"`: Mega's multi-dimensional damped EMA as a
    layer of its own.

    Options: `ndim` (expansion dimensions per channel), `bidirectional`, and the
    layer's `activation`, `output`, `dropout`.

    Ma et al., "Mega: Moving Average Equipped Gated Attention", ICLR 2023.
    """

    kind: ClassVar[str] = "ema"
    ndim: int = 16
    bidirectional: bool = True

    def core(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> EMA:
        return EMA(d_model, self.ndim, bidirectional=self.bidirectional, key=key)
