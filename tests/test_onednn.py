"""The oneDNN backend (`transformer_networks.backends.onednn`): its layers against `F.linear`, `use_onednn` on whole
models, the choice of mode, the fallback where oneDNN is missing, and an import without side effects."""

import ast
import copy
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_networks.backends import onednn
from transformer_networks.backends.onednn import OneDNNLinear, use_onednn
from transformer_networks.config import TransformerConfig
from transformer_networks.models import Seq2SeqTransformer, TransformerLM
from transformer_networks.nn import MultiHeadAttention

SRC = Path(__file__).resolve().parents[1] / "src" / "transformer_networks"


@pytest.fixture(autouse=True)
def _restore_backend_state(monkeypatch):
    """Whatever a test changes of the backend's lazily filled state (the mode read, the operators looked up, the
    warning given) is put back after it."""
    for name in ("_requested", "_found_ops", "_warned_unavailable"):
        monkeypatch.setattr(onednn, name, getattr(onednn, name))
    # The tests count products against the general training threshold, whatever this CPU is (a Zen 4 has its own:
    # test_a_zen_4_starts_training_products_on_onednn_at_its_own_size).
    monkeypatch.setattr(onednn, "_min_macs", onednn.MIN_MACS_TRAINING)


def _count_onednn_products(monkeypatch) -> list[tuple[int, ...]]:
    """Record the input shape of every oneDNN product the backend computes."""
    products: list[tuple[int, ...]] = []
    real = onednn._onednn
    monkeypatch.setattr(onednn, "_onednn", lambda x, *args: products.append(tuple(x.shape)) or real(x, *args))
    return products


needs_onednn = pytest.mark.skipif(
    not onednn.available(), reason="oneDNN's linear operators are not available in this PyTorch build"
)


def _linears(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, nn.Linear)]


# --- the layer, "full" mode (what an AMD CPU gets), whatever this machine's CPU ------------------------------------


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(96, 300), (4, 24, 300), (300,)])
def test_linear_trains_on_onednn_with_nn_linears_values_and_gradients(bias, shape, monkeypatch):
    # Forward, dx = dy W and dW = dy^T x (both branches: in < out and in > out) against F.linear's autograd.
    for n_in, n_out in [(300, 500), (300, 200)]:
        torch.manual_seed(0)
        layer = OneDNNLinear(n_in, n_out, bias=bias, mode="full")
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
    torch.manual_seed(0)
    layer = OneDNNLinear(768, 1536, mode="full").eval()
    packs = []
    real_pack = onednn._pack
    monkeypatch.setattr(onednn, "_pack", lambda w: packs.append(1) or real_pack(w))
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
        OneDNNLinear(64, 64, mode="full")(torch.randn(1, 64))
        OneDNNLinear(768, 1536, mode="full").double()(torch.randn(2, 768, dtype=torch.float64))  # float64: F.linear
        with monkeypatch.context() as m:
            m.setattr(torch.backends.mkldnn, "enabled", False)
            layer(torch.randn(2, 768))  # switched off in PyTorch
        use_onednn(layer, "off")  # switched off here: a plain nn.Linear again
        assert type(layer) is nn.Linear
        layer(torch.randn(2, 768))
    assert len(products) == n


@needs_onednn
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's forward-AD decompositions call torch.jit.script
def test_linear_works_where_nn_linear_does(monkeypatch):
    # A layer built in inference mode (its weight tracks no version), forward-mode AD, a sparse input and a 1-D
    # input in training: each gives nn.Linear's result.
    torch.manual_seed(0)
    with torch.inference_mode():
        layer = OneDNNLinear(768, 1536, mode="full").eval()
        x = torch.randn(2, 768)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-4, rtol=1e-5)
    layer = OneDNNLinear(2048, 2048, mode="full")
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


# --- whole models --------------------------------------------------------------------------------------------------


def _small_lm() -> TransformerLM:
    cfg = TransformerConfig.from_preset(
        "gpt2-small", n_layers=2, n_heads=4, d_model=128, d_ff=512, vocab_size=97, max_seq_len=64, dropout=0.0
    )
    torch.manual_seed(0)
    return TransformerLM(cfg)


@needs_onednn
def test_model_training_step_is_the_same_with_and_without_onednn(monkeypatch):
    # A whole language-model step (fused projections, tied output layer, loss, backward) on oneDNN gives
    # nn.Linear's loss and gradients.
    lm = use_onednn(_small_lm(), "full")
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
    use_onednn(lm, "off")
    assert set(_linears(lm)) == {nn.Linear}
    loss_ref, grads_ref = step()
    assert len(products) == 27
    torch.testing.assert_close(loss, loss_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


@needs_onednn
def test_compiled_training_step_keeps_the_onednn_products_in_one_graph(monkeypatch):
    # torch.compile traces `onednn_linear` as an operator with its own backward: one graph, no break, the eager
    # values and gradients (aot_eager: the same tracing as inductor, without generating code).
    lm = use_onednn(_small_lm(), "full")
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
    # (`MultiHeadAttention.sliced_linear`, which "full" mode sets to `onednn.linear`), and padded batches, whose
    # projections run on the real tokens only.
    cfg = TransformerConfig.from_preset(
        "small", d_model=128, n_heads=4, d_ff=512, n_layers=1, vocab_size=101, pad_id=0, dropout=0.0
    )
    torch.manual_seed(0)
    mt = use_onednn(Seq2SeqTransformer(cfg), "full")
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
    use_onednn(mt, "off")
    assert not any("sliced_linear" in vars(m) for m in mt.modules())
    for g, g_ref in zip(grads, step(), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


# --- "few-rows" mode (what an Intel CPU gets) ----------------------------------------------------------------------


@needs_onednn
def test_few_rows_mode_packs_only_for_a_few_rows_in_eval_mode(monkeypatch):
    # Intel's mode: MKL computes training, one to three rows and many rows; oneDNN 4-32 rows by a packed weight.
    packs = []
    real_pack = onednn._pack
    monkeypatch.setattr(onednn, "_pack", lambda w: packs.append(1) or real_pack(w))
    torch.manual_seed(0)
    layer = OneDNNLinear(768, 1536, mode="few-rows")
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
        OneDNNLinear(128, 512, mode="few-rows").eval()(torch.randn(8, 128))  # a small weight: F.linear
    assert products == [(4, 768), (8, 768), (32, 768), (2, 4, 768)]
    assert len(packs) == 1 and layer._packed is not None  # every oneDNN product used the one packed copy
    with torch.inference_mode():
        frozen = OneDNNLinear(768, 1536, mode="few-rows").eval()  # an inference-mode weight: not packed, F.linear
        frozen(torch.randn(8, 768))
    assert len(products) == 4 and len(packs) == 1
    # Cross-attention's slices of a fused weight are never packed: "few-rows" leaves them on F.linear, and only the
    # output projection (8 rows by a packed 768 x 768 weight) runs on oneDNN.
    attention = use_onednn(MultiHeadAttention(768, 12), "few-rows").eval()
    assert "sliced_linear" not in vars(attention) and attention.sliced_linear is F.linear
    with torch.no_grad():
        attention(torch.randn(1, 8, 768), torch.randn(1, 8, 768))
    assert products[4:] == [(1, 8, 768)]
    assert use_onednn(attention, "full").sliced_linear is onednn.linear


# --- use_onednn: what it keeps ---------------------------------------------------------------------------------------


@needs_onednn
@pytest.mark.parametrize("mode", ["full", "few-rows"])
def test_use_onednn_keeps_parameters_state_dict_tied_weights_and_outputs(mode):
    cfg = TransformerConfig.from_preset(
        "gpt2-small", n_layers=1, n_heads=8, d_model=512, d_ff=2048, vocab_size=97, max_seq_len=64, dropout=0.0
    )
    torch.manual_seed(0)
    lm = TransformerLM(cfg)
    plain = copy.deepcopy(lm)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-2)  # built before: must still update the model
    parameters = list(lm.parameters())
    keys = list(lm.state_dict())
    assert lm.lm_head.weight is lm.decoder.embeddings.token.weight  # gpt2-small ties its output layer
    assert use_onednn(lm, mode) is lm
    assert set(_linears(lm)) == {OneDNNLinear}
    assert all(m.onednn_mode == mode for m in lm.modules() if isinstance(m, OneDNNLinear))
    assert list(lm.parameters()) == parameters and all(a is b for a, b in zip(lm.parameters(), parameters, strict=True))
    assert list(lm.state_dict()) == keys
    assert lm.lm_head.weight is lm.decoder.embeddings.token.weight
    use_onednn(lm, mode)  # idempotent
    assert set(_linears(lm)) == {OneDNNLinear} and list(lm.state_dict()) == keys
    lm.load_state_dict(plain.state_dict())  # a checkpoint of the plain model loads as it is

    ids = torch.randint(97, (2, 8))  # 16 rows: "few-rows" packs the large weights
    lm.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), plain(ids), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lm(ids[:1, :8]), plain(ids[:1, :8]), atol=1e-5, rtol=1e-5)
    lm.train()
    plain.train()
    F.cross_entropy(lm(ids).reshape(-1, 97), ids.reshape(-1)).backward()
    before = lm.lm_head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(lm.lm_head.weight, before)  # the optimizer built before the swap moved the weights
    assert lm.lm_head.weight is lm.decoder.embeddings.token.weight
    lm.eval()
    plain.load_state_dict(lm.state_dict())
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), plain(ids), atol=1e-5, rtol=1e-5)
    use_onednn(lm, "off")
    assert set(_linears(lm)) == {nn.Linear} and list(lm.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), plain(ids))


def test_use_onednn_leaves_peers_and_subclasses_alone():
    # Only torch.nn.Linear itself is swapped: a subclass may have a forward of its own.
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(nn.Linear(4, 4), Scaled(4, 4), nn.MultiheadAttention(4, 2))
    use_onednn(model, "full" if onednn.available() else "off")
    assert type(model[1]) is Scaled and type(model[2].out_proj) is not OneDNNLinear
    with pytest.raises(ValueError, match="mode must be one of full, few-rows, off"):
        use_onednn(model, "fast")


# --- the mode, and a PyTorch without oneDNN -------------------------------------------------------------------------


def test_a_zen_4_starts_training_products_on_onednn_at_its_own_size(monkeypatch):
    cpus = {
        "zen4": ("AuthenticAMD", {"cpu family": "25", "flags": "fpu sse2 avx2 avx512f avx512bw"}, 2**29),
        "zen3": ("AuthenticAMD", {"cpu family": "25", "flags": "fpu sse2 avx2"}, 2**22),
        "zen5": ("AuthenticAMD", {"cpu family": "26", "flags": "fpu avx2 avx512f"}, 2**22),
        "intel": ("GenuineIntel", {"cpu family": "6", "flags": "fpu avx2 avx512f"}, 2**22),
    }
    for vendor, fields, expected in cpus.values():
        monkeypatch.setattr(onednn, "cpu_vendor", lambda v=vendor: v)
        monkeypatch.setattr(onednn, "cpuinfo", lambda field, f=fields: f.get(field, ""))
        monkeypatch.setattr(onednn, "_min_macs", None)
        assert onednn._min_macs_training() == expected
    if not onednn.available():
        return
    # On the Zen 4: a training product of 2^24 multiply-adds goes to MKL, one of 2^29 to oneDNN.
    vendor, fields, _ = cpus["zen4"]
    monkeypatch.setattr(onednn, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(onednn, "cpuinfo", lambda field: fields.get(field, ""))
    monkeypatch.setattr(onednn, "_min_macs", None)
    products = _count_onednn_products(monkeypatch)
    layer = OneDNNLinear(256, 256, mode="full")
    layer(torch.randn(256, 256, requires_grad=True)).sum().backward()
    assert products == []
    layer(torch.randn(8192, 256, requires_grad=True)).sum().backward()
    assert len(products) == 3  # forward, dx, dW


def test_onednn_mode_follows_the_cpu_vendor_and_the_environment(monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: True)
    monkeypatch.delenv("TN_ONEDNN", raising=False)
    for vendor, mode in [("AuthenticAMD", "full"), ("GenuineIntel", "few-rows"), ("", "off"), ("CentaurHauls", "off")]:
        monkeypatch.setattr(onednn, "cpu_vendor", lambda v=vendor: v)
        monkeypatch.setattr(onednn, "_requested", None)
        assert onednn.onednn_mode() == mode
    reads = []
    monkeypatch.setattr(onednn, "cpu_vendor", lambda: reads.append(1) or "AuthenticAMD")
    monkeypatch.setattr(onednn, "_requested", None)
    assert onednn.onednn_mode() == onednn.onednn_mode() == "full" and len(reads) == 1  # read once, then kept
    monkeypatch.setenv("TN_ONEDNN", "full")
    assert onednn.onednn_mode() == "full"
    monkeypatch.setattr(onednn, "cpu_vendor", lambda: "CentaurHauls")
    for env, mode in [("few-rows", "few-rows"), (" OFF ", "off")]:
        monkeypatch.setenv("TN_ONEDNN", env)
        monkeypatch.setattr(onednn, "_requested", None)
        assert onednn.onednn_mode() == mode
    monkeypatch.setenv("TN_ONEDNN", "fast")
    monkeypatch.setattr(onednn, "_requested", None)
    with pytest.warns(UserWarning, match="TN_ONEDNN must be one of full, few-rows, off, got 'fast': ignored"):
        assert onednn.onednn_mode() == "off"  # the vendor's mode
    products = _count_onednn_products(monkeypatch)
    layer = OneDNNLinear(768, 1536)  # the mode of the environment: off
    assert layer.onednn_mode == "off"
    with torch.no_grad():
        layer.eval()(torch.randn(8, 768))
        use_onednn(nn.Sequential(nn.Linear(768, 1536)), "off").eval()(torch.randn(8, 768))
    assert products == []


def test_without_onednns_operators_everything_is_f_linear_and_one_warning_says_so(monkeypatch):
    # A PyTorch whose torch.ops.mkldnn lacks the operators (an older or a non-x86 build).
    monkeypatch.setattr(onednn, "_found_ops", onednn._UNKNOWN)
    monkeypatch.setattr(onednn, "_warned_unavailable", False)
    with monkeypatch.context() as m:
        m.setattr(torch, "ops", types.SimpleNamespace(mkldnn=types.SimpleNamespace()))
        assert not onednn.available()
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 8))
    x = torch.randn(8, 512)
    expected = model(x)
    with pytest.warns(
        UserWarning,
        match=r"oneDNN products were asked for \(use_onednn\(mode='full'\)\) but are not "
        r"available here .* F\.linear",
    ):
        assert use_onednn(model, "full") is model
    assert set(_linears(model)) == {nn.Linear}
    torch.testing.assert_close(model(x), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once is enough
        use_onednn(model, "few-rows")
        assert OneDNNLinear(4, 4, mode="full").onednn_mode == "off"
        monkeypatch.setenv("TN_ONEDNN", "full")
        monkeypatch.setattr(onednn, "_requested", None)
        assert onednn.onednn_mode() == "off"
    # Asked for by the environment, the first time: the same note, naming it.
    monkeypatch.setattr(onednn, "_warned_unavailable", False)
    monkeypatch.setattr(onednn, "_requested", None)
    with pytest.warns(UserWarning, match=r"asked for \(TN_ONEDNN=full\)"):
        assert onednn.onednn_mode() == "off"
        use_onednn(model)
    # Not asked for (the CPU vendor's choice only): silent.
    monkeypatch.delenv("TN_ONEDNN")
    monkeypatch.setattr(onednn, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(onednn, "_warned_unavailable", False)
    monkeypatch.setattr(onednn, "_requested", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert onednn.onednn_mode() == "off"
        use_onednn(model)
    assert set(_linears(model)) == {nn.Linear}


# --- import and layering ---------------------------------------------------------------------------------------------


def test_importing_the_backend_reads_no_file_and_no_environment_and_registers_no_hook():
    # In a fresh interpreter: spy on open() and os.environ, count the optimizer hooks, then import.
    script = textwrap.dedent("""
        import builtins, os
        import torch
        from torch.optim import optimizer

        opened, read = [], []
        real_open = builtins.open
        def spy_open(file, *args, **kwargs):
            opened.append(str(file))
            return real_open(file, *args, **kwargs)
        class SpyEnviron(dict):
            def get(self, key, default=None):
                read.append(key)
                return super().get(key, default)
            def __getitem__(self, key):
                read.append(key)
                return super().__getitem__(key)
            def __contains__(self, key):
                read.append(key)
                return super().__contains__(key)
        builtins.open, os.environ = spy_open, SpyEnviron(os.environ)
        hooks = len(optimizer._global_optimizer_post_hooks)

        import transformer_networks.backends.onednn as onednn

        assert not [f for f in opened if "cpuinfo" in f], opened
        assert "TN_ONEDNN" not in read, read
        assert len(optimizer._global_optimizer_post_hooks) == hooks
        assert onednn._found_ops is onednn._UNKNOWN and onednn._requested is None and onednn._step_hook is None
        # The first use does what the import did not.
        onednn.onednn_mode()
        assert "TN_ONEDNN" in read and onednn._requested is not None and onednn._found_ops is not onednn._UNKNOWN
        if os.path.exists("/proc/cpuinfo"):
            assert "/proc/cpuinfo" in opened
        if onednn.available():
            onednn.use_onednn(torch.nn.Linear(2, 2), "full")
            onednn.use_onednn(torch.nn.Linear(2, 2), "few-rows")
            assert len(optimizer._global_optimizer_post_hooks) == hooks + 1
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TN_ONEDNN"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_nn_and_models_import_nothing_from_backends():
    for path in [*(SRC / "nn").glob("*.py"), *(SRC / "models").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any("backends" in name for name in names), f"{path.name}:{node.lineno} imports {names}"
