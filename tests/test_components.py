"""Positional encodings, normalization and feed-forward networks, each on its own (oneDNN: test_onednn.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_networks.nn import (
    FeedForward,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    make_norm,
    sinusoidal_table,
)


def test_sinusoidal_table_is_the_papers_formula():
    d = 10
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_table(4, 7).shape == (4, 7)  # odd widths work


def test_sinusoidal_encoding_has_no_parameters_and_is_not_saved():
    pe = SinusoidalPositionalEncoding(16, 32)
    assert list(pe.parameters()) == [] and pe.state_dict() == {}
    torch.testing.assert_close(pe(torch.tensor([3, 4])), sinusoidal_table(32, 16)[3:5])


def test_rotary_scores_depend_only_on_relative_position():
    D = 16
    rope = RotaryEmbedding(D, 64)
    q, k = torch.randn(1, 1, 1, D), torch.randn(1, 1, 1, D)

    def score(m, n):
        qm = apply_rotary(q, *rope(torch.tensor([m])))
        kn = apply_rotary(k, *rope(torch.tensor([n])))
        return (qm * kn).sum().item()

    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-5)
    assert score(20, 20) == pytest.approx((q * k).sum().item(), abs=1e-5)  # same position: no net rotation
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_rotary_preserves_norms_and_matches_the_rotation_formula():
    D = 8
    rope = RotaryEmbedding(D, 16, theta=100.0)
    x = torch.randn(2, 3, 5, D)
    positions = torch.arange(5)
    y = apply_rotary(x, *rope(positions))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # Dimension i and i + D/2 form a pair rotated by angle p * theta^(-2i/D).
    p, i = 4, 1
    angle = p * 100.0 ** (-2 * i / D)
    a, b = x[..., p, i], x[..., p, i + D // 2]
    torch.testing.assert_close(y[..., p, i], a * math.cos(angle) - b * math.sin(angle))
    torch.testing.assert_close(y[..., p, i + D // 2], b * math.cos(angle) + a * math.sin(angle))
    # Per-row positions (B, T) broadcast over heads.
    y_rows = apply_rotary(x, *rope(positions.expand(2, 5)))
    torch.testing.assert_close(y_rows, y)


def test_layernorm_is_torch_layernorm():
    norm = make_norm("layernorm", 12, eps=1e-6)
    x = torch.randn(4, 12) * 3 + 1
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=0)
    assert make_norm("layernorm", 12, bias=False).bias is None


def test_rmsnorm_matches_torch_rmsnorm():
    ours, ref = RMSNorm(12, eps=1e-6), nn.RMSNorm(12, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_()
        ref.weight.copy_(ours.weight)
    x = torch.randn(4, 5, 12)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    assert ours(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("activation, fn", [("relu", F.relu), ("gelu", F.gelu)])
def test_feedforward_is_two_linear_layers_with_an_activation(activation, fn):
    ffn = FeedForward(8, 32, activation)
    x = torch.randn(2, 3, 8)
    expected = ffn.fc2(fn(ffn.fc1(x)))
    torch.testing.assert_close(ffn(x), expected)
    assert ffn.gate is None


def test_swiglu():
    ffn = FeedForward(8, 32, "swiglu", bias=False)
    x = torch.randn(2, 3, 8)
    expected = ffn.fc2(F.silu(x @ ffn.fc1.weight.T) * (x @ ffn.gate.weight.T))
    torch.testing.assert_close(ffn(x), expected)
    assert sum(p.numel() for p in ffn.parameters()) == 3 * 8 * 32


def test_feedforward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="swiglu"):
        FeedForward(8, 32, "tanh")
