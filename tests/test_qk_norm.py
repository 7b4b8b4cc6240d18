"""QK-norm (`TransformerConfig.qk_norm`): each head's queries and keys RMS-normalised before the scores. Its parity
with Hugging Face's Qwen3 is in test_hf.py, and its cached decoding step in test_decode_step.py."""

import pytest
import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.models import Seq2SeqTransformer, TransformerQA
from transformer_networks.nn.attention import MultiHeadAttention


def scale_queries_and_keys(attn: MultiHeadAttention, factor: float) -> None:
    """Multiply the query and key projections (weights and biases) by `factor`: the scores grow by factor**2."""
    n = attn.q_dim + attn.kv_dim
    with torch.no_grad():
        attn.in_proj.weight[:n] *= factor
        if attn.in_proj.bias is not None:
            attn.in_proj.bias[:n] *= factor


@pytest.mark.parametrize("qk_norm", [False, True])
def test_with_qk_norm_the_scale_of_queries_and_keys_no_longer_matters(qk_norm):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, qk_norm=qk_norm).eval()
    x = torch.randn(2, 7, 32)
    before = attn(x)[0]
    scale_queries_and_keys(attn, 5.0)
    after = attn(x)[0]
    assert torch.allclose(before, after, atol=1e-5) == qk_norm  # without the norm, sharper scores change it


def test_qk_norm_normalises_each_head_of_self_and_cross_attention():
    """Every attention of an encoder-decoder has its own norms, and both of cross-attention's paths (its queries
    from the decoder, its keys from the encoder's output) go through them."""
    cfg = TransformerConfig.from_preset("tiny", vocab_size=30, max_seq_len=32, dropout=0.0, qk_norm=True)
    torch.manual_seed(0)
    model = Seq2SeqTransformer(cfg).eval()
    names = [n for n, _ in model.named_parameters() if n.endswith(("q_norm.weight", "k_norm.weight"))]
    layers = cfg.encoder_layers + 2 * cfg.decoder_layers  # self-attention everywhere, cross-attention in the decoder
    assert len(names) == 2 * layers
    src, tgt = torch.randint(1, 30, (2, 9)), torch.randint(1, 30, (2, 6))
    before = model(src, tgt)
    for layer in model.decoder.stack.layers:
        scale_queries_and_keys(layer.cross_attn, 4.0)
    torch.testing.assert_close(model(src, tgt), before, rtol=1e-4, atol=1e-4)  # eps aside, unchanged
    with torch.no_grad():  # the norms' scales are used: doubling a key scale changes the scores
        model.decoder.stack.layers[0].cross_attn.k_norm.weight.mul_(2.0)
    assert not torch.allclose(model(src, tgt), before, atol=1e-2)


def test_a_qa_encoder_with_qk_norm_trains_its_norms():
    cfg = TransformerConfig.from_preset("tiny", vocab_size=30, max_seq_len=32, dropout=0.0, qk_norm=True)
    torch.manual_seed(0)
    model = TransformerQA(cfg)
    ids = torch.randint(1, 30, (3, 10))
    ids[0, 7:] = 0  # padding: the training path that skips it
    out = model(ids)
    (out.start.logsumexp(-1) - out.start[:, 2] + out.end.logsumexp(-1) - out.end[:, 3]).sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith(("q_norm.weight", "k_norm.weight"))]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
