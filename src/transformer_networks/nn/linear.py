"""`Linear`: `torch.nn.Linear` (the same parameters and state dict), with a faster product for a single row on a CPU.

Decoding one token at a time multiplies every weight matrix by one vector. For that case PyTorch's CPU build calls
the BLAS matrix-vector product, which with MKL on this project's AVX-512 machine streams a large (out, in) weight
at well under half the speed of its matrix-matrix product: 341 us against 150 us for 768 x 2304, 7.9 ms against
3.2 ms for gpt2-small's 50,257 x 768 output layer (bench/generation.py; the profile is in BENCHMARKS.md). A product
with two columns, the vector and a column of zeros, takes the matrix-matrix path and reads the weight once, as fast
as memory allows; the result is the same up to float rounding.

It applies only where it was measured to pay: inference (no gradient), float32 on a CPU, outside `torch.compile`,
a weight of at least 2^20 elements (smaller ones stay in cache, where the extra operations cost more than the
product saves). Everything else is `nn.Linear` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TWO_COLUMN_MIN_WEIGHT = 2**20  # elements: 4 MiB of float32


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        if (x.numel() == x.size(-1) and self.weight.numel() >= TWO_COLUMN_MIN_WEIGHT and x.device.type == "cpu"
                and x.dtype == torch.float32 and not torch.is_grad_enabled() and not torch.compiler.is_compiling()):
            return _one_row(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def _one_row(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) holding one row -> (..., out), as W [x, 0] (two columns; the zero column is dropped)."""
    columns = torch.cat([x.reshape(1, -1), x.new_zeros(1, x.size(-1))]).t()  # (in, 2)
    y = torch.mm(weight, columns)[:, 0]  # (out,)
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], y.size(0))
