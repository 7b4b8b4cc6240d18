"""A new task is one module and one line in `tasks.TASKS`: a task written here, outside the package, trains,
checkpoints, loads and evaluates through the same trainer, checkpoints and CLI as the built-in three."""

import random

import pytest
import torch
from torch import nn

from transformer_networks import cli
from transformer_networks.checkpoints import load_checkpoint
from transformer_networks.data.batching import pad_batch
from transformer_networks.data.readers import read_lines
from transformer_networks.tasks import TASKS, Encoded, Task
from transformer_networks.training import DataSpec, TrainConfig, evaluate, train


class VowelParityTask(Task):
    """Toy task: is the number of vowels in a word even or odd? Data: one word per line."""

    name = "vowel-parity"
    family = "classifier"
    metric, higher_is_better = "accuracy", True
    builtin = "builtin:none"  # no built-in data: files only
    default_tokenizer = "char"

    @classmethod
    def read_file(cls, path, cfg):
        return [
            (line, "even" if sum(c in "aeiou" for c in line) % 2 == 0 else "odd")
            for _, line in read_lines(path)
            if line
        ]

    @classmethod
    def labels_of(cls, train):
        return ["even", "odd"]

    @classmethod
    def texts(cls, train):
        return [word for word, _ in train], None

    def __init__(self, cfg, tokenizer, source_tokenizer=None, labels=None):
        super().__init__(cfg, tokenizer, source_tokenizer)
        self.labels = labels

    def model_settings(self):
        return {
            "vocab_size": self.tokenizer.vocab_size,
            "n_classes": 2,
            "max_seq_len": self.cfg.max_len,
            "pad_id": self.pad_id,
        }

    def encode(self, raw):
        ids = [[self.tokenizer.cls_id, *self.tokenizer.encode(word)] for word, _ in raw]
        return Encoded([(i, self.labels.index(y)) for i, (_, y) in zip(ids, raw, strict=True)], kept_raw=raw)

    def batches(self, encoded, *, epoch=None):
        order = list(range(len(encoded.examples)))
        if epoch is not None:
            random.Random(epoch).shuffle(order)
        size = self.cfg.batch_size
        return [
            {
                "ids": pad_batch([encoded.examples[i][0] for i in order[s : s + size]], self.pad_id),
                "labels": torch.tensor([encoded.examples[i][1] for i in order[s : s + size]]),
            }
            for s in range(0, len(order), size)
        ]

    def loss(self, model, batch):
        return nn.functional.cross_entropy(model(batch["ids"]), batch["labels"])

    @torch.no_grad()
    def evaluate(self, model, encoded, device):
        right = sum(
            int((model(b["ids"].to(device)).argmax(-1).cpu() == b["labels"]).sum()) for b in self.batches(encoded)
        )
        return {"accuracy": right / len(encoded.examples)}


@pytest.fixture
def words(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, VowelParityTask.name, VowelParityTask)  # the one registry line
    rng = random.Random(0)
    path = tmp_path / "words.txt"
    path.write_text(
        "".join("".join(rng.choice("abcdeiou") for _ in range(rng.randint(2, 6))) + "\n" for _ in range(200)),
        encoding="utf-8",
    )
    return path


def test_a_task_defined_outside_the_package_trains_saves_loads_and_evaluates(tmp_path, words):
    result = train(
        "vowel-parity",
        tmp_path / "run",
        data=DataSpec(data=[str(words)]),
        train_config=TrainConfig(max_steps=6, eval_every=3, batch_size=16, device="cpu"),
        quiet=True,
    )
    assert result.task == "vowel-parity" and result.steps == 6 and "accuracy" in result.best
    ck = load_checkpoint(tmp_path / "run")
    assert ck.task == "vowel-parity" and type(ck.model).__name__ == "TransformerClassifier"
    assert isinstance(ck.make_task(), VowelParityTask) and ck.labels == ["even", "odd"]
    again = evaluate(tmp_path / "run", split="valid")  # the run's own held-out words, re-derived
    assert again.metrics["accuracy"] == pytest.approx(result.best["accuracy"])


def test_the_command_line_offers_a_registered_task(tmp_path, words, capsys):
    assert (
        cli.main(
            [
                "train",
                "vowel-parity",
                "--data",
                str(words),
                "--out",
                str(tmp_path / "cli"),
                "--max-steps",
                "2",
                "--eval-every",
                "2",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert "best validation: accuracy" in capsys.readouterr().out


def test_the_validation_examples_evaluated_while_training_are_spread_over_the_split():
    # Built-in bAbI lists its tasks one after the other, SQuAD its articles: the first n would test one part only.
    ordered = [("task1", i) for i in range(300)] + [("task2", i) for i in range(300)]
    subset = Task.limit(ordered, 60)
    assert subset == [ordered[10 * i] for i in range(60)]
    assert sum(title == "task2" for title, _ in subset) == 30
    assert Task.limit(ordered, None) is ordered and Task.limit(ordered, 600) is ordered
