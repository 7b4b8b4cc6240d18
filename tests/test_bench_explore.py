"""bench/explore.py end to end at a tiny size (nothing written): the table has both budgets, and with a browser,
the time of every view."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from data_paths import shared_file

ROOT = Path(__file__).resolve().parent.parent


def test_the_script_runs_end_to_end(tmp_path):
    data = shared_file("tinyshakespeare/input.txt").parents[1]
    argv = ["--layers", "2", "--heads", "2", "--width", "32", "--tokens", "48", "--steps", "2", "--loads", "1"]
    out = subprocess.run(
        [sys.executable, "bench/explore.py", *argv, "--work", str(tmp_path), "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TN_DATA": str(data)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| default", "| every weight"))]
    assert len(rows) == 2 and "48 tokens, 4 heads of 48x48" in out.stdout
    if shutil.which("chromedriver"):
        assert all(row.count(" s |") == 5 + 1 for row in rows), rows  # build time and five browser times
    assert (tmp_path / "page-0.html").stat().st_size > 0
