"""`Task`: the base class every task module fills in (the interface is described in `tasks/__init__.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.splits import holdout_examples
from ..data.tokenizer import TextTokenizer, train_tokenizer
from ..errors import UserError

Batch = dict[str, Tensor]


@dataclass
class Encoded:
    examples: list  # task-specific
    dropped: int = 0
    truncated: int = 0
    kept_raw: list | None = None  # the raw examples that were kept, in the same order


class Task:
    """One application: how its data is read, encoded and batched, what its loss and metrics are.

    Class attributes (read before any tokenizer exists): `name` (the CLI's task name), `family` (the model family,
    a key of `models.MODELS`), `metric` and `higher_is_better` (what picks the best checkpoint), `builtin` (the
    dataset trained on when no data is given), `default_tokenizer`, and `raw_unit` / `encoded_unit` (what
    `size` and `count` count, for messages).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    builtin: ClassVar[str]
    default_tokenizer: ClassVar[str] = "bpe"
    raw_unit: ClassVar[str] = "examples"
    encoded_unit: ClassVar[str] = "examples"
    default_max_len: ClassVar[int] = 256  # max_len when the settings leave it at None

    # --- data, before a tokenizer exists (class methods) ----------------------------------------------------

    @classmethod
    def read(
        cls,
        paths: list[str],
        cfg: Any,
        source_file: str | None = None,
        target_file: str | None = None,
        option: str = "",
    ) -> list:
        """Raw examples from files, or from a source/target pair of files (`option` is "" or "valid-", for
        messages). Tasks fill in `read_file` (one file), or `read_paths` (several) and `read_pair`."""
        if source_file or target_file:
            return cls.read_pair(source_file, target_file, option)
        if not paths:
            raise UserError("no data given")
        return cls.read_paths(paths, cfg)

    @classmethod
    def read_pair(cls, source_file: str | None, target_file: str | None, option: str) -> list:
        raise UserError(f"--{option}source-file/--{option}target-file are for translation, not {cls.name}")

    @classmethod
    def read_paths(cls, paths: list[str], cfg: Any) -> list:
        if len(paths) != 1:
            raise UserError(f"{cls.name} data is one file; got {len(paths)}")
        return cls.read_file(paths[0], cfg)

    @classmethod
    def read_file(cls, path: str, cfg: Any) -> list:
        raise NotImplementedError

    @classmethod
    def holdout(cls, examples: list, fraction: float, seed: int) -> tuple[list, list]:
        """(train, valid) when no validation data is given: a seeded random fraction of the examples."""
        return holdout_examples(examples, fraction, seed)

    @classmethod
    def holdout_source(cls, valid: list, fraction: float, seed: int) -> str:
        """Where `holdout`'s validation part came from, for messages."""
        return f"{fraction:.0%} of the training data (seed {seed})"

    @classmethod
    def resolve_settings(cls, cfg: Any, train: list) -> Any:
        """The training settings with the fields left to the task or the data (None) filled in, when a run starts
        (the run saves them resolved): max_len by default."""
        return cfg.replace(max_len=cls.default_max_len) if cfg.max_len is None else cfg

    @classmethod
    def labels_of(cls, train: list) -> list[str] | None:
        """The class labels the training examples define (classification), else None."""
        return None

    @classmethod
    def texts(cls, train: list) -> tuple[list[str], list[str] | None]:
        """(target or only texts, source texts or None) that the tokenizers are trained on."""
        return list(train), None

    @classmethod
    def train_tokenizers(cls, train: list, kind: str, cfg: Any) -> tuple[TextTokenizer, TextTokenizer]:
        """(target or only tokenizer, source tokenizer: the same object unless the sides have their own)."""
        texts, sources = cls.texts(train)
        if sources is None:
            tok = train_tokenizer(texts, kind, cfg.vocab_size)
            return tok, tok
        if cfg.shared_vocab:
            tok = train_tokenizer(sources + texts, kind, cfg.vocab_size)
            return tok, tok
        return train_tokenizer(texts, kind, cfg.vocab_size), train_tokenizer(sources, kind, cfg.vocab_size)

    @classmethod
    def prepare_pretrained_tokenizer(cls, tokenizer: TextTokenizer) -> TextTokenizer:
        """The tokenizer of a model given with --init, as this task needs it (chat adds its markers; a tokenizer
        that grows makes the model's embedding and output rows grow with it)."""
        return tokenizer

    @classmethod
    def size(cls, raw: list) -> int:
        """How many `raw_unit`s raw examples hold."""
        return len(raw)

    @classmethod
    def limit(cls, raw: list, n: int | None) -> list:
        """At most n validation examples to evaluate on while training (None: all), spread evenly over the split in
        its order: its first n would be the first tasks of the built-in bAbI data, or the first articles of a
        SQuAD file, only."""
        if n is None or n >= len(raw):
            return raw
        return [raw[i * len(raw) // n] for i in range(n)]

    # --- with tokenizers --------------------------------------------------------------------------------------

    def __init__(
        self,
        cfg: Any,
        tokenizer: TextTokenizer,
        source_tokenizer: TextTokenizer | None = None,
        labels: list[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.source_tokenizer = source_tokenizer if source_tokenizer is not None else tokenizer
        self.pad_id = tokenizer.pad_id

    @property
    def max_len(self) -> int:
        """The longest example (or window) in tokens."""
        return self.cfg.max_len if self.cfg.max_len is not None else self.default_max_len

    def model_settings(self) -> dict[str, Any]:
        """Model config fields the data decides (vocabulary sizes, classes, the longest sequence)."""
        raise NotImplementedError

    def validation_data(self, raw: list, n: int | None) -> Encoded:
        """The validation data evaluated while training, encoded: at most n examples (None: all)."""
        return self.encode(self.limit(raw, n))

    def encode(self, raw: list) -> Encoded:
        """Raw examples -> token ids, over-long ones dropped or truncated (and counted)."""
        raise NotImplementedError

    def count(self, encoded: Encoded) -> int:
        """How many `encoded_unit`s encoded examples hold."""
        return len(encoded.examples)

    def describe(self, what: str, encoded: Encoded, log: Callable[[str], None]) -> None:
        """Say what encoding left out or cut (`what` names the data)."""
        describe_filtering(what, encoded, self.max_len, log)

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> Sequence[Batch]:
        """The batches of one pass (a list, or made when indexed); `epoch` given = training order (seeded by
        cfg.seed and the epoch)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The training loss of one batch."""
        raise NotImplementedError

    def tokens_in(self, batch: Batch) -> int:
        """Real (not padding) tokens in a batch, for the throughput shown while training."""
        ids = batch["ids"]
        return int((ids != self.pad_id).sum()) if self.pad_id is not None else ids.numel()

    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        """Metrics on `encoded` (from `encode`, so the caller tokenizes once however often it evaluates)."""
        raise NotImplementedError

    def prediction_file(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, Any]:
        """What `evaluate --predictions FILE` writes (a JSON object); only some tasks have one."""
        raise UserError(f"--predictions is for question answering; a {self.name} checkpoint writes none")

    def samples(self, model: nn.Module, raw: list, n: int, device: torch.device) -> list[dict[str, Any]]:
        """A few predictions beside their references (`evaluate --examples N`); none by default."""
        return []

    def better(self, new: float, old: float | None) -> bool:
        return old is None or (new > old if self.higher_is_better else new < old)

    def fit(self, ids: list[int], limit: int) -> tuple[list[int] | None, bool]:
        """(ids, truncated) with ids cut to `limit`, or (None, False) when too long and not truncating."""
        if len(ids) <= limit:
            return ids, False
        if not self.cfg.truncate:
            return None, False
        return ids[:limit], True


def describe_filtering(what: str, encoded: Encoded, limit: int, log: Callable[[str], None]) -> None:
    if encoded.dropped:
        log(
            f"{what}: dropped {encoded.dropped} example(s) longer than max_len={limit} tokens or empty "
            f"(--truncate keeps them, cut)"
        )
    if encoded.truncated:
        log(f"{what}: truncated {encoded.truncated} example(s) to max_len={limit} tokens")
