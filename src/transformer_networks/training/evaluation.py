"""Evaluating a checkpoint on data: its training run's own splits, or files given now.

evaluate(checkpoint)                          the test split of built-in data, else the validation data
evaluate(checkpoint, split="valid")           the run's validation data (given, or its seeded held-out part)
evaluate(checkpoint, DataSpec(data=[path]))   every example of a file in the task's format
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import metrics as metrics_lib
from ..backends.onednn import use_onednn
from ..checkpoints import Checkpoint, load_checkpoint
from ..data.builtin import load_builtin
from ..data.splits import SPLITS, DataSpec, run_split
from ..device import pick_device
from ..errors import UserError
from ..tasks import ClassificationTask, TranslationTask, get_task

__all__ = ["SPLITS", "Evaluation", "evaluate", "evaluate_ensemble", "run_split"]


@dataclass
class Evaluation:
    checkpoint: Path
    task: str
    data: str  # what was evaluated, in words
    examples: int  # how many were scored (characters for a language model)
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)  # a few predictions next to their references
    dropped: int = 0  # examples left out: empty, or longer than the run's max_len


def _load(checkpoint: str | Path, device: torch.device) -> Checkpoint:
    ckpt = load_checkpoint(checkpoint, device)
    if device.type == "cpu":
        use_onednn(ckpt.model)
    return ckpt


def evaluate(
    checkpoint: str | Path,
    data: DataSpec | None = None,
    *,
    split: str | None = None,
    device: str = "auto",
    samples: int = 0,
    log: Any = None,
    num_beams: int = 4,
    length_penalty: float = 0.6,
    predictions: str | Path | None = None,
    null_threshold: float | None = None,
) -> Evaluation:
    """The task's metrics for a checkpoint (or a run directory's best checkpoint).

    Without `data`: `split` ("test" by default, "valid" or "train") of the run's own data. With `data` files:
    every example in them (no split applies). With `data` = builtin:NAME: its "test" (default) or "train" split.
    Translations for BLEU use beam search, the paper's beam 4 and length penalty 0.6 by default (num_beams=1:
    greedy, as during training). `predictions`: also write the task's predictions file there (question answering:
    {question id: answer text}, the official SQuAD evaluation's input); `null_threshold` replaces the run's.
    """
    dev = pick_device(device)
    ckpt = _load(checkpoint, dev)
    task = ckpt.make_task()
    if isinstance(task, TranslationTask):
        task.num_beams, task.length_penalty = num_beams, length_penalty
    if null_threshold is not None:  # question answering (SQuAD v2)
        task.cfg = task.cfg.replace(null_threshold=null_threshold)
    raw, description = _examples(ckpt, data, split)
    encoded = task.encode(raw)
    if encoded.kept_raw is not None:  # examples (or questions), some perhaps left out
        n, dropped = len(encoded.kept_raw), len(raw) - len(encoded.kept_raw)
        if log is not None:
            task.describe(description, encoded, log)
    else:  # a text: its characters
        n, dropped = task.size(raw), 0
    metrics = task.evaluate(ckpt.model, encoded, dev)
    if predictions is not None:
        written = task.prediction_file(ckpt.model, encoded, dev)
        _write_json(Path(predictions), written)
    shown = task.samples(ckpt.model, raw, samples, dev) if samples > 0 and raw else []
    return Evaluation(ckpt.path, ckpt.task, description, n, metrics, shown, dropped=dropped)


def _write_json(path: Path, value: Any) -> None:
    """Write JSON to `path` through a temporary sibling, so an existing file is replaced whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"--predictions {path}: cannot write: {e.strerror}") from None


def evaluate_ensemble(
    checkpoints: list[str | Path], data: DataSpec, *, split: str | None = None, device: str = "auto", log: Any = None
) -> Evaluation:
    """Classification metrics of several checkpoints together: the mean of their class probabilities decides.

    Members trained with different seeds err differently, so their average is usually more accurate than any one
    of them. Each member reads the text with its own tokenizer (a seed changes the held-out part and so the
    vocabulary); all must share the labels. The data must be given (`--data`): each run's own held-out part
    differs. The loss is the negative log of the averaged probability of the true class.
    """
    if len(checkpoints) < 2:
        raise UserError("an ensemble needs at least two checkpoints")
    if not data.given:
        raise UserError("evaluate an ensemble on data given with --data: each run's own validation part differs")
    dev = pick_device(device)
    members: list[tuple[Checkpoint, ClassificationTask]] = []  # (checkpoint, task) of each member
    for checkpoint in checkpoints:
        ckpt = _load(checkpoint, dev)
        task = ckpt.make_task()
        if not isinstance(task, ClassificationTask):
            raise UserError(f"{ckpt.path}: ensembles are for classification checkpoints; this one is {ckpt.task}")
        if members and task.labels != members[0][1].labels:
            raise UserError(
                f"{ckpt.path}: labels {task.labels} differ from {members[0][0].path}'s {members[0][1].labels}"
            )
        members.append((ckpt, task))
    first = members[0][0]
    raw, description = _examples(first, data, split)
    probabilities, kept = [], None
    for ckpt, task in members:
        encoded = task.encode(raw)  # each member with its own tokenizer
        if kept is None:
            kept, labels = encoded.kept_raw, [y for _, y in encoded.examples]
            if log is not None:
                task.describe(description, encoded, log)
        elif encoded.kept_raw != kept:
            raise UserError(
                f"{ckpt.path} keeps other examples within its max_len than {first.path}: the members "
                "of an ensemble must read the same examples"
            )
        probabilities.append(task.probabilities(ckpt.model, encoded, dev))
    if not labels:
        raise UserError("no evaluation example fits max_len")
    mean = torch.stack(probabilities).mean(0)  # (N, classes)
    predictions = mean.argmax(-1).tolist()
    true_class = mean[torch.arange(len(labels)), torch.tensor(labels)]
    accuracy = metrics_lib.accuracy(predictions, labels)
    scores = {
        "loss": float(-true_class.clamp_min(1e-12).log().mean()),
        "accuracy": accuracy,
        "macro_f1": metrics_lib.macro_f1(predictions, labels),
        "token_accuracy": accuracy,
    }
    return Evaluation(
        first.path,
        "classification",
        f"{description}, ensemble of {len(members)} checkpoints",
        len(labels),
        scores,
        dropped=len(raw) - len(labels),
    )


def _examples(ckpt: Checkpoint, data: DataSpec | None, split: str | None) -> tuple[list, str]:
    """The raw examples to evaluate a checkpoint on, and their description (see `evaluate`)."""
    task = get_task(ckpt.task)
    if data is not None and data.given:
        if data.builtin is not None:
            ds = load_builtin(data.builtin, seed=0)
            if ds.task != ckpt.task:
                raise UserError(f"builtin:{ds.name} is a {ds.task} dataset; this checkpoint is {ckpt.task}")
            if split not in (None, "test", "train"):
                raise UserError(
                    f"builtin:{ds.name} has train and test splits; for the run's own validation data leave out --data"
                )
            raw = list(ds.train) if split == "train" else list(ds.test)
            description = f"builtin:{ds.name} {split or 'test'} split"
        else:
            if split not in (None, "test"):
                raise UserError(
                    "--split applies to the run's own data or built-in data, not to files given "
                    "with --data (all of a file is evaluated)"
                )
            raw = task.read(data.data, ckpt.train_config, data.source_file, data.target_file)
            description = data.describe()
        return raw, description
    return run_split(task, DataSpec.from_dict(ckpt.data), ckpt.train_config, split or "test")
