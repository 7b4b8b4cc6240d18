"""bench/loop.py end to end at a tiny size (nothing written): a row per model with both sides' times."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_script_runs_end_to_end():
    out = subprocess.run(
        [sys.executable, "bench/loop.py", "--warm", "3", "--steps", "3", "--rounds", "1", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "| cpu |" in line]
    assert len(rows) == 2 and all(row.count("x |") == 1 for row in rows), rows
