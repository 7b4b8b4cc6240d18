"""Language modeling: a text corpus, contiguous blocks, next-token loss; loss, perplexity, bits per character."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import LMBlocks
from ..data.prepared import (
    PREPARE_ADVICE_BYTES,
    PreparedSplit,
    TokenStream,
    check_fits_in_memory,
    chunks_of,
    encode_chunks,
    is_prepared,
    read_documents,
)
from ..data.readers import DataError
from ..data.splits import holdout_text
from ..data.tokenizer import KINDS, TextTokenizer, train_tokenizer
from ..nn.losses import label_smoothed_cross_entropy
from .base import Batch, Encoded, Task


class LanguageModelingTask(Task):
    name = "lm"
    family = "lm"
    metric, higher_is_better = "loss", False
    builtin = "builtin:stdlib-docs"
    default_tokenizer = "char"
    raw_unit, encoded_unit = "characters", "tokens"
    text_chars = 0  # characters of text `encode` tokenized last (0 for prepared data): for the advice to `prepare`

    # Raw examples: the documents' texts, or one `PreparedSplit` (a directory `prepare lm` wrote: tokenized once,
    # trained on through memory maps, with its own tokenizer and validation split).

    @classmethod
    def read_paths(cls, paths: list[str], cfg: Any) -> list:
        for p in map(Path, paths):
            if p.is_dir() and any(p.glob("train-*.bin")) and not is_prepared(p):
                raise DataError(f"{p}: token shards without manifest.json: an interrupted `prepare`; run it again")
        if any(is_prepared(p) for p in paths):
            if len(paths) != 1:
                raise DataError(f"a prepared directory is all of a run's data; got {len(paths)} paths")
            return [PreparedSplit(Path(paths[0]).resolve(), "train")]
        check_fits_in_memory(paths)  # before reading: refused with the advice to `prepare` when too large
        docs = read_documents(paths, cfg.text_field)  # text files, directories, JSONL or Parquet text
        if not docs:
            raise DataError(f"{', '.join(map(str, paths))}: no text")
        return docs

    @classmethod
    def holdout(cls, examples: list, fraction: float, seed: int) -> tuple[list, list]:
        if examples and isinstance(examples[0], PreparedSplit):  # its own validation shards
            return examples, [PreparedSplit(examples[0].directory, "valid")]
        return holdout_text(examples, fraction)  # the end of the text, so no passage is in both

    @classmethod
    def holdout_source(cls, valid: list, fraction: float, seed: int) -> str:
        if valid and isinstance(valid[0], PreparedSplit):
            return f"the validation shards of {valid[0].directory} ({valid[0].manifest['valid_source']})"
        return f"the last {fraction:.0%} of the training text"

    @classmethod
    def size(cls, raw: list) -> int:
        if raw and isinstance(raw[0], PreparedSplit):
            return raw[0].tokens
        return sum(map(len, raw))

    @classmethod
    def resolve_settings(cls, cfg: Any, train: list) -> Any:
        cfg = super().resolve_settings(cfg, train)
        if train and isinstance(train[0], PreparedSplit):  # the kind the directory was prepared with
            kind = train[0].manifest["tokenizer_kind"]
            cfg = cfg.replace(tokenizer=kind if kind in KINDS else "bpe")
        return cfg

    @classmethod
    def train_tokenizers(cls, train: list, kind: str, cfg: Any) -> tuple[TextTokenizer, TextTokenizer]:
        if train and isinstance(train[0], PreparedSplit):
            tok = train[0].tokenizer()
            return tok, tok
        # Trained on the chunks the text is encoded in: a whole corpus as one string costs the trainer far more.
        tok = train_tokenizer((chunk for chunk, _ in chunks_of(train)), kind, cfg.vocab_size)
        return tok, tok

    def model_settings(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "max_seq_len": self.cfg.block_size}

    def encode(self, raw: list) -> Encoded:
        """One token stream: a prepared split's memory-mapped shards, or the documents tokenized in chunks of
        lines (as `prepare` does), each followed by <eos>, kept compact (uint16 for a vocabulary that fits)."""
        if raw and isinstance(raw[0], PreparedSplit):
            return Encoded([raw[0].stream()])
        self.text_chars = sum(map(len, raw))
        dtype = np.uint16 if self.tokenizer.vocab_size <= 1 << 16 else np.int32
        parts = list(encode_chunks(self.tokenizer, chunks_of(raw), dtype=dtype))
        return Encoded([TokenStream(parts)])  # the pieces as they come: no copy of the whole stream

    def validation_data(self, raw: list, n: int | None) -> Encoded:
        """The validation text's first n blocks (None: all of it): a large corpus's validation split would
        otherwise take longer to evaluate than the steps between evaluations."""
        encoded = self.encode(raw)
        if n is None:
            return encoded
        return Encoded([encoded.examples[0].head(n * self.cfg.block_size + 1)])

    def count(self, encoded: Encoded) -> int:
        return len(encoded.examples[0])

    def describe(self, what: str, encoded: Encoded, log: Callable[[str], None]) -> None:
        if what == "training data" and self.text_chars >= PREPARE_ADVICE_BYTES:
            log(
                f"{what}: {self.text_chars / 1e6:,.0f}M characters tokenized in memory for this run; "
                f"`transformer-networks prepare lm` tokenizes a corpus once and trains from disk in bounded memory"
            )

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> LMBlocks:
        """Contiguous blocks of the stream (made when a batch is taken: a large corpus is never copied)."""
        stream = encoded.examples[0]
        block, size = self.cfg.block_size, self.cfg.batch_size
        if epoch is None:
            return LMBlocks(stream, block, size)
        # A new offset and order each epoch, so every epoch cuts the text differently.
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        offset = int(torch.randint(0, block, (1,), generator=g)) if len(stream) > 2 * block + 1 else 0
        blocks = LMBlocks(stream, block, size, offset)
        return LMBlocks(stream, block, size, offset, torch.randperm(blocks.blocks, generator=g))

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
