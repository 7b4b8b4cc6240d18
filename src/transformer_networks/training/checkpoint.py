"""The training state a resumed run needs besides the model (optimizer, schedule, scaler, RNG states, counters),
packed into tensors and JSON for a checkpoint (`checkpoints.save_checkpoint(training_state=...)`) and restored
from one. The checkpoint files themselves are written and read by `transformer_networks.checkpoints`, whose names
are kept importable from here."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ..checkpoints import (
    CHECKSUMS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    recover_interrupted_save,
    resolve_checkpoint,
    save_checkpoint,
    task_model_class,
    verify_checksums,
    write_checksums,
)

__all__ = [
    "CHECKSUMS",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_training_state",
    "optimizer_state_dict",
    "pack_training_state",
    "recover_interrupted_save",
    "resolve_checkpoint",
    "restore_training_state",
    "save_checkpoint",
    "task_model_class",
    "verify_checksums",
    "write_checksums",
]


def pack_training_state(
    optimizer: torch.optim.Optimizer | dict[str, Any],
    scheduler: Any,
    counters: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    rank_rng: list[dict[str, torch.Tensor]] | None = None,
) -> dict[str, Any]:
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
    assert isinstance(np_state, tuple)  # legacy (the default): the tuple of numpy's global MT19937 generator
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


def restore_training_state(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None = None,
    *,
    rank: int = 0,
    device: torch.device | None = None,
) -> dict[str, Any]:
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
