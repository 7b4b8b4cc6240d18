"""Normalization layers: LayerNorm (Ba et al. 2016, the paper's choice) and RMSNorm (Zhang & Sennrich 2019).

LayerNorm normalizes each position's vector to zero mean and unit variance over its C features, then applies a
learned gain and bias: y = (x - mean(x)) / sqrt(var(x) + eps) * g + b. RMSNorm skips the centring and the bias:
y = x / sqrt(mean(x^2) + eps) * g. Both act on the last dimension only; nothing is mixed across positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square normalization over the last dimension; computed in at least float32, returned in the input
    dtype."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # float16/bfloat16 -> float32; float64 stays
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def make_norm(kind: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """'layernorm' -> `nn.LayerNorm` (with or without its bias), 'rmsnorm' -> `RMSNorm`."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")
