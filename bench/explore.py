"""The attention explorer at scale: a 12-layer, 12-head language model on 512 tokens (issue 25's size).

    python bench/explore.py                              # train the model (about 4 minutes), measure, write
    python bench/explore.py --layers 2 --heads 2 --tokens 64 --steps 5 --no-write          # a quick look

A character language model (d_model --width, --layers x --heads, context --tokens) is trained for --steps steps on
tinyshakespeare (../shared/data, or $TN_DATA), so that its heads have some structure; then `explore --out` writes
the page for the first --tokens characters of the text's second half (an LM's page over --tokens - 16 characters
of text and its 16-token greedy continuation), once with the default budget (--max-weights 2,000,000: the smallest
threshold of 0.001, 0.002, 0.005, ... that keeps it) and once with every weight of at least 0.001 kept. For each:
the time to build and write the page (model pass included), its size, and in headless Chromium (Debian's) the time
from navigation to the first view drawn (the page's own `performance.now()` when it has drawn, median of --loads
loads), then the time each view takes to draw after its button is clicked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import footer, write_block  # bench/harness.py: this script's folder is on sys.path

from transformer_networks import cli
from transformer_networks.checkpoints import load_checkpoint
from transformer_networks.explorer import write_explorer

SCRIPT = "bench/explore.py"
DATA = Path(os.environ.get("TN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def train(out: Path, args: argparse.Namespace) -> None:
    text = DATA / "tinyshakespeare" / "input.txt"
    if not text.exists():
        sys.exit(f"{text} is missing: set TN_DATA to the folder of shared data")
    model = [
        "--preset", "tiny", "--set", f"n_layers={args.layers}", "--set", f"n_heads={args.heads}",
        "--set", f"d_model={args.width}", "--set", f"d_ff={4 * args.width}", "--set", "positional=rope",
    ]  # fmt: skip
    argv = ["train", "lm", "--data", str(text), "--tokenizer", "char", "--block-size", str(args.tokens)]
    argv += ["--batch-size", "4", "--max-steps", str(args.steps), "--eval-every", str(args.steps), "--lr", "3e-3"]
    argv += ["--device", "cpu", "--quiet", "--out", str(out), "--overwrite", *model]
    if cli.main(argv) != 0:
        sys.exit("training the model failed")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1200"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def in_browser(d, page: Path, loads: int) -> dict[str, float]:
    """Milliseconds: navigation to the first view drawn (median over `loads`), then each view's redraw."""
    from selenium.webdriver.common.by import By

    first = []
    for _ in range(loads):
        d.get(page.as_uri())
        end = time.monotonic() + 120
        while not (stamp := d.execute_script("return document.body.dataset.rendered")):
            if time.monotonic() > end:
                raise RuntimeError(f"{page} did not draw in 120 s")
            time.sleep(0.02)
        first.append(float(stamp))
    result = {"first view": statistics.median(first)}
    for view in ("model", "heatmap", "table", "head"):
        button = d.find_element(By.CSS_SELECTOR, f'[data-view="{view}"]')
        start = d.execute_script("return performance.now()")
        button.click()
        result[view] = float(d.execute_script("return document.body.dataset.rendered")) - start
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--loads", type=int, default=3)
    p.add_argument("--work", default=None, help="where the model and pages go (default: a temporary folder)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-explore-"))
    start = time.perf_counter()
    train(work / "lm", args)
    train_s = time.perf_counter() - start
    ck = load_checkpoint(work / "lm")
    corpus = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    text = corpus[len(corpus) // 2 :][: args.tokens - 16]
    rows = []
    d = browser() if shutil.which("chromedriver") else None
    try:
        for label, options in (
            ("default (--max-weights 2,000,000)", {}),
            ("every weight >= 0.001 (--min-weight 0.001)", {"min_weight": 0.001}),
        ):
            page = work / f"page-{len(rows)}.html"
            start = time.perf_counter()
            write_explorer(ck, text, page, overwrite=True, **options)
            build_s = time.perf_counter() - start
            threshold = page.read_text(encoding="utf-8").split('"min_weight":', 1)[1].split(",", 1)[0]
            times = in_browser(d, page, args.loads) if d else {}
            rows.append((label, threshold, page.stat().st_size / 1e6, build_s, times))
    finally:
        if d:
            d.quit()
    views = ("first view", "model", "heatmap", "table", "head")
    lines = [
        "### The attention explorer at scale (`bench/explore.py`)",
        "",
        f"A character LM, {args.layers} layers x {args.heads} heads, d_model {args.width}, trained {args.steps} steps "
        f"({train_s:.0f} s) on tinyshakespeare; the page for {args.tokens - 16} characters of text and its 16-token "
        f"greedy continuation: {args.tokens} tokens, {args.layers * args.heads} heads of {args.tokens}x{args.tokens}.",
        "",
        "| weights kept | threshold | file size | build and write | first view drawn | model view | heatmap "
        "| heads table | head view |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, threshold, size, build_s, times in rows:
        shown = " | ".join(f"{times[v] / 1000:.2f} s" if v in times else "no browser" for v in views)
        lines.append(f"| {label} | {threshold} | {size:.1f} MB | {build_s:.1f} s | {shown} |")
    lines += [
        "",
        "- first view drawn: navigation start to the end of the page's first drawing (the head view of layer 0, head 0)"
        f", median of {args.loads} loads of the file from disk; the views: click to the end of the redraw (the model "
        "view draws its thumbnails as they scroll into sight: those in sight come in the next frames)",
        "- Browser: Debian's Chromium, headless, on the same machine",
        *footer(SCRIPT),
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("explore", block, script="explore")


if __name__ == "__main__":
    main()
