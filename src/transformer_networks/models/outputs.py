"""Named results returned by the models when asked (`return_dict=True`, or attentions / hidden states requested)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..nn.cache import DecoderCache


@dataclass
class TransformerOutput:
    """Shapes: B batch, T length (target length for an encoder-decoder), S source length, C model dim,
    H heads, V vocabulary (or classes for a classifier); L keys seen so far when decoding with a cache."""

    logits: Tensor  # (B, T, V); a classifier's are (B, n_classes); with labels (N, V), the labelled positions
    last_hidden_state: Tensor  # (B, T, C) the final layer's output (after the final norm of a pre-LN stack)
    hidden_states: list[Tensor] | None = None  # the input of every layer, then the final output
    attentions: list[Tensor] | None = None  # self-attention weights per layer, (B, H, T, T or L)
    cross_attentions: list[Tensor] | None = None  # encoder-decoder: cross-attention weights per layer, (B, H, T, S)
    encoder_last_hidden_state: Tensor | None = None  # encoder-decoder: (B, S, C)
    encoder_hidden_states: list[Tensor] | None = None
    encoder_attentions: list[Tensor] | None = None  # per layer, (B, H, S, S)
    cache: DecoderCache | None = None  # the cache passed in, now holding this call's tokens too
    loss: Tensor | None = None  # with `labels`: the mean training loss over the labelled positions (logits: (N, V))
