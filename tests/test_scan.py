import pytest

from data_paths import shared_file
from transformer_networks.data.scan import scan_commands, scan_split
from transformer_networks.errors import UserError


def read_scan_file(path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        command, actions = line.split(" OUT: ")
        pairs.append((command.removeprefix("IN: "), actions))
    return pairs


def test_generator_reproduces_the_published_tasks_file():
    published = read_scan_file(shared_file("scan/tasks.txt"))
    ours = scan_commands()
    assert len(ours) == len(set(ours)) == 20_910
    assert set(ours) == set(published)


def test_length_split_matches_the_published_one():
    train, test = scan_split("length")
    assert set(train) == set(read_scan_file(shared_file("scan/length_train.txt")))
    assert set(test) == set(read_scan_file(shared_file("scan/length_test.txt")))


def test_semantics_by_hand():
    meaning = dict(scan_commands())
    assert meaning["jump"] == "I_JUMP"
    assert meaning["turn left twice"] == "I_TURN_LEFT I_TURN_LEFT"
    assert meaning["walk opposite left"] == "I_TURN_LEFT I_TURN_LEFT I_WALK"
    assert meaning["look around right"] == " ".join(["I_TURN_RIGHT I_LOOK"] * 4)
    assert meaning["run after jump thrice"] == "I_JUMP I_JUMP I_JUMP I_RUN"
    assert meaning["turn opposite right and walk"] == "I_TURN_RIGHT I_TURN_RIGHT I_WALK"


def test_simple_split_is_a_seeded_80_20_partition():
    train, test = scan_split("simple", seed=0)
    assert (len(train), len(test)) == (16_728, 4_182)
    assert not set(train) & set(test) and len(set(train) | set(test)) == 20_910
    assert scan_split("simple", seed=0) == (train, test)
    assert scan_split("simple", seed=1)[1] != test


def test_length_split_sizes_and_boundary():
    train, test = scan_split("length")
    assert (len(train), len(test)) == (16_990, 3_920)
    assert max(len(a.split()) for _, a in train) == 22 < min(len(a.split()) for _, a in test)


def test_unknown_split():
    with pytest.raises(UserError, match="simple, length"):
        scan_split("mcd1")
