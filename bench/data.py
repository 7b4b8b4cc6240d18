"""Data at scale: `prepare lm` against a single-threaded tokenizing loop, and what training holds in memory.

    python bench/data.py                          # corpora of 100 MB and 1 GB (BPE), 200 MB (char)
    python bench/data.py --small 10 --large 40 --char 20 --no-write     # a quick look

The corpora are the standard library's Python sources, concatenated (sorted by path) and repeated until the size
is reached, written once to --work (one text file each; kept between runs). Every measured command runs in a
process of its own, started by a small launcher process, and its peak resident memory is that process's ru_maxrss
(`os.wait4`): what a user's machine must have.

- prepare: `transformer-networks prepare lm` on the large corpus (a BPE tokenizer of --vocab-size trained on its
  first 16 MB, then the whole corpus tokenized in parallel chunks into uint16 shards): wall time and peak memory.
- tokenization throughput, on the small corpus with the tokenizer that run trained, each side writing uint16 ids to
  disk, alternating over --rounds rounds: ours, `prepare lm --tokenizer-file` (chunks of lines, `encode_batch_fast`
  over all cores, streamed), against the plain recipe, a single-threaded loop reading chunks of whole lines of the same
  size and calling `Tokenizer.encode` on each, appending its ids to the file. Same text, same tokenizer.
- train lm on prepared data: `train lm --data DIR --max-steps 1` on the small and the large prepared directory
  (a 2-layer, 128-wide model, block 256, batch 16): peak memory (should not depend on the corpus size), the time
  from start to the progress line of the first step, and the whole run (with its evaluation), start to exit.
- the char path: `train lm --data FILE --tokenizer char --max-steps 1` straight from a text file of --char MB (no
  prepare; validation: the last 0.5%): peak memory and wall time.
- translation and classification from files: `train translation` on 20 copies of Multi30k's training pairs and
  `train classification` on 20 copies of SST-2's training set (../shared/data, or $TN_DATA; skipped when absent),
  one step of small batches: peak memory and the time to the first step.

Targets (issue 27): prepare of 1 GB with BPE at peak memory <= 1.5 GB; its tokenization >= 1.8x the single-threaded
recipe's throughput; train lm memory within 10% between 100 MB and 1 GB, its first step within 10 s of start; the
char path on 200 MB under 2 GB. Writes its block of BENCHMARKS.md (--no-write: print only).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from harness import footer, write_block  # bench/harness.py: this script's folder is on sys.path

from transformer_networks.data.prepared import CHUNK_CHARS

SCRIPT = "bench/data.py"
CLI = [sys.executable, "-m", "transformer_networks"]
MB = 1_000_000
MODEL = ["--set", "n_layers=2", "--set", "d_model=128", "--set", "n_heads=4", "--set", "d_ff=512"]

# The plain recipe: the text read line by line, each chunk of whole lines (as many characters as ours) encoded by
# one single-threaded `Tokenizer.encode` call after another, its ids appended to the file as uint16.
PLAIN_LOOP = """
import sys
import numpy as np
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2])
size = int(sys.argv[4])
def write(lines, out):
    out.write(np.array(tok.encode("".join(lines), add_special_tokens=False).ids, dtype=np.uint16).tobytes())
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[3], "wb") as out:
    lines, n = [], 0
    for line in f:
        lines.append(line)
        n += len(line)
        if n >= size:
            write(lines, out)
            lines, n = [], 0
    if lines:
        write(lines, out)
"""


@dataclass
class Run:
    seconds: float
    peak_bytes: int
    output: str
    first_step: float | None = None  # seconds from start to the first line of progress "step 1/..."


# Runs a command and prints its peak resident memory last. Linux hands a forked child its parent's peak, so the
# command is started from this small process, never from the benchmark (whose peak includes torch).
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(f"__peak_kb__ {usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(cmd: list[str]) -> Run:
    """Run `cmd` in its own process: wall seconds, peak resident bytes, its stderr + stdout, and when it printed
    its first step. Fails loudly."""
    start = time.perf_counter()
    launcher = [sys.executable, "-S", "-c", LAUNCHER, *cmd]
    proc = subprocess.Popen(launcher, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output, first_step, peak = [], None, 0
    for line in proc.stdout:
        if first_step is None and line.startswith("step 1/"):
            first_step = time.perf_counter() - start
        if line.startswith("__peak_kb__ "):
            peak = int(line.split()[1]) * 1024
            continue
        output.append(line)
    proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(output)[-3000:]}")
    return Run(seconds, peak, "".join(output), first_step)


def make_corpus(path: Path, size: int) -> Path:
    """The standard library's .py sources, concatenated and repeated up to `size` bytes (whole files; the last one
    cut at a line), written once."""
    if path.exists() and path.stat().st_size >= size * 0.99:
        return path
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    texts = []
    for f in sources:
        try:
            texts.append(f.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "w", encoding="utf-8") as out:
        while written < size:
            for text in texts:
                if written + len(text.encode("utf-8")) > size:
                    text = text.encode("utf-8")[: size - written].decode("utf-8", "ignore")
                    text = text[: text.rfind("\n") + 1]
                out.write(text)
                written += len(text.encode("utf-8"))
                if written >= size - 100:
                    break
            else:
                continue
            break
    tmp.replace(path)
    return path


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def prepare(corpus: Path, out: Path, *extra: str) -> Run:
    return measured([*CLI, "prepare", "lm", "--data", str(corpus), "--out", str(out), "--overwrite", *extra])


def train(data: Path, out: Path, *extra: str) -> Run:
    cmd = [*CLI, "train", "lm", "--data", str(data), "--out", str(out), "--overwrite", "--max-steps", "1"]
    return measured([*cmd, "--block-size", "256", "--batch-size", "16", *MODEL, *extra])


def task_files(work: Path, copies: int) -> dict[str, Path]:
    """Multi30k's training pairs as TSV and SST-2's training set, each repeated `copies` times (from
    ../shared/data, or $TN_DATA; none when absent)."""
    shared = Path(os.environ.get("TN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files: dict[str, Path] = {}
    de, en = shared / "multi30k" / "train.de.gz", shared / "multi30k" / "train.en.gz"
    if de.exists() and en.exists():
        path = work / f"multi30k-x{copies}.tsv"
        if not path.exists():
            with gzip.open(de, "rt", encoding="utf-8") as f:
                sources = [line.rstrip("\n").replace("\t", " ") for line in f]
            with gzip.open(en, "rt", encoding="utf-8") as f:
                targets = [line.rstrip("\n").replace("\t", " ") for line in f]
            pairs = "".join(f"{s}\t{t}\n" for s, t in zip(sources, targets, strict=True))
            path.write_text(pairs * copies, encoding="utf-8")
        files["translation"] = path
    sst = shared / "sst2" / "train.tsv"
    if sst.exists():
        path = work / f"sst2-x{copies}.tsv"
        if not path.exists():
            header, *rows = sst.read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text(header + "".join(rows) * copies, encoding="utf-8")
        files["classification"] = path
    return files


def task_lines(work: Path, copies: int) -> list[str]:
    """Peak memory of `train translation` / `train classification` on their data repeated `copies` times."""
    files = task_files(work, copies)
    if not files:
        return ["", "- Translation and classification: skipped (../shared/data absent)"]
    lines = [
        "",
        f"#### `train translation` and `train classification` from files ({copies} copies of Multi30k and of SST-2)",
        "",
        "| task | data | examples | peak memory | first step printed |",
        "|---|---|---|---|---|",
    ]
    for task, path in files.items():
        # Small batches, so that the data, not one step's logits, is what the peak measures.
        extra = ["--max-tokens", "256"] if task == "translation" else ["--batch-size", "16"]
        cmd = [*CLI, "train", task, "--data", str(path), "--out", str(work / f"run-{task}"), "--overwrite"]
        run = measured(
            [*cmd, "--max-steps", "1", "--preset", "tiny", "--tokenizer", "word", "--set", "eval_examples=64"] + extra
        )
        examples = next((line.split()[1] for line in run.output.splitlines() if line.startswith("data:")), "?")
        print(f"train {task}: {run.seconds:.1f} s, peak {gb(run.peak_bytes)}", flush=True)
        lines.append(
            f"| {task} | {path.stat().st_size / MB:,.0f} MB | {examples} | {gb(run.peak_bytes)} | "
            f"{_seconds(run.first_step)} |"
        )
    lines += [
        "",
        "- The `tiny` preset, a word tokenizer, one step of small batches (translation 256 tokens, classification 16 "
        "texts), evaluation on 64 validation examples: the peak is the data's (the raw text, the tokenizer, the "
        "token ids), not the model's",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=float, default=100, help="MB of the small corpus (default 100)")
    ap.add_argument("--large", type=float, default=1000, help="MB of the large corpus (default 1000)")
    ap.add_argument("--char", type=float, default=200, help="MB of the char-path corpus (default 200)")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tn-bench-data"))
    ap.add_argument("--copies", type=int, default=20, help="copies of Multi30k and SST-2 for the tasks (default 20)")
    ap.add_argument("--tasks-only", action="store_true", help="only the translation / classification part; print it")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.tasks_only:
        print("\n".join(task_lines(work, args.copies)))
        return
    small = make_corpus(work / f"corpus-{args.small:g}mb.txt", int(args.small * MB))
    large = make_corpus(work / f"corpus-{args.large:g}mb.txt", int(args.large * MB))
    chars = make_corpus(work / f"corpus-{args.char:g}mb.txt", int(args.char * MB))
    lines = []

    # prepare on the large corpus, training its tokenizer.
    big = work / "prepared-large"
    run = prepare(large, big, "--tokenizer", "bpe", "--vocab-size", str(args.vocab_size), "--quiet")
    manifest = json.loads((big / "manifest.json").read_text())
    tokens = manifest["splits"]["train"]["tokens"] + manifest["splits"]["valid"]["tokens"]
    size = large.stat().st_size
    print(f"prepare {size / MB:.0f} MB: {run.seconds:.1f} s, peak {gb(run.peak_bytes)}", flush=True)
    lines += [
        f"#### `prepare lm` of {size / 1e9:.2f} GB of text (BPE, vocabulary {args.vocab_size:,})",
        "",
        "| corpus | tokens | wall time | throughput | peak memory | target |",
        "|---|---|---|---|---|---|",
        f"| {size / MB:,.0f} MB | {tokens / 1e6:,.1f}M ({manifest['dtype']}) | {run.seconds:.0f} s (tokenizer "
        f"training included) | {size / MB / run.seconds:.1f} MB/s | **{gb(run.peak_bytes)}** | <= 1.5 GB: "
        f"{'met' if run.peak_bytes <= 1.5e9 else 'not met'} |",
        "",
    ]

    # Tokenization throughput on the small corpus: ours against the single-threaded loop, the same tokenizer.
    tokenizer = big / "tokenizer.json"
    ours_dir, theirs_file = work / "prepared-small", work / "plain-small.bin"
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    peaks: dict[str, list[int]] = {"ours": [], "plain": []}
    for r in range(args.rounds):
        a = prepare(small, ours_dir, "--tokenizer-file", str(tokenizer), "--quiet")
        b = measured([sys.executable, "-c", PLAIN_LOOP, str(small), str(tokenizer), str(theirs_file), str(CHUNK_CHARS)])
        for name, run in (("ours", a), ("plain", b)):
            times[name].append(run.seconds)
            peaks[name].append(run.peak_bytes)
        print(f"round {r + 1}: ours {a.seconds:.1f} s, the plain loop {b.seconds:.1f} s", flush=True)
    theirs_tokens = theirs_file.stat().st_size // 2
    small_manifest = json.loads((ours_dir / "manifest.json").read_text())
    ours_tokens = small_manifest["splits"]["train"]["tokens"] + small_manifest["splits"]["valid"]["tokens"]
    size = small.stat().st_size
    t_ours, t_theirs = statistics.median(times["ours"]), statistics.median(times["plain"])
    ratio = t_theirs / t_ours
    rounds = ", ".join(f"{b / a:.2f}" for a, b in zip(times["ours"], times["plain"], strict=True))
    lines += [
        f"#### Tokenizing {size / MB:,.0f} MB with that tokenizer: ours against a single-threaded `encode` loop",
        "",
        "| preparation | wall time | throughput | peak memory | tokens written |",
        "|---|---|---|---|---|",
        f"| ours: `prepare lm --tokenizer-file` (chunks, `encode_batch_fast` on every core) | {t_ours:.1f} s | "
        f"{size / MB / t_ours:.1f} MB/s | {gb(max(peaks['ours']))} | {ours_tokens:,} (<eos> after the document) |",
        f"| the plain loop (one `encode` per chunk of lines, one thread) | {t_theirs:.1f} s | "
        f"{size / MB / t_theirs:.1f} MB/s | {gb(max(peaks['plain']))} | {theirs_tokens:,} |",
        "",
        f"- Result: ours **{ratio:.2f}x** the throughput of the single-threaded loop (target >= 1.8x: "
        f"{'met' if ratio >= 1.8 else 'not met'}; round by round {rounds}), at "
        f"peak memory {gb(max(peaks['ours']))} against {gb(max(peaks['plain']))}",
        "",
    ]

    # train lm on prepared data of two sizes: the memory does not grow with the corpus.
    lines += [
        "#### `train lm` on prepared data and on a text file",
        "",
        "| data | corpus | peak memory | first step printed | whole run, start to exit |",
        "|---|---|---|---|---|",
    ]
    trained = {}
    for name, directory, corpus in (("small", ours_dir, small), ("large", big, large)):
        run = train(directory, work / f"run-{name}")
        trained[name] = run
        print(f"train on prepared {name}: {run.seconds:.1f} s, peak {gb(run.peak_bytes)}", flush=True)
        lines.append(
            f"| prepared directory | {corpus.stat().st_size / MB:,.0f} MB | {gb(run.peak_bytes)} | "
            f"{_seconds(run.first_step)} | {run.seconds:.1f} s |"
        )
    run = train(chars, work / "run-char", "--tokenizer", "char", "--set", "valid_fraction=0.005")
    print(f"train char from the file: {run.seconds:.1f} s, peak {gb(run.peak_bytes)}", flush=True)
    lines.append(
        f"| text file, `--tokenizer char` (no prepare) | {chars.stat().st_size / MB:,.0f} MB | "
        f"**{gb(run.peak_bytes)}** | {_seconds(run.first_step)} | {run.seconds:.1f} s |"
    )
    growth = trained["large"].peak_bytes / trained["small"].peak_bytes - 1
    first = max(r.first_step or float("inf") for r in trained.values())
    lines += [
        "",
        f"- Result: prepared data, peak memory {growth:+.1%} from {args.small:g} MB to {args.large:g} MB (target "
        f"within 10%: {'met' if abs(growth) <= 0.10 else 'not met'}); the first step printed "
        f"within {first:.1f} s of start (target 10 s: {'met' if first <= 10 else 'not met'}); the char path on "
        f"{args.char:g} MB at {gb(run.peak_bytes)} (target < 2 GB: {'met' if run.peak_bytes < 2e9 else 'not met'})",
        "- Model: 2 layers, 128 wide, 4 heads, block 256, batch 16, one step and the evaluation on the validation "
        "split that follows it (the char run holds out 0.5%); corpora: the standard library's sources repeated",
        *footer(SCRIPT),
    ]
    lines = lines[: -len(footer(SCRIPT))] + task_lines(work, args.copies) + footer(SCRIPT)
    text = "### Data at scale (`bench/data.py`)\n\n" + "\n".join(lines)
    print(text)
    if not args.no_write:
        write_block("data", text, script="data")


if __name__ == "__main__":
    main()
