"""The tasks moved to `transformer_networks.tasks` (one module each) and the data splitting to
`transformer_networks.data.splits`; these names stay importable from here."""

from ..data.splits import DataSpec, Splits, read_splits
from ..tasks import (
    TASKS,
    Batch,
    ClassificationTask,
    Encoded,
    LanguageModelingTask,
    Task,
    TranslationTask,
    describe_filtering,
    sort_labels,
)

__all__ = [
    "TASKS",
    "Batch",
    "ClassificationTask",
    "DataSpec",
    "Encoded",
    "LanguageModelingTask",
    "Splits",
    "Task",
    "TranslationTask",
    "describe_filtering",
    "read_splits",
    "sort_labels",
]
