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

from transformer_networks import TransformerConfig
from transformer_networks.models import Seq2SeqTransformer, TransformerClassifier, TransformerLM, TransformerQA

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


@pytest.mark.parametrize("name", CASES)
def test_a_padded_training_step_compiles_to_one_graph_with_the_eager_loss_and_gradients(name):
    cls, extra, loss_of = CASES[name]
    torch.manual_seed(0)
    model = cls(config(**extra)).train()
    eager = loss_of(model)
    eager.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    explained = torch._dynamo.explain(loss_of)(model)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1

    torch._dynamo.reset()
    compiled = torch.compile(loss_of, backend="aot_eager", fullgraph=True)(model)  # traced, run without inductor
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if n in eager_grads:
            torch.testing.assert_close(p.grad, eager_grads[n], rtol=1e-4, atol=1e-6, msg=n)
