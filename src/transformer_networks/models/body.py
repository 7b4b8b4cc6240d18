"""`TransformerBody`: embeddings + positions + a stack of layers, built from a `TransformerConfig`.

The same class is the encoder of an encoder-decoder and of a classifier (bidirectional), the decoder of an
encoder-decoder (causal, with cross-attention) and the decoder-only language model (causal). It owns what the
three share: turning token ids into vectors, positions, the attention masks, and the KV cache bookkeeping.

Shape legend: B batch, T length of `ids`, L tokens seen so far (with a cache), S source length, C model dim.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..config import TransformerConfig
from ..errors import ConfigError, InputError
from ..generation import GenerationOutput, generate
from ..generation.steps import DecodingModel
from ..nn.cache import DecoderCache
from ..nn.embedding import Embeddings
from ..nn.layers import StackOutput, TransformerLayer, TransformerStack
from ..nn.masks import as_attention_mask, causal_mask, padding_mask, reads_real_positions
from ..nn.norm import make_norm
from ..nn.positional import RotaryEmbedding


class TransformerBody(nn.Module):
    def __init__(
        self, cfg: TransformerConfig, vocab_size: int, n_layers: int, *, causal: bool, cross_attention: bool = False
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.embeddings = Embeddings(
            vocab_size,
            cfg.d_model,
            positional=cfg.positional,
            max_len=cfg.max_seq_len,
            scale=cfg.scale_embeddings,
            dropout=cfg.dropout,
            sinusoidal_layout=cfg.sinusoidal_layout,
            position_offset=cfg.position_offset,
            n_token_types=cfg.n_token_types,
            norm=make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if cfg.embedding_norm else None,
        )
        self.rotary = (
            RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta) if cfg.positional == "rope" else None
        )
        if cfg.qkv_conv and causal and not cross_attention:
            raise ConfigError(
                f"qkv_conv={cfg.qkv_conv} is for encoders (classifier, qa, an encoder-decoder's encoder): a causal "
                "model would need a one-sided convolution and its cache the last projections"
            )
        if cfg.stick_breaking_heads and causal and not cross_attention:
            raise ConfigError(
                f"stick_breaking_heads={cfg.stick_breaking_heads} is for encoders (classifier, qa, an encoder-decoder's"
                " encoder): its heads read later tokens as well as earlier ones"
            )
        layers = [
            TransformerLayer(
                cfg.d_model,
                cfg.n_heads,
                cfg.d_ff,
                n_kv_heads=cfg.kv_heads,
                dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout,
                activation=cfg.activation,
                norm=cfg.norm,
                norm_eps=cfg.norm_eps,
                norm_first=cfg.norm_first,
                bias=cfg.bias,
                cross_attention=cross_attention,
                qkv_conv=0 if causal else cfg.qkv_conv,
                qk_norm=cfg.qk_norm,
                stick_breaking_heads=0 if causal else cfg.stick_breaking_heads,
                stick_breaking_bias=cfg.stick_breaking_bias,
            )
            for _ in range(n_layers)
        ]
        final_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if cfg.norm_first else None
        self.stack = TransformerStack(layers, final_norm)
        # Multiply-adds per token of the layers (each weight one), for `reads_real_positions`' estimate.
        self.macs_per_token = sum(p.numel() for p in self.stack.parameters())

    def init_cache(
        self,
        batch_size: int | None = None,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> DecoderCache:
        """An empty cache: growing by default, preallocated for `max_len` tokens (and `batch_size` rows)."""
        if not self.causal:
            raise InputError("only a causal (decoder) stack can decode incrementally with a cache")
        if max_len is not None and batch_size is None:
            raise InputError("a preallocated cache (max_len) needs batch_size")
        if max_len is not None and max_len > self.cfg.max_seq_len:
            raise InputError(f"cache max_len={max_len} exceeds the model's max_seq_len={self.cfg.max_seq_len}")
        param = self.embeddings.token.weight
        return DecoderCache(
            len(self.stack.layers),
            batch_size,
            self.cfg.kv_heads,
            self.cfg.head_dim,
            max_len,
            dtype=dtype or param.dtype,
            device=device or param.device,
            limit=self.cfg.max_seq_len,
        )

    def forward(
        self,
        ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        positions: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        need_weights: bool = False,
        output_hidden_states: bool = False,
    ) -> StackOutput:
        """ids: (B, T). attention_mask: boolean, True = may attend: (B, T) marks real tokens; (B, T, T) or
        (B, 1|H, T, T) is a full mask (no cache). Default: padding derived from `cfg.pad_id`. A causal stack adds
        the causal mask itself. With a cache, ids are the new tokens only and positions continue from
        `cache.length`.

        positions: (B, T) or (T,) the positions the encodings use; default 0..T-1 (continuing from the cache), the
        same in every row. Left-padded rows (batched prompts of different lengths) pass their own, counting from
        each row's first real token (see `generation.left_padded_positions`). Cache slots and the causal mask
        always follow the slot order, so padding slots are hidden by the key mask alone.

        token_type_ids: (B, T) segment ids, for a config with n_token_types (BERT); default type 0.
        """
        B, T = ids.shape
        start = 0 if cache is None else cache.length
        if start + T > self.cfg.max_seq_len:
            raise InputError(f"sequence of {start + T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        if cache is not None and cache.max_len is not None:
            if start + T > cache.max_len:
                raise InputError(f"the preallocated cache holds {cache.max_len} tokens; {start + T} do not fit")
            if B != cache.batch_size:
                raise InputError(f"the preallocated cache has {cache.batch_size} rows, the input {B}")
        slots = torch.arange(start, start + T, device=ids.device)  # (T,) where these tokens sit in the sequence
        if positions is None:
            positions = slots
        elif positions.shape[-1] != T or (positions.dim() == 2 and positions.size(0) != B):
            raise InputError(f"positions must have shape ({T},) or ({B}, {T}); got {tuple(positions.shape)}")
        elif int(positions.max()) >= self.cfg.max_seq_len:
            raise InputError(f"position {int(positions.max())} exceeds max_seq_len={self.cfg.max_seq_len}")
        x = self.embeddings(ids, positions, token_type_ids)  # (B, T, C)
        rotary = self.rotary(positions) if self.rotary is not None else None

        if cache is None:
            if attention_mask is not None:
                mask = as_attention_mask(attention_mask)
            else:
                mask = padding_mask(ids, self.cfg.pad_id)
            is_causal = self.causal
        else:
            if not self.causal:
                raise InputError("only a causal (decoder) stack can decode incrementally with a cache")
            if attention_mask is not None and attention_mask.shape != ids.shape:
                raise InputError(
                    f"with a cache, attention_mask marks the new tokens: expected shape "
                    f"{tuple(ids.shape)}, got {tuple(attention_mask.shape)}"
                )
            if attention_mask is not None:
                new_keys = attention_mask
            elif self.cfg.pad_id is not None:
                new_keys = ids != self.cfg.pad_id
            else:
                new_keys = None  # no padding id: every token is real
            keys = cache.update_key_mask(slots, new_keys)  # (B, L), or None when every cached key is real
            if keys is None:  # only causality limits attention (a single new token may see every cached key)
                mask, is_causal = None, T > 1
            else:
                mask = keys[:, None, None, :] & causal_mask(slots, keys.size(1))  # (B, 1, T, L)
                is_causal = False

        real_tokens = None
        if self.training and cache is None and mask is not None and mask.shape == (B, 1, 1, T):
            # Training on a padded batch: projections and feed-forward layers skip the padding (`TransformerLayer`),
            # where reading how much there is pays (`reads_real_positions`: on a CPU; not inside torch.compile).
            keep = mask.reshape(B * T)
            if reads_real_positions(x.device, lambda: B * T * self.macs_per_token) and not bool(keep.all()):
                real_tokens = keep.nonzero().squeeze(1)
        out = self.stack(
            x,
            mask=mask,
            is_causal=is_causal,
            rotary=rotary,
            memory=memory,
            memory_mask=memory_mask,
            caches=None if cache is None else cache.layers,
            positions=slots,
            need_weights=need_weights,
            output_hidden_states=output_hidden_states,
            real_tokens=real_tokens,
        )
        if cache is not None:
            cache.length += T
        return out


def init_weights(model: nn.Module, cfg: TransformerConfig) -> None:
    """Initialise a freshly built model.

    Linear layers: Xavier/Glorot uniform with zero biases (as `torch.nn.Transformer` and the Annotated Transformer
    do). Token embeddings: normal with std d_model^-0.5 when they are scaled by sqrt(d_model), so the scaled
    vectors have unit variance (as fairseq does), else std 0.02 (GPT-2, BERT). Learned positions: std 0.02.
    Norms keep their ones/zeros. Call it before tying weights or after: tied weights are embeddings and get the
    embedding rule last.
    """
    token_std = cfg.d_model**-0.5 if cfg.scale_embeddings else 0.02
    token_tables = {id(m.token) for m in model.modules() if isinstance(m, Embeddings)}
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():  # after the linear layers: a tied output projection is an embedding
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=token_std if id(m) in token_tables else 0.02)


class ModelBase(nn.Module):
    """What the three model families share besides their bodies. `family` is the model's key in `models.MODELS`
    ("seq2seq", "lm", "classifier", "qa"), which tasks, checkpoints and decoding go by."""

    cfg: TransformerConfig
    family: str
    tokenizer: Any  # set by `from_pretrained` (and `train --init`): the tokenizer beside the weights, or None

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute every layer's activations in the backward pass instead of keeping them (less memory)."""
        for module in self.modules():
            if isinstance(module, TransformerStack):
                module.checkpoint_layers = enabled

    def num_parameters(self) -> int:
        """The number of parameters, each shared (tied) tensor counted once."""
        return sum(p.numel() for p in self.parameters())


class Generates:
    """`model.generate(...)` for the two families that generate (see `transformer_networks.generation.generate`
    for what every argument does)."""

    def generate(
        self: DecodingModel,  # a mixin: the class it is mixed into has the decoding interface
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        num_return_sequences: int = 1,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        use_cache: bool = True,
        static_cache: bool = False,
        cache: DecoderCache | None = None,
        seed: int | None = None,
        return_dict_in_generate: bool = False,
    ) -> Tensor | GenerationOutput:
        """A language model continues prompts (B, P), left-padded when of different lengths (with
        `attention_mask`), and returns prompt + new tokens; an encoder-decoder translates sources (B, S) and returns
        the new tokens, BOS excluded. Greedy, sampling or beam search (the paper: num_beams=4, length_penalty=0.6)."""
        return generate(
            self,
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_beams=num_beams,
            length_penalty=length_penalty,
            num_return_sequences=num_return_sequences,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
            use_cache=use_cache,
            static_cache=static_cache,
            cache=cache,
            seed=seed,
            return_dict_in_generate=return_dict_in_generate,
        )
