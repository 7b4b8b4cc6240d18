import functools
import re

import pytest

from transformer_networks.data.babi import DROP_VERBS, GRAB_VERBS, MOVE_VERBS, babi_split
from transformer_networks.data.builtin import BUILTINS, load_builtin
from transformer_networks.errors import UserError

MOVE = re.compile(rf"(\w+) (?:{'|'.join(MOVE_VERBS)}) to the (\w+)\.")
GRAB = re.compile(rf"(\w+) (?:{'|'.join(GRAB_VERBS)}) the (\w+)\.")
DROP = re.compile(rf"(\w+) (?:{'|'.join(DROP_VERBS)}) the (\w+)\.")


@functools.cache
def split(seed=0):
    return babi_split(seed=seed, train_per_task=3000)  # a tenth of the default: the same streams, sooner


def sentences(context):
    """(offset in the context, sentence) for each sentence."""
    out, start = [], 0
    for sentence in context.split(". "):
        sentence = sentence if sentence.endswith(".") else sentence + "."
        out.append((start, sentence))
        start += len(sentence) + 1
    return out


def location_word(start, sentence):
    """(location, its offset in the context) of a move sentence."""
    m = MOVE.fullmatch(sentence)
    assert m, sentence
    return m.group(2), start + m.start(2)


def check_task1(ex):
    actor = re.fullmatch(r"Where is (\w+)\?", ex.question).group(1)
    last = None
    for start, sentence in sentences(ex.context):
        m = MOVE.fullmatch(sentence)
        if m and m.group(1) == actor:
            last = location_word(start, sentence)
    return last


def track(context):
    """Replays a story: yields (event, actor, object or None, (location, offset)) with the location each event happens
    at, holders and drops tracked here."""
    at, holder = {}, {}
    for start, sentence in sentences(context):
        if m := MOVE.fullmatch(sentence):
            at[m.group(1)] = location_word(start, sentence)
            yield "move", m.group(1), None, at[m.group(1)], holder
        elif m := GRAB.fullmatch(sentence):
            actor, obj = m.groups()
            assert actor in at and obj not in holder, sentence
            holder[obj] = actor
            yield "grab", actor, obj, at[actor], holder
        elif m := DROP.fullmatch(sentence):
            actor, obj = m.groups()
            assert holder.pop(obj) == actor, sentence
            yield "drop", actor, obj, at[actor], holder
        else:
            raise AssertionError(f"not a bAbI sentence: {sentence!r}")


def check_task2(ex):
    obj = re.fullmatch(r"Where is the (\w+)\?", ex.question).group(1)
    where = None
    for event, actor, thing, place, holder in track(ex.context):
        if (event == "move" and holder.get(obj) == actor) or thing == obj:
            where = place
    return where


def history(context, obj):
    places = []
    for event, actor, thing, place, holder in track(context):
        moved_with = event == "move" and holder.get(obj) == actor
        if (moved_with or (event == "grab" and thing == obj)) and (not places or places[-1][0] != place[0]):
            places.append(place)
    return places


def check_task3(ex):
    obj, target = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", ex.question).groups()
    places = history(ex.context, obj)
    assert places[0][0] != target
    before = {places[i - 1] for i in range(1, len(places)) if places[i][0] == target}
    assert len({loc for loc, _ in before}) == 1, (ex, places)  # the answer is unique
    return max(before, key=lambda place: place[1])  # the last time it was brought there


def test_every_answer_is_its_span_of_the_context():
    train, test = split()
    assert len(train) == 9000 and len(test) == 900
    for ex in train + test:
        ((text, start),) = ex.answers
        assert ex.context[start : start + len(text)] == text
        assert ex.context.endswith(".") and ex.question.endswith("?") and "  " not in ex.context
    assert len({ex.id for ex in train + test}) == 9900
    assert train[42].id == "babi1-train-00042"


def test_the_simulator_answers_as_an_independent_replay_of_the_story():
    train, test = split()
    checks = {"task1": check_task1, "task2": check_task2, "task3": check_task3}
    for ex in train[::3] + test:
        assert checks[ex.title](ex) == ex.answers[0], ex


def test_stories_are_short():
    train, _ = split()
    for task, (low, high) in {"task1": (2, 8), "task2": (3, 12), "task3": (4, 12)}.items():
        counts = [len(sentences(ex.context)) for ex in train if ex.title == task]
        assert min(counts) == low and max(counts) == high
        assert max(len(ex.context.split()) for ex in train if ex.title == task) < 120


def test_seeded_and_train_and_test_are_disjoint():
    train, test = split()
    assert babi_split(train_per_task=3000) == (train, test)
    assert babi_split((1,), train_per_task=50)[0] == train[:50]  # one stream per task and split
    # The test set is drawn first: the same whatever the training set's size (none at all, or the default).
    assert babi_split(train_per_task=0)[1] == test
    other = split(seed=1)
    assert {ex.context for ex in other[0]} != {ex.context for ex in train}
    assert [ex.context for ex in other[1]] != [ex.context for ex in test]
    assert not {(ex.context, ex.question) for ex in train} & {(ex.context, ex.question) for ex in test}


def test_task_selection():
    train, test = babi_split((3,), train_per_task=20, test_per_task=5)
    assert {ex.title for ex in train + test} == {"task3"} and len(train) == 20 and len(test) == 5
    with pytest.raises(UserError, match="bAbI tasks"):
        babi_split((4,))


def test_builtin_babi():
    ds = load_builtin("babi")
    assert ds.task == "qa" and ds.tokenizer == "word" and BUILTINS["babi"] == "qa"
    assert len(ds.train) == 90_000 and ds.test == split()[1]
    assert not {(ex.context, ex.question) for ex in ds.train} & {(ex.context, ex.question) for ex in ds.test}
    assert {ex.title for ex in ds.train} == {ex.title for ex in ds.test} == {"task1", "task2", "task3"}
    one = load_builtin("babi-2")
    assert {ex.title for ex in one.train} == {"task2"} and one.task == "qa"
