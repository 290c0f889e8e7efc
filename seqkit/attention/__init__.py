"""Attention mixers: vanilla softmax attention (Vaswani et al., "Attention Is All
You Need", 2017) and the efficient-attention family compared in Tay et al.,
"Long Range Arena: A Benchmark for Efficient Transformers", 2021."""

from ._base import (
    AbstractAttention as AbstractAttention,
    AbstractRecurrentAttention as AbstractRecurrentAttention,
    AttentionHeads as AttentionHeads,
    Projections as Projections,
)
from ._blocks import band_attention as band_attention, gathered_block_attention as gathered_block_attention
from ._configs import (
    BigBirdConfig as BigBirdConfig,
    ContextPoolConfig as ContextPoolConfig,
    KernelizedAttentionConfig as KernelizedAttentionConfig,
    LinearAttentionConfig as LinearAttentionConfig,
    LinformerConfig as LinformerConfig,
    LocalAttentionConfig as LocalAttentionConfig,
    LongformerConfig as LongformerConfig,
    LongShortAttentionConfig as LongShortAttentionConfig,
    LunaAttentionConfig as LunaAttentionConfig,
    MultiHeadAttentionConfig as MultiHeadAttentionConfig,
    PerformerConfig as PerformerConfig,
    ReformerAttentionConfig as ReformerAttentionConfig,
    SinkhornAttentionConfig as SinkhornAttentionConfig,
    SparseAttentionConfig as SparseAttentionConfig,
    SynthesizerConfig as SynthesizerConfig,
)
from ._context_pool import ContextPool as ContextPool, context_pool as context_pool
from ._core import (
    attention_with_lse as attention_with_lse,
    band_mask as band_mask,
    block_diagonal_mask as block_diagonal_mask,
    causal_mask as causal_mask,
    chunked_dot_product_attention as chunked_dot_product_attention,
    combine_masks as combine_masks,
    dot_product_attention as dot_product_attention,
    merge_attention as merge_attention,
    padding_mask as padding_mask,
    softmax_attend as softmax_attend,
)
from ._linear import (
    KernelizedAttention as KernelizedAttention,
    LinearAttention as LinearAttention,
    LinearState as LinearState,
    Performer as Performer,
    elu_feature_map as elu_feature_map,
    linear_attention as linear_attention,
    orthogonal_gaussian as orthogonal_gaussian,
    positive_random_features as positive_random_features,
)
from ._linformer import Linformer as Linformer, linformer_attention as linformer_attention
from ._local import (
    LocalAttention as LocalAttention,
    LocalCache as LocalCache,
    local_attention as local_attention,
)
from ._longshort import LongShortAttention as LongShortAttention, segment_projection as segment_projection
from ._luna import LunaAttention as LunaAttention
from ._reformer import (
    ReformerAttention as ReformerAttention,
    lsh_attention as lsh_attention,
    lsh_buckets as lsh_buckets,
)
from ._sinkhorn import SinkhornAttention as SinkhornAttention, sinkhorn as sinkhorn
from ._spade import SpadeConfig as SpadeConfig
from ._sparse import (
    BigBird as BigBird,
    Longformer as Longformer,
    SparseAttention as SparseAttention,
    bigbird_attention as bigbird_attention,
    bigbird_block_indices as bigbird_block_indices,
    fixed_sparse_attention as fixed_sparse_attention,
    longformer_attention as longformer_attention,
    strided_sparse_attention as strided_sparse_attention,
)
from ._synthesizer import Synthesizer as Synthesizer
from ._vanilla import KVCache as KVCache, MultiHeadAttention as MultiHeadAttention
