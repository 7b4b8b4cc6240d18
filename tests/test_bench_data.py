"""bench/data.py: the corpus it generates, the peak memory it reads back, and the script end to end (tiny sizes,
nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import data  # noqa: E402  (bench/ is not a package)


def test_the_corpus_is_whole_lines_of_the_standard_library_up_to_the_size(tmp_path):
    path = data.make_corpus(tmp_path / "c.txt", 300_000)
    text = path.read_text(encoding="utf-8")
    assert 300_000 - 100 <= len(text.encode("utf-8")) <= 300_000 and text.endswith("\n")
    assert "def " in text and "import " in text
    assert data.make_corpus(path, 300_000).stat().st_mtime_ns == path.stat().st_mtime_ns  # kept, not rewritten


def test_measured_reports_the_peak_memory_of_its_own_process():
    grow = "b = bytearray(300 * 10**6); b[::4096] = b'x' * len(b[::4096]); print('step 1/1')"
    small, big = data.measured([sys.executable, "-c", "print('step 1/1')"]), data.measured([sys.executable, "-c", grow])
    assert big.peak_bytes - small.peak_bytes > 250 * 10**6  # the 300 MB it touched
    assert small.peak_bytes < 100 * 10**6  # a bare interpreter, not this test process's memory (torch and all)
    assert big.first_step is not None and big.first_step <= big.seconds


def test_the_script_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/data.py", "--small", "0.3", "--large", "0.6", "--char", "0.3", "--vocab-size", "500"]
        + ["--rounds", "1", "--work", str(tmp_path), "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the throughput of the single-threaded loop" in out.stdout
    assert out.stdout.count("| prepared directory |") == 2 and "text file, `--tokenizer char`" in out.stdout
