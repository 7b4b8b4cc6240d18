"""The progress line: tokens/s and the ETA of the recent steps, not the average since the start (which counts
tokenizer training, compilation and evaluations: a GPU run printed 41,446 tok/s where its steps ran at ~480,000)."""

import io

from transformer_networks.training import progress
from transformer_networks.training.progress import RECENT_STEPS, Progress


def test_the_rate_and_eta_are_those_of_the_recent_steps(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    bar = Progress(100, every=10, stream=out)
    clock[0] += 30.0  # a slow start: tokenizer training, compilation
    for step in range(1, 41):
        clock[0] += 1.0 if step <= 10 else 0.25  # then ten slow steps, then fast ones (exact binary fractions)
        bar.update(step, loss=1.0, lr=1e-3, tokens=100)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("step 40/100 ") and " 400 tok/s " in last, last  # 100 tokens per 0.25 s
    assert last.endswith("eta 0m15s"), last  # 60 steps left at 0.25 s each
    assert RECENT_STEPS < 30  # the window holds only fast steps by step 40
