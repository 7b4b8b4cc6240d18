"""Continuous batching (`serving.engine.Engine`) and the cache operations under it (`DecoderCache.join`,
`drop_leading_padding`): a request's tokens never depend on the other rows of its batch."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.generation import generate
from transformer_networks.models import TransformerLM
from transformer_networks.serving.engine import Engine, QueueFull, Request


def make_lm(**overrides):
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("tiny", vocab_size=50, max_seq_len=64, dropout=0.0, **overrides)
    return TransformerLM(cfg).eval()


class Collect:
    """A request's callback: its tokens and its finish reason, and an event set when it has finished."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.reason: str | None = None
        self.done = threading.Event()

    def __call__(self, token, reason) -> None:
        if token is not None:
            self.tokens.append(token)
        else:
            self.reason = reason
            self.done.set()


def alone(model, prompt, n, **kwargs):
    out = generate(model, torch.tensor([prompt]), max_new_tokens=n, **kwargs)
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("positional", ["learned", "rope", "sinusoidal"])
def test_requests_arriving_while_others_decode_get_the_tokens_they_get_alone(positional):
    model = make_lm(positional=positional)
    rng = random.Random(1)
    prompts = [[rng.randrange(1, 50) for _ in range(rng.randrange(1, 25))] for _ in range(12)]
    lengths = [20 - (i % 3) * 6 for i in range(12)]  # rows end at different steps
    expected = [alone(model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    sizes: list[int] = []
    engine = Engine(model, max_batch_size=5, on_step=sizes.append)
    try:
        got = [Collect() for _ in prompts]
        requests = [Request(p, max_new_tokens=n, emit=c) for p, n, c in zip(prompts, lengths, got, strict=True)]
        with engine._cond:  # the first 6 arrive together: the engine admits 5 of them at once, however slow we are
            for r in requests[:6]:
                engine.submit(r)
        for i, r in enumerate(requests[6:]):
            engine.submit(r)
            time.sleep(0.002 * (i % 4))  # these join a running batch, some of them together
        for c in got:
            assert c.done.wait(30)
    finally:
        engine.close()
    assert [c.tokens for c in got] == expected
    assert all(c.reason == "length" for c in got)
    assert max(sizes) == 5  # batched, and never more rows than allowed
    assert engine.cache.length == 0 and not engine.rows


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_requests_admitted_together_are_prefilled_as_one_padded_batch_with_the_same_tokens(positional):
    model = make_lm(positional=positional)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15], [0, 0, 16, 17]]  # 0 is the pad id: still real tokens
    expected = [alone(model, p, 10) for p in prompts]
    stop = expected[2][0]  # the third request ends with its first token, at admission
    prefills: list[int] = []
    original = model.forward

    def counting(ids, **kwargs):
        if ids.size(1) > 1:
            prefills.append(ids.size(0))
        return original(ids, **kwargs)

    model.forward = counting  # type: ignore[method-assign]
    engine = Engine(model, max_batch_size=8)
    got = [Collect() for _ in prompts]
    try:
        with engine._cond:  # every request waits before the decoding thread looks: one admission for all
            for i, (p, c) in enumerate(zip(prompts, got, strict=True)):
                engine.submit(Request(p, max_new_tokens=10, emit=c, stop_ids={stop} if i == 2 else ()))
        for c in got:
            assert c.done.wait(30)
    finally:
        engine.close()
    assert prefills == [4]  # one forward pass over the four prompts
    assert got[2].tokens == [] and got[2].reason == "stop"
    for i in (0, 1, 3):
        assert got[i].tokens == expected[i] and got[i].reason == "length"


def test_a_stop_id_ends_only_its_row_and_is_not_handed_out():
    model = make_lm()
    prompts = [[3, 4, 5], [7, 8], [9, 10, 11, 12]]
    free = [alone(model, p, 12) for p in prompts]
    stop = free[0][4]  # the first row's fifth token
    engine = Engine(model)
    try:
        got = [Collect() for _ in prompts]
        for p, c in zip(prompts, got, strict=True):
            engine.submit(Request(p, max_new_tokens=12, emit=c, stop_ids={stop}))
        for c in got:
            assert c.done.wait(30)
    finally:
        engine.close()
    for row, c in zip(free, got, strict=True):
        cut = row.index(stop) if stop in row else len(row)
        assert c.tokens == row[:cut]
        assert c.reason == ("stop" if stop in row else "length")


def test_seeded_sampling_does_not_depend_on_the_batch():
    model = make_lm()
    settings = dict(do_sample=True, temperature=0.9, top_k=20, top_p=0.95, seed=5)
    outs = []
    for company in (0, 3):  # alone, then beside three greedy requests
        engine = Engine(model)
        try:
            c = Collect()
            others = [Collect() for _ in range(company)]
            for o in others:
                engine.submit(Request([1, 2, 3, 4, 5, 6], max_new_tokens=30, emit=o))
            engine.submit(Request([9, 8, 7], max_new_tokens=15, emit=c, **settings))
            assert c.done.wait(30) and all(o.done.wait(30) for o in others)
        finally:
            engine.close()
        outs.append(c.tokens)
    assert outs[0] == outs[1] and len(outs[0]) == 15


def test_a_cancelled_request_leaves_the_batch_and_the_rest_go_on():
    model = make_lm()
    gate = threading.Event()

    class Slow(Collect):
        def __call__(self, token, reason):
            super().__call__(token, reason)
            gate.wait(5)  # hold the decoding thread after the first token

    engine = Engine(model)
    try:
        slow, other = Slow(), Collect()
        first = engine.submit(Request([5, 6, 7], max_new_tokens=40, emit=slow))
        engine.submit(Request([1, 2], max_new_tokens=10, emit=other))
        first.cancel()
        gate.set()
        assert slow.done.wait(30) and other.done.wait(30)
    finally:
        engine.close()
    assert slow.reason == "cancelled" and len(slow.tokens) < 40
    assert other.tokens == alone(model, [1, 2], 10)


def test_a_full_queue_refuses_and_a_request_too_long_for_the_context_is_an_error():
    model = make_lm()
    hold = threading.Event()
    engine = Engine(model, max_batch_size=1, max_queue=1)
    try:
        blocker = Collect()
        engine.submit(Request([1], max_new_tokens=5, emit=lambda t, r: (hold.wait(5), blocker(t, r))))
        time.sleep(0.2)  # the decoding thread now holds the blocker, waiting in its callback
        engine.submit(Request([2], max_new_tokens=5, emit=Collect()))  # waits in the queue
        with pytest.raises(QueueFull):
            engine.submit(Request([3], max_new_tokens=5, emit=Collect()))
        hold.set()
        assert blocker.done.wait(30)
        with pytest.raises(ValueError, match="no room"):
            engine.submit(Request(list(range(1, 50)) + [1] * 15, max_new_tokens=5, emit=Collect()))
    finally:
        engine.close()


def test_a_sliding_request_goes_past_the_context_with_the_tokens_generate_gives():
    model = make_lm(positional="rope")
    engine = Engine(model, max_batch_size=4)
    prompts = [[i % 49 + 1 for i in range(60)], [7, 8, 9], [i % 13 + 2 for i in range(30)]]
    try:
        got = [Collect() for _ in prompts]
        for prompt, c in zip(prompts, got, strict=True):  # rows reach the context of 64 at different steps
            engine.submit(Request(prompt, max_new_tokens=150, emit=c, slide=True))
        assert all(c.done.wait(60) for c in got)
    finally:
        engine.close()
    assert engine._steps and all(step is not None for step in engine._steps.values())  # decode_step.py's steps
    for prompt, c in zip(prompts, got, strict=True):
        # generate restarts from the last 48 tokens each time the 64 are full: 60 + 150 tokens restart 4 times
        assert len(c.tokens) == 150 and c.reason == "length"
        assert c.tokens == alone(model, prompt, 150)


def test_length_is_capped_by_the_context():
    model = make_lm()
    long = [i % 49 + 1 for i in range(60)]
    engine = Engine(model)
    try:
        c = Collect()
        engine.submit(Request(long, max_new_tokens=100, emit=c))
        assert c.done.wait(30)
    finally:
        engine.close()
    assert len(c.tokens) == 4 and c.reason == "length"  # 60 + 4 = the context of 64
    assert c.tokens == alone(model, long, 4)


def test_joined_cache_rows_equal_each_cache_alone():
    """Joining two caches (one padded on the left) and dropping the padding again keeps every row's keys,
    values and logits."""
    model = make_lm(positional="rope")
    a, b = model.init_cache(), model.init_cache()
    pa, pb = torch.tensor([[1, 2, 3, 4, 5, 6, 7]]), torch.tensor([[8, 9, 10]])
    model(pa, cache=a)
    model(pb, cache=b)
    ka, kb = a.layers[0].self_attn.k.clone(), b.layers[0].self_attn.k.clone()
    joined = model.init_cache()
    joined.join(a)
    joined.join(b)
    assert joined.length == 7 and joined.key_mask.tolist() == [[True] * 7, [False] * 4 + [True] * 3]
    torch.testing.assert_close(joined.layers[0].self_attn.k[0], ka[0], rtol=0, atol=0)
    torch.testing.assert_close(joined.layers[0].self_attn.k[1, :, 4:], kb[0], rtol=0, atol=0)
    # One step for both rows, at their own positions, against each alone.
    step = model(
        torch.tensor([[11], [12]]),
        attention_mask=torch.ones(2, 1, dtype=torch.bool),
        cache=joined,
        positions=torch.tensor([[7], [3]]),
    )[:, -1]
    torch.testing.assert_close(step[0], model(torch.tensor([[11]]), cache=a)[0, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step[1], model(torch.tensor([[12]]), cache=b)[0, -1], rtol=1e-5, atol=1e-5)
    joined.reorder(torch.tensor([1]))  # the long row leaves: its slots go
    joined.drop_leading_padding()
    assert joined.length == 4 and joined.key_mask is None
    torch.testing.assert_close(joined.layers[0].self_attn.k[0], b.layers[0].self_attn.k[0], rtol=1e-5, atol=1e-5)
