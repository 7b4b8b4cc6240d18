"""Checkpoint storage: the one place that writes and reads model directories (a training run's checkpoints and
`save_pretrained`'s layout). Nothing pickled, ever.

A checkpoint directory:

    config.json              the model's TransformerConfig
    model.safetensors        the weights (tied tensors stored once)
    tokenizer.json           the (target) tokenizer, Hugging Face `tokenizers` format
    source_tokenizer.json    translation with separate vocabularies: the source side
    task.json                the task, its labels (classification), the data it was trained on, the step
    train_config.json        the TrainConfig of the run
    training_state.json      with the last checkpoint only: counters, schedule and RNG states, optimizer settings
    training_state.safetensors                            and the optimizer's tensors

    checksums.json           the size and SHA-256 of every other file, checked on load

A run directory holds `best/` and `last/` checkpoints beside `metrics.jsonl`; wherever a checkpoint is expected a
run directory means its best checkpoint. A checkpoint is written to a temporary directory, its files and the
directory fsynced, then renamed into place, so a kill at any instant leaves the previous one intact; a truncated or
corrupted file is caught by its checksum on load.

`save_pretrained(model, dir)` writes a model alone: `config.json`, `model.json` (which model class),
`model.safetensors`, and `tokenizer.json` when the model has a tokenizer; `load_model_dir(dir)` reads it back.
The model class of a checkpoint comes from its task (`tasks.TASKS[task].family`, a key of `models.MODELS`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from .config import TrainConfig, TransformerConfig
from .data.tokenizer import TextTokenizer
from .errors import UserError, read_json_object
from .models import MODELS, ModelBase, TransformerClassifier, model_class
from .tasks import TASKS, Task

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_model_dir",
    "load_training_state",
    "recover_interrupted_save",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_pretrained",
    "task_model_class",
    "verify_checksums",
    "write_checksums",
]


FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint directory is missing, incomplete or unreadable."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode) and everything needed to feed it text."""

    path: Path
    task: str
    model: ModelBase
    config: TransformerConfig
    train_config: TrainConfig
    tokenizer: TextTokenizer  # the target side for translation
    source_tokenizer: TextTokenizer  # the same object unless the run used separate vocabularies
    labels: list[str] = field(default_factory=list)  # classification: class index -> label text
    data: dict[str, Any] = field(default_factory=dict)  # how the training data was specified (task.json "data")
    step: int = 0

    def make_task(self) -> Task:
        """The checkpoint's `Task`, with the tokenizers, labels and settings of its training run."""
        return TASKS[self.task](self.train_config, self.tokenizer, self.source_tokenizer, self.labels)


def task_model_class(task: str) -> type[ModelBase]:
    """The model class a task trains."""
    return MODELS[TASKS[task].family]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory's best checkpoint (its last when there is no best yet)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    if (path / "model.safetensors").exists():
        return path
    for name in ("best", "last"):
        if (path / name / "model.safetensors").exists():
            return path / name
    raise CheckpointError(f"{path}: not a checkpoint (no model.safetensors) nor a run directory (no best/ or last/)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    return read_json_object(path, CheckpointError)


CHECKSUMS = "checksums.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path) -> None:
    """Record the size and SHA-256 of every file of a checkpoint directory in checksums.json."""
    files = {
        f.name: {"size": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(directory.iterdir())
        if f.is_file() and f.name != CHECKSUMS
    }
    (directory / CHECKSUMS).write_text(json.dumps(files, indent=2) + "\n", encoding="utf-8")


def verify_checksums(directory: Path) -> None:
    """Every file listed in checksums.json is there, whole and unchanged; a clear error otherwise. Checkpoints
    written before checksums existed (no checksums.json) are accepted as they are."""
    if not (directory / CHECKSUMS).exists():
        return
    for name, expected in _read_json(directory / CHECKSUMS).items():
        f = directory / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from the checkpoint")
        size = f.stat().st_size
        if size != expected.get("size"):
            raise CheckpointError(
                f"{f}: {size:,} bytes, expected {expected.get('size'):,} (truncated or partly written)"
            )
        if _sha256(f) != expected.get("sha256"):
            raise CheckpointError(f"{f}: checksum mismatch (the file is corrupted)")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (or a run directory's best one). Only JSON and safetensors are read: no pickle.
    Every file is checked against checksums.json first."""
    path = resolve_checkpoint(path)
    verify_checksums(path)
    info = _read_json(path / "task.json")
    task = info.get("task")
    if task not in TASKS:
        raise CheckpointError(f"{path / 'task.json'}: unknown task {task!r}")
    try:
        config = TransformerConfig.from_dict(_read_json(path / "config.json"))
        train_config = TrainConfig.from_dict(_read_json(path / "train_config.json"))
    except UserError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = task_model_class(task)(config)
    try:
        missing, unexpected = load_model(model, path / "model.safetensors", strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: cannot load weights: {e}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path / 'model.safetensors'}: does not match config.json "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    labels = list(info.get("labels", []))
    if labels and isinstance(model, TransformerClassifier):  # a classifier names its classes
        model.labels = labels
    tokenizer = TextTokenizer.load(path / "tokenizer.json")
    source = path / "source_tokenizer.json"
    source_tokenizer = TextTokenizer.load(source) if source.exists() else tokenizer
    # What `tokenizer(texts)` adds for this model: <cls> first for a classifier, <eos> after a translator's source.
    if model.family == "classifier":
        tokenizer.adds = ("cls",)
    elif model.family == "seq2seq":
        source_tokenizer.adds = ("eos",)
    return Checkpoint(
        path,
        task,
        model.to(device).eval(),
        config,
        train_config,
        tokenizer,
        source_tokenizer,
        labels=labels,
        data=dict(info.get("data", {})),
        step=int(info.get("step", 0)),
    )


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for f in directory.iterdir():
        _fsync(f)
    _fsync(directory)


def recover_interrupted_save(path: str | Path) -> None:
    """Finish a `save_checkpoint` that was killed between its two renames: `path` is then missing, the previous
    checkpoint sits at `path.old` and the new one, complete and fsynced, at `path.tmp`. The new one takes its place
    when its checksums hold, else the previous one comes back."""
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    if path.exists() or not old.exists():
        return
    try:
        complete = (tmp / CHECKSUMS).exists()
        if complete:
            verify_checksums(tmp)  # raises CheckpointError where a checksum fails
    except CheckpointError:
        complete = False
    try:
        (tmp if complete else old).rename(path)
    except FileNotFoundError:  # another process of a distributed run recovered it first
        return
    _fsync(path.parent)
    if complete:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    task: str,
    config: TransformerConfig,
    train_config: TrainConfig,
    tokenizer: TextTokenizer,
    source_tokenizer: TextTokenizer | None = None,
    labels: list[str] | None = None,
    data: dict[str, Any] | None = None,
    step: int = 0,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically: into a temporary sibling, then renamed over `path`."""
    path = Path(path)
    recover_interrupted_save(path)  # never delete the only whole copy below
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    config.to_json(tmp / "config.json")
    train_config.to_json(tmp / "train_config.json")
    save_model(model, str(tmp / "model.safetensors"))
    tokenizer.save(tmp / "tokenizer.json")
    if source_tokenizer is not None and source_tokenizer is not tokenizer:
        source_tokenizer.save(tmp / "source_tokenizer.json")
    info = {"format": FORMAT_VERSION, "task": task, "step": step, "labels": labels or [], "data": data or {}}
    (tmp / "task.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if training_state is not None:
        tensors, meta = training_state["tensors"], training_state["meta"]
        save_file(tensors, str(tmp / "training_state.safetensors"))
        (tmp / "training_state.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_checksums(tmp)
    _fsync_tree(tmp)
    old = path.with_name(path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    _fsync(path.parent)  # the rename itself reaches the disk
    if old.exists():
        shutil.rmtree(old)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The tensors and JSON written by `pack_training_state` (no pickle)."""
    path = Path(path)
    meta = _read_json(path / "training_state.json")
    try:
        tensors = load_file(str(path / "training_state.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / 'training_state.safetensors'}: cannot load: {e}") from None
    return {"tensors": tensors, "meta": meta}


# --- a model alone: save_pretrained's layout ---------------------------------------------------------------------


def save_pretrained(model: nn.Module, path: str | Path, *, tokenizer: Any = None) -> Path:
    """Write `model` (and `tokenizer`, or the model's own `tokenizer` attribute) in our layout."""
    name = type(model).__name__
    if model_class(name) is None:
        raise UserError(f"save_pretrained takes one of {', '.join(c.__name__ for c in MODELS.values())}, not {name}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cast(ModelBase, model).cfg.to_json(path / "config.json")  # one of MODELS (its class name is, above)
    info: dict[str, Any] = {"format": 1, "class": name}
    if isinstance(model, TransformerClassifier) and model.labels:  # a classifier's class names
        info["labels"] = list(model.labels)
    (path / "model.json").write_text(json.dumps(info) + "\n", encoding="utf-8")
    save_model(model, str(path / "model.safetensors"))
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(str(path / "tokenizer.json"))
    return path


def load_model_dir(path: str | Path) -> ModelBase:
    """A model written by `save_pretrained` (without its tokenizer)."""
    path = Path(path)
    info = read_json_object(path / "model.json")
    name = info.get("class")
    cls = model_class(name) if isinstance(name, str) else None
    if cls is None:
        raise UserError(f"{path / 'model.json'}: unknown model class {name!r}")
    cfg = TransformerConfig.from_json(path / "config.json")
    model = cls(cfg)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise UserError(f"{path / 'model.safetensors'}: cannot load weights: {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise UserError(
            f"{path / 'model.safetensors'}: does not match config.json (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    labels = info.get("labels")
    if isinstance(labels, list) and isinstance(model, TransformerClassifier) and len(labels) == cfg.n_classes:
        model.labels = [str(x) for x in labels]
    return model
