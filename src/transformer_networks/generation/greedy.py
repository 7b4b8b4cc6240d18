"""Greedy decoding for the encoder-decoder: at each step take the most likely next token.

The source is encoded once (the decoder cache keeps its output and each layer's cross-attention keys/values), and
each step feeds only the newest target token. Shapes: B batch, S source length, N generated tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models import Seq2SeqTransformer


@torch.no_grad()
def greedy_seq2seq(model: Seq2SeqTransformer, src_ids: Tensor, *, bos_id: int, eos_id: int,
                   max_new_tokens: int) -> Tensor:
    """(B, N) generated ids, BOS excluded; a row's tokens after its EOS are padding (`cfg.pad_id`, or EOS when
    the model has none). Stops early when every row has produced EOS."""
    B = src_ids.size(0)
    fill = model.cfg.pad_id if model.cfg.pad_id is not None else eos_id
    max_new_tokens = min(max_new_tokens, model.cfg.max_seq_len)
    cache = model.init_cache()
    step_ids = torch.full((B, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=src_ids.device)
    out = []
    for _ in range(max_new_tokens):
        logits = model(src_ids, step_ids, cache=cache)[:, -1]  # (B, V)
        next_ids = logits.argmax(dim=-1).masked_fill(finished, fill)  # (B,)
        out.append(next_ids)
        finished |= next_ids == eos_id
        if bool(finished.all()):
            break
        step_ids = next_ids[:, None]
    return torch.stack(out, dim=1) if out else torch.empty(B, 0, dtype=torch.long, device=src_ids.device)
