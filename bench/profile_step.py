"""Where a training step's time goes: a small model's step under torch.profiler (issue 26).

    python bench/profile_step.py                        # the SCAN demo model; cuda when present, else the CPU
    python bench/profile_step.py --compile              # the model compiled, as `train --compile` does
    python bench/profile_step.py --compile --mode reduce-overhead   # ... with CUDA graphs (a GPU)
    python bench/profile_step.py --case lm --steps 50   # the tiny character LM of bench/loop.py

A step is bench/loop.py's bare loop step on the task's own batches: the batch moved to the device
(`non_blocking`, as the trainer moves it), forward and the task's loss, backward, fused AdamW, zero_grad. After
--warm steps, --steps steps run under torch.profiler. Printed per step: the wall time; on a GPU the device's busy
time (the sum of its kernels' and copies' times) and the kernels launched; the host's waits for the device
(stream and device synchronisations, device-to-host copies); the values read back to the host
(`aten::_local_scalar_dense`: what `.item()`, `float(t)` and `bool(t)` run) and the data-dependent shapes
(`aten::nonzero`), which wait for the device too; then the operators that take the most host time. (On a CPU,
fused AdamW reads each parameter's step count, one value per parameter, which costs nothing there: on a GPU its
kernel takes them as tensors.) A step whose
wall time is far above the device's busy time is bound by the host: launches, Python, waits.

Nothing is written to BENCHMARKS.md: the figures are a diagnosis for its prose. The GPU side needs a lent GPU;
on a CPU the script runs whole, with the device columns at "n/a".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from harness import footer, synchronize
from loop import cases, task_model_batches  # bench/loop.py: the same models, data and settings
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from transformer_networks.data.splits import DataSpec
from transformer_networks.training import TrainConfig, train

SCRIPT = "bench/profile_step.py"
CASES = {"scan": 0, "lm": 1}  # the position of each case in bench/loop.py's `cases`
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
READS = ("aten::_local_scalar_dense", "aten::nonzero")
PHASES = ("forward", "backward", "optimizer")  # a step's parts, as the profile names them


def model_and_batches(case: dict, work: Path, device: str, count: int) -> tuple[Any, torch.nn.Module, list[dict]]:
    """(task, a freshly initialised model, `count` of the task's first-epoch batches on the host) for one of
    bench/loop.py's cases: one trainer step makes the run (tokenizer, data, configuration) they come from."""
    run = work / "run"
    settings = TrainConfig(**case["train"], max_steps=1, device="cpu")
    data = DataSpec(data=case["data"])
    train(case["task"], run, data=data, model_config=case["model"], train_config=settings, quiet=True)
    task, model, batches = task_model_batches(run, device)
    return task, model, [batches[i % len(batches)] for i in range(count)]


def profile_steps(args: argparse.Namespace, device: str) -> list[str]:
    with tempfile.TemporaryDirectory() as directory:
        name, case = list(cases(Path(directory)).items())[CASES[args.case]]
        task, model, batches = model_and_batches(case, Path(directory), device, args.warm + args.steps)
    forward = torch.compile(model, mode=args.mode) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    pinned = device == "cuda"
    if pinned:
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]

    def step(batch: dict) -> None:
        on_device = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with record_function(PHASES[0]):
            loss = task.loss(forward, on_device)
        loss.backward()  # on a GPU autograd runs it on a thread of its own: what the two named phases leave
        with record_function(PHASES[2]):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    began = time.perf_counter()
    for batch in batches[: args.warm]:
        step(batch)
    synchronize(device)
    warm_seconds = time.perf_counter() - began
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        for batch in batches[args.warm :]:
            step(batch)
        synchronize(device)
        wall = (time.perf_counter() - began) / args.steps
    events = prof.key_averages()
    per_step = args.steps

    def count(names: tuple[str, ...]) -> float:
        return sum(e.count for e in events if e.key in names) / per_step

    reads = dict.fromkeys(PHASES, 0)  # the values read back, by the phase of the step that read them
    for e in prof.events():
        if e.name == READS[0]:
            parent = e.cpu_parent
            while parent is not None and parent.name not in PHASES:
                parent = parent.cpu_parent
            reads[parent.name if parent is not None else PHASES[1]] += 1
    read_text = " / ".join(f"{reads[phase] / per_step:.1f}" for phase in PHASES)

    on_device = [e for e in events if e.device_type == DeviceType.CUDA]
    busy = sum(e.self_device_time_total for e in on_device) / per_step / 1e3  # ms
    kernels = sum(e.count for e in on_device) / per_step
    to_host = sum(e.count for e in on_device if "DtoH" in e.key) / per_step
    host_ops = sorted(
        (e for e in events if e.device_type == DeviceType.CPU and e.key.startswith("aten::")),
        key=lambda e: e.self_cpu_time_total,
        reverse=True,
    )
    gpu = device == "cuda"
    label = ("compiled" + (f" ({args.mode})" if args.mode else "")) if args.compile else "eager"
    lines = [
        f"### A training step under torch.profiler: {name}, {device}, {label}",
        "",
        "| wall ms per step | device busy ms | kernels | host waits (syncs + DtoH copies) | values read: forward / "
        "backward / optimizer | nonzero |",
        "|---|---|---|---|---|---|",
        f"| {wall * 1e3:.2f} | {f'{busy:.2f}' if gpu else 'n/a'} | {f'{kernels:.0f}' if gpu else 'n/a'} | "
        f"{f'{count(SYNCS) + to_host:.1f}' if gpu else 'n/a'} | {read_text} | {count(READS[1:]):.1f} |",
        "",
        f"Operators by host time (self, per step), of {args.steps} profiled steps after {args.warm} warm-up steps "
        f"({warm_seconds:.1f} s, compilation included):",
        "",
        "| operator | calls per step | host ms per step |",
        "|---|---|---|",
    ]
    for e in host_ops[: args.top]:
        lines.append(f"| `{e.key}` | {e.count / per_step:.1f} | {e.self_cpu_time_total / per_step / 1e3:.3f} |")
    lines += ["", *footer(SCRIPT)]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=CASES, default="scan", help="scan: the SCAN demo model (default); lm: a tiny LM")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when present, else cpu")
    p.add_argument("--steps", type=int, default=30, help="profiled steps (default 30)")
    p.add_argument("--warm", type=int, default=20, help="steps before profiling (default 20)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model, as `train --compile` does")
    p.add_argument("--mode", help="the torch.compile mode (e.g. reduce-overhead: CUDA graphs)")
    p.add_argument("--top", type=int, default=12, help="operators listed (default 12)")
    args = p.parse_args()
    if args.mode and not args.compile:
        p.error("--mode needs --compile")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("profile_step.py: --device cuda, but CUDA is not available here", file=sys.stderr)
        raise SystemExit(2)
    print("\n".join(profile_steps(args, device)))


if __name__ == "__main__":
    main()
