"""Experiment tracking: the scalars of metrics.jsonl, and the run's settings, also sent where `report_to` says.

    csv          RUN/metrics.csv: one row per scalar, `step,split,name,value` (appended; a resumed run first drops the
                 rows after its checkpoint, as metrics.jsonl does)
    tensorboard  RUN/tensorboard/: event files (`tensorboard --logdir RUN/tensorboard`), scalars named SPLIT/NAME and
                 the settings as text; needs `pip install tensorboard`
    wandb        Weights & Biases, project $WANDB_PROJECT (default transformer-networks), files under RUN/wandb;
                 WANDB_MODE=offline works with no account or network (`wandb sync` uploads later); needs
                 `pip install wandb`

`Trackers.open` checks the names and that their packages import before training starts; `log` takes the same
records as metrics.jsonl (a dict with step and split; every other number is a scalar).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import uuid
from pathlib import Path
from typing import Any

from ..config import report_to_names
from ..errors import UserError

__all__ = ["Trackers"]


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if k not in ("step", "split") and isinstance(v, int | float) and not isinstance(v, bool)
    }


class _Csv:
    def __init__(self, run: Path, resumed_at: int | None) -> None:
        self.path = run / "metrics.csv"
        if resumed_at is not None and self.path.exists():  # drop what comes after the checkpoint: it is redone
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.reader(f)]
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([rows[0], *(r for r in rows[1:] if int(r[0]) <= resumed_at)])
        else:
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(["step", "split", "name", "value"])

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            for name, value in _scalars(record).items():
                w.writerow([record["step"], record["split"], name, repr(value)])

    def close(self) -> None:
        pass


class _TensorBoard:
    def __init__(self, run: Path, resumed_at: int | None, settings: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier writer logged after the checkpoint a run resumes from.
        purge = resumed_at + 1 if resumed_at is not None else None
        self.writer = SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=purge)
        if resumed_at is None:
            self.writer.add_text("settings", f"```\n{json.dumps(settings, indent=2)}\n```", 0)

    def log(self, record: dict[str, Any]) -> None:
        for name, value in _scalars(record).items():
            self.writer.add_scalar(f"{record['split']}/{name}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run: Path, resumed_at: int | None, settings: dict[str, Any]) -> None:
        import wandb

        (run / "wandb").mkdir(exist_ok=True)
        id_file = run / "wandb" / "run-id"  # a resumed run goes on in the same W&B run
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "transformer-networks"),
            name=run.resolve().name,
            id=run_id,
            resume="allow",
            dir=str(run),
            config=settings,
        )

    def log(self, record: dict[str, Any]) -> None:
        self.run.log({f"{record['split']}/{k}": v for k, v in _scalars(record).items()}, step=record["step"])

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The trackers of one run (rank 0 only): `log` each metrics.jsonl record, `close` at the end."""

    def __init__(self, trackers: list[Any]) -> None:
        self.trackers = trackers

    @staticmethod
    def check(report_to: str | None) -> None:
        """Before anything is written: each tracker's package is installed."""
        for name in report_to_names(report_to):
            if name != "csv" and importlib.util.find_spec(name) is None:
                raise UserError(f"--report-to {name} needs the {name} package: pip install {name}")

    @classmethod
    def open(cls, report_to: str | None, run: Path, settings: dict[str, Any], resumed_at: int | None) -> Trackers:
        """The trackers `report_to` names, for the run directory `run`; `resumed_at`: the step a resumed run
        goes on from (None for a new run)."""
        trackers: list[Any] = []
        for name in report_to_names(report_to):
            if name == "csv":
                trackers.append(_Csv(run, resumed_at))
            elif name == "tensorboard":
                trackers.append(_TensorBoard(run, resumed_at, settings))
            else:
                trackers.append(_Wandb(run, resumed_at, settings))
        return cls(trackers)

    def log(self, record: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log(record)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []
