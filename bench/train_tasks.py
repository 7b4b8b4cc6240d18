"""Training targets of the three applications, each run through the command line exactly as a user would.

    python bench/train_tasks.py scan          make demo's run: SCAN simple split, test exact match (>= 99%, <= 5 min)
    python bench/train_tasks.py shakespeare   nanoGPT's CPU "baby" configuration, character-level validation loss
    python bench/train_tasks.py shakespeare-modern    the same budget with RoPE, SwiGLU and RMSNorm
    python bench/train_tasks.py sst2          SST-2 dev accuracy, trained from scratch (>= 83%)
    python bench/train_tasks.py sst2-ensemble ten seeds of a small SST-2 model, their probabilities averaged
    python bench/train_tasks.py multi30k      Multi30k de->en BLEU on test 2016 under a wall-clock budget
    python bench/train_tasks.py babi          built-in question answering (bAbI tasks 1-3), test exact match (>= 95%)
    python bench/train_tasks.py squad         SQuAD v1.1 (the 24 shared articles, 4 held out), from scratch: EM/F1
    python bench/train_tasks.py squad-bert    fine-tuning a 6-layer, 384-wide BERT (random weights) on those articles
    python bench/train_tasks.py chat          built-in dialogue: replies that depend on an earlier turn (>= 95%)
    python bench/train_tasks.py all

Each benchmark trains with `transformer-networks train`, evaluates with `transformer-networks evaluate --json`,
prints the result and replaces its own block in BENCHMARKS.md (machine, versions, date, commands, figures).
Real data is read from $TN_DATA_DIR (default ../shared/data); a benchmark whose data is absent is skipped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from harness import DATA, ROOT, machine, write_block  # bench/harness.py: this script's folder is on sys.path

RUNS = ROOT / "runs" / "bench"
CLI = [sys.executable, "-m", "transformer_networks"]


def benchmarks(minutes: float) -> dict[str, dict]:
    d = DATA
    return {
        "scan": {
            "title": "SCAN simple split (make demo)",
            "needs": [],
            "train": ["train", "translation", "--data", "builtin:scan", "--config", "configs/scan-demo.yaml"],
            "evaluate": [],  # the test split of the built-in data
            "report": ["exact_match", "bleu", "token_accuracy"],
            "time_to": ("exact_match", 0.99),
            "target": "exact match >= 99% on the test split (4,182 commands) within 5 minutes of training on "
            "2 CPU cores; Lake & Baroni 2018 report about 99.8% for seq2seq models",
        },
        "shakespeare": {
            "title": "Tiny Shakespeare, character level, nanoGPT's CPU configuration",
            "needs": [d / "tinyshakespeare/input.txt"],
            "train": [
                "train",
                "lm",
                "--data",
                str(d / "tinyshakespeare/input.txt"),
                "--config",
                "configs/shakespeare-char.yaml",
            ],
            "evaluate": ["--split", "valid"],
            "report": ["loss", "perplexity", "bits_per_character"],
            "target": "nanoGPT reports validation loss 1.88 with this configuration (4 layers, 4 heads, 128 dims, "
            "block 64, batch 12, 2000 iterations, dropout 0; last 10% of the text held out)",
        },
        "shakespeare-modern": {
            "title": "Tiny Shakespeare, the same budget with a modern model (RoPE, SwiGLU, RMSNorm, no biases)",
            "needs": [d / "tinyshakespeare/input.txt"],
            "train": [
                "train",
                "lm",
                "--data",
                str(d / "tinyshakespeare/input.txt"),
                "--config",
                "configs/shakespeare-char-modern.yaml",
            ],
            "evaluate": ["--split", "valid"],
            "report": ["loss", "perplexity", "bits_per_character"],
            "target": "none set; the same training as the block above (2000 iterations, same data split, "
            "optimizer and schedule) with rotary positions, SwiGLU (d_ff 344), RMSNorm, no biases",
        },
        "sst2": {
            "title": "SST-2, trained from scratch",
            "needs": [d / "sst2/train.tsv", d / "sst2/dev.tsv"],
            "train": ["train", "classification", "--data", str(d / "sst2/train.tsv"), "--config", "configs/sst2.yaml"],
            "evaluate": ["--data", str(d / "sst2/dev.tsv")],  # the checkpoint was chosen on held-out train data
            "report": ["accuracy", "macro_f1"],
            "target": "dev accuracy >= 83%; models trained from scratch without pretrained embeddings reach about "
            "82-83% (a CNN with random initialisation)",
        },
        "sst2-ensemble": {
            "title": "SST-2, trained from scratch: an ensemble of 10 seeds",
            "needs": [d / "sst2/train.tsv", d / "sst2/dev.tsv"],
            "train": [
                "train",
                "classification",
                "--data",
                str(d / "sst2/train.tsv"),
                "--config",
                "configs/sst2-small.yaml",
            ],
            "seeds": list(range(10)),  # one run per seed; `evaluate` averages their class probabilities
            "evaluate": ["--data", str(d / "sst2/dev.tsv")],
            "report": ["accuracy", "macro_f1"],
            "target": "dev accuracy >= 83%; models trained from scratch without pretrained embeddings reach about "
            "82-83% (a CNN with random initialisation)",
        },
        "babi": {
            "title": "Built-in question answering (bAbI-style tasks 1-3)",
            "needs": [],
            "train": ["train", "qa", "--config", "configs/babi-qa.yaml"],
            "evaluate": [],  # the test split of the built-in data
            "report": ["exact_match", "f1"],
            "per_task": True,  # exact match of each task type (one, two, three supporting facts) on its test split
            "second_sample": babi_second_sample,  # and on 3,000 more questions: the 900 of the test split are few
            "time_to": ("exact_match", 95.0),
            "target": "exact match >= 95% on the test split within 5 minutes of training on 2 CPU cores",
        },
        "chat": {
            "title": "Built-in dialogue (an assistant that must remember earlier turns)",
            "needs": [],
            "train": ["train", "chat", "--config", "configs/chat.yaml"],
            "evaluate": [],  # the test split of the built-in data (400 conversations)
            "report": ["context_reply_exact_match", "reply_exact_match", "loss", "distinct_2"],
            "time_to": ("context_reply_exact_match", 0.95),
            "target": ">= 95% of the held-out replies that depend on an earlier turn exactly right, within 5 minutes "
            "of training on 2 CPU cores",
        },
        "squad": {
            "title": "SQuAD v1.1 from scratch (24 shared articles: 20 to train, 4 held out)",
            "needs": [d / SQUAD],
            "prepare": split_squad,
            "train": [
                "train",
                "qa",
                "--data",
                str(RUNS / "squad-data" / "train.json"),
                "--valid",
                str(RUNS / "squad-data" / "valid.json"),
                "--config",
                "configs/squad-scratch.yaml",
            ],
            "evaluate": ["--data", str(RUNS / "squad-data" / "valid.json")],
            "report": ["exact_match", "f1"],
            "target": "none set for a model from scratch on 4,913 questions (BERT-base fine-tuned reaches EM 80.8 / F1 "
            "88.5 on the whole dev set, Devlin et al. 2019); the number is worth knowing, not a claim",
        },
        "squad-bert": {
            "title": "SQuAD v1.1 fine-tuning of a 6-layer, 384-wide BERT (the path users take; random weights here)",
            "needs": [d / SQUAD],
            "prepare": random_bert,
            "train": [
                "train",
                "qa",
                "--init",
                str(RUNS / "bert-6x384"),
                "--data",
                str(RUNS / "squad-data" / "train.json"),
                "--valid",
                str(RUNS / "squad-data" / "valid.json"),
                "--config",
                "configs/squad-bert.yaml",
            ],
            "evaluate": ["--data", str(RUNS / "squad-data" / "valid.json")],
            "report": ["exact_match", "f1"],
            "target": "fine-tuning takes minutes on a CPU: one epoch over the 20 training articles. No pretrained "
            "weights can be downloaded here, so the encoder starts random and the scores are those of a model "
            "from scratch; with real BERT weights the same command is the fine-tuning users run",
        },
        "multi30k": {
            "title": f"Multi30k de->en, {minutes:g}-minute budget",
            "needs": [
                d / f"multi30k/{s}.{lang}.gz" for s in ("train", "val", "test_2016_flickr") for lang in "de en".split()
            ],
            "train": [
                "train",
                "translation",
                "--source-file",
                str(d / "multi30k/train.de.gz"),
                "--target-file",
                str(d / "multi30k/train.en.gz"),
                "--valid-source-file",
                str(d / "multi30k/val.de.gz"),
                "--valid-target-file",
                str(d / "multi30k/val.en.gz"),
                "--config",
                "configs/multi30k.yaml",
                "--max-minutes",
                f"{minutes:g}",
            ],
            "evaluate": [
                "--source-file",
                str(d / "multi30k/test_2016_flickr.de.gz"),
                "--target-file",
                str(d / "multi30k/test_2016_flickr.en.gz"),
            ],
            "report": ["bleu", "chrf", "loss"],
            "target": "a 3-layer, 256-dim Transformer (9.0M parameters, greedy decoding) reports BLEU 36.5 on test "
            "2016; fairseq's transformer-tiny reports 41.0 (en->de, beam 5)",
        },
    }


SQUAD = "squad/dev-v1.1-articles-00-23.json"
UNITS = {"lm": "characters", "qa": "questions", "chat": "conversations"}  # what `evaluate` counts as examples


def split_squad() -> None:
    """The shared SQuAD articles split by article (no paragraph on both sides): the first 20 to train, the last 4
    to validate, written in SQuAD's own format to runs/bench/squad-data/."""
    doc = json.loads((DATA / SQUAD).read_text())
    out = RUNS / "squad-data"
    out.mkdir(parents=True, exist_ok=True)
    for name, articles in (("train", doc["data"][:20]), ("valid", doc["data"][20:])):
        (out / f"{name}.json").write_text(json.dumps({"version": doc["version"], "data": articles}))


def random_bert() -> None:
    """runs/bench/bert-6x384: a BertForQuestionAnswering of MiniLM's shape with random weights and a WordPiece
    vocabulary trained on the training articles (a stand-in for a downloaded BERT directory), and the split."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    split_squad()
    doc = json.loads((RUNS / "squad-data" / "train.json").read_text())
    texts = [p["context"] for a in doc["data"] for p in a["paragraphs"]]
    texts += [q["question"] for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=16000, special_tokens=specials))
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    transformers.set_seed(0)
    out = RUNS / "bert-6x384"
    transformers.BertForQuestionAnswering(config).save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))


def command_text(args: list[str]) -> str:
    text = shlex.join(["transformer-networks", *args])
    return text.replace(str(DATA), "$TN_DATA_DIR").replace(str(ROOT) + "/", "")


def babi_second_sample() -> list[tuple[int, Path]]:
    """A second, larger bAbI test sample: 1,000 questions per task drawn with seed 1 (the built-in test split is
    seed 0's first 300), one JSONL file per task. 28 of its 3,000 stories are also among seed 0's training stories,
    27 of them task 1's (BENCHMARKS.md, fifth round)."""
    from transformer_networks.data.babi import TASKS, babi_split

    folder = RUNS / "babi-second-sample"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for task in TASKS:
        path = folder / f"task{task}.jsonl"
        test = babi_split((task,), train_per_task=0, test_per_task=1000, seed=1)[1]
        lines = [
            {
                "id": ex.id,
                "question": ex.question,
                "context": ex.context,
                "answers": [{"text": text, "answer_start": start} for text, start in ex.answers],
            }
            for ex in test
        ]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        files.append((task, path))
    return files


def run_benchmark(name: str, spec: dict, report_only: bool = False) -> dict | None:
    missing = [str(p) for p in spec["needs"] if not Path(p).exists()]
    if missing:
        print(f"{name}: skipped, data not found: {', '.join(missing)}", file=sys.stderr)
        return None
    # One run, or one per seed (an ensemble, evaluated together): (output directory, train command) each.
    seeds = spec.get("seeds")
    runs = (
        [(RUNS / name / f"seed{seed}", [*spec["train"], "--seed", str(seed)]) for seed in seeds]
        if seeds
        else [(RUNS / name, spec["train"])]
    )
    runs = [(out, [*train, "--out", str(out), "--overwrite"]) for out, train in runs]
    if "prepare" in spec:
        spec["prepare"]()
    wall = None
    if not report_only:
        start = time.perf_counter()
        for _, train in runs:
            print(f"$ {command_text(train)}", file=sys.stderr)
            subprocess.run([*CLI, *train], cwd=ROOT, check=True)
        wall = time.perf_counter() - start

    def evaluated(outs: list[Path]) -> tuple[list[str], dict]:
        evaluate = ["evaluate", *map(str, outs), *spec["evaluate"], "--json"]
        print(f"$ {command_text(evaluate)}", file=sys.stderr)
        result = subprocess.run([*CLI, *evaluate], cwd=ROOT, check=True, capture_output=True, text=True)
        return evaluate, json.loads(result.stdout)

    evaluate, values = evaluated([out for out, _ in runs])
    members = [evaluated([out])[1] for out, _ in runs] if seeds else []  # each member alone, for comparison
    if spec.get("per_task"):  # built-in bAbI: each task type's test split alone
        members = [{"task_type": t, **evaluated([runs[0][0], "--data", f"builtin:babi-{t}"])[1]} for t in (1, 2, 3)]
    second = (
        [{"task_type": t, **evaluated([runs[0][0], "--data", str(path)])[1]} for t, path in spec["second_sample"]()]
        if "second_sample" in spec
        else []
    )
    logs = [[json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] for out, _ in runs]
    train_seconds = sum(max((m["seconds"] for m in log), default=0.0) for log in logs)
    steps = max((m["step"] for log in logs for m in log), default=0)
    return {
        "name": name,
        "train": [train for _, train in runs],
        "evaluate": evaluate,
        "values": values,
        "wall": wall,
        "train_seconds": train_seconds,
        "steps": steps,
        "metrics": logs[0],
        "members": members,
        "second_sample": second,
        "seeds": seeds,
    }


def time_to(metrics: list[dict], key: str, threshold: float) -> str:
    """When the run's validation `key` first reached `threshold` (the evaluations logged during training)."""
    evaluations = [m for m in metrics if m.get("split") == "valid" and key in m]
    shown = f"{threshold:.0%}" if threshold <= 1 else f"{threshold:g}"  # QA's scores are on SQuAD's 0-100 scale
    reached = next((m for m in evaluations if m[key] >= threshold), None)
    every = f"validation every {evaluations[0]['step']:,} steps" if evaluations else "no validation logged"
    if reached is None:
        return f"- Time to {shown} {key}: not reached during training ({every})"
    return (
        f"- Time to {shown} {key}: **{reached['seconds'] / 60:.1f} minutes** of training, at step "
        f"{reached['step']:,} (validation {key} {reached[key]:.4f}; {every}, so it is reached at most one "
        "interval earlier)"
    )


def members_line(spec: dict, r: dict) -> list[str]:
    """An ensemble's members evaluated alone: what averaging their probabilities adds (or bAbI's task types)."""
    if not r["members"]:
        return []
    if spec.get("per_task"):
        lines = [
            "- Each task type's test split: "
            + "; ".join(
                f"task {m['task_type']} ({m['examples']:,} questions) exact match {m['exact_match']:.1f}, "
                f"F1 {m['f1']:.1f}"
                for m in r["members"]
            )
        ]
        if r.get("second_sample"):
            second = r["second_sample"]
            overall = sum(m["exact_match"] * m["examples"] for m in second) / sum(m["examples"] for m in second)
            lines.append(
                f"- A second test sample ({sum(m['examples'] for m in second):,} questions drawn with seed 1, "
                f"`bench/train_tasks.py`'s `babi_second_sample`): exact match **{overall:.1f}**; "
                + "; ".join(f"task {m['task_type']} {m['exact_match']:.1f}" for m in second)
            )
        return lines
    key = spec["report"][0]
    alone = [m[key] for m in r["members"]]
    return [
        f"- Each member alone: {key} "
        + ", ".join(f"{a:.4f}" for a in alone)
        + f" (mean {sum(alone) / len(alone):.4f}); the ensemble averages their class probabilities"
    ]


def markdown(spec: dict, r: dict) -> str:
    figures = ", ".join(
        f"**{k} {r['values'][k]:.4g}**" if i == 0 else f"{k} {r['values'][k]:.4g}"
        for i, k in enumerate(spec["report"])
        if k in r["values"]
    )
    return "\n".join(
        [
            f"### {spec['title']}",
            "",
            f"- Result: {figures} on {r['values']['data'].replace(str(DATA), '$TN_DATA_DIR')} "
            f"({r['values']['examples']:,} "
            f"{UNITS.get(r['values']['task'], 'examples')})",
            *members_line(spec, r),
            f"- Training: {r['steps']:,} steps"
            + (f" in each of {len(r['seeds'])} runs (seeds {', '.join(map(str, r['seeds']))})" if r["seeds"] else "")
            + f" in {r['train_seconds'] / 60:.1f} minutes"
            + (" in all" if r["seeds"] else "")
            + (
                f" (wall clock of the whole command, data preparation and final evaluation included: "
                f"{r['wall'] / 60:.1f} minutes)"
                if r["wall"] is not None
                else ""
            ),
            *([time_to(r["metrics"], *spec["time_to"])] if "time_to" in spec else []),
            f"- Target: {spec['target']}",
            f"- Machine: {machine()}; {date.today().isoformat()}",
            "- Commands:",
            "  ```",
            *[f"  {command_text(train)}" for train in r["train"]],
            f"  {command_text(r['evaluate'])}",
            "  ```",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=[*benchmarks(60), "all"])
    parser.add_argument("--minutes", type=float, default=60, help="multi30k: training budget in minutes")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="do not train: evaluate the run already in runs/bench/NAME and report it",
    )
    args = parser.parse_args()
    specs = benchmarks(args.minutes)
    names = list(specs) if "all" in args.names else args.names
    for name in names:
        result = run_benchmark(name, specs[name], args.report_only)
        if result is None:
            continue
        text = markdown(specs[name], result)
        print(text)
        if not args.no_write:
            write_block(name, text)


if __name__ == "__main__":
    main()
