"""The README's Python examples run, in order, in one namespace, as a reader would paste them."""

from pathlib import Path

from markdown_blocks import python_blocks, run_blocks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write runs/ write them here
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 4
    run_blocks(README, tmp_path)
