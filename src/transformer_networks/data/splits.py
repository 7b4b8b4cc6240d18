"""Where a run's data comes from, and how it splits into training, validation and test examples.

    spec = DataSpec(data=["pairs.tsv"])            # as given on the command line (saved with every checkpoint)
    splits = read_splits(task, spec, cfg)          # raw train / valid (/ test for built-in data) examples

A task (see `transformer_networks.tasks`) says how its files are read (`task.read`), which built-in dataset it
trains on by default (`task.builtin`) and how validation data is held out of the training data when none is given
(`task.holdout`: a seeded random fraction of the examples, or for language modeling the end of the text).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import UserError
from .builtin import load_builtin
from .readers import DataError


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

    @property
    def has_valid(self) -> bool:
        return bool(self.valid or self.valid_source_file)

    @property
    def given(self) -> bool:
        """Whether any data was named (files, a built-in dataset or a source/target pair)."""
        return bool(self.data or self.source_file or self.target_file)

    def describe(self) -> str:
        return " ".join(self.data) or f"{self.source_file} + {self.target_file}"

    def describe_valid(self) -> str:
        return " ".join(self.valid) or f"{self.valid_source_file} + {self.valid_target_file}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataSpec:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class ReadsData(Protocol):
    """What `read_splits` needs of a task (every `tasks.Task` class has it)."""

    name: str
    builtin: str
    default_tokenizer: str

    @classmethod
    def read(
        cls,
        paths: list[str],
        cfg: Any,
        source_file: str | None = None,
        target_file: str | None = None,
        option: str = "",
    ) -> list: ...

    @classmethod
    def holdout(cls, examples: list, fraction: float, seed: int) -> tuple[list, list]: ...

    @classmethod
    def holdout_source(cls, valid: list, fraction: float, seed: int) -> str: ...


@dataclass
class Splits:
    train: list
    valid: list
    test: list | None  # built-in data only
    default_tokenizer: str
    valid_source: str  # where the validation data came from, for messages


def holdout_examples(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, valid): a seeded random `fraction` of the examples held out, both in their original order."""
    if len(examples) < 2:
        raise DataError(f"{len(examples)} example(s): too few to hold some out for validation; give --valid")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_valid = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    held = set(order[:n_valid])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def holdout_groups(examples: list, fraction: float, seed: int, key: Callable[[Any], Hashable]) -> tuple[list, list]:
    """(train, valid): a seeded random `fraction` of the groups of examples that share a `key` (for question
    answering, a context), every example of a group on the same side; both in their original order."""
    groups = list(dict.fromkeys(key(e) for e in examples))
    if len(groups) < 2:
        raise DataError(f"{len(groups)} group(s) of examples: too few to hold some out for validation; give --valid")
    random.Random(seed).shuffle(groups)
    n_valid = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    held = set(groups[:n_valid])
    return [e for e in examples if key(e) not in held], [e for e in examples if key(e) in held]


def holdout_text(texts: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """([train text], [valid text]): the last `fraction` of the characters of the texts joined (as nanoGPT splits
    Tiny Shakespeare), so no passage is in both."""
    text = "".join(texts)
    cut = int(len(text) * (1 - fraction))
    if cut <= 0 or cut >= len(text):
        raise DataError(f"cannot hold out {fraction:.0%} of {len(text)} characters for validation; give --valid")
    return [text[:cut]], [text[cut:]]


def check_builtin(name: str, task: ReadsData) -> Any:
    """The built-in dataset `name`, which must be one of `task`'s."""
    ds = load_builtin(name, seed=0)
    if ds.task != task.name:
        raise UserError(f"builtin:{ds.name} is a {ds.task} dataset, not {task.name}")
    return ds


def read_splits(task: ReadsData, spec: DataSpec, cfg: Any) -> Splits:
    """The raw train/valid/test examples of a run. No data at all means the task's built-in dataset (and `spec`
    then names it)."""
    if not spec.data and not spec.source_file:
        spec.data = [task.builtin]
    if spec.source_file and spec.data:
        raise UserError("give --data or --source-file/--target-file, not both")
    test = None
    if spec.builtin is not None:
        ds = check_builtin(spec.builtin, task)
        train, test, default_tokenizer = list(ds.train), list(ds.test), ds.tokenizer
    else:
        train = task.read(spec.data, cfg, spec.source_file, spec.target_file)
        default_tokenizer = task.default_tokenizer
    if spec.has_valid:
        valid = task.read(spec.valid, cfg, spec.valid_source_file, spec.valid_target_file, "valid-")
        source = spec.describe_valid()
    else:
        train, valid = task.holdout(train, cfg.valid_fraction, cfg.seed)
        source = task.holdout_source(valid, cfg.valid_fraction, cfg.seed)
    return Splits(train, valid, test, default_tokenizer, source)


def run_split(task: ReadsData, spec: DataSpec, cfg: Any, split: str) -> tuple[list, str]:
    """The raw examples of one split of a run's data, and a description. The held-out validation part is
    re-derived exactly as training derived it (same fraction and seed)."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    if split == "valid" and spec.has_valid:
        return task.read(
            spec.valid, cfg, spec.valid_source_file, spec.valid_target_file, "valid-"
        ), "the run's validation data"
    if spec.builtin is not None:
        ds = load_builtin(spec.builtin, seed=0)
        if split == "test":
            return list(ds.test), f"builtin:{ds.name} test split"
        train = list(ds.train)
    elif split == "test" and spec.has_valid:  # no test split: the validation data
        return task.read(
            spec.valid, cfg, spec.valid_source_file, spec.valid_target_file, "valid-"
        ), "the run's validation data"
    else:
        train = task.read(spec.data, cfg, spec.source_file, spec.target_file)
    if split == "train" and spec.has_valid:
        return train, "the run's training data"
    rest, held = task.holdout(train, cfg.valid_fraction, cfg.seed)
    if split == "train":
        return rest, "the run's training data (less its held-out validation part)"
    return held, f"the run's held-out validation data ({cfg.valid_fraction:.0%}, seed {cfg.seed})"


SPLITS = ("train", "valid", "test")
