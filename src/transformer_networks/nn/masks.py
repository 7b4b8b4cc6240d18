"""Attention masks: the one convention used everywhere in this library.

A mask is a boolean tensor, **True = this query may attend to this key**, broadcastable to (B, H, Tq, Tk).
`None` means "no restriction". This is the convention of `F.scaled_dot_product_attention`; note that
`torch.nn.MultiheadAttention` and `torch.nn.Transformer` use the opposite one (True = masked out).

Shapes: B batch, H heads, Tq query length, Tk key length.
"""

from __future__ import annotations

from collections.abc import Callable

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


def left_padded_positions(attention_mask: Tensor) -> Tensor:
    """Positions of a left-padded batch: (B, P) mask, True = real token -> (B, P), 0 at each row's first real
    token (padding gets 0 too; it is never attended to)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks, skipping None; None when all are None."""
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else result & mask
    return result


# A training forward on a padded batch may read back which of its positions are real, to skip the work of the others
# (`on_real_tokens` in every layer; an encoder-decoder's output layer on the labelled positions only). The read waits
# for the device. On a CPU that costs nothing and the work skipped is saved. On a GPU it empties the queue of kernels
# the host had launched ahead, which the host must then refill: worth it only where the work skipped is larger than
# that gap. A first estimate, not yet measured on a GPU (issue 26): a gap of about 0.1 ms, bf16 products at about 2e14
# multiply-adds a second and a quarter of a batch padding give about 2^36 multiply-adds of the batch's whole work (the
# base Transformer's layers on 4,096 tokens: about 2^36; the SCAN demo model's on 1,000 tokens: about 2^28).
DEVICE_READ_MIN_MACS = 2**36


def reads_real_positions(device: torch.device, macs: Callable[[], int]) -> bool:
    """Whether a training forward on `device` reads which positions are real to skip the others (see above):
    always on a CPU; elsewhere when the work at stake, `macs()` multiply-adds, reaches DEVICE_READ_MIN_MACS; never
    inside torch.compile, where a shape read from the data would split the graph."""
    if torch.compiler.is_compiling():
        return False
    return device.type == "cpu" or macs() >= DEVICE_READ_MIN_MACS


def on_real_tokens(fn: Callable[[Tensor], Tensor], x: Tensor, real_tokens: Tensor | None) -> Tensor:
    """A position-wise `fn` (a projection, the feed-forward network) applied to the real tokens of x (B, T, C) only.

    real_tokens: indices into the flattened B * T positions of the tokens that are not padding, or None (apply fn
    everywhere). The result is (B, T, C') with zeros at padding positions: a batch that is 40% padding skips 40% of
    the work, and nothing real ever reads a padding position (attention masks it as a key).
    """
    if real_tokens is None:
        return fn(x)
    B, T = x.shape[:2]
    y = fn(x.reshape(B * T, x.size(-1)).index_select(0, real_tokens))  # (N, C') for the N real tokens
    return y.new_zeros(B * T, y.size(-1)).index_copy(0, real_tokens, y).view(B, T, y.size(-1))
