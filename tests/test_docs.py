"""docs/guide.md runs as its reader would run it.

Its ```python blocks run in order in one namespace and its ```bash blocks run with the installed command line, all
in a temporary directory; blocks marked `illustrative` are only compiled (Python) or parsed (bash). A claim the guide
checks with an assert that stops being true fails here. Also: the pictures it shows exist, are small PNGs, and say
how to regenerate them; the README links the guide.
"""

import fnmatch
import re
from pathlib import Path

import torch

from markdown_blocks import code_blocks, run_blocks

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
README = ROOT / "README.md"
FIGURES = {"images/positional-encoding.png", "images/attention-map.png", "images/learning-curve.png"} | {
    f"images/explorer-{view}.png" for view in ("head", "model", "heatmap", "table")
}


def test_guide_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write runs/ write them here
    # One CPU thread, here and in the commands the shell blocks start: the models are tiny, and on a machine that
    # other jobs keep busy, PyTorch's spinning worker threads make a multi-threaded run many times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ran = run_blocks(GUIDE, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert sum(b.is_python for b in ran) >= 30
    assert sum(b.is_shell for b in ran) >= 4


def test_guide_blocks_name_their_language():
    blocks = code_blocks(GUIDE.read_text(encoding="utf-8"))
    unnamed = [b.line for b in blocks if not b.language]
    assert not unnamed, f"code blocks without a language (say python, bash or text) at lines {unnamed}"


def test_guide_figures_exist_and_say_how_to_regenerate():
    text = GUIDE.read_text(encoding="utf-8")
    shown = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text))
    assert shown == FIGURES
    for name in shown:
        png = GUIDE.parent / name
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert 10_000 < len(data) < 300_000, f"{name}: {len(data)} bytes"
    # docs/figures.py draws each of them (its docstring names the file, or a pattern such as explorer-*.png), and
    # the guide says so.
    made = re.findall(r"[\w*-]+\.png", (ROOT / "docs" / "figures.py").read_text(encoding="utf-8").split('"""')[1])
    for name in shown:
        assert any(fnmatch.fnmatch(Path(name).name, pattern) for pattern in made), f"{name}: not in docs/figures.py"
    assert text.count("docs/figures.py") >= 3


def test_guide_relative_links_resolve():
    text = GUIDE.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
        if "://" not in target:
            assert (GUIDE.parent / target).exists(), f"broken link: {target}"
    anchors = set(re.findall(r"\]\(#([^)]+)\)", text))
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }
    assert anchors <= headings, f"links to missing sections: {anchors - headings}"


def test_readme_links_the_guide():
    head = README.read_text(encoding="utf-8").split("## ")[0]  # before the first section
    assert "(docs/guide.md)" in head
