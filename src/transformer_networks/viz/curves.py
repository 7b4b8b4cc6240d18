"""Learning curves of a run, drawn from its `metrics.jsonl` to a PNG.

Three panels side by side: training and validation loss, the task's validation metric, and the learning rate,
each against the optimizer step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError

# The validation metric to draw for each task, in order of preference.
METRICS = ("bleu", "exact_match", "accuracy", "macro_f1", "perplexity")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (each a JSON object with at least "step" and "split")."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise UserError(f"{path}: no such file (is {run_dir} a training run directory?)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {number}: invalid JSON: {e.msg}") from None
        if not isinstance(record, dict) or "step" not in record or "split" not in record:
            raise UserError(f"{path}: line {number}: expected an object with 'step' and 'split'")
        records.append(record)
    if not records:
        raise UserError(f"{path}: no records yet")
    return records


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's learning curves to `out` (default RUN_DIR/curves.png) and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    train = [r for r in records if r["split"] == "train" and "loss" in r and "lr" in r]
    valid = [r for r in records if r["split"] == "valid" and "loss" in r]
    metric = next((m for m in METRICS if any(m in r for r in valid)), None)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if valid:
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], marker="o", label="validation")
    ax.set(title="loss (cross-entropy, nats/token)", xlabel="step")
    ax.legend()
    ax = axes[1]
    if metric:
        ax.plot([r["step"] for r in valid if metric in r], [r[metric] for r in valid if metric in r], marker="o")
    ax.set(title=f"validation {metric or 'metric'}", xlabel="step")
    ax = axes[2]
    if train:
        ax.plot([r["step"] for r in train], [r["lr"] for r in train])
    ax.set(title="learning rate", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(str(Path(run_dir).resolve().name))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
