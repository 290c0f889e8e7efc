"""The mixer config of SPADE's bottom layer: an S4 layer fused with local attention."""

import dataclasses
from typing import ClassVar, Literal

import jax.random as jr
from jaxtyping import PRNGKeyArray

from seqkit.nn._fusion import Fusion
from seqkit.nn._mixer_config import MixerConfig
from seqkit.nn._ssm_configs import S4Config

from ._local import LocalAttention


@dataclasses.dataclass
class SpadeConfig(MixerConfig):
    """[`seqkit.nn.Fusion`][] of an S4 layer and [`seqkit.attention.LocalAttention`][],
    kind `"spade"`: the bottom layer of SPADE (Zuo et al., "Efficient Long Sequence
    Modeling via State Space Augmented Transformer", 2022), where the SSM adds
    global information to local attention, `y = W [LN(S4(x)); LN(local(x))] + b`.

    Options: the S4 layer's `state_size`, `dt_min`, `dt_max`; the attention's
    `num_heads`, `window_size`, `mode`; `combine` (`"concat"`, the paper's;
    `"add"` with `weight`; `"stack"`); `causal` (both parts: a causal S4 and
    causal attention; the default is the bidirectional form, for classifiers);
    `dropout` (both parts). The authors' language-model command uses
    `concat`, S4 state 64 and Δ ∈ [1e-3, 1e-1].
    """

    kind: ClassVar[str] = "spade"
    state_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    num_heads: int = 4
    window_size: int = 128
    mode: Literal["block", "sliding"] = "sliding"
    combine: Literal["concat", "add", "stack"] = "concat"
    weight: float = 0.5
    causal: bool = False
    dropout: float = 0.0

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Fusion:
        ks, ka, kf = jr.split(key, 3)
        s4 = S4Config(
            state_size=self.state_size,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            bidirectional=not self.causal,
            dropout=self.dropout,
        ).build(d_model, max_length=max_length, key=ks)
        local = LocalAttention(
            d_model,
            self.num_heads,
            causal=self.causal,
            dropout=self.dropout,
            window_size=self.window_size,
            mode=self.mode,
            key=ka,
        )
        return Fusion(s4, local, combine=self.combine, weight=self.weight, key=kf)
