"""Building blocks, each usable on its own with plain typed arguments (no config objects)."""

from .attention import MultiHeadAttention, scaled_dot_product_attention
from .cache import DecoderCache, KVCache, LayerCache
from .embedding import Embeddings
from .feedforward import FeedForward
from .layers import Residual, StackOutput, TransformerLayer, TransformerStack
from .masks import as_attention_mask, causal_mask, combine, padding_mask
from .norm import RMSNorm, make_norm
from .positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    sinusoidal_table,
)

__all__ = [
    "DecoderCache",
    "Embeddings",
    "FeedForward",
    "KVCache",
    "LayerCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RMSNorm",
    "Residual",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "StackOutput",
    "TransformerLayer",
    "TransformerStack",
    "apply_rotary",
    "as_attention_mask",
    "causal_mask",
    "combine",
    "make_norm",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]
