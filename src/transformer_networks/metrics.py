"""Metrics for the three tasks.

translation:      bleu, chrf (sacrebleu, on detokenized text), exact_match
language models:  perplexity, bits_per_character (from a mean cross-entropy in nats)
classification:   accuracy, macro_f1
all tasks:        token_accuracy (the metric the Keras-style recipe reports)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import sacrebleu
from torch import Tensor


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
