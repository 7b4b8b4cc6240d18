"""The Transformer layer and the stack of layers, shared by the encoder, the decoder and decoder-only models.

One `TransformerLayer` class builds both kinds of layer (Section 3.1):
    encoder layer:  self-attention -> feed-forward
    decoder layer:  masked self-attention -> cross-attention over the encoder output -> feed-forward
Every sub-layer sits inside the same residual connection and normalization, written once in `Residual`:
    post-LN (the paper):  x = Norm(x + Dropout(Sublayer(x)))
    pre-LN:               x = x + Dropout(Sublayer(Norm(x)))     (the stack then ends with a final Norm)

Shape legend: B batch, T target/query length, S source length, C model dim, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .cache import LayerCache
from .feedforward import FeedForward
from .masks import on_real_tokens
from .norm import make_norm


class Residual(nn.Module):
    """Residual connection with dropout and normalization around one sub-layer, pre-LN or post-LN.

    Use as:  y = sublayer(residual.pre(x));  x = residual.post(x, y)
    """

    def __init__(
        self,
        d_model: int,
        dropout: float,
        norm: str = "layernorm",
        norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.norm = make_norm(norm, d_model, eps=norm_eps, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def pre(self, x: Tensor) -> Tensor:
        """The sub-layer's input: Norm(x) for pre-LN, x itself for post-LN."""
        return self.norm(x) if self.norm_first else x

    def post(self, x: Tensor, sublayer_out: Tensor) -> Tensor:
        """Add the sub-layer's output (after dropout) to the residual stream; normalize the sum for post-LN."""
        if self.training and self.dropout.p > 0:  # skipped when it would do nothing: decoding one token at a
            sublayer_out = self.dropout(sublayer_out)  # time, even an idle module call costs a measurable share
        x = x + sublayer_out
        return x if self.norm_first else self.norm(x)


@dataclass
class LayerOutput:
    hidden: Tensor  # (B, T, C)
    self_attention: Tensor | None = None  # (B, H, T, T or L) when weights were requested
    cross_attention: Tensor | None = None  # (B, H, T, S) when weights were requested


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention (for a decoder of an encoder-decoder), feed-forward."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        n_kv_heads: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "layernorm",
        norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        cross_attention: bool = False,
        qkv_conv: int = 0,
        qk_norm: bool = False,
        stick_breaking_heads: int = 0,
        stick_breaking_bias: float = 0.0,
    ) -> None:
        super().__init__()

        def residual() -> Residual:
            return Residual(d_model, dropout, norm=norm, norm_eps=norm_eps, norm_first=norm_first, bias=bias)

        self.self_attn = MultiHeadAttention(
            d_model,
            n_heads,
            n_kv_heads,
            bias=bias,
            dropout=attention_dropout,
            qkv_conv=qkv_conv,
            qk_norm=qk_norm,
            norm_eps=norm_eps,
            stick_breaking_heads=stick_breaking_heads,
            stick_breaking_bias=stick_breaking_bias,
        )
        self.self_attn_residual = residual()
        self.cross_attn = None
        self.cross_attn_residual = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                d_model, n_heads, n_kv_heads, bias=bias, dropout=attention_dropout, qk_norm=qk_norm, norm_eps=norm_eps
            )
            self.cross_attn_residual = residual()
        self.ffn = FeedForward(d_model, d_ff, activation, bias=bias)
        self.ffn_residual = residual()

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Tensor | None = None,
        need_weights: bool = False,
        real_tokens: Tensor | None = None,
    ) -> LayerOutput:
        """x: (B, T, C). mask / is_causal: for self-attention. memory: encoder output (B, S, C), with its key mask
        memory_mask, for cross-attention. cache, positions: incremental decoding (see `MultiHeadAttention`).

        real_tokens: indices into the flattened (B * T) positions of the tokens that are not padding. Given, the
        self-attention projections and the feed-forward sub-layer run on those rows only (`masks.on_real_tokens`):
        the real outputs and every gradient are unchanged, and padding costs no projection or feed-forward work."""
        h, self_weights = self.self_attn(
            self.self_attn_residual.pre(x),
            mask=mask,
            is_causal=is_causal,
            rotary=rotary,
            cache=None if cache is None else cache.self_attn,
            positions=positions,
            need_weights=need_weights,
            real_tokens=real_tokens,
        )
        x = self.self_attn_residual.post(x, h)

        cross_weights = None
        if self.cross_attn is not None:
            assert self.cross_attn_residual is not None  # built together with cross_attn
            if memory is None:
                raise ValueError("this layer has cross-attention: it needs the encoder output (memory)")
            kv = None
            if cache is not None:
                if cache.cross_kv is None:
                    cache.cross_kv = self.cross_attn.project_kv(memory)
                kv = cache.cross_kv
            h, cross_weights = self.cross_attn(
                self.cross_attn_residual.pre(x), memory, mask=memory_mask, kv=kv, need_weights=need_weights
            )
            x = self.cross_attn_residual.post(x, h)

        h = on_real_tokens(lambda rows: self.ffn(self.ffn_residual.pre(rows)), x, real_tokens)
        x = self.ffn_residual.post(x, h)
        return LayerOutput(x, self_weights, cross_weights)


@dataclass
class StackOutput:
    last_hidden_state: Tensor  # (B, T, C), after the final norm of a pre-LN stack
    mask: Tensor | None = None  # the key mask the stack's self-attention used (True = may attend)
    hidden_states: list[Tensor] | None = None  # the input of every layer and the final output, when requested
    attentions: list[Tensor] | None = None  # per layer, (B, H, T, T or L), when requested
    cross_attentions: list[Tensor] | None = None  # per layer, (B, H, T, S), when requested


class TransformerStack(nn.Module):
    """N layers applied in turn, then the final norm (pre-LN stacks need one; post-LN stacks end normalized)."""

    def __init__(self, layers: list[TransformerLayer], final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        # Activation checkpointing: while training, keep only each layer's input and recompute the layer in the
        # backward pass (with the same dropout masks): less memory for about one more forward pass.
        self.checkpoint_layers = False

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        caches: list[LayerCache] | None = None,
        positions: Tensor | None = None,
        need_weights: bool = False,
        output_hidden_states: bool = False,
        real_tokens: Tensor | None = None,
    ) -> StackOutput:
        """See `TransformerLayer.forward` for the arguments."""
        hidden_states: list[Tensor] | None = [] if output_hidden_states else None
        attentions: list[Tensor] | None = [] if need_weights else None
        cross_attentions: list[Tensor] | None = [] if need_weights and memory is not None else None
        for i, layer in enumerate(self.layers):
            if hidden_states is not None:
                hidden_states.append(x)
            kwargs: dict[str, Any] = dict(
                mask=mask,
                is_causal=is_causal,
                rotary=rotary,
                memory=memory,
                memory_mask=memory_mask,
                cache=None if caches is None else caches[i],
                positions=positions,
                need_weights=need_weights,
                real_tokens=real_tokens,
            )
            if self.checkpoint_layers and self.training and torch.is_grad_enabled() and caches is None:
                out = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False, **kwargs)
            else:
                out = layer(x, **kwargs)
            x = out.hidden
            if attentions is not None:
                attentions.append(out.self_attention)
            if cross_attentions is not None:
                cross_attentions.append(out.cross_attention)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if hidden_states is not None:
            hidden_states.append(x)
        return StackOutput(x, mask, hidden_states, attentions, cross_attentions)
