"""Layers and blocks built from seqkit's mixers."""

from seqkit._mixer import AbstractMixer as AbstractMixer, AbstractRecurrentMixer as AbstractRecurrentMixer

from ._block_recurrent import BlockRecurrent as BlockRecurrent, BlockRecurrentConfig as BlockRecurrentConfig
from ._blocks import FeedForward as FeedForward, ResidualBlock as ResidualBlock
from ._dual_encoder import DualEncoder as DualEncoder
from ._fusion import Fusion as Fusion
from ._generate import generate as generate, sample_logits as sample_logits
from ._gss import GSS as GSS
from ._gss_mega_configs import GSSConfig as GSSConfig, MegaConfig as MegaConfig
from ._hierarchical import HierarchicalModel as HierarchicalModel
from ._mega import (
    Mega as Mega,
    MegaState as MegaState,
    mega_attention as mega_attention,
    rotary_relative_bias as rotary_relative_bias,
    simple_relative_bias as simple_relative_bias,
)
from ._mixer_config import MixerConfig as MixerConfig
from ._norm import SequenceNorm as SequenceNorm
from ._perceiver_ar import PerceiverAR as PerceiverAR, perceiver_ar_mask as perceiver_ar_mask
from ._pixel import (
    PixelPretrainer as PixelPretrainer,
    masked_patch_loss as masked_patch_loss,
    normalize_patches as normalize_patches,
    pixel_pretraining_loss as pixel_pretraining_loss,
    reconstruct_masked as reconstruct_masked,
    span_mask as span_mask,
)
from ._pool import pool as pool
from ._sequence_model import (
    SequenceModel as SequenceModel,
    SequenceModelState as SequenceModelState,
    sinusoidal_positions as sinusoidal_positions,
)
from ._ssm_configs import (
    DSSConfig as DSSConfig,
    EMAConfig as EMAConfig,
    S4Config as S4Config,
    S4DConfig as S4DConfig,
    S5Config as S5Config,
)
from ._ssm_layer import SSMLayer as SSMLayer
