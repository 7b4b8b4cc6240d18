"""Positional encodings, normalization, feed-forward networks and the linear layer, each on its own."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_networks.config import TransformerConfig
from transformer_networks.models import TransformerLM
from transformer_networks.nn import (
    FeedForward,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    make_norm,
    sinusoidal_table,
)
from transformer_networks.nn.linear import ONEDNN


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


def _count_onednn_products(monkeypatch) -> list[tuple[int, ...]]:
    """Record the input shape of every oneDNN product `nn.linear` computes."""
    from transformer_networks.nn import linear as linear_module

    products: list[tuple[int, ...]] = []
    real = linear_module._LINEAR_OP
    monkeypatch.setattr(linear_module, "_LINEAR_OP", lambda x, *args: products.append(tuple(x.shape)) or real(x, *args))
    return products


_no_onednn = pytest.mark.skipif(not ONEDNN, reason="oneDNN's linear operator is not available in this PyTorch build")


@pytest.fixture
def full_mode(monkeypatch):
    """oneDNN's "full" mode (what an AMD CPU gets), whatever this machine's CPU."""
    from transformer_networks.nn import linear as linear_module

    monkeypatch.setattr(linear_module, "MODE", "full")


def needs_onednn(test):
    """A test of the "full" mode's oneDNN products: skipped where PyTorch has no oneDNN."""
    return _no_onednn(pytest.mark.usefixtures("full_mode")(test))


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(96, 300), (4, 24, 300), (300,)])
def test_linear_trains_on_onednn_with_nn_linears_values_and_gradients(bias, shape, monkeypatch):
    # Forward, dx = dy W and dW = dy^T x (both branches: in < out and in > out) against F.linear's autograd.
    from transformer_networks.nn import Linear

    for n_in, n_out in [(300, 500), (300, 200)]:
        torch.manual_seed(0)
        layer = Linear(n_in, n_out, bias=bias)
        x = torch.randn(shape, requires_grad=True)
        products = _count_onednn_products(monkeypatch)
        y = layer(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        rows = x.numel() // n_in
        assert len(products) == (3 if rows * n_in * n_out >= 2**22 else 0)  # forward, dx, dW; small ones: F.linear
        x_ref = x.detach().clone().requires_grad_()
        w_ref = layer.weight.detach().clone().requires_grad_()
        b_ref = layer.bias.detach().clone().requires_grad_() if bias else None
        y_ref = F.linear(x_ref, w_ref, b_ref)
        y_ref.backward(dy)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer.weight.grad, w_ref.grad, atol=1e-4, rtol=1e-5)
        if bias:
            torch.testing.assert_close(layer.bias.grad, b_ref.grad, atol=1e-4, rtol=1e-5)
    assert set(layer.state_dict()) == set(nn.Linear(n_in, n_out, bias=bias).state_dict())


@needs_onednn
def test_linear_infers_with_a_packed_weight_that_follows_every_change(monkeypatch):
    import copy

    from transformer_networks.nn import Linear
    from transformer_networks.nn import linear as linear_module

    torch.manual_seed(0)
    layer = Linear(768, 1536).eval()
    packs = []
    real_pack = linear_module._pack
    monkeypatch.setattr(linear_module, "_pack", lambda w: packs.append(1) or real_pack(w))
    products = _count_onednn_products(monkeypatch)

    def check(x: torch.Tensor) -> None:
        with torch.no_grad():
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-4, rtol=1e-5)

    for shape in [(1, 768), (8, 768), (2, 3, 768), (768,)]:  # one packing serves every number of rows
        check(torch.randn(shape))
    assert len(packs) == 1 and len(products) == 4
    with torch.no_grad():
        layer.weight.mul_(2.0)  # an in-place change: packed again
    check(torch.randn(4, 768))
    layer.load_state_dict({"weight": torch.randn(1536, 768), "bias": torch.randn(1536)})
    check(torch.randn(4, 768))
    layer.weight = nn.Parameter(torch.randn(1536, 768))  # another tensor
    check(torch.randn(4, 768))
    # A fused AdamW step writes the weight without bumping its version counter: the step itself is seen.
    layer.weight.grad, layer.bias.grad = torch.randn(1536, 768), torch.randn(1536)
    torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True).step()
    check(torch.randn(4, 768))
    layer.float()  # .to() and friends drop the packed copy
    assert layer._packed is None
    check(torch.randn(4, 768))
    assert len(packs) == 6
    clone = copy.deepcopy(layer)  # the packed copy is a cache: not copied, made again when needed
    with torch.no_grad():
        torch.testing.assert_close(clone(torch.ones(1, 768)), layer(torch.ones(1, 768)))
    layer.train()
    assert layer._packed is None
    check(torch.randn(4, 768))  # train mode: oneDNN on the weight as it is, nothing packed
    assert layer._packed is None and len(packs) == 7
    n = len(products)
    with torch.no_grad():
        Linear(64, 64)(torch.randn(1, 64))
        Linear(768, 1536).double()(torch.randn(2, 768, dtype=torch.float64))  # float64: F.linear
        monkeypatch.setattr(linear_module, "ONEDNN", False)
        layer(torch.randn(2, 768))  # switched off
    assert len(products) == n


@needs_onednn
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's forward-AD decompositions call torch.jit.script
def test_linear_works_where_nn_linear_does(monkeypatch):
    # A layer built in inference mode (its weight tracks no version), forward-mode AD, a sparse input and a 1-D
    # input in training: each gives nn.Linear's result.
    from transformer_networks.nn import Linear

    torch.manual_seed(0)
    with torch.inference_mode():
        layer = Linear(768, 1536).eval()
        x = torch.randn(2, 768)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-4, rtol=1e-5)
    layer = Linear(2048, 2048)
    x, tangent = torch.randn(2, 2048), torch.randn(2, 2048)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        out = fwAD.unpack_dual(layer(fwAD.make_dual(x, tangent)))
    torch.testing.assert_close(out.tangent, tangent @ layer.weight.T, atol=1e-4, rtol=1e-5)
    dense = torch.zeros(4, 2048)
    dense[1, 3] = 1.0
    torch.testing.assert_close(layer(dense.to_sparse()), F.linear(dense, layer.weight, layer.bias))
    products = _count_onednn_products(monkeypatch)
    v = torch.randn(2048, requires_grad=True)  # one vector, 2^22 multiply-adds: oneDNN
    layer(v).sum().backward()
    assert len(products) == 3
    torch.testing.assert_close(v.grad, layer.weight.sum(0), atol=1e-4, rtol=1e-5)


@needs_onednn
def test_model_training_step_is_the_same_with_and_without_onednn(monkeypatch):
    # A whole language-model step (fused projections, tied output layer, loss, backward) through our Linear gives
    # nn.Linear's loss and gradients.
    from transformer_networks.nn import linear as linear_module

    cfg = TransformerConfig.from_preset("gpt2-small", n_layers=2, n_heads=4, d_model=128, d_ff=512, vocab_size=97,
                                        max_seq_len=64, dropout=0.0)
    torch.manual_seed(0)
    lm = TransformerLM(cfg)
    ids = torch.randint(97, (8, 64))

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        lm.zero_grad()
        logits = lm(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 97), ids[:, 1:].reshape(-1))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lm.parameters()]

    products = _count_onednn_products(monkeypatch)
    loss, grads = step()
    assert len(products) == 2 * 4 * 3 + 3  # 4 projections a layer and the output layer: forward, dx, dW
    monkeypatch.setattr(linear_module, "ONEDNN", False)
    loss_ref, grads_ref = step()
    assert len(products) == 27
    torch.testing.assert_close(loss, loss_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


@needs_onednn
def test_compiled_training_step_keeps_the_onednn_products_in_one_graph(monkeypatch):
    # torch.compile traces `onednn_linear` as an operator with its own backward: one graph, no break, the eager
    # values and gradients (aot_eager: the same tracing as inductor, without generating code).
    cfg = TransformerConfig.from_preset("gpt2-small", n_layers=2, n_heads=4, d_model=128, d_ff=512, vocab_size=97,
                                        max_seq_len=64, dropout=0.0)
    torch.manual_seed(0)
    lm = TransformerLM(cfg)
    ids = torch.randint(97, (8, 64))

    def loss_of(ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm(ids[:, :-1]).reshape(-1, 97), ids[:, 1:].reshape(-1))

    def step(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
        lm.zero_grad()
        loss = fn(ids)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lm.parameters()]

    torch._dynamo.reset()
    assert torch._dynamo.explain(loss_of)(ids).graph_break_count == 0
    loss, grads = step(loss_of)
    products = _count_onednn_products(monkeypatch)
    torch._dynamo.reset()
    loss_compiled, grads_compiled = step(torch.compile(loss_of, backend="aot_eager"))
    assert len(products) == 27
    torch.testing.assert_close(loss_compiled, loss)
    for g, g_ref in zip(grads_compiled, grads, strict=True):
        torch.testing.assert_close(g, g_ref)


@needs_onednn
def test_seq2seq_training_step_is_the_same_with_and_without_onednn(monkeypatch):
    # The encoder-decoder adds cross-attention, whose projections multiply slices of the fused in_proj weight
    # (`nn.linear.linear`), and padded batches, whose projections run on the real tokens only.
    from transformer_networks.models import Seq2SeqTransformer
    from transformer_networks.nn import linear as linear_module

    cfg = TransformerConfig.from_preset("small", d_model=128, n_heads=4, d_ff=512, n_layers=1,
                                        vocab_size=101, pad_id=0, dropout=0.0)
    torch.manual_seed(0)
    mt = Seq2SeqTransformer(cfg)
    src, tgt = torch.randint(4, 101, (8, 48)), torch.randint(4, 101, (8, 49))
    src[:4, 40:] = cfg.pad_id  # some padding on both sides
    tgt[4:, 41:] = cfg.pad_id

    def step() -> list[torch.Tensor]:
        mt.zero_grad()
        logits = mt(src, tgt[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1), ignore_index=cfg.pad_id).backward()
        return [p.grad.clone() for p in mt.parameters() if p.grad is not None]

    products = _count_onednn_products(monkeypatch)
    grads = step()
    # Forward, dx and dW of every projection: 4 in the encoder layer, 7 in the decoder layer (cross-attention's query
    # and key/value slices and its output among them), the output layer.
    assert len(products) == 3 * (4 + 7 + 1)
    monkeypatch.setattr(linear_module, "ONEDNN", False)
    for g, g_ref in zip(grads, step(), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


@_no_onednn
def test_few_rows_mode_packs_only_for_a_few_rows_in_eval_mode(monkeypatch):
    # Intel's mode: MKL computes training, one to three rows and many rows; oneDNN 4-32 rows by a packed weight.
    from transformer_networks.nn import Linear
    from transformer_networks.nn import linear as linear_module

    monkeypatch.setattr(linear_module, "MODE", "few-rows")
    packs = []
    real_pack = linear_module._pack
    monkeypatch.setattr(linear_module, "_pack", lambda w: packs.append(1) or real_pack(w))
    torch.manual_seed(0)
    layer = Linear(768, 1536)
    products = _count_onednn_products(monkeypatch)
    x = torch.randn(8, 768, requires_grad=True)
    layer(x).sum().backward()  # training: F.linear
    with torch.no_grad():
        layer(torch.randn(8, 768))  # train mode without a gradient: F.linear
    layer.eval()
    with torch.no_grad():
        for rows in [1, 3, 4, 8, 32, 33, 256]:
            x = torch.randn(rows, 768)
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-4, rtol=1e-5)
        layer(torch.randn(2, 4, 768))  # 8 rows in two dimensions
        Linear(128, 512).eval()(torch.randn(8, 128))  # a small weight: F.linear
        linear_module.linear(torch.randn(8, 768), layer.weight, layer.bias)  # the function never packs: F.linear
    assert products == [(4, 768), (8, 768), (32, 768), (2, 4, 768)]
    assert len(packs) == 1 and layer._packed is not None  # every oneDNN product used the one packed copy
    with torch.inference_mode():
        frozen = Linear(768, 1536).eval()  # an inference-mode weight: not packed, F.linear
        frozen(torch.randn(8, 768))
    assert len(products) == 4 and len(packs) == 1


def test_onednn_mode_follows_the_cpu_vendor_and_the_environment(monkeypatch):
    from transformer_networks.nn import linear as linear_module

    monkeypatch.delenv("TN_ONEDNN", raising=False)
    for vendor, mode in [("AuthenticAMD", "full"), ("GenuineIntel", "few-rows"), ("", "off"), ("CentaurHauls", "off")]:
        monkeypatch.setattr(linear_module, "cpu_vendor", lambda v=vendor: v)
        assert linear_module._default_mode() == mode
    monkeypatch.setenv("TN_ONEDNN", "full")
    assert linear_module._default_mode() == "full"
    monkeypatch.setenv("TN_ONEDNN", "fast")
    with pytest.warns(UserWarning, match="TN_ONEDNN must be one of full, few-rows, off, got 'fast': ignored"):
        assert linear_module._default_mode() == "off"  # the vendor's mode
    monkeypatch.setattr(linear_module, "MODE", "off")
    products = _count_onednn_products(monkeypatch)
    with torch.no_grad():
        linear_module.Linear(768, 1536).eval()(torch.randn(8, 768))
    assert products == []
