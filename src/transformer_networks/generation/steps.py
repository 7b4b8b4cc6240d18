"""Feeding a model one step at a time: what every decoding strategy needs from a language model or a translator.

A `Steps` object hides the difference between the two model families and between cached and uncached decoding:

    logits = steps.first()        # (N, V) the next-token logits after the prompt (LM) or after BOS (seq2seq)
    logits = steps.next(tokens)   # (N, V) after appending tokens (N,) to every row
    steps.reorder(rows)           # keep rows `rows` (N,), e.g. the surviving beams

With the KV cache the prompt is run once (prefill) and each `next` feeds one token; without it every `next` runs
the whole sequence again (the reference the cached path is tested against). Each input row is repeated
`copies` times (beams, or several samples per prompt); for a seq2seq model the encoder runs once per source and
its output is repeated.

Language-model prompts of different lengths are padded on the left, so every row's next token is at the end;
each row's positions count from its own first real token, so the padding changes nothing.

Past the context: a language model given a `window` (its max_seq_len) goes on when the sequence outgrows it. When
one more token would not fit, the model starts again from the last `slide_keep(window)` tokens (three quarters of
the window), at positions from 0, as if they were the prompt: one prefill each time the window fills, not one per
token (nanoGPT crops to the window and recomputes it at every token). The model so always sees between 3/4 of its
window and all of it, for every positional encoding (absolute positions must be computed again anyway).
`incremental.next_tokens` slides by the same rule, so streamed and batch generation give the same tokens.
Shapes: B inputs, N = B * copies rows, P prompt length, S source length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..nn.cache import DecoderCache
from ..nn.masks import as_attention_mask, left_padded_positions
from .decode_step import DecodeStep

if TYPE_CHECKING:
    from ..config import TransformerConfig


# What decoding needs of a model (the models package imports this one, not the other way round), as Protocols:
# both families have cfg, parameters() and init_cache(batch_size=None, max_len=None); a language model ("lm") is called
# as model(ids, attention_mask=, cache=, positions=, logits_to_keep=); a "seq2seq" model has encode(src, mask) and
# decode(tokens, memory, memory_mask=, tgt_mask=, cache=). A model's `family` says which of the two it is.
class DecodingModel(Protocol):
    cfg: TransformerConfig

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def init_cache(self, batch_size: int | None = None, max_len: int | None = None) -> DecoderCache: ...


class DecodingLM(DecodingModel, Protocol):
    # Any: the call returns the logits (B, T, V) here (no return_dict); an nn.Module's __call__ is typed as Any.
    def __call__(
        self,
        ids: Tensor,
        /,
        *,
        attention_mask: Tensor | None = ...,
        cache: DecoderCache | None = ...,
        positions: Tensor | None = ...,
        logits_to_keep: int = ...,
    ) -> Any: ...


class DecodingSeq2Seq(DecodingModel, Protocol):
    def encode(self, src_ids: Tensor, src_mask: Tensor | None = ..., /) -> Tensor: ...

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        /,
        *,
        memory_mask: Tensor | None = ...,
        tgt_mask: Tensor | None = ...,
        cache: DecoderCache | None = ...,
    ) -> Tensor: ...


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Token-id lists of different lengths -> (ids, attention_mask), both (B, P), padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = True
    return ids.to(device), mask.to(device)


def right_pad(rows: list[list[int]], pad_id: int) -> Tensor:
    """Token-id lists of different lengths -> (B, T) ids padded on the right."""
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids


def prepared_cache(model: DecodingModel, rows: int, static_len: int | None, cache: DecoderCache | None) -> DecoderCache:
    """`cache` emptied for a new generation (checked to fit `rows` rows and `static_len` tokens when preallocated),
    else a new cache: preallocated for `static_len` tokens, or growing."""
    if cache is None:
        return model.init_cache(rows, static_len) if static_len is not None else model.init_cache()
    if cache.max_len is not None and (cache.batch_size != rows or (static_len or 0) > cache.max_len):
        raise InputError(
            f"the cache given holds {cache.batch_size} rows of {cache.max_len} tokens; this "
            f"generation needs {rows} rows" + (f" of {static_len} tokens" if static_len else "")
        )
    cache.reset()
    return cache


def slide_keep(window: int) -> int:
    """How many of its last tokens a language model starts again from when its context of `window` is full."""
    return max(1, window * 3 // 4)


class LMSteps:
    def __init__(
        self,
        model: DecodingLM,
        ids: Tensor,
        attention_mask: Tensor,
        *,
        copies: int = 1,
        use_cache: bool = True,
        static_len: int | None = None,
        cache: DecoderCache | None = None,
        window: int | None = None,
    ) -> None:
        if not bool(attention_mask[:, -1].all()):
            raise InputError("pad batched prompts on the left: every row's last token must be a real token")
        self.model = model
        self._start(ids.repeat_interleave(copies, dim=0), attention_mask.repeat_interleave(copies, dim=0))
        self.cache = prepared_cache(model, self.ids.size(0), static_len, cache) if use_cache else None
        # The steps after the prompt as plain function calls, where the model and cache allow (decode_step.py).
        self.fast = DecodeStep.of(model, self.cache, self.ids.size(0))
        # window: slide past the context (see the module's docstring). Each row's context is a suffix of its
        # sequence, `seen` tokens long (on the CPU: checked at every step); the whole batch is kept for a restart.
        self.window = window
        self.history = (self.ids, self.mask) if window is not None else None
        self.seen = self.mask.sum(1).cpu() if window is not None else None  # (N,)

    def _start(self, ids: Tensor, mask: Tensor) -> None:
        self.ids, self.mask = ids, mask  # (N, P)
        # Left-padded rows count positions from their own first real token. Without padding the model's default
        # positions (0, 1, ... after the cached tokens) are the same, and passing none saves work at every step.
        self.positions = None if bool(mask.all()) else left_padded_positions(mask)  # (N, P)
        self.next_position = None if self.positions is None else self.positions[:, -1] + 1  # (N,)

    def first(self) -> Tensor:
        return self.model(
            self.ids, attention_mask=self.mask, cache=self.cache, positions=self.positions, logits_to_keep=1
        )[:, -1]

    def next(self, tokens: Tensor) -> Tensor:
        if self.history is not None:
            assert self.window is not None and self.seen is not None  # kept together
            ids, mask = self.history
            self.history = torch.cat([ids, tokens[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            full = self.seen == self.window
            self.seen = torch.where(full, slide_keep(self.window), self.seen + 1)
            if bool(full.any()):  # a row's context is full: the batch starts again from each row's context
                return self._restart()
        tokens, positions = tokens[:, None], None  # (N, 1)
        if self.next_position is not None:
            positions = self.next_position[:, None]  # (N, 1)
            self.next_position = self.next_position + 1
        if self.fast is not None:
            assert self.cache is not None  # `DecodeStep.of` needs one
            return self.fast(tokens, self.cache, positions)
        if self.cache is not None:
            # New tokens are real even when they equal the padding id; a model without one needs no mask at all.
            real = None if self.model.cfg.pad_id is None else torch.ones_like(tokens, dtype=torch.bool)
            return self.model(tokens, attention_mask=real, cache=self.cache, positions=positions)[:, -1]
        real = torch.ones_like(tokens, dtype=torch.bool)
        self.ids = torch.cat([self.ids, tokens], dim=1)
        self.mask = torch.cat([self.mask, real], dim=1)
        if self.positions is not None:
            assert positions is not None  # next_position is set whenever positions are
            self.positions = torch.cat([self.positions, positions], dim=1)
        return self.model(self.ids, attention_mask=self.mask, positions=self.positions, logits_to_keep=1)[:, -1]

    def _restart(self) -> Tensor:
        """Run every row's context (the last `seen` tokens of its sequence, left-padded) as a new prompt."""
        assert self.history is not None and self.seen is not None
        width = int(self.seen.max())
        ids = self.history[0][:, -width:]
        mask = torch.arange(width) >= (width - self.seen)[:, None]  # the last `seen` of each row are real
        self._start(ids, mask.to(ids.device))
        if self.cache is not None:
            self.cache.reset()
        return self.first()

    def reorder(self, rows: Tensor) -> None:
        if self.next_position is not None:
            self.next_position = self.next_position[rows]
        if self.history is not None:
            assert self.seen is not None  # kept with the history
            self.history = self.history[0][rows], self.history[1][rows]
            self.seen = self.seen[rows.cpu()]
        if self.cache is not None:
            self.cache.reorder(rows)
        else:
            self.ids, self.mask = self.ids[rows], self.mask[rows]
            if self.positions is not None:
                self.positions = self.positions[rows]


class Seq2SeqSteps:
    def __init__(
        self,
        model: DecodingSeq2Seq,
        src_ids: Tensor,
        src_mask: Tensor,
        *,
        bos_id: int,
        copies: int = 1,
        use_cache: bool = True,
        static_len: int | None = None,
        cache: DecoderCache | None = None,
    ) -> None:
        self.model = model
        memory = model.encode(src_ids, src_mask)  # (B, S, C): once per source, not per beam
        self.memory = memory.repeat_interleave(copies, dim=0)  # (N, S, C)
        self.memory_mask = src_mask.repeat_interleave(copies, dim=0)  # (N, S)
        n = self.memory.size(0)
        self.tokens = torch.full((n, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (N, 1) BOS
        self.cache = None
        if use_cache:
            self.cache = prepared_cache(model, n, static_len, cache)
            self.cache.memory = self.memory
            self.cache.memory_mask = as_attention_mask(self.memory_mask)

    def _run(self, tokens: Tensor) -> Tensor:
        real = torch.ones_like(tokens, dtype=torch.bool)
        return self.model.decode(tokens, self.memory, memory_mask=self.memory_mask, tgt_mask=real, cache=self.cache)[
            :, -1
        ]

    def first(self) -> Tensor:
        return self._run(self.tokens)

    def next(self, tokens: Tensor) -> Tensor:
        if self.cache is not None:
            return self._run(tokens[:, None])
        self.tokens = torch.cat([self.tokens, tokens[:, None]], dim=1)
        return self._run(self.tokens)

    def reorder(self, rows: Tensor) -> None:
        # Rows only ever move among the copies of the same source, whose encoder output, source mask and
        # cross-attention keys/values are identical: only the decoder's own state needs reordering.
        if self.cache is not None:
            self.cache.reorder(rows, cross=False)
        else:
            self.tokens = self.tokens[rows]
