"""What every benchmark in bench/ shares: where things are, how sides are timed, how results reach BENCHMARKS.md.

The method (see BENCHMARKS.md): the sides of a comparison run the same work, are warmed up first, then alternate
(A B A B ...) for several rounds so that a busy machine slows them alike; each figure is a median, and a comparison
is reported as the ratio peer_time / our_time (> 1 means we are faster). On a GPU a side is timed with CUDA events
around its work, after a synchronize.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TN_DATA_DIR", ROOT.parent / "shared" / "data"))


# --- timing ----------------------------------------------------------------------------------------------------


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[float, Any]:
    """Seconds one call of `fn` takes (CUDA events on a GPU), and what it returned."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        result = fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000, result
    start_time = time.perf_counter()
    result = fn()
    return time.perf_counter() - start_time, result


def alternate(
    sides: dict[str, Callable[[], Any]],
    rounds: int,
    *,
    repeat: int = 1,
    device: torch.device | str = "cpu",
    label: str = "",
) -> tuple[dict[str, list[float]], list[dict]]:
    """Run every side in turn once per round (A B A B ...): seconds per call of each side in each round (the mean
    over `repeat` back-to-back calls), and each round's results (of the last call)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    results = []
    for r in range(rounds):
        outputs = {}
        for name, fn in sides.items():
            seconds, outputs[name] = timed(lambda fn=fn: [fn() for _ in range(repeat)][-1], device)
            times[name].append(seconds / repeat)
            print(
                f"  {label}round {r + 1}/{rounds}: {name} {seconds / repeat * 1000:.1f} ms", file=sys.stderr, flush=True
            )
        results.append(outputs)
    return times, results


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def seconds_list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def round_ratios(times: dict[str, list[float]], slower: str, faster: str) -> str:
    """The ratio of two sides in each round (the runs of a round are next to each other in time), and their median:
    on a noisy machine it can differ from the ratio of the two sides' medians, and both deserve to be seen."""
    ratios = [a / b for a, b in zip(times[slower], times[faster], strict=True)]
    median = f"; median of the rounds {statistics.median(ratios):.2f}" if ratios else ""
    return ", ".join(f"{r:.2f}" for r in ratios) + median


def parameters(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"


# --- reporting -------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The processor's name ("Intel(R) Xeon(R) Processor", "AMD EPYC 9R45"...): matrix libraries pick their
    kernels by vendor, so figures from different processors are not comparable."""
    from transformer_networks.backends.onednn import cpuinfo

    return cpuinfo("model name") or platform.processor() or platform.machine()


def as_users_run(model: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """One of our models as the library runs it on `device`: on a CPU with `use_onednn` (oneDNN products in the mode
    this CPU gets, `backends.onednn`), elsewhere as it is. Only for our models: the peers run as their users get
    them."""
    if torch.device(device).type == "cpu":
        from transformer_networks.backends import use_onednn

        use_onednn(model)
    return model


def machine() -> str:
    from transformer_networks import __version__

    text = (
        f"{platform.system()} {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), transformer-networks {__version__}, Python "
        f"{platform.python_version()}"
    )
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def versions(*packages: str) -> str:
    """', transformers 5.23.0, x-transformers 2.31.10' for the packages installed (an empty string for none)."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return "".join(f", {v}" for v in found)


def command_text(script: str) -> str:
    """The command that ran this benchmark, as BENCHMARKS.md shows it."""
    tag = os.environ.get("TN_BENCH_TAG", "")
    return (f"TN_BENCH_TAG={shlex.quote(tag)} " if tag else "") + shlex.join(["python", script, *sys.argv[1:]])


def footer(script: str, extra_versions: str = "") -> list[str]:
    return [
        f"- Machine: {machine()}{extra_versions}; {date.today().isoformat()}",
        "- Command:",
        "  ```",
        f"  {command_text(script)}",
        "  ```",
    ]


def write_block(name: str, text: str, path: Path = ROOT / "BENCHMARKS.md", script: str = "train_tasks") -> None:
    """Replace the block `script:name` of BENCHMARKS.md (appended at the end the first time); with TN_BENCH_TAG set,
    the block `script:name@tag`."""
    tag = os.environ.get("TN_BENCH_TAG", "")  # e.g. "intel": another kind of machine's blocks, kept beside
    if tag:
        name = f"{name}@{tag}"
    begin, end = f"<!-- BEGIN {script}:{name} -->", f"<!-- END {script}:{name} -->"
    block = f"{begin}\n{text}\n{end}"
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if begin in current:
        current = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, current, flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(current, encoding="utf-8")
