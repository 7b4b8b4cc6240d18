"""The three tasks, each as a small class the trainer drives the same way.

    read_splits(task, spec, cfg)  the raw train / valid / test examples a `DataSpec` names
    Task.encode(raw)              raw examples -> token ids, over-long ones dropped or truncated (and counted)
    Task.batches(examples)        the batches of one epoch (dicts of tensors)
    Task.loss(model, batch)       the training loss of one batch
    Task.evaluate(model, encoded) the task's metrics on encoded examples (references are the raw texts kept)

    task            raw example             model                   batches                  metrics
    lm              a text                  TransformerLM           contiguous blocks        loss, perplexity, bpc
    translation     (source, target)        Seq2SeqTransformer      token budget, bucketed   bleu, chrf, exact match
    classification  (text, label)           TransformerClassifier   dynamic padding          accuracy, macro-F1
All three also report loss and token accuracy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import pack_blocks, pad_batch, token_budget_batches
from ..data.builtin import load_builtin
from ..data.readers import DataError, read_classification, read_lm_text, read_parallel, read_translation_tsv
from ..data.tokenizer import TextTokenizer, train_tokenizer
from ..errors import UserError
from ..generation import generate_in_batches
from .config import BEST_METRIC, TrainConfig
from .losses import label_smoothed_cross_entropy

Batch = dict[str, Tensor]


# --- where the data comes from ---------------------------------------------------------------------------------


@dataclass
class DataSpec:
    """The data of a run as given on the command line (saved in task.json so `evaluate` can find it again)."""

    data: list[str] = field(default_factory=list)  # files/directories, or ["builtin:NAME"]
    valid: list[str] = field(default_factory=list)
    source_file: str | None = None  # translation from two line-aligned files
    target_file: str | None = None
    valid_source_file: str | None = None
    valid_target_file: str | None = None

    @property
    def builtin(self) -> str | None:
        if len(self.data) == 1 and self.data[0].startswith("builtin:"):
            return self.data[0].removeprefix("builtin:")
        return None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataSpec:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass
class Splits:
    train: list
    valid: list
    test: list | None  # built-in data only
    default_tokenizer: str
    valid_source: str  # where the validation data came from, for messages


DEFAULT_BUILTIN = {
    "lm": "builtin:stdlib-docs", "translation": "builtin:scan", "classification": "builtin:stdlib-topics",
}
DEFAULT_TOKENIZER = {"lm": "char", "translation": "bpe", "classification": "bpe"}


def holdout(task: str, examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, valid): for pairs a seeded random `fraction` of the examples; for language-modeling text the last
    `fraction` of the characters (as nanoGPT splits Tiny Shakespeare), so no passage is in both."""
    if task == "lm":
        text = "".join(examples)
        cut = int(len(text) * (1 - fraction))
        if cut <= 0 or cut >= len(text):
            raise DataError(f"cannot hold out {fraction:.0%} of {len(text)} characters for validation; give --valid")
        return [text[:cut]], [text[cut:]]
    if len(examples) < 2:
        raise DataError(f"{len(examples)} example(s): too few to hold some out for validation; give --valid")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_valid = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    held = set(order[:n_valid])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def read_examples(task: str, paths: Sequence[str], cfg: TrainConfig, source_file: str | None = None,
                  target_file: str | None = None, option: str = "") -> list:
    """Raw examples of one task from files (not built-in data). `option` is "" or "valid-", for messages."""
    if source_file or target_file:
        if task != "translation":
            raise UserError(f"--{option}source-file/--{option}target-file are for translation, not {task}")
        if not (source_file and target_file):
            raise UserError(f"give both --{option}source-file and --{option}target-file")
        return read_parallel(source_file, target_file)
    if not paths:
        raise UserError("no data given")
    if task == "lm":
        return read_lm_text(paths)
    if len(paths) != 1:
        raise UserError(f"{task} data is one file; got {len(paths)}")
    if task == "translation":
        return read_translation_tsv(paths[0])
    return read_classification(paths[0], cfg.text_column, cfg.label_column)


def read_splits(task: str, spec: DataSpec, cfg: TrainConfig) -> Splits:
    """The raw train/valid/test examples of a run. No data at all means the task's built-in dataset."""
    if not spec.data and not spec.source_file:
        spec.data = [DEFAULT_BUILTIN[task]]
    test = None
    if spec.builtin is not None:
        if spec.source_file:
            raise UserError("give --data or --source-file/--target-file, not both")
        ds = load_builtin(spec.builtin, seed=0)
        if ds.task != task:
            raise UserError(f"builtin:{ds.name} is a {ds.task} dataset, not {task}")
        train, test, default_tokenizer = list(ds.train), list(ds.test), ds.tokenizer
    else:
        if spec.source_file and spec.data:
            raise UserError("give --data or --source-file/--target-file, not both")
        train = read_examples(task, spec.data, cfg, spec.source_file, spec.target_file)
        default_tokenizer = DEFAULT_TOKENIZER[task]
    if spec.valid or spec.valid_source_file:
        valid = read_examples(task, spec.valid, cfg, spec.valid_source_file, spec.valid_target_file, "valid-")
        source = " ".join(spec.valid) or f"{spec.valid_source_file} + {spec.valid_target_file}"
    else:
        train, valid = holdout(task, train, cfg.valid_fraction, cfg.seed)
        source = f"{cfg.valid_fraction:.0%} of the training data (seed {cfg.seed})"
    return Splits(train, valid, test, default_tokenizer, source)


# --- the tasks ------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    examples: list  # task-specific
    dropped: int = 0
    truncated: int = 0
    kept_raw: list | None = None  # the raw examples that were kept, in the same order


class Task:
    name: str
    model_class: type[nn.Module]

    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.metric, self.higher_is_better = BEST_METRIC[self.name]

    def model_settings(self) -> dict[str, Any]:
        """Model config fields the data decides (vocabulary sizes, classes, the longest sequence)."""
        raise NotImplementedError

    def encode(self, raw: list) -> Encoded:
        raise NotImplementedError

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        """The batches of one pass; `epoch` given = training order (seeded by cfg.seed and the epoch)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        """Metrics on `encoded` (from `encode`, so the caller tokenizes once however often it evaluates)."""
        raise NotImplementedError

    def better(self, new: float, old: float | None) -> bool:
        return old is None or (new > old if self.higher_is_better else new < old)

    def _check_length(self, ids: list[int], limit: int) -> tuple[list[int] | None, bool]:
        """(ids, truncated) with ids cut to `limit`, or (None, False) when too long and not truncating."""
        if len(ids) <= limit:
            return ids, False
        if not self.cfg.truncate:
            return None, False
        return ids[:limit], True


def _token_accuracy(logits: Tensor, targets: Tensor, pad_id: int | None) -> tuple[int, int]:
    return metrics.token_accuracy(logits, targets, ignore_index=pad_id)


class LanguageModelingTask(Task):
    name = "lm"

    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer, char_level: bool) -> None:
        super().__init__(cfg, tokenizer)
        self.char_level = char_level

    def model_settings(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "max_seq_len": self.cfg.block_size}

    def encode(self, raw: list[str]) -> Encoded:
        ids: list[int] = []
        for text in raw:
            ids.extend(self.tokenizer.encode(text))
        return Encoded([torch.tensor(ids, dtype=torch.long)])

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
        return [{"ids": inputs[order[i : i + size]], "targets": targets[order[i : i + size]]}
                for i in range(0, len(order), size)]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"])  # (B, T, V)
        return label_smoothed_cross_entropy(logits, batch["targets"], smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        total, count, correct = 0.0, 0, 0
        for batch in self.batches(encoded):
            ids, targets = batch["ids"].to(device), batch["targets"].to(device)
            logits = model(ids)
            total += float(label_smoothed_cross_entropy(logits, targets, reduction="sum"))
            c, n = _token_accuracy(logits, targets, None)
            correct, count = correct + c, count + n
        loss = total / count
        out = {"loss": loss, "perplexity": metrics.perplexity(loss), "token_accuracy": correct / count}
        if self.char_level:
            out["bits_per_character"] = metrics.bits_per_character(loss)
        return out


class TranslationTask(Task):
    name = "translation"

    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer, source_tokenizer: TextTokenizer) -> None:
        super().__init__(cfg, tokenizer)
        self.source_tokenizer = source_tokenizer
        self.pad_id = tokenizer.pad_id
        # Decoding for BLEU: greedy during training (fast); `evaluate` switches to the paper's beam search.
        self.num_beams = 1
        self.length_penalty = 1.0

    def model_settings(self) -> dict[str, Any]:
        # Room for decoding up to 50 tokens past the longest input (the paper's max output length).
        settings: dict[str, Any] = {"max_seq_len": self.cfg.max_len + 50, "pad_id": self.pad_id}
        if self.source_tokenizer is self.tokenizer:
            settings.update(vocab_size=self.tokenizer.vocab_size, src_vocab_size=None, tgt_vocab_size=None)
        else:
            settings.update(vocab_size=self.tokenizer.vocab_size, src_vocab_size=self.source_tokenizer.vocab_size,
                            tgt_vocab_size=self.tokenizer.vocab_size)
        return settings

    def encode(self, raw: list[tuple[str, str]]) -> Encoded:
        """(source ids + EOS, target ids): the decoder reads BOS + target and predicts target + EOS."""
        out, kept, dropped, truncated = [], [], 0, 0
        sources = self.source_tokenizer.encode_batch([s for s, _ in raw])
        targets = self.tokenizer.encode_batch([t for _, t in raw])
        eos = self.tokenizer.eos_id
        for pair, src, tgt in zip(raw, sources, targets, strict=True):
            if not src or not tgt:
                dropped += 1
                continue
            src, cut_src = self._check_length(src, self.cfg.max_len - 1)
            tgt, cut_tgt = self._check_length(tgt, self.cfg.max_len - 1)
            if src is None or tgt is None:
                dropped += 1
                continue
            truncated += cut_src or cut_tgt
            out.append((src + [eos], tgt))
            kept.append(pair)
        return Encoded(out, dropped, truncated, kept)

    def _collate(self, examples: list[tuple[list[int], list[int]]]) -> Batch:
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        return {
            "src": pad_batch([s for s, _ in examples], self.pad_id),
            "tgt_in": pad_batch([[bos, *t] for _, t in examples], self.pad_id),
            "tgt_out": pad_batch([[*t, eos] for _, t in examples], self.pad_id),
        }

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        examples = encoded.examples
        lengths = [max(len(s), len(t) + 1) for s, t in examples]
        groups = token_budget_batches(lengths, self.cfg.max_tokens, shuffle=epoch is not None,
                                      seed=self.cfg.seed * 1000 + (epoch or 0))
        return [self._collate([examples[i] for i in group]) for group in groups]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        # The model computes the loss itself (padding, its cfg.pad_id = self.pad_id, is no target): its output layer
        # then skips the padding positions.
        return model(batch["src"], batch["tgt_in"], labels=batch["tgt_out"],
                     label_smoothing=self.cfg.label_smoothing).loss

    @torch.no_grad()
    def translate(self, model: nn.Module, sources: list[list[int]], device: torch.device,
                  batch_size: int = 128) -> list[str]:
        """Translations of encoded sources (each ending in EOS), in order, detokenized: greedy, or beam search
        when `num_beams` > 1."""
        hypotheses = generate_in_batches(model, sources, pad_id=self.pad_id, batch_size=batch_size,
                                         bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id,
                                         num_beams=self.num_beams, length_penalty=self.length_penalty)
        return [self.tokenizer.decode(hyps[0].tokens) for hyps in hypotheses]

    @torch.no_grad()
    def probabilities(self, model: nn.Module, encoded: Encoded, device: torch.device) -> Tensor:
        """(N, classes) class probabilities of every example, in the order of `encoded.examples`, on the CPU."""
        return torch.cat([model(batch["ids"].to(device)).float().softmax(-1).cpu()
                          for batch in self.batches(encoded)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        if not encoded.examples:
            raise DataError("no evaluation example fits max_len")
        total, correct, count = 0.0, 0, 0
        for batch in self.batches(encoded):
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["src"], batch["tgt_in"])
            total += float(label_smoothed_cross_entropy(logits, batch["tgt_out"], ignore_index=self.pad_id,
                                                        reduction="sum"))
            c, n = _token_accuracy(logits, batch["tgt_out"], self.pad_id)
            correct, count = correct + c, count + n
        hypotheses = self.translate(model, [s for s, _ in encoded.examples], device)
        references = [t for _, t in encoded.kept_raw]
        loss = total / count
        return {
            "loss": loss, "perplexity": metrics.perplexity(loss), "token_accuracy": correct / count,
            "bleu": metrics.bleu(hypotheses, references), "chrf": metrics.chrf(hypotheses, references),
            "exact_match": metrics.exact_match(hypotheses, references),
        }


class ClassificationTask(Task):
    name = "classification"

    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer, labels: list[str]) -> None:
        super().__init__(cfg, tokenizer)
        self.labels = labels
        self.label_index = {label: i for i, label in enumerate(labels)}
        self.pad_id = tokenizer.pad_id

    def model_settings(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "n_classes": len(self.labels),
                "max_seq_len": self.cfg.max_len, "pad_id": self.pad_id}

    def encode(self, raw: list[tuple[str, str]]) -> Encoded:
        """([CLS] + text ids, class index)."""
        unknown = sorted({label for _, label in raw} - set(self.label_index))
        if unknown:
            raise DataError(f"label(s) {', '.join(map(repr, unknown[:5]))} not among the training labels "
                            f"({', '.join(map(repr, self.labels))})")
        out, kept, dropped, truncated = [], [], 0, 0
        for pair, ids in zip(raw, self.tokenizer.encode_batch([t for t, _ in raw]), strict=True):
            ids, cut = self._check_length([self.tokenizer.cls_id, *ids], self.cfg.max_len)
            if ids is None:
                dropped += 1
                continue
            truncated += cut
            out.append((ids, self.label_index[pair[1]]))
            kept.append(pair)
        return Encoded(out, dropped, truncated, kept)

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        examples = encoded.examples
        order = list(range(len(examples)))
        if epoch is not None:
            random.Random(self.cfg.seed * 1000 + epoch).shuffle(order)
        size = self.cfg.batch_size
        return [{"ids": pad_batch([examples[i][0] for i in order[s : s + size]], self.pad_id),
                 "labels": torch.tensor([examples[i][1] for i in order[s : s + size]])}
                for s in range(0, len(order), size)]

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
        return torch.cat([model(batch["ids"].to(device)).float().softmax(-1).cpu()
                          for batch in self.batches(encoded)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        if not encoded.examples:
            raise DataError("no evaluation example fits max_len")
        predictions, total = self.predict(model, encoded, device)
        labels = [y for _, y in encoded.examples]
        accuracy = metrics.accuracy(predictions, labels)
        return {"loss": total / len(labels), "accuracy": accuracy, "macro_f1": metrics.macro_f1(predictions, labels),
                "token_accuracy": accuracy}


# --- building a task from data --------------------------------------------------------------------------------


def build_tokenizers(task: str, train: list, kind: str, cfg: TrainConfig) -> tuple[TextTokenizer, TextTokenizer]:
    """(target or only tokenizer, source tokenizer) trained on the training examples."""
    if task == "lm":
        tok = train_tokenizer(train, kind, cfg.vocab_size)
        return tok, tok
    if task == "classification":
        tok = train_tokenizer([t for t, _ in train], kind, cfg.vocab_size)
        return tok, tok
    if cfg.shared_vocab:
        tok = train_tokenizer([s for s, _ in train] + [t for _, t in train], kind, cfg.vocab_size)
        return tok, tok
    return (train_tokenizer([t for _, t in train], kind, cfg.vocab_size),
            train_tokenizer([s for s, _ in train], kind, cfg.vocab_size))


def make_task(task: str, cfg: TrainConfig, tokenizer: TextTokenizer, source_tokenizer: TextTokenizer,
              labels: list[str] | None = None, char_level: bool = False) -> Task:
    if task == "lm":
        return LanguageModelingTask(cfg, tokenizer, char_level)
    if task == "translation":
        return TranslationTask(cfg, tokenizer, source_tokenizer)
    if task == "classification":
        return ClassificationTask(cfg, tokenizer, labels or [])
    raise UserError(f"unknown task {task!r}; choose one of lm, translation, classification")


def sort_labels(labels: set[str]) -> list[str]:
    """Class order: numerically when every label is an integer (so "10" follows "9"), else alphabetically.
    Fewer than two labels is an error: there is nothing to classify."""
    if len(labels) < 2:
        raise DataError(f"classification needs at least 2 labels; the training data has {sorted(labels)}")
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def describe_filtering(what: str, encoded: Encoded, limit: int, log: Callable[[str], None]) -> None:
    if encoded.dropped:
        log(f"{what}: dropped {encoded.dropped} example(s) longer than max_len={limit} tokens or empty "
            f"(--truncate keeps them, cut)")
    if encoded.truncated:
        log(f"{what}: truncated {encoded.truncated} example(s) to max_len={limit} tokens")
