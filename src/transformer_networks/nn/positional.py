"""Positional information: fixed sinusoidal encodings (the paper), learned absolute embeddings, rotary (RoPE).

Sinusoidal and learned encodings are vectors added to the token embeddings; rotary embeddings instead rotate the
queries and keys inside self-attention, so that their dot product depends only on the distance between positions.
Every module here is indexed by `positions`: a (T,) or (B, T) tensor of absolute positions (not necessarily
0..T-1: a decoding step with a KV cache starts where the cache ends).

Shape legend: B batch, T length, C model dim, H heads, D head dim.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(n_positions: int, dim: int, layout: str = "interleaved") -> Tensor:
    """The paper's Section 3.5: PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same). (n, dim).

    layout "halves" puts the same sines in the first half of the vector and the cosines in the second (Marian,
    fairseq): a fixed permutation of the dimensions, which a model trained with one layout cannot ignore."""
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(dim/2),)
    angles = positions * inv_freq  # (n, ceil(dim/2))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2] = torch.sin(angles)
        table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    elif layout == "halves":
        half = angles.size(1)
        table[:, :half] = torch.sin(angles)
        table[:, half:] = torch.cos(angles[:, : dim - half])
    else:
        raise ValueError(f"layout must be 'interleaved' or 'halves', got {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed (not trained) sinusoidal encodings for positions 0..max_len-1: positions -> (..., C)."""

    table: Tensor  # (max_len, C), a buffer

    def __init__(self, d_model: int, max_len: int, layout: str = "interleaved") -> None:
        super().__init__()
        # Not persistent: it is a function of the config, so checkpoints need not carry it.
        self.register_buffer("table", sinusoidal_table(max_len, d_model, layout), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position 0..max_len-1 (GPT-2, BERT): positions -> (..., C). With an offset,
    position p reads row p + offset of a table of max_len + offset rows (BART keeps two unused rows first)."""

    def __init__(self, d_model: int, max_len: int, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset
        self.embedding = nn.Embedding(max_len + offset, d_model)

    def forward(self, positions: Tensor) -> Tensor:
        return self.embedding(positions + self.offset if self.offset else positions)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer): positions -> (cos, sin), each (..., D).

    Dimension i of the first half of each head is paired with dimension i of the second half (the "rotate half"
    layout of GPT-NeoX and Llama in Hugging Face `transformers`), and each pair is rotated by the angle
    position * theta^(-2i/D).
    """

    cos: Tensor  # (max_len, D), buffers
    sin: Tensor

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (D/2,)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq  # (max_len, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (max_len, D)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.cos[positions], self.sin[positions]


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate queries or keys x (B, H, T, D) by the angles of their positions; cos, sin: (T, D) or (B, T, D)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, T, D) -> (B, 1, T, D), broadcast over heads
    if x.dtype in (torch.float32, torch.float64) and cos.dtype == x.dtype:  # no idle conversions (every step)
        return x * cos + rotate_half(x) * sin
    xf = x.to(torch.promote_types(x.dtype, torch.float32))  # rotate in at least float32
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
