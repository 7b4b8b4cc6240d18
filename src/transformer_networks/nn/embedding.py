"""Input embeddings: token vectors, optionally scaled by sqrt(C), plus absolute positions, then dropout.

Section 3.4 of the paper multiplies the token embeddings by sqrt(d_model); Section 3.5 adds the positional
encodings; Section 5.4 applies dropout to the sum. With rotary positions (`positional="rope"`) nothing is added
here: the positions enter inside self-attention instead.

Shapes: ids (B, T) -> (B, T, C).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


class Embeddings(nn.Module):
    def __init__(
        self, vocab_size: int, d_model: int, *, positional: str = "sinusoidal", max_len: int = 1024,
        scale: bool = True, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.position: nn.Module | None
        if positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(d_model, max_len)
        elif positional == "learned":
            self.position = LearnedPositionalEmbedding(d_model, max_len)
        elif positional == "rope":
            self.position = None
        else:
            raise ValueError(f"positional must be 'sinusoidal', 'learned' or 'rope', got {positional!r}")
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, positions: Tensor) -> Tensor:
        """ids: (B, T) token ids; positions: (T,) or (B, T) absolute positions."""
        x = self.token(ids) * self.scale  # (B, T, C)
        if self.position is not None:
            x = x + self.position(positions).to(x.dtype)
        return self.dropout(x)
