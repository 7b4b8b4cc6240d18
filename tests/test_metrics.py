import math

import pytest
import sacrebleu
import torch

from transformer_networks import metrics


def test_bleu_and_chrf_are_sacrebleus():
    hyps = ["a man is riding a horse .", "two dogs play in the snow"]
    refs = ["a man rides a horse .", "two dogs are playing in the snow ."]
    assert metrics.bleu(hyps, refs) == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert metrics.chrf(hyps, refs) == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert metrics.bleu(refs, refs) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.bleu(hyps, refs[:1])


def test_exact_match_ignores_spacing_only():
    assert metrics.exact_match(["I_WALK  I_RUN", "I_JUMP"], ["I_WALK I_RUN", "I_LOOK"]) == 0.5


def test_perplexity_and_bits():
    assert metrics.perplexity(math.log(50)) == pytest.approx(50)
    assert metrics.bits_per_character(math.log(2) * 1.5) == pytest.approx(1.5)
    assert metrics.perplexity(1e4) == math.inf


def test_accuracy_and_macro_f1_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 2, 2]
    assert metrics.accuracy(preds, labels) == pytest.approx(4 / 6)
    # class 0: P=1, R=2/3 -> F1=0.8; class 1: P=1/2, R=1/2 -> 0.5; class 2: P=1/2, R=1 -> 2/3
    assert metrics.macro_f1(preds, labels) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics.macro_f1(["a", "a"], ["a", "b"]) == pytest.approx((2 / 3 + 0.0) / 2)


def test_token_accuracy_skips_padding():
    logits = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # predicts 1, 0, 2
    targets = torch.tensor([[1, 2, 0]])
    assert metrics.token_accuracy(logits, targets, ignore_index=0) == (1, 2)
    assert metrics.token_accuracy(logits, targets) == (1, 3)
