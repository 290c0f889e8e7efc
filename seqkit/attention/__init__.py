"""Attention mixers: vanilla softmax attention and the efficient-attention family (SPEC §2)."""
