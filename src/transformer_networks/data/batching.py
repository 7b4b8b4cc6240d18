"""Turning tokenized examples into padded batches.

    translation:     token_budget_batches  groups examples of similar length so that no batch holds more than
                     `max_tokens` tokens, padding included (as fairseq's --max-tokens does)
    language model:  pack_blocks           cuts one long token stream into contiguous (block_size + 1)-token chunks
                     LMBlocks              the same blocks in batches, each made when it is needed
    classification:  pad_batch             pads each batch to its own longest example
                     LazyBatches           batches of index groups, each collated when it is needed

Padding goes on the right with `pad_id` (the models derive their masks from it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int = 0, *, prefix: int | None = None, suffix: int | None = None
) -> Tensor:
    """(B, longest) LongTensor, each row right-padded with pad_id; `prefix` / `suffix`: a token put before / after
    every sequence (a decoder's BOS and EOS). The sequences may be lists or integer arrays."""
    if not sequences:
        raise ValueError("cannot pad an empty batch")
    before, after = int(prefix is not None), int(suffix is not None)
    lengths = [len(s) for s in sequences]
    out = np.full((len(sequences), max(lengths) + before + after), pad_id, dtype=np.int64)
    for i, (s, n) in enumerate(zip(sequences, lengths, strict=True)):  # numpy: a row costs ~1 us, torch's ~10
        out[i, before : before + n] = s
    if prefix is not None:
        out[:, 0] = prefix
    if suffix is not None:
        out[np.arange(len(sequences)), before + np.asarray(lengths)] = suffix
    return torch.from_numpy(out)


class BatchSequence(Sequence[dict[str, Tensor]]):
    """A sequence of batches, each made when it is indexed (the batches of a large dataset are never all in memory
    at once). Subclasses give `__len__` and `_batch(i)` for 0 <= i < len."""

    def _batch(self, i: int) -> dict[str, Tensor]:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> dict[str, Tensor]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Tensor]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if isinstance(index, slice):
            return [self._batch(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._batch(index % len(self))


class LazyBatches(BatchSequence):
    """`collate(group)` for each group of example indices."""

    def __init__(self, groups: list[list[int]], collate: Callable[[list[int]], dict[str, Tensor]]) -> None:
        self.groups, self.collate = groups, collate

    def __len__(self) -> int:
        return len(self.groups)

    def _batch(self, i: int) -> dict[str, Tensor]:
        return self.collate(self.groups[i])


def compact(ids: Sequence[int]) -> np.ndarray:
    """Token ids as an int32 array: 4 bytes a token, where a list of Python ints costs 8 to 36."""
    return np.asarray(ids, dtype=np.int32)


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, *, shuffle: bool = False, seed: int = 0
) -> list[list[int]]:
    """Indices of examples grouped into batches of at most `max_tokens` padded tokens.

    `lengths[i]` is the padded size example i needs (for a translation pair, the longer of its source and
    target). Examples are sorted by length so each batch pads little; with `shuffle`, ties are broken randomly
    and the batch order is shuffled (seeded), so every epoch sees different neighbours.
    """
    if max_tokens < 1:
        raise UserError(f"--max-tokens must be positive, got {max_tokens}")
    too_long = [i for i, n in enumerate(lengths) if n > max_tokens]
    if too_long:
        raise UserError(
            f"{len(too_long)} example(s) are longer than --max-tokens={max_tokens} "
            f"(the longest has {max(lengths)} tokens)"
        )
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in lengths] if shuffle else list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tiebreak[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and new_longest * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, order: Sequence[int], rng: random.Random, *, pool: int = 50
) -> list[list[int]]:
    """`order` (a shuffled list of example indices) cut into batches of `batch_size` examples of similar length.

    Every `pool` batches' worth of `order` is sorted by length (longest first, ties kept in `order`'s order) and
    cut into batches; the batches are then shuffled, so that a pass still mixes short and long ones. Only the
    last batch can be smaller.
    """
    batches: list[list[int]] = []
    span = batch_size * pool
    for s in range(0, len(order), span):
        chunk = sorted(order[s : s + span], key=lambda i: -lengths[i])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    last = batches.pop() if batches and len(batches[-1]) < batch_size else None
    rng.shuffle(batches)
    return batches + ([last] if last else [])


def pack_blocks(ids: Sequence[int] | Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Inputs and next-token targets, each (N, block_size), from consecutive non-overlapping chunks of the stream.

    Chunk n covers tokens [n * block_size, (n + 1) * block_size + 1): inputs are its first block_size tokens,
    targets the same shifted by one, so every token of the stream except the first is predicted once. A tail too
    short for a whole block is dropped.
    """
    stream = torch.as_tensor(ids, dtype=torch.long)
    n = (len(stream) - 1) // block_size
    if n < 1:
        raise UserError(f"the text has {len(stream)} tokens: too short for one block of {block_size} + 1")
    inputs = stream[: n * block_size].view(n, block_size)
    targets = stream[1 : n * block_size + 1].view(n, block_size)
    return inputs, targets


class LMBlocks(BatchSequence):
    """The batches of `pack_blocks(stream[offset:], block_size)` taken in `order`, `batch_size` blocks each, made
    one at a time when indexed (a corpus's batches are never all in memory). `stream` is anything sliced as
    `stream[i:j]` into a tensor of ids: a tensor, or a `prepared.TokenStream` over memory-mapped shards.
    A batch is {"ids": (B, block_size), "targets": (B, block_size)}, both int64."""

    def __init__(self, stream: Any, block_size: int, batch_size: int, offset: int = 0, order: Tensor | None = None):
        n = (len(stream) - offset - 1) // block_size
        if n < 1:
            raise UserError(f"the text has {len(stream)} tokens: too short for one block of {block_size} + 1")
        self.stream, self.block_size, self.batch_size, self.offset = stream, block_size, batch_size, offset
        self.order = torch.arange(n) if order is None else order  # (n,) block numbers
        self.blocks = n

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def _batch(self, i: int) -> dict[str, Tensor]:
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size].tolist()
        B = self.block_size
        windows = torch.stack(
            [self.stream[self.offset + r * B : self.offset + (r + 1) * B + 1].long() for r in rows]
        )  # (rows, B + 1)
        return {"ids": windows[:, :-1], "targets": windows[:, 1:]}
