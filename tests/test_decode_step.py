"""`DecodeStep` (generation/decode_step.py): one token per row through a language model as plain function calls.
Its logits must equal the modules' bit for bit, for every kind of layer the configs build, on both CPU backends;
`generate`, streaming, chat and the server must use it where it applies and the modules everywhere else."""

import pytest
import torch

from transformer_networks import Seq2SeqTransformer, TransformerConfig, TransformerLM
from transformer_networks.backends import onednn
from transformer_networks.generation import decode_step
from transformer_networks.generation.decode_step import DecodeStep
from transformer_networks.generation.incremental import next_tokens
from transformer_networks.nn.masks import left_padded_positions

VARIANTS = {
    "the paper: post-LN, ReLU, sinusoidal, scaled embeddings": dict(),
    "GPT-2: pre-LN, tanh GELU, learned positions": dict(
        norm_first=True, activation="gelu_tanh", positional="learned", scale_embeddings=False
    ),
    "Llama: pre-LN RMSNorm, SwiGLU, RoPE, grouped-query, no biases": dict(
        norm_first=True, norm="rmsnorm", activation="swiglu", positional="rope", n_kv_heads=2, bias=False
    ),
    "Qwen3: Llama with QK-norm, multi-head": dict(
        norm_first=True, norm="rmsnorm", activation="swiglu", positional="rope", bias=False, qk_norm=True
    ),
    "BART-like: post-LN, exact GELU, offset positions, embedding norm, logits bias": dict(
        activation="gelu", positional="learned", position_offset=2, embedding_norm=True, final_logits_bias=True
    ),
    "SiLU, multi-query, untied output layer": dict(activation="silu", n_kv_heads=1, tie_embeddings=False),
}


def tiny_lm(**overrides):
    cfg = TransformerConfig(
        vocab_size=97, d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.0, max_seq_len=64, **overrides
    )
    torch.manual_seed(0)
    return TransformerLM(cfg).eval()


@pytest.fixture
def every_product_packed(monkeypatch):
    """oneDNN's packed products for every layer in eval mode, however small."""
    if not onednn.available():
        pytest.skip("oneDNN's operators are not in this build of PyTorch")
    monkeypatch.setattr(onednn, "MIN_MACS_INFERENCE", 0)
    monkeypatch.setattr(onednn, "MIN_WEIGHT_INFERENCE", 0)


@pytest.mark.parametrize("padded", [False, True], ids=["same lengths", "left-padded"])
@pytest.mark.parametrize("backend", ["torch", "onednn"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@torch.no_grad()
def test_a_step_gives_the_modules_logits_bit_for_bit(variant, backend, padded, request):
    model = tiny_lm(**VARIANTS[variant])
    if backend == "onednn":
        request.getfixturevalue("every_product_packed")
        onednn.use_onednn(model, "full")
    prompt = torch.randint(4, 97, (3, 5), generator=torch.Generator().manual_seed(1))
    real = torch.ones_like(prompt, dtype=torch.bool)
    positions = None
    if padded:  # rows of 5, 3 and 1 tokens: padding keys, and positions of each row's own
        real[1, :2] = real[2, :4] = False
        positions = left_padded_positions(real)
    theirs, ours = model.init_cache(), model.init_cache()
    model(prompt, attention_mask=real, cache=theirs, positions=positions)
    model(prompt, attention_mask=real, cache=ours, positions=positions)
    assert (ours.key_mask is not None) == padded
    step = DecodeStep.of(model, ours, 3)
    assert step is not None
    tokens, new = prompt[:, -1:], torch.ones(3, 1, dtype=torch.bool)
    for _ in range(6):
        at = None if positions is None else positions[:, -1:] + 1
        positions = None if positions is None else torch.cat([positions, at], 1)
        expected = model(tokens, attention_mask=new, cache=theirs, positions=at)[:, -1]
        got = step(tokens, ours, at)
        assert torch.equal(got, expected)
        assert ours.length == theirs.length
        tokens = got.argmax(-1, keepdim=True)
    for mine, reference in zip(ours.layers, theirs.layers, strict=True):
        assert torch.equal(mine.self_attn.k, reference.self_attn.k)
        assert torch.equal(mine.self_attn.v, reference.self_attn.v)
    assert (ours.key_mask is None) == (theirs.key_mask is None)
    if padded:
        assert torch.equal(ours.key_mask, theirs.key_mask)


@pytest.fixture
def counted_steps(monkeypatch):
    calls = []
    real = DecodeStep.__call__

    def counting(self, ids, cache, positions=None):
        calls.append(positions is not None)  # whether the rows have their own positions
        return real(self, ids, cache, positions)

    monkeypatch.setattr(DecodeStep, "__call__", counting)
    return calls


@torch.no_grad()
def test_generate_streaming_and_beams_take_the_plain_step_after_the_prompt(counted_steps):
    model = tiny_lm(norm_first=True, positional="rope")
    prompt = torch.randint(4, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    greedy = model.generate(prompt, max_new_tokens=8)
    assert counted_steps == [False] * 7  # every token after the first comes from a step (rows of one length)
    uncached = model.generate(prompt, max_new_tokens=8, use_cache=False)
    assert torch.equal(greedy, uncached)
    counted_steps.clear()
    model.generate(prompt, max_new_tokens=8, num_beams=3)
    assert counted_steps == [False] * 7
    counted_steps.clear()
    streamed = list(next_tokens(model, model.init_cache(), prompt[0].tolist(), max_new_tokens=8))
    assert streamed == greedy[0, 5:].tolist()
    assert counted_steps == [False] * 7
    counted_steps.clear()

    # A left-padded batch: padding keys in the cache, and each row's own positions.
    padded = prompt.clone()
    padded[0, :2] = 0
    mask = padded != 0
    cached = model.generate(padded, attention_mask=mask, max_new_tokens=8)
    assert counted_steps == [True] * 7
    assert torch.equal(cached, model.generate(padded, attention_mask=mask, max_new_tokens=8, use_cache=False))


@torch.no_grad()
def test_the_modules_run_where_a_plain_step_would_skip_something(counted_steps):
    model = tiny_lm(norm_first=True)
    prompt = torch.randint(4, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    reference = model.generate(prompt, max_new_tokens=6)
    counted_steps.clear()

    # A preallocated cache (compiled graphs), hooks, gradients, training, an encoder-decoder: no step at all.
    assert DecodeStep.of(model, model.init_cache(2, 32), 2) is None
    assert DecodeStep.of(model, None, 2) is None
    seen = []
    handle = model.decoder.stack.layers[0].ffn.register_forward_hook(lambda *args: seen.append(1))
    assert DecodeStep.of(model, model.init_cache(), 2) is None
    assert torch.equal(model.generate(prompt, max_new_tokens=6), reference)
    assert len(seen) == 6  # the hook ran at the prompt and at every step
    handle.remove()
    with torch.enable_grad():
        assert DecodeStep.of(model, model.init_cache(), 2) is None
    model.train()
    assert DecodeStep.of(model, model.init_cache(), 2) is None
    model.eval()
    forward = model.forward
    model.forward = lambda *args, **kwargs: forward(*args, **kwargs)  # patched by a user: it must be called
    assert DecodeStep.of(model, model.init_cache(), 2) is None
    del model.forward
    assert DecodeStep.of(model, model.init_cache(), 2) is not None
    model.decoder.stack.compile()
    assert DecodeStep.of(model, model.init_cache(), 2) is None
    torch.manual_seed(0)
    translator = Seq2SeqTransformer(TransformerConfig(vocab_size=50, d_model=32, n_heads=2, n_layers=1, d_ff=64))
    assert DecodeStep.of(translator.eval(), translator.init_cache(), 2) is None
    assert counted_steps == []


def test_a_plain_nn_linear_is_one_f_linear_call_on_its_weights():
    linear = torch.nn.Linear(8, 5)
    x = torch.randn(2, 1, 8)
    assert torch.equal(decode_step.product(linear, x)(x), linear(x))


@torch.no_grad()
def test_the_cpu_backend_chooses_its_product_once_for_inputs_of_a_shape(every_product_packed):
    linear = onednn.use_onednn(torch.nn.Sequential(torch.nn.Linear(8, 5)), "full")[0].eval()
    x = torch.randn(2, 1, 8)
    chosen = linear.product_for(x)
    assert chosen != linear.forward  # the packed product itself, no checks per call
    assert torch.equal(chosen(x), linear(x))
    with torch.enable_grad():
        assert linear.product_for(x.requires_grad_()) == linear.forward  # training: decided at each call
    assert linear.train().product_for(x) == linear.forward
