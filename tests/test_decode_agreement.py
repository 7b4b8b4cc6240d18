"""A decode check that can fail (issue 26): in float32 every decoding path gives the same 256 greedy tokens as ours
with the growing cache: ours with a static cache and without a cache, Hugging Face `generate` on the same weights
with its dynamic and static caches; on a GPU also ours with a compiled stack (skipped without CUDA). Random bf16
weights make near-ties everywhere, so only float32 agreement says something."""

import tempfile

import pytest
import torch

from transformer_networks import TransformerConfig, TransformerLM
from transformer_networks.interop.hf import export_hf

transformers = pytest.importorskip("transformers")

N_NEW = 256


def twins(device: str):
    cfg = TransformerConfig.from_preset(
        "gpt2-small", dropout=0.0, vocab_size=1000, d_model=128, n_heads=4, n_layers=2, d_ff=512, max_seq_len=300
    )
    torch.manual_seed(0)
    ours = TransformerLM(cfg).eval()
    with tempfile.TemporaryDirectory() as directory:
        export_hf(ours, directory)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="sdpa").eval()
    return ours.to(device), theirs.to(device)


def new_tokens(ids):
    return ids[0, -N_NEW:].tolist()


@torch.inference_mode()
def test_every_path_gives_the_growing_caches_tokens_in_float32():
    ours, theirs = twins("cpu")
    prompt = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(1))
    reference = new_tokens(ours.generate(prompt, max_new_tokens=N_NEW))
    mask = torch.ones_like(prompt)
    hf = dict(attention_mask=mask, max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False, eos_token_id=None)
    for name, tokens in (
        ("ours, static cache", ours.generate(prompt, max_new_tokens=N_NEW, static_cache=True)),
        ("ours, no cache", ours.generate(prompt, max_new_tokens=N_NEW, use_cache=False)),
        ("HF generate", theirs.generate(prompt, pad_token_id=0, **hf)),
        ("HF generate, static cache", theirs.generate(prompt, pad_token_id=0, cache_implementation="static", **hf)),
    ):
        assert new_tokens(tokens) == reference, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@torch.inference_mode()
def test_the_compiled_static_path_on_a_gpu_agrees_in_float32():
    ours, _ = twins("cuda")
    prompt = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(1)).cuda()
    reference = new_tokens(ours.generate(prompt, max_new_tokens=N_NEW))
    ours.decoder.stack.compile(mode="reduce-overhead", dynamic=False)
    cache = ours.init_cache(1, 16 + N_NEW)
    for _ in range(2):  # the second run replays the recorded graphs
        assert new_tokens(ours.generate(prompt, max_new_tokens=N_NEW, cache=cache)) == reference
