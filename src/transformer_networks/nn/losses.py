"""Cross-entropy with label smoothing (Szegedy et al. 2016; the paper's Section 5.4 uses epsilon = 0.1).

With smoothing epsilon the target distribution puts 1 - epsilon on the true token and spreads epsilon evenly over
the other classes of the vocabulary except padding (padding is never a target, so it gets no mass), as the
Annotated Transformer does: epsilon / (V - 2) each. (fairseq instead gives epsilon / (V - 1) to every other class,
padding included.) Positions whose target is `ignore_index` (padding) count for nothing.

Shapes: logits (N, V) or (B, T, V); targets (N,) or (B, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    smoothing: float = 0.0,
    ignore_index: int | None = None,
    pad_class: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Mean (or summed) loss over the positions whose target is not `ignore_index`.

    `pad_class` is the class that receives no smoothing mass (usually the same id as ignore_index); with
    pad_class=None the mass is spread over all V classes, which is what `F.cross_entropy(label_smoothing=...)`
    computes. With smoothing=0 this is plain cross-entropy.
    """
    V = logits.size(-1)
    logits = logits.reshape(-1, V).float()  # (N, V); log-softmax in float32 even under autocast
    targets = targets.reshape(-1)  # (N,)
    keep = targets != ignore_index if ignore_index is not None else torch.ones_like(targets, dtype=torch.bool)
    logp = F.log_softmax(logits, dim=-1)  # (N, V)
    safe_targets = targets.masked_fill(~keep, 0)
    nll = -logp.gather(1, safe_targets[:, None]).squeeze(1)  # (N,)
    if smoothing > 0:
        total = logp.sum(dim=-1)  # (N,)
        if pad_class is None:
            # F.cross_entropy's convention: epsilon / V on every class, the true one included.
            smooth = -total / V
            loss = (1 - smoothing) * nll + smoothing * smooth
        else:
            # 1 - epsilon on the truth, epsilon / (V - 2) on each class that is neither the truth nor padding.
            others = (-total + logp[:, pad_class] - nll) / (V - 2)  # -(sum of log p over the other classes)
            loss = (1 - smoothing) * nll + smoothing * others
    else:
        loss = nll
    loss = torch.where(keep, loss, torch.zeros_like(loss))  # an ignored position's value never leaks in
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / keep.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
