"""Extractive question answering (SQuAD): the answer is a span of the context, found from start and end logits.

    raw example   QAExample(id, question, context, answers=((text, answer_start), ...))   (data/qa.py)
    encoded       windows: [CLS] question [SEP] context slice [SEP], token types 0 / 1, the answer's first and
                  last token in the window (0, 0 = [CLS]: not in this window, or no answer)
    loss          cross-entropy of the start position plus that of the end position, halved (as BERT)
    metrics       SQuAD's exact match and F1 (0-100); with unanswerable questions also has_ans_* and no_ans_*

Long contexts are cut into windows of at most `max_len` tokens, consecutive slices overlapping by `doc_stride`
tokens (defaults 384 and 128, as Hugging Face's run_qa.py), so an answer near a cut is whole in one of them. The
tokenizer's offsets map every context token to its characters, so an answer is always the exact character span of
the original context, never detokenized text.

Prediction (`predict`), over all windows of a question: every pair of context tokens start <= end at most
`max_answer_length` tokens apart, scored start logit + end logit; the best `n_best` (deduplicated by their
character span) are the candidates. With `allow_no_answer` (SQuAD v2) the answer is "" when the no-answer score
(the [CLS] start + end logits, its lowest over the windows) beats the best span's by more than `null_threshold`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import metrics
from ..data.batching import length_grouped_batches, pad_batch
from ..data.qa import QAExample, read_qa
from ..data.readers import DataError
from ..data.splits import holdout_groups
from ..data.tokenizer import TextTokenizer, train_tokenizer
from .base import Batch, Encoded, Task

NEG = -1e4  # the logit of a position that cannot be an answer's start or end (finite: float16 holds it)


@dataclass
class Window:
    """One model input: a question and a slice of its context."""

    ids: list[int]
    types: list[int]  # 0: [CLS] question [SEP]; 1: context slice [SEP]
    offsets: list[tuple[int, int] | None]  # per token: its characters in the context; None outside the context
    example: int  # the question's index in `Encoded.kept_raw`
    start: int = 0  # the answer's first and last token in this window; 0, 0 ([CLS]) when the window lacks it
    end: int = 0
    lost: bool = False  # its question's answer fits no window: left out of training, scored in evaluation


@dataclass
class Answer:
    """A predicted answer: `context[start:end] == text`; no answer is text "" with start and end None."""

    text: str
    start: int | None
    end: int | None
    score: float  # start logit + end logit (for no answer: the [CLS] score)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.text, "start": self.start, "end": self.end, "score": round(self.score, 4)}


class QuestionAnsweringTask(Task):
    name = "qa"
    family = "qa"
    metric, higher_is_better = "f1", True
    builtin = "builtin:babi"
    default_tokenizer = "bpe"
    default_max_len = 384
    raw_unit, encoded_unit = "questions", "windows"

    # --- data, before a tokenizer exists -----------------------------------------------------------------------

    @classmethod
    def read_file(cls, path: str, cfg: Any) -> list:
        return read_qa(path)

    @classmethod
    def holdout(cls, examples: list, fraction: float, seed: int) -> tuple[list, list]:
        """A seeded fraction of the contexts (paragraphs), with all their questions: none is in both splits."""
        return holdout_groups(examples, fraction, seed, key=lambda ex: ex.context)

    @classmethod
    def resolve_settings(cls, cfg: Any, train: list) -> Any:
        cfg = super().resolve_settings(cfg, train)
        if cfg.allow_no_answer is None:
            cfg = cfg.replace(allow_no_answer=any(not ex.answerable for ex in train))
        return cfg

    @classmethod
    def texts(cls, train: list) -> tuple[list[str], list[str] | None]:
        contexts = list(dict.fromkeys(ex.context for ex in train))
        return [ex.question for ex in train] + contexts, None

    @classmethod
    def train_tokenizers(cls, train: list, kind: str, cfg: Any) -> tuple[TextTokenizer, TextTokenizer]:
        tok = train_tokenizer(cls.texts(train)[0], kind, cfg.vocab_size, split_punctuation=True)
        return tok, tok

    # --- with a tokenizer ---------------------------------------------------------------------------------------

    def model_settings(self) -> dict[str, Any]:
        return {
            "vocab_size": self.tokenizer.vocab_size,
            "max_seq_len": self.max_len,
            "pad_id": self.pad_id,
            "n_token_types": 2,
        }

    def windows(
        self, question: list[int], context: list[int], offsets: list[tuple[int, int]], example: int
    ) -> list[Window]:
        """The windows of one question over its tokenized context (ids and character offsets)."""
        tok = self.tokenizer
        head = [tok.cls_id, *question, tok.eos_id]  # the [SEP] of BERT-style tokenizers is their end token
        room = self.max_len - len(head) - 1  # context tokens per window
        if room < 1:
            raise DataError(
                f"max_len={self.max_len} leaves no room for context after a question of {len(question)} tokens; "
                f"raise max_len or lower max_question_len"
            )
        overlap = min(self.cfg.doc_stride, room - 1)
        out, first = [], 0
        while True:
            piece = slice(first, first + room)
            ids = head + context[piece] + [tok.eos_id]
            out.append(
                Window(
                    ids,
                    [0] * len(head) + [1] * (len(ids) - len(head)),
                    [None] * len(head) + list(offsets[piece]) + [None],
                    example,
                )
            )
            if first + room >= len(context):
                return out
            first += room - overlap

    def encode(self, raw: list[QAExample]) -> Encoded:
        """Every question's windows, each labelled with the answer's tokens (the first gold answer) when it holds
        it whole. `dropped` counts answerable questions that no window holds (left out of training, scored as
        missed in evaluation); `truncated` counts questions cut to max_question_len."""
        tok = self.tokenizer
        contexts = list(dict.fromkeys(ex.context for ex in raw))
        tokenized = dict(zip(contexts, tok.encode_with_offsets(contexts), strict=True))
        questions = tok.encode_batch([ex.question for ex in raw])
        windows: list[Window] = []
        lost, cut = 0, 0
        for i, (ex, q) in enumerate(zip(raw, questions, strict=True)):
            if len(q) > self.cfg.max_question_len:
                q, cut = q[: self.cfg.max_question_len], cut + 1
            ids, offsets = tokenized[ex.context]
            mine = self.windows(q, ids, offsets, i)
            if ex.answerable:
                text, char_start = ex.answers[0]
                if not self._label(mine, char_start, char_start + len(text)):
                    lost += 1
                    for w in mine:
                        w.lost = True
            windows.extend(mine)
        return Encoded(windows, dropped=lost, truncated=cut, kept_raw=list(raw))

    @staticmethod
    def _label(windows: list[Window], char_start: int, char_end: int) -> bool:
        """Set start/end on each window holding the characters [char_start, char_end) whole; True if any does."""
        found = False
        for w in windows:
            spans = {i: span for i, span in enumerate(w.offsets) if span is not None and span[1] > span[0]}
            if (
                not spans
                or min(s for s, _ in spans.values()) > char_start
                or max(e for _, e in spans.values()) < char_end
            ):
                continue  # the window's slice does not cover the answer
            starts = [i for i, (_, e) in spans.items() if e > char_start]
            ends = [i for i, (s, _) in spans.items() if s < char_end]
            if starts and ends and starts[0] <= ends[-1]:
                w.start, w.end, found = starts[0], ends[-1], True
        return found

    def describe(self, what: str, encoded: Encoded, log: Any) -> None:
        raw = encoded.kept_raw or []
        unanswerable = sum(not ex.answerable for ex in raw)
        parts = [f"{len(raw):,} questions in {len(encoded.examples):,} windows of at most {self.max_len} tokens"]
        if unanswerable:
            parts.append(f"{unanswerable:,} unanswerable")
        if encoded.dropped:
            parts.append(
                f"{encoded.dropped:,} whose answer no window holds whole (left out of training, missed in scoring)"
            )
        if encoded.truncated:
            parts.append(f"{encoded.truncated:,} questions cut to max_question_len={self.cfg.max_question_len}")
        log(f"{what}: " + "; ".join(parts))

    def count(self, encoded: Encoded) -> int:
        return len(encoded.examples)

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        windows = encoded.examples
        size = self.cfg.batch_size
        if epoch is None:
            order = list(range(len(windows)))
        else:
            order = [i for i, w in enumerate(windows) if not w.lost]
            rng = random.Random(self.cfg.seed * 1000 + epoch)
            rng.shuffle(order)
            if self.cfg.group_by_length:
                lengths = [len(w.ids) for w in windows]
                groups = length_grouped_batches(lengths, size, order, rng)
                return [self._batch([windows[i] for i in group]) for group in groups]
        return [self._batch([windows[i] for i in order[s : s + size]]) for s in range(0, len(order), size)]

    def _batch(self, windows: list[Window]) -> Batch:
        return {
            "ids": pad_batch([w.ids for w in windows], self.pad_id),
            "token_type_ids": pad_batch([w.types for w in windows], 0),
            "starts": torch.tensor([w.start for w in windows]),
            "ends": torch.tensor([w.end for w in windows]),
        }

    def logits(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """(start, end) logits, each (B, T), padding set to NEG."""
        ids = batch["ids"]
        out = model(ids, token_type_ids=batch["token_type_ids"])
        real = ids != self.pad_id
        return out.start.float().masked_fill(~real, NEG), out.end.float().masked_fill(~real, NEG)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        start, end = self.logits(model, batch)
        return (F.cross_entropy(start, batch["starts"]) + F.cross_entropy(end, batch["ends"])) / 2

    @torch.no_grad()
    def predict(
        self, model: nn.Module, encoded: Encoded, device: torch.device, n_best: int = 1
    ) -> tuple[list[list[Answer]], float]:
        """(the `n_best` answers of each question of `encoded.kept_raw`, best first; the summed loss of its windows).
        With allow_no_answer, a question's list starts with the no-answer when it wins (and holds it once)."""
        raw: list[QAExample] = encoded.kept_raw or []
        cfg = self.cfg
        spans: list[dict[tuple[int, int], float]] = [{} for _ in raw]  # (char start, char end) -> best score
        null = [float("inf")] * len(raw)
        total = 0.0
        windows = encoded.examples
        for first in range(0, len(windows), cfg.batch_size):
            group = windows[first : first + cfg.batch_size]
            batch = {k: v.to(device) for k, v in self._batch(group).items()}
            start, end = self.logits(model, batch)  # (B, T) each
            losses = F.cross_entropy(start, batch["starts"], reduction="sum") + F.cross_entropy(
                end, batch["ends"], reduction="sum"
            )
            total += float(losses) / 2
            T = start.size(1)
            context = torch.zeros(len(group), T, dtype=torch.bool, device=device)
            for b, w in enumerate(group):
                context[b, : len(w.offsets)] = torch.tensor([o is not None for o in w.offsets])
            # Every (start, end) pair: end >= start, at most max_answer_length tokens, both in the context.
            scores = start[:, :, None] + end[:, None, :]  # (B, T, T)
            band = torch.ones(T, T, dtype=torch.bool, device=device).triu().tril(cfg.max_answer_length - 1)
            allowed = band & context[:, :, None] & context[:, None, :]
            scores = scores.masked_fill(~allowed, float("-inf")).flatten(1)  # (B, T*T)
            k = min(cfg.n_best, scores.size(1))
            top, where = scores.topk(k, dim=1)
            cls_scores = (start[:, 0] + end[:, 0]).tolist()
            for b, w in enumerate(group):
                found = spans[w.example]
                null[w.example] = min(null[w.example], cls_scores[b])
                for score, flat in zip(top[b].tolist(), where[b].tolist(), strict=True):
                    if score == float("-inf"):
                        break
                    s_tok, e_tok = divmod(flat, T)
                    s_off, e_off = w.offsets[s_tok], w.offsets[e_tok]
                    assert s_off is not None and e_off is not None  # context tokens only (allowed)
                    key = (s_off[0], e_off[1])
                    if score > found.get(key, float("-inf")):
                        found[key] = score
        answers = []
        for ex, found, null_score in zip(raw, spans, null, strict=True):
            best = sorted(found.items(), key=lambda item: -item[1])
            candidates = [self._span(ex.context, s, e, score) for (s, e), score in best]
            candidates = [a for a in candidates if a.text][:n_best]
            if cfg.allow_no_answer and (not candidates or null_score - candidates[0].score > cfg.null_threshold):
                candidates = [Answer("", None, None, null_score), *candidates][:n_best]
            answers.append(candidates or [Answer("", None, None, null_score)])
        return answers, total

    @staticmethod
    def _span(context: str, start: int, end: int, score: float) -> Answer:
        """The characters [start, end) of the context, less the whitespace a token may carry at either side."""
        text = context[start:end]
        lead = len(text) - len(text.lstrip())
        text = text.strip()
        return Answer(text, start + lead, start + lead + len(text), score)

    def version(self, raw: list[QAExample]) -> int:
        """Which official script's scoring applies: 2 when "no answer" is a possible prediction or a possible truth."""
        return 2 if self.cfg.allow_no_answer or any(not ex.answerable for ex in raw) else 1

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        raw: list[QAExample] = encoded.kept_raw or []
        if not raw:
            raise DataError("no questions to evaluate")
        answers, total = self.predict(model, encoded, device)
        predictions = {ex.id: a[0].text for ex, a in zip(raw, answers, strict=True)}
        golds = {ex.id: [text for text, _ in ex.answers] for ex in raw}
        scores = metrics.squad_scores(predictions, golds, version=self.version(raw))
        return {"loss": total / max(1, len(encoded.examples)), **scores}

    def prediction_file(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, str]:
        """{question id: answer text}: the official evaluation scripts' input."""
        answers, _ = self.predict(model, encoded, device)
        return {ex.id: a[0].text for ex, a in zip(encoded.kept_raw or [], answers, strict=True)}

    def samples(self, model: nn.Module, raw: list, n: int, device: torch.device) -> list[dict[str, Any]]:
        encoded = self.encode(raw[:n])
        answers, _ = self.predict(model, encoded, device)
        return [
            {
                "question": ex.question,
                "prediction": a[0].text,
                "reference": " | ".join(text for text, _ in ex.answers) or "(no answer)",
            }
            for ex, a in zip(encoded.kept_raw or [], answers, strict=True)
        ]
