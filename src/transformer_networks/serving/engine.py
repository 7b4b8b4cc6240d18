"""Continuous batching: the generation requests for one language model share every forward pass.

    engine = Engine(model, max_batch_size=16, max_queue=64)
    request = engine.submit(Request(prompt_ids, max_new_tokens=64, stop_ids={eos}, emit=callback))
    ...                                   # callback(token, None) per token, then callback(None, finish_reason)
    request.cancel()                      # at any time: the row leaves the batch at the next step
    engine.close()

One thread decodes. At each step it admits waiting requests (their prompts are prefilled together, padded on the
left, then their cache rows join the batch's), feeds every row its last token in one forward pass, picks each
row's next token with the row's own settings (greedy, or sampling with its temperature / top-k / top-p and its own
seeded generator), hands the tokens out, and drops the rows that ended (a stop id, their length, or a cancel) at
once.

Rows of different lengths share one cache aligned at the end (`DecoderCache.join`): the shorter ones are padded on
the left with slots the key mask hides, and each row's positions are its own, so a row's numbers do not depend on
the others (greedy tokens equal `generate` for the prompt alone: tested). When rows leave, slots that no row uses
any more are dropped, so the cache never holds more than the longest row. A request that slides (`slide=True`,
what completions do) goes on past the model's context: when its row's context is full, the row leaves the batch,
is prefilled again from its last 3/4 tokens and joins again, which is what `generate` does for it alone.

Shapes: B rows in the batch, V vocabulary.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import InputError
from ..generation.decode_step import DecodeStep
from ..generation.logits import process_logits, sample
from ..generation.steps import DecodingLM, left_pad, slide_keep
from ..nn.cache import DecoderCache
from ..nn.masks import left_padded_positions

# What a request is told: (token, None) for each new token, then (None, reason) once, reason one of "stop" (a
# stop id was produced: it is not handed out), "length" (max_new_tokens, or the model's context), "cancelled", or
# "error: MESSAGE".
Emit = Callable[[int | None, str | None], None]


class QueueFull(Exception):
    """The engine's waiting queue is full: try again later."""


@dataclass
class Request:
    prompt_ids: Sequence[int]
    max_new_tokens: int
    emit: Emit
    stop_ids: Collection[int] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    # Past the model's context: when the row's context is full, it starts again from its last 3/4 tokens, as
    # `generate` and streamed text do (`generation.steps`); without, max_new_tokens is capped by the context.
    slide: bool = False
    generated: int = 0  # tokens handed out so far
    sequence: list[int] = field(default_factory=list, repr=False)  # sliding: the prompt and the tokens so far
    cached: int = field(default=0, repr=False)  # the row's tokens in the cache
    cancelled: bool = field(default=False, repr=False)
    generator: torch.Generator | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop this request: it leaves the batch at the next step (or is skipped if still waiting)."""
        self.cancelled = True


class Engine:
    """Decodes the submitted requests for `model` in one background thread, batching them as they come."""

    def __init__(
        self,
        model: DecodingLM,
        *,
        max_batch_size: int = 16,
        max_queue: int = 64,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        """max_batch_size: rows decoded together; max_queue: requests waiting for a row before `submit` refuses
        (QueueFull); on_step(batch_size) is called after every decoding step (metrics)."""
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.on_step = on_step
        self.device = next(model.parameters()).device
        self.waiting: deque[Request] = deque()
        self.rows: list[Request] = []  # the batch, in the cache's row order
        self.cache: DecoderCache = model.init_cache()
        self.last = torch.empty(0, dtype=torch.long, device=self.device)  # (B,) each row's token not yet fed
        self.next_position = torch.empty(0, dtype=torch.long, device=self.device)  # (B,) where it goes
        self._steps: dict[int, DecodeStep | None] = {}  # decoding steps by batch size, made when first needed
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def submit(self, request: Request) -> Request:
        """Queue a request; raises QueueFull when `max_queue` requests are already waiting, InputError when its
        prompt leaves no room for a token in the model's context."""
        if not request.prompt_ids:
            raise InputError("the prompt has no tokens")
        if len(request.prompt_ids) >= self.model.cfg.max_seq_len:
            raise InputError(
                f"the prompt's {len(request.prompt_ids)} tokens leave no room for a new one in the model's "
                f"context of {self.model.cfg.max_seq_len}"
            )
        if request.do_sample and request.seed is not None:
            request.generator = torch.Generator(device=self.device).manual_seed(request.seed)
        with self._cond:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting already")
            self.waiting.append(request)
            self._cond.notify()
        return request

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the requests in flight and waiting, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # --- the decoding thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self.waiting and not self.rows and not self._closing:
                    self._cond.wait()
                if self._closing and not self.waiting and not self.rows:
                    return
                room = self.max_batch_size - len(self.rows)
                admitted = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
            try:
                with torch.no_grad():
                    if admitted:
                        self._admit(admitted)
                    if self.rows:
                        self._step()
            except Exception as e:  # a bug here must not leave every later request waiting forever
                for request in self.rows:
                    _tell(request, None, f"error: {e}")
                self._drop(list(range(len(self.rows))))

    def _choose(self, request: Request, logits: Tensor) -> int:
        """The next token for one row from its logits (V,)."""
        if not request.do_sample:
            return int(logits.argmax())
        scores = process_logits(
            logits.float()[None], temperature=request.temperature, top_k=request.top_k, top_p=request.top_p
        )
        return int(sample(scores, request.generator))

    def _hand_out(self, request: Request, token: int) -> bool:
        """Tell the request its token; True when the request has ended with it."""
        if token in request.stop_ids:
            _tell(request, None, "stop")
            return True
        request.generated += 1
        if request.slide:
            request.sequence.append(token)
        _tell(request, token, None)
        if request.generated >= request.max_new_tokens:
            _tell(request, None, "length")
            return True
        if request.cancelled:  # cancelled while being told (its client is gone)
            _tell(request, None, "cancelled")
            return True
        return False

    def _admit(self, requests: list[Request], restart: bool = False) -> None:
        """Prefill the prompts of `requests` together (padded on the left, each row with its own positions), hand
        out each one's first token, and join their rows to the batch. A group whose prefill fails is prefilled
        again one request at a time, so one bad request fails alone. `restart`: rows whose context was full,
        prefilled again from their last tokens."""
        live = []
        for request in requests:
            if request.cancelled:
                _tell(request, None, "cancelled")
                continue
            if request.slide and not restart:
                request.sequence = list(request.prompt_ids)
            elif not request.slide:
                room = self.model.cfg.max_seq_len - len(request.prompt_ids)  # the last token is never fed
                request.max_new_tokens = max(1, min(request.max_new_tokens, room))
            live.append(request)
        if not live:
            return
        keep = slide_keep(self.model.cfg.max_seq_len)
        prompts = [request.sequence[-keep:] if restart else list(request.prompt_ids) for request in live]
        try:
            cache, tokens = self._prefill(live, prompts)
        except Exception as e:
            if len(live) > 1:
                for request in live:
                    self._admit([request], restart)
            else:
                _tell(live[0], None, f"error: {e}")
            return
        # The rows join the batch before their first tokens go out: a request is in `rows` from the moment its
        # client can see a token (a client that looked right after its first token once found no row yet).
        first = len(self.rows)
        self.cache.join(cache)
        self.rows.extend(live)
        self.last = torch.cat([self.last, torch.tensor(tokens, device=self.device)])
        lengths = [len(prompt) for prompt in prompts]
        for request, length in zip(live, lengths, strict=True):
            request.cached = length
        self.next_position = torch.cat([self.next_position, torch.tensor(lengths, device=self.device)])
        ended = [
            i for i, (request, token) in enumerate(zip(live, tokens, strict=True)) if self._hand_out(request, token)
        ]
        if ended:
            self._drop([first + i for i in ended])

    def _prefill(self, requests: list[Request], prompts: list[list[int]]) -> tuple[DecoderCache, list[int]]:
        """Run the `prompts` of `requests` into a new cache; each request's next token."""
        ids, real = left_pad(prompts, pad_id=0, device=self.device)
        # Prompt tokens are real even when equal to pad_id; left-padded rows count positions from their first.
        positions = None if bool(real.all()) else left_padded_positions(real)  # (B, P)
        cache = self.model.init_cache()
        logits = self.model(ids, attention_mask=real, cache=cache, positions=positions, logits_to_keep=1)[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # (B,)
        tokens = [
            self._choose(request, logits[i]) if request.do_sample else greedy[i] for i, request in enumerate(requests)
        ]
        return cache, tokens

    def _step(self) -> None:
        """One forward pass over every row; each row gets its next token; ended rows leave."""
        full = [i for i, request in enumerate(self.rows) if request.cached == self.model.cfg.max_seq_len]
        if full:  # (sliding rows only) their context is full: they start again from their last tokens
            restarting = [self.rows[i] for i in full]
            self._drop(full)
            self._admit(restarting, restart=True)
            if not self.rows:
                return
        B = len(self.rows)
        try:
            if B not in self._steps:  # one per batch size: each layer's product is chosen for that many rows
                self._steps[B] = DecodeStep.of(self.model, self.cache, B)
            step = self._steps[B]
            if step is not None:  # the modules' logits as plain function calls (generation/decode_step.py)
                logits = step(self.last[:, None], self.cache, self.next_position[:, None])
            else:
                logits = self.model(
                    self.last[:, None],  # (B, 1)
                    attention_mask=torch.ones(B, 1, dtype=torch.bool, device=self.device),
                    cache=self.cache,
                    positions=self.next_position[:, None],  # (B, 1)
                )[:, -1]  # (B, V)
        except Exception as e:  # nothing is known to be right: end every row with the error
            for request in self.rows:
                _tell(request, None, f"error: {e}")
            self._drop(list(range(B)))
            return
        if self.on_step is not None:
            self.on_step(B)
        self.next_position = self.next_position + 1
        for request in self.rows:
            request.cached += 1
        greedy = logits.argmax(dim=-1).tolist()  # (B,) one transfer for every greedy row
        tokens, ended = [], []
        for i, request in enumerate(self.rows):
            if request.cancelled:
                _tell(request, None, "cancelled")
                ended.append(i)
                tokens.append(0)
                continue
            token = self._choose(request, logits[i]) if request.do_sample else greedy[i]
            tokens.append(token)
            if self._hand_out(request, token):
                ended.append(i)
        self.last = torch.tensor(tokens, dtype=torch.long, device=self.device)
        if ended:
            self._drop(ended)

    def _drop(self, ended: list[int]) -> None:
        """Remove rows `ended` from the batch and its cache."""
        gone = set(ended)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:  # an empty batch: start over with a fresh cache
            self.cache = self.model.init_cache()
            self.last = self.last[:0]
            self.next_position = self.next_position[:0]
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.reorder(index)
        self.cache.drop_leading_padding()
        self.last, self.next_position = self.last[index], self.next_position[index]


def _tell(request: Request, token: int | None, reason: str | None) -> None:
    """Call the request's callback; one that fails (its client is gone) cancels the request, not the engine."""
    try:
        request.emit(token, reason)
    except Exception:
        request.cancelled = True
