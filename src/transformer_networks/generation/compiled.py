"""Decoding with each new token one compiled graph: gpt-fast's recipe, for a decoder-only language model.

`lm.generate` decodes through Python: per token it calls the model, the search strategy and the cache
bookkeeping, and each of them launches its own kernels. On a GPU at batch 1 those launches, not the weights, set
the pace (BENCHMARKS.md: gpt2-small took 0.97 ms a token on an H200 with its layer stack compiled, where reading
the weights takes 0.05 ms). `CompiledDecoder` holds the whole decoding state in buffers of fixed shape on the
model's device, and traces one step as one graph:

    decoder = CompiledDecoder(lm, batch_size=1, max_len=512)         # compiles on the first calls
    out = decoder.generate(prompt, max_new_tokens=256)               # greedy: the tokens of lm.generate
    out = decoder.generate(prompt, max_new_tokens=256, do_sample=True, temperature=0.8, top_k=200, seed=0)

- A step: the embedding, every layer, the output layer, the choice of the token (argmax; or a draw by the
  exponential race, argmax of p / E with E ~ Exp(1), which equals a draw from p and reads nothing back), the KV
  cache writes and the move to the next slot, all in one graph (`fullgraph=True`). On a GPU
  `mode="reduce-overhead"` records it as one CUDA graph, replayed for every token.
- The graph's inputs are the decoder's own buffers (the cache, its key mask, the last tokens, the slot, the
  positions), at fixed addresses, so a replay copies nothing in, and the host reads nothing per token: with an EOS
  it asks whether every row has ended every `EOS_CHECK_EVERY` tokens (every token on a CPU, where asking is free).
- The prompt is padded on the left to a bucket (a power of two, at least `MIN_BUCKET`) and masked, so prefill
  compiles one graph per bucket and the step one graph in all, for each way of choosing tokens (greedy; sampling
  with a given top_k). The EOS, the padding and the temperature are buffers too: changing them compiles nothing.
  Build one decoder per batch size and keep it: a new one compiles (and records its CUDA graphs) again.

Left-padded batches are handled as `lm.generate` handles them (each row's positions count from its first real
token). Not here: beam search, top-p, min_new_tokens, and sequences longer than `max_len` (lm.generate slides
its context; this decoder refuses). Shapes: N rows, P prompt length, Tb its bucket, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from ..nn.masks import causal_mask, left_padded_positions
from .generate import default_attention_mask
from .logits import check_sampling, top_k_filter
from .search import _eos_check_every

MIN_BUCKET = 16  # prompts are padded to 16, 32, 64, ... tokens: one prefill graph per bucket
# torch.compile's limit of graphs per function (8 by default, then a fullgraph function fails): the buckets times
# the ways of choosing tokens.
RECOMPILE_LIMIT = 64


def prompt_bucket(length: int, room: int) -> int:
    """The padded length of a prompt of `length` tokens: the next power of two (at least MIN_BUCKET); where that
    leaves no room for the new tokens (`room`: what the cache leaves them), the next multiple of MIN_BUCKET, else
    `room` itself."""
    for bucket in (max(MIN_BUCKET, 1 << (length - 1).bit_length()), -(-length // MIN_BUCKET) * MIN_BUCKET):
        if bucket <= room:
            return bucket
    return room


class CompiledDecoder:
    """Greedy decoding and sampling of a `TransformerLM` for `batch_size` rows of at most `max_len` tokens (prompt
    bucket + new tokens; default the model's max_seq_len), each new token one compiled graph.

    mode: torch.compile's mode for the step, default "reduce-overhead" (CUDA graphs) on a GPU and the default
    elsewhere; compile=False runs the same functions eagerly. The model's weights may change between calls (the
    graphs read them), its structure may not."""

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int = 1,
        max_len: int | None = None,
        mode: str | None = None,
        compile: bool = True,
    ) -> None:
        if getattr(model, "family", None) != "lm":
            raise InputError(f"CompiledDecoder decodes a TransformerLM, got {type(model).__name__}")
        cfg = model.cfg
        max_len = cfg.max_seq_len if max_len is None else max_len
        if not 0 < max_len <= cfg.max_seq_len:
            raise InputError(f"max_len must be in 1..max_seq_len={cfg.max_seq_len}, got {max_len}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        device = next(model.parameters()).device
        self.model, self.rows, self.max_len = model, batch_size, max_len
        with torch.inference_mode(False):  # ordinary tensors, updated in place under no_grad or inference_mode
            self.cache = model.init_cache(batch_size, max_len)  # preallocated: (N, G, max_len, D) per layer
            N, long = batch_size, dict(dtype=torch.long, device=device)
            self.slots = torch.arange(max_len, **long)  # slot numbers, sliced
            self.slot = torch.zeros(1, **long)  # the cache slot of the token fed next
            self.position = torch.zeros(N, **long)  # each row's position of that token
            self.last = torch.zeros(N, **long)  # each row's last token: the next step's input
            self.tokens = torch.zeros(N, max_len, **long)  # the new tokens, at the slot each will be fed at
            self.finished = torch.zeros(N, dtype=torch.bool, device=device)  # rows that have produced EOS
            self.eos = torch.full((), -1, **long)  # the EOS token, -1 for none
            self.fill = torch.zeros((), **long)  # what rows get after their EOS
            self.temperature = torch.ones((), device=device)
        assert self.cache.key_mask is not None  # a preallocated cache keeps one, (N, max_len)
        state = (self.slot, self.position, self.last, self.tokens, self.finished, self.eos, self.fill)
        for buffer in (self.cache.key_mask, *state, self.temperature):
            torch._dynamo.mark_static_address(buffer)  # the graphs update them in place (CUDA graphs: no copies)
        if mode is None and device.type == "cuda":
            mode = "reduce-overhead"
        self.prefill_fn = self._prefill
        self.step_fn = self._step
        if compile:
            self.prefill_fn = torch.compile(self._prefill, fullgraph=True, dynamic=False)
            self.step_fn = torch.compile(self._step, fullgraph=True, dynamic=False, mode=mode)

    # --- the traced functions -----------------------------------------------------------------------------------

    def _logits(self, ids: Tensor, positions: Tensor, slots: Tensor, real: Tensor) -> Tensor:
        """Feed ids (N, T) at cache slots `slots` (T,) with positions (N, T), real (N, T) marking the tokens that
        are not padding; return the last token's logits (N, V)."""
        body = self.model.decoder
        x = body.embeddings(ids, positions)  # (N, T, C)
        rotary = None if body.rotary is None else body.rotary(positions)
        keys = self.cache.key_mask
        assert keys is not None  # see __init__
        keys.index_copy_(1, slots, real)
        mask = keys[:, None, None, :] & causal_mask(slots, self.max_len)  # (N, 1, T, max_len)
        out = body.stack(x, mask=mask, rotary=rotary, caches=self.cache.layers, positions=slots)
        return self.model.lm_head(out.last_hidden_state[:, -1])  # (N, V)

    def _choose(self, logits: Tensor, sample: bool, top_k: int | None) -> Tensor:
        """The next token of each row (N,): the most likely, or a draw from softmax(logits / temperature) among the
        top_k (the exponential race: argmax of p / E, E ~ Exp(1) independent per token, picks token i with
        probability p_i, with no read back to the host as torch.multinomial needs)."""
        if not sample:
            return logits.argmax(dim=-1)
        scaled = logits.float() / self.temperature
        if top_k is not None:
            scaled = top_k_filter(scaled, top_k)
        probs = scaled.softmax(dim=-1)
        return (probs / torch.empty_like(probs).exponential_(1)).argmax(dim=-1)

    def _record(self, new: Tensor, slot: Tensor) -> None:
        """Keep the new tokens (N,) at `slot` (1,) and make them the next input; rows that have ended get `fill`."""
        new = torch.where(self.finished, self.fill, new)
        self.finished |= new == self.eos  # (-1, no EOS: never)
        self.tokens.index_copy_(1, slot, new[:, None])
        self.last.copy_(new)

    def _prefill(self, ids: Tensor, real: Tensor, sample: bool, top_k: int | None) -> None:
        """Run a prompt (N, Tb) padded on the left to its bucket (`real` marks its tokens) and choose the first new
        token, which is fed at slot Tb."""
        T = ids.size(1)
        positions = left_padded_positions(real)  # (N, Tb)
        logits = self._logits(ids, positions, self.slots[:T], real)
        self.finished.zero_()
        self._record(self._choose(logits, sample, top_k), self.slots[T : T + 1])
        self.slot.fill_(T)
        self.position.copy_(positions[:, -1] + 1)

    def _step(self, sample: bool, top_k: int | None) -> None:
        """Feed the last tokens at the current slot, choose the next ones, move to the next slot."""
        real = torch.ones_like(self.last, dtype=torch.bool)[:, None]
        logits = self._logits(self.last[:, None], self.position[:, None], self.slot, real)
        self._record(self._choose(logits, sample, top_k), self.slot + 1)
        self.slot.add_(1)
        self.position.add_(1)

    # --- generation ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 100,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """Continue prompts (N, P), left-padded when of different lengths; returns prompt + new tokens (N, P + n),
        rows that end early filled with pad_id (else the model's, else EOS), as `lm.generate` does. The arguments
        mean what they mean there; greedy tokens are lm.generate's. seed: the draws of this call only (the global
        random state is restored afterwards)."""
        cfg = self.model.cfg
        if input_ids.dim() != 2 or input_ids.size(0) != self.rows or input_ids.size(1) == 0:
            raise InputError(f"this decoder takes ({self.rows}, P) prompts with P >= 1, got {tuple(input_ids.shape)}")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if do_sample:
            check_sampling(temperature, top_k)
        P = input_ids.size(1)
        room = self.max_len - max_new_tokens
        if P > room:
            raise InputError(
                f"a prompt of {P} tokens and {max_new_tokens} new ones do not fit in this decoder's max_len="
                f"{self.max_len}"
            )
        eos = eos_id if eos_id is not None else cfg.eos_id
        fill = pad_id if pad_id is not None else cfg.pad_id if cfg.pad_id is not None else eos or 0
        mask = default_attention_mask(input_ids, attention_mask, pad_id, eos, cfg.pad_id)
        if not bool(mask[:, -1].all()):
            raise InputError("pad batched prompts on the left: every row's last token must be a real token")
        bucket = prompt_bucket(P, room)
        device = self.slots.device  # the model's: prompts given elsewhere are copied there
        ids = torch.zeros(self.rows, bucket, dtype=torch.long, device=device)
        ids[:, bucket - P :] = input_ids
        real = torch.zeros(self.rows, bucket, dtype=torch.bool, device=device)
        real[:, bucket - P :] = mask
        self.temperature.fill_(temperature)
        self.eos.fill_(-1 if eos is None else eos)
        self.fill.fill_(fill)
        settings = (do_sample, top_k if do_sample else None)  # constants of the graphs
        check_every = _eos_check_every(device)
        devices = [device] if device.type == "cuda" else []
        limit = torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT)
        with torch.random.fork_rng(devices=devices, enabled=seed is not None), limit:
            if seed is not None:  # the generators the draws use, no others (fork_rng restores these)
                torch.default_generator.manual_seed(seed)
                if device.type == "cuda":
                    index = device.index if device.index is not None else torch.cuda.current_device()
                    torch.cuda.default_generators[index].manual_seed(seed)
            self.prefill_fn(ids, real, *settings)
            done = 1
            while done < max_new_tokens:
                if eos is not None and done % check_every == 0 and bool(self.finished.all()):
                    break
                self.step_fn(*settings)
                done += 1
        new = self.tokens[:, bucket : bucket + done]
        if eos is not None:  # as lm.generate: as wide as the longest row, EOS included
            is_eos = (new == eos).long()
            kept = is_eos.cumsum(dim=1) - is_eos == 0  # (N, n) the tokens up to and including the first EOS
            new = new[:, : int(kept.sum(dim=1).max())]
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)
