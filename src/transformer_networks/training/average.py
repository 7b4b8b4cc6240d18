"""Checkpoint averaging: the mean of several checkpoints' weights, as the paper reports its results (Section 6.1:
the base models average the last 5 checkpoints, written at 10-minute intervals; the big models the last 20).

    transformer-networks average RUN/step-0009000 RUN/step-0009500 RUN/step-0010000 --out RUN/averaged
    transformer-networks average RUN --last 5 --out RUN/averaged      # the run's last 5 kept checkpoints

Every checkpoint must have the same task and model config; the result takes its tokenizers, labels and training
settings from the last one given. (`train --set keep_checkpoints=N` keeps the last N evaluation checkpoints.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoints import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from ..errors import UserError

STEP_PREFIX = "step-"


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's kept evaluation checkpoints (RUN/step-NNNNNNN), oldest first."""
    return sorted(
        p
        for p in Path(run_dir).glob(f"{STEP_PREFIX}*")
        if not p.name.endswith((".tmp", ".old")) and (p / "model.safetensors").exists()
    )


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a checkpoint at `out` whose every floating-point weight is the mean of the checkpoints' weights."""
    if len(paths) < 2:
        raise UserError("averaging needs at least two checkpoints")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (--overwrite replaces it)")
    resolved = [resolve_checkpoint(p) for p in paths]
    if out.resolve() in {p.resolve() for p in resolved}:
        raise UserError(f"{out} is one of the checkpoints to average: write the average elsewhere")
    last = load_checkpoint(resolved[-1])
    sums: dict[str, torch.Tensor] = {}
    for path in resolved:
        ck = last if path == resolved[-1] else load_checkpoint(path)  # checksums and weights checked
        if ck.task != last.task or ck.config != last.config:
            raise CheckpointError(
                f"{path}: another task or model config than {resolved[-1]}: only checkpoints "
                f"of one model can be averaged"
            )
        for name, value in ck.model.state_dict().items():
            if value.is_floating_point():
                sums[name] = sums[name] + value.double() if name in sums else value.double()
    state = last.model.state_dict()
    averaged = {
        name: (sums[name] / len(resolved)).to(value.dtype) if name in sums else value for name, value in state.items()
    }
    last.model.load_state_dict(averaged)
    return save_checkpoint(
        out,
        last.model,
        task=last.task,
        config=last.config,
        train_config=last.train_config,
        tokenizer=last.tokenizer,
        source_tokenizer=last.source_tokenizer,
        labels=last.labels,
        data=last.data,
        step=last.step,
    )


def average_run(run_dir: str | Path, last: int, out: str | Path, *, overwrite: bool = False) -> tuple[Path, int]:
    """The mean of a run's last `last` kept checkpoints (RUN/step-*): (the averaged checkpoint, how many)."""
    kept = step_checkpoints(run_dir)
    if len(kept) < last:
        raise UserError(
            f"{run_dir}: {len(kept)} kept checkpoint(s) (step-*), fewer than --last {last} "
            f"(train with --set keep_checkpoints=N to keep them)"
        )
    return average_checkpoints(kept[-last:], out, overwrite=overwrite), last
