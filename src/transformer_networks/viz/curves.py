"""Learning curves of a run, drawn from its `metrics.jsonl` to a PNG.

Up to three panels side by side: training and validation loss, the task's validation metric, and the learning
rate, each against the optimizer step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError

# The validation metric to draw for each task, in order of preference.
METRICS = ("bleu", "exact_match", "f1", "accuracy", "macro_f1", "perplexity")
FEW_POINTS = 20  # a series of at most this many points gets a marker at each


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


Series = tuple[str | None, list[float], list[float]]  # label (None: the panel's only one), steps, values


def curve_panels(records: list[dict[str, Any]]) -> list[tuple[str, list[Series]]]:
    """The panels `plot_curves` draws from metrics.jsonl records, each (title, series): the loss (training and
    validation), the task's validation metric, the learning rate; a series without points, and a panel without
    series, are left out."""
    train = [r for r in records if r["split"] == "train" and "loss" in r and "lr" in r]
    valid = [r for r in records if r["split"] == "valid" and "loss" in r]
    metric = next((m for m in METRICS if any(m in r for r in valid)), None)

    def series(label: str | None, rows: list[dict[str, Any]], key: str) -> Series:
        rows = [r for r in rows if key in r]
        return label, [r["step"] for r in rows], [r[key] for r in rows]

    panels = [
        ("loss (cross-entropy, nats/token)", [series("train", train, "loss"), series("validation", valid, "loss")]),
        (f"validation {metric}", [series(None, valid, metric)] if metric else []),
        ("learning rate", [series(None, train, "lr")]),
    ]
    kept = [(title, [s for s in lines if s[1]]) for title, lines in panels]
    return [(title, lines) for title, lines in kept if lines]


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's learning curves to `out` (default RUN_DIR/curves.png) and return its path. A panel with no
    data is left out; a series of few points is drawn with a marker at each (one point is a line of no length)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    panels = curve_panels(read_metrics(run_dir))
    if not panels:
        raise UserError(f"{Path(run_dir) / 'metrics.jsonl'}: no loss or learning rate to draw yet")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels, strict=True):
        for label, steps, values in lines:
            ax.plot(steps, values, marker="o" if len(steps) <= FEW_POINTS else None, label=label)
        if any(label for label, *_ in lines):
            ax.legend()
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
    fig.suptitle(str(Path(run_dir).resolve().name))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
