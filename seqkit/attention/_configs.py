"""Mixer configs of the attention classes: one typed dataclass per class, fields named
as the constructor's keyword arguments, so recipes and `--set` reach every variant."""

import dataclasses
from typing import ClassVar, Literal

from jaxtyping import PRNGKeyArray

from seqkit.nn._mixer_config import MixerConfig

from ._context_pool import ContextPool
from ._linear import KernelizedAttention, LinearAttention, Performer
from ._linformer import Linformer
from ._local import LocalAttention
from ._longshort import LongShortAttention
from ._luna import LunaAttention
from ._reformer import ReformerAttention
from ._sinkhorn import SinkhornAttention
from ._sparse import BigBird, Longformer, SparseAttention
from ._synthesizer import Synthesizer
from ._vanilla import MultiHeadAttention


@dataclasses.dataclass
class _AttentionConfig(MixerConfig):
    """What every attention config holds: `num_heads`, `causal` and `dropout` (the
    constructor arguments every class shares). Defaults are the non-causal form
    (seqkit's recipes are classifiers) with 4 heads; the other options default to
    the class's own defaults."""

    num_heads: int = 4
    causal: bool = False
    dropout: float = 0.0


@dataclasses.dataclass
class MultiHeadAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.MultiHeadAttention`][], kind `"mha"` (Vaswani et al.,
    "Attention Is All You Need", 2017). Options: `impl`, `chunk_size`."""

    kind: ClassVar[str] = "mha"
    impl: Literal["chunked", "dense"] = "chunked"
    chunk_size: int = 512

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> MultiHeadAttention:
        return MultiHeadAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class LocalAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.LocalAttention`][], kind `"local"` (Xiong et al., "Simple
    Local Attentions Remain Competitive for Long-Context Tasks", 2022). Options:
    `window_size`, `mode` (`"block"` or `"sliding"`)."""

    kind: ClassVar[str] = "local"
    window_size: int = 50
    mode: Literal["block", "sliding"] = "block"

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> LocalAttention:
        return LocalAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class SparseAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.SparseAttention`][], kind `"sparse"` (Child et al.,
    "Generating Long Sequences with Sparse Transformers", 2019). Options: `pattern`
    (`"fixed"` or `"strided"`), `stride`, `summary`."""

    kind: ClassVar[str] = "sparse"
    pattern: Literal["fixed", "strided"] = "fixed"
    stride: int = 50
    summary: int = 10

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> SparseAttention:
        return SparseAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class LongformerConfig(_AttentionConfig):
    """[`seqkit.attention.Longformer`][], kind `"longformer"` (Beltagy et al.,
    "Longformer: The Long-Document Transformer", 2020). Options: `window_size`,
    `num_global`."""

    kind: ClassVar[str] = "longformer"
    window_size: int = 512
    num_global: int = 1

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Longformer:
        return Longformer(d_model, **self.options(), key=key)


@dataclasses.dataclass
class BigBirdConfig(_AttentionConfig):
    """[`seqkit.attention.BigBird`][], kind `"bigbird"` (Zaheer et al., "Big Bird:
    Transformers for Longer Sequences", 2020). Options: `block_size`, `num_random`,
    `num_global`."""

    kind: ClassVar[str] = "bigbird"
    block_size: int = 64
    num_random: int = 3
    num_global: int = 2

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> BigBird:
        return BigBird(d_model, **self.options(), key=key)


@dataclasses.dataclass
class LinformerConfig(_AttentionConfig):
    """[`seqkit.attention.Linformer`][], kind `"linformer"` (Wang et al., "Linformer:
    Self-Attention with Linear Complexity", 2020). Options: `proj_dim`; its
    `max_len` is the model's sequence length."""

    kind: ClassVar[str] = "linformer"
    proj_dim: int = 16

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Linformer:
        return Linformer(d_model, **self.options(), max_len=max_length, key=key)


@dataclasses.dataclass
class LinearAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.LinearAttention`][], kind `"linear"` (Katharopoulos et
    al., "Transformers are RNNs", 2020). No options beyond the shared ones."""

    kind: ClassVar[str] = "linear"

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> LinearAttention:
        return LinearAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class PerformerConfig(_AttentionConfig):
    """[`seqkit.attention.Performer`][], kind `"performer"` (Choromanski et al.,
    "Rethinking Attention with Performers", 2021). Options: `num_features`."""

    kind: ClassVar[str] = "performer"
    num_features: int = 256

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Performer:
        return Performer(d_model, **self.options(), key=key)


@dataclasses.dataclass
class KernelizedAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.KernelizedAttention`][], kind `"kernelized"` (Chowdhury et
    al., "Learning the Transformer Kernel", 2022). Options: `num_features`,
    `num_components`."""

    kind: ClassVar[str] = "kernelized"
    num_features: int = 128
    num_components: int = 2

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> KernelizedAttention:
        return KernelizedAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class SynthesizerConfig(_AttentionConfig):
    """[`seqkit.attention.Synthesizer`][], kind `"synthesizer"` (Tay et al.,
    "Synthesizer: Rethinking Self-Attention in Transformer Models", 2021). Options:
    `mode` (`"dense"` or `"random"`), `factorized`, `factor`, `trainable`; its
    `max_len` is the model's sequence length."""

    kind: ClassVar[str] = "synthesizer"
    mode: Literal["dense", "random"] = "dense"
    factorized: bool = False
    factor: int = 8
    trainable: bool = True

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> Synthesizer:
        return Synthesizer(d_model, **self.options(), max_len=max_length, key=key)


@dataclasses.dataclass
class SinkhornAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.SinkhornAttention`][], kind `"sinkhorn"` (Tay et al.,
    "Sparse Sinkhorn Attention", 2020). Options: `block_size`, `sinkhorn_iters`,
    `temperature`."""

    kind: ClassVar[str] = "sinkhorn"
    block_size: int = 64
    sinkhorn_iters: int = 8
    temperature: float = 0.75

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> SinkhornAttention:
        return SinkhornAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class ReformerAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.ReformerAttention`][], kind `"reformer"` (Kitaev et al.,
    "Reformer: The Efficient Transformer", 2020). Options: `chunk_size`,
    `num_hashes`, `num_buckets` (`None`: the class's default for the length)."""

    kind: ClassVar[str] = "reformer"
    chunk_size: int = 32
    num_hashes: int = 2
    num_buckets: int | None = None

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> ReformerAttention:
        return ReformerAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class LunaAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.LunaAttention`][], kind `"luna"` (Ma et al., "Luna: Linear
    Unified Nested Attention", 2021). Options: `packed_len`."""

    kind: ClassVar[str] = "luna"
    packed_len: int = 256

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> LunaAttention:
        return LunaAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class LongShortAttentionConfig(_AttentionConfig):
    """[`seqkit.attention.LongShortAttention`][], kind `"long-short"` (Zhu et al.,
    "Long-Short Transformer", 2021). Options: `window_size`, `rank`."""

    kind: ClassVar[str] = "long-short"
    window_size: int = 128
    rank: int = 32

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> LongShortAttention:
        return LongShortAttention(d_model, **self.options(), key=key)


@dataclasses.dataclass
class ContextPoolConfig(_AttentionConfig):
    """[`seqkit.attention.ContextPool`][], kind `"context-pool"` (Huang et al.,
    "Efficient Representation Learning via Adaptive Context Pooling", 2022).
    Options: `max_support`."""

    kind: ClassVar[str] = "context-pool"
    max_support: int = 8

    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> ContextPool:
        return ContextPool(d_model, **self.options(), key=key)
