"""Tasks: one module per application, registered in `TASKS`, read by the trainer, `evaluate`, checkpoints,
`from_pretrained` and the command line alike.

    task      module              raw example        model family (models.MODELS)   batches                best
    lm        lm.py               a text             "lm"  TransformerLM            contiguous blocks      loss
    translation translation.py    (source, target)   "seq2seq" Seq2SeqTransformer   token budget, bucketed bleu
    classification classification.py (text, label)   "classifier" TransformerClassifier  dynamic padding   accuracy
    qa        qa.py               QAExample          "qa" TransformerQA             question + context windows f1
    chat      chat.py             Conversation       "lm"  TransformerLM            conversations, padded  loss

## Adding a task

Write one module here with a subclass of `Task` (`base.py`) and add one line to `TASKS` below. The class declares:

- `name` (the command line's `train NAME`), `family` (which model it trains: a key of `models.MODELS`),
  `metric` and `higher_is_better` (the validation metric that picks `best/`), `builtin` (the built-in dataset
  `train NAME` uses with no data, `builtin:...` from `data.builtin`), `default_tokenizer`.
- Data, as class methods (used before a tokenizer exists): `read_file` (a file -> raw examples; or `read_paths`
  for several files, `read_pair` for a source/target pair of files; raise
  `data.readers.DataError` naming the file and line), `holdout` (the validation part when none is given),
  `texts` (what the tokenizers are trained on), `labels_of` (class labels, for classifiers).
- With tokenizers, as methods: `model_settings` (the config fields the data decides: vocabulary, classes,
  max_seq_len), `encode` (raw -> ids, over-long examples dropped or cut and counted; `describe` says so),
  `batches` (one epoch of
  dicts of tensors; seeded when `epoch` is given), `loss` (a batch -> the training loss), `evaluate` (encoded
  examples -> metrics), and optionally `samples` (predictions for `evaluate --examples`), `tokens_in`.

The trainer drives every task the same way:

    splits = read_splits(task_class, spec, cfg)                        # data/splits.py
    tokenizer, source_tokenizer = task_class.train_tokenizers(splits.train, kind, cfg)
    task = task_class(cfg, tokenizer, source_tokenizer, labels)
    encoded = task.encode(splits.train)
    for batch in task.batches(encoded, epoch=e): loss = task.loss(model, batch) ...
    metrics = task.evaluate(model, task.encode(splits.valid), device)  # metrics[task.metric] picks best/
"""

from __future__ import annotations

from ..errors import UserError
from .base import Batch, Encoded, Task, describe_filtering
from .chat import ChatTask
from .classification import ClassificationTask, sort_labels
from .lm import LanguageModelingTask
from .qa import QuestionAnsweringTask
from .translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    LanguageModelingTask.name: LanguageModelingTask,
    TranslationTask.name: TranslationTask,
    ClassificationTask.name: ClassificationTask,
    QuestionAnsweringTask.name: QuestionAnsweringTask,
    ChatTask.name: ChatTask,
}


def get_task(name: str) -> type[Task]:
    """The task class registered as `name`; an unknown name is a `UserError` listing the known ones."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


__all__ = [
    "TASKS",
    "Batch",
    "ChatTask",
    "ClassificationTask",
    "Encoded",
    "LanguageModelingTask",
    "QuestionAnsweringTask",
    "Task",
    "TranslationTask",
    "describe_filtering",
    "get_task",
    "sort_labels",
]
