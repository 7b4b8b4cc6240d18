"""ONNX export: the exported graphs, run in onnxruntime, give the PyTorch model's outputs (within 1e-4).

Each model is exported once per module (export takes a few seconds) with example inputs of batch 2 and length 3;
the tests run the graphs at other batch sizes and lengths, so the dynamic axes are checked too.
"""

import numpy as np
import pytest
import torch

import transformer_networks as tn
import transformer_networks.cli
from transformer_networks.generation import left_pad, left_padded_positions

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from transformer_networks.interop import onnx as onnx_export  # noqa: E402
from transformer_networks.interop.onnx import decode_path, export_onnx  # noqa: E402

V = 50
PAD = 0
ATOL = 1e-4

LM_VARIANTS = {
    "pre-ln-sinusoidal": dict(norm_first=True, positional="sinusoidal"),
    "post-ln-learned": dict(norm_first=False, positional="learned", activation="gelu", tie_embeddings=False),
    "rope-gqa": dict(
        positional="rope", n_heads=4, n_kv_heads=1, norm_first=True, norm="rmsnorm", activation="swiglu", bias=False
    ),
}
CLASSIFIER_VARIANTS = {
    "post-ln-cls": dict(pooling="cls"),
    "rope-gqa-mean": dict(positional="rope", n_kv_heads=1, norm_first=True, pooling="mean"),
    "learned-max": dict(positional="learned", norm_first=True, activation="gelu", pooling="max"),
}


def config(**overrides) -> tn.TransformerConfig:
    values = dict(
        vocab_size=V, d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, max_seq_len=64, pad_id=PAD, n_classes=3
    )
    return tn.TransformerConfig(**{**values, **overrides})


def tokens(*shape) -> torch.Tensor:
    return torch.randint(1, V, shape)  # never the padding id


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread each for torch and onnxruntime; on a busy machine, sharing out such small ops
    between threads costs more than the ops."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def session(path) -> "ort.InferenceSession":
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxLM:
    """The two exported graphs of a language model, driven like the PyTorch model."""

    def __init__(self, paths, n_layers: int) -> None:
        self.prefill_session, self.decode_session = session(paths[0]), session(paths[1])
        self.kv_names = [f"{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        logits, *present = self.prefill_session.run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.long().numpy()}
        )
        return logits, present

    def decode(self, ids: torch.Tensor, mask: torch.Tensor, past: list[np.ndarray]):
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.long().numpy()}
        feed.update({f"past.{name}": t for name, t in zip(self.kv_names, past, strict=True)})
        logits, *present = self.decode_session.run(None, feed)
        return logits, present

    def greedy(self, ids: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask (B, T) -> the n new tokens (B, n) and the logits each was chosen from (B, n, V)."""
        logits, past = self.prefill(ids, mask)
        new, scores = [], []
        for _ in range(n):
            scores.append(torch.from_numpy(logits[:, -1]))
            token = scores[-1].argmax(-1)[:, None]  # (B, 1)
            new.append(token)
            mask = torch.cat([mask, torch.ones_like(token, dtype=mask.dtype)], dim=1)  # (B, P + 1)
            logits, past = self.decode(token, mask, past)
        return torch.cat(new, dim=1), torch.stack(scores, dim=1)


@pytest.fixture(scope="module", params=sorted(LM_VARIANTS))
def exported_lm(request, tmp_path_factory):
    torch.manual_seed(0)
    model = tn.TransformerLM(config(**LM_VARIANTS[request.param])).eval()
    out = tmp_path_factory.mktemp(request.param) / "lm.onnx"
    paths = export_onnx(model, out)
    assert paths == [out, out.with_name("lm.decode.onnx")] == [out, decode_path(out)]
    return model, OnnxLM(paths, model.cfg.n_layers)


# --- language model --------------------------------------------------------------------------------------------
def test_lm_graph_names_and_shapes(exported_lm):
    model, graphs = exported_lm
    cfg = model.cfg
    kv = [f"{i}.{kind}" for i in range(cfg.n_layers) for kind in ("key", "value")]
    prefill, decode = graphs.prefill_session, graphs.decode_session
    assert [i.name for i in prefill.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in prefill.get_outputs()] == ["logits"] + [f"present.{n}" for n in kv]
    assert [i.name for i in decode.get_inputs()] == ["input_ids", "attention_mask"] + [f"past.{n}" for n in kv]
    assert [o.name for o in decode.get_outputs()] == ["logits"] + [f"present.{n}" for n in kv]
    assert {i.type for i in prefill.get_inputs()} == {"tensor(int64)"}

    logits, present = graphs.prefill(tokens(1, 5), torch.ones(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, V)
    assert {t.shape for t in present} == {(1, cfg.kv_heads, 5, cfg.head_dim)}
    logits, present = graphs.decode(tokens(1, 1), torch.ones(1, 6, dtype=torch.long), present)
    assert logits.shape == (1, 1, V)
    assert {t.shape for t in present} == {(1, cfg.kv_heads, 6, cfg.head_dim)}


@torch.no_grad()
def test_lm_prefill_matches_model(exported_lm):
    model, graphs = exported_lm
    ids = tokens(3, 7)  # not the export example's (2, 3)
    logits, present = graphs.prefill(ids, torch.ones_like(ids))
    cache = model.init_cache()
    expected = model(ids, cache=cache)
    np.testing.assert_allclose(logits, model(ids).numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, expected.numpy(), atol=ATOL, rtol=0)
    cached = [t for layer in cache.layers for t in (layer.self_attn.k, layer.self_attn.v)]
    assert len(present) == len(cached) == 2 * model.cfg.n_layers
    for got, want in zip(present, cached, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)


@torch.no_grad()
def test_lm_decode_step_matches_full_forward(exported_lm):
    model, graphs = exported_lm
    ids, new = tokens(4, 6), tokens(4, 1)
    _, past = graphs.prefill(ids, torch.ones_like(ids))
    logits, present = graphs.decode(new, torch.ones(4, 7, dtype=torch.long), past)
    longer = torch.cat([ids, new], dim=1)  # (B, 7)
    np.testing.assert_allclose(logits, model(longer)[:, -1:].numpy(), atol=ATOL, rtol=0)
    _, full_present = graphs.prefill(longer, torch.ones_like(longer))
    for got, want in zip(present, full_present, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def assert_greedy_matches(model, graphs, ids: torch.Tensor, mask: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Greedy decoding with the ONNX graphs gives `generate`'s tokens, and at every step the logits the PyTorch
    model computes over the whole sequence so far (the tokens of a random model hardly depend on positions, so
    the logits are the sharper check). Returns the new tokens (B, n)."""
    P = ids.size(1)
    expected = model.generate(ids, attention_mask=mask.bool(), max_new_tokens=n, do_sample=False)  # (B, P + n)
    new, scores = graphs.greedy(ids, mask, n)
    assert torch.equal(new, expected[:, P:])
    full_mask = torch.cat([mask.bool(), torch.ones_like(new, dtype=torch.bool)], dim=1)  # (B, P + n)
    logits = model(expected, attention_mask=full_mask, positions=left_padded_positions(full_mask))
    np.testing.assert_allclose(scores.numpy(), logits[:, P - 1 : -1].numpy(), atol=ATOL, rtol=0)
    return new


@torch.no_grad()
def test_lm_greedy_matches_generate(exported_lm):
    model, graphs = exported_lm
    ids = tokens(2, 5)
    assert_greedy_matches(model, graphs, ids, torch.ones_like(ids))


@torch.no_grad()
def test_lm_greedy_left_padded_batch_matches_generate(exported_lm):
    model, graphs = exported_lm
    rows = [tokens(6).tolist(), tokens(1).tolist(), tokens(4).tolist()]  # a row alone: a 1-token prefill
    ids, mask = left_pad(rows, PAD)  # (3, 6), positions count from each row's first real token
    new = assert_greedy_matches(model, graphs, ids, mask)
    for row, want in zip(rows, new, strict=True):  # and each row alone gives the same
        alone = torch.tensor([row])
        assert torch.equal(assert_greedy_matches(model, graphs, alone, torch.ones_like(alone))[0], want)


@torch.no_grad()
def test_lm_right_padded_prefill_then_decode(exported_lm):
    model, graphs = exported_lm
    rows, new = [tokens(5), tokens(3)], tokens(2, 1)
    ids = torch.full((2, 5), PAD)
    mask = torch.zeros(2, 5, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    logits, past = graphs.prefill(ids, mask)
    step, _ = graphs.decode(new, torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1), past)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(logits[i, : len(row)], model(row[None])[0].numpy(), atol=ATOL, rtol=0)
        longer = torch.cat([row, new[i]])[None]  # (1, len + 1)
        np.testing.assert_allclose(step[i], model(longer)[0, -1:].numpy(), atol=ATOL, rtol=0)


# --- classifier ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(CLASSIFIER_VARIANTS))
@torch.no_grad()
def test_classifier_matches_model_with_padding(variant, tmp_path):
    model = tn.TransformerClassifier(config(**CLASSIFIER_VARIANTS[variant])).eval()
    assert export_onnx(model, tmp_path / "clf.onnx") == [tmp_path / "clf.onnx"]
    graph = session(tmp_path / "clf.onnx")
    assert [i.name for i in graph.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.get_outputs()] == ["logits"]

    ids = tokens(4, 9)  # not the export example's (2, 3)
    mask = torch.ones(4, 9, dtype=torch.long)
    for i, n in enumerate((9, 4, 1, 6)):  # right padding of different amounts
        ids[i, n:], mask[i, n:] = PAD, 0
    (logits,) = graph.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert logits.shape == (4, model.cfg.n_classes)
    np.testing.assert_allclose(logits, model(ids, attention_mask=mask.bool()).numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits[1], model(ids[1:2, :4])[0].numpy(), atol=ATOL, rtol=0)


def test_large_models_get_their_weights_beside_the_graph(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "MAX_INLINE_BYTES", 0)
    model = tn.TransformerClassifier(config()).eval()
    out = tmp_path / "clf.onnx"
    assert export_onnx(model, out) == [out, tmp_path / "clf.onnx.data"]
    ids = tokens(2, 5)
    (logits,) = session(out).run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones((2, 5), np.int64)})
    np.testing.assert_allclose(logits, model(ids).detach().numpy(), atol=ATOL, rtol=0)


# --- what cannot be exported -----------------------------------------------------------------------------------
def test_seq2seq_is_refused(tmp_path):
    model = tn.Seq2SeqTransformer(config())
    with pytest.raises(tn.UserError, match="TransformerClassifier and TransformerLM"):
        export_onnx(model, tmp_path / "mt.onnx")
    assert not (tmp_path / "mt.onnx").exists()


def test_missing_onnx_packages_are_named(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find_spec(name, *a)
    )
    with pytest.raises(tn.UserError, match=r"onnxscript.*pip install 'transformer-networks\[onnx\]'"):
        export_onnx(tn.TransformerLM(config()), tmp_path / "lm.onnx")


def test_export_command_writes_both_lm_graphs(tmp_path, capsys):
    model = tn.TransformerLM(config()).eval()
    tn.save_pretrained(model, tmp_path / "lm")
    out = tmp_path / "lm.onnx"
    assert tn.cli.main(["export", str(tmp_path / "lm"), "--onnx", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(decode_path(out))]
    ids = tokens(2, 5)
    logits = session(out).run(["logits"], {"input_ids": ids.numpy(), "attention_mask": np.ones((2, 5), np.int64)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(ids).numpy(), atol=ATOL, rtol=0)
    assert tn.cli.main(["export", str(tmp_path / "lm"), "--onnx", str(out)]) == 2  # exists: not overwritten
