"""Layers and blocks built from seqkit's mixers."""

from ._ssm_layer import SSMLayer as SSMLayer
