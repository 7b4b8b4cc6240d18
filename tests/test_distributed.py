"""`train` under torchrun: 2 CPU processes (gloo) take the same steps as one process with the same global batch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def train_args(data, out, *extra):
    return [
        "train",
        "lm",
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--set",
        "d_model=32",
        "--set",
        "n_heads=2",
        "--set",
        "n_layers=1",
        "--set",
        "dropout=0",
        "--set",
        "log_every=1",
        "--set",
        "threads=1",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--block-size",
        "16",
        "--batch-size",
        "4",
        "--tokenizer",
        "char",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def launch(argv, *, before_retry=lambda: None, finished=lambda: False):
    """Run a torchrun command line that must succeed. Two local gloo processes now and then die as they start or
    finish on a loaded 2-core machine (SIGABRT, 'terminate called without an active exception'): such a failure
    is run once more, after `before_retry`, unless `finished()` says the run got to its end; a second failure is
    the test's."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and not finished():
        first = done.stderr
        before_retry()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, first + done.stderr


def train_losses(run):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["split"] == "train"}


@pytest.mark.parametrize(
    ("accum", "extra"),
    [
        (1, []),
        (2, []),
        (1, ["--set", "fsdp=true", "--set", "activation_checkpointing=true"]),  # FSDP2: sharded, same steps
    ],
)
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, accum, extra):
    data = tmp_path / "text.txt"
    data.write_text(Path(__file__).read_text() * 4, encoding="utf-8")
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "transformer_networks",
            *train_args(data, tmp_path / "one", "--set", f"grad_accum={2 * accum}"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "transformer_networks",
        *train_args(data, tmp_path / "two", "--set", f"grad_accum={accum}", *extra),
        "--overwrite",
    ]
    launch(argv)
    one, both = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(one) == sorted(both) == list(range(1, 7))
    for step in one:
        assert abs(one[step] - both[step]) < 1e-5, (step, one[step], both[step])
    # Only rank 0 wrote: one run.json, one metrics file, checkpoints once.
    assert (tmp_path / "two" / "last" / "model.safetensors").exists()
    assert (
        sum(
            1
            for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "valid"
        )
        == 2
    )


def checkpoint_step(run):
    try:
        return json.loads((Path(run) / "last" / "task.json").read_text())["step"]
    except (OSError, ValueError):
        return None


def descendants(pid):
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def torchrun(*args):
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "transformer_networks",
        *args,
    ]


@pytest.mark.parametrize("extra", [[], ["--set", "fsdp=true"]], ids=["ddp", "fsdp"])
def test_a_distributed_run_killed_after_a_checkpoint_resumes_bitwise(tmp_path, extra):
    """Dropout on: each process draws its own masks, so each needs its own RNG state back; under FSDP the
    optimizer state is sharded and must be gathered into last/ and sharded again on resume."""
    data = tmp_path / "text.txt"
    data.write_text(Path(__file__).read_text() * 8, encoding="utf-8")
    args = [
        *train_args(data, "RUN"),
        "--set",
        "dropout=0.1",
        "--set",
        "d_model=64",
        "--max-steps",
        "40",
        "--eval-every",
        "20",
        *extra,
    ]

    def argv(run):
        return torchrun(*[str(run) if a == "RUN" else a for a in args])

    launch(argv(tmp_path / "straight"), before_retry=lambda: shutil.rmtree(tmp_path / "straight", ignore_errors=True))
    run = tmp_path / "killed"
    child = subprocess.Popen(argv(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 200
    while checkpoint_step(run) is None:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    for pid in [*descendants(child.pid), child.pid]:  # the workers, then torchrun: a power cut
        os.kill(pid, signal.SIGKILL)
    child.communicate()
    assert checkpoint_step(run) == 20  # killed before the run could end
    # A retry resumes from the last checkpoint the failed try wrote; a try that died after its last step is done.
    launch(torchrun("train", "--resume", str(run), "--quiet"), finished=lambda: checkpoint_step(run) == 40)
    ours, theirs = train_losses(run), train_losses(tmp_path / "straight")
    assert sorted(ours) == sorted(theirs) == list(range(1, 41))
    assert [ours[s] for s in range(21, 41)] == [theirs[s] for s in range(21, 41)]  # bitwise


def test_processes_agree_on_the_time_limit_and_stop_together(tmp_path):
    # rank 0's clock decides: a limit already past at the first step stops both processes there, together (else
    # one waits for the other forever), and the run says so. (How often they agree: tests/test_training.py.)
    data = tmp_path / "text.txt"
    data.write_text(Path(__file__).read_text() * 4, encoding="utf-8")
    run = tmp_path / "run"
    args = [*train_args(data, run), "--set", "log_every=100", "--max-steps", "100", "--eval-every", "100"]
    args[args.index("--quiet")] = "--max-minutes=0.00001"  # 0.6 ms: out of time at the first step
    done = subprocess.run(torchrun(*args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint_step(run) == 1
    assert "time limit" in done.stderr
