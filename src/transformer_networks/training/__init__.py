"""Training: the loop for every task of `tasks.TASKS`, its configuration, schedules, checkpoints and evaluation."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluation import Evaluation, evaluate
from .losses import label_smoothed_cross_entropy
from .schedules import make_scheduler
from .tasks import DataSpec
from .trainer import TrainingError, TrainResult, train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataSpec",
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "label_smoothed_cross_entropy",
    "load_checkpoint",
    "make_scheduler",
    "save_checkpoint",
    "train",
]
