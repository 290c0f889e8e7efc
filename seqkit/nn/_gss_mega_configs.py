"""Mixer configs of the gated mixers built on SSM cores: GSS and Mega."""

import dataclasses
from typing import ClassVar, Literal

from jaxtyping import PRNGKeyArray

from ._gss import GSS
from ._mega import Mega
from ._mixer_config import MixerConfig


@dataclasses.dataclass
class GSSConfig(MixerConfig):
    """[`seqkit.nn.GSS`][], kind `"gss"`: the gated state space mixer.

    Options (the constructor's): `ssm_dim` (`None`: `d_model // 4`, the paper's
    choice), `expansion`, `state_size`, `variant`, `causal`, `dt_min`/`dt_max`,
    `dropout`. Unlike the class, `causal` defaults to `False` (a bidirectional
    DSS), as seqkit's recipes are classifiers; set it for language modelling.

    Mehta, Gupta, Cutkosky and Neyshabur, "Long Range Language Modeling via Gated
    State Spaces", ICLR 2023.
    """

    kind: ClassVar[str] = "gss"
    ssm_dim: int | None = None
    expansion: int = 3
    state_size: int = 512
    variant: Literal["exp", "softmax"] = "exp"
    causal: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dropout: float = 0.0

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> GSS:
        options = self.options()
        if self.ssm_dim is None:
            options["ssm_dim"] = max(d_model // 4, 1)
        return GSS(d_model, **options, key=key)


@dataclasses.dataclass
class MegaConfig(MixerConfig):
    """[`seqkit.nn.Mega`][], kind `"mega"`: moving-average equipped gated attention.

    Options (the constructor's): `z_dim` (`None`: `d_model // 2`, the ratio of
    Mega's LRA Pathfinder and Path-X models), `v_dim` (`None`: `2·d_model`, the
    paper's), `ema_ndim`, `chunk_size` (`None`: attention over the whole
    sequence), `attention`, `relative_position`, `causal`, `dropout`, and Mega's
    code's `ema_silu` and `truncation`. The constructor's `max_length` is the
    model's sequence length when unchunked, and the chunk size when chunked.

    In a block, Mega's FFN is the block's: `ModelConfig(ffn_mult=2,
    ffn_activation="silu")`.

    Ma, Zhou, Kong, He, Gui, Neubig, May and Zettlemoyer, "Mega: Moving Average
    Equipped Gated Attention", ICLR 2023.
    """

    kind: ClassVar[str] = "mega"
    z_dim: int | None = None
    v_dim: int | None = None
    ema_ndim: int = 16
    chunk_size: int | None = None
    attention: Literal["softmax", "laplace", "relu2"] = "softmax"
    relative_position: Literal["simple", "rotary"] = "simple"
    causal: bool = False
    dropout: float = 0.0
    ema_silu: bool = False
    truncation: int | None = None

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Mega:
        options = self.options()
        if self.z_dim is None:
            options["z_dim"] = max(d_model // 2, 1)
        if self.v_dim is None:
            options["v_dim"] = 2 * d_model
        span = max_length if self.chunk_size is None else None  # chunked: the chunk is the span
        return Mega(d_model, **options, max_length=span, key=key)
