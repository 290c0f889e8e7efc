"""Layers and blocks built from seqkit's mixers."""

from ._blocks import FeedForward as FeedForward
from ._blocks import ResidualBlock as ResidualBlock
from ._gss import GSS as GSS
from ._mega import (
    Mega as Mega,
)
from ._mega import (
    mega_attention as mega_attention,
)
from ._mega import (
    rotary_relative_bias as rotary_relative_bias,
)
from ._mega import (
    simple_relative_bias as simple_relative_bias,
)
from ._norm import SequenceNorm as SequenceNorm
from ._pool import pool as pool
from ._sequence_model import SequenceModel as SequenceModel
from ._ssm_layer import SSMLayer as SSMLayer
