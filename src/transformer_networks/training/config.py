"""`TrainConfig` and its choices, which live in `transformer_networks.config` beside `TransformerConfig`; this
module keeps the old import path working (`from transformer_networks.training.config import TrainConfig`)."""

from __future__ import annotations

from ..config import OPTIMIZERS, PRECISIONS, SCHEDULES, TOKENIZERS, TrainConfig
from ..config import TRAIN_FIELDS as FIELDS
from ..tasks import TASKS as _TASKS

TASKS = tuple(_TASKS)  # the task names (the registry is `tasks.TASKS`)
# The task's metric that picks the best checkpoint, and whether higher is better (each task declares its own).
BEST_METRIC = {name: (task.metric, task.higher_is_better) for name, task in _TASKS.items()}

__all__ = ["BEST_METRIC", "FIELDS", "OPTIMIZERS", "PRECISIONS", "SCHEDULES", "TASKS", "TOKENIZERS", "TrainConfig"]
