"""Attention against PyTorch's own reference implementations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_networks.nn import MultiHeadAttention, scaled_dot_product_attention

B, T, S, E, H = 3, 5, 7, 32, 4


def pair(bias: bool) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ref = nn.MultiheadAttention(E, H, bias=bias, batch_first=True).eval()
    ours = MultiHeadAttention(E, H, bias=bias).eval()
    with torch.no_grad():
        ours.in_proj.weight.copy_(ref.in_proj_weight)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            ours.in_proj.bias.copy_(ref.in_proj_bias)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def lengths_mask(lengths: list[int], n: int) -> torch.Tensor:
    """(B, n), True for the first `length` positions of each row."""
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_matches_torch_multihead_attention(bias, need_weights):
    ours, ref = pair(bias)
    x = torch.randn(B, T, E)
    keep = lengths_mask([5, 3, 1], T)
    expected, expected_w = ref(x, x, x, key_padding_mask=~keep, need_weights=True, average_attn_weights=False)
    out, w = ours(x, mask=keep[:, None, None, :], need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(w, expected_w, atol=1e-5, rtol=0)
    else:
        assert w is None


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("need_weights", [False, True])
def test_cross_attention_matches_torch_multihead_attention(bias, need_weights):
    ours, ref = pair(bias)
    x, memory = torch.randn(B, T, E), torch.randn(B, S, E)
    keep = lengths_mask([7, 4, 2], S)
    expected, expected_w = ref(x, memory, memory, key_padding_mask=~keep, average_attn_weights=False)
    out, w = ours(x, memory, mask=keep[:, None, None, :], need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(w, expected_w, atol=1e-5, rtol=0)
    # Keys and values projected once (as a decoder does per source) give the same result.
    out_kv, _ = ours(x, mask=keep[:, None, None, :], kv=ours.project_kv(memory))
    torch.testing.assert_close(out_kv, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_self_attention_matches_torch(need_weights):
    ours, ref = pair(True)
    x = torch.randn(B, T, E)
    keep = lengths_mask([5, 4, 2], T)
    causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.bool)  # True = masked out
    expected, _ = ref(x, x, x, attn_mask=causal, key_padding_mask=~keep)
    out, _ = ours(x, mask=keep[:, None, None, :], is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # Without padding the fused is_causal path runs; it must agree too.
    expected, _ = ref(x, x, x, attn_mask=causal)
    torch.testing.assert_close(ours(x, is_causal=True)[0], expected, atol=1e-5, rtol=0)


def test_sdpa_and_math_paths_agree():
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8)
    mask = torch.rand(2, 1, 6, 9) > 0.3
    fast, _ = scaled_dot_product_attention(q, k, v, mask)
    slow, w = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))
    assert (w[~mask.expand_as(w)] == 0).all()
    # Equation (1) written out by hand.
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    manual = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(fast, manual, atol=1e-6, rtol=0)


def test_grouped_query_attention_equals_attention_with_repeated_kv_heads():
    n_heads, n_kv_heads = 4, 2
    gqa = MultiHeadAttention(E, n_heads, n_kv_heads).eval()
    full = MultiHeadAttention(E, n_heads).eval()
    D = E // n_heads
    wq, wk, wv = gqa.in_proj.weight.split([E, n_kv_heads * D, n_kv_heads * D])
    bq, bk, bv = gqa.in_proj.bias.split([E, n_kv_heads * D, n_kv_heads * D])

    def repeat(t):  # each key/value head serves n_heads / n_kv_heads consecutive query heads
        return t.view(n_kv_heads, D, *t.shape[1:]).repeat_interleave(n_heads // n_kv_heads, 0).reshape(E, *t.shape[1:])

    with torch.no_grad():
        full.in_proj.weight.copy_(torch.cat([wq, repeat(wk), repeat(wv)]))
        full.in_proj.bias.copy_(torch.cat([bq, repeat(bk), repeat(bv)]))
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
    x = torch.randn(B, T, E)
    keep = lengths_mask([5, 3, 2], T)[:, None, None, :]
    for need_weights in (False, True):
        torch.testing.assert_close(
            gqa(x, mask=keep, is_causal=True, need_weights=need_weights)[0],
            full(x, mask=keep, is_causal=True)[0],
            atol=1e-6,
            rtol=0,
        )
    assert gqa.in_proj.weight.shape == (E + 2 * n_kv_heads * D, E)


def test_fully_masked_query_rows_output_zeros_and_finite_gradients():
    ours = MultiHeadAttention(E, H)
    x = torch.randn(1, T, E, requires_grad=True)
    mask = torch.zeros(1, 1, T, T, dtype=torch.bool)
    mask[..., :2, :2] = True  # rows 2.. see nothing
    for need_weights in (False, True):
        out, w = ours(x, mask=mask, need_weights=need_weights)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        torch.testing.assert_close(out[0, 2:], ours.out_proj.bias.expand(T - 2, E))  # zero attention, then bias
        if need_weights:
            assert (w[..., 2:, :] == 0).all()


@pytest.mark.parametrize("preallocate", [False, True])
def test_standalone_attention_with_a_cache_matches_the_full_pass(preallocate):
    from transformer_networks.nn import KVCache

    attn = MultiHeadAttention(E, H, n_kv_heads=2).eval()
    x = torch.randn(2, T, E)
    full, _ = attn(x, is_causal=True)
    cache = KVCache(2, 2, E // H, max_len=T + 3) if preallocate else KVCache()
    steps = [attn(x[:, :2], is_causal=True, cache=cache, positions=torch.arange(2))[0]]
    steps += [attn(x[:, t : t + 1], is_causal=True, cache=cache, positions=torch.tensor([t]))[0] for t in range(2, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_attention_dropout_acts_only_in_training():
    attn = MultiHeadAttention(E, H, dropout=0.5)
    x = torch.randn(B, T, E)
    attn.eval()
    torch.testing.assert_close(attn(x)[0], attn(x)[0])
    attn.train()
    _, w = attn(x, need_weights=True)
    assert (w == 0).any()  # dropped weights; the survivors are scaled by 1 / (1 - p)
    assert not torch.allclose(attn(x)[0], attn(x)[0])


@pytest.mark.parametrize("need_weights", [False, True])
def test_gradcheck_float64(need_weights):
    attn = MultiHeadAttention(8, 2, n_kv_heads=1).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True, True, True, False], [True, True, False, False]])[:, None, None, :]
    assert torch.autograd.gradcheck(lambda a: attn(a, is_causal=True, need_weights=need_weights)[0], (x,))
    assert torch.autograd.gradcheck(lambda a, m: attn(a, m, mask=keep, need_weights=need_weights)[0], (x, memory))


def test_sdpa_is_what_the_fast_path_calls(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    attn = MultiHeadAttention(E, H)
    attn(torch.randn(B, T, E), is_causal=True)
    assert calls and calls[0]["is_causal"] and calls[0]["attn_mask"] is None
    calls.clear()
    attn(torch.randn(B, T, E), need_weights=True)
    assert not calls
