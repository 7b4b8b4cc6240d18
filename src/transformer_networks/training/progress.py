"""Progress reporting on stderr: a tqdm bar on a terminal, plain lines otherwise (logs, CI), nothing when quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """`update(step, loss=, lr=, tokens=)` after every optimizer step; `log(message)` for anything else."""

    def __init__(
        self,
        total_steps: int | None,
        *,
        quiet: bool = False,
        every: int = 50,
        stream: TextIO | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.every = every
        self.total = total_steps
        self.max_seconds = max_seconds
        self.start = time.perf_counter()
        self.last_time, self.tokens = self.start, 0
        self.bar = None
        if not quiet and self.stream.isatty():
            self.bar = tqdm(total=total_steps, file=self.stream, unit="step", dynamic_ncols=True, leave=True)

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def eta(self, step: int) -> float | None:
        elapsed = time.perf_counter() - self.start
        remaining = []
        if self.total:
            remaining.append(elapsed / max(step, 1) * (self.total - step))
        if self.max_seconds:
            remaining.append(self.max_seconds - elapsed)
        return min(remaining) if remaining else None

    def update(self, step: int, *, loss: float, lr: float, tokens: int) -> None:
        self.tokens += tokens
        if self.quiet:
            return
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            rate = self.tokens / max(now - self.start, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.2e} {rate:,.0f} tok/s", refresh=False)
            return
        if step % self.every and step != self.total:
            return
        rate = self.tokens / max(now - self.start, 1e-9)
        eta = self.eta(step)
        total = f"/{self.total}" if self.total else ""
        eta_text = f" eta {format_duration(eta)}" if eta is not None else ""
        print(
            f"step {step}{total} loss {loss:.4f} lr {lr:.2e} {rate:,.0f} tok/s "
            f"elapsed {format_duration(now - self.start)}{eta_text}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
