"""Caches for incremental decoding: a `KVCache` per self-attention layer, and a `DecoderCache` for a whole model.

During generation each step feeds only the new token(s); the keys and values of earlier tokens are kept here
instead of being recomputed. For an encoder-decoder the cache also keeps the encoder output, its padding mask and
every decoder layer's cross-attention keys/values, all computed once per source.

Shape legend: B batch, G key/value heads, L cached length, T new tokens, D head dim, S source length, C model dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class KVCache:
    """Keys and values of the tokens seen so far by one self-attention layer, for incremental decoding.

    Growing (default): `positions` must continue where the last update stopped, and `k`, `v` are the (B, G, L, D)
    keys and values so far. They live at the start of larger buffers that new tokens are written into in place;
    a full buffer is replaced by one twice as long (up to `limit` slots). Appending a token thus costs a copy of
    that token, not of the whole cache as concatenation would (O(L) per step, O(L^2) per generation).
    `reorder` (beam search) gathers the cached rows into a second pair of buffers and swaps the pairs, so the
    views handed out before a reorder are overwritten by the next one: copy them to keep them.
    `concatenate=True` grows by plain concatenation instead: what the ONNX export traces.
    Preallocated (`max_len` given): fixed (B, G, max_len, D) buffers written in place at `positions`; `update`
    then returns all max_len slots and the caller's causal mask (built from positions) hides the slots not
    written yet. The preallocated form keeps shapes static, which `torch.compile` and CUDA graphs like.
    """

    MIN_CAPACITY = 64  # slots of a growing cache's first buffer, at least

    def __init__(
        self,
        batch_size: int | None = None,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        *,
        limit: int | None = None,
        concatenate: bool = False,
    ) -> None:
        self.max_len = max_len
        self.limit = limit  # growing: never more slots than this (the model's max_seq_len)
        self.concatenate = concatenate
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self._buffers: tuple[Tensor, Tensor] | None = None  # growing: (B, G, capacity, D) each; k, v are views
        self._spare: tuple[Tensor, Tensor] | None = None  # growing: a second pair that `reorder` gathers into
        self._views: tuple[Tensor | None, Tensor | None] = (None, None)  # the views of them last handed out
        if max_len is not None:
            if batch_size is None or n_kv_heads is None or head_dim is None:
                raise ValueError("a preallocated KVCache needs batch_size, n_kv_heads and head_dim")
            shape = (batch_size, n_kv_heads, max_len, head_dim)  # (B, G, max_len, D)
            self.k = torch.zeros(shape, dtype=dtype, device=device)
            self.v = torch.zeros(shape, dtype=dtype, device=device)
            # Under torch.compile, buffers that keep their address (like parameters): CUDA graphs then update them
            # in place instead of refusing inputs that are mutated.
            torch._dynamo.mark_static_address(self.k)
            torch._dynamo.mark_static_address(self.v)

    @property
    def preallocated(self) -> bool:
        return self.max_len is not None

    def update(self, positions: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, G, T, D) for the T tokens at `positions` (T,); return the cached keys and values:
        (B, G, L, D) with L the tokens so far, or all max_len slots of a preallocated cache (unwritten ones are
        zeros, for the caller's causal mask to hide). A growing cache holding L tokens needs positions L .. L+T-1
        (what `TransformerBody` passes): it writes at them, and checking them would cost a device sync per step."""
        if self.preallocated:
            assert self.k is not None and self.v is not None
            self.k.index_copy_(2, positions, k.to(self.k.dtype))
            self.v.index_copy_(2, positions, v.to(self.v.dtype))
        elif self.k is None and self.concatenate:
            self.k, self.v = k, v
        elif self.concatenate:
            assert self.k is not None and self.v is not None  # k and v are set together
            self.k = torch.cat([self.k, k], dim=2)  # (B, G, L + T, D)
            self.v = torch.cat([self.v, v], dim=2)
        else:
            self._append(positions, k, v)
        assert self.k is not None and self.v is not None  # every branch above stored them
        return self.k, self.v

    def _append(self, positions: Tensor, k: Tensor, v: Tensor) -> None:
        """Write k, v (B, G, T, D) after the L cached tokens, at `positions` (L .. L+T-1), into the buffers (a larger
        pair when they are full)."""
        L = 0 if self.k is None else self.k.size(2)
        needed = L + k.size(2)
        kb, vb = self._buffers if self._buffers is not None else (None, None)
        if (
            kb is None
            or kb.size(2) < needed
            or not self._in_buffers()
            or kb.shape[:2] != k.shape[:2]
            or kb.size(3) != k.size(3)
            or kb.dtype != k.dtype
        ):
            capacity = max(2 * needed, self.MIN_CAPACITY)
            if self.limit is not None:
                capacity = max(min(capacity, self.limit), needed)
            B, G, _, D = k.shape
            kb, vb = k.new_empty(B, G, capacity, D), v.new_empty(B, G, capacity, D)
            if L:
                assert self.k is not None and self.v is not None  # L > 0: tokens are cached
                kb.narrow(2, 0, L).copy_(self.k)
                vb.narrow(2, 0, L).copy_(self.v)
            self._buffers, self._spare = (kb, vb), None
        assert vb is not None  # the buffers come in pairs: vb is set whenever kb is
        kb.index_copy_(2, positions, k)  # one call where narrow + copy_ is two: decoding makes ~8 a token
        vb.index_copy_(2, positions, v)
        self.k, self.v = kb.narrow(2, 0, needed), vb.narrow(2, 0, needed)
        self._views = self.k, self.v

    def _in_buffers(self) -> bool:
        """Whether k and v are the views of the buffers this cache handed out (not replaced from outside since)."""
        return self.k is None or (self.k is self._views[0] and self.v is self._views[1])

    def reorder(self, indices: Tensor) -> None:
        """Select batch rows (beam search keeps the rows of the surviving hypotheses)."""
        if self.k is None:
            return
        assert self.v is not None  # k and v are set together
        if self.preallocated and indices.numel() == self.k.size(0):
            # In place: the buffers keep their address (a compiled graph's static inputs).
            self.k.copy_(self.k.index_select(0, indices))
            self.v.copy_(self.v.index_select(0, indices))
        elif self.preallocated:  # another number of rows: new buffers
            self.k, self.v = self.k.index_select(0, indices), self.v.index_select(0, indices)
        elif self._buffers is not None and self._in_buffers():
            # Gather the L cached slots (not the spare ones after them) into the second pair of buffers, then swap
            # the pairs: appending stays in place, and a beam-search step copies L slots per row, not the buffers'
            # whole capacity, and allocates nothing.
            L = self.k.size(2)
            kb, vb = self._buffers
            shape = (indices.numel(), *kb.shape[1:])
            if self._spare is None or self._spare[0].shape != shape:
                self._spare = kb.new_empty(shape), vb.new_empty(shape)
            sk, sv = self._spare
            if torch.is_grad_enabled() and (self.k.requires_grad or self.v.requires_grad):  # out= has no autograd
                sk.narrow(2, 0, L).copy_(self.k.index_select(0, indices))
                sv.narrow(2, 0, L).copy_(self.v.index_select(0, indices))
            else:
                torch.index_select(self.k, 0, indices, out=sk.narrow(2, 0, L))
                torch.index_select(self.v, 0, indices, out=sv.narrow(2, 0, L))
            self._buffers, self._spare = (sk, sv), ((kb, vb) if kb.shape == shape else None)
            self.k, self.v = self._views = sk.narrow(2, 0, L), sv.narrow(2, 0, L)
        else:
            self.k = self.k.index_select(0, indices)
            self.v = self.v.index_select(0, indices)


@dataclass
class LayerCache:
    """What one decoder layer keeps between steps."""

    self_attn: KVCache
    cross_kv: tuple[Tensor, Tensor] | None = None  # cross-attention (k, v), each (B, G, S, D), computed once


class DecoderCache:
    """The caches of every decoder layer, plus what the model needs to build masks and positions for later steps.

    Create one with the model's `init_cache(...)`, pass it to every forward call of a generation, and it is
    updated in place. `length` is the number of tokens seen so far: the next token's position.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int | None = None,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        *,
        limit: int | None = None,
    ) -> None:
        self.layers = [
            LayerCache(KVCache(batch_size, n_kv_heads, head_dim, max_len, dtype, device, limit=limit))
            for _ in range(n_layers)
        ]
        self.max_len = max_len
        self.batch_size = batch_size
        self.length = 0
        # Which cached keys are real tokens (True) rather than padding: (B, L), or (B, max_len) preallocated. A
        # growing cache leaves it None while every key is real, so that decoding steps need no mask at all.
        self.key_mask: Tensor | None = None
        if max_len is not None:
            assert batch_size is not None  # each layer's preallocated KVCache refused a missing batch_size
            self.key_mask = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
        # Encoder-decoder only: the encoder output (B, S, C) and its key mask (B, 1, 1, S) or None.
        self.memory: Tensor | None = None
        self.memory_mask: Tensor | None = None

    def reset(self) -> None:
        """Empty the cache for a new generation of the same batch size, keeping its buffers: a preallocated cache
        keeps their addresses too, which a compiled graph (CUDA graphs) needs to be replayed rather than recorded
        again. Slots left over from the last generation are hidden by the causal mask until they are written."""
        for layer in self.layers:
            layer.cross_kv = None
            if not layer.self_attn.preallocated:
                layer.self_attn.k = layer.self_attn.v = None  # the next update starts over in the same buffers
        self.length = 0
        if self.max_len is not None:
            assert self.key_mask is not None
            self.key_mask.fill_(True)
        else:
            self.key_mask = None
        self.memory = self.memory_mask = None

    def update_key_mask(self, positions: Tensor, key_mask: Tensor | None) -> Tensor | None:
        """Record which of the new tokens (B, T) are real (None: all of them); return the mask of every cached key,
        (B, L), or None when every key of a growing cache is real (then only causality limits attention)."""
        if self.max_len is not None:
            assert self.key_mask is not None
            if key_mask is not None:
                self.key_mask[:, positions] = key_mask
        elif self.key_mask is not None:
            new = (
                key_mask
                if key_mask is not None
                else torch.ones(self.key_mask.size(0), positions.numel(), dtype=torch.bool, device=self.key_mask.device)
            )
            self.key_mask = torch.cat([self.key_mask, new], dim=1)
        elif key_mask is not None and not bool(key_mask.all()):  # the first padding: mark the earlier keys real
            earlier = torch.ones(key_mask.size(0), self.length, dtype=torch.bool, device=key_mask.device)
            self.key_mask = torch.cat([earlier, key_mask], dim=1)
        return self.key_mask

    def reorder(self, indices: Tensor, *, cross: bool = True) -> None:
        """Keep batch rows `indices` (in that order) of everything cached, e.g. the surviving beams.

        cross=False leaves the encoder side (memory, its mask, cross-attention keys/values) as it is: correct,
        and cheaper, when rows only move among copies of the same source, as beams of one sentence do.
        """
        for layer in self.layers:
            layer.self_attn.reorder(indices)
            if cross and layer.cross_kv is not None:
                k, v = layer.cross_kv
                layer.cross_kv = k.index_select(0, indices), v.index_select(0, indices)
        if self.key_mask is not None:
            self.key_mask = self.key_mask.index_select(0, indices)
        if self.batch_size is not None:
            self.batch_size = indices.numel()
        if not cross:
            return
        if self.memory is not None:
            self.memory = self.memory.index_select(0, indices)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, indices)

    # --- rows that come and go (continuous batching) ------------------------------------------------------------
    # A server decodes many requests in one batch: a request joins when its prompt is prefilled, and leaves when it
    # ends. Every row's tokens end at the same slot (the next step writes all rows at slot L), so rows of different
    # lengths are aligned at the end and padded on the left with slots `key_mask` hides. Each row's positions are
    # its own (the caller passes them), so the padding changes no row's numbers.

    def join(self, other: DecoderCache) -> None:
        """Append the rows of `other` (a growing decoder-only cache) after this one's, both aligned at their last
        slot: the shorter side is padded on the left with masked slots. Both caches must be growing (no max_len)."""
        if self.max_len is not None or other.max_len is not None or self.memory is not None:
            raise ValueError("join works on growing decoder-only caches")
        if other.length == 0:
            raise ValueError("the cache joined holds no tokens")
        if self.length == 0 or self.layers[0].self_attn.k is None:  # empty: take the other's rows as they are
            for mine, theirs in zip(self.layers, other.layers, strict=True):
                mine.self_attn.k, mine.self_attn.v = theirs.self_attn.k, theirs.self_attn.v
            self.length, self.key_mask = other.length, other.key_mask
            return
        L = max(self.length, other.length)
        masks = []
        for cache in (self, other):
            k = cache.layers[0].self_attn.k
            assert k is not None  # a cache with tokens has keys
            mask = cache.key_mask
            if mask is None:
                mask = torch.ones(k.size(0), cache.length, dtype=torch.bool, device=k.device)
            masks.append(_pad_left(mask, L, False))  # (B, L)
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            a, b = mine.self_attn, theirs.self_attn
            assert a.k is not None and a.v is not None and b.k is not None and b.v is not None
            # New tensors (B1 + B2, G, L, D): the next append copies them into fresh buffers.
            a.k = torch.cat([_pad_left(a.k, L, 0.0), _pad_left(b.k, L, 0.0)], dim=0)
            a.v = torch.cat([_pad_left(a.v, L, 0.0), _pad_left(b.v, L, 0.0)], dim=0)
        self.key_mask = torch.cat(masks, dim=0)  # (B1 + B2, L)
        self.length = L

    def drop_leading_padding(self) -> None:
        """Remove the first slots that are padding in every row (after rows left), so that `length` is the
        longest row's length again and never grows past the model's context while rows come and go."""
        if self.key_mask is None or self.length == 0 or self.max_len is not None:
            return
        real = self.key_mask.any(dim=0)  # (L,)
        if not bool(real.any()):
            return
        first = int(real.to(torch.int8).argmax())  # the first slot some row uses
        if first == 0:
            return
        for layer in self.layers:
            kv = layer.self_attn
            assert kv.k is not None and kv.v is not None
            kv.k, kv.v = kv.k[:, :, first:], kv.v[:, :, first:]  # views: the next append copies into new buffers
        self.key_mask = self.key_mask[:, first:]
        self.length -= first
        if bool(self.key_mask.all()):
            self.key_mask = None  # every key real again: steps need no mask


def _pad_left(x: Tensor, length: int, value: float | bool) -> Tensor:
    """Pad dimension 2 (keys/values: (B, G, L, D)) or 1 (masks: (B, L)) on the left up to `length` slots."""
    dim = 2 if x.dim() == 4 else 1
    missing = length - x.size(dim)
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_full(shape, value), x], dim=dim)
