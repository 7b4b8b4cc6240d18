"""Attention memory: peak memory of a language-model forward + backward by sequence length, ours against naive.

    python bench/attention_memory.py                          lengths 1024 2048 4096 8192, both kinds
    python bench/attention_memory.py --lengths 2048 4096 --kinds ours
    python bench/attention_memory.py --device cpu --threads 1 --no-write

The model is a nanoGPT-shaped TransformerLM (4 layers, 4 heads, d_model 128, d_ff 512, vocabulary 65, dropout 0,
pre-LN, RoPE positions so that no learned table limits the length, no padding id so that the causal path uses
SDPA's `is_causal` flag), batch 1, float32, random weights (the same seed for every case). Two kinds of attention
run on the same model and weights:

    ours    the model as it is: `F.scaled_dot_product_attention` picks a fused kernel (flash attention on CPU;
            flash or memory-efficient on CUDA) that keeps only a log-sum-exp per query row for the backward pass,
            never the T x T attention matrix, so memory should grow linearly with the length T;
    naive   the same forward under `sdpa_kernel(SDPBackend.MATH)`, the textbook formula: it builds the T x T score
            and weight matrices of every head and keeps the weights for the backward pass (quadratic in T).

Every (length, kind) case runs in a fresh process (this script with a hidden --worker flag, which prints one JSON
line), so that memory one case leaves cached cannot hide or inflate another. A worker builds the model, runs a small
warm-up step (so one-off allocations of the first call do not count), then measures one forward + backward of the
cross-entropy loss on random tokens. The figure is the peak memory that forward + backward added: on CUDA
`torch.cuda.max_memory_allocated()` minus the bytes allocated before the forward; on CPU the peak resident set size,
VmHWM - VmRSS before the forward, with the high-water mark reset first by writing "5" to /proc/self/clear_refs
(Linux >= 4.0; where that fails, the process's lifetime peak ru_maxrss is used, a coarser figure). A case that runs
out of memory is reported as such rather than stopping the benchmark.

On CPU the workers run with MALLOC_MMAP_THRESHOLD_=131072, glibc's default threshold but fixed. Left dynamic, glibc
raises the threshold (up to 32 MiB) each time a large block is freed and from then on serves blocks below it from its
heap, which keeps freed memory resident and fragmented: the peak resident size then overstated the live tensors by
up to half and varied by 20% from run to run. With the threshold fixed, every tensor above 128 KiB gets its own
mapping that is returned on free, and the resident size follows the live tensors.

The result replaces its block in BENCHMARKS.md (machine, versions, date, command); --no-write only prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from harness import as_users_run, footer, parameters, write_block  # bench/harness.py: on sys.path
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_networks.config import TransformerConfig
from transformer_networks.models import TransformerLM

SCRIPT = "bench/attention_memory.py"
KINDS = ("ours", "naive")
WARMUP_TOKENS = 32
OUT_OF_MEMORY = "out of memory"
MiB = 2**20


def build_model(max_seq_len: int) -> TransformerLM:
    """The nanoGPT-shaped language model every case measures (random weights from seed 0)."""
    cfg = TransformerConfig(
        vocab_size=65,
        d_model=128,
        n_heads=4,
        n_layers=4,
        d_ff=512,
        dropout=0.0,
        norm_first=True,
        positional="rope",
        max_seq_len=max_seq_len,
        pad_id=None,
    )
    torch.manual_seed(0)
    return TransformerLM(cfg)


# --- the worker: one (length, kind) case in its own process -------------------------------------------------------


def proc_status_bytes(key: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no {key} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the process's resident high-water mark (VmHWM) to its current size; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def attention_context(kind: str) -> contextlib.AbstractContextManager:
    """Naive attention: force SDPA's math backend; ours: leave the choice of kernel to PyTorch."""
    return sdpa_kernel(SDPBackend.MATH) if kind == "naive" else contextlib.nullcontext()


def forward_backward(model: TransformerLM, ids: torch.Tensor) -> None:
    """One language-model step without the optimizer: logits, cross-entropy loss, backward."""
    logits = model(ids[:, :-1])  # (1, T, V): position t predicts token t+1
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()


def measure(length: int, kind: str, device: torch.device) -> dict:
    """Peak bytes and seconds of one forward + backward at `length` tokens."""
    model = as_users_run(build_model(max(length, WARMUP_TOKENS)).to(device), device)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.cfg.vocab_size, (1, length + 1), generator=generator).to(device)
    warmup = torch.randint(0, model.cfg.vocab_size, (1, WARMUP_TOKENS + 1), generator=generator).to(device)

    with attention_context(kind):
        forward_backward(model, warmup)
        model.zero_grad(set_to_none=True)  # the measured step allocates its gradients itself

        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            method = "max_memory_allocated"
        else:
            before = proc_status_bytes("VmRSS")
            method = "VmHWM" if reset_peak_rss() else "ru_maxrss"

        start = time.perf_counter()
        forward_backward(model, ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    elif method == "VmHWM":
        peak = proc_status_bytes("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux; the whole process's peak
    return {"peak_bytes": peak - before, "seconds": seconds, "method": method}


def worker(args: argparse.Namespace) -> None:
    """Measure one case and print it as one JSON line (an out-of-memory error is a result, not a crash)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    length, kind = args.worker_length, args.worker_kind
    try:
        result = measure(length, kind, torch.device(args.device))
    except torch.OutOfMemoryError:
        result = {"error": OUT_OF_MEMORY}
    except RuntimeError as e:  # the CPU allocator raises a plain RuntimeError ("can't allocate memory")
        if "allocate" not in str(e) and "out of memory" not in str(e):
            raise
        result = {"error": OUT_OF_MEMORY}
    print(json.dumps({"length": length, "kind": kind, **result}), flush=True)


def run_case(length: int, kind: str, args: argparse.Namespace) -> dict:
    """Run one case in a fresh process and return its JSON result."""
    argv = [
        sys.executable,
        __file__,
        "--worker",
        "--worker-length",
        str(length),
        "--worker-kind",
        kind,
        "--device",
        args.device,
    ]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    # See the module docstring: a fixed glibc mmap threshold makes the resident size follow the live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode == -signal.SIGKILL:  # the kernel's OOM killer ends the process without a word
        return {"length": length, "kind": kind, "error": f"{OUT_OF_MEMORY} (killed)"}
    if done.returncode != 0:
        sys.exit(f"{kind} at {length} tokens: the worker failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the report ---------------------------------------------------------------------------------------------------


def growth_per_doubling(points: list[tuple[int, float]]) -> list[float | None]:
    """For each pair of consecutive (length, bytes) points, the factor memory grows by per doubling of the length:
    (bytes2 / bytes1) ** (1 / log2(length2 / length1)). About 2 for linear growth, 4 for quadratic. None for a pair
    with a non-positive figure (nothing to compare)."""
    points = sorted(points)
    factors: list[float | None] = []
    for (length1, bytes1), (length2, bytes2) in zip(points[:-1], points[1:], strict=True):
        if bytes1 <= 0 or bytes2 <= 0:
            factors.append(None)
        else:
            factors.append((bytes2 / bytes1) ** (1 / math.log2(length2 / length1)))
    return factors


def growth_label(factor: float) -> str:
    """Name the growth of a per-doubling factor: linear (~2), quadratic (~4), or in between."""
    exponent = math.log2(factor)  # memory ~ length ** exponent
    if exponent < 1.25:
        return "linear"
    if exponent > 1.75:
        return "quadratic"
    return "between linear and quadratic"


def growth_line(kind: str, points: list[tuple[int, float]]) -> str:
    """'ours: x2.0 per doubling (linear), from the two largest lengths; steps ...'."""
    factors = growth_per_doubling(points)
    if not factors or factors[-1] is None:
        return f"{kind}: too few measured lengths to tell its growth"
    lengths = [length for length, _ in sorted(points)]
    steps = ", ".join(
        f"{a}->{b} " + ("n/a" if f is None else f"x{f:.2f}")
        for a, b, f in zip(lengths[:-1], lengths[1:], factors, strict=True)
    )
    return (
        f"{kind}: x{factors[-1]:.2f} per doubling ({growth_label(factors[-1])}), from the two largest lengths "
        f"(each step: {steps})"
    )


def report(
    results: dict[tuple[int, str], dict],
    lengths: list[int],
    kinds: list[str],
    device: str,
    model: TransformerLM,
    method: str,
) -> str:
    def mib(length: int, kind: str) -> str:
        r = results.get((length, kind))
        if r is None:
            return "-"
        return r["error"] if "error" in r else f"{r['peak_bytes'] / MiB:.1f}"

    def seconds(length: int, kind: str) -> str:
        r = results.get((length, kind))
        return "-" if r is None or "error" in r else f"{r['seconds']:.2f}"

    measure_text = {
        "max_memory_allocated": "GPU memory allocated (`torch.cuda.max_memory_allocated`) above what was allocated "
        "before the forward",
        "VmHWM": "peak resident set size (VmHWM, reset through /proc/self/clear_refs) above the resident size "
        "before the forward, with glibc's mmap threshold fixed at 128 KiB so that freed tensors leave the "
        "resident set",
        "ru_maxrss": "the process's lifetime peak resident set size (ru_maxrss; /proc/self/clear_refs was not "
        "writable, so this is coarse) above the resident size before the forward",
    }[method]
    cfg = model.cfg
    lines = [
        f"### Attention memory: LM forward + backward by sequence length, ours vs naive ({device.upper()})",
        "",
        f"TransformerLM, nanoGPT shape: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, d_ff "
        f"{cfg.d_ff}, vocabulary {cfg.vocab_size}, pre-LN, RoPE ({parameters(model)} parameters), float32, "
        f"batch 1, no padding mask (causal attention through SDPA's `is_causal`). One forward + backward of the "
        f"cross-entropy loss on random tokens, each case in a fresh process; peak memory = {measure_text}. Ours: "
        f"`F.scaled_dot_product_attention` as the model calls it (fused kernel); naive: the same model and weights "
        f"under `sdpa_kernel(SDPBackend.MATH)`, which keeps the T x T attention weights for the backward pass.",
        "",
        "| length | ours peak MiB | naive peak MiB | naive/ours | ours MiB per 1k tokens | ours seconds | "
        "naive seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for length in lengths:
        ours, naive = results.get((length, "ours")), results.get((length, "naive"))
        ratio = per_1k = "-"
        if ours is not None and "error" not in ours and ours["peak_bytes"] > 0:
            per_1k = f"{ours['peak_bytes'] / MiB / (length / 1024):.1f}"
            if naive is not None and "error" not in naive:
                ratio = f"{naive['peak_bytes'] / ours['peak_bytes']:.2f}"
        lines.append(
            f"| {length} | {mib(length, 'ours')} | {mib(length, 'naive')} | {ratio} | {per_1k} | "
            f"{seconds(length, 'ours')} | {seconds(length, 'naive')} |"
        )

    lines.append("")
    for kind in kinds:
        points = [
            (length, results[(length, kind)]["peak_bytes"])
            for length in lengths
            if "error" not in results[(length, kind)]
        ]
        lines.append(f"- {growth_line(kind, points)}.")
    # What the math path keeps per layer: the softmax weights of every head, batch x heads x T x T float32.
    largest = max(lengths)
    matrix = 1 * cfg.n_heads * largest * largest * 4
    lines.append(
        f"- For scale: at {largest} tokens the T x T attention weights that naive keeps are "
        f"{matrix / MiB:.0f} MiB per layer (1 x {cfg.n_heads} heads x {largest} x {largest} float32), "
        f"{cfg.n_layers * matrix / MiB:.0f} MiB over the {cfg.n_layers} layers."
    )
    lines += ["", *footer(SCRIPT)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192], help="tokens per sequence")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="attention kinds to measure")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch threads in each worker (default: torch's own)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-kind", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.threads:
        torch.set_num_threads(args.threads)  # so that the footer reports the threads the workers use

    lengths = sorted(set(args.lengths))
    kinds = [kind for kind in KINDS if kind in args.kinds]
    results: dict[tuple[int, str], dict] = {}
    for length in lengths:
        for kind in kinds:
            r = results[(length, kind)] = run_case(length, kind, args)
            figure = r["error"] if "error" in r else f"{r['peak_bytes'] / MiB:.1f} MiB, {r['seconds']:.2f} s"
            print(f"{kind} at {length} tokens: {figure}", file=sys.stderr, flush=True)

    methods = [r["method"] for r in results.values() if "method" in r]
    method = "ru_maxrss" if "ru_maxrss" in methods else (methods[0] if methods else "VmHWM")
    device_type = torch.device(args.device).type
    text = report(results, lengths, kinds, device_type, build_model(max(lengths)), method)
    print(text)
    if not args.no_write:
        write_block(device_type, text, script="attention_memory")


if __name__ == "__main__":
    main()
