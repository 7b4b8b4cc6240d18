"""Decoding: cached = uncached, left padding = unpadded, beam search = exhaustive search, sampling controls."""

import itertools
import math

import pytest
import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.data.batching import pad_batch
from transformer_networks.errors import InputError
from transformer_networks.generation import (
    generate,
    gnmt_length_penalty,
    left_pad,
    process_logits,
    search,
    top_k_filter,
    top_p_filter,
)
from transformer_networks.generation.incremental import next_tokens
from transformer_networks.generation.logits import sample
from transformer_networks.models import Seq2SeqTransformer, TransformerLM

VARIANTS = {
    "sinusoidal": {},
    "learned": {"positional": "learned"},
    "rope": {"positional": "rope"},
    "no-positions": {"positional": "none"},
    "gqa": {"n_kv_heads": 2, "positional": "rope"},
    "post-ln": {"norm_first": False, "activation": "relu"},
}


def make(cls, seed=0, sharpen=4.0, **overrides):
    """A random tiny model in float64 (so that ties between tokens cannot flip between two exact computations),
    with its output projection scaled up so that its next-token distributions are far from uniform."""
    settings = {"vocab_size": 24, "dropout": 0.0, "max_seq_len": 64, "tie_embeddings": False} | overrides
    torch.manual_seed(seed)
    model = cls(TransformerConfig.from_preset("tiny", **settings)).double().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpen)
    return model


def prompts(lengths, low=5, high=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(low, high, (n,), generator=g).tolist() for n in lengths]


# --- the KV cache and left padding ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_lm_cached_equals_uncached_with_batched_prompts_of_different_lengths(variant):
    lm = make(TransformerLM, **VARIANTS[variant])
    rows = prompts([3, 7, 1, 5])
    ids, mask = left_pad(rows, pad_id=0)
    cached = generate(lm, ids, attention_mask=mask, max_new_tokens=12)
    uncached = generate(lm, ids, attention_mask=mask, max_new_tokens=12, use_cache=False)
    static = generate(lm, ids, attention_mask=mask, max_new_tokens=12, static_cache=True)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, static)
    # Each left-padded row continues exactly as its prompt does alone, without padding.
    for i, row in enumerate(rows):
        alone = generate(lm, torch.tensor([row]), max_new_tokens=12)
        assert cached[i, -12:].tolist() == alone[0, -12:].tolist()


def test_left_padded_logits_match_unpadded_logits():
    lm = make(TransformerLM, positional="learned")
    rows = prompts([2, 6])
    ids, mask = left_pad(rows, pad_id=0)
    from transformer_networks.generation import left_padded_positions

    batched = lm(ids, attention_mask=mask, positions=left_padded_positions(mask))
    alone = lm(torch.tensor([rows[0]]))
    torch.testing.assert_close(batched[0, -2:], alone[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_seq2seq_cached_equals_uncached(variant):
    mt = make(Seq2SeqTransformer, **VARIANTS[variant])
    src, _ = left_pad([r + [3] for r in prompts([4, 9, 2])], pad_id=0)  # sources padded on either side work
    for beams in (1, 3):
        cached = generate(mt, src, num_beams=beams, max_new_tokens=10)
        uncached = generate(mt, src, num_beams=beams, max_new_tokens=10, use_cache=False)
        static = generate(mt, src, num_beams=beams, max_new_tokens=10, static_cache=True)
        assert torch.equal(cached, uncached)
        assert torch.equal(cached, static)


@pytest.mark.parametrize("family", [TransformerLM, Seq2SeqTransformer])
def test_static_cache_decodes_with_one_compiled_graph(family):
    # With a preallocated cache every decoding step feeds the layer stack the same shapes, so a compiled stack
    # compiles twice (the prompt or BOS, then the one-token step) and reuses that graph for every later step and
    # every later call. A growing cache would recompile at every length. (CompileCounter: dynamo without inductor.)
    from torch._dynamo.testing import CompileCounter

    model = make(family, **VARIANTS["rope"])
    ids, mask = left_pad(prompts([3, 6]), pad_id=0)
    expected = generate(model, ids, attention_mask=mask, max_new_tokens=9, static_cache=True)
    counter = CompileCounter()
    stack = model.decoder.stack
    stack.compile(backend=counter, dynamic=False)
    try:
        for _ in range(2):
            assert torch.equal(generate(model, ids, attention_mask=mask, max_new_tokens=9, static_cache=True), expected)
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 2


def aten_calls_of_a_decoding_step(n_layers):
    """The ATen calls (name -> count) of one cached decoding step (batch 2, after a 5-token prompt) of a GPT-2-shaped
    model: pre-LN, learned positions, no padding id."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    calls = Counter()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls[str(func)] += 1
            return func(*args, **(kwargs or {}))

    cfg = TransformerConfig.from_preset(
        "gpt2-small", vocab_size=24, d_model=32, n_heads=4, n_layers=n_layers, d_ff=64, max_seq_len=64, dropout=0.0
    )
    lm = TransformerLM(cfg).eval()
    with torch.inference_mode():  # as bench/generation.py runs it (under no_grad the mode sees composites split)
        cache = lm.init_cache()
        lm(torch.randint(24, (2, 5)), cache=cache)
        token = torch.randint(24, (2, 1))
        with Count():
            lm(token, cache=cache)
    return calls


def test_a_decoding_step_makes_no_idle_calls():
    # Decoding a small model is bound by the number of calls per token, not by arithmetic (BENCHMARKS.md, greedy
    # generation at nanoGPT size). A pre-LN layer's step is 18 ATen calls: two norms, four products, the
    # activation, two residual adds, one view + permute + unbind for the queries, keys and values, an index_copy_
    # and a narrowed view for each of the cached keys and values, attention, and the reshape of its output. Outside
    # the layers: the step's positions, two embedding lookups and their sum, the final norm and the output layer.
    # An added idle call (a split where one view does, a copy through a narrowed view, a transpose that moves
    # nothing, an addition of zero) fails this. The counts are those of the pinned torch (constraints.txt); another
    # release may split an operator differently.
    one, three = aten_calls_of_a_decoding_step(1), aten_calls_of_a_decoding_step(3)
    per_layer = three.copy()
    per_layer.subtract(one)
    per_layer = {name: n // 2 for name, n in per_layer.items() if n}
    assert sum(per_layer.values()) <= 18, per_layer
    outside = one.copy()
    outside.subtract(per_layer)
    outside = {name: n for name, n in outside.items() if n}
    assert sum(outside.values()) <= 6, outside


def test_lm_rejects_right_padded_prompts_and_full_context():
    lm = make(TransformerLM)
    ids = torch.tensor([[5, 6, 0], [5, 6, 7]])
    with pytest.raises(InputError, match="left"):
        generate(lm, ids, attention_mask=ids != 0)
    with pytest.raises(InputError, match="max_seq_len"):
        generate(lm, torch.full((1, 64), 5))
    out = generate(lm, torch.full((1, 60), 5), max_new_tokens=100)  # past the context: the window slides
    assert out.shape == (1, 160)


def reference_past_the_context(lm, prompt, n, window):
    """Greedy decoding past the context by its rule, with whole forward passes and no cache: the model reads its
    context; when the context is full, the next one is the sequence's last 3/4 of the window."""
    keep, context, new = window * 3 // 4, list(prompt), []
    for _ in range(n):
        ids = torch.tensor([context])
        token = int(lm(ids, attention_mask=torch.ones_like(ids, dtype=torch.bool))[0, -1].argmax())  # all real
        new.append(token)
        context = context + [token] if len(context) < window else (list(prompt) + new)[-keep:]
    return new


@pytest.mark.parametrize("variant", VARIANTS)
def test_lm_past_the_context_slides_the_window_cached_or_not(variant):
    lm = make(TransformerLM, max_seq_len=16, **VARIANTS[variant])
    rows = prompts([3, 9, 1])
    ids, mask = left_pad(rows, pad_id=0)
    cached = generate(lm, ids, attention_mask=mask, max_new_tokens=40)
    assert cached.shape == (3, 9 + 40)
    assert torch.equal(cached, generate(lm, ids, attention_mask=mask, max_new_tokens=40, use_cache=False))
    assert torch.equal(cached, generate(lm, ids, attention_mask=mask, max_new_tokens=40, static_cache=True))
    for row, prompt in zip(cached, rows, strict=True):  # each row as its prompt alone, and as the rule says
        alone = generate(lm, torch.tensor([prompt]), max_new_tokens=40)[0, len(prompt) :]
        assert row[9:].tolist() == alone.tolist() == reference_past_the_context(lm, prompt, 40, 16)
    beams = generate(lm, ids, attention_mask=mask, max_new_tokens=30, num_beams=3)
    assert torch.equal(beams, generate(lm, ids, attention_mask=mask, max_new_tokens=30, num_beams=3, use_cache=False))


def test_next_tokens_slides_as_generate_does():
    lm = make(TransformerLM, max_seq_len=16, positional="rope")
    [prompt] = prompts([5])
    streamed = list(next_tokens(lm, lm.init_cache(1), prompt, max_new_tokens=40, slide=True))
    assert streamed == generate(lm, torch.tensor([prompt]), max_new_tokens=40)[0, 5:].tolist()
    assert len(list(next_tokens(lm, lm.init_cache(1), prompt, max_new_tokens=40))) == 16 - 5 + 1  # no slide: stops


# --- greedy, sampling and their controls ------------------------------------------------------------------------


def test_beam_width_one_and_top_k_one_equal_greedy():
    lm = make(TransformerLM)
    ids = torch.tensor(prompts([4, 4]))
    greedy = generate(lm, ids, max_new_tokens=15)
    assert torch.equal(generate(lm, ids, max_new_tokens=15, num_beams=1), greedy)
    assert torch.equal(generate(lm, ids, max_new_tokens=15, do_sample=True, top_k=1, seed=3), greedy)
    mt = make(Seq2SeqTransformer)
    greedy = generate(mt, ids, max_new_tokens=15)
    assert torch.equal(generate(mt, ids, max_new_tokens=15, do_sample=True, top_k=1, temperature=0.5), greedy)


def test_seed_makes_sampling_reproducible():
    lm = make(TransformerLM, sharpen=1.0)
    ids = torch.tensor(prompts([3]))
    a = generate(lm, ids, max_new_tokens=30, do_sample=True, seed=7, num_return_sequences=3)
    b = generate(lm, ids, max_new_tokens=30, do_sample=True, seed=7, num_return_sequences=3)
    c = generate(lm, ids, max_new_tokens=30, do_sample=True, seed=8, num_return_sequences=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # several samples per prompt differ from one another


def test_eos_stops_a_row_and_max_new_tokens_is_respected():
    mt = make(Seq2SeqTransformer)
    src = torch.tensor(prompts([5, 5, 5]))
    free = generate(mt, src, max_new_tokens=6, eos_id=None, return_dict_in_generate=True)
    assert free.sequences.shape == (3, 6)
    # Declare the token the first row produces third to be EOS: that row stops there, padding follows.
    eos = int(free.sequences[0, 2])
    out = generate(mt, src, max_new_tokens=6, eos_id=eos, pad_id=0, return_dict_in_generate=True)
    first = out.hypotheses[0][0].tokens
    assert first[-1] == eos and eos not in first[:-1] and len(first) <= 3
    assert out.sequences[0, len(first) :].eq(0).all()
    # min_new_tokens forbids EOS before that many tokens
    longer = generate(mt, src, max_new_tokens=6, min_new_tokens=4, eos_id=eos, return_dict_in_generate=True)
    assert all(len(h[0].tokens) >= 4 for h in longer.hypotheses)


@pytest.mark.parametrize("family", [TransformerLM, Seq2SeqTransformer])
@pytest.mark.parametrize("do_sample", [False, True])
def test_checking_for_eos_every_few_tokens_changes_no_output(monkeypatch, family, do_sample):
    # On a GPU greedy / sampling asks whether every row has ended only every EOS_CHECK_EVERY tokens (each answer
    # waits for the device); the extra tokens decoded after the last EOS must not show in tokens or scores.
    model = make(family)
    src = torch.tensor(prompts([4, 4, 4, 4]))
    kwargs = {"max_new_tokens": 24, "do_sample": do_sample, "seed": 3, "return_dict_in_generate": True}
    free = generate(model, src, eos_id=None, **kwargs)
    new = free.sequences[:, -24:].tolist()
    # EOS: a token every row produces, first at different steps, so the rows end at different steps
    eos = next(t for t in range(24) if all(t in row[:18] for row in new) and len({row.index(t) for row in new}) > 1)
    every_token = generate(model, src, eos_id=eos, pad_id=0, **kwargs)
    lengths = [len(h[0].tokens) for h in every_token.hypotheses]
    assert min(lengths) < max(lengths) < 24  # rows end at different steps, all before the budget
    for interval in (3, 5, 64):
        monkeypatch.setattr(search, "_eos_check_every", lambda device, n=interval: n)
        late = generate(model, src, eos_id=eos, pad_id=0, **kwargs)
        assert torch.equal(late.sequences, every_token.sequences)
        assert torch.equal(late.scores, every_token.scores)


def test_greedy_score_is_the_log_probability_of_its_tokens():
    lm = make(TransformerLM)
    ids = torch.tensor(prompts([3]))
    out = generate(lm, ids, max_new_tokens=5, return_dict_in_generate=True)
    with torch.no_grad():
        logp = lm(out.sequences[:, :-1]).log_softmax(-1)[0, 2:]  # predictions of the 5 new tokens
    expected = logp.gather(1, out.sequences[0, 3:, None]).sum()
    assert float(out.scores[0]) == pytest.approx(float(expected), abs=1e-9)


def test_the_score_under_min_new_tokens_is_the_models_own_log_probability():
    # EOS is barred for the first tokens; the score must still be the model's log-probability, not one
    # renormalised over the other tokens (beam search scores the same way).
    lm = make(TransformerLM)
    ids = torch.tensor(prompts([3]))
    eos = int(generate(lm, ids, max_new_tokens=1)[0, -1])  # the token greedy takes first: barred now
    out = generate(lm, ids, max_new_tokens=4, min_new_tokens=2, eos_id=eos, return_dict_in_generate=True)
    tokens = out.hypotheses[0][0].tokens
    assert tokens[0] != eos
    seq = torch.cat([ids, torch.tensor([tokens])], dim=1)
    with torch.no_grad():
        logp = lm(seq[:, :-1]).log_softmax(-1)[0, 2:]  # the predictions of the new tokens
    expected = logp.gather(1, seq[0, 3:, None]).sum()
    assert float(out.scores[0]) == pytest.approx(float(expected), abs=1e-9)
    beam = generate(lm, ids, max_new_tokens=4, min_new_tokens=2, eos_id=eos, num_beams=1, return_dict_in_generate=True)
    assert float(beam.scores[0]) == pytest.approx(float(out.scores[0]), abs=1e-9)


def test_pad_id_given_to_generate_masks_the_padding():
    # A model without a pad_id of its own: the pad_id argument marks the padding, as Hugging Face's does.
    lm = make(TransformerLM, pad_id=None)
    rows = prompts([5, 2])
    ids, mask = left_pad(rows, pad_id=0)
    by_mask = generate(lm, ids, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(generate(lm, ids, pad_id=0, max_new_tokens=6), by_mask)
    alone = generate(lm, torch.tensor(rows[1:]), max_new_tokens=6)
    assert torch.equal(by_mask[1, -8:], alone[0])
    # A pad_id that is also the EOS (GPT-2's convention) marks no padding: such a token may be a real one.
    unmasked = generate(lm, ids, attention_mask=torch.ones_like(mask), max_new_tokens=6)
    assert torch.equal(generate(lm, ids, pad_id=0, eos_id=0, max_new_tokens=6, min_new_tokens=6), unmasked)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    kept = lambda x: torch.isfinite(x[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(top_k_filter(logits, 2)) == [1, 3]
    assert kept(top_p_filter(logits, 0.75)) == [1, 3]  # 0.5 + 0.3 >= 0.75
    assert kept(top_p_filter(logits, 0.85)) == [1, 2, 3]
    assert kept(top_p_filter(logits, 0.1)) == [1]  # the most likely token always stays
    assert kept(top_p_filter(logits, 1.0)) == [0, 1, 2, 3]
    # Filtering keeps the survivors' relative odds; temperature divides the logits.
    probs = process_logits(logits, top_k=3).softmax(-1)[0]
    torch.testing.assert_close(probs[[1, 2, 3]], torch.tensor([0.5, 0.15, 0.3]) / 0.95)
    torch.testing.assert_close(process_logits(logits, temperature=0.5), logits * 2)
    with pytest.raises(InputError):
        process_logits(logits, temperature=0.0)


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.1, 0.6, 0.3])
    draws = sample(probs.log().expand(20000, 3), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).double() / draws.numel()
    torch.testing.assert_close(freq, probs.double(), rtol=0, atol=0.015)


# --- beam search ------------------------------------------------------------------------------------------------


def exhaustive_best(score_fn, vocab, eos, max_len, alpha, min_len=0):
    """The best-scoring output among every sequence of up to max_len tokens: those ending in EOS, and those of
    max_len tokens without EOS (cut by max_new_tokens), each scored log p / GNMT penalty."""
    best = None
    words = [t for t in range(vocab) if t != eos]
    for n in range(max_len + 1):
        for body in itertools.product(words, repeat=n):
            seqs = [list(body) + [eos]] if n < max_len else []
            if n == max_len:
                seqs.append(list(body))
            for seq in seqs:
                if len(seq) < min_len or (eos in seq and len(seq) - 1 < min_len):
                    continue
                score = score_fn(seq) / gnmt_length_penalty(len(seq), alpha)
                if best is None or score > best[0]:
                    best = (score, seq)
    return best


def lm_log_prob(lm, prompt, seq):
    ids = torch.tensor([prompt + seq])
    with torch.no_grad():
        logp = lm(ids).log_softmax(-1)[0, len(prompt) - 1 : -1]
    return float(logp.gather(1, torch.tensor(seq)[:, None]).sum())


def mt_log_prob(mt, src, seq):
    with torch.no_grad():
        logits = mt(torch.tensor([src]), torch.tensor([[2] + seq[:-1]]) if seq else torch.tensor([[2]]))
    logp = logits.log_softmax(-1)[0]
    return float(logp.gather(1, torch.tensor(seq)[:, None]).sum())


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_finds_the_exhaustive_optimum_lm(alpha):
    vocab, eos, max_len = 4, 3, 4
    lm = make(TransformerLM, vocab_size=vocab, pad_id=None, sharpen=2.0)
    prompt = [0, 1]
    best = exhaustive_best(lambda s: lm_log_prob(lm, prompt, s), vocab, eos, max_len, alpha)
    # With as many beams as there are live prefixes (3^3), beam search must find the optimum.
    out = generate(
        lm,
        torch.tensor([prompt]),
        num_beams=27,
        max_new_tokens=max_len,
        eos_id=eos,
        length_penalty=alpha,
        return_dict_in_generate=True,
    )
    top = out.hypotheses[0][0]
    assert top.tokens == best[1]
    assert top.score == pytest.approx(best[0], abs=1e-9)


@pytest.mark.parametrize(("alpha", "min_len"), [(0.0, 0), (0.6, 0), (1.0, 2)])
def test_beam_search_finds_the_exhaustive_optimum_seq2seq(alpha, min_len):
    vocab, eos, max_len = 5, 3, 3
    mt = make(Seq2SeqTransformer, vocab_size=vocab, pad_id=None, sharpen=2.0, seed=2)
    src = [4, 1, 0, eos]
    best = exhaustive_best(lambda s: mt_log_prob(mt, src, s), vocab, eos, max_len, alpha, min_len)
    out = generate(
        mt,
        torch.tensor([src]),
        num_beams=16,
        max_new_tokens=max_len,
        min_new_tokens=min_len,
        eos_id=eos,
        length_penalty=alpha,
        return_dict_in_generate=True,
    )
    top = out.hypotheses[0][0]
    assert top.tokens == best[1]
    assert top.score == pytest.approx(best[0], abs=1e-9)


def test_beam_search_n_best_is_sorted_and_scored_batched():
    mt = make(Seq2SeqTransformer, seed=3, sharpen=1.5)
    src = pad_batch(prompts([6, 3, 8]), 0)  # sources are padded on the right: positions 0..S-1
    out = generate(
        mt, src, num_beams=5, num_return_sequences=5, length_penalty=0.6, max_new_tokens=8, return_dict_in_generate=True
    )
    assert out.sequences.shape[0] == 15
    for b, hyps in enumerate(out.hypotheses):
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5  # five different outputs
        for h in hyps:  # each score is the hypothesis's own log-probability over the penalty
            expected = mt_log_prob(mt, src[b][src[b] != 0].tolist(), h.tokens)
            assert h.score == pytest.approx(expected / gnmt_length_penalty(len(h.tokens), 0.6), abs=1e-9)
    # Batched beams equal each source decoded alone.
    for b in range(3):
        alone = generate(
            mt,
            src[b : b + 1, : len(src[b].nonzero())],
            num_beams=5,
            num_return_sequences=5,
            length_penalty=0.6,
            max_new_tokens=8,
            return_dict_in_generate=True,
        )
        assert [h.tokens for h in alone.hypotheses[0]] == [h.tokens for h in out.hypotheses[b]]


def test_gnmt_length_penalty():
    assert gnmt_length_penalty(1, 0.6) == 1.0
    assert gnmt_length_penalty(7, 0.6) == pytest.approx(2**0.6)
    assert gnmt_length_penalty(10, 0.0) == 1.0
    assert math.isclose(gnmt_length_penalty(13, 1.0), 3.0)


def test_bad_arguments_are_input_errors():
    lm = make(TransformerLM)
    ids = torch.tensor([[5, 6]])
    for kwargs in (
        {"num_beams": 2, "do_sample": True},
        {"num_beams": 2, "num_return_sequences": 3},
        {"num_return_sequences": 2},
        {"do_sample": True, "top_p": 1.5},
        {"do_sample": True, "top_k": 0},
        {"max_new_tokens": -1, "static_cache": True},
        {"min_new_tokens": -1},
        {"eos_id": -1},
        {"eos_id": 24},
        {"pad_id": 99},
    ):
        with pytest.raises(InputError):
            generate(lm, ids, **({"max_new_tokens": 3} | kwargs))
    for family in (TransformerLM, Seq2SeqTransformer):
        with pytest.raises(InputError, match="one token"):
            generate(make(family), torch.zeros(1, 0, dtype=torch.long))


def reference_beam_search(log_prob, vocab, eos, beams, max_len, alpha):
    """Textbook beam search, one input, no early stopping: it always runs to max_len, so the implementation's
    stopping rule may only end a search when nothing left could change the answer."""
    live, finished = [([], 0.0)], []
    for _ in range(max_len):
        candidates = sorted(
            ((seq + [tok], log_prob(seq + [tok])) for seq, _ in live for tok in range(vocab)), key=lambda c: -c[1]
        )
        live = []
        for seq, score in candidates:
            if len(live) == beams:
                break
            if seq[-1] == eos:
                finished.append((seq, score / gnmt_length_penalty(len(seq), alpha)))
            else:
                live.append((seq, score))
    finished += [(seq, score / gnmt_length_penalty(len(seq), alpha)) for seq, score in live]
    return max(finished, key=lambda f: f[1])


@pytest.mark.parametrize(("vocab", "seed"), [(4, 16), (5, 3), (5, 10), (6, 0)])
def test_beam_search_stopping_rule_changes_nothing(vocab, seed):
    # These seeds give searches where two hypotheses finish early and a longer one, favoured by a large alpha,
    # still wins later: stopping as soon as the live beams cannot beat them at their current length would miss it.
    eos, max_len = 3, 7
    mt = make(Seq2SeqTransformer, vocab_size=vocab, pad_id=None, sharpen=1.5, seed=seed)
    src = [1, 0, 2, eos]
    for alpha in (0.0, 1.0, 3.0):
        expected = reference_beam_search(lambda s: mt_log_prob(mt, src, s), vocab, eos, 2, max_len, alpha)
        out = generate(
            mt,
            torch.tensor([src]),
            num_beams=2,
            max_new_tokens=max_len,
            eos_id=eos,
            length_penalty=alpha,
            return_dict_in_generate=True,
        )
        assert out.hypotheses[0][0].tokens == expected[0]
        assert out.hypotheses[0][0].score == pytest.approx(expected[1], abs=1e-9)


@pytest.mark.parametrize("family", [TransformerLM, Seq2SeqTransformer])
def test_a_cache_given_to_generate_is_reused_in_place(family):
    # The same preallocated cache for several calls (greedy, then beams, which reorder it in place): the outputs
    # equal fresh caches', the key/value buffers never move, and a cache of the wrong size is refused by name.
    # Each call has other inputs and other padding, so that anything left over from the last one (a key mask, the
    # encoder output, cross-attention keys) would change the result.
    model = make(family, **VARIANTS["gqa"])
    cache = model.init_cache(batch_size=6, max_len=40)
    addresses = [layer.self_attn.k.data_ptr() for layer in cache.layers]
    calls = [
        ([4, 2], {"num_beams": 3}),
        ([3, 6], {"num_beams": 3, "num_return_sequences": 2}),
        ([5, 5], {"do_sample": True, "seed": 0, "num_return_sequences": 3}),
    ]
    for seed, (lengths, kwargs) in enumerate(calls):
        ids, mask = left_pad(prompts(lengths, seed=seed), pad_id=0)
        expected = generate(model, ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        assert torch.equal(generate(model, ids, attention_mask=mask, max_new_tokens=8, cache=cache, **kwargs), expected)
        assert [layer.self_attn.k.data_ptr() for layer in cache.layers] == addresses
    growing = model.init_cache()
    for rows in (ids, ids[:1]):  # a growing cache is emptied and reused for any batch size
        assert torch.equal(
            generate(model, rows, attention_mask=mask[: len(rows)], max_new_tokens=5, cache=growing),
            generate(model, rows, attention_mask=mask[: len(rows)], max_new_tokens=5),
        )
    with pytest.raises(InputError, match="holds 6 rows of 40 tokens; this generation needs 2 rows"):
        generate(model, ids, attention_mask=mask, cache=cache, max_new_tokens=8)
