"""`TrainConfig`: every setting of a training run that is not part of the model.

The model is described by a `TransformerConfig`; the two are saved side by side with each run (`config.json` and
`train_config.json`), and `--set key=value` on the command line reaches a field of either.

Fields left at None take a default that depends on the task or the data (see `resolved`): for example the
tokenizer is word-level for SCAN and character-level for language modeling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TASKS = ("lm", "translation", "classification")
OPTIMIZERS = ("adamw", "adam", "paper")  # "paper": Adam with betas (0.9, 0.98), eps 1e-9 (Section 5.3)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TOKENIZERS = ("char", "word", "bpe", "unigram", "pretrained")  # pretrained: the --init model's own
SCHEDULES = ("noam", "inverse_sqrt", "cosine", "constant")

# The task's metric that picks the best checkpoint, and whether higher is better.
BEST_METRIC = {"lm": ("loss", False), "translation": ("bleu", True), "classification": ("accuracy", True)}


@dataclass
class TrainConfig:
    # --- data -----------------------------------------------------------------------------------------------
    tokenizer: str | None = None  # char | word | bpe | unigram (default: char for lm, bpe otherwise, word for SCAN)
    vocab_size: int = 8000  # for bpe/unigram; char and word keep every symbol of the training data
    shared_vocab: bool = True  # translation: one vocabulary for source and target (and tied embeddings)
    max_len: int = 256  # longest example in tokens (translation: each side; classification: the text)
    truncate: bool = False  # cut over-long examples to max_len instead of dropping them
    valid_fraction: float = 0.05  # held out of the training data (seeded) when no validation data is given
    block_size: int = 128  # language modeling: tokens per training sequence
    text_column: str | None = None  # classification: default "text", else "sentence"
    label_column: str = "label"
    # --- batches --------------------------------------------------------------------------------------------
    batch_size: int = 32  # sequences per batch (lm, classification)
    max_tokens: int = 4096  # translation: padded tokens per batch, source or target side (as fairseq)
    grad_accum: int = 1  # batches per optimizer step
    # --- optimization ---------------------------------------------------------------------------------------
    optimizer: str = "adamw"
    lr: float = 1e-3  # peak learning rate (for "noam": a factor on the paper's formula, 1.0 = the paper's rates)
    weight_decay: float = 0.01  # decoupled (AdamW); ignored by adam and paper
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "cosine"
    warmup: int = 200  # steps of linear warmup (the paper: 4000 with "noam")
    min_lr_ratio: float = 0.1  # cosine: final learning rate as a fraction of lr
    label_smoothing: float = 0.0  # the paper: 0.1; padding is never a target
    clip_norm: float | None = 1.0  # gradient norm clipping (None: off)
    skip_nonfinite: int = 0  # skip at most this many batches whose loss is NaN or infinite (then stop)
    # --- stopping -------------------------------------------------------------------------------------------
    max_steps: int | None = 2000  # optimizer steps
    max_epochs: float | None = None  # passes over the training data (with max_steps: whichever comes first)
    max_minutes: float | None = None  # wall-clock limit of the training loop
    patience: int | None = None  # stop after this many evaluations without a better best metric
    # --- evaluation and logging -----------------------------------------------------------------------------
    eval_every: int = 500  # steps between evaluations on the validation data (and checkpoints)
    eval_examples: int | None = None  # evaluate on at most this many validation examples while training (not lm)
    log_every: int = 50  # steps between progress lines when stderr is not a terminal
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    activation_checkpointing: bool = False  # recompute each layer's activations in the backward pass (less memory)
    keep_checkpoints: int = 0  # also keep the last N evaluation checkpoints as RUN/step-NNNNNNN (for `average`)
    # --- machine --------------------------------------------------------------------------------------------
    device: str = "auto"  # auto: cuda, then mps, then cpu
    precision: str = "auto"  # auto: bf16 on a CUDA device that supports it, else fp32
    compile: bool = False  # torch.compile the model for training
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: PyTorch's default)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = _FIELD_TYPES[f.name]
            if value is None and type(None) in allowed:
                continue
            if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
                raise ConfigError(f"{f.name} must be {_describe(allowed)}, got {value!r}")
            if float in allowed and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}")

        def check(name: str, ok: bool, what: str) -> None:
            if getattr(self, name) is not None and not ok:
                raise ConfigError(f"{name} must be {what}, got {getattr(self, name)!r}")

        for name in ("vocab_size", "max_len", "block_size", "batch_size", "max_tokens", "grad_accum", "eval_every",
                     "log_every", "max_steps", "patience", "eval_examples", "threads"):
            value = getattr(self, name)
            check(name, value is None or value >= 1, "a positive integer")
        check("warmup", self.warmup >= 0, "zero or a positive integer")
        check("keep_checkpoints", self.keep_checkpoints >= 0, "zero or a positive integer")
        check("skip_nonfinite", self.skip_nonfinite >= 0, "zero or a positive integer")
        check("warmup", self.warmup >= 1 or self.schedule != "noam", "at least 1 with the noam schedule")
        check("seed", 0 <= self.seed < 2**32, "in [0, 2**32)")
        check("lr", self.lr > 0, "positive")
        check("eps", self.eps > 0, "positive")
        check("weight_decay", self.weight_decay >= 0, "zero or positive")
        for name in ("beta1", "beta2", "valid_fraction", "label_smoothing"):
            check(name, 0 <= getattr(self, name) < 1, "in [0, 1)")
        check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]")
        check("clip_norm", self.clip_norm is None or self.clip_norm > 0, "positive (or null for no clipping)")
        check("max_epochs", self.max_epochs is None or self.max_epochs > 0, "positive")
        check("max_minutes", self.max_minutes is None or self.max_minutes > 0, "positive")
        for name, allowed in (("tokenizer", TOKENIZERS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("precision", PRECISIONS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")

    def check_stopping(self) -> None:
        """A run needs a stop condition (checked when training starts, so each field can be set on its own)."""
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ConfigError("set at least one of max_steps, max_epochs and max_minutes, or training never stops")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown training field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))

_HINTS = typing.get_type_hints(TrainConfig)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {}
for _name, _hint in _HINTS.items():
    _args = typing.get_args(_hint) or (_hint,)
    _types = tuple(t for t in _args if t is not type(None))
    _FIELD_TYPES[_name] = (*((int, float) if _types == (float,) else _types), *((type(None),) if type(None) in _args
                                                                              else ()))


def _describe(allowed: tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if int in allowed and float in allowed:
        allowed = tuple(t for t in allowed if t is not int)
    return " or ".join(names[t] for t in allowed)
