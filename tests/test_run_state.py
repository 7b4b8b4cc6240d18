"""The run's counters (`RunState`) are what last/training_state.json saves: the same keys as before the trainer
became a class, and older checkpoints' counters (without the interval fields) still read."""

import json
from pathlib import Path

from transformer_networks.training.trainer import RunState

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0"


def test_counters_round_trip_in_the_saved_format():
    state = RunState(
        step=7,
        epoch=1,
        position=3,
        best_value=0.5,
        best={"loss": 0.5},
        stale=2,
        interval_loss=1.5,
        interval_steps=3,
        processes=2,
    )
    assert list(state.to_dict()) == [
        "step",
        "epoch",
        "position",
        "best_value",
        "best",
        "stale",
        "interval_loss",
        "interval_steps",
        "processes",
    ]
    assert RunState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_counters_written_by_the_earlier_trainer_read_back():
    for task in ("lm", "translation", "classification"):
        saved = json.loads((FIXTURES / task / "training_state.json").read_text())["counters"]
        state = RunState.from_dict(saved)
        assert state.to_dict() == {**RunState().to_dict(), **saved}
        assert state.step == 30
    older = RunState.from_dict({"step": 4, "epoch": 0, "position": 2, "best_value": None, "stale": 0})
    assert (older.best, older.interval_loss, older.interval_steps, older.processes) == ({}, 0.0, 0, 1)
