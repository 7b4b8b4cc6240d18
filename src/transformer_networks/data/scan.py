"""SCAN (Lake & Baroni 2018), generated from its published grammar: commands in a small navigation language and the
action sequences they mean. 20,910 commands in all; used here as an offline translation task.

Grammar (the paper's Figure 6), with its meaning:
    C -> S and S   [x1 and x2] = [x1] [x2]         S -> V twice   [x twice] = [x] [x]
    C -> S after S [x1 after x2] = [x2] [x1]       S -> V thrice  [x thrice] = [x] [x] [x]
    C -> S                                         S -> V
    V -> D opposite DIR   [u opposite left] = LTURN LTURN [u]      ("turn" as u: no action of its own)
    V -> D around DIR     [u around left] = (LTURN [u]) x 4
    V -> D DIR            [u left] = LTURN [u]
    V -> U                [walk] = WALK, [look] = LOOK, [run] = RUN, [jump] = JUMP
    U in {walk, look, run, jump}, D in U + {turn}, DIR in {left, right}

Splits: "simple" is a seeded random 80/20 split (the paper's is random too, with these sizes); "length" trains on
commands whose action sequence has at most 22 actions and tests on the longer ones, as the paper's length split.
"""

from __future__ import annotations

import random

from ..errors import UserError

PRIMITIVES = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
LENGTH_SPLIT_MAX_TRAIN_ACTIONS = 22
SPLITS = ("simple", "length")


def _verb_phrases() -> list[tuple[str, list[str]]]:
    """Every V with its actions: 4 primitives, then left/right, opposite and around forms of each, 34 in all."""
    phrases = [(word, [action]) for word, action in PRIMITIVES.items()]
    for word in [*PRIMITIVES, "turn"]:
        act = [] if word == "turn" else [PRIMITIVES[word]]
        for direction, turn in TURNS.items():
            phrases.append((f"{word} {direction}", [turn, *act]))
            phrases.append((f"{word} opposite {direction}", [turn, turn, *act]))
            phrases.append((f"{word} around {direction}", [turn, *act] * 4))
    return phrases


def _sentences() -> list[tuple[str, list[str]]]:
    """Every S: each V alone, twice and thrice (102)."""
    out = []
    for words, actions in _verb_phrases():
        out.append((words, actions))
        out.append((f"{words} twice", actions * 2))
        out.append((f"{words} thrice", actions * 3))
    return out


def scan_commands() -> list[tuple[str, str]]:
    """All 20,910 (command, action sequence) pairs, in a fixed order."""
    sentences = _sentences()
    pairs = [(words, actions) for words, actions in sentences]
    for w1, a1 in sentences:
        for w2, a2 in sentences:
            pairs.append((f"{w1} and {w2}", a1 + a2))
            pairs.append((f"{w1} after {w2}", a2 + a1))
    return [(words, " ".join(actions)) for words, actions in pairs]


def scan_split(split: str = "simple", seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) pairs of a split: "simple" (seeded random 80/20) or "length"."""
    pairs = scan_commands()
    if split == "simple":
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_train = int(0.8 * len(pairs))  # 16,728 of 20,910, as the paper's simple split
        return [pairs[i] for i in order[:n_train]], [pairs[i] for i in order[n_train:]]
    if split == "length":
        short = [p for p in pairs if len(p[1].split()) <= LENGTH_SPLIT_MAX_TRAIN_ACTIONS]
        long = [p for p in pairs if len(p[1].split()) > LENGTH_SPLIT_MAX_TRAIN_ACTIONS]
        return short, long
    raise UserError(f"unknown SCAN split {split!r}; choose one of {', '.join(SPLITS)}")
