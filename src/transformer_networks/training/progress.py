"""Progress reporting on stderr: a tqdm bar on a terminal, plain lines otherwise (logs, CI), nothing when quiet."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


RECENT_STEPS = 20  # tokens/s and the ETA are measured over this many recent steps


class Progress:
    """`update(step, loss=, lr=, tokens=)` after every optimizer step; `log(message)` for anything else. The
    tokens/s shown and the ETA come from the last RECENT_STEPS steps, not the average since the start (which
    counts tokenizer training, compilation and evaluations)."""

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
        self.recent: deque[tuple[float, int, int]] = deque(maxlen=RECENT_STEPS + 1)  # (time, step, tokens so far)
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

    def rates(self) -> tuple[float, float]:
        """(tokens per second, seconds per step) over the recent steps (since the start before the second)."""
        now, step, tokens = self.recent[-1]
        then, first, before = self.recent[0] if len(self.recent) > 1 else (self.start, 0, 0)
        seconds = max(now - then, 1e-9)
        return (tokens - before) / seconds, seconds / max(step - first, 1)

    def eta(self, step: int) -> float | None:
        elapsed = time.perf_counter() - self.start
        remaining = []
        if self.total:
            per_step = self.rates()[1] if self.recent else elapsed / max(step, 1)
            remaining.append(per_step * (self.total - step))
        if self.max_seconds:
            remaining.append(self.max_seconds - elapsed)
        return min(remaining) if remaining else None

    def update(self, step: int, *, loss: float, lr: float, tokens: int) -> None:
        self.tokens += tokens
        if self.quiet:
            return
        now = time.perf_counter()
        self.recent.append((now, step, self.tokens))
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            rate = self.rates()[0]
            self.bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.2e} {rate:,.0f} tok/s", refresh=False)
            return
        if step % self.every and step != self.total:
            return
        rate = self.rates()[0]
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
