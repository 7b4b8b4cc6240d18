"""The encoder-only Transformer classifier (BERT-style): a bidirectional stack, pooled, then a linear head.

    ids (B, T) -> encoder -> hidden states (B, T, C) -> pool -> (B, C) -> dropout -> linear -> logits (B, n_classes)

With `classifier_pooler` (BERT's pooler) the pooled state first goes through a dense layer and tanh.

Pooling "cls" takes the first position's state (put a CLS token there); "mean" averages the states of the real
(non-padding) tokens; "max" takes each feature's maximum over the real tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import TransformerConfig
from .body import ModelBase, TransformerBody, init_weights
from .outputs import TransformerOutput


class TransformerClassifier(ModelBase):
    family = "classifier"

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerBody(cfg, cfg.vocab_size, cfg.encoder_layers, causal=False)
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model) if cfg.classifier_pooler else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        # Class index -> name, when known: a checkpoint's labels, a Hugging Face config's id2label (not a weight).
        self.labels: list[str] | None = None
        init_weights(self, cfg)

    def encode(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        """Hidden states (B, T, C). attention_mask: (B, T) True = real token (default: from pad_id);
        token_type_ids: (B, T) segment ids when the config has token types."""
        return self.encoder(ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    def pool(self, hidden: Tensor, key_mask: Tensor | None) -> Tensor:
        """(B, T, C) -> (B, C). key_mask: (B, T), True = real token, or None (all real)."""
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        if self.cfg.pooling == "max":  # each feature's largest value over the real tokens (as a text CNN pools)
            if key_mask is None:
                return hidden.amax(dim=1)
            return hidden.masked_fill(~key_mask[:, :, None], float("-inf")).amax(dim=1)
        if key_mask is None:
            return hidden.mean(dim=1)
        weights = key_mask.to(hidden.dtype)[:, :, None]  # (B, T, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_attentions: bool = False,
        return_hidden_states: bool = False,
        return_dict: bool = False,
    ) -> Tensor | TransformerOutput:
        """Logits (B, n_classes), or a `TransformerOutput` when return_dict / return_attentions /
        return_hidden_states. attention_mask: (B, T) True = real token (default: from pad_id)."""
        out = self.encoder(
            ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            need_weights=return_attentions,
            output_hidden_states=return_hidden_states,
        )
        # Which tokens are real, for mean pooling: the caller's (B, T) mask, else the padding of `ids`.
        if attention_mask is not None and attention_mask.dim() == 2:
            key_mask = attention_mask
        elif self.cfg.pad_id is not None:
            key_mask = ids != self.cfg.pad_id
        else:
            key_mask = None
        pooled = self.pool(out.last_hidden_state, key_mask)  # (B, C)
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(pooled))
        logits = self.head(self.dropout(pooled))
        if not (return_dict or return_attentions or return_hidden_states):
            return logits
        return TransformerOutput(
            logits=logits,
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
