"""Metrics for the three tasks.

translation:      bleu, chrf (sacrebleu, on detokenized text), exact_match
language models:  perplexity, bits_per_character (from a mean cross-entropy in nats)
classification:   accuracy, macro_f1
extractive QA:    normalize_answer, squad_exact_match, squad_f1, squad_scores (the definitions of the official
                  SQuAD v1.1 and v2.0 evaluation scripts, on their 0-100 scale)
all tasks:        token_accuracy (the metric the Keras-style recipe reports)
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import sacrebleu
from torch import Tensor

__all__ = [
    "accuracy",
    "bits_per_character",
    "bleu",
    "chrf",
    "exact_match",
    "macro_f1",
    "normalize_answer",
    "perplexity",
    "squad_exact_match",
    "squad_f1",
    "squad_scores",
    "token_accuracy",
]


def _check_lengths(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} predictions but {len(b)} references")
    if not a:
        raise ValueError(f"{what}: no examples")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's defaults (13a tokenization, one reference per sentence)."""
    _check_lengths(hypotheses, references, "bleu")
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100) with sacrebleu's defaults."""
    _check_lengths(hypotheses, references, "chrf")
    return sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of outputs equal to their reference, after collapsing whitespace."""
    _check_lengths(hypotheses, references, "exact_match")
    return sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hypotheses, references, strict=True)) / len(
        references
    )


def perplexity(mean_loss: float) -> float:
    """exp(mean cross-entropy in nats per token); inf when it overflows."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf


def bits_per_character(mean_loss: float) -> float:
    """Mean cross-entropy per character, in bits (for character-level models)."""
    return mean_loss / math.log(2)


def accuracy(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    _check_lengths(predictions, labels, "accuracy")
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_f1(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Unweighted mean over the classes present in labels or predictions of F1 = 2PR / (P + R) (0 if undefined)."""
    _check_lengths(predictions, labels, "macro_f1")
    scores = []
    for c in sorted(set(labels) | set(predictions), key=str):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def token_accuracy(logits: Tensor, targets: Tensor, ignore_index: int | None = None) -> tuple[int, int]:
    """(correct, counted) argmax predictions of logits (..., V) against targets (...), skipping ignore_index.
    Returned as counts so that batches can be summed before dividing."""
    predictions = logits.argmax(dim=-1)
    keep = targets != ignore_index if ignore_index is not None else targets == targets
    return int(((predictions == targets) & keep).sum()), int(keep.sum())


_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation, in the official order: lower case, delete the characters of
    string.punctuation, delete the whole words a / an / the, collapse whitespace to single spaces and strip."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check_golds(gold_answers: Sequence[str], what: str) -> None:
    if isinstance(gold_answers, str):
        raise TypeError(f"{what}: gold_answers must be a list of strings, not one string")
    if not gold_answers:
        raise ValueError(f'{what}: no gold answers (an unanswerable question\'s gold list is [""])')


def _f1(prediction: str, gold: str, version: int) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if version == 2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals some normalised gold answer, else 0.0 (the same in v1.1 and v2.0)."""
    _check_golds(gold_answers, "squad_exact_match")
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(gold) for gold in gold_answers))


def squad_f1(prediction: str, gold_answers: Sequence[str], *, version: int = 1) -> float:
    """The best over the gold answers of the F1 of the normalised whitespace tokens (multiset overlap).
    version=1 (evaluate-v1.1.py): 0 whenever nothing overlaps, so an answer that normalises to "" always scores 0;
    version=2 (evaluate-v2.0.py): 1.0 if both sides have no tokens, 0.0 if only one has none."""
    if version not in (1, 2):
        raise ValueError(f"squad_f1: version must be 1 or 2, not {version!r}")
    _check_golds(gold_answers, "squad_f1")
    return max(_f1(prediction, gold, version) for gold in gold_answers)


def squad_scores(
    predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], *, version: int = 1
) -> dict[str, float]:
    """Mean exact_match and f1 (0-100) over the questions of golds {id: gold answer texts}; a question missing from
    predictions {id: answer text} counts as answered "", and predictions for other ids are ignored.
    version=2 first drops the gold answers that normalise to "" (an empty list then becomes [""], "no answer") and
    adds has_ans_total / no_ans_total and, for each group that has questions, its has_ans_* / no_ans_* means."""
    if version not in (1, 2):
        raise ValueError(f"squad_scores: version must be 1 or 2, not {version!r}")
    if not golds:
        raise ValueError("squad_scores: no questions")
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, answers in golds.items():
        if isinstance(answers, str):
            raise TypeError(f"squad_scores: the gold answers of {qid!r} must be a list of strings, not one string")
        answers = list(answers)
        if version == 2:
            answers = [a for a in answers if normalize_answer(a)]
            has_answer[qid] = bool(answers)
            answers = answers or [""]
        elif not answers:
            raise ValueError(
                f"squad_scores: question {qid!r} has no gold answers (score unanswerable ones with version=2)"
            )
        prediction = predictions.get(qid, "")
        exact[qid] = squad_exact_match(prediction, answers)
        f1[qid] = squad_f1(prediction, answers, version=version)

    def means(qids: list[str], prefix: str) -> dict[str, float]:
        return {
            f"{prefix}exact_match": 100.0 * sum(exact[q] for q in qids) / len(qids),
            f"{prefix}f1": 100.0 * sum(f1[q] for q in qids) / len(qids),
        }

    scores = means(list(golds), "")
    if version == 2:
        has_ans = [q for q in golds if has_answer[q]]
        no_ans = [q for q in golds if not has_answer[q]]
        for qids, prefix in ((has_ans, "has_ans_"), (no_ans, "no_ans_")):
            if qids:
                scores.update(means(qids, prefix))
            scores[f"{prefix}total"] = len(qids)
    return scores
