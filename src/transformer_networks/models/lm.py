"""The decoder-only Transformer language model (GPT): a causal stack without cross-attention.

    ids (B, T) -> embeddings -> causal self-attention layers -> logits (B, T, V)

Logits at position t predict token t+1 and depend only on tokens 0..t. For step-by-step generation pass a cache
from `init_cache()` and feed only the new tokens each call.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import Linear

from ..config import TransformerConfig
from ..nn.cache import DecoderCache
from .body import Generates, ModelBase, TransformerBody, init_weights
from .outputs import TransformerOutput


class TransformerLM(Generates, ModelBase):
    family = "lm"

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = TransformerBody(cfg, cfg.vocab_size, cfg.decoder_layers, causal=True)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=cfg.final_logits_bias)
        init_weights(self, cfg)
        if cfg.final_logits_bias:  # imported (BART, Marian), not trained
            self.lm_head.bias.requires_grad_(False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.decoder.embeddings.token.weight

    def init_cache(self, batch_size: int | None = None, max_len: int | None = None, **kwargs) -> DecoderCache:
        """An empty cache (see `TransformerBody.init_cache`)."""
        return self.decoder.init_cache(batch_size, max_len, **kwargs)

    def forward(
        self,
        ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        positions: Tensor | None = None,
        logits_to_keep: int = 0,
        return_attentions: bool = False,
        return_hidden_states: bool = False,
        return_dict: bool = False,
    ) -> Tensor | TransformerOutput:
        """Logits (B, T, V), or a `TransformerOutput` when return_dict / return_attentions / return_hidden_states.

        attention_mask: (B, T) True = real token (default: from pad_id), or a full boolean mask without a cache;
        the causal mask is always added. cache: see `init_cache`. positions: (B, T) per-row positions for
        left-padded batches (default 0..T-1 after the cached tokens). logits_to_keep: the logits of the last
        this many positions only (B, logits_to_keep, V), as Hugging Face's argument of that name; 0 = all.
        Decoding needs the last position's only: the output layer over a whole prompt is wasted work.
        """
        out = self.decoder(
            ids,
            attention_mask=attention_mask,
            cache=cache,
            positions=positions,
            need_weights=return_attentions,
            output_hidden_states=return_hidden_states,
        )
        hidden = out.last_hidden_state if logits_to_keep == 0 else out.last_hidden_state[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        if not (return_dict or return_attentions or return_hidden_states):
            return logits
        return TransformerOutput(
            logits=logits,
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cache=cache,
        )
