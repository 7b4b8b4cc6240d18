"""The trainer against a bare PyTorch loop: optimizer steps per second, same model, same batches (issue 26).

    python bench/loop.py                          # the SCAN demo model and a tiny LM; the CPU, and CUDA when present
    python bench/loop.py --steps 50 --no-write    # a quick look
    python bench/loop.py --device cuda            # the GPU rows only

Trainer: the library's `train(...)` as a user runs it (data encoded once, progress reporting, metrics.jsonl every
50 steps, the learning-rate schedule, gradient clipping, the non-finite check, the padding skip), for 50 + --steps
steps with no evaluation in between; its rate is taken between its metrics.jsonl records at step 50 and at the
last step (each record's "seconds" since the loop started), so data preparation, tokenizer training and the
first 50 steps (warm-up) are left out. Bare: the same model configuration freshly built (the same oneDNN backend
on a CPU), the same task's batches built beforehand, and per step only forward + the task's loss + backward +
fused AdamW (`foreach` where fused is missing) + zero_grad; 50 warm-up steps, then --steps timed. The two sides
alternate for --rounds rounds (each a whole trainer run, then a bare loop), and each side's figure is its median.
Target: trainer time per step <= 1.15x the bare loop's on a CPU, <= 1.3x on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from harness import DATA, footer, write_block  # bench/harness.py: this script's folder is on sys.path

from transformer_networks import TransformerConfig
from transformer_networks.backends.onednn import use_onednn
from transformer_networks.checkpoints import load_checkpoint
from transformer_networks.cli import DEMO_MODEL, DEMO_TRAIN
from transformer_networks.data.splits import DataSpec, read_splits
from transformer_networks.training import TrainConfig, train

SCRIPT = "bench/loop.py"
WARM = 50  # default steps before timing, on both sides (the trainer's first metrics record is at this step)
TARGETS = {"cpu": 1.15, "cuda": 1.3}


def cases(work: Path) -> dict[str, dict]:
    """name -> the task, its data and settings: the SCAN demo model (make demo's) and a tiny character LM."""
    text = DATA / "tinyshakespeare" / "input.txt"
    if not text.exists():  # a text of our own: the loop's speed does not depend on what the text says
        text = work / "lm.txt"
        text.write_text("the quick brown fox jumps over the lazy dog.\n" * 20_000, encoding="utf-8")
    demo_train = {k: v for k, v in DEMO_TRAIN.items() if k not in ("max_steps", "eval_every", "eval_examples")}
    return {
        "SCAN demo model (translation, 0.93M parameters)": {
            "task": "translation",
            "data": ["builtin:scan"],
            "model": TransformerConfig.from_preset("small", **DEMO_MODEL),
            "train": demo_train,
        },
        "tiny character LM (2 layers, 128 wide, block 64, batch 16)": {
            "task": "lm",
            "data": [str(text)],
            "model": TransformerConfig.from_preset("small", d_model=128, n_heads=4, n_layers=2, d_ff=512),
            "train": {"tokenizer": "char", "block_size": 64, "batch_size": 16},
        },
    }


def trainer_seconds_per_step(case: dict, run: Path, warm: int, steps: int, device: str) -> float:
    records = []
    settings = TrainConfig(
        **case["train"], max_steps=warm + steps, eval_every=10 * (warm + steps), log_every=warm, device=device
    )
    train(
        case["task"],
        run,
        data=DataSpec(data=case["data"]),
        model_config=case["model"],
        train_config=settings,
        quiet=True,
        overwrite=True,
        on_log=records.append,
    )
    times = {r["step"]: r["seconds"] for r in records if r["split"] == "train"}
    return (times[warm + steps] - times[warm]) / steps


def task_model_batches(run: Path, device: str) -> tuple[Any, torch.nn.Module, list[dict[str, torch.Tensor]]]:
    """(the task, a freshly initialised model of its configuration on `device`, the task's first-epoch training
    batches, on the host) of a trainer run."""
    ck = load_checkpoint(run / "last", "cpu")
    task = ck.make_task()
    splits = read_splits(type(task), DataSpec.from_dict(ck.data), ck.train_config)
    batches = list(task.batches(task.encode(splits.train), epoch=0))
    torch.manual_seed(0)
    model = type(ck.model)(ck.config).to(device).train()
    if device == "cpu":
        use_onednn(model)
    return task, model, batches


def bare_seconds_per_step(run: Path, warm: int, steps: int, device: str) -> float:
    task, model, batches = task_model_batches(run, device)
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches[: warm + steps]]

    def run_steps(n: int, start: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        for i in range(start, start + n):
            loss = task.loss(model, on_device[i % len(on_device)])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began

    run_steps(warm, 0)
    return run_steps(steps, warm) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="timed steps (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two sides (default 3)")
    p.add_argument("--warm", type=int, default=WARM, help=f"warm-up steps on each side (default {WARM})")
    p.add_argument("--device", choices=["cpu", "cuda"], help="one device (default: the CPU, and CUDA when present)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for device in devices:
            for name, case in cases(work).items():
                run = work / f"{case['task']}-{device}"
                trainers, bares = [], []
                for _ in range(args.rounds):  # alternating sides: a shared machine's noise hits both
                    trainers.append(trainer_seconds_per_step(case, run, args.warm, args.steps, device))
                    bares.append(bare_seconds_per_step(run, args.warm, args.steps, device))
                trainer, bare = statistics.median(trainers), statistics.median(bares)
                rows.append((name, device, trainer, bare))
                print(f"{name} on {device}: trainer {trainer * 1e3:.1f} ms, bare {bare * 1e3:.1f} ms", file=sys.stderr)
    lines = [
        "### The trainer against a bare PyTorch loop (`bench/loop.py`)",
        "",
        "| model | device | trainer, ms per step | bare loop, ms per step | trainer / bare | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, device, trainer, bare in rows:
        ratio, target = trainer / bare, TARGETS[device]
        verdict = "met" if ratio <= target else "**missed**"
        figures = f"{trainer * 1e3:.1f} | {bare * 1e3:.1f} | {ratio:.2f}x | <= {target}x: {verdict}"
        lines.append(f"| {name} | {device} | {figures} |")
    lines += [
        "",
        f"- {args.steps} timed steps after {args.warm} warm-up steps on each side; each figure is the median of "
        f"{args.rounds} alternating rounds. The trainer's includes what a run does per step besides the model's work "
        "(the schedule, gradient clipping, the losses read back every 16 steps for the non-finite check and the "
        "progress line, the batch order of the epoch); the bare loop's is the model's work and fused AdamW only",
        *footer(SCRIPT),
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("loop", block, script="loop")


if __name__ == "__main__":
    main()
