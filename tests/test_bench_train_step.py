"""bench/train_step.py: the sides of each comparison do the same work, and the script runs end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import train_step  # noqa: E402  (bench/ is not a package)

pytest.importorskip("transformers")


def test_lm_sides_are_the_same_model_and_start_from_the_same_loss():
    shape = train_step.LMShape("tiny", 2, 2, 32, 16, 4, 65, steps=1, target="")
    sides = train_step.lm_sides(shape)
    counts = {s.name: sum(p.numel() for p in s.model.parameters()) for s in sides}
    # GPT-2 is our architecture exactly (pre-LN, learned positions, tied output): the same parameters, to the one.
    assert counts["transformers GPT-2"] == counts["ours"]
    ids = torch.randint(65, (4, 17), generator=torch.Generator().manual_seed(0))
    batch = (ids[:, :-1], ids[:, 1:])
    for side in sides:
        side.model.eval()
        with torch.no_grad():
            loss = float(side.loss(batch))
        # Every matrix from N(0, 0.02): logits near zero, so every side starts at the uniform loss ln(65).
        assert loss == pytest.approx(math.log(65), abs=0.05), side.name


def test_same_init_draws_every_matrix_at_the_same_scale():
    model = torch.nn.Sequential(torch.nn.Embedding(1000, 64), torch.nn.Linear(64, 64))
    bias = model[1].bias.detach().clone()
    train_step.same_init(model)
    assert model[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model[1].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(model[1].bias, bias)  # vectors are left as the library built them


def test_qa_sides_are_the_same_bert_and_start_from_the_same_loss():
    sides = train_step.qa_sides(V=100, C=32, H=2, L=2, FF=64)
    counts = {s.name: sum(p.numel() for p in s.model.parameters()) for s in sides}
    # BertForQuestionAnswering has no pooler: our QA model is the same architecture, parameter for parameter.
    assert counts["transformers BertForQuestionAnswering"] == counts["ours"]
    ids = torch.randint(3, 100, (4, 20), generator=torch.Generator().manual_seed(0))
    ids[0, 15:] = 0  # padding
    types = (torch.arange(20) >= 6).long().expand(4, 20) * (ids != 0)
    batch = (ids, types, torch.tensor([6, 7, 8, 9]), torch.tensor([6, 9, 8, 12]))
    losses = []
    for side in sides:
        side.model.eval()
        with torch.no_grad():
            losses.append(float(side.loss(batch)))
    # Near-zero logits: both start at the uniform loss over 20 positions (ours masks nothing more than BERT).
    assert losses[0] == pytest.approx(losses[1], abs=0.05) and losses[0] == pytest.approx(math.log(20), abs=0.1)


def test_script_runs_every_part(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "bench/train_step.py",
            "lm",
            "seq2seq",
            "classifier",
            "qa",
            "--shapes",
            "nanogpt",
            "--rounds",
            "1",
            "--rows",
            "4",
            "--qa-rows",
            "2",
            "--no-write",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    titles = ("Language-model", "Encoder-decoder", "Classifier", "Question-answering")
    for title in (f"{t} training step" for t in titles):
        assert title in out
    for side in (
        "| ours |",
        "| transformers GPT-2 |",
        "| nn.Transformer model |",
        "| transformers MarianMTModel |",
        "| transformers BertForSequenceClassification |",
        "| transformers BertForQuestionAnswering |",
    ):
        assert side in out
    assert out.count("best peer") == 4
