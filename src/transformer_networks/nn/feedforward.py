"""The position-wise feed-forward network (Section 3.3): the same two-layer MLP applied at every position.

    relu / gelu / gelu_tanh / silu:
                  FFN(x) = W2 act(W1 x + b1) + b2           (the paper uses ReLU; BERT and BART the exact GELU,
                                                             GPT-2 its tanh approximation, Marian SiLU ("swish"))
    swiglu:       FFN(x) = W2 (silu(W1 x) * (W3 x))          (Shazeer 2020, "GLU Variants Improve Transformer")

Shapes: (B, T, C) -> (B, T, d_ff) -> (B, T, C).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu")


class FeedForward(nn.Module):
    """Position-wise feed-forward network. `dropout` acts on the hidden activations (off by default: the paper
    applies dropout to the sub-layer output, which the residual wrapper does)."""

    def __init__(
        self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if activation == "swiglu" else None  # W3 of SwiGLU
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.activate(self.fc1(x), None if self.gate is None else self.gate(x))  # (B, T, d_ff)
        if self.training and self.dropout.p > 0:  # (an idle module call is skipped, as in `Residual`)
            h = self.dropout(h)
        return self.fc2(h)  # (B, T, C)

    def activate(self, h: Tensor, gate: Tensor | None) -> Tensor:
        """The activation of h = W1 x + b1; for SwiGLU, `gate` is W3 x, which it multiplies."""
        if self.activation == "relu":
            return F.relu(h)
        if self.activation == "gelu":
            return F.gelu(h)  # x * Phi(x), Phi the standard normal CDF (erf)
        if self.activation == "gelu_tanh":
            return F.gelu(h, approximate="tanh")
        if self.activation == "silu":
            return F.silu(h)
        assert gate is not None  # swiglu, the one activation left, has the gate
        return F.silu(h) * gate
