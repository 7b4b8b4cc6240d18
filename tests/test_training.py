"""Each task trains a tiny model on small files the test writes, through the same `train` the CLI calls; the
loss falls, the run directory holds what it promises, and `evaluate` reads the checkpoint back."""

import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.errors import UserError
from transformer_networks.training.checkpoint import load_checkpoint
from transformer_networks.training.config import TrainConfig
from transformer_networks.training.evaluation import evaluate
from transformer_networks.training.tasks import DataSpec
from transformer_networks.training.trainer import TrainingError, train

TINY = dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0)


def tiny_model(**overrides):
    return TransformerConfig.from_preset("tiny", **{**TINY, **overrides})


def quick(**overrides):
    values = dict(max_steps=40, eval_every=20, log_every=5, lr=3e-3, warmup=5, seed=0, device="cpu")
    return TrainConfig(**{**values, **overrides})


def train_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"], [r for r in records if r["split"] == "valid"]


def write_reversal_tsv(path, n, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))]
        lines.append(" ".join(words) + "\t" + " ".join(reversed(words)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_sentiment_tsv(path, n, seed):
    rng = random.Random(seed)
    filler = ["the", "film", "was", "plot", "actors", "a", "story", "really"]
    lines = ["sentence\tlabel"]
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(filler, 4) + [rng.choice(["great", "wonderful"] if label else ["awful", "boring"])]
        rng.shuffle(words)
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_language_model_trains_and_evaluates(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    out = tmp_path / "run"
    result = train(
        "lm",
        out,
        data=DataSpec(data=[str(text)]),
        model_config=tiny_model(),
        train_config=quick(block_size=32, batch_size=8),
        quiet=True,
    )
    losses, evals = train_losses(out)
    assert losses[-1] < 0.5 * losses[0]
    assert [e["step"] for e in evals] == [20, 40]
    assert {"loss", "perplexity", "bits_per_character", "token_accuracy"} <= set(result.best)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "task.json", "train_config.json"):
        assert (out / "best" / name).exists()
    assert (out / "last" / "training_state.safetensors").exists()
    # evaluate on the run's own validation data reproduces the best checkpoint's validation loss
    ev = evaluate(out, split="valid", device="cpu")
    assert ev.metrics["loss"] == pytest.approx(result.best["loss"], rel=1e-5)


def test_translation_trains_and_decodes(tmp_path):
    data = tmp_path / "train.tsv"
    write_reversal_tsv(data, 400, seed=1)
    valid = tmp_path / "valid.tsv"
    write_reversal_tsv(valid, 40, seed=2)
    out = tmp_path / "run"
    result = train(
        "translation",
        out,
        data=DataSpec(data=[str(data)], valid=[str(valid)]),
        model_config=tiny_model(positional="rope"),
        train_config=quick(tokenizer="word", max_tokens=512, max_steps=100, eval_every=50),
        quiet=True,
    )
    losses, _ = train_losses(out)
    assert losses[-1] < 0.5 * losses[0]
    assert {"bleu", "chrf", "exact_match", "token_accuracy"} <= set(result.best)
    ev = evaluate(out, device="cpu", samples=3)  # no test split for files: the validation data
    assert ev.examples == 40 and ev.data == "the run's validation data"
    # Training scores greedy translations; evaluate uses beam search unless told otherwise.
    greedy = evaluate(out, device="cpu", num_beams=1)
    assert greedy.metrics["bleu"] == pytest.approx(result.best["bleu"])
    assert ev.metrics["loss"] == pytest.approx(greedy.metrics["loss"])
    assert len(ev.samples) == 3 and set(ev.samples[0]) == {"source", "prediction", "reference"}


def test_translation_with_separate_vocabularies(tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{w}\t{w.upper()}\n" for w in ["ab", "cd", "ef", "gh"] * 20), encoding="utf-8")
    out = tmp_path / "run"
    train(
        "translation",
        out,
        data=DataSpec(data=[str(data)]),
        model_config=tiny_model(),
        train_config=quick(tokenizer="char", shared_vocab=False, max_steps=4, eval_every=4),
        quiet=True,
    )
    ckpt = load_checkpoint(out)
    assert (ckpt.path / "source_tokenizer.json").exists()
    assert ckpt.source_tokenizer.tokens("ab") == ["a", "b"]
    assert ckpt.tokenizer.tokens("AB") == ["A", "B"] and ckpt.tokenizer.tokens("ab") == ["<unk>", "<unk>"]


def test_classification_trains_to_high_accuracy(tmp_path):
    data = tmp_path / "train.tsv"
    write_sentiment_tsv(data, 300, seed=1)
    out = tmp_path / "run"
    result = train(
        "classification",
        out,
        data=DataSpec(data=[str(data)]),
        model_config=tiny_model(pooling="mean"),
        train_config=quick(tokenizer="word", batch_size=16, valid_fraction=0.2, max_steps=60),
        quiet=True,
    )
    losses, _ = train_losses(out)
    assert losses[-1] < 0.5 * losses[0]
    assert result.best["accuracy"] >= 0.9
    ckpt = load_checkpoint(out)
    assert ckpt.labels == ["0", "1"] and ckpt.config.n_classes == 2


def test_same_seed_same_run(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("abcdefg hijklmn\n" * 100, encoding="utf-8")
    runs = []
    for name in ("a", "b"):
        train(
            "lm",
            tmp_path / name,
            data=DataSpec(data=[str(text)]),
            model_config=tiny_model(dropout=0.1),
            train_config=quick(block_size=16, batch_size=4, max_steps=10, eval_every=10),
            quiet=True,
        )
        runs.append(train_losses(tmp_path / name)[0])
    assert runs[0] == runs[1]


def test_max_epochs_and_patience_stop_the_run(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("abcdefg hijklmn\n" * 100, encoding="utf-8")
    result = train(
        "lm",
        tmp_path / "epochs",
        data=DataSpec(data=[str(text)]),
        model_config=tiny_model(),
        train_config=quick(block_size=16, batch_size=4, max_steps=None, max_epochs=1.0),
        quiet=True,
    )
    # 1520 training characters (95% of 1600) -> 94 blocks of 16 (+1 target) at any offset < 16 -> 24 batches of 4
    assert result.steps == 24 and "24 steps" in result.stop_reason
    result = train(
        "lm",
        tmp_path / "patience",
        data=DataSpec(data=[str(text)]),
        model_config=tiny_model(),
        train_config=quick(
            block_size=16,
            batch_size=4,
            max_steps=1000,
            eval_every=1,
            patience=1,
            lr=1e-12,
            schedule="constant",
            warmup=0,
        ),
        quiet=True,
    )
    # updates of 1e-12 do not move float32 weights: the second evaluation is no better, and patience 1 stops
    assert "patience" in result.stop_reason and result.steps == 2


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    # Language-model batches hold equal token counts, so the mean of two half-batch losses is the full batch's loss
    # and two accumulated half batches must take the same optimizer steps as one batch of twice the size.
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i} of some text, {i * 7 % 13}\n" for i in range(150)), encoding="utf-8")
    losses = {}
    for name, batch_size, accum in (("big", 8, 1), ("accumulated", 4, 2)):
        train(
            "lm",
            tmp_path / name,
            data=DataSpec(data=[str(text)]),
            model_config=tiny_model(),
            train_config=quick(
                block_size=16, batch_size=batch_size, grad_accum=accum, max_steps=8, eval_every=8, log_every=1
            ),
            quiet=True,
        )
        losses[name] = train_losses(tmp_path / name)[0]
    assert losses["big"] == pytest.approx(losses["accumulated"], rel=1e-5)
    assert len(losses["big"]) == 8


def test_evaluate_uses_the_runs_own_splits(tmp_path):
    from transformer_networks.data.splits import run_split
    from transformer_networks.tasks import TranslationTask

    valid = tmp_path / "valid.tsv"
    valid.write_text("walk\tI_WALK\n", encoding="utf-8")
    cfg = TrainConfig()
    # built-in data with a validation file: "valid" is that file, "train" all of the built-in train split
    spec = DataSpec(data=["builtin:scan"], valid=[str(valid)])
    assert run_split(TranslationTask, spec, cfg, "valid") == ([("walk", "I_WALK")], "the run's validation data")
    assert len(run_split(TranslationTask, spec, cfg, "train")[0]) == 16_728
    # without one: the same seeded hold-out the trainer used, disjoint from what it trained on
    spec = DataSpec(data=["builtin:scan"])
    held, _ = run_split(TranslationTask, spec, cfg, "valid")
    rest, _ = run_split(TranslationTask, spec, cfg, "train")
    assert len(held) == round(0.05 * 16_728) and len(rest) + len(held) == 16_728 and not set(held) & set(rest)
    assert run_split(TranslationTask, spec, cfg, "test")[1] == "builtin:scan test split"


def nan_on_calls(monkeypatch, calls):
    """Make the language-model loss NaN on the given calls (1-based), as a bad batch or an overflow would."""
    from transformer_networks.training.tasks import LanguageModelingTask

    real, seen = LanguageModelingTask.loss, []

    def loss(self, model, batch):
        seen.append(1)
        value = real(self, model, batch)
        return value * float("nan") if len(seen) in calls else value

    monkeypatch.setattr(LanguageModelingTask, "loss", loss)


def test_skip_nonfinite_skips_at_most_n_bad_batches(tmp_path, monkeypatch, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40, encoding="utf-8")
    spec = DataSpec(data=[str(text)])
    messages = []
    nan_on_calls(monkeypatch, {3, 6})
    result = train(
        "lm",
        tmp_path / "ok",
        data=spec,
        model_config=tiny_model(),
        train_config=quick(block_size=16, max_steps=10, eval_every=5, skip_nonfinite=2),
        log=messages.append,
    )
    assert result.steps == 10  # the skipped batches do not count as steps
    assert "step 3: the loss is nan; batch skipped (1 of at most 2)" in capsys.readouterr().err
    assert "skipped 2 batch(es) with a non-finite loss, at steps 3, 5" in messages
    params = load_checkpoint(tmp_path / "ok" / "last").model.state_dict().values()
    assert all(bool(p.isfinite().all()) for p in params)  # no NaN reached the weights

    nan_on_calls(monkeypatch, {3, 8})
    with pytest.raises(
        TrainingError,
        match=r"step 7: the loss is nan; stopping \(the last checkpoint is .*last\).*"
        r"1 bad batch\(es\) skipped before, at steps 3",
    ):
        train(
            "lm",
            tmp_path / "stop",
            data=spec,
            model_config=tiny_model(),
            train_config=quick(block_size=16, max_steps=10, eval_every=5, skip_nonfinite=1),
            quiet=True,
        )
    nan_on_calls(monkeypatch, {2})
    with pytest.raises(TrainingError, match=r"step 2: the loss is nan; stopping \(no checkpoint was saved\)"):
        train(
            "lm",
            tmp_path / "none",
            data=spec,
            model_config=tiny_model(),
            train_config=quick(block_size=16, max_steps=10, eval_every=5),
            quiet=True,
        )


def test_losses_are_read_back_together_and_logged_as_if_read_every_step(tmp_path, monkeypatch):
    # Each read of a loss waits for the device; the trainer reads the losses of up to LOSS_READ_EVERY steps at once
    # (and at log lines, evaluations and stops), and what it logs must not change.
    from transformer_networks.training import trainer as trainer_module
    from transformer_networks.training.distributed import Distributed

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40, encoding="utf-8")
    spec = DataSpec(data=[str(text)])
    reads, real_means = [], Distributed.means

    def means(self, values):  # counts the reads and how many steps' losses each brings back
        reads.append(len(values))
        return real_means(self, values)

    monkeypatch.setattr(Distributed, "means", means)

    settings = quick(block_size=16, max_steps=45, eval_every=30, log_every=15)
    train("lm", tmp_path / "batched", data=spec, model_config=tiny_model(), train_config=settings, quiet=True)
    # step 1 (the first loss to show), 2-15 (log), 16-30 (log and evaluation), 31-45 (log, evaluation, the end)
    assert reads == [1, 14, 15, 15]

    monkeypatch.setattr(trainer_module, "LOSS_READ_EVERY", 1)
    reads.clear()
    train("lm", tmp_path / "each", data=spec, model_config=tiny_model(), train_config=settings, quiet=True)
    assert reads == [1] * 45
    assert train_losses(tmp_path / "batched")[0] == train_losses(tmp_path / "each")[0]

    monkeypatch.setattr(trainer_module, "LOSS_READ_EVERY", 4)
    reads.clear()
    train("lm", tmp_path / "four", data=spec, model_config=tiny_model(), train_config=settings, quiet=True)
    assert reads[:5] == [1, 4, 4, 4, 2]  # steps 1, 2-5, 6-9, 10-13, 14-15 (the log line)
    assert train_losses(tmp_path / "four")[0] == train_losses(tmp_path / "each")[0]


def test_a_nan_read_late_stops_the_run_at_its_step_before_a_checkpoint_holds_it(tmp_path, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40, encoding="utf-8")
    nan_on_calls(monkeypatch, {7})  # step 7's batch
    with pytest.raises(TrainingError, match=r"step 7: the loss is nan; stopping \(the last checkpoint is .*last\)"):
        train(
            "lm",
            tmp_path / "run",
            data=DataSpec(data=[str(text)]),
            model_config=tiny_model(),
            train_config=quick(block_size=16, max_steps=20, eval_every=5, log_every=1000),
            quiet=True,
        )
    last = load_checkpoint(tmp_path / "run" / "last")
    assert last.step == 5  # step 10's evaluation read the NaN and saved nothing
    assert all(bool(p.isfinite().all()) for p in last.model.state_dict().values())


def test_a_skipped_batch_at_the_end_of_an_epoch_still_ends_the_epoch(tmp_path, monkeypatch):
    from transformer_networks.training.tasks import LanguageModelingTask

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40, encoding="utf-8")
    real_batches, real_loss, seen = LanguageModelingTask.batches, LanguageModelingTask.loss, []
    per_epoch = {}

    def batches(self, encoded, *, epoch=None):
        out = real_batches(self, encoded, epoch=epoch)
        if epoch == 0:
            per_epoch[0] = len(out)
        return out

    def loss(self, model, batch):
        seen.append(batch["ids"].clone())
        value = real_loss(self, model, batch)
        return value * float("nan") if len(seen) == per_epoch[0] else value  # the epoch's last batch

    monkeypatch.setattr(LanguageModelingTask, "batches", batches)
    monkeypatch.setattr(LanguageModelingTask, "loss", loss)
    train(
        "lm",
        tmp_path / "run",
        data=DataSpec(data=[str(text)]),
        model_config=tiny_model(),
        train_config=quick(block_size=16, max_steps=per_epoch.get(0, 30) + 3, eval_every=1000, skip_nonfinite=1),
        quiet=True,
    )
    n = per_epoch[0]
    assert len(seen) > n + 1
    assert not torch.equal(seen[n], seen[0])  # the next epoch's first batch, not epoch 0 over again


def test_activation_checkpointing_gives_the_same_gradients_with_dropout():
    import torch

    from transformer_networks.models import Seq2SeqTransformer

    cfg = tiny_model(dropout=0.2, vocab_size=30)
    grads, calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = Seq2SeqTransformer(cfg).train()
        model.set_activation_checkpointing(checkpointing)
        layer = model.decoder.stack.layers[0]
        count = []
        layer.register_forward_pre_hook(lambda *args, count=count: count.append(1))
        torch.manual_seed(1)  # the same dropout masks in both runs (recomputation replays them)
        loss = model(torch.randint(5, 30, (3, 9)), torch.randint(5, 30, (3, 7))).logsumexp(-1).mean()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        calls.append(len(count))
    assert calls == [1, 2]  # checkpointed: the layer ran again in the backward pass
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_train_on_examples_in_memory_with_callbacks(tmp_path):
    # Python values instead of files: the run keeps them as RUN/examples/*.jsonl, so that evaluate reads them again;
    # the callbacks see every record, evaluation and checkpoint, and on_eval can stop the run.
    pairs = [(f"{a} {b}", f"{b} {a}") for a in "abcdef" for b in "ghijk"]
    logged, evals, saved = [], [], []

    def on_eval(step, metrics):
        evals.append((step, metrics))
        return step >= 4  # stop at the second evaluation

    result = train(
        "translation",
        tmp_path / "run",
        examples=pairs,
        valid=pairs[:6],
        model_config=TransformerConfig.from_preset("tiny", d_model=32, n_heads=2, n_layers=1, d_ff=64),
        train_config=TrainConfig(tokenizer="word", max_steps=50, eval_every=2, log_every=1, device="cpu"),
        quiet=True,
        on_log=logged.append,
        on_eval=on_eval,
        on_checkpoint=saved.append,
    )
    run = tmp_path / "run"
    assert result.steps == 4 and result.stop_reason == "on_eval asked to stop"
    assert logged == [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in evals] == [2, 4] and evals[-1][1] == result.last
    assert {p.name for p in saved} == {"best", "last"} and all(p.parent == run for p in saved)
    lines = (run / "examples" / "train.jsonl").read_text().splitlines()
    assert [tuple(json.loads(x).values()) for x in lines] == pairs
    info = json.loads((run / "run.json").read_text())["data"]
    assert info["data"] == [str((run / "examples" / "train.jsonl").resolve())]
    again = evaluate(run / "last", split="valid", device="cpu")  # the valid examples, read back from RUN/examples
    assert again.examples == 6 and again.metrics["loss"] == pytest.approx(result.last["loss"], rel=1e-5)
    assert not list(Path(tempfile.gettempdir()).glob("tn-examples-*"))  # the staging folder was moved, not copied
    with pytest.raises(UserError, match=r"examples\[1\]: a classification example is a \(text, label\) pair"):
        train("classification", tmp_path / "bad", examples=[("ok", "y"), "no label"], quiet=True)
    assert not (tmp_path / "bad").exists() and not list(Path(tempfile.gettempdir()).glob("tn-examples-*"))


@pytest.mark.parametrize(
    ("task", "item", "check"),
    [
        ("lm", "some text\nand more", lambda docs: docs == ["some text\nand more"]),
        ("classification", ("a fine film", "positive"), lambda rows: rows == [("a fine film", "positive")]),
        ("translation", ("ein Hund", "a dog"), lambda rows: rows == [("ein Hund", "a dog")]),
        (
            "qa",
            ("Where is Mary?", "Mary went to the garden.", "the garden"),
            lambda exs: exs[0].context[exs[0].answers[0][1] :].startswith("the garden"),
        ),
        (
            "chat",
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            lambda convs: [m.content for m in convs[0].messages] == ["hi", "hello"],
        ),
    ],
)
def test_each_task_reads_its_in_memory_examples_back_with_its_own_reader(task, item, check):
    from transformer_networks.tasks import get_task
    from transformer_networks.training.examples import stage_examples

    folder = stage_examples(task, [item], None)
    try:
        assert check(get_task(task).read([str(folder / "train.jsonl")], TrainConfig()))
    finally:
        shutil.rmtree(folder)


def test_a_loss_fn_replaces_the_training_loss_and_can_build_on_the_tasks(tmp_path):
    rows = [(f"{w} {w}", "yes" if i % 2 else "no") for i, w in enumerate("abcdefghij")] * 4
    seen = []

    def doubled(model, batch, task_loss):
        seen.append(sorted(batch))
        return 2 * task_loss()

    def first_loss(name, **extra):
        records = []
        train(
            "classification",
            tmp_path / name,
            examples=rows,
            model_config=TransformerConfig.from_preset("tiny", d_model=32, n_heads=2, n_layers=1, d_ff=64),
            train_config=TrainConfig(tokenizer="word", max_steps=1, eval_every=1, log_every=1, device="cpu"),
            quiet=True,
            on_log=records.append,
            **extra,
        )
        return next(r["loss"] for r in records if r["split"] == "train")

    plain, twice = first_loss("plain"), first_loss("twice", loss_fn=doubled)
    assert twice == pytest.approx(2 * plain, rel=1e-6) and seen == [["ids", "labels"]]


class RecordingRanks:
    """Two processes as `Trainer.agree` sees them: rank 0, and every all-reduce of maximums recorded."""

    enabled, is_main = True, True

    def __init__(self):
        self.calls = []

    def maximum(self, *values, device):
        self.calls.append(values)
        return list(values)


@pytest.mark.parametrize(("step_seconds", "expected"), [(0.01, [1, 17, 33, 40]), (2.0, list(range(1, 46)))])
def test_processes_agree_at_loss_reads_and_at_least_every_second(monkeypatch, step_seconds, expected):
    # Fast steps: at the first step, at each loss read (16 steps after the last read) and at each log line (step
    # 40 here), nowhere else; slow steps: every step, so that a signal acts within about a second.
    from transformer_networks.training import trainer as trainer_module
    from transformer_networks.training.trainer import LOSS_READ_EVERY, RunState, Trainer

    clock = [100.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock[0])
    t = Trainer.__new__(Trainer)  # only what agree reads
    t.cfg, t.state, t.ranks, t.device = quick(log_every=40, eval_every=1000), RunState(), RecordingRanks(), "cpu"
    t.unread, t.last_loss, t.agreed, t.agree_at = [], None, (0, clock[0]), 0
    agreed = []
    for step in range(1, 46):
        clock[0] += step_seconds
        t.state.step = step
        t.unread.append((step, None))
        before = len(t.ranks.calls)
        assert t.agree(False, False) == (False, False)
        if len(t.ranks.calls) > before:
            agreed.append(step)
        if len(t.unread) >= LOSS_READ_EVERY or step % 40 == 0 or t.last_loss is None:  # what after_step reads
            t.unread, t.last_loss = [], 1.0
    assert agreed == expected
    # rank 0's step time goes along with the flags, so that every process counts the same steps to the next one.
    assert t.ranks.calls[-1][2] == int(step_seconds * 1000)
