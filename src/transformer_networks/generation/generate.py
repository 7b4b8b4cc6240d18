"""`generate`: one entry point for greedy decoding, sampling and beam search, for both model families.

    lm.generate(input_ids, max_new_tokens=100, do_sample=True, top_p=0.9, seed=0)
    mt.generate(src_ids, num_beams=4, length_penalty=0.6)          # the paper's translation setting

(`TransformerLM.generate` and `Seq2SeqTransformer.generate` call this function.) The argument names follow Hugging
Face `generate`. A language model returns its prompt followed by the new tokens (left-padded prompts stay as
given); a seq2seq model returns the new tokens only, without the BOS the decoder starts from. Rows that stop
early are filled with `pad_id` (the model's, else EOS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from ..errors import InputError
from ..nn.cache import DecoderCache
from ..tokens import BOS_ID, EOS_ID
from .logits import check_sampling
from .search import Hypothesis, Steps, beam_search, greedy_or_sample
from .steps import DecodingLM, DecodingModel, DecodingSeq2Seq, LMSteps, Seq2SeqSteps, right_pad

EXTRA_SOURCE_TOKENS = 50  # the paper's maximum output length: input length + 50 (Section 6.1)


@dataclass
class GenerationOutput:
    sequences: Tensor  # (B * num_return_sequences, T): the n outputs of input 0, then those of input 1, ...
    scores: Tensor  # (B * num_return_sequences,) beam: log p / length penalty; otherwise log p of the new tokens
    hypotheses: list[list[Hypothesis]]  # per input, its n outputs (new tokens only), best first for beams


def default_attention_mask(
    input_ids: Tensor, attention_mask: Tensor | None, pad_id: int | None, eos_id: int | None, model_pad: int | None
) -> Tensor:
    """The prompt's mask of real tokens (B, P): `attention_mask` checked, else every token but the padding. The
    padding is pad_id, unless it is also the EOS (GPT-2's convention, where EOS also separates the documents of a
    prompt; Hugging Face infers no mask then either), else the model's own."""
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape or attention_mask.dtype != torch.bool:
            raise InputError(f"attention_mask must be a boolean tensor of shape {tuple(input_ids.shape)}")
        return attention_mask
    input_pad = pad_id if pad_id is not None and pad_id != eos_id else model_pad
    return input_ids != input_pad if input_pad is not None else torch.ones_like(input_ids, dtype=torch.bool)


@torch.no_grad()
def generate(
    model: DecodingModel,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
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
    """Generate from a batch of prompts (language model) or sources (seq2seq), (B, P) token ids.

    attention_mask: (B, P), True = real token; default: the tokens other than `pad_id` (the argument, else the
        model's). Language-model prompts of different lengths are padded on the left (`steps.left_pad` builds
        such a batch).
    max_new_tokens: default 100 for a language model; for seq2seq the source length + 50 (the paper), capped by
        the decoder's context (max_seq_len). A language model goes on past its context: when it is full, the model
        starts again from its last 3/4 (see steps.py). min_new_tokens: EOS is forbidden before this many new tokens.
    do_sample, temperature, top_k, top_p, seed: sampling (see `logits.py`); greedy when do_sample is False.
    num_beams > 1: beam search with the GNMT length penalty `length_penalty` (alpha).
    num_return_sequences: beams give their n best; sampling draws n samples per input.
    eos_id: stops a row (default: the config's eos_id, else for seq2seq the tokenizer's EOS; a language model
        without either runs to max_new_tokens). bos_id: the seq2seq decoder's first token (default: the config's
        bos_id, e.g. an imported BART's decoder start, else the tokenizer's BOS). pad_id: the padding of
        input_ids (masked when no attention_mask is given, unless it equals eos_id, as Hugging Face does with
        pad_token_id) and what fills the rows that stop early (default: the config's pad_id, else EOS).
    use_cache: the KV cache (prefill once, then one token per step); static_cache: preallocate it, so that every
        step feeds the layers the same shapes: a compiled stack (`model.decoder.stack.compile()`, with
        mode="reduce-overhead" for CUDA graphs) then reuses one graph for all steps instead of recompiling.
    cache: decode into this cache (`model.init_cache(rows, max_len)`, emptied first) instead of a new one. Giving
        the same preallocated cache to every call keeps its buffers at one address, so CUDA graphs recorded by a
        compiled stack are replayed, not recorded again; its rows must equal the batch times the beams or samples.
    Returns the sequences, or a `GenerationOutput` with their scores when return_dict_in_generate.
    """
    if input_ids.dim() != 2 or input_ids.size(0) == 0 or input_ids.size(1) == 0:
        raise InputError(
            f"input_ids must have shape (batch, length) with at least one row and one token, got "
            f"{tuple(input_ids.shape)}"
        )
    if (max_new_tokens is not None and max_new_tokens < 0) or min_new_tokens < 0:
        raise InputError("max_new_tokens and min_new_tokens must be >= 0")
    if num_beams < 1 or num_return_sequences < 1:
        raise InputError("num_beams and num_return_sequences must be >= 1")
    if num_beams > 1 and do_sample:
        raise InputError("choose beam search (num_beams > 1) or sampling (do_sample=True), not both")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise InputError(f"num_return_sequences={num_return_sequences} exceeds num_beams={num_beams}")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise InputError("greedy decoding gives one sequence per input; use num_beams or do_sample for more")
    if do_sample:
        check_sampling(temperature, top_k, top_p)
    cfg = model.cfg
    family = getattr(model, "family", None)  # "lm" or "seq2seq" (see steps.py)
    B, P = input_ids.shape
    for name, token in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if token is not None and not 0 <= token < cfg.target_vocab_size:
            raise InputError(
                f"{name}={token} is not a token of the model's vocabulary (0 to {cfg.target_vocab_size - 1})"
            )
    if eos_id is None:  # the model's own (imported models), else the tokenizer's <eos> for an encoder-decoder
        eos_id = cfg.eos_id if cfg.eos_id is not None else EOS_ID if family == "seq2seq" else None
    attention_mask = default_attention_mask(input_ids, attention_mask, pad_id, eos_id, cfg.pad_id)
    copies = num_beams if num_beams > 1 else num_return_sequences
    use_cache = use_cache or cache is not None  # a cache given is used, preallocated or growing as it is
    static_cache = static_cache or (cache is not None and cache.max_len is not None)
    if bos_id is None:
        bos_id = cfg.bos_id if cfg.bos_id is not None else BOS_ID
    fill = pad_id if pad_id is not None else cfg.pad_id if cfg.pad_id is not None else eos_id or 0

    # The casts: a model's `family` names which of the two decoding interfaces it has.
    steps: Steps
    if family == "seq2seq":
        limit = cfg.max_seq_len - 1  # the decoder's BOS takes one position
        if max_new_tokens is None:
            max_new_tokens = P + EXTRA_SOURCE_TOKENS
        max_new_tokens = min(max_new_tokens, limit)
        steps = Seq2SeqSteps(
            cast(DecodingSeq2Seq, model),
            input_ids,
            attention_mask,
            bos_id=bos_id,
            copies=copies,
            use_cache=use_cache,
            cache=cache,
            static_len=max_new_tokens + 1 if static_cache else None,
        )
    elif family == "lm":
        if P >= cfg.max_seq_len:
            raise InputError(
                f"a prompt of {P} tokens leaves no room in the model's context of max_seq_len={cfg.max_seq_len} tokens"
            )
        max_new_tokens = 100 if max_new_tokens is None else max_new_tokens
        slides = P + max_new_tokens > cfg.max_seq_len  # the sequence outgrows the context (the last token is not fed)
        steps = LMSteps(
            cast(DecodingLM, model),
            input_ids,
            attention_mask,
            copies=copies,
            use_cache=use_cache,
            cache=cache,
            static_len=min(P + max_new_tokens, cfg.max_seq_len) if static_cache else None,
            window=cfg.max_seq_len if slides else None,
        )
    else:
        raise InputError(f"generate needs a TransformerLM or a Seq2SeqTransformer, got {type(model).__name__}")

    if num_beams > 1:
        found = beam_search(
            steps,
            B,
            num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            eos_id=eos_id,
            length_penalty=length_penalty,
        )
        # Fewer than n finished hypotheses only happens when the vocabulary or max_new_tokens leaves fewer
        # distinct outputs than beams; the best one then fills the remaining places.
        hypotheses = [(hyps or [Hypothesis([], 0.0)])[:num_return_sequences] for hyps in found]
        hypotheses = [hyps + hyps[:1] * (num_return_sequences - len(hyps)) for hyps in hypotheses]
    else:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=input_ids.device).manual_seed(seed)
        rows = greedy_or_sample(
            steps,
            B * copies,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            eos_id=eos_id,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        hypotheses = [rows[b * copies : (b + 1) * copies] for b in range(B)]

    flat = [h for hyps in hypotheses for h in hyps]
    width = max(len(h.tokens) for h in flat)
    new = torch.full((len(flat), width), fill, dtype=torch.long)
    for i, h in enumerate(flat):
        new[i, : len(h.tokens)] = torch.tensor(h.tokens, dtype=torch.long)
    new = new.to(input_ids.device)
    if family == "lm":
        n = len(flat) // B
        sequences = torch.cat([input_ids.repeat_interleave(n, dim=0), new], dim=1)
    else:
        sequences = new
    if not return_dict_in_generate:
        return sequences
    scores = torch.tensor([h.score for h in flat], dtype=torch.float64)
    return GenerationOutput(sequences, scores, hypotheses)


@torch.no_grad()
def generate_in_batches(
    model: DecodingModel,
    sources: list[list[int]],
    *,
    pad_id: int,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> list[list[Hypothesis]]:
    """`generate` over many sources (token-id lists, none empty): batched by similar length (less padding),
    right-padded, results back in input order; each source's hypotheses (n with num_return_sequences)."""
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[Hypothesis]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        src = right_pad([sources[i] for i in rows], pad_id).to(device)
        result = generate(model, src, pad_id=pad_id, return_dict_in_generate=True, **kwargs)
        assert isinstance(result, GenerationOutput)  # return_dict_in_generate=True
        for i, hyps in zip(rows, result.hypotheses, strict=True):
            out[i] = hyps
        if on_batch is not None:
            on_batch(len(rows))
    return out
