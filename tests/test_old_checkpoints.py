"""Checkpoints written by an earlier version (tests/fixtures/checkpoints-0.1.0, see its README) still load, and
compute what that version computed: the checkpoint format is a contract."""

import json
from pathlib import Path

import pytest

from transformer_networks.inference import classify_lines, generate_text, load_for, translate_lines

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def test_old_language_model_generates_the_same_text():
    # The fixture's text was generated when generation stopped at the model's context (16 tokens: 7 new ones after
    # "the quick"); it now goes on past it (the window slides), and within the context it is the same text.
    ck = load_for("lm", FIXTURES / "lm")
    text = generate_text(ck, "the quick", max_new_tokens=12, do_sample=False)
    assert len(EXPECTED["lm_greedy"]) == ck.config.max_seq_len - len("the quick") and len(text) == 12
    assert text.startswith(EXPECTED["lm_greedy"])


def test_old_translator_translates_the_same():
    ck = load_for("translation", FIXTURES / "translation")
    found = translate_lines(ck, ["red cat", "big blue dog bird"], num_beams=2)
    assert [hyps[0].text for hyps in found] == EXPECTED["mt_beam"]


def test_old_classifier_gives_the_same_probabilities():
    ck = load_for("classification", FIXTURES / "classification")
    for got, want in zip(classify_lines(ck, ["red cat", "big dog"]), EXPECTED["clf_probs"], strict=True):
        assert got.keys() == want.keys()
        for label in want:
            assert got[label] == pytest.approx(want[label], abs=1e-5)
