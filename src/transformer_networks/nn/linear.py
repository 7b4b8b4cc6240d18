"""`Linear`: `torch.nn.Linear` (the same parameters and state dict), with a faster product for a few rows on a CPU.

Decoding multiplies every weight matrix by one row per sequence: one vector at batch 1, a handful of rows for a
small batch. PyTorch's CPU build hands such a product to BLAS as x W^T, and MKL (on this project's AVX-512 machine)
then streams a large (out, in) weight at well under half the speed it reaches for the same weight in W x^T, the
product with the rows as columns: 341 us against 150 us for one row of 768 x 2304, 7.9 ms against 3.2 ms for one
row of gpt2-small's 50,257 x 768 output layer, 15.2 ms against 8.2 ms for eight rows of it. So a few rows are
multiplied as W x^T (one row with a column of zeros beside it: BLAS's matrix-vector path for a single column is
the slow one); the result is the same up to float rounding. Greedy decoding of gpt2-small runs 1.7x (batch 1) and
1.4x (batch 8) faster for it (bench/generation.py greedy_vs_hf, BENCHMARKS.md).

It applies only where it was measured to pay: inference (no gradient), float32 on a CPU, outside `torch.compile`,
at most `FEW_ROWS` rows, a weight of at least 2^20 elements (smaller ones stay in cache, where the extra operations
cost more than the product saves). Everything else is `nn.Linear` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_WEIGHT = 2**20  # elements: 4 MiB of float32
FEW_ROWS = 8


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        if (weight.numel() >= MIN_WEIGHT and x.numel() <= FEW_ROWS * x.size(-1) and x.dtype == torch.float32
                and x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling()):
            return _few_rows(x, weight, self.bias)
        return F.linear(x, weight, self.bias)


def _few_rows(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) holding n <= FEW_ROWS rows -> (..., out), as (W x^T)^T."""
    rows = x.reshape(-1, x.size(-1))  # (n, in)
    n = rows.size(0)
    if n == 1:  # a second, zero column keeps the product a matrix-matrix one
        rows = torch.cat([rows, rows.new_zeros(1, rows.size(1))])
    y = torch.mm(weight, rows.t())[:, :n].t()  # (n, out)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], y.size(-1))
