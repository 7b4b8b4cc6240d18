"""bench/harness.py and the report helpers of bench/train_tasks.py: alternation, BENCHMARKS.md blocks, time to a
target."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402  (bench/ is not a package)
import train_tasks  # noqa: E402


def test_alternate_runs_the_sides_in_turn_and_times_each_call():
    calls = []
    sides = {"a": lambda: calls.append("a") or "A", "b": lambda: calls.append("b") or "B"}
    times, results = harness.alternate(sides, rounds=3, repeat=2)
    assert calls == ["a", "a", "b", "b"] * 3  # A A B B per round with repeat=2, never all of A first
    assert [len(times["a"]), len(times["b"])] == [3, 3]
    assert results == [{"a": "A", "b": "B"}] * 3
    assert harness.medians({"a": [3.0, 1.0, 2.0]}) == {"a": 2.0}


def test_write_block_replaces_its_own_block_and_appends_a_new_one(tmp_path, monkeypatch):
    monkeypatch.delenv("TN_BENCH_TAG", raising=False)
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nintro\n\n<!-- BEGIN s:x -->\nold\n<!-- END s:x -->\n\ntail\n")
    harness.write_block("x", "new", path, script="s")
    harness.write_block("y", "other", path, script="s")
    text = path.read_text()
    assert "old" not in text and "<!-- BEGIN s:x -->\nnew\n<!-- END s:x -->\n\ntail" in text
    assert text.rstrip().endswith("<!-- BEGIN s:y -->\nother\n<!-- END s:y -->")
    assert text.count("BEGIN s:x") == 1
    monkeypatch.setenv("TN_BENCH_TAG", "intel")  # another machine's run: a block of its own beside the first
    harness.write_block("x", "intel figures", path, script="s")
    text = path.read_text()
    assert "<!-- BEGIN s:x -->\nnew\n<!-- END s:x -->" in text
    assert text.rstrip().endswith("<!-- BEGIN s:x@intel -->\nintel figures\n<!-- END s:x@intel -->")


def test_time_to_reports_the_first_validation_that_reaches_the_threshold():
    metrics = [
        {"step": 1000, "split": "train", "seconds": 80.0, "exact_match": 1.0},  # training rows do not count
        {"step": 1000, "split": "valid", "seconds": 85.0, "exact_match": 0.93},
        {"step": 2000, "split": "valid", "seconds": 172.0, "exact_match": 0.995},
        {"step": 3000, "split": "valid", "seconds": 260.0, "exact_match": 0.998},
    ]
    line = train_tasks.time_to(metrics, "exact_match", 0.99)
    assert "**2.9 minutes**" in line and "step 2,000" in line and "every 1,000 steps" in line
    assert "not reached" in train_tasks.time_to(metrics[:2], "exact_match", 0.99)


def test_the_babi_second_sample_is_another_seeds_questions_whose_answers_sit_at_their_offsets(tmp_path, monkeypatch):
    import json

    from transformer_networks.data.babi import babi_split

    monkeypatch.setattr(train_tasks, "RUNS", tmp_path)
    files = train_tasks.babi_second_sample()
    assert [task for task, _ in files] == [1, 2, 3]
    builtin_test = {(ex.context, ex.question) for ex in babi_split(train_per_task=0)[1]}
    for task, path in files:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == 1000 and all(line["id"].startswith(f"babi{task}-test-") for line in lines)
        for line in lines:
            (answer,) = line["answers"]
            assert line["context"][answer["answer_start"] :].startswith(answer["text"])
        assert sum((line["context"], line["question"]) in builtin_test for line in lines) < 50  # another draw
    # The report weighs each task by its questions.
    second = [{"task_type": t, "exact_match": em, "examples": n} for t, em, n in [(1, 100.0, 1000), (2, 70.0, 3000)]]
    spec = {"per_task": True}
    lines = train_tasks.members_line(spec, {"members": [], "second_sample": second})
    assert lines == []  # no per-task members: nothing to report
    member = {"task_type": 1, "examples": 300, "exact_match": 100.0, "f1": 100.0}
    lines = train_tasks.members_line(spec, {"members": [member], "second_sample": second})
    assert "exact match **77.5**; task 1 100.0; task 2 70.0" in lines[1]
