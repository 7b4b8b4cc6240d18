"""Attention masks: the one convention used everywhere in this library.

A mask is a boolean tensor, **True = this query may attend to this key**, broadcastable to (B, H, Tq, Tk).
`None` means "no restriction". This is the convention of `F.scaled_dot_product_attention`; note that
`torch.nn.MultiheadAttention` and `torch.nn.Transformer` use the opposite one (True = masked out).

Shapes: B batch, H heads, Tq query length, Tk key length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError


def padding_mask(ids: Tensor, pad_id: int | None) -> Tensor | None:
    """Key mask from token ids: (B, T) -> (B, 1, 1, T), False at padding. None when `pad_id` is None."""
    if pad_id is None:
        return None
    return (ids != pad_id)[:, None, None, :]


def causal_mask(q_positions: Tensor, k_len: int) -> Tensor:
    """Query at position p may attend keys 0..p: (Tq,) positions -> (1, 1, Tq, k_len).

    `q_positions` are absolute positions, so the same function serves a full sequence (positions 0..T-1) and a
    decoding step whose keys come from a KV cache (positions T0..T0+Tq-1, cache slots 0..k_len-1).
    """
    k_positions = torch.arange(k_len, device=q_positions.device)
    return (k_positions[None, :] <= q_positions[:, None])[None, None]


def as_attention_mask(mask: Tensor | None) -> Tensor | None:
    """Accept a user mask of shape (B, Tk) (True = real token), (B, Tq, Tk) or (B|1, H|1, Tq, Tk); return 4-D."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise InputError(f"attention masks are boolean (True = may attend), got dtype {mask.dtype}")
    if mask.dim() == 2:
        return mask[:, None, None, :]
    if mask.dim() == 3:
        return mask[:, None, :, :]
    if mask.dim() == 4:
        return mask
    raise InputError(f"an attention mask has 2, 3 or 4 dimensions, got shape {tuple(mask.shape)}")


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks, skipping None; None when all are None."""
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else result & mask
    return result
