"""Token-by-token decoding of one sequence into a cache the caller keeps: what streaming and chat sessions use.

    cache = lm.init_cache(1)
    for token in next_tokens(lm, cache, prompt_ids, max_new_tokens=50, stop_ids={eos}):
        ...                       # each token as soon as it is chosen; break at any time

`next_tokens` feeds `new_ids` into the cache (the prefill: only the tokens the cache has not seen), then yields one
token at a time. A token is fed to the model only when the next one is asked for, so when the loop ends (a stop
id, the length limit, or the caller's break) the last token yielded is NOT in the cache: `cache.length` always
says how many tokens are. A chat session thus keeps its cache between turns and prefills only each turn's new
tokens (the last reply's end-of-turn token, then the next user message).

Greedy when `do_sample` is False, else sampling with temperature / top-k / top-p (`logits.py`); the same choices
as `generate` makes for one row (tested: greedy tokens equal `generate`'s).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import torch

from ..errors import InputError
from ..nn.cache import DecoderCache
from .decode_step import DecodeStep
from .logits import process_logits, sample
from .steps import DecodingLM, slide_keep


@torch.no_grad()
def next_tokens(
    model: DecodingLM,
    cache: DecoderCache,
    new_ids: Sequence[int],
    *,
    max_new_tokens: int,
    stop_ids: Collection[int] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    slide: bool = False,
) -> Iterator[int]:
    """Feed `new_ids` (at least one) after what `cache` holds, then yield up to `max_new_tokens` tokens, ending
    after the first one in `stop_ids`. Stops at the model's context (max_seq_len), unless `slide`: then, each time
    the context is full, the model starts again from the last `slide_keep` tokens, as `generate` does (the cache
    must start empty: the sequence is `new_ids` and what follows)."""
    if not new_ids:
        raise InputError("next_tokens needs at least one new token to feed")
    window = model.cfg.max_seq_len
    room = window - cache.length - len(new_ids)
    if room < 0:
        raise InputError(
            f"{cache.length} cached and {len(new_ids)} new tokens exceed the model's context of {window} tokens"
        )
    if slide and cache.length:
        raise InputError("next_tokens slides past the context only from an empty cache")
    history = list(new_ids) if slide else []
    device = next(model.parameters()).device

    step = DecodeStep.of(model, cache, 1)  # one token at a time as plain function calls, where it applies

    def feed(ids: Sequence[int]) -> torch.Tensor:
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)  # (1, T)
        if step is not None and len(ids) == 1:
            return step(x, cache)[0]
        real = torch.ones_like(x, dtype=torch.bool)  # every fed token is real, even one equal to pad_id
        return model(x, attention_mask=real, cache=cache)[0, -1]  # (V,) the next token's logits

    logits = feed(new_ids)
    last = max_new_tokens if slide else min(max_new_tokens, room + 1)  # room + 1: the last token is never fed
    for i in range(last):
        scores = logits.float()[None]  # (1, V)
        if do_sample:
            token = int(sample(process_logits(scores, temperature=temperature, top_k=top_k, top_p=top_p), generator))
        else:
            token = int(scores.argmax(dim=-1))
        yield token
        if token in stop_ids or i == last - 1:
            return
        if slide:
            history.append(token)
            if cache.length == window:  # full: start again from the last tokens, as from a prompt
                cache.reset()
                logits = feed(history[-slide_keep(window) :])
                continue
        logits = feed([token])
