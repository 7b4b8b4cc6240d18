"""One training loop for every task.

    train(task, out, data=..., model_config=..., train_config=...)      the facade: picks how the run starts, then
        Trainer(start, out).run()
            prepare_data   read the splits, tokenizers (trained, the run's own, or the pretrained model's), encode
            build_model    the model (new, resumed or pretrained weights), optimizer, schedule, scaler
            open_run_dir   run.json and metrics.jsonl (or, resuming, the saved training state put back)
            loop           batches of the epoch -> train_step (accumulated forward/backward, clip, optimizer and
                           schedule step) -> after_step: log, stop rules (steps, time, signals), and every
                           eval_every steps evaluate (metrics.jsonl, last/ checkpoint, best/ when the metric
                           improved, patience)
        until max_steps, max_epochs, max_minutes or the patience runs out.

How a run starts is one of three `Start`s: `FreshStart` (new tokenizers and model from a config), `ResumeStart`
(a run directory's own settings, tokenizers, weights and training state: the steps that follow are the steps the
uninterrupted run would have taken) and `InitStart` (pretrained weights with their architecture and tokenizer).
The run's counters are one `RunState`, which `last/` saves and a resumed run starts from.

Nothing is written to `out` until the data has been read and the model built, so bad input never touches an
existing directory; a directory that already holds files is refused unless `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..backends.onednn import use_onednn
from ..checkpoints import (
    Checkpoint,
    load_checkpoint,
    load_training_state,
    recover_interrupted_save,
    save_checkpoint,
    task_model_class,
)
from ..config import BEST_BY_METRIC_EXAMPLES, NO_LIMIT_WARMUP, TrainConfig, TransformerConfig
from ..data.splits import DataSpec, Splits, read_splits
from ..data.tokenizer import TextTokenizer
from ..device import pick_device, pick_precision
from ..errors import ConfigError, UserError
from ..models import ModelBase
from ..pretrained import from_pretrained
from ..tasks import Task, get_task
from ..version import __version__
from .average import STEP_PREFIX, step_checkpoints
from .checkpoint import optimizer_state_dict, pack_training_state, restore_training_state
from .distributed import Distributed
from .examples import stage_examples
from .progress import Progress, format_duration
from .schedules import make_scheduler
from .tracking import Trackers

RUN_FILES = (
    *("run.json", "metrics.jsonl", "curves.png", "best", "last", "best.tmp", "last.tmp", "best.old", "last.old"),
    *("metrics.csv", "tensorboard/events.out.tfevents.*", "wandb/run-id"),  # the trackers' (not their folders)
)
# The loss of each step stays on the device; the losses are read back together every LOSS_READ_EVERY steps, at
# every log line, evaluation and stop. Each read waits for the device to finish the queued steps, so reading after
# every step leaves a GPU idle while the host prepares the next one. A non-finite loss then stops the run up to
# LOSS_READ_EVERY - 1 steps after it happened, still naming its step and before any checkpoint holds it; with
# `skip_nonfinite` every step's loss is read at once, since a bad batch must be skipped before its update.
LOSS_READ_EVERY = 16
AGREE_SECONDS = 1.0  # several processes agree on a signal or the time limit at least this often (`Trainer.agree`)
EXAMPLES_DIR = "examples"  # in-memory examples, written into the run (training/examples.py)
EXAMPLE_FILES = {"train.jsonl", "valid.jsonl"}


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


@dataclass
class RunState:
    """The counters of a run: saved in `last/` (training_state.json's "counters"), restored by a resumed run."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    position: int = 0  # the next batch group of the epoch
    best_value: float | None = None  # the best validation metric so far
    best: dict[str, float] = field(default_factory=dict)  # all metrics of that evaluation
    stale: int = 0  # evaluations since the best one
    interval_loss: float = 0.0  # summed step losses since the last train record of metrics.jsonl
    interval_steps: int = 0
    processes: int = 1  # how many processes trained the run (the data position depends on it)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW (weight decay on matrices only, not on biases and norm gains), or the paper's Adam.

    On CPU and CUDA the fused kernel updates every parameter in one call: the same arithmetic as the loop over
    parameters, in a fraction of the time for the many small tensors of a small model.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    if cfg.optimizer == "paper":  # Section 5.3: beta1 0.9, beta2 0.98, epsilon 1e-9
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9, fused=fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
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
        for target in [p for name in (*RUN_FILES, f"{STEP_PREFIX}*") for p in out.glob(name)]:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        examples = out / EXAMPLES_DIR
        if examples.is_dir() and {p.name for p in examples.iterdir()} <= EXAMPLE_FILES:  # ours: a run's examples
            shutil.rmtree(examples)
    out.mkdir(parents=True, exist_ok=True)


def resolve_model_config(base: TransformerConfig, settings: dict[str, Any], user_set: set[str]) -> TransformerConfig:
    """`base` with the fields the data decides. The user's max_seq_len is kept when it is long enough."""
    values = base.to_dict()
    for name, value in settings.items():
        if name == "max_seq_len" and name in user_set:
            if values[name] < value:
                raise ConfigError(
                    f"max_seq_len={values[name]} is shorter than the data needs ({value}); "
                    f"raise it or lower max_len / block_size"
                )
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


# --- how a run starts -----------------------------------------------------------------------------------------


class Start:
    """What differs between the three ways a run starts. `task_name`, `spec` and `cfg` are the run's task, data and
    training settings; the trainer asks the rest at the point of set-up where it is needed."""

    task_name: str
    spec: DataSpec
    cfg: TrainConfig
    resumed: ResumeStart | None = None

    def tokenizer_kind(self, splits: Splits) -> str:
        return self.cfg.tokenizer or splits.default_tokenizer

    def tokenizers(self, task: type[Task], splits: Splits) -> tuple[TextTokenizer, TextTokenizer, list[str] | None]:
        """(tokenizer, source tokenizer, labels)."""
        raise NotImplementedError

    def model_config(self, task: Task) -> TransformerConfig:
        raise NotImplementedError

    def load_weights(self, model: nn.Module) -> None:
        """Put the starting weights into the freshly built `model` (a new model keeps its initialisation)."""

    def check_output(self, out: Path, overwrite: bool) -> None:
        check_output(out, overwrite)


class FreshStart(Start):
    """A new run: tokenizers trained on the data, a model built from `model_config` with the sizes the data
    decides (vocabulary, classes, max_seq_len; a max_seq_len named in `fields_set` is kept when long enough)."""

    def __init__(
        self,
        task_name: str,
        spec: DataSpec,
        cfg: TrainConfig,
        model_config: TransformerConfig | None,
        fields_set: set[str] | None,
    ) -> None:
        self.task_name, self.spec, self.cfg = task_name, spec, cfg
        self.base_config = model_config or TransformerConfig.from_preset("small")
        self.fields_set = fields_set or set()

    def tokenizers(self, task: type[Task], splits: Splits) -> tuple[TextTokenizer, TextTokenizer, list[str] | None]:
        if self.cfg.tokenizer == "pretrained":
            raise UserError("tokenizer=pretrained is the tokenizer of a model given with --init PATH")
        assert self.cfg.tokenizer is not None  # prepare_data sets the kind (tokenizer_kind) before this call
        tokenizer, source_tokenizer = task.train_tokenizers(splits.train, self.cfg.tokenizer, self.cfg)
        return tokenizer, source_tokenizer, task.labels_of(splits.train)

    def model_config(self, task: Task) -> TransformerConfig:
        return resolve_model_config(self.base_config, task.model_settings(), self.fields_set)


class InitStart(Start):
    """Fine-tuning: the architecture, weights and tokenizer of `init` (`from_pretrained`: a checkpoint of ours or a
    Hugging Face directory); a classifier whose class count differs from the data's gets a fresh head."""

    def __init__(self, task_name: str, spec: DataSpec, cfg: TrainConfig, init: str | Path) -> None:
        self.task_name, self.spec, self.cfg, self.init = task_name, spec, cfg, init
        self.pretrained: ModelBase | None = None

    def tokenizer_kind(self, splits: Splits) -> str:
        return "pretrained"

    def tokenizers(self, task: type[Task], splits: Splits) -> tuple[TextTokenizer, TextTokenizer, list[str] | None]:
        labels = task.labels_of(splits.train)
        self.pretrained = _pretrained_model(self.init, self.task_name, len(labels) if labels else None)
        tokenizer = task.prepare_pretrained_tokenizer(self.pretrained.tokenizer)
        if tokenizer.vocab_size > self.pretrained.cfg.target_vocab_size:  # tokens added (chat's markers)
            self.pretrained = _grow_vocabulary(self.pretrained, tokenizer.vocab_size)
        self.pretrained.tokenizer = tokenizer
        return tokenizer, tokenizer, labels

    def model_config(self, task: Task) -> TransformerConfig:
        assert self.pretrained is not None  # loaded by tokenizers(), which prepare_data calls first
        model_cfg = self.pretrained.cfg
        settings = task.model_settings()
        if settings["max_seq_len"] > model_cfg.max_seq_len:
            raise UserError(
                f"--init {self.init}: the model takes at most {model_cfg.max_seq_len} positions, the "
                f"data settings need {settings['max_seq_len']}; lower max_len (or block_size)"
            )
        if "pad_id" in settings and task.family == "seq2seq" and model_cfg.pad_id != settings["pad_id"]:
            # the masks and the loss use the model's pad_id
            raise UserError(
                f"--init {self.init}: the model's pad_id is {model_cfg.pad_id}, its tokenizer's "
                f"padding id is {settings['pad_id']}"
            )
        return model_cfg

    def load_weights(self, model: nn.Module) -> None:
        assert self.pretrained is not None  # loaded by tokenizers(); dropped here, once used
        model.load_state_dict(self.pretrained.state_dict())
        self.pretrained = None


class ResumeStart(Start):
    """`--resume`: the run in `out` goes on from its last checkpoint with its own settings, data, tokenizers,
    weights, optimizer, schedule, scaler, RNG states and data position."""

    def __init__(self, out: Path, max_steps: int | None = None) -> None:
        """max_steps: a new step limit (extending a finished run); every other setting is the run's own."""
        point = _resume_point(out)
        self.run, self.checkpoint, self.state = point.run, point.checkpoint, point.state
        self.task_name = self.run["task"]
        self.spec = DataSpec.from_dict(self.run["data"])
        self.cfg = TrainConfig.from_dict(self.run["train"])
        self.extended_from: TrainConfig | None = None  # the settings before a new max_steps
        if max_steps is not None and max_steps != self.cfg.max_steps:
            self.extended_from = self.cfg
            self.cfg = self.cfg.replace(max_steps=max_steps)
        self.resumed = self

    def check_output(self, out: Path, overwrite: bool) -> None:
        pass  # the run's own directory

    def tokenizers(self, task: type[Task], splits: Splits) -> tuple[TextTokenizer, TextTokenizer, list[str] | None]:
        ck = self.checkpoint  # the run's own tokenizers and labels, not retrained
        return ck.tokenizer, ck.source_tokenizer, ck.labels or None

    def model_config(self, task: Task) -> TransformerConfig:
        return self.checkpoint.config

    def load_weights(self, model: nn.Module) -> None:
        model.load_state_dict(self.checkpoint.model.state_dict())


# --- the facade -------------------------------------------------------------------------------------------------


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
    max_steps: int | None = None,
    init: str | Path | None = None,
    examples: Iterable[Any] | None = None,
    valid: Iterable[Any] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_eval: Callable[[int, dict[str, float]], bool | None] | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
    loss_fn: Callable[[nn.Module, dict[str, Tensor], Callable[[], Tensor]], Tensor] | None = None,
) -> TrainResult:
    """Train a model for `task_name` (a name of `tasks.TASKS`: "lm", "translation", "classification") and write
    the run to `out`.

    `model_config` gives the architecture (default: the "small" preset); its vocabulary sizes, number of classes
    and max_seq_len are set from the data, except a max_seq_len named in `model_fields_set`.

    resume: continue the run in `out` from its last checkpoint, with the run's own settings, data, tokenizers,
    weights, optimizer, schedule, scaler, RNG states and data position: the steps that follow are the steps the
    uninterrupted run would have taken. (The other arguments, except quiet/log, are then ignored.) max_steps: with
    resume, a new step limit, which extends a finished run; a cosine schedule keeps its length (`schedule_steps`).
    SIGINT or SIGTERM during training saves the last checkpoint at the current step and stops; a second Ctrl-C
    stops at once.

    init: start from pretrained weights (`from_pretrained`: a checkpoint of ours or a Hugging Face directory) with
    their architecture and their tokenizer instead of a new model and tokenizer; a classifier whose number of
    classes differs from the data's gets a fresh head. `model_config` is then ignored.

    examples, valid: the training (and validation) data as Python values instead of `data` (any iterable; the forms
    each task takes are in `training/examples.py`); they are written into the run as RUN/examples/*.jsonl, so that
    `evaluate` and `resume` read them again.

    Callbacks: on_log(record) for each record of metrics.jsonl (training intervals and evaluations); on_eval(step,
    metrics) after each evaluation, where returning True stops the run (after its checkpoints); on_checkpoint(path)
    after each checkpoint is written (best/, last/, step-N/). loss_fn(model, batch, task_loss) replaces the
    training loss of each batch (a dict of tensors: the task's `batches` say which); `task_loss()` computes the
    task's own, so that `lambda model, batch, task_loss: task_loss() + 1e-4 * penalty(model)` adds a term. It is
    not saved with the run: a resumed run needs it given again (`train(..., resume=True, loss_fn=...)`).
    """
    out = Path(out)
    staged = None
    if examples is not None:
        if data is not None and data.given:
            raise UserError("give the data as paths (data=) or as examples (examples=), not both")
        staged = stage_examples(task_name, examples, valid)
        has_valid = (staged / "valid.jsonl").exists()
        data = DataSpec(data=[str(staged / "train.jsonl")], valid=[str(staged / "valid.jsonl")] if has_valid else [])
    elif valid is not None:
        raise UserError("valid= goes with examples=; for files, give DataSpec(valid=[...])")
    try:
        start: Start
        if resume:
            start = ResumeStart(out, max_steps)
        elif init is not None:
            start = InitStart(task_name, data or DataSpec(), train_config or TrainConfig(), init)
        else:
            start = FreshStart(
                task_name, data or DataSpec(), train_config or TrainConfig(), model_config, model_fields_set
            )
        trainer = Trainer(start, out, overwrite=overwrite, quiet=quiet, log=log)
        trainer.staged = staged
        trainer.callbacks = Callbacks(on_log, on_eval, on_checkpoint, loss_fn)
        return trainer.run()
    finally:
        if staged is not None and staged.exists():  # not moved into the run (it failed before): not left behind
            shutil.rmtree(staged, ignore_errors=True)


# --- the trainer ------------------------------------------------------------------------------------------------


class Trainer:
    """One training run, set up in the order of `run`; every piece of its state is an attribute."""

    def __init__(
        self,
        start: Start,
        out: Path,
        *,
        overwrite: bool = False,
        quiet: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.start, self.out, self.overwrite = start, out, overwrite
        self.task_class = get_task(start.task_name)
        self.task_name = start.task_name
        self.cfg = start.cfg
        self.cfg.check_stopping()
        Trackers.check(self.cfg.report_to)  # a tracker's package is missing: say so before any work is done
        self.trackers = Trackers([])  # rank 0 opens those report_to names with the run directory
        self.callbacks = Callbacks()  # train() sets the caller's
        self.staged: Path | None = None  # in-memory examples written to a temporary folder: moved to RUN/examples
        self.ranks = Distributed()  # under torchrun: one of several processes; else a no-op
        self.quiet = quiet or not self.ranks.is_main  # only rank 0 reports
        if self.ranks.is_main:
            start.check_output(out, overwrite)  # refuse before any work is done
            if (out / EXAMPLES_DIR).exists() and not (
                (out / EXAMPLES_DIR).is_dir() and {p.name for p in (out / EXAMPLES_DIR).iterdir()} <= EXAMPLE_FILES
            ):
                raise UserError(f"{out / EXAMPLES_DIR} exists and is not a run's examples: choose another --out")
        self.log = log or (lambda message: None if self.quiet else print(message, file=sys.stderr, flush=True))
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.device = self.ranks.start(pick_device(self.cfg.device))
        self.amp_dtype = pick_precision(self.cfg.precision, self.device)
        self.state = RunState(processes=self.ranks.world)
        self.stop_reason: str | None = None
        self.last: dict[str, float] = {}  # the metrics of the latest evaluation
        self.skipped: list[int] = []  # steps whose batch had a non-finite loss and was skipped
        self.unread: list[tuple[int, Tensor]] = []  # (step, its loss on the device) not read back yet
        self.last_loss: float | None = None  # the loss of the latest step read back
        # Several processes: the step and clock of their last agreement on signals and the time limit, and the step
        # of the next one at the latest (see agree).
        self.agreed: tuple[int, float] = (0, time.perf_counter())
        self.agree_at = 0
        self.snapshot: dict[str, Any] = {}  # what every process hands over before rank 0 saves (see gather)

    def run(self) -> TrainResult:
        self.prepare_data()
        self.build_model()
        self.open_run_dir()
        return self.loop()

    # --- set-up ---------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Splits, tokenizers and the task; the training and validation data encoded once (and checked now: bad
        data must fail before anything is written)."""
        start, cfg = self.start, self.cfg
        # Paths made absolute, so that `evaluate` finds the data from any directory.
        self.spec = DataSpec.from_dict({k: _absolute(v) for k, v in start.spec.to_dict().items()})
        splits = read_splits(self.task_class, self.spec, cfg)
        kind = start.tokenizer_kind(splits)
        self.cfg = cfg = start.cfg = self.task_class.resolve_settings(cfg.replace(tokenizer=kind), splits.train)
        self.tokenizer, self.source_tokenizer, self.labels = start.tokenizers(self.task_class, splits)
        task = self.task = self.task_class(cfg, self.tokenizer, self.source_tokenizer, self.labels)
        self.train_data = task.encode(splits.train)
        task.describe("training data", self.train_data, self.log)
        if not self.train_data.examples:
            raise UserError("no training example fits max_len; raise max_len or pass --truncate")
        self.valid_data = task.validation_data(splits.valid, cfg.eval_examples)
        task.describe("validation data", self.valid_data, self.log)
        if not self.valid_data.examples:
            raise UserError(f"no validation example from {splits.valid_source} fits max_len={task.max_len}")
        task.batches(self.valid_data)  # raises for a text too short for a block, an example over --max-tokens
        vocab = f"{self.tokenizer.vocab_size:,}" + (
            f" target, {self.source_tokenizer.vocab_size:,} source"
            if self.source_tokenizer is not self.tokenizer
            else ""
        )
        self.log(
            f"data: {task.count(self.train_data):,} training {task.encoded_unit}, validation "
            f"{task.count(self.valid_data):,} {task.encoded_unit} from {splits.valid_source}; {cfg.tokenizer} "
            f"tokenizer, vocabulary {vocab}" + (f", {len(self.labels)} classes" if self.labels else "")
        )

    def build_model(self) -> None:
        """The model with its starting weights, its training wrapper (DDP/FSDP, compile), the batches of the first
        epoch, the step limit, optimizer, schedule and scaler."""
        cfg, ranks, device, task = self.cfg, self.ranks, self.device, self.task
        seed_everything(cfg.seed)
        self.model_cfg = self.start.model_config(task)
        model_class = task_model_class(self.task_name)
        model = self.model = model_class(self.model_cfg).to(device)
        self.start.load_weights(model)
        if cfg.fsdp and not ranks.enabled:
            raise UserError("fsdp shards the model over several processes: launch with torchrun --nproc_per_node=N")
        if cfg.activation_checkpointing:
            model.set_activation_checkpointing(True)
        # Under FSDP the training model's parameters are shards; rank 0 evaluates and saves a whole copy.
        self.eval_model = model_class(self.model_cfg).to(device) if cfg.fsdp and ranks.is_main else model
        if device.type == "cpu":  # the faster float32 products of this CPU, where they pay (backends/onednn.py)
            use_onednn(model)
            if self.eval_model is not model:  # FSDP's whole copy for evaluation
                use_onednn(self.eval_model)
        train_model = ranks.wrap(model, device, fsdp=cfg.fsdp)
        # The cast: torch.compile of a module returns a module (an OptimizedModule); its annotation says a callable.
        compiled = cfg.compile or cfg.compile_mode is not None
        self.train_model = (
            cast(nn.Module, torch.compile(train_model, mode=cfg.compile_mode)) if compiled else train_model
        )
        # CUDA graphs (reduce-overhead, max-autotune) replay into the same memory: each step starts a new replay.
        self.graphs = compiled and device.type == "cuda" and cfg.compile_mode in ("reduce-overhead", "max-autotune")
        if self.graphs and (cfg.grad_accum > 1 or ranks.enabled):
            # A replay overwrites the gradients the last one left (accumulating them would read freed memory), and
            # the hooks DDP and FSDP run in the backward pass are not recorded in a graph.
            raise UserError(
                f"compile_mode={cfg.compile_mode} records CUDA graphs, which work here with grad_accum 1 in one "
                "process only: use compile_mode default (or max-autotune-no-cudagraphs) for this run"
            )
        if ranks.enabled:  # the same initial weights everywhere, but each process its own dropout masks
            torch.manual_seed(cfg.seed + ranks.rank)
        self.first_epoch = task.batches(self.train_data, epoch=0)  # built once: counted here, trained on in the loop
        self.per_step = cfg.grad_accum * ranks.world  # batches per optimizer step, over all processes
        if ranks.enabled and len(self.first_epoch) < self.per_step:
            raise UserError(
                f"an epoch has {len(self.first_epoch)} batch(es), fewer than the {self.per_step} one "
                f"optimizer step takes (grad_accum x processes): use more data or smaller batches"
            )
        # Several processes drop an epoch's last incomplete step (each process needs its share); one keeps it.
        n = len(self.first_epoch)
        self.steps_per_epoch = n // self.per_step if ranks.enabled else math.ceil(n / self.per_step)
        self.step_limit = self.limit_of(cfg)
        extended_from = getattr(self.start, "extended_from", None)
        if extended_from is not None and cfg.schedule_steps is None:  # the schedule keeps the length it had
            self.cfg = cfg = self.start.cfg = cfg.replace(schedule_steps=self.limit_of(extended_from))
        if cfg.schedule == "cosine" and self.step_limit is None:
            raise ConfigError("the cosine schedule needs max_steps or max_epochs to know where it ends")
        self.optimizer = make_optimizer(model, cfg)
        length = cfg.schedule_steps or self.step_limit
        if cfg.warmup is not None:
            self.warmup = cfg.warmup
        else:  # a fraction of the run (noam needs at least one step)
            self.warmup = round(cfg.warmup_ratio * length) if length else NO_LIMIT_WARMUP
            self.warmup = max(self.warmup, 1 if cfg.schedule == "noam" else 0)
        self.scheduler = make_scheduler(
            self.optimizer,
            cfg.schedule,
            warmup=self.warmup,
            total_steps=length,
            d_model=self.model_cfg.d_model,
            min_ratio=cfg.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        dtype = f" {str(self.amp_dtype).removeprefix('torch.')}" if self.amp_dtype else ""
        self.log(
            f"model: {type(model).__name__}, {model.num_parameters():,} parameters, on {device}{dtype}; "
            f"{self.steps_per_epoch:,} steps per epoch" + (f", {self.step_limit:,} steps" if self.step_limit else "")
        )
        if cfg.schedule == "noam":
            peak = cfg.lr * self.model_cfg.d_model**-0.5 * self.warmup**-0.5
            self.log(
                f"schedule noam: lr={cfg.lr:g} multiplies the paper's formula (1.0 = the paper's rates); "
                f"peak learning rate {peak:.2e} at step {self.warmup}"
            )
        elif cfg.warmup is None:
            share = f"{cfg.warmup_ratio:.0%} of {length:,}" if length else "the run has no step limit"
            self.log(f"schedule {cfg.schedule}: warmup {self.warmup:,} steps ({share}; --warmup N sets it)")
        self.best_metric, self.higher_is_better, why = self.choose_best_metric()
        self.log(f"best/ is chosen by validation {self.best_metric} ({why})")

    def choose_best_metric(self) -> tuple[str, bool, str]:
        """(metric, higher is better, why) of what picks best/: see TrainConfig.best_metric."""
        task, chosen = self.task, self.cfg.best_metric
        if chosen is not None and chosen not in ("loss", task.metric):
            raise ConfigError(f"best_metric must be 'loss' or {task.metric!r} for {task.name}; got {chosen!r}")
        if task.metric == "loss":
            return "loss", False, f"the {task.name} task's metric"
        if chosen is not None:
            asked = f"best_metric={chosen}"
            return (task.metric, task.higher_is_better, asked) if chosen == task.metric else ("loss", False, asked)
        n = len(self.valid_data.examples)
        if n >= BEST_BY_METRIC_EXAMPLES:
            return task.metric, task.higher_is_better, f"{n:,} validation examples"
        why = (
            f"{task.metric} on {n:,} validation examples is too noisy; {task.metric} from "
            f"{BEST_BY_METRIC_EXAMPLES:,} on, or with --set best_metric={task.metric}"
        )
        return "loss", False, why

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The training loss of one batch: the task's, or what the caller's loss_fn makes of it."""
        if self.callbacks.loss_fn is None:
            return self.task.loss(self.train_model, batch)
        return self.callbacks.loss_fn(self.train_model, batch, lambda: self.task.loss(self.train_model, batch))

    def better(self, new: float, old: float | None) -> bool:
        return old is None or (new > old if self.higher_is_better else new < old)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def limit_of(self, cfg: TrainConfig) -> int | None:
        """The step limit of `cfg`'s max_steps and max_epochs (whichever comes first), if any."""
        epochs = cfg.max_epochs and math.ceil(cfg.max_epochs * self.steps_per_epoch)
        limits = [n for n in (cfg.max_steps, epochs) if n]
        return min(limits) if limits else None

    def open_run_dir(self) -> None:
        """A new run writes run.json and an empty metrics.jsonl; a resumed one puts its training state back and
        drops the records written after its checkpoint (they are redone)."""
        out, ranks, resumed = self.out, self.ranks, self.start.resumed
        self.metrics_path = out / "metrics.jsonl"
        if resumed is not None:
            counters = restore_training_state(
                resumed.state, None, self.scheduler, self.scaler, rank=ranks.rank, device=self.device
            )
            ranks.load_optimizer_state(
                self.model, self.optimizer, optimizer_state_dict(resumed.state), fsdp=self.cfg.fsdp
            )
            self.state = RunState.from_dict(counters)
            if ranks.is_main:
                _truncate_metrics(self.metrics_path, self.state.step)
            self.log(
                f"resuming {out} from step {self.state.step} (epoch {self.state.epoch}, batch {self.state.position})"
            )
            self.check_resumable()
            if getattr(self.start, "extended_from", None) is not None:
                self.extend_run()
        elif ranks.is_main:
            try:
                prepare_output(out, self.overwrite)
            except OSError as e:
                raise UserError(f"--out {out}: cannot write: {e.strerror}") from None
            if self.staged is not None:  # in-memory examples: the run keeps them, and names them as its data
                shutil.move(str(self.staged), str(out / EXAMPLES_DIR))
                moved = {str(self.staged / n): str((out / EXAMPLES_DIR / n).resolve()) for n in EXAMPLE_FILES}
                self.spec = dataclasses.replace(
                    self.spec,
                    data=[moved.get(p, p) for p in self.spec.data],
                    valid=[moved.get(p, p) for p in self.spec.valid],
                )
            init = getattr(self.start, "init", None)
            run_info = {
                "version": __version__,
                "task": self.task_name,
                "data": self.spec.to_dict(),
                "model": self.model_cfg.to_dict(),
                "train": self.cfg.to_dict(),
                "labels": self.labels or [],
                "init": _absolute(str(init)) if init is not None else None,
            }
            (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
            self.metrics_path.write_text("", encoding="utf-8")
        if ranks.is_main:
            settings = json.loads((out / "run.json").read_text(encoding="utf-8"))
            resumed_at = self.state.step if resumed is not None else None
            self.trackers = Trackers.open(self.cfg.report_to, out, settings, resumed_at)
        ranks.barrier()  # the run directory exists before any process goes on

    def extend_run(self) -> None:
        """A resumed run with a new max_steps: say what the schedule does, and write the new limit into run.json
        (so that resuming again goes on to it)."""
        cfg = self.cfg
        if cfg.schedule == "cosine" and cfg.schedule_steps is not None and (self.step_limit or 0) > cfg.schedule_steps:
            self.log(
                f"extending the run to {self.step_limit:,} steps: the cosine schedule keeps its {cfg.schedule_steps:,}"
                f" steps, so the learning rate stays at its floor ({cfg.min_lr_ratio:g} x lr) after step "
                f"{cfg.schedule_steps:,}"
            )
        else:
            self.log(f"extending the run to {self.step_limit:,} steps" if self.step_limit else "extending the run")
        if self.ranks.is_main:
            run_json = self.out / "run.json"
            info = json.loads(run_json.read_text(encoding="utf-8"))
            info["train"] = cfg.to_dict()
            tmp = run_json.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, run_json)

    def check_resumable(self) -> None:
        state, out = self.state, self.out
        if state.processes != self.ranks.world:
            raise UserError(
                f"--resume {out}: the run trained with {state.processes} process(es), this is "
                f"{self.ranks.world}: the data position would mean other batches; resume with as many"
            )
        if self.step_limit is not None and state.step >= self.step_limit:
            raise UserError(f"--resume {out}: the run already finished ({state.step} of {self.step_limit} steps)")
        if self.cfg.patience is not None and state.stale >= self.cfg.patience:
            raise UserError(f"--resume {out}: the run already stopped early (patience {self.cfg.patience})")

    # --- the loop -------------------------------------------------------------------------------------------

    def loop(self) -> TrainResult:
        cfg, state = self.cfg, self.state
        self.progress = Progress(
            self.step_limit,
            quiet=self.quiet,
            every=cfg.log_every,
            max_seconds=cfg.max_minutes * 60 if cfg.max_minutes else None,
        )
        self.started = time.perf_counter()
        self.agreed = state.step, self.started
        self.model.train()
        self.evaluated_at = state.step if self.start.resumed is not None else -1
        self.signals = _StopSignals()
        try:  # the signal handlers go back whatever happens
            while self.stop_reason is None:
                self.train_epoch()
        finally:
            self.signals.restore()
            self.trackers.close()
        self.ranks.close()
        self.progress.close()
        return self.finish()

    def train_epoch(self) -> None:
        """The optimizer steps left in the current epoch (from `state.position`), until the epoch ends or a stop
        rule fires."""
        state, per_step = self.state, self.per_step
        batches = self.first_epoch if state.epoch == 0 else self.task.batches(self.train_data, epoch=state.epoch)
        epoch_at_start = state.epoch
        for first in range(state.position, len(batches), per_step):
            group = list(batches[first : first + per_step])  # a slice of lazy batches is a list already
            if self.ranks.enabled and len(group) < per_step:
                break  # the epoch's incomplete last step: not every process would have a batch
            done = self.train_step(group)
            if done is None:
                continue  # a skipped non-finite batch: the step is taken again with the next one
            step_loss, lr, tokens = done
            state.step += 1
            state.position = first + per_step
            if state.position + (per_step - 1 if self.ranks.enabled else 0) >= len(batches):
                state.epoch, state.position = state.epoch + 1, 0
            if self.after_step(step_loss, lr, tokens):
                break
        if not self.stop_reason and state.epoch == epoch_at_start:  # the epoch ended on a skipped or dropped group
            state.epoch += 1
        state.position = 0

    def train_step(self, group: list[dict[str, torch.Tensor]]) -> tuple[Tensor, float, int] | None:
        """One optimizer step on a group of batches (this process's share of it, accumulated): (this process's
        loss of the whole step, still on the device; the learning rate it used; the tokens it read), or None when
        its loss was not finite and the batch is skipped (`skip_nonfinite`)."""
        cfg, ranks, device = self.cfg, self.ranks, self.device
        local = ranks.shard(group)
        self.optimizer.zero_grad(set_to_none=True)
        step_loss: Tensor | None = None
        tokens = 0
        for i, batch in enumerate(local):
            tokens += self.task.tokens_in(batch)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if self.graphs:  # what the last replay wrote may be overwritten (the losses kept are new tensors)
                torch.compiler.cudagraph_mark_step_begin()
            # Under DDP, gradients are averaged across processes on the last micro-batch only.
            sync = (
                contextlib.nullcontext()
                if i == len(local) - 1 or not ranks.enabled or cfg.fsdp
                else cast(DistributedDataParallel, self.train_model).no_sync()
            )  # (compiled, it forwards no_sync)
            with sync:
                with self.autocast():
                    loss = self.loss(batch) / len(local)
                self.scaler.scale(loss).backward()
            part = loss.detach().float()
            step_loss = part if step_loss is None else step_loss + part
        assert step_loss is not None  # a step has at least one batch
        if cfg.skip_nonfinite:  # read now: a bad batch is skipped before its update (LOSS_READ_EVERY)
            value = ranks.mean(float(step_loss), device)
            if not math.isfinite(value):
                self.skip_or_stop(value, self.state.step + 1)
                return None
        if cfg.clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return step_loss, lr, tokens

    def read_losses(self) -> None:
        """Read back the losses of the steps since the last read (one wait for all of them, averaged over the
        processes) into the interval's sum; a non-finite one stops the run, naming its step."""
        if not self.unread:
            return
        steps = [step for step, _ in self.unread]
        values = self.ranks.means(torch.stack([loss for _, loss in self.unread]))
        self.unread = []
        state = self.state
        for step, value in zip(steps, values, strict=True):
            if not math.isfinite(value):
                self.skip_or_stop(value, step)  # raises: with skip_nonfinite the step was read and skipped at once
            state.interval_loss, state.interval_steps = state.interval_loss + value, state.interval_steps + 1
        self.last_loss = values[-1]

    def skip_or_stop(self, step_loss: float, step: int) -> None:
        """A non-finite loss at `step`: drop this batch's gradients while `skip_nonfinite` allows, else stop the
        run."""
        self.skipped.append(step)
        if len(self.skipped) <= self.cfg.skip_nonfinite:
            self.progress.log(
                f"step {step}: the loss is {step_loss}; batch skipped ({len(self.skipped)} of at "
                f"most {self.cfg.skip_nonfinite})"
            )
            self.optimizer.zero_grad(set_to_none=True)
            return
        saved = f"the last checkpoint is {self.out / 'last'}" if self.evaluated_at >= 0 else "no checkpoint was saved"
        before = self.skipped[:-1]
        raise TrainingError(
            f"step {step}: the loss is {step_loss}; stopping ({saved}); try a lower lr, more warmup "
            f"or clip_norm"
            + (
                f"; {len(before)} bad batch(es) skipped before, at steps {', '.join(map(str, before))}"
                if before
                else ""
            )
        )

    def agree(self, out_of_time: bool, signalled: bool) -> tuple[bool, bool]:
        """Several processes: rank 0's clock decides for every process, and a signal to any process stops them all.

        Agreeing is a read back from the device (it waits for the step's work), so the processes agree at the steps
        that read the losses anyway (every LOSS_READ_EVERY steps, each log line and evaluation), and in between
        after about AGREE_SECONDS of steps (rank 0's step time, agreed with the flags, sets how many): a signal
        stops fast steps within 16 and slow ones within about a second, before torchrun's or a scheduler's grace
        period ends. Every process decides from values they all share, so they take the collective together."""
        cfg, state, ranks = self.cfg, self.state, self.ranks
        reads = (
            state.step % cfg.log_every == 0
            or state.step % cfg.eval_every == 0
            or len(self.unread) >= LOSS_READ_EVERY
            or self.last_loss is None
        )
        if not reads and state.step < self.agree_at:
            return False, False
        now = time.perf_counter()
        ms = 1000 * (now - self.agreed[1]) / max(1, state.step - self.agreed[0]) if ranks.is_main else 0
        late, stop, step_ms = ranks.maximum(
            int(out_of_time and ranks.is_main), int(signalled), int(ms), device=self.device
        )
        self.agreed = state.step, now
        self.agree_at = state.step + max(1, min(LOSS_READ_EVERY, int(AGREE_SECONDS * 1000) // max(1, step_ms)))
        return bool(late), bool(stop)

    def after_step(self, step_loss: Tensor, lr: float, tokens: int) -> bool:
        """Log the step, apply the stop rules, evaluate when due. True when the run stops here."""
        cfg, state, ranks = self.cfg, self.state, self.ranks
        self.unread.append((state.step, step_loss))
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - self.started >= cfg.max_minutes * 60
        signalled = self.signals.signal is not None
        if ranks.enabled:
            out_of_time, signalled = self.agree(out_of_time, signalled)
        if self.step_limit is not None and state.step >= self.step_limit:
            self.stop_reason = f"reached {state.step} steps"
        elif out_of_time:
            self.stop_reason = f"reached the time limit of {cfg.max_minutes:g} minutes"
        evaluate = state.step % cfg.eval_every == 0 or self.stop_reason is not None
        log = state.step % cfg.log_every == 0
        if evaluate or log or signalled or len(self.unread) >= LOSS_READ_EVERY or self.last_loss is None:
            self.read_losses()
        assert self.last_loss is not None  # read at the first step
        self.progress.update(state.step, loss=self.last_loss, lr=lr, tokens=tokens)
        if log and ranks.is_main:
            self.record(
                {
                    "step": state.step,
                    "split": "train",
                    "loss": state.interval_loss / state.interval_steps,
                    "lr": lr,
                    "seconds": round(time.perf_counter() - self.started, 2),
                }
            )
            state.interval_loss, state.interval_steps = 0.0, 0
        if signalled and not self.stop_reason:
            self.signals.signal = self.signals.signal or "SIGTERM"  # another process was signalled
            self.gather()
            if ranks.is_main:
                self.save("last", with_state=True)
            self.stop_reason = (
                f"{self.signals.signal} at step {state.step}; the last checkpoint holds it: resume "
                f"with `transformer-networks train --resume {self.out}`"
            )
            return True
        if evaluate:
            self.gather()
            if ranks.is_main:
                self.evaluate()
            self.evaluated_at = state.step
            if ranks.any(self.stop_reason is not None, device=self.device)[0]:  # patience, decided by rank 0
                self.stop_reason = self.stop_reason or "rank 0 stopped the run"
        return self.stop_reason is not None

    # --- evaluation and checkpoints -------------------------------------------------------------------------

    def evaluate(self) -> None:
        """The task's metrics on the validation data: metrics.jsonl, best/ when they improved, last/, the kept
        step checkpoints, and the patience rule."""
        state, cfg, task = self.state, self.cfg, self.task
        self.eval_model.eval()
        with self.autocast():
            values = task.evaluate(self.eval_model, self.valid_data, self.device)
        self.eval_model.train()
        self.last = values
        self.record(
            {
                "step": state.step,
                "epoch": round(state.step / self.steps_per_epoch, 3),
                "split": "valid",
                "seconds": round(time.perf_counter() - self.started, 2),
                **values,
            }
        )
        if self.best_metric not in values:  # a task of the user's that reports no loss: its own metric, then
            if cfg.best_metric is not None:
                raise UserError(f"best_metric={cfg.best_metric}: the {task.name} task reports {', '.join(values)}")
            self.best_metric, self.higher_is_better = task.metric, task.higher_is_better
            self.log(f"best/ is chosen by validation {task.metric} (the task reports no loss)")
        improved = self.better(values[self.best_metric], state.best_value)
        if improved:
            state.best_value, state.best, state.stale = values[self.best_metric], values, 0
        else:
            state.stale += 1
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        self.progress.log(f"eval step {state.step}: {shown}" + (" (best)" if improved else ""))
        if improved:  # best/ first: last/'s counters must never name a best that best/ does not hold
            self.save("best")
        self.save("last", with_state=True)
        if cfg.keep_checkpoints:  # weights only, for `average`; the oldest beyond N are removed
            self.save(f"{STEP_PREFIX}{state.step:07d}")
            for old in step_checkpoints(self.out)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old)
        if not improved and cfg.patience is not None and state.stale >= cfg.patience:
            self.stop_reason = f"no better {self.best_metric} in {state.stale} evaluations (patience)"
        if self.callbacks.on_eval is not None and self.callbacks.on_eval(state.step, dict(values)):
            self.stop_reason = self.stop_reason or "on_eval asked to stop"

    def gather(self) -> None:
        """Every process takes part before rank 0 evaluates and saves: FSDP gathers the whole weights into
        eval_model and the optimizer state, and each process hands over its RNG states."""
        ranks, fsdp = self.ranks, self.cfg.fsdp
        ranks.gather_into(self.eval_model, self.model, fsdp=fsdp)
        self.snapshot["optimizer"] = ranks.optimizer_state(self.model, self.optimizer, fsdp=fsdp)
        self.snapshot["rng"] = ranks.rng_states(self.device)

    def save(self, name: str, *, with_state: bool = False) -> None:
        """Write checkpoint `out/name`; `with_state`: also what a resumed run needs (last/)."""
        out, step = self.out, self.state.step
        training_state = None
        if with_state:
            training_state = pack_training_state(
                self.snapshot["optimizer"],
                self.scheduler,
                self.state.to_dict(),
                self.scaler,
                rank_rng=self.snapshot["rng"],
            )
        try:
            save_checkpoint(
                out / name,
                self.eval_model,
                task=self.task_name,
                config=self.model_cfg,
                train_config=self.cfg,
                tokenizer=self.tokenizer,
                source_tokenizer=self.source_tokenizer,
                labels=self.labels,
                data=self.spec.to_dict(),
                step=step,
                training_state=training_state,
            )
        except OSError as e:  # a full disk, a directory made read-only: the previous checkpoint is untouched
            shutil.rmtree(out / f"{name}.tmp", ignore_errors=True)
            kept = f"the previous {out / name} is intact" if (out / name).exists() else "no earlier one exists"
            raise TrainingError(
                f"step {step}: cannot write the checkpoint {out / name}: {e.strerror or e}; {kept}"
            ) from None
        if self.callbacks.on_checkpoint is not None:
            self.callbacks.on_checkpoint(out / name)

    def record(self, entry: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.trackers.log(entry)
        if self.callbacks.on_log is not None:
            self.callbacks.on_log(dict(entry))

    def finish(self) -> TrainResult:
        seconds = time.perf_counter() - self.started
        if self.skipped:
            self.log(
                f"skipped {len(self.skipped)} batch(es) with a non-finite loss, at steps "
                f"{', '.join(map(str, self.skipped))}"
            )
        limit = self.step_limit
        if self.stop_reason and self.stop_reason.startswith("reached the time limit") and limit is not None:
            self.log(
                f"warning: the time limit stopped the run at step {self.state.step:,} of its {limit:,}: it is not "
                f"the run its settings describe (on a slower or busier machine it stops earlier); resume it with "
                f"`transformer-networks train --resume {self.out}` to finish, or budget in steps only"
            )
        best_value = self.state.best_value
        best_text = f"{best_value:.4g}" if best_value is not None else "not evaluated yet"
        self.log(
            f"stopped: {self.stop_reason} after {format_duration(seconds)}; best {self.best_metric} "
            f"{best_text}; checkpoints in {self.out}"
        )
        return TrainResult(
            self.out,
            self.task_name,
            self.state.step,
            self.stop_reason or "",
            seconds,
            self.state.best,
            self.last,
            self.model.num_parameters(),
            interrupted=self.signals.signal,
        )


def _grow_vocabulary(model: ModelBase, size: int) -> ModelBase:
    """The language model with `size` token rows in its embedding and output layers: the old rows kept, each new
    row the mean of the old ones (a start near the average token, not a random direction)."""
    grown = type(model)(dataclasses.replace(model.cfg, vocab_size=size))
    old = model.state_dict()
    state = grown.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            before = old[name]
            if before.shape != tensor.shape:  # (vocabulary, ...) rows
                tensor[: before.size(0)] = before
                tensor[before.size(0) :] = before.float().mean(0).to(tensor.dtype)
            else:
                tensor.copy_(before)
    grown.load_state_dict(state)
    grown.tokenizer = model.tokenizer
    return grown


def _pretrained_model(init: str | Path, task_name: str, n_classes: int | None) -> ModelBase:
    """`train --init`: the pretrained model for `task_name`, its tokenizer as `model.tokenizer` (a TextTokenizer),
    a classifier's head resized (freshly initialised) to `n_classes`."""
    family = get_task(task_name).family
    options: dict[str, Any] = {"n_classes": n_classes} if n_classes else {}
    model = from_pretrained(init, family=family, **options)  # options: for Hugging Face directories only
    if not isinstance(model, task_model_class(task_name)):
        raise UserError(
            f"--init {init}: a {type(model).__name__}, but {task_name} trains a {task_model_class(task_name).__name__}"
        )
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise UserError(
            f"--init {init}: no tokenizer.json beside the weights; the data must be tokenized as the model was trained"
        )
    if not isinstance(tokenizer, TextTokenizer):
        tokenizer = TextTokenizer.from_pretrained_tokenizer(tokenizer, f"{init}/tokenizer.json")
    if tokenizer.vocab_size > model.cfg.target_vocab_size:
        raise UserError(
            f"--init {init}: the tokenizer has {tokenizer.vocab_size:,} tokens, the model "
            f"{model.cfg.target_vocab_size:,}"
        )
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
    if not (out / "run.json").exists():
        raise UserError(f"--resume {out}: not a training run (no run.json)")
    recover_interrupted_save(out / "last")  # killed while replacing last/
    if not (out / "last" / "training_state.json").exists():
        raise UserError(
            f"--resume {out}: no last checkpoint to resume from (the run stopped before its first "
            f"checkpoint); start it again"
        )
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{out / 'run.json'}: unreadable: {e}") from None
    checkpoint = load_checkpoint(out / "last")
    state = load_training_state(out / "last")
    if "position" not in state["meta"]["counters"]:
        raise UserError(f"{out / 'last'}: written by an older version without the data position; cannot resume exactly")
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
        print(
            f"\n{self.signal}: saving a checkpoint at the end of this step (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def load_task(checkpoint: Checkpoint) -> Task:
    """The `Task` of a loaded checkpoint (same tokenizers, labels and settings as its training run)."""
    return checkpoint.make_task()


@dataclass
class Callbacks:
    """What `train` calls as the run goes (see its docstring); each may be None."""

    on_log: Callable[[dict[str, Any]], None] | None = None
    on_eval: Callable[[int, dict[str, float]], bool | None] | None = None
    on_checkpoint: Callable[[Path], None] | None = None
    loss_fn: Callable[[nn.Module, dict[str, Tensor], Callable[[], Tensor]], Tensor] | None = None
