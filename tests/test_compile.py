"""Training under torch.compile traces into one graph for every model family, on padded batches.

A graph break splits the compiled step and, on a GPU, makes the host wait for the device where it reads a value
(the padding skip's count of real tokens, the labelled positions of an encoder-decoder's loss). Inside a compiled
graph the models therefore run every position; the losses and gradients are those of the eager step, which
skips the padding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_training import quick, tiny_model, train_losses, write_reversal_tsv
from transformer_networks import TransformerConfig
from transformer_networks.errors import ConfigError, UserError
from transformer_networks.models import (
    Seq2SeqTransformer,
    TransformerClassifier,
    TransformerLM,
    TransformerQA,
    body,
    seq2seq,
)
from transformer_networks.nn import masks
from transformer_networks.training.checkpoint import load_checkpoint
from transformer_networks.training.tasks import DataSpec
from transformer_networks.training.trainer import train

PAD = 0


def config(**extra):
    return TransformerConfig.from_preset(
        "small", d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, vocab_size=40, pad_id=PAD, **extra
    )


def padded(rows, length, vocab=40, seed=0):
    """(rows, length) ids with rows of different lengths, right-padded with PAD."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (rows, length), generator=g)
    for i in range(rows):
        ids[i, length - 2 * i :] = PAD if i else ids[i, length - 2 * i :]
    return ids


SRC, TGT, IDS = padded(4, 9, seed=1), padded(4, 7, seed=2), padded(4, 8, seed=3)
STARTS, ENDS = torch.tensor([1, 2, 0, 1]), torch.tensor([2, 3, 0, 1])


LABELS = TGT.roll(-1, 1).masked_fill(TGT == PAD, PAD)  # the next token; none at padding, as tasks make them


def seq2seq_loss(model):
    return model(SRC, TGT, labels=LABELS, label_smoothing=0.1).loss


def lm_loss(model):
    logits = model(IDS, attention_mask=IDS != PAD)
    return F.cross_entropy(logits[:, :-1].reshape(-1, 40), IDS[:, 1:].reshape(-1), ignore_index=PAD)


def classifier_loss(model):
    return F.cross_entropy(model(IDS), STARTS)


def qa_loss(model):
    out, padding = model(IDS), IDS == PAD  # the task masks the padding's logits: no answer starts there
    return F.cross_entropy(out.start.masked_fill(padding, -1e4), STARTS) + F.cross_entropy(
        out.end.masked_fill(padding, -1e4), ENDS
    )


CASES = {
    "seq2seq": (Seq2SeqTransformer, {}, seq2seq_loss),
    "lm": (TransformerLM, {}, lm_loss),
    "classifier": (TransformerClassifier, {"n_classes": 3}, classifier_loss),
    "qa": (TransformerQA, {}, qa_loss),
}


def eager_step(name):
    """(the model, its loss function, the loss of an eager step on a CPU, every gradient of it); the model's
    gradients are cleared again."""
    cls, extra, loss_of = CASES[name]
    torch.manual_seed(0)
    model = cls(config(**extra)).train()
    loss = loss_of(model)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return model, loss_of, loss, grads


def assert_same_step(model, loss, expected_loss, expected_grads):
    """`loss` (after its backward) is the eager step's, and so is every gradient."""
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if n in expected_grads:
            torch.testing.assert_close(p.grad, expected_grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", CASES)
def test_a_padded_training_step_compiles_to_one_graph_with_the_eager_loss_and_gradients(name):
    model, loss_of, eager, eager_grads = eager_step(name)
    explained = torch._dynamo.explain(loss_of)(model)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1

    torch._dynamo.reset()
    compiled = torch.compile(loss_of, backend="aot_eager", fullgraph=True)(model)  # traced, run without inductor
    compiled.backward()
    assert_same_step(model, compiled, eager, eager_grads)


@pytest.mark.parametrize("name", CASES)
def test_on_a_gpu_at_small_shapes_an_eager_step_reads_nothing_back_and_gives_the_same_loss_and_gradients(
    name, monkeypatch
):
    # A GPU is imitated where the decision is made (`reads_real_positions` with the real threshold), so that the
    # eager path that computes the padding instead of finding it runs here; it must call nonzero nowhere.
    model, loss_of, skipping, grads = eager_step(name)
    real_rule, asked = masks.reads_real_positions, []

    def as_on_a_gpu(device, macs):
        asked.append(macs())
        return real_rule(torch.device("cuda"), lambda: asked[-1])

    nonzero_calls = []
    real_nonzero = torch.Tensor.nonzero
    monkeypatch.setattr(
        torch.Tensor, "nonzero", lambda self, *a, **k: nonzero_calls.append(1) or real_nonzero(self, *a, **k)
    )
    monkeypatch.setattr(body, "reads_real_positions", as_on_a_gpu)
    monkeypatch.setattr(seq2seq, "reads_real_positions", as_on_a_gpu)
    loss = loss_of(model)
    loss.backward()
    assert asked and max(asked) < masks.DEVICE_READ_MIN_MACS and nonzero_calls == []
    assert_same_step(model, loss, skipping, grads)
    # The work the rule weighs: the stack's weights times the batch's positions (an encoder's: 4 x 9 tokens).
    if name in ("classifier", "qa"):
        stack = model.encoder.stack
        assert asked == [IDS.numel() * sum(p.numel() for p in stack.parameters())]


def test_the_padding_is_found_on_a_cpu_always_and_on_a_gpu_where_the_work_outweighs_the_wait():
    never = lambda: pytest.fail("a CPU needs no estimate")  # noqa: E731
    assert masks.reads_real_positions(torch.device("cpu"), never)
    gpu = torch.device("cuda")
    assert not masks.reads_real_positions(gpu, lambda: masks.DEVICE_READ_MIN_MACS - 1)
    assert masks.reads_real_positions(gpu, lambda: masks.DEVICE_READ_MIN_MACS)


def test_training_with_compile_logs_the_eager_losses_and_saves_plain_weights(tmp_path, monkeypatch):
    # The trainer's compiled model, traced whole (fullgraph: a graph break fails) by AOTAutograd without inductor's
    # code generation, which would take minutes here; the padded batches of a translation task change shape from
    # batch to batch.
    data = tmp_path / "train.tsv"
    write_reversal_tsv(data, 200, seed=1)
    spec = DataSpec(data=[str(data)])
    settings = {"tokenizer": "word", "max_tokens": 256, "max_steps": 20, "eval_every": 20, "log_every": 1}
    eager_run = {"data": spec, "model_config": tiny_model(), "train_config": quick(**settings), "quiet": True}
    train("translation", tmp_path / "eager", **eager_run)
    compiled = []
    real_compile = torch.compile

    def compile_whole(model, **options):
        compiled.append(model)
        return real_compile(model, backend="aot_eager", fullgraph=True, **options)

    monkeypatch.setattr(torch, "compile", compile_whole)
    train("translation", tmp_path / "compiled", **{**eager_run, "train_config": quick(**settings, compile=True)})
    assert len(compiled) == 1
    eager, eager_valid = train_losses(tmp_path / "eager")
    losses, valid = train_losses(tmp_path / "compiled")
    assert losses == pytest.approx(eager, rel=1e-4)
    assert valid[-1]["loss"] == pytest.approx(eager_valid[-1]["loss"], rel=1e-4)
    # Saved from the model itself: no "_orig_mod." prefix of the compiled wrapper, and it loads.
    ours = load_checkpoint(tmp_path / "compiled").model.state_dict()
    assert ours.keys() == load_checkpoint(tmp_path / "eager").model.state_dict().keys()


def test_a_compile_mode_reaches_torch_compile_and_implies_compile(tmp_path, monkeypatch):
    data = tmp_path / "train.tsv"
    write_reversal_tsv(data, 50, seed=1)
    seen = []
    real_compile = torch.compile

    def record(model, **options):  # traced by AOTAutograd (as above): inductor's modes would take minutes here
        seen.append(options)
        return real_compile(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", record)
    settings = {"tokenizer": "word", "max_tokens": 256, "max_steps": 2, "eval_every": 2}
    config = quick(**settings, compile_mode="reduce-overhead")  # compile itself left False
    train(
        "translation",
        tmp_path / "run",
        data=DataSpec(data=[str(data)]),
        model_config=tiny_model(),
        train_config=config,
        quiet=True,
    )
    assert seen == [{"mode": "reduce-overhead"}]
    with pytest.raises(ConfigError, match="compile_mode must be one of 'default', 'reduce-overhead'"):
        quick(compile_mode="fastest").check_values()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_trainer_takes_cuda_graphs_with_one_micro_batch_and_refuses_accumulation(tmp_path):
    data = tmp_path / "train.tsv"
    write_reversal_tsv(data, 200, seed=1)
    settings = {"tokenizer": "word", "max_tokens": 256, "max_steps": 20, "eval_every": 20, "log_every": 1}
    settings.update(device="cuda", precision="fp32")
    run = {"data": DataSpec(data=[str(data)]), "model_config": tiny_model(), "quiet": True}
    train("translation", tmp_path / "eager", **run, train_config=quick(**settings))
    config = quick(**settings, compile_mode="reduce-overhead")
    train("translation", tmp_path / "graphs", **run, train_config=config)
    eager, _ = train_losses(tmp_path / "eager")
    graphs, _ = train_losses(tmp_path / "graphs")
    assert graphs == pytest.approx(eager, rel=1e-3)  # float32: inductor's kernels round a little differently
    with pytest.raises(UserError, match="grad_accum 1 in one process"):
        train(
            "translation",
            tmp_path / "accum",
            **run,
            train_config=quick(**settings, grad_accum=2, compile_mode="reduce-overhead"),
        )
