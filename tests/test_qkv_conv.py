"""qkv_conv: Primer's depthwise convolution over the sequence on self-attention's queries, keys and values."""

import pytest
import torch
import torch.nn.functional as F

from transformer_networks import TransformerConfig
from transformer_networks.errors import ConfigError
from transformer_networks.interop.hf import HFError, export_hf
from transformer_networks.models import Seq2SeqTransformer, TransformerClassifier, TransformerLM, TransformerQA
from transformer_networks.nn.attention import MultiHeadAttention, _SequenceConvolution


def config(**overrides):
    settings = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_seq_len=64)
    return TransformerConfig(**{**settings, **overrides})


def randomize_convolutions(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("qkv_conv"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_attention_matches_a_reference_written_with_shifts():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, qkv_conv=5).eval()
    with torch.no_grad():
        attn.qkv_conv.normal_()
    x = torch.randn(2, 9, 32)
    # Reference: out[t] = sum_j w[:, j] * qkv[t + j - 2], zero outside the sequence; then plain multi-head attention.
    qkv = attn.in_proj(x)
    w = attn.qkv_conv[:, 0, :]  # (N, 5)
    padded = F.pad(qkv, (0, 0, 2, 2))
    mixed = sum(w[:, j] * padded[:, j : j + 9] for j in range(5))
    q, k, v = (t.view(2, 9, 4, 8).transpose(1, 2) for t in mixed.split(32, dim=-1))
    weights = ((q @ k.transpose(-1, -2)) / 8**0.5).softmax(-1)
    expected = attn.out_proj((weights @ v).transpose(1, 2).reshape(2, 9, 32))
    out, _ = attn(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_the_convolution_and_its_gradients_equal_conv1d():
    torch.manual_seed(0)
    x = torch.randn(3, 11, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, 1, 5, dtype=torch.float64, requires_grad=True)
    ours = _SequenceConvolution.apply(x, w)
    reference = F.conv1d(x.transpose(1, 2), w, padding=2, groups=12).transpose(1, 2)
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, w), grad), torch.autograd.grad(reference, (x, w), grad))
    assert torch.autograd.gradcheck(_SequenceConvolution.apply, (x[:1, :6, :3], w[:3]))


@pytest.mark.parametrize("family", ["classifier", "qa"])
def test_it_starts_as_the_identity(family):
    cls = {"classifier": TransformerClassifier, "qa": TransformerQA}[family]
    torch.manual_seed(0)
    plain = cls(config()).eval()
    conv = cls(config(qkv_conv=3)).eval()
    missing, unexpected = conv.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.endswith("self_attn.qkv_conv") for name in missing)
    ids = torch.randint(1, 50, (3, 12))
    a, b = plain(ids), conv(ids)
    if family == "qa":
        a, b = torch.stack([a.start, a.end]), torch.stack([b.start, b.end])
    torch.testing.assert_close(a, b)
    # Each layer's convolution is its own parameter: 3 x 32 channels of width 3.
    assert conv.num_parameters() - plain.num_parameters() == 2 * 96 * 3


@pytest.mark.parametrize("train", [False, True])
def test_padding_is_seen_as_zeros_so_a_padded_row_equals_the_row_alone(train):
    torch.manual_seed(0)
    model = TransformerQA(config(qkv_conv=3, n_token_types=2, pad_id=0))
    randomize_convolutions(model)
    model.train(train)  # training on a padded batch takes the padding skip (projections of real tokens only)
    ids = torch.randint(1, 50, (2, 10))
    ids[1, 6:] = 0
    batch = model(ids)
    alone = model(ids[1:, :6])
    torch.testing.assert_close(batch.start[1, :6], alone.start[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.end[1, :6], alone.end[0], atol=1e-5, rtol=1e-5)
    # And the convolution does something: the same model without it gives other logits.
    for layer in model.encoder.stack.layers:
        layer.self_attn.qkv_conv = None
    assert not torch.allclose(model(ids[1:, :6]).start, alone.start, atol=1e-3)


def test_an_encoder_decoder_convolves_in_its_encoder_only():
    model = Seq2SeqTransformer(config(qkv_conv=3))
    assert all(layer.self_attn.qkv_conv is not None for layer in model.encoder.stack.layers)
    assert all(layer.self_attn.qkv_conv is None for layer in model.decoder.stack.layers)


def test_what_is_refused():
    with pytest.raises(ConfigError, match="qkv_conv=3 is for encoders"):
        TransformerLM(config(qkv_conv=3))
    with pytest.raises(ConfigError, match="odd width"):
        config(qkv_conv=2)
    with pytest.raises(ConfigError, match="odd width"):
        config(qkv_conv=-1)


def test_export_to_hugging_face_refuses_it(tmp_path):
    bert = TransformerConfig.from_preset("bert-base", vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    export_hf(TransformerQA(bert), tmp_path / "fits")  # the same shape without the convolution exports
    model = TransformerQA(bert.replace(qkv_conv=3))
    with pytest.raises(HFError, match=r"qkv_conv=3 \(needs 0\)"):
        export_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()
