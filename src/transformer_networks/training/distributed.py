"""Data-parallel training across processes with PyTorch's DistributedDataParallel, launched by `torchrun`.

    torchrun --nproc_per_node=4 -m transformer_networks train translation --data ... --out runs/mt

`torchrun` sets RANK, LOCAL_RANK and WORLD_SIZE; without them (WORLD_SIZE unset or 1) nothing here does anything
and training is the single-process loop. With them: NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), gloo on
CPU. Every optimizer step takes grad_accum x WORLD_SIZE batches; process r trains on batches r, r + W, ... of
them and DDP averages the gradients, so the step equals a single process with grad_accum x WORLD_SIZE (the tests
check the losses agree within 1e-5). Only rank 0 evaluates, logs and writes checkpoints; decisions to stop are
shared so that every process leaves the loop at the same step. For an exact resume, rank 0's `last/` also holds
every process's RNG states and, under FSDP, the optimizer state gathered from its shards.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


class Distributed:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group; the device this process trains on."""
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            # Rank 0 evaluates alone while the others wait in a collective: allow a long evaluation.
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))
        return device

    def wrap(self, model: nn.Module, device: torch.device, *, fsdp: bool = False) -> nn.Module:
        """DDP (every process holds the whole model), or with fsdp PyTorch's FSDP2: each Transformer layer, then
        the rest, sharded over the processes (parameters, gradients and optimizer state), gathered layer by layer
        when it runs. FSDP2 changes `model` in place; build the optimizer afterwards."""
        if not self.enabled:
            return model
        if fsdp:
            from torch.distributed.fsdp import fully_shard

            from ..nn.layers import TransformerLayer

            for layer in [m for m in model.modules() if isinstance(m, TransformerLayer)]:
                fully_shard(layer)
            fully_shard(model)
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def gather_into(self, whole: nn.Module, sharded: nn.Module, *, fsdp: bool) -> None:
        """FSDP: copy the sharded model's full weights into rank 0's whole model (every process takes part)."""
        if not (self.enabled and fsdp):
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.is_main:
            whole.load_state_dict(state)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, fsdp: bool) -> dict | None:
        """The optimizer's whole state_dict for rank 0's checkpoint (None on the other processes). Under FSDP the
        state is sharded: every process takes part in gathering it, and it comes back keyed by parameter index
        like an unsharded optimizer's."""
        if not (self.enabled and fsdp):
            return optimizer.state_dict() if self.is_main else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        # Any: the values of an optimizer state_dict (state: parameter -> its tensors, param_groups: dicts)
        full: dict[str, Any] = get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_main:
            return None
        index = {name: i for i, name in enumerate(_parameter_names(model, optimizer))}
        return {
            "state": {index[name]: value for name, value in full["state"].items()},
            "param_groups": [{**g, "params": [index[name] for name in g["params"]]} for g in full["param_groups"]],
        }

    def load_optimizer_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, *, fsdp: bool
    ) -> None:
        """Load a whole optimizer state_dict (as `optimizer_state` returns it); under FSDP each process keeps its
        shard of it."""
        if not (self.enabled and fsdp):
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = _parameter_names(model, optimizer)
        full: dict[str, Any] = {  # Any: as above
            "state": {names[i]: value for i, value in state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
        }
        set_optimizer_state_dict(model, optimizer, full, options=StateDictOptions(full_state_dict=True))

    def rng_states(self, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """Every process's torch RNG states, in rank order, on rank 0 ([] elsewhere and with one process): each
        process draws its own dropout masks, so an exact resume gives each its own states back."""
        if not self.enabled:
            return []
        mine = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(device)
        link = device if device.type == "cuda" else torch.device("cpu")  # NCCL moves GPU tensors only
        gathered: dict[str, list[torch.Tensor]] = {}
        for kind, state in mine.items():
            parts = [torch.empty_like(state, device=link) for _ in range(self.world)]
            dist.all_gather(parts, state.to(link))
            gathered[kind] = [part.cpu() for part in parts]
        if not self.is_main:
            return []
        return [{kind: gathered[kind][rank] for kind in gathered} for rank in range(self.world)]

    def shard(self, group: list) -> list:
        """This process's batches of one optimizer step's batches."""
        return group[self.rank :: self.world] if self.enabled else group

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of a number over the processes (the logged loss of a step)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t) / self.world

    def means(self, values: Tensor) -> list[float]:
        """Each value's mean over the processes (the losses of the steps since the last read), read back to the
        host in one transfer."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values.tolist()

    def any(self, *flags: bool, device: torch.device) -> list[bool]:
        """Each flag True on every process when it is True on any (a signal, or a stop rank 0 decided); one
        all-reduce for all of them."""
        return [bool(x) for x in self.maximum(*map(int, flags), device=device)]

    def maximum(self, *values: int, device: torch.device) -> list[int]:
        """Each value's largest over the processes (the same list on every process); one all-reduce for all."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.long, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [int(x) for x in t.tolist()]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group once every process is done (rank 0 may still be evaluating)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in its own order: index i of its state_dict is names[i]."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
