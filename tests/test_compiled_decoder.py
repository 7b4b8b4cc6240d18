"""`CompiledDecoder` (generation/compiled.py): decoding with each new token one compiled graph.

Its greedy tokens must be `lm.generate`'s (the growing cache through the modules) for every kind of layer, for
left-padded batches and rows that end at EOS; compiled, in float32, for 256 tokens (issue 26: a compiled path
that disagrees in float32 is a bug); the step must be one graph, and after the warm-up no prompt length of a
bucket may compile again. Its sampler must draw from the right distribution."""

import pytest
import torch

from test_decode_step import VARIANTS, tiny_lm
from transformer_networks import Seq2SeqTransformer, TransformerConfig, TransformerLM
from transformer_networks.errors import InputError
from transformer_networks.generation.compiled import MIN_BUCKET, CompiledDecoder, prompt_bucket
from transformer_networks.generation.steps import left_pad


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_its_greedy_tokens_are_lm_generates(variant):
    lm = tiny_lm(**VARIANTS[variant])
    prompt = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1))
    decoder = CompiledDecoder(lm, batch_size=2, compile=False)
    for n in (1, 40):  # the same decoder twice: the second generation must not see the first's cache
        expected = lm.generate(prompt, max_new_tokens=n)
        assert torch.equal(decoder.generate(prompt, max_new_tokens=n), expected)


def test_left_padded_rows_and_rows_that_end_at_eos_match_lm_generate():
    lm = tiny_lm(norm_first=True, positional="rope", norm="rmsnorm", activation="swiglu")
    ids, mask = left_pad([[5, 9, 13, 2, 40, 41, 7, 3, 8], [17, 4], [60, 61, 62, 63, 64]], pad_id=0)
    decoder = CompiledDecoder(lm, batch_size=3, compile=False)
    free = lm.generate(ids, attention_mask=mask, max_new_tokens=30)
    assert torch.equal(decoder.generate(ids, attention_mask=mask, max_new_tokens=30), free)
    # An EOS that row 1 produces at its third new token: that row ends there, the others go on.
    eos = int(free[1, ids.size(1) + 2])
    expected = lm.generate(ids, attention_mask=mask, max_new_tokens=30, eos_id=eos, pad_id=96)
    got = decoder.generate(ids, attention_mask=mask, max_new_tokens=30, eos_id=eos, pad_id=96)
    assert torch.equal(got, expected)
    assert got[1, ids.size(1) + 3 :].eq(96).all()  # filled after its EOS
    # Every row ends: the output is as wide as the longest row, EOS included.
    first = int(free[0, ids.size(1)])
    expected = lm.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=30, eos_id=first)
    one = CompiledDecoder(lm, batch_size=1, compile=False)
    assert torch.equal(one.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=30, eos_id=first), expected)
    assert expected.size(1) == ids.size(1) + 1


def test_prompts_are_padded_to_power_of_two_buckets_within_the_room_left():
    assert [prompt_bucket(n, 1000) for n in (1, 16, 17, 33, 64, 65)] == [MIN_BUCKET, 16, 32, 64, 64, 128]
    assert prompt_bucket(40, 50) == 48  # 64 would not leave room for the new tokens: a multiple of 16 does
    assert prompt_bucket(10, 12) == 12  # nor would 16: as much as there is
    assert prompt_bucket(12, 12) == 12


def test_the_exponential_race_draws_from_softmax_of_the_logits_over_temperature_and_top_k():
    lm = tiny_lm()
    decoder = CompiledDecoder(lm, batch_size=1, compile=False)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5]).repeat(40_000, 1)  # one row per draw
    torch.manual_seed(0)
    decoder.temperature.fill_(0.5)
    drawn = decoder._choose(logits, sample=True, top_k=3)
    frequencies = torch.bincount(drawn, minlength=5).double() / drawn.numel()
    # Over the temperature: 4, 2, 0, -2, 1; the top 3 are tokens 0, 1 and 4.
    expected = torch.tensor([4.0, 2.0, float("-inf"), float("-inf"), 1.0]).softmax(0).double()
    assert torch.allclose(frequencies, expected, atol=0.01)  # the standard error is at most 0.0025
    assert decoder._choose(logits[:1], sample=False, top_k=None).item() == 0


def test_sampling_with_a_seed_repeats_and_leaves_the_global_random_state_alone():
    lm = tiny_lm()
    decoder = CompiledDecoder(lm, batch_size=2, compile=False)
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = decoder.generate(prompt, max_new_tokens=30, do_sample=True, temperature=1.5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(decoder.generate(prompt, max_new_tokens=30, do_sample=True, temperature=1.5, seed=7), first)
    assert not torch.equal(decoder.generate(prompt, max_new_tokens=30, do_sample=True, temperature=1.5, seed=8), first)
    greedy = decoder.generate(prompt, max_new_tokens=30)
    assert torch.equal(decoder.generate(prompt, max_new_tokens=30, do_sample=True, top_k=1, seed=9), greedy)


def test_bad_calls_are_refused_with_a_clear_error():
    lm = tiny_lm()  # max_seq_len 64
    decoder = CompiledDecoder(lm, batch_size=2, max_len=40, compile=False)
    with pytest.raises(InputError, match=r"\(2, P\) prompts"):
        decoder.generate(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(InputError, match="do not fit in this decoder's max_len=40"):
        decoder.generate(torch.zeros(2, 10, dtype=torch.long), max_new_tokens=31)
    with pytest.raises(InputError, match="pad batched prompts on the left"):
        mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
        decoder.generate(torch.ones(2, 4, dtype=torch.long), attention_mask=mask, max_new_tokens=5)
    with pytest.raises(InputError, match="top_k"):
        decoder.generate(torch.ones(2, 4, dtype=torch.long), max_new_tokens=5, do_sample=True, top_k=0)
    with pytest.raises(InputError, match="max_len must be in 1..max_seq_len=64"):
        CompiledDecoder(lm, max_len=65)
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_seq_len=16)
    with pytest.raises(InputError, match="decodes a TransformerLM, got Seq2SeqTransformer"):
        CompiledDecoder(Seq2SeqTransformer(cfg))


def test_a_decoder_built_under_inference_mode_decodes_outside_it():
    lm = tiny_lm()
    with torch.inference_mode():
        decoder = CompiledDecoder(lm, compile=False)
    prompt = torch.tensor([[3, 4, 5]])
    assert torch.equal(decoder.generate(prompt, max_new_tokens=5), lm.generate(prompt, max_new_tokens=5))


def test_eos_padding_and_temperature_compile_nothing_and_many_settings_stay_under_the_limit(monkeypatch):
    # Traced by dynamo and run eagerly (inductor's code generation would take minutes here): what is counted is
    # the graphs dynamo makes, and a fullgraph function fails past its limit of recompilations.
    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda fn, **options: real_compile(fn, backend="eager", fullgraph=True, dynamic=False)
    )
    torch._dynamo.reset()
    lm = tiny_lm()
    decoder = CompiledDecoder(lm, batch_size=2)
    prompt = torch.randint(1, 97, (2, 6), generator=torch.Generator().manual_seed(0))
    counters = torch._dynamo.utils.counters["stats"]
    decoder.generate(prompt, max_new_tokens=12)
    graphs = counters["unique_graphs"]
    for eos in range(10):  # a new EOS and padding each time: the same graphs, the tokens of lm.generate
        expected = lm.generate(prompt, max_new_tokens=12, eos_id=eos, pad_id=eos + 1)
        assert torch.equal(decoder.generate(prompt, max_new_tokens=12, eos_id=eos, pad_id=eos + 1), expected)
        decoder.generate(prompt, max_new_tokens=12, do_sample=True, temperature=0.5 + eos, seed=eos)
    assert counters["unique_graphs"] == graphs + 2  # sampling's prefill and step, once
    for top_k in range(1, 10):  # a graph pair per top_k: more than torch.compile's default limit of 8
        decoder.generate(prompt, max_new_tokens=4, do_sample=True, top_k=top_k, seed=0)
    for length in (20, 40):  # new buckets
        decoder.generate(torch.ones(2, length, dtype=torch.long), max_new_tokens=4)


def gpt2_like(device="cpu"):
    cfg = TransformerConfig.from_preset(
        "gpt2-small", dropout=0.0, vocab_size=1000, d_model=128, n_heads=4, n_layers=2, d_ff=512, max_seq_len=300
    )
    torch.manual_seed(0)
    return TransformerLM(cfg).eval().to(device)


def test_compiled_the_step_is_one_graph_its_tokens_agree_in_float32_and_nothing_compiles_again():
    torch._dynamo.reset()
    lm = gpt2_like()
    decoder = CompiledDecoder(lm, max_len=300)
    prompt = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        explained = torch._dynamo.explain(decoder._step)(sample=False, top_k=None)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    expected = lm.generate(prompt, max_new_tokens=256)  # the growing cache through the modules
    assert torch.equal(decoder.generate(prompt, max_new_tokens=256), expected)
    compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # Another prompt length of the same bucket, and fewer new tokens: the same two graphs.
    short = prompt[:, 5:]
    assert torch.equal(decoder.generate(short, max_new_tokens=50), lm.generate(short, max_new_tokens=50))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_cuda_graph_step_agrees_in_float32_and_replays():
    lm = gpt2_like("cuda")
    decoder = CompiledDecoder(lm, max_len=300)  # mode reduce-overhead: CUDA graphs
    prompt = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(1)).cuda()
    expected = lm.generate(prompt, max_new_tokens=256)
    for _ in range(3):  # recorded, then replayed
        assert torch.equal(decoder.generate(prompt, max_new_tokens=256), expected)
    sampled = decoder.generate(prompt, max_new_tokens=64, do_sample=True, top_k=50, seed=0)
    assert torch.equal(decoder.generate(prompt, max_new_tokens=64, do_sample=True, top_k=50, seed=0), sampled)
