"""Input embeddings: token vectors, optionally scaled by sqrt(C), plus absolute positions, then dropout.

Imported families add two optional parts: token-type (segment) embeddings (BERT) and a norm on the sum before
dropout (BERT, BART).

Section 3.4 of the paper multiplies the token embeddings by sqrt(d_model); Section 3.5 adds the positional
encodings; Section 5.4 applies dropout to the sum. With rotary positions (`positional="rope"`) nothing is added
here: the positions enter inside self-attention instead; with `positional="none"` they enter nowhere (a causal mask
or stick-breaking heads give the order).

Shapes: ids (B, T) -> (B, T, C).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


class Embeddings(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        *,
        positional: str = "sinusoidal",
        max_len: int = 1024,
        scale: bool = True,
        dropout: float = 0.0,
        sinusoidal_layout: str = "interleaved",
        position_offset: int = 0,
        n_token_types: int = 0,
        norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.position: nn.Module | None
        if positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(d_model, max_len, sinusoidal_layout)
        elif positional == "learned":
            self.position = LearnedPositionalEmbedding(d_model, max_len, position_offset)
        elif positional in ("rope", "none"):
            self.position = None
        else:
            raise ValueError(f"positional must be 'sinusoidal', 'learned', 'rope' or 'none', got {positional!r}")
        self.token_type = nn.Embedding(n_token_types, d_model) if n_token_types else None
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, positions: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """ids: (B, T) token ids; positions: (T,) or (B, T) absolute positions; token_type_ids: (B, T) segment
        ids when there are token types (default: type 0 everywhere)."""
        x = self.token(ids)  # (B, T, C)
        if self.scale != 1.0:
            x = x * self.scale
        if self.position is not None:
            encoding = self.position(positions)
            x = x + (encoding if encoding.dtype == x.dtype else encoding.to(x.dtype))
        if self.token_type is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(ids)
            x = x + self.token_type(types)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids given, but the model has no token-type embeddings (n_token_types=0)")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x) if self.training and self.dropout.p > 0 else x  # (an idle call is skipped)
