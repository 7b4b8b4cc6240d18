"""The encoder-decoder Transformer of the paper (Figure 1), for sequence-to-sequence tasks such as translation.

    src_ids (B, S) -> encoder -> memory (B, S, C)
    tgt_ids (B, T) -> decoder (masked self-attention, cross-attention over memory) -> logits (B, T, V)

Teacher forcing: `tgt_ids` are the target tokens shifted right (starting with BOS); logits at position t predict
token t+1. For step-by-step decoding pass a cache from `init_cache()`: the encoder then runs on the first call
only, and each decoder layer's cross-attention keys/values are computed once.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import Linear

from ..config import TransformerConfig
from ..errors import InputError
from ..nn.cache import DecoderCache
from ..nn.losses import label_smoothed_cross_entropy
from ..nn.masks import as_attention_mask, padding_mask, reads_real_positions
from .body import Generates, ModelBase, TransformerBody, init_weights
from .outputs import TransformerOutput


class Seq2SeqTransformer(Generates, ModelBase):
    family = "seq2seq"

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerBody(cfg, cfg.source_vocab_size, cfg.encoder_layers, causal=False)
        self.decoder = TransformerBody(
            cfg, cfg.target_vocab_size, cfg.decoder_layers, causal=True, cross_attention=True
        )
        self.lm_head = Linear(cfg.d_model, cfg.target_vocab_size, bias=cfg.final_logits_bias)
        init_weights(self, cfg)
        if cfg.final_logits_bias:  # imported (BART, Marian), not trained
            self.lm_head.bias.requires_grad_(False)
        if cfg.tie_embeddings:  # Section 3.4: one matrix for both embeddings and the pre-softmax projection
            self.lm_head.weight = self.decoder.embeddings.token.weight
            if cfg.source_vocab_size == cfg.target_vocab_size:
                self.encoder.embeddings.token.weight = self.decoder.embeddings.token.weight

    def init_cache(self, batch_size: int | None = None, max_len: int | None = None, **kwargs) -> DecoderCache:
        """An empty decoder cache (see `TransformerBody.init_cache`)."""
        return self.decoder.init_cache(batch_size, max_len, **kwargs)

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """The encoder output ("memory"), (B, S, C). src_mask: (B, S), True = real token; default from pad_id."""
        return self.encoder(src_ids, attention_mask=src_mask).last_hidden_state

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        src_ids: Tensor | None = None,
        *,
        memory_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Logits (B, T, V) of the decoder over an encoder output `memory` (B, S, C).

        Which source positions are padding comes from `src_ids` (B, S) through pad_id, or from `memory_mask`
        (B, S), True = real token. With a pad_id one of the two is required: attending to padding is a silent bug.
        """
        if memory_mask is None and src_ids is not None:
            memory_mask = padding_mask(src_ids, self.cfg.pad_id)
        elif memory_mask is None and self.cfg.pad_id is not None:
            raise InputError("decode needs src_ids or memory_mask to know which source positions are padding")
        out = self.decoder(
            tgt_ids, attention_mask=tgt_mask, memory=memory, memory_mask=as_attention_mask(memory_mask), cache=cache
        )
        return self.lm_head(out.last_hidden_state)

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        *,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        return_attentions: bool = False,
        return_hidden_states: bool = False,
        return_dict: bool = False,
        labels: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> Tensor | TransformerOutput:
        """Logits (B, T, V), or a `TransformerOutput` when return_dict / return_attentions / return_hidden_states /
        labels.

        src_mask: (B, S) True = real source token (default: from pad_id). tgt_mask: (B, T) or a full boolean mask
        for the decoder's self-attention (the causal mask is always added). cache: see `init_cache`.

        labels: (B, T) the target token at each position (tgt_ids shifted left); padding (cfg.pad_id) and negative
        labels (Hugging Face's -100) are not targets. Given, the output's `loss` is the mean label-smoothed
        cross-entropy over the N labelled positions (`nn.losses.label_smoothed_cross_entropy`; the smoothing mass
        skips the class cfg.pad_id, or, without a pad_id, is spread over every class as `F.cross_entropy` does),
        and the output layer runs on those positions only: its `logits` are (N, V), in row-major order. A padded
        batch (often 30-50% padding) thus skips that share of the output layer and softmax, the costliest
        position-wise work with a large vocabulary. Inside `torch.compile`, where a shape that depends on the
        labels would split the graph, and on a GPU when the output layer's work is small (reading the positions
        waits for the device: `nn.masks.reads_real_positions`), it runs on every position and the `logits` are
        (B * T, V); the loss is the same.
        """
        if labels is not None and labels.shape != tgt_ids.shape:
            raise InputError(f"labels must have the shape of tgt_ids {tuple(tgt_ids.shape)}, got {tuple(labels.shape)}")
        encoder = None
        if cache is not None and cache.memory is not None:
            memory, memory_mask = cache.memory, cache.memory_mask
        else:
            encoder = self.encoder(
                src_ids,
                attention_mask=src_mask,
                need_weights=return_attentions,
                output_hidden_states=return_hidden_states,
            )
            memory, memory_mask = encoder.last_hidden_state, encoder.mask
            if memory_mask is not None and memory_mask.size(-2) != 1:
                raise InputError("src_mask of an encoder-decoder marks real source tokens: shape (B, S)")
            if cache is not None:
                cache.memory, cache.memory_mask = memory, memory_mask
        decoder = self.decoder(
            tgt_ids,
            attention_mask=tgt_mask,
            memory=memory,
            memory_mask=memory_mask,
            cache=cache,
            need_weights=return_attentions,
            output_hidden_states=return_hidden_states,
        )
        hidden, loss = decoder.last_hidden_state, None
        if labels is None:
            logits = self.lm_head(hidden)
        else:
            labels = labels.to(hidden.device)
            keep = labels >= 0
            if self.cfg.pad_id is not None:
                keep &= labels != self.cfg.pad_id
            flat = hidden.reshape(-1, hidden.size(-1))  # (B * T, C)
            targets = labels.reshape(-1).masked_fill(~keep.reshape(-1), -1)  # (B * T,) -1: not a target
            # The output layer on the labelled positions only, where reading which they are pays (on a CPU; not in
            # torch.compile: `reads_real_positions`); else on every position, the others' targets -1 (ignored).
            if reads_real_positions(flat.device, lambda: flat.size(0) * self.lm_head.weight.numel()):
                rows = keep.reshape(-1).nonzero().squeeze(1)  # (N,) the labelled positions of the flattened B * T
                flat, targets = flat.index_select(0, rows), targets.index_select(0, rows)
            logits = self.lm_head(flat)  # (N, V), or (B * T, V)
            loss = label_smoothed_cross_entropy(
                logits, targets, smoothing=label_smoothing, ignore_index=-1, pad_class=self.cfg.pad_id
            )
        if not (return_dict or return_attentions or return_hidden_states or labels is not None):
            return logits
        return TransformerOutput(
            logits=logits,
            last_hidden_state=decoder.last_hidden_state,
            hidden_states=decoder.hidden_states,
            attentions=decoder.attentions,
            cross_attentions=decoder.cross_attentions,
            encoder_last_hidden_state=memory,
            encoder_hidden_states=None if encoder is None else encoder.hidden_states,
            encoder_attentions=None if encoder is None else encoder.attentions,
            cache=cache,
            loss=loss,
        )
