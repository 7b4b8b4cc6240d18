"""stick_breaking_heads: stick-breaking attention (Tan et al. 2025) in an encoder's first heads."""

import pytest
import torch

from transformer_networks import TransformerConfig
from transformer_networks.errors import ConfigError
from transformer_networks.interop.hf import HFError, export_hf
from transformer_networks.models import Seq2SeqTransformer, TransformerLM, TransformerQA
from transformer_networks.nn.attention import MultiHeadAttention, stick_breaking_attention


def config(**overrides):
    settings = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_seq_len=64)
    return TransformerConfig(**{**settings, **overrides})


def reference(q, k, v, key_mask, bias=0.0):
    """The definition, one query at a time: walk the keys from the nearest outwards (earlier ones for even heads,
    later ones for odd heads); each unmasked key takes sigmoid(q.k / sqrt(D)) of what is left. Out-of-place, so
    autograd can differentiate it."""
    B, H, T, D = q.shape
    rep = H // k.size(1)
    zero = q.new_zeros(())
    rows = []
    for b in range(B):
        for h in range(H):
            for i in range(T):
                row, left = [zero] * T, 1.0
                for j in range(i - 1, -1, -1) if h % 2 == 0 else range(i + 1, T):
                    if not key_mask[b, j]:
                        continue
                    beta = torch.sigmoid(q[b, h, i] @ k[b, h // rep, j] / D**0.5 + bias)
                    row[j] = beta * left
                    left = left * (1 - beta)
                rows.append(torch.stack(row))
    weights = torch.stack(rows).view(B, H, T, T)
    return weights @ v.repeat_interleave(rep, dim=1), weights


@pytest.mark.parametrize("kv_heads,bias", [(4, 0.0), (2, 0.0), (4, -4.0)])
def test_it_equals_the_definition_with_padding_and_shared_key_value_heads(kv_heads, bias):
    torch.manual_seed(0)
    q = torch.randn(2, 4, 7, 8) * 2
    k, v = torch.randn(2, kv_heads, 7, 8) * 2, torch.randn(2, kv_heads, 7, 8)
    key_mask = torch.ones(2, 7, dtype=torch.bool)
    key_mask[1, 2] = key_mask[1, 5:] = False
    out, weights = stick_breaking_attention(q, k, v, key_mask[:, None, None, :], bias=bias, need_weights=True)
    expected_out, expected_weights = reference(q, k, v, key_mask, bias)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_out)


@pytest.mark.parametrize("bias", [0.0, -4.0])
def test_gradients_pass_gradcheck_with_a_masked_key(bias):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.tensor([True, True, False, True, True])[None, None, None, :]
    out = lambda q, k, v: stick_breaking_attention(q, k, v, mask, bias=bias)[0]  # noqa: E731
    assert torch.autograd.gradcheck(out, (q, k, v))


def test_its_hand_written_gradients_equal_autograd_through_the_definition():
    torch.manual_seed(1)
    q = (torch.randn(2, 4, 6, 4, dtype=torch.float64) * 2).requires_grad_()
    k = (torch.randn(2, 2, 6, 4, dtype=torch.float64) * 2).requires_grad_()
    v = torch.randn(2, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    key_mask = torch.ones(2, 6, dtype=torch.bool)
    key_mask[0, 1] = key_mask[1, 4:] = False
    grad = torch.randn(2, 4, 6, 4, dtype=torch.float64)
    got = torch.autograd.grad(
        stick_breaking_attention(q, k, v, key_mask[:, None, None, :], bias=-2.0)[0], (q, k, v), grad
    )
    expected = torch.autograd.grad(reference(q, k, v, key_mask, bias=-2.0)[0], (q, k, v), grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_under_bf16_autocast_it_computes_in_float32_and_returns_bf16():
    """The sums of log(1 - beta) over a long row lose the nearest match in bf16: the function computes in float32
    whatever the autocast, so its result is the float32 one on the same (rounded) inputs, cast once."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 40, 8).bfloat16() for _ in range(3))
    mask = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    mask[1, ..., 30:] = False
    expected, _ = stick_breaking_attention(q.float(), k.float(), v.float(), mask, bias=-4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, weights = stick_breaking_attention(q, k, v, mask, bias=-4.0, need_weights=True)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected.bfloat16())
    assert weights is not None and weights.dtype == torch.float32


def test_a_head_reads_the_nearest_match_however_far_and_a_softmax_head_does_not():
    # Keys 1 and 4 match the query of position 6 (a large dot product), the rest do not: the head reading earlier
    # tokens gives key 4 all the weight and key 1 none, where softmax attention splits it between the two.
    T, D = 8, 4
    q = torch.zeros(1, 2, T, D)
    q[..., 0] = 10.0
    k = torch.zeros(1, 2, T, D)
    k[..., 0] = -10.0
    k[:, :, [1, 4], 0] = 10.0
    _, weights = stick_breaking_attention(q, k, torch.randn(1, 2, T, D), need_weights=True)
    earlier = weights[0, 0, 6]
    assert earlier[4] > 0.999 and earlier[1] < 1e-3 and earlier[6:].sum() == 0  # itself and later: nothing
    later = weights[0, 1, 2]  # the head reading later tokens, from position 2: key 4 is its nearest match
    assert later[4] > 0.999 and later[:3].sum() == 0 and later[5:].sum() < 1e-3
    softmax = (q @ k.transpose(-1, -2) / D**0.5).softmax(-1)[0, 0, 6]
    assert softmax[1] == pytest.approx(0.5, abs=1e-3) and softmax[4] == pytest.approx(0.5, abs=1e-3)
    # A query with nothing on its side (the first token reading earlier ones) gets zeros.
    assert weights[0, 0, 0].sum() == 0 and weights[0, 1, T - 1].sum() == 0


@pytest.mark.parametrize("bias", [0.0, -4.0])
def test_the_module_splits_its_heads_between_the_two_kinds(bias):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, stick_breaking_heads=2, stick_breaking_bias=bias).eval()
    x = torch.randn(2, 9, 32)
    out, weights = attn(x, need_weights=True)
    q, k, v = attn.split_qkv(attn.in_proj(x))
    expected_sb, _ = reference(q[:, :2], k[:, :2], v[:, :2], torch.ones(2, 9, dtype=torch.bool), bias)
    softmax = ((q[:, 2:] @ k[:, 2:].transpose(-1, -2)) / 8**0.5).softmax(-1)
    heads = torch.cat([expected_sb, softmax @ v[:, 2:]], dim=1)
    torch.testing.assert_close(out, attn.out_proj(heads.transpose(1, 2).reshape(2, 9, 32)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights[:, 2:], softmax)
    assert torch.all(weights[:, 0].triu() == 0) and torch.all(weights[:, 1].tril() == 0)  # earlier / later only


@pytest.mark.parametrize("train", [False, True])
def test_a_padded_row_equals_the_row_alone(train):
    torch.manual_seed(0)
    model = TransformerQA(config(stick_breaking_heads=2, positional="rope", n_token_types=2, pad_id=0))
    model.train(train)  # training on a padded batch takes the padding skip (projections of real tokens only)
    ids = torch.randint(1, 50, (2, 10))
    ids[1, 6:] = 0
    batch, alone = model(ids), model(ids[1:, :6])
    torch.testing.assert_close(batch.start[1, :6], alone.start[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.end[1, :6], alone.end[0], atol=1e-5, rtol=1e-5)


def test_an_encoder_decoder_has_them_in_its_encoder_only():
    model = Seq2SeqTransformer(config(stick_breaking_heads=2, stick_breaking_bias=-4.0))
    assert all(layer.self_attn.stick_breaking_heads == 2 for layer in model.encoder.stack.layers)
    assert all(layer.self_attn.stick_breaking_bias == -4.0 for layer in model.encoder.stack.layers)
    assert all(layer.self_attn.stick_breaking_heads == 0 for layer in model.decoder.stack.layers)
    assert all(layer.cross_attn.stick_breaking_heads == 0 for layer in model.decoder.stack.layers)


def test_what_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="stick_breaking_heads=2 is for encoders"):
        TransformerLM(config(stick_breaking_heads=2))
    with pytest.raises(ConfigError, match="stick_breaking_heads must be between 0 and n_heads=4"):
        config(stick_breaking_heads=5)
    with pytest.raises(ConfigError, match=r"multiple of the query heads per key/value head \(2\)"):
        config(n_kv_heads=2, stick_breaking_heads=1)
    with pytest.raises(ConfigError, match="stick_breaking_bias must be a finite number"):
        config(stick_breaking_heads=2, stick_breaking_bias=float("nan"))
    bert = TransformerConfig.from_preset("bert-base", vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    with pytest.raises(HFError, match=r"stick_breaking_heads=2 \(needs 0\)"):
        export_hf(TransformerQA(bert.replace(stick_breaking_heads=2)), tmp_path / "hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()
