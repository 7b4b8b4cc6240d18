"""One decoding step of a decoder-only language model as plain function calls: what greedy decoding, sampling and
beam search run for every token after the prompt, and what streaming and chat run for every token they yield.

Through the modules, `model(tokens, cache=cache)` for one new token per row makes about 60 module calls, asks the
CPU backend 25 times whether its product applies, and passes the branches every forward has for training,
padding and masks. At batch 1 on a CPU that is a fifth of the step of a 6-layer, 384-wide model (BENCHMARKS.md).
`DecodeStep` looks at the model once per generation, and each step then calls the functions the modules would
call, in the same order, on the same weights, so that the logits are equal bit for bit (tested):

    embeddings -> each layer: [norm] -> fused q/k/v product -> rotary -> cache append -> attention -> output
                  product -> residual [norm] -> [norm] -> feed-forward -> residual [norm] -> [final norm] -> logits

(the norms where the config puts them: before each sub-layer for pre-LN, after each residual for post-LN).
Rows may have their own positions and padded cache slots (left-padded prompts, the server's batch of requests of
different lengths): the key mask and positions are built as the model builds them. The cache must grow; anywhere
else `DecodeStep.of` gives None and the modules run as before: a preallocated cache (what compiled graphs use),
hooks on any module, a compiled module, a forward replaced on an instance, an encoder-decoder, training, gradients.
Shapes: N rows, C model dim, L cached tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..nn.attention import scaled_dot_product_attention
from ..nn.cache import DecoderCache, KVCache
from ..nn.layers import TransformerLayer
from ..nn.masks import causal_mask
from ..nn.positional import apply_rotary

Function = Callable[[Tensor], Tensor]


def product(linear: nn.Module, example: Tensor) -> Function:
    """x -> linear(x) for inputs shaped like `example`, as one call: the CPU backend's layers choose their
    product once (`OneDNNLinear.product_for`), a plain `nn.Linear` is `F.linear` on its weights, anything else (an
    adapter, a quantized layer) its own forward."""
    product_for = getattr(linear, "product_for", None)
    if product_for is not None:
        return product_for(example)
    if type(linear) is nn.Linear:
        weight, bias = linear.weight, linear.bias
        return lambda x: F.linear(x, weight, bias)
    return linear.forward


class _LayerStep:
    """One `TransformerLayer` (self-attention and feed-forward, no cross-attention) for one new token per row."""

    def __init__(self, layer: TransformerLayer, example: Tensor) -> None:
        attention, ffn = layer.self_attn, layer.ffn
        self.split_qkv = attention.split_qkv
        self.q_dim = attention.q_dim
        self.in_proj = product(attention.in_proj, example)
        self.out_proj = product(attention.out_proj, example.new_empty(*example.shape[:-1], attention.q_dim))
        self.norm_first = layer.ffn_residual.norm_first
        self.attention_norm: Function = layer.self_attn_residual.norm.forward
        self.ffn_norm: Function = layer.ffn_residual.norm.forward
        hidden = example.new_empty(*example.shape[:-1], ffn.fc1.out_features)
        self.fc1 = product(ffn.fc1, example)
        self.gate = None if ffn.gate is None else product(ffn.gate, example)
        self.activate = ffn.activate
        self.fc2 = product(ffn.fc2, hidden)

    def __call__(
        self,
        x: Tensor,
        cache: KVCache,
        slots: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
    ) -> Tensor:
        """x (N, 1, C) -> (N, 1, C); appends the token's keys and values to `cache` at `slots` (1,). mask: (N, 1, 1,
        L) the keys each row may see, None when all of them."""
        h = self.attention_norm(x) if self.norm_first else x
        q, k, v = self.split_qkv(self.in_proj(h))  # (N, H, 1, D), (N, G, 1, D) twice
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        k, v = cache.update(slots, k, v)  # (N, G, L, D)
        a = scaled_dot_product_attention(q, k, v, mask)[0]  # (N, H, 1, D)
        x = x + self.out_proj(a.reshape(x.size(0), 1, self.q_dim))
        if not self.norm_first:
            x = self.attention_norm(x)
        h = self.ffn_norm(x) if self.norm_first else x
        x = x + self.fc2(self.activate(self.fc1(h), None if self.gate is None else self.gate(h)))
        return x if self.norm_first else self.ffn_norm(x)


def _plain_modules(model: nn.Module) -> bool:
    """No forward hooks (on a module or global), no compiled module and no forward replaced on an instance: nothing
    a step's plain calls would skip."""
    module_hooks = torch.nn.modules.module  # the global hooks live there (torch.nn.modules.module.register_...)
    if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
        return False
    return not any(
        m._forward_hooks
        or m._forward_pre_hooks
        or getattr(m, "_compiled_call_impl", None) is not None
        or "forward" in vars(m)
        for m in model.modules()
    )


class DecodeStep:
    """step(ids (N, 1), cache, positions) -> the next logits (N, V), one token per row, as the model gives them for
    `model(ids, cache=cache, positions=positions)` with every new token real.

    Made by `DecodeStep.of(model, cache, rows)`, once per generation: it holds the products chosen for that many
    rows, so the model's weights must not change while it is used."""

    def __init__(self, model: Any, rows: int) -> None:
        """model: a TransformerLM (`of` checks; the models package imports this one, not the other way round)."""
        body = model.decoder
        weight = body.embeddings.token.weight
        example = weight.new_empty(rows, 1, model.cfg.d_model)
        self.max_seq_len = model.cfg.max_seq_len
        self.embed = body.embeddings.forward
        self.rotary = None if body.rotary is None else body.rotary.forward
        self.layers = [_LayerStep(cast(TransformerLayer, layer), example) for layer in body.stack.layers]
        self.final_norm = None if body.stack.final_norm is None else body.stack.final_norm.forward
        self.head = product(model.lm_head, example)
        self.slots = torch.arange(self.max_seq_len, device=weight.device)  # positions, sliced at each step

    @classmethod
    def of(cls, model: Any, cache: DecoderCache | None, rows: int) -> DecodeStep | None:
        """A step for `model` decoding `rows` rows into `cache`, or None where the modules must run (see the
        module's docstring)."""
        layers = getattr(getattr(getattr(model, "decoder", None), "stack", None), "layers", None)
        if (
            getattr(model, "family", None) != "lm"
            or cache is None
            or cache.max_len is not None
            or any(layer.self_attn.concatenate for layer in cache.layers)
            or model.training
            or torch.is_grad_enabled()
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or layers is None
            or not all(type(layer) is TransformerLayer and layer.cross_attn is None for layer in layers)
            or not _plain_modules(model)
        ):
            return None
        return cls(model, rows)

    def __call__(self, ids: Tensor, cache: DecoderCache, positions: Tensor | None = None) -> Tensor:
        """The logits after feeding `ids` (N, 1). positions: (N, 1) each row's own (left-padded rows count from
        their first real token); default the cache slot, the same in every row."""
        start = cache.length
        if start >= self.max_seq_len:
            raise InputError(f"sequence of {start + 1} tokens exceeds max_seq_len={self.max_seq_len}")
        slots = self.slots[start : start + 1]  # (1,) the cache slot of this token
        where = slots if positions is None else positions
        x = self.embed(ids, where)  # (N, 1, C)
        rotary = None if self.rotary is None else self.rotary(where)
        keys = cache.update_key_mask(slots, None)  # (N, L), None while every cached key is real
        mask = None if keys is None else keys[:, None, None, :] & causal_mask(slots, keys.size(1))  # (N, 1, 1, L)
        for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
            x = layer(x, layer_cache.self_attn, slots, rotary, mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        cache.length += 1
        return self.head(x)[:, -1]  # (N, V)
