"""Language modeling: a text corpus, contiguous blocks, next-token loss; loss, perplexity, bits per character."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import pack_blocks
from ..data.readers import read_lm_text
from ..data.splits import holdout_text
from ..nn.losses import label_smoothed_cross_entropy
from .base import Batch, Encoded, Task


class LanguageModelingTask(Task):
    name = "lm"
    family = "lm"
    metric, higher_is_better = "loss", False
    builtin = "builtin:stdlib-docs"
    default_tokenizer = "char"
    raw_unit, encoded_unit = "characters", "tokens"

    @classmethod
    def read_paths(cls, paths: list[str], cfg: Any) -> list:
        return read_lm_text(paths)  # files or directories

    @classmethod
    def holdout(cls, examples: list, fraction: float, seed: int) -> tuple[list, list]:
        return holdout_text(examples, fraction)  # the end of the text, so no passage is in both

    @classmethod
    def size(cls, raw: list) -> int:
        return sum(map(len, raw))

    @classmethod
    def limit(cls, raw: list, n: int | None) -> list:
        return raw  # one text: the whole validation text, always

    def model_settings(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "max_seq_len": self.cfg.block_size}

    def encode(self, raw: list[str]) -> Encoded:
        ids: list[int] = []
        for text in raw:
            ids.extend(self.tokenizer.encode(text))
        return Encoded([torch.tensor(ids, dtype=torch.long)])

    def count(self, encoded: Encoded) -> int:
        return len(encoded.examples[0])

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        stream = encoded.examples[0]
        block = self.cfg.block_size
        if epoch is None:
            inputs, targets = pack_blocks(stream, block)
            order = torch.arange(len(inputs))
        else:  # a new offset and order each epoch, so every epoch cuts the text differently
            g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
            offset = int(torch.randint(0, block, (1,), generator=g)) if len(stream) > 2 * block + 1 else 0
            inputs, targets = pack_blocks(stream[offset:], block)
            order = torch.randperm(len(inputs), generator=g)
        size = self.cfg.batch_size
        return [
            {"ids": inputs[order[i : i + size]], "targets": targets[order[i : i + size]]}
            for i in range(0, len(order), size)
        ]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"])  # (B, T, V)
        return label_smoothed_cross_entropy(logits, batch["targets"], smoothing=self.cfg.label_smoothing)

    def tokens_in(self, batch: Batch) -> int:
        return batch["ids"].numel()  # blocks of text: no padding

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        total, count, correct = 0.0, 0, 0
        for batch in self.batches(encoded):
            ids, targets = batch["ids"].to(device), batch["targets"].to(device)
            logits = model(ids)
            total += float(label_smoothed_cross_entropy(logits, targets, reduction="sum"))
            c, n = metrics.token_accuracy(logits, targets)
            correct, count = correct + c, count + n
        loss = total / count
        out = {"loss": loss, "perplexity": metrics.perplexity(loss), "token_accuracy": correct / count}
        if self.cfg.tokenizer == "char":
            out["bits_per_character"] = metrics.bits_per_character(loss)
        return out
