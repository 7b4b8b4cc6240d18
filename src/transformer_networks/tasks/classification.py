"""Text classification: (text, label) rows, [CLS] + text padded per batch, cross-entropy; accuracy and macro-F1."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import LazyBatches, compact, length_grouped_batches, pad_batch
from ..data.readers import DataError, read_classification
from ..nn.losses import label_smoothed_cross_entropy
from .base import Batch, Encoded, Task


def sort_labels(labels: set[str]) -> list[str]:
    """Class order: numerically when every label is an integer (so "10" follows "9"), else alphabetically.
    Fewer than two labels is an error: there is nothing to classify."""
    if len(labels) < 2:
        raise DataError(f"classification needs at least 2 labels; the training data has {sorted(labels)}")
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


class ClassificationTask(Task):
    name = "classification"
    family = "classifier"
    metric, higher_is_better = "accuracy", True
    builtin = "builtin:stdlib-topics"

    def __init__(self, cfg: Any, tokenizer: Any, source_tokenizer: Any = None, labels: list[str] | None = None) -> None:
        super().__init__(cfg, tokenizer, source_tokenizer)
        self.labels = list(labels or [])
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def read_file(cls, path: str, cfg: Any) -> list:
        return read_classification(path, cfg.text_column, cfg.label_column)

    @classmethod
    def labels_of(cls, train: list) -> list[str]:
        return sort_labels({y for _, y in train})

    @classmethod
    def texts(cls, train: list) -> tuple[list[str], list[str] | None]:
        return [t for t, _ in train], None

    def model_settings(self) -> dict[str, Any]:
        return {
            "vocab_size": self.tokenizer.vocab_size,
            "n_classes": len(self.labels),
            "max_seq_len": self.max_len,
            "pad_id": self.pad_id,
        }

    def encode(self, raw: list[tuple[str, str]]) -> Encoded:
        """([CLS] + text ids, class index)."""
        unknown = sorted({label for _, label in raw} - set(self.label_index))
        if unknown:
            raise DataError(
                f"label(s) {', '.join(map(repr, unknown[:5]))} not among the training labels "
                f"({', '.join(map(repr, self.labels))})"
            )
        out, kept, dropped, truncated = [], [], 0, 0
        for pair, ids in zip(raw, self.tokenizer.encode_each([t for t, _ in raw]), strict=True):
            fitted, cut = self.fit([self.tokenizer.cls_id, *ids], self.max_len)
            if fitted is None:
                dropped += 1
                continue
            truncated += cut
            out.append((compact(fitted), self.label_index[pair[1]]))  # int32 array: 4 bytes a token
            kept.append(pair)
        return Encoded(out, dropped, truncated, kept)

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> LazyBatches:
        examples = encoded.examples
        order = list(range(len(examples)))
        size = self.cfg.batch_size
        if epoch is not None:
            rng = random.Random(self.cfg.seed * 1000 + epoch)
            rng.shuffle(order)
        if epoch is not None and self.cfg.group_by_length:
            groups = length_grouped_batches([len(ids) for ids, _ in examples], size, order, rng)
        else:
            groups = [order[s : s + size] for s in range(0, len(order), size)]

        def collate(group: list[int]) -> Batch:
            return {
                "ids": pad_batch([examples[i][0] for i in group], self.pad_id),
                "labels": torch.tensor([examples[i][1] for i in group]),
            }

        return LazyBatches(groups, collate)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return label_smoothed_cross_entropy(model(batch["ids"]), batch["labels"], smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def predict(self, model: nn.Module, encoded: Encoded, device: torch.device) -> tuple[list[int], float]:
        """(predicted class per example, summed loss)."""
        predictions, total = [], 0.0
        for batch in self.batches(encoded):
            logits = model(batch["ids"].to(device))
            total += float(label_smoothed_cross_entropy(logits, batch["labels"].to(device), reduction="sum"))
            predictions.extend(logits.argmax(-1).tolist())
        return predictions, total

    @torch.no_grad()
    def probabilities(self, model: nn.Module, encoded: Encoded, device: torch.device) -> Tensor:
        """(N, classes) class probabilities of every example, in the order of `encoded.examples`, on the CPU."""
        return torch.cat([model(batch["ids"].to(device)).float().softmax(-1).cpu() for batch in self.batches(encoded)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        if not encoded.examples:
            raise DataError("no evaluation example fits max_len")
        predictions, total = self.predict(model, encoded, device)
        labels = [y for _, y in encoded.examples]
        accuracy = metrics.accuracy(predictions, labels)
        return {
            "loss": total / len(labels),
            "accuracy": accuracy,
            "macro_f1": metrics.macro_f1(predictions, labels),
            "token_accuracy": accuracy,
        }

    def samples(self, model: nn.Module, raw: list, n: int, device: torch.device) -> list[dict[str, Any]]:
        encoded = self.encode(raw[:n])
        predictions, _ = self.predict(model, encoded, device)
        assert encoded.kept_raw is not None  # `encode` keeps them
        return [
            {"text": text, "prediction": self.labels[p], "reference": label}
            for (text, label), p in zip(encoded.kept_raw, predictions, strict=True)
        ]
