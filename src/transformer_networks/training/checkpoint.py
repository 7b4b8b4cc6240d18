"""Checkpoints: one directory per checkpoint, nothing pickled.

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
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from ..config import TransformerConfig
from ..data.tokenizer import TextTokenizer
from ..errors import UserError, read_json_object
from ..models import Seq2SeqTransformer, TransformerClassifier, TransformerLM
from .config import TrainConfig

FORMAT_VERSION = 1
MODEL_CLASSES = {"lm": TransformerLM, "translation": Seq2SeqTransformer, "classification": TransformerClassifier}


class CheckpointError(UserError):
    """A checkpoint directory is missing, incomplete or unreadable."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode) and everything needed to feed it text."""

    path: Path
    task: str
    model: nn.Module
    config: TransformerConfig
    train_config: TrainConfig
    tokenizer: TextTokenizer  # the target side for translation
    source_tokenizer: TextTokenizer  # the same object unless the run used separate vocabularies
    labels: list[str] = field(default_factory=list)  # classification: class index -> label text
    data: dict[str, Any] = field(default_factory=dict)  # how the training data was specified (task.json "data")
    step: int = 0


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
    files = {f.name: {"size": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(directory.iterdir()) if f.is_file() and f.name != CHECKSUMS}
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
            raise CheckpointError(f"{f}: {size:,} bytes, expected {expected.get('size'):,} "
                                  f"(truncated or partly written)")
        if _sha256(f) != expected.get("sha256"):
            raise CheckpointError(f"{f}: checksum mismatch (the file is corrupted)")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (or a run directory's best one). Only JSON and safetensors are read: no pickle.
    Every file is checked against checksums.json first."""
    path = resolve_checkpoint(path)
    verify_checksums(path)
    info = _read_json(path / "task.json")
    task = info.get("task")
    if task not in MODEL_CLASSES:
        raise CheckpointError(f"{path / 'task.json'}: unknown task {task!r}")
    try:
        config = TransformerConfig.from_dict(_read_json(path / "config.json"))
        train_config = TrainConfig.from_dict(_read_json(path / "train_config.json"))
    except UserError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = MODEL_CLASSES[task](config)
    try:
        missing, unexpected = load_model(model, path / "model.safetensors", strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: cannot load weights: {e}") from None
    if missing or unexpected:
        raise CheckpointError(f"{path / 'model.safetensors'}: does not match config.json "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    tokenizer = TextTokenizer.load(path / "tokenizer.json")
    source = path / "source_tokenizer.json"
    source_tokenizer = TextTokenizer.load(source) if source.exists() else tokenizer
    return Checkpoint(path, task, model.to(device).eval(), config, train_config, tokenizer, source_tokenizer,
                      labels=list(info.get("labels", [])), data=dict(info.get("data", {})),
                      step=int(info.get("step", 0)))


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
        complete = (tmp / CHECKSUMS).exists() and verify_checksums(tmp) is None
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
    path: str | Path, model: nn.Module, *, task: str, config: TransformerConfig, train_config: TrainConfig,
    tokenizer: TextTokenizer, source_tokenizer: TextTokenizer | None = None, labels: list[str] | None = None,
    data: dict[str, Any] | None = None, step: int = 0, training_state: dict[str, Any] | None = None,
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


# --- training state: optimizer, scheduler, RNGs, counters, as safetensors + JSON --------------------------------


def pack_training_state(optimizer: torch.optim.Optimizer | dict[str, Any], scheduler: Any,
                        counters: dict[str, Any], scaler: torch.amp.GradScaler | None = None,
                        rank_rng: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Everything a resumed run needs besides the model, split into tensors and JSON.

    optimizer: the optimizer, or its whole state_dict (a sharded run gathers it first). rank_rng: under several
    processes, every process's torch RNG states (rank order; `Distributed.rng_states`), since each draws its own
    dropout masks; this process's own states are always saved as `rng.torch` / `rng.cuda.*`."""
    opt = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    for rank, states in enumerate(rank_rng or []):
        if rank > 0:  # rank 0 is this process, saved above at this very moment
            tensors.update({f"rng.rank{rank}.{kind}": value.cpu() for kind, value in states.items()})
    np_state = np.random.get_state()
    meta = {
        "counters": counters,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": {
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        },
    }
    return {"tensors": tensors, "meta": meta}


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The tensors and JSON written by `pack_training_state` (no pickle)."""
    path = Path(path)
    meta = _read_json(path / "training_state.json")
    try:
        tensors = load_file(str(path / "training_state.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / 'training_state.safetensors'}: cannot load: {e}") from None
    return {"tensors": tensors, "meta": meta}


def optimizer_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's state_dict saved in a training state (`pack_training_state`)."""
    tensors, meta = state["tensors"], state["meta"]
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer"]["scalars"].items():
        opt_state.setdefault(int(index), {}).update(values)
    return {"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]}


def restore_training_state(state: dict[str, Any], optimizer: torch.optim.Optimizer | None, scheduler: Any,
                           scaler: torch.amp.GradScaler | None = None, *, rank: int = 0,
                           device: torch.device | None = None) -> dict[str, Any]:
    """Put the optimizer (unless None: the caller loads `optimizer_state_dict(state)` itself), scheduler, scaler
    and RNG states back; returns the counters. rank: this process's rank in a run of several processes, whose
    own RNG states are restored (on `device` for its GPU's)."""
    tensors, meta = state["tensors"], state["meta"]
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state_dict(state))
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if rank > 0:
        if f"rng.rank{rank}.torch" not in tensors:
            raise CheckpointError(f"the training state holds no RNG state for rank {rank}")
        torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
        if f"rng.rank{rank}.cuda" in tensors and device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(tensors[f"rng.rank{rank}.cuda"], device)
    else:
        torch.set_rng_state(tensors["rng.torch"])
        cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        cuda_states = [tensors[k] for k in cuda_keys]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
    py = meta["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = meta["rng"]["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), npy[2], npy[3], npy[4]))
    return meta["counters"]
