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


def test_script_runs_every_part(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "bench/train_step.py",
            "lm",
            "seq2seq",
            "classifier",
            "--shapes",
            "nanogpt",
            "--rounds",
            "1",
            "--rows",
            "4",
            "--no-write",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for title in ("Language-model training step", "Encoder-decoder training step", "Classifier training step"):
        assert title in out
    for side in (
        "| ours |",
        "| transformers GPT-2 |",
        "| nn.Transformer model |",
        "| transformers MarianMTModel |",
        "| transformers BertForSequenceClassification |",
    ):
        assert side in out
    assert out.count("best peer") == 3
