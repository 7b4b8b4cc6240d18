"""One training loop for the three tasks.

    train(task, out, data=..., model_config=..., train_config=...)
        read the data -> train tokenizers -> encode -> build the model -> loop:
            batches of the epoch -> (accumulated) forward/backward -> clip -> optimizer and schedule step
            every eval_every steps: the task's metrics on the validation data -> metrics.jsonl,
                                    last/ checkpoint, best/ when the metric improved, early stopping
        until max_steps, max_epochs, max_minutes or the patience runs out.

Nothing is written to `out` until the data has been read and the model built, so bad input never touches an
existing directory; a directory that already holds files is refused unless `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import TransformerConfig
from ..errors import ConfigError, UserError
from .average import STEP_PREFIX, step_checkpoints
from .checkpoint import (
    MODEL_CLASSES,
    optimizer_state_dict,
    pack_training_state,
    restore_training_state,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import Distributed
from .progress import Progress, format_duration
from .schedules import make_scheduler
from .tasks import DataSpec, Task, build_tokenizers, describe_filtering, make_task, read_splits, sort_labels

RUN_FILES = ("run.json", "metrics.jsonl", "curves.png", "best", "last", "best.tmp", "last.tmp", "best.old", "last.old")


class TrainingError(UserError):
    """Training cannot go on (for example the loss stopped being a finite number)."""


@dataclass
class TrainResult:
    out: Path
    task: str
    steps: int
    stop_reason: str
    seconds: float
    best: dict[str, float] = field(default_factory=dict)  # validation metrics of the best checkpoint
    last: dict[str, float] = field(default_factory=dict)  # validation metrics at the end
    parameters: int = 0
    interrupted: str | None = None  # "SIGINT" / "SIGTERM" when a signal stopped the run (its last/ is current)


def pick_device(name: str = "auto") -> torch.device:
    """auto: cuda, then mps, then cpu. A named device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. auto: bf16 on a CUDA device that supports it, else float32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp32":
        return None
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA device (this run is on {device.type}); use bf16 or fp32")
    return torch.bfloat16 if name == "bf16" else torch.float16


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW (weight decay on matrices only, not on biases and norm gains), or the paper's Adam.

    On CPU and CUDA the fused kernel updates every parameter in one call (the same arithmetic as the loop over
    parameters; on 2 CPU cores it cut the AdamW step of a 0.8M-parameter model from 2.1 ms to 0.55 ms).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    if cfg.optimizer == "paper":  # Section 5.3: beta1 0.9, beta2 0.98, epsilon 1e-9
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9, fused=fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output path that is a file, or a directory that already holds files unless overwriting."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a training run" if (out / "run.json").exists() else "files"
        raise UserError(f"--out {out}: already holds {what}; choose another directory or pass --overwrite")


def prepare_output(out: Path, overwrite: bool) -> None:
    """Check the output directory, then clear a previous run's files from it (other files stay)."""
    check_output(out, overwrite)
    if out.exists():
        for name in [*RUN_FILES, *(p.name for p in out.glob(f"{STEP_PREFIX}*"))]:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def resolve_model_config(base: TransformerConfig, settings: dict[str, Any], user_set: set[str]) -> TransformerConfig:
    """`base` with the fields the data decides. The user's max_seq_len is kept when it is long enough."""
    values = base.to_dict()
    for name, value in settings.items():
        if name == "max_seq_len" and name in user_set:
            if values[name] < value:
                raise ConfigError(f"max_seq_len={values[name]} is shorter than the data needs ({value}); "
                                  f"raise it or lower max_len / block_size")
            continue
        values[name] = value
    return TransformerConfig.from_dict(values)


def _absolute(value: Any) -> Any:
    """Paths in a DataSpec made absolute (built-in names and None stay as they are)."""
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    if isinstance(value, str) and not value.startswith("builtin:"):
        return str(Path(value).resolve())
    return value


def _tokens_in(batch: dict[str, torch.Tensor], pad_id: int | None) -> int:
    ids = batch.get("ids", batch.get("src"))
    n = int((ids != pad_id).sum()) if pad_id is not None else ids.numel()
    if "tgt_out" in batch:
        n += int((batch["tgt_out"] != pad_id).sum())
    return n


def train(
    task_name: str,
    out: str | Path,
    *,
    data: DataSpec | None = None,
    model_config: TransformerConfig | None = None,
    train_config: TrainConfig | None = None,
    model_fields_set: set[str] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    resume: bool = False,
    init: str | Path | None = None,
) -> TrainResult:
    """Train a model for `task_name` ("lm", "translation" or "classification") and write the run to `out`.

    `model_config` gives the architecture (default: the "small" preset); its vocabulary sizes, number of classes
    and max_seq_len are set from the data, except a max_seq_len named in `model_fields_set`.

    resume: continue the run in `out` from its last checkpoint, with the run's own settings, data, tokenizers,
    weights, optimizer, schedule, scaler, RNG states and data position: the steps that follow are the steps the
    uninterrupted run would have taken. (The other arguments, except quiet/log, are then ignored.)
    SIGINT or SIGTERM during training saves the last checkpoint at the current step and stops; a second Ctrl-C
    stops at once.

    init: start from pretrained weights (`from_pretrained`: a checkpoint of ours or a Hugging Face directory) with
    their architecture and their tokenizer instead of a new model and tokenizer; a classifier whose number of
    classes differs from the data's gets a fresh head. `model_config` is then ignored.
    """
    out = Path(out)
    resumed = None
    if resume:
        resumed = _resume_point(out)
        task_name, data = resumed.run["task"], DataSpec.from_dict(resumed.run["data"])
        train_config = TrainConfig.from_dict(resumed.run["train"])
    if task_name not in MODEL_CLASSES:
        raise UserError(f"unknown task {task_name!r}; choose one of {', '.join(MODEL_CLASSES)}")
    cfg = train_config or TrainConfig()
    cfg.check_stopping()
    spec = data or DataSpec()
    ranks = Distributed()  # under torchrun: one of several processes; else a no-op
    quiet = quiet or not ranks.is_main  # only rank 0 reports
    if not resume and ranks.is_main:
        check_output(out, overwrite)  # refuse before any work is done
    progress_log = log or (lambda message: None if quiet else print(message, file=sys.stderr, flush=True))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ranks.start(pick_device(cfg.device))
    amp_dtype = pick_precision(cfg.precision, device)

    # --- data and tokenizers ---
    spec = DataSpec.from_dict({k: _absolute(v) for k, v in spec.to_dict().items()})  # evaluate runs from anywhere
    splits = read_splits(task_name, spec, cfg)
    kind = "pretrained" if init is not None else cfg.tokenizer or splits.default_tokenizer
    if kind == "pretrained" and init is None and resumed is None:
        raise UserError("tokenizer=pretrained is the tokenizer of a model given with --init PATH")
    cfg = cfg.replace(tokenizer=kind)
    pretrained = None
    if resumed is not None:  # the run's own tokenizers and labels, not retrained
        ck = resumed.checkpoint
        tokenizer, source_tokenizer, labels = ck.tokenizer, ck.source_tokenizer, ck.labels or None
    elif init is not None:  # the pretrained model's own tokenizer
        labels = sort_labels({y for _, y in splits.train}) if task_name == "classification" else None
        pretrained = _pretrained_model(init, task_name, len(labels) if labels else None)
        tokenizer = source_tokenizer = pretrained.tokenizer
    else:
        tokenizer, source_tokenizer = build_tokenizers(task_name, splits.train, kind, cfg)
        labels = sort_labels({y for _, y in splits.train}) if task_name == "classification" else None
    task = make_task(task_name, cfg, tokenizer, source_tokenizer, labels, char_level=kind == "char")
    train_enc = task.encode(splits.train)
    describe_filtering("training data", train_enc, cfg.max_len, progress_log)
    if not train_enc.examples:
        raise UserError("no training example fits max_len; raise max_len or pass --truncate")
    valid_raw = splits.valid if task_name == "lm" or cfg.eval_examples is None else splits.valid[: cfg.eval_examples]
    valid_enc = task.encode(valid_raw)  # once for every evaluation, and checked now: bad data must fail early
    describe_filtering("validation data", valid_enc, cfg.max_len, progress_log)
    if not valid_enc.examples:
        raise UserError(f"no validation example from {splits.valid_source} fits max_len={cfg.max_len}")
    task.batches(valid_enc)  # raises when the text is too short for a block or an example exceeds --max-tokens
    n_train = len(train_enc.examples) if task_name != "lm" else len(train_enc.examples[0])
    n_valid = len(splits.valid) if task_name != "lm" else sum(map(len, splits.valid))
    unit = "tokens" if task_name == "lm" else "examples"
    vocab = f"{tokenizer.vocab_size:,}" + (f" target, {source_tokenizer.vocab_size:,} source"
                                           if source_tokenizer is not tokenizer else "")
    progress_log(f"data: {n_train:,} training {unit}, validation {n_valid:,} "
                 f"{'characters' if task_name == 'lm' else 'examples'} from {splits.valid_source}; "
                 f"{kind} tokenizer, vocabulary {vocab}" + (f", {len(labels)} classes" if labels else ""))

    # --- model, optimizer, schedule ---
    seed_everything(cfg.seed)
    if resumed is not None:
        model_cfg = resumed.checkpoint.config
    elif pretrained is not None:
        model_cfg = pretrained.cfg
        settings = task.model_settings()
        if settings["max_seq_len"] > model_cfg.max_seq_len:
            raise UserError(f"--init {init}: the model takes at most {model_cfg.max_seq_len} positions, the data "
                            f"settings need {settings['max_seq_len']}; lower max_len (or block_size)")
        if task_name == "translation" and model_cfg.pad_id != settings["pad_id"]:  # the masks and loss use pad_id
            raise UserError(f"--init {init}: the model's pad_id is {model_cfg.pad_id}, its tokenizer's padding id "
                            f"is {settings['pad_id']}")
    else:
        model_cfg = resolve_model_config(model_config or TransformerConfig.from_preset("small"),
                                         task.model_settings(), model_fields_set or set())
    model = MODEL_CLASSES[task_name](model_cfg).to(device)
    if resumed is not None:
        model.load_state_dict(resumed.checkpoint.model.state_dict())
    elif pretrained is not None:
        model.load_state_dict(pretrained.state_dict())
        del pretrained
    if cfg.fsdp and not ranks.enabled:
        raise UserError("fsdp shards the model over several processes: launch with torchrun --nproc_per_node=N")
    if cfg.activation_checkpointing:
        model.set_activation_checkpointing(True)
    # Under FSDP the training model's parameters are shards; rank 0 evaluates and saves a whole copy.
    eval_model = MODEL_CLASSES[task_name](model_cfg).to(device) if cfg.fsdp and ranks.is_main else model
    train_model = ranks.wrap(model, device, fsdp=cfg.fsdp)
    train_model = torch.compile(train_model) if cfg.compile else train_model
    if ranks.enabled:  # the same initial weights everywhere, but each process its own dropout masks
        torch.manual_seed(cfg.seed + ranks.rank)
    first_epoch = task.batches(train_enc, epoch=0)  # built once: counted here, trained on in the loop
    per_step = cfg.grad_accum * ranks.world  # batches per optimizer step, over all processes
    if ranks.enabled and len(first_epoch) < per_step:
        raise UserError(f"an epoch has {len(first_epoch)} batch(es), fewer than the {per_step} one optimizer step "
                        f"takes (grad_accum x processes): use more data or smaller batches")
    # Several processes drop an epoch's last incomplete step (each process needs its share); one keeps it.
    steps_per_epoch = len(first_epoch) // per_step if ranks.enabled else math.ceil(len(first_epoch) / per_step)
    limits = [n for n in (cfg.max_steps, cfg.max_epochs and math.ceil(cfg.max_epochs * steps_per_epoch)) if n]
    step_limit = min(limits) if limits else None
    if cfg.schedule == "cosine" and step_limit is None:
        raise ConfigError("the cosine schedule needs max_steps or max_epochs to know where it ends")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.schedule, warmup=cfg.warmup, total_steps=step_limit,
                               d_model=model_cfg.d_model, min_ratio=cfg.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    progress_log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters, on {device}"
                 f"{' ' + str(amp_dtype).removeprefix('torch.') if amp_dtype else ''}; "
                 f"{steps_per_epoch:,} steps per epoch" + (f", {step_limit:,} steps" if step_limit else ""))

    if cfg.schedule == "noam":
        peak = cfg.lr * model_cfg.d_model**-0.5 * cfg.warmup**-0.5
        progress_log(f"schedule noam: lr={cfg.lr:g} multiplies the paper's formula (1.0 = the paper's rates); "
                     f"peak learning rate {peak:.2e} at step {cfg.warmup}")

    # --- the run directory ---
    metrics_path = out / "metrics.jsonl"
    counters: dict[str, Any] = {}
    if resumed is not None:
        counters = restore_training_state(resumed.state, None, scheduler, scaler, rank=ranks.rank, device=device)
        ranks.load_optimizer_state(model, optimizer, optimizer_state_dict(resumed.state), fsdp=cfg.fsdp)
        if ranks.is_main:
            _truncate_metrics(metrics_path, counters["step"])  # records written after the checkpoint are redone
        progress_log(f"resuming {out} from step {counters['step']} (epoch {counters['epoch']}, batch "
                     f"{counters['position']})")
    elif ranks.is_main:
        try:
            prepare_output(out, overwrite)
        except OSError as e:
            raise UserError(f"--out {out}: cannot write: {e.strerror}") from None
        run_info = {"version": __version__, "task": task_name, "data": spec.to_dict(),
                    "model": model_cfg.to_dict(), "train": cfg.to_dict(), "labels": labels or [],
                    "init": _absolute(str(init)) if init is not None else None}
        (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
        metrics_path.write_text("", encoding="utf-8")
    ranks.barrier()  # the run directory exists before any process goes on

    def record(entry: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    snapshot: dict[str, Any] = {}

    def gather() -> None:
        # Every process takes part before rank 0 evaluates and saves: FSDP gathers the whole weights into
        # eval_model and the optimizer state, and each process hands over its RNG states.
        ranks.gather_into(eval_model, model, fsdp=cfg.fsdp)
        snapshot["optimizer"] = ranks.optimizer_state(model, optimizer, fsdp=cfg.fsdp)
        snapshot["rng"] = ranks.rng_states(device)

    def checkpoint(name: str, step: int, counters: dict[str, Any] | None = None) -> None:
        state = None
        if counters is not None:  # last/: what a resumed run needs
            state = pack_training_state(snapshot["optimizer"], scheduler, counters, scaler, rank_rng=snapshot["rng"])
        try:
            save_checkpoint(out / name, eval_model, task=task_name, config=model_cfg, train_config=cfg,
                            tokenizer=tokenizer, source_tokenizer=source_tokenizer, labels=labels,
                            data=spec.to_dict(), step=step, training_state=state)
        except OSError as e:  # a full disk, a directory made read-only: the previous checkpoint is untouched
            shutil.rmtree(out / f"{name}.tmp", ignore_errors=True)
            kept = f"the previous {out / name} is intact" if (out / name).exists() else "no earlier one exists"
            raise TrainingError(f"step {step}: cannot write the checkpoint {out / name}: "
                                f"{e.strerror or e}; {kept}") from None

    progress = Progress(step_limit, quiet=quiet, every=cfg.log_every,
                        max_seconds=cfg.max_minutes * 60 if cfg.max_minutes else None)
    start = time.perf_counter()
    step, epoch, best_value, best, last, stale = 0, 0, None, {}, {}, 0
    position = 0  # the next batch group of the epoch
    if counters:
        step, epoch, position = counters["step"], counters["epoch"], counters["position"]
        best_value, best, stale = counters["best_value"], counters.get("best", {}), counters["stale"]
    interval_loss, interval_steps = counters.get("interval_loss", 0.0), counters.get("interval_steps", 0)
    stop_reason = None
    if resumed is not None and counters.get("processes", 1) != ranks.world:
        raise UserError(f"--resume {out}: the run trained with {counters.get('processes', 1)} process(es), this is "
                        f"{ranks.world}: the data position would mean other batches; resume with as many")
    if resumed is not None and step_limit is not None and step >= step_limit:
        raise UserError(f"--resume {out}: the run already finished ({step} of {step_limit} steps)")
    if resumed is not None and cfg.patience is not None and stale >= cfg.patience:
        raise UserError(f"--resume {out}: the run already stopped early (patience {cfg.patience})")

    def state_counters() -> dict[str, Any]:
        return {"step": step, "epoch": epoch, "position": position, "best_value": best_value, "best": best,
                "stale": stale, "interval_loss": interval_loss, "interval_steps": interval_steps,
                "processes": ranks.world}

    def evaluate(step: int) -> None:
        nonlocal best_value, best, last, stale, stop_reason
        eval_model.eval()
        with autocast():
            values = task.evaluate(eval_model, valid_enc, device)
        eval_model.train()
        last = values
        record({"step": step, "epoch": round(step / steps_per_epoch, 3), "split": "valid",
                "seconds": round(time.perf_counter() - start, 2), **values})
        improved = task.better(values[task.metric], best_value)
        if improved:
            best_value, best, stale = values[task.metric], values, 0
        else:
            stale += 1
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        progress.log(f"eval step {step}: {shown}" + (" (best)" if improved else ""))
        if improved:  # best/ first: last/'s counters must never name a best that best/ does not hold
            checkpoint("best", step)
        checkpoint("last", step, state_counters())
        if cfg.keep_checkpoints:  # weights only, for `average`; the oldest beyond N are removed
            checkpoint(f"{STEP_PREFIX}{step:07d}", step)
            for old in step_checkpoints(out)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old)
        if not improved and cfg.patience is not None and stale >= cfg.patience:
            stop_reason = f"no better {task.metric} in {stale} evaluations (patience)"

    model.train()
    evaluated_at = step if resumed is not None else -1
    stop = _StopSignals()
    skipped: list[int] = []  # steps whose batch had a non-finite loss and was skipped
    try:  # the signal handlers go back whatever happens
        while stop_reason is None:
            batches = first_epoch if epoch == 0 else task.batches(train_enc, epoch=epoch)
            epoch_at_start = epoch
            for first in range(position, len(batches), per_step):
                group = batches[first : first + per_step]
                if ranks.enabled and len(group) < per_step:
                    break  # the epoch's incomplete last step: not every process would have a batch
                local = ranks.shard(group)
                optimizer.zero_grad(set_to_none=True)
                step_loss, tokens = 0.0, 0
                for i, batch in enumerate(local):
                    tokens += _tokens_in(batch, tokenizer.pad_id)
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                    # Under DDP, gradients are averaged across processes on the last micro-batch only.
                    sync = contextlib.nullcontext() if i == len(local) - 1 or not ranks.enabled or cfg.fsdp \
                        else train_model.no_sync()
                    with sync:
                        with autocast():
                            loss = task.loss(train_model, batch) / len(local)
                        scaler.scale(loss).backward()
                    step_loss += float(loss.detach())
                step_loss = ranks.mean(step_loss, device)  # the loss of the whole step, the same on every process
                if not math.isfinite(step_loss):
                    skipped.append(step + 1)
                    if len(skipped) <= cfg.skip_nonfinite:  # drop this batch's gradients; the step is taken again
                        progress.log(f"step {step + 1}: the loss is {step_loss}; batch skipped ({len(skipped)} of at "
                                     f"most {cfg.skip_nonfinite})")
                        optimizer.zero_grad(set_to_none=True)
                        continue
                    saved = f"the last checkpoint is {out / 'last'}" if evaluated_at >= 0 else "no checkpoint was saved"
                    raise TrainingError(f"step {step + 1}: the loss is {step_loss}; stopping ({saved}); "
                                        f"try a lower lr, more warmup or clip_norm" + (
                                            f"; {len(skipped) - 1} bad batch(es) skipped before, at steps "
                                            f"{', '.join(map(str, skipped[:-1]))}" if len(skipped) > 1 else ""))
                if cfg.clip_norm is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                scaler.step(optimizer)
                scaler.update()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                step += 1
                position = first + per_step
                if position + (per_step - 1 if ranks.enabled else 0) >= len(batches):
                    epoch, position = epoch + 1, 0
                interval_loss, interval_steps = interval_loss + step_loss, interval_steps + 1
                progress.update(step, loss=step_loss, lr=lr, tokens=tokens)
                if step % cfg.log_every == 0 and ranks.is_main:
                    record({"step": step, "split": "train", "loss": interval_loss / interval_steps, "lr": lr,
                            "seconds": round(time.perf_counter() - start, 2)})
                    interval_loss, interval_steps = 0.0, 0
                out_of_time = cfg.max_minutes is not None and time.perf_counter() - start >= cfg.max_minutes * 60
                # rank 0's clock decides for every process; a signal to any process stops them all
                out_of_time, signalled = ranks.any(out_of_time and ranks.is_main, stop.signal is not None,
                                                   device=device)
                if step_limit is not None and step >= step_limit:
                    stop_reason = f"reached {step} steps"
                elif out_of_time:
                    stop_reason = f"reached the time limit of {cfg.max_minutes:g} minutes"
                if signalled and not stop_reason:
                    stop.signal = stop.signal or "SIGTERM"  # another process was signalled
                    gather()
                    if ranks.is_main:
                        checkpoint("last", step, state_counters())
                    stop_reason = (f"{stop.signal} at step {step}; the last checkpoint holds it: resume with "
                                   f"`transformer-networks train --resume {out}`")
                    break
                if step % cfg.eval_every == 0 or stop_reason:
                    gather()
                    if ranks.is_main:
                        evaluate(step)
                    evaluated_at = step
                    if ranks.any(stop_reason is not None, device=device)[0]:  # patience, decided by rank 0
                        stop_reason = stop_reason or "rank 0 stopped the run"
                if stop_reason:
                    break
            if not stop_reason and epoch == epoch_at_start:  # the epoch ended on a skipped or dropped batch group
                epoch += 1
            position = 0
    finally:
        stop.restore()
    ranks.close()
    progress.close()
    seconds = time.perf_counter() - start
    if skipped:
        progress_log(f"skipped {len(skipped)} batch(es) with a non-finite loss, at steps "
                     f"{', '.join(map(str, skipped))}")
    best_text = f"{best_value:.4g}" if best_value is not None else "not evaluated yet"
    progress_log(f"stopped: {stop_reason} after {format_duration(seconds)}; best {task.metric} {best_text}; "
                 f"checkpoints in {out}")
    return TrainResult(out, task_name, step, stop_reason, seconds, best, last, model.num_parameters(),
                       interrupted=stop.signal)


def _pretrained_model(init: str | Path, task_name: str, n_classes: int | None) -> nn.Module:
    """`train --init`: the pretrained model for `task_name`, its tokenizer as `model.tokenizer` (a TextTokenizer),
    a classifier's head resized (freshly initialised) to `n_classes`."""
    import dataclasses

    from ..data.tokenizer import TextTokenizer
    from ..pretrained import from_pretrained

    model = from_pretrained(init, **({"n_classes": n_classes} if n_classes else {}))  # options: HF only
    if not isinstance(model, MODEL_CLASSES[task_name]):
        raise UserError(f"--init {init}: a {type(model).__name__}, but {task_name} trains a "
                        f"{MODEL_CLASSES[task_name].__name__}")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise UserError(f"--init {init}: no tokenizer.json beside the weights; the data must be tokenized as the "
                        f"model was trained")
    if not isinstance(tokenizer, TextTokenizer):
        tokenizer = TextTokenizer.from_pretrained_tokenizer(tokenizer, f"{init}/tokenizer.json")
    if tokenizer.vocab_size > model.cfg.target_vocab_size:
        raise UserError(f"--init {init}: the tokenizer has {tokenizer.vocab_size:,} tokens, the model "
                        f"{model.cfg.target_vocab_size:,}")
    if n_classes is not None and model.cfg.n_classes != n_classes:
        model.cfg = dataclasses.replace(model.cfg, n_classes=n_classes)
        model.head = nn.Linear(model.cfg.d_model, n_classes)
        nn.init.xavier_uniform_(model.head.weight)
        nn.init.zeros_(model.head.bias)
    model.tokenizer = tokenizer
    return model


@dataclass
class _ResumePoint:
    run: dict[str, Any]  # run.json
    checkpoint: Any  # the last checkpoint, loaded
    state: dict[str, Any]  # its training state


def _resume_point(out: Path) -> _ResumePoint:
    """What `train(resume=True)` starts from: the run's settings and its last checkpoint."""
    from .checkpoint import load_checkpoint, load_training_state, recover_interrupted_save

    if not (out / "run.json").exists():
        raise UserError(f"--resume {out}: not a training run (no run.json)")
    recover_interrupted_save(out / "last")  # killed while replacing last/
    if not (out / "last" / "training_state.json").exists():
        raise UserError(f"--resume {out}: no last checkpoint to resume from (the run stopped before its first "
                        f"checkpoint); start it again")
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{out / 'run.json'}: unreadable: {e}") from None
    checkpoint = load_checkpoint(out / "last")
    state = load_training_state(out / "last")
    if "position" not in state["meta"]["counters"]:
        raise UserError(f"{out / 'last'}: written by an older version without the data position; cannot resume "
                        f"exactly")
    return _ResumePoint(run, checkpoint, state)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the records of steps after `step` (written before a crash, redone by the resumed run)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):  # a line cut short by the crash
            continue
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class _StopSignals:
    """SIGINT / SIGTERM during training: note it, so the loop saves a checkpoint at the end of its step and
    stops. The handlers go back to the defaults at once, so a second Ctrl-C interrupts immediately."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.restore()
        print(f"\n{self.signal}: saving a checkpoint at the end of this step (again to stop at once)",
              file=sys.stderr, flush=True)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def load_task(checkpoint: Any) -> Task:
    """The `Task` of a loaded checkpoint (same tokenizers, labels and settings as its training run)."""
    kind = checkpoint.train_config.tokenizer
    return make_task(checkpoint.task, checkpoint.train_config, checkpoint.tokenizer, checkpoint.source_tokenizer,
                     checkpoint.labels, char_level=kind == "char")
