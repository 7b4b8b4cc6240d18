"""Exact resume: a run killed with SIGKILL (or stopped by SIGINT / SIGTERM) after a checkpoint and resumed logs
bitwise the same losses, step for step, as the run that was never interrupted (dropout on, on CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transformer_networks import cli

N = 10  # the checkpoint the interrupted runs resume from; the runs are 2N steps


def train_argv(data, out, *extra, log_every=1):
    return [
        sys.executable,
        "-m",
        "transformer_networks",
        "train",
        "lm",
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--set",
        "d_model=128",
        "--set",
        "dropout=0.1",
        "--set",
        f"log_every={log_every}",
        "--set",
        "threads=1",
        "--max-steps",
        str(2 * N),
        "--eval-every",
        str(N),
        "--block-size",
        "128",
        "--batch-size",
        "16",
        "--tokenizer",
        "char",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def records(run, split):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["split"] == split}


def checkpoint_step(run):
    """The step of the run's last checkpoint, or None; a checkpoint appears whole (renamed into place)."""
    path = Path(run) / "last" / "task.json"
    try:
        return json.loads(path.read_text())["step"]
    except (OSError, ValueError):
        return None


def start_and_wait_for_checkpoint(argv):
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Path(argv[argv.index("--out") + 1])
    deadline = time.monotonic() + 120
    while checkpoint_step(out) is None:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    return child


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    data = tmp / "text.txt"
    data.write_text(Path(__file__).read_text() * 3, encoding="utf-8")
    for log_every in (1, 3):
        result = subprocess.run(
            train_argv(data, tmp / f"straight{log_every}", log_every=log_every),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    return data, tmp / "straight1"


def assert_same_run_after(run, reference_run, step, log_every=1):
    ours, theirs = records(run, "train"), records(reference_run, "train")
    assert sorted(ours) == sorted(theirs) == list(range(log_every, 2 * N + 1, log_every))
    for s in range(step + 1, 2 * N + 1):
        if s % log_every:
            continue
        assert ours[s]["loss"] == theirs[s]["loss"], s  # bitwise: floats round-trip exactly through JSON
        assert ours[s]["lr"] == theirs[s]["lr"]
    assert records(run, "valid")[2 * N]["loss"] == records(reference_run, "valid")[2 * N]["loss"]


def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_identical(reference, tmp_path):
    data, straight = reference
    run = tmp_path / "killed"
    child = start_and_wait_for_checkpoint(train_argv(data, run))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert checkpoint_step(run) == N  # killed before the run could end
    result = subprocess.run(
        [sys.executable, "-m", "transformer_networks", "train", "--resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert_same_run_after(run, straight, N)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_current_step_and_resume_continues_it(reference, tmp_path, sig):
    data, straight = reference
    straight = straight.with_name("straight3")  # records average 3 steps: the interval spans the interruption
    run = tmp_path / sig.name
    child = start_and_wait_for_checkpoint(train_argv(data, run, log_every=3))
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == (130 if sig == signal.SIGINT else 143), err
    stopped = checkpoint_step(run)
    assert stopped >= N and f"{sig.name} at step {stopped}" in err and f"--resume {run}" in err
    assert "Traceback" not in err
    assert max(records(run, "train")) <= stopped
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_same_run_after(run, straight, stopped, log_every=3)
    # A finished run is not trained further.
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2


def test_resume_refuses_what_it_cannot_do(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err
    (tmp_path / "run.json").write_text("{}")
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "no last checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path), "--lr", "0.1", "--max-steps", "5"]) == 2
    assert "(only --max-steps may extend it); leave out --lr" in capsys.readouterr().err
    assert cli.main(["train", "lm"]) == 2
    assert "--out" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["run.json"]


def test_a_finished_run_is_extended_by_a_new_max_steps_at_the_schedules_floor(reference, tmp_path, capsys):
    data, _ = reference
    run = tmp_path / "run"
    argv = train_argv(data, run, "--set", "warmup=2")[3:]  # without the interpreter and "-m transformer_networks"
    argv[argv.index("--max-steps") + 1], argv[argv.index("--eval-every") + 1] = "6", "3"
    assert cli.main(argv) == 0
    before = records(run, "train")
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "the run already finished (6 of 6 steps)" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run), "--max-steps", "9", "--quiet"]) == 0
    after = records(run, "train")
    assert sorted(after) == list(range(1, 10))
    assert all(after[s] == before[s] for s in before)  # the run's own steps are kept as they were
    lrs = [after[s]["lr"] for s in range(1, 10)]
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5]  # the cosine decays over the run's 6 steps ...
    assert lrs[5] == pytest.approx(0.1 * 1e-3) and lrs[6:] == [lrs[5]] * 3  # ... and stays at its floor after
    saved = json.loads((run / "run.json").read_text())["train"]
    assert (saved["max_steps"], saved["schedule_steps"]) == (9, 6)
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2  # resumed again: the new limit holds
    assert "already finished (9 of 9 steps)" in capsys.readouterr().err
