"""bench/chat.py: the kept-cache side feeds only each turn's new tokens, and the script runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import chat  # noqa: E402  (bench/ is not a package)

from transformer_networks.config import TransformerConfig  # noqa: E402
from transformer_networks.models import TransformerLM  # noqa: E402


def test_the_kept_side_feeds_only_new_tokens_and_both_sides_do_the_same_turns():
    model = TransformerLM(TransformerConfig.from_preset("tiny", vocab_size=50, max_seq_len=128)).eval()
    fed = []
    forward = model.forward
    model.forward = lambda ids, **kw: (fed.append(ids.size(1)), forward(ids, **kw))[1]
    times = chat.conversation_times(model, turns=3, user=5, reply=4, seed=0)
    assert len(times["kept"]) == len(times["re-encoded"]) == 3
    kept, again = fed[: len(fed) // 2], fed[len(fed) // 2 :]
    # Each turn: one prefill, then 3 single-token steps (the reply's 4th token is not fed).
    kept_prefills, again_prefills = kept[::4], again[::4]
    assert kept_prefills == [5 + 3, 1 + 5 + 3, 1 + 5 + 3]  # the last reply token, the message, the markers
    assert again_prefills == [8, 8 + 4 + 8, 8 + 2 * (4 + 8)]  # the whole history every turn
    assert all(n == 1 for i, n in enumerate(kept) if i % 4)


def test_script_runs(tmp_path):
    argv = ["--turns", "3", "--rounds", "1", "--user", "4", "--reply", "3", "--no-write"]
    result = subprocess.run(
        [sys.executable, "bench/chat.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 3 |" in result.stdout and "turn 3 / turn 1 time to first token" in result.stdout
    assert torch.__version__ in result.stdout  # the machine line
