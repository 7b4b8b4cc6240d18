"""The extractive question-answering model (BERT-style): a bidirectional encoder and a span head.

    ids (B, T) -> encoder -> hidden states (B, T, C) -> linear -> (B, T, 2) -> start logits (B, T), end logits (B, T)

The input is one window: the question and a slice of the context as two segments (`[CLS] question [SEP] context
[SEP]`, token types 0 and 1 when the config has token types). The answer is the span from the token with the
largest start logit to the one with the largest end logit (`tasks/qa.py` searches the pairs); the first position,
[CLS], stands for "no answer in this window" (SQuAD v2, or a window that does not hold the answer).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..config import TransformerConfig
from .body import ModelBase, TransformerBody, init_weights
from .outputs import TransformerOutput


@dataclass
class SpanLogits:
    """What `TransformerQA` returns: per-token scores for the answer's first and last token."""

    start: Tensor  # (B, T)
    end: Tensor  # (B, T)


class TransformerQA(ModelBase):
    family = "qa"

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerBody(cfg, cfg.vocab_size, cfg.encoder_layers, causal=False)
        self.span_head = nn.Linear(cfg.d_model, 2)  # BERT's qa_outputs: start and end
        init_weights(self, cfg)

    def forward(
        self,
        ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_attentions: bool = False,
        return_hidden_states: bool = False,
        return_dict: bool = False,
    ) -> SpanLogits | TransformerOutput:
        """`SpanLogits` (start and end, each (B, T)), or a `TransformerOutput` whose logits are (B, T, 2) when
        return_dict / return_attentions / return_hidden_states. attention_mask: (B, T) True = real token (default:
        from pad_id); token_type_ids: (B, T) 0 for the question, 1 for the context (used when the config has
        token types)."""
        if self.cfg.n_token_types == 0:
            token_type_ids = None
        out = self.encoder(
            ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            need_weights=return_attentions,
            output_hidden_states=return_hidden_states,
        )
        logits = self.span_head(out.last_hidden_state)  # (B, T, 2)
        if not (return_dict or return_attentions or return_hidden_states):
            return SpanLogits(logits[..., 0], logits[..., 1])
        return TransformerOutput(
            logits=logits,
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
