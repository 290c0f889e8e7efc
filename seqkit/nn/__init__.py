"""Layers and blocks built from seqkit's mixers."""

from ._ssm_layer import SSMLayer as SSMLayer
from ._blocks import FeedForward as FeedForward, ResidualBlock as ResidualBlock
from ._norm import SequenceNorm as SequenceNorm
from ._pool import pool as pool
from ._sequence_model import SequenceModel as SequenceModel
