"""`TrainConfig` and its choices, which live in `transformer_networks.config` beside `TransformerConfig`; this
module keeps the old import path working (`from transformer_networks.training.config import TrainConfig`)."""

from __future__ import annotations

from ..config import OPTIMIZERS, PRECISIONS, SCHEDULES, TASKS, TOKENIZERS, TrainConfig
from ..config import TRAIN_FIELDS as FIELDS

# The task's metric that picks the best checkpoint, and whether higher is better.
BEST_METRIC = {"lm": ("loss", False), "translation": ("bleu", True), "classification": ("accuracy", True)}

__all__ = ["BEST_METRIC", "FIELDS", "OPTIMIZERS", "PRECISIONS", "SCHEDULES", "TASKS", "TOKENIZERS", "TrainConfig"]
