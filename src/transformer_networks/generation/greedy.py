"""Greedy decoding for the encoder-decoder, as used during training's evaluation (a shortcut to `generate`)."""

from __future__ import annotations

from torch import Tensor

from ..models import Seq2SeqTransformer
from .generate import generate


def greedy_seq2seq(model: Seq2SeqTransformer, src_ids: Tensor, *, bos_id: int, eos_id: int,
                   max_new_tokens: int) -> Tensor:
    """(B, N) generated ids, BOS excluded; a row's tokens after its EOS are padding (`cfg.pad_id`, or EOS when
    the model has none). Stops early when every row has produced EOS."""
    return generate(model, src_ids, bos_id=bos_id, eos_id=eos_id, max_new_tokens=max_new_tokens,
                    pad_id=model.cfg.pad_id if model.cfg.pad_id is not None else eos_id)
