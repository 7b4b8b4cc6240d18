"""bench/profile_step.py end to end on the CPU at a tiny size: the table of one step and its operators."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_the_script_profiles_the_scan_demo_models_step():
    out = subprocess.run(
        [sys.executable, "bench/profile_step.py", "--device", "cpu", "--warm", "1", "--steps", "2", "--top", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| wall ms per step")))
    cells = [c.strip() for c in lines[header + 2].strip("|").split("|")]
    assert float(cells[0]) > 0 and cells[1:4] == ["n/a"] * 3
    optimizer = float(cells[4].split(" / ")[2])
    # The encoder-decoder's loss picks its labelled positions with nonzero at every eager step; CPU fused AdamW
    # reads one step count per parameter.
    assert float(cells[5]) >= 1.0 and optimizer > 0
    operators = [line for line in lines if line.startswith("| `aten::")]
    assert len(operators) == 3


def test_cuda_asked_for_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = subprocess.run(
        [sys.executable, "bench/profile_step.py", "--device", "cuda"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2 and "CUDA is not available" in out.stderr and "Traceback" not in out.stderr
