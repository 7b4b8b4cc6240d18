"""bench/attention_memory.py: the growth arithmetic, and a small run through its worker processes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "attention_memory.py"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark script as a module (it imports `harness` from its own folder, as a script would)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("attention_memory")


def test_growth_per_doubling_linear_and_quadratic(bench):
    assert bench.growth_per_doubling([(1024, 100), (2048, 200), (4096, 400)]) == pytest.approx([2.0, 2.0])
    # 2048 -> 8192 is two doublings: x16 in all is x4 per doubling.
    assert bench.growth_per_doubling([(1024, 1), (2048, 4), (8192, 64)]) == pytest.approx([4.0, 4.0])
    # Unsorted input is sorted by length first; a factor below 1 (memory shrinking) is reported as it is.
    assert bench.growth_per_doubling([(4096, 300), (2048, 600)]) == pytest.approx([0.5])
    assert bench.growth_per_doubling([(1024, 0), (2048, 10)]) == [None]
    assert bench.growth_per_doubling([(1024, 10)]) == []


def test_growth_label(bench):
    assert bench.growth_label(2.05) == "linear"
    assert bench.growth_label(3.9) == "quadratic"
    assert bench.growth_label(2.8) == "between linear and quadratic"


def test_small_run_through_workers():
    # Two short lengths, each (length, kind) in its own worker process; BENCHMARKS.md is left alone.
    done = subprocess.run(
        [sys.executable, str(SCRIPT.relative_to(ROOT)), "--lengths", "256", "512", "--threads", "1", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| length | ours peak MiB | naive peak MiB | naive/ours |" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 256 |", "| 512 |"))]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        # Memory at these lengths is too noisy to compare, but every case must have produced a figure.
        assert float(cells[1]) > 0 and float(cells[2]) > 0, row
    assert "ours: x" in done.stdout and "naive: x" in done.stdout


def test_worker_prints_one_json_line():
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--worker",
            "--worker-length",
            "64",
            "--worker-kind",
            "naive",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["length"] == 64 and result["kind"] == "naive"
    assert result["peak_bytes"] >= 0 and result["seconds"] > 0
