"""Layers and blocks built from seqkit's mixers."""

from ._gss import GSS as GSS
from ._mega import (
    Mega as Mega,
    mega_attention as mega_attention,
    rotary_relative_bias as rotary_relative_bias,
    simple_relative_bias as simple_relative_bias,
)
from ._ssm_layer import SSMLayer as SSMLayer
