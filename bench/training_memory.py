"""Peak memory of one training process: DDP against FSDP2 sharding, each with and without activation checkpointing.

    python bench/training_memory.py                 2 processes, gpt2-small shape, block 256, batch 2
    python bench/training_memory.py --procs 4 --batch 8 --block 1024      (on a machine with 4 GPUs)

For each mode, `torchrun --standalone --nproc_per_node=N` starts this script as a worker: it builds a TransformerLM
with the gpt2-small shape (random weights, dropout 0, float32), wraps it the way `train` does (`Distributed.wrap`:
DDP, or `fully_shard` per layer then the model), and takes a few AdamW steps (forward, backward, step) on random
tokens. Reported per process, the largest over the processes: the peak memory the training added, i.e. on CUDA
`torch.cuda.max_memory_allocated` and on CPU the peak resident set size (ru_maxrss) minus the resident size before
the model was built; and the median seconds per step. DDP keeps the whole model, its gradients and both AdamW
moments on every process (16 bytes per parameter, plus DDP's gradient buckets); FSDP keeps 1/N of them and gathers
one layer's weights at a time; activation checkpointing keeps each layer's input instead of all its activations and
recomputes the rest in the backward pass.

The result replaces its block in BENCHMARKS.md (machine, versions, date, command); --no-write only prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import as_users_run, machine, write_block  # bench/harness.py: this script's folder is on sys.path

from transformer_networks.config import TransformerConfig
from transformer_networks.models import TransformerLM
from transformer_networks.training.distributed import Distributed

MODES = {
    "ddp": (False, False),
    "ddp + activation checkpointing": (False, True),
    "fsdp": (True, False),
    "fsdp + activation checkpointing": (True, True),
}


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args: argparse.Namespace) -> None:
    """One process of one mode: train a few steps, write the peak to args.result (rank 0)."""
    fsdp, checkpointing = MODES[args.worker]
    ranks = Distributed()
    device = ranks.start(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("gpt2-small", n_layers=args.layers, max_seq_len=args.block, dropout=0.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = resident_bytes()
    model = as_users_run(TransformerLM(cfg).to(device), device)  # before wrapping: FSDP2 subclasses the modules
    parameters = model.num_parameters()
    model.set_activation_checkpointing(checkpointing)
    wrapped = ranks.wrap(model, device, fsdp=fsdp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seconds = []
    for _ in range(args.steps):
        ids = torch.randint(0, cfg.vocab_size, (args.batch, args.block + 1), device=device)
        start = time.perf_counter()
        logits = wrapped(ids[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        del logits, loss
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    peaks = torch.tensor([float(peak)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)
    if ranks.is_main:
        result = {
            "peak_bytes": float(peaks),
            "seconds": statistics.median(seconds[1:] or seconds),
            "parameters": parameters,
            "device": str(device.type),
        }
        Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    ranks.close()


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.procs}",
            __file__,
            "--worker",
            mode,
            "--result",
            str(result),
            "--layers",
            str(args.layers),
            "--block",
            str(args.block),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.procs))}
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{mode}: torchrun failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2, help="processes (one GPU each on CUDA)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--block", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=2, help="sequences per process")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (the first is not timed)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    results = {}
    for mode in MODES:
        results[mode] = run_mode(mode, args)
        print(
            f"{mode}: {results[mode]['peak_bytes'] / 2**30:.2f} GiB, {results[mode]['seconds']:.2f} s/step", flush=True
        )
    first = results["ddp"]
    where = "GPU memory allocated" if first["device"] == "cuda" else "peak resident memory added"
    lines = [
        f"### Training memory per process: DDP vs FSDP2, activation checkpointing ({args.procs} processes, "
        f"{first['device'].upper()})",
        "",
        f"TransformerLM, gpt2-small shape with {args.layers} layers ({first['parameters'] / 1e6:.1f}M parameters), "
        f"float32, AdamW, {args.batch} x {args.block} tokens per process, {args.steps} steps; {where}, the largest "
        f"over the processes.",
        "",
        "| mode | peak memory per process | vs DDP | seconds per step |",
        "|---|---|---|---|",
    ]
    for mode, r in results.items():
        lines.append(
            f"| {mode} | {r['peak_bytes'] / 2**30:.2f} GiB | {r['peak_bytes'] / first['peak_bytes']:.2f} | "
            f"{r['seconds']:.2f} |"
        )
    if first["device"] != "cuda":
        lines += [
            "",
            "On CPU the resident size is a coarse measure: the allocator keeps freed memory, and every "
            "process builds the whole model before it is sharded. The GPU figures (allocated bytes) are the "
            "ones to plan with.",
        ]
    lines += [
        "",
        f"- Machine: {machine()}; {date.today().isoformat()}",
        "- Command:",
        "  ```",
        f"  {shlex.join(['python', 'bench/training_memory.py', *sys.argv[1:]])}",
        "  ```",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_block(f"{first['device']}-{args.procs}", text, script="training_memory")


if __name__ == "__main__":
    main()
