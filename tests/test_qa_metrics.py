"""The official SQuAD metrics (evaluate-v1.1.py / evaluate-v2.0.py definitions), checked on hand-computed cases."""

import pytest

from transformer_networks.metrics import normalize_answer, squad_exact_match, squad_f1, squad_scores


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Theatre", "theatre"),
        ("another theme, a thesis", "another theme thesis"),
        ("an anarchy AN ant", "anarchy ant"),
        ("A", ""),
        ("Denver  Broncos\t\n", "denver broncos"),
        ("(the) end.", "end"),  # punctuation goes first, so the bracketed article is then a whole word
        ("the-end", "theend"),  # ... and a hyphen joins rather than separates
        ("don't stop!", "dont stop"),
        ("...?!", ""),
        ("  ", ""),
        ("Théâtre, l'été", "théâtre lété"),
    ],
)
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_after_normalisation_and_against_any_gold():
    assert squad_exact_match("  The DENVER broncos. ", ["Denver Broncos"]) == 1.0
    assert squad_exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert squad_exact_match("Dog", ["cat", "the dog"]) == 1.0  # not only the first gold answer
    assert squad_exact_match("", ["Denver"]) == 0.0
    assert squad_exact_match("an apple", ["apple"]) == 1.0
    assert squad_exact_match("anarchy", ["archy"]) == 0.0


def test_f1_partial_overlap_exact_fractions():
    # "big red dog" vs "red dog barked": 2 shared of 3 and 3 -> P = R = 2/3.
    assert squad_f1("the big red dog", ["red dog barked"]) == pytest.approx(2 / 3)
    # "red dog" vs "red dog barked loudly": P = 1, R = 1/2 -> 2/3; against "dog": P = 1/2, R = 1 -> 2/3.
    assert squad_f1("red dog", ["red dog barked loudly"]) == pytest.approx(2 / 3)
    assert squad_f1("Red, dog!", ["Red dog"]) == 1.0
    assert squad_f1("blue cat", ["red dog"]) == 0.0


def test_f1_takes_the_best_gold_answer():
    # against each: 0, P=1 R=2/3 -> 0.8, P=1/2 R=1 -> 2/3; mean 0.489, first 0, last 2/3.
    golds = ["blue cat", "red dog barked", "a dog"]
    assert squad_f1("red dog", golds) == pytest.approx(0.8)
    assert squad_f1("red dog", golds, version=2) == pytest.approx(0.8)


def test_f1_counts_repeated_tokens_once_per_occurrence():
    # overlap = min(3, 1) = 1: P = 1/3, R = 1/2 -> 2 * (1/6) / (5/6) = 2/5.
    assert squad_f1("dog dog dog", ["dog cat"]) == pytest.approx(2 / 5)
    # overlap = 2: P = 1, R = 2/3 -> 4/5.
    assert squad_f1("dog dog", ["dog dog cat"]) == pytest.approx(4 / 5)
    assert squad_f1("the dog the dog", ["dog"]) == pytest.approx(2 / 3)  # P = 1/2, R = 1


def test_empty_normalised_answers_v1_versus_v2():
    # Punctuation only on both sides: the normalised strings are equal, but v1 scores F1 0 for zero overlap.
    assert squad_exact_match("!!!", ["?"]) == 1.0
    assert squad_f1("!!!", ["?"], version=1) == 0.0
    assert squad_f1("!!!", ["?"], version=2) == 1.0
    assert squad_f1("", [""], version=1) == 0.0
    assert squad_f1("", [""], version=2) == 1.0
    assert squad_f1("the", ["a"], version=2) == 1.0  # articles only: no tokens either side
    # One side empty: 0 in both.
    assert squad_f1("Denver", [""], version=2) == 0.0
    assert squad_f1("", ["Denver"], version=2) == 0.0
    assert squad_f1("", ["Denver"], version=1) == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        squad_f1("a", ["a"], version=3)
    with pytest.raises(ValueError, match="no gold answers"):
        squad_f1("a", [])
    with pytest.raises(ValueError, match="no gold answers"):
        squad_exact_match("a", [])
    with pytest.raises(TypeError, match="not one string"):
        squad_exact_match("Denver", "Denver")
    with pytest.raises(ValueError, match="no questions"):
        squad_scores({}, {})
    with pytest.raises(ValueError, match="'q'.*version=2"):
        squad_scores({"q": ""}, {"q": []}, version=1)


def test_scores_v1_on_the_0_100_scale_with_a_missing_question():
    golds = {"q1": ["Denver Broncos"], "q2": ["red dog barked"], "q3": ["Paris"], "q4": ["Rome"]}
    predictions = {"q1": "the Denver Broncos", "q2": "the big red dog", "q4": "Milan", "other": "ignored"}
    scores = squad_scores(predictions, golds)
    assert set(scores) == {"exact_match", "f1"}
    assert scores["exact_match"] == pytest.approx(25.0)  # 1 of 4; q3 (missing) counts as ""
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 0) / 4)


def test_scores_v2_split_into_has_answer_and_no_answer():
    golds = {
        "q1": ["Denver Broncos", "The Broncos"],  # EM 1, F1 1 (the second gold)
        "q2": ["red dog barked"],  # EM 0, F1 2/3
        "q3": [],  # no answer; predicted "": EM 1, F1 1
        "q4": ["..."],  # normalises to "", so no answer; predicted text: EM 0, F1 0
        "q5": ["Paris"],  # missing from predictions, so "": EM 0, F1 0
    }
    predictions = {"q1": "broncos", "q2": "the big red dog", "q3": "", "q4": "something"}
    scores = squad_scores(predictions, golds, version=2)
    assert scores == pytest.approx(
        {
            "exact_match": 100 * 2 / 5,
            "f1": 100 * (1 + 2 / 3 + 1) / 5,
            "has_ans_exact_match": 100 / 3,
            "has_ans_f1": 100 * (1 + 2 / 3) / 3,
            "no_ans_exact_match": 50.0,
            "no_ans_f1": 50.0,
            "has_ans_total": 3,
            "no_ans_total": 2,
        }
    )


def test_scores_v2_drops_gold_answers_that_normalise_to_empty():
    # In v1 "!" matches the gold "?" exactly; v2 scores against "Paris" only.
    golds = {"q": ["?", "Paris"]}
    assert squad_scores({"q": "!"}, golds)["exact_match"] == 100.0
    assert squad_scores({"q": "!"}, golds, version=2)["exact_match"] == 0.0
    assert squad_scores({"q": ""}, golds, version=2)["exact_match"] == 0.0


def test_scores_v2_leaves_out_an_empty_group():
    scores = squad_scores({"q1": "Paris", "q2": "Rome"}, {"q1": ["Paris"], "q2": ["Milan"]}, version=2)
    assert scores == pytest.approx(
        {
            "exact_match": 50.0,
            "f1": 50.0,
            "has_ans_exact_match": 50.0,
            "has_ans_f1": 50.0,
            "has_ans_total": 2,
            "no_ans_total": 0,
        }
    )
    only_unanswerable = squad_scores({"q": ""}, {"q": []}, version=2)
    assert only_unanswerable == {
        "exact_match": 100.0,
        "f1": 100.0,
        "no_ans_exact_match": 100.0,
        "no_ans_f1": 100.0,
        "has_ans_total": 0,
        "no_ans_total": 1,
    }
