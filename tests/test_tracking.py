"""Experiment tracking (`--report-to csv,tensorboard,wandb`): each tracker holds exactly the scalars of
metrics.jsonl, read back with its own reader (csv, TensorBoard's event reader, the W&B offline run file); an
extended run goes on in each without repeating steps; `plot` leaves out empty panels."""

import csv
import glob
import json
import struct

import pytest

from transformer_networks import cli
from transformer_networks.viz.curves import curve_panels, plot_curves

TINY = ["--preset", "tiny", "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "d_ff=64"]


def jsonl_scalars(run):
    """{(step, split, name): value} of every number metrics.jsonl holds (step and split aside)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        for k, v in r.items():
            if k not in ("step", "split") and isinstance(v, int | float):
                out[r["step"], r["split"], k] = float(v)
    return out


def wandb_records(run):
    """The records of the offline W&B run file: W&B writes LevelDB's log format (32 KiB blocks of chunks, each
    with a 7-byte header: CRC, length, type) after its own 7-byte header, each record a protobuf `Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    [path] = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))
    raw = open(path, "rb").read()
    assert raw[:4] == b":W&B"
    records, chunk, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:  # the rest of the block is padding
            pos += left
            continue
        chunk += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network
    monkeypatch.setenv("WANDB_SILENT", "true")
    data = tmp_path / "lm.txt"
    data.write_text("the quick brown fox jumps over the lazy dog.\n" * 30, encoding="utf-8")
    return data


def train(data, out, *extra):
    argv = ["train", "lm", "--data", data, "--tokenizer", "char", "--block-size", "16", "--device", "cpu"]
    argv += ["--set", "log_every=2", "--eval-every", "3", "--quiet", *TINY, *extra]
    return cli.main([str(a) for a in argv])


def test_each_tracker_holds_the_scalars_of_metrics_jsonl(corpus, tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert train(corpus, run, "--out", run, "--max-steps", "6", "--report-to", "csv,tensorboard,wandb") == 0
    expected = jsonl_scalars(run)
    assert ("train", "lr") in {(s, n) for _, s, n in expected} and ("valid", "perplexity") in {
        (s, n) for _, s, n in expected
    }

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(int(r["step"]), r["split"], r["name"]): float(r["value"]) for r in rows} == expected
    assert len(rows) == len(expected)

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    from_tensorboard = {
        (e.step, *tag.split("/", 1)): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)
    }
    assert from_tensorboard.keys() == expected.keys()
    assert all(from_tensorboard[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())  # float32
    assert events.Tags()["tensors"] == ["settings/text_summary"]  # the run's settings, as text

    records = wandb_records(run)
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for key, value in items.items():
                if "/" in key:
                    split, name = key.split("/", 1)
                    history[items["_step"], split, name] = value
    assert history == pytest.approx(expected)
    [info] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in info.config.update}
    assert config["task"] == "lm" and config["train"]["report_to"] == "csv,tensorboard,wandb"


def test_an_extended_run_goes_on_in_the_csv_without_repeating_steps(corpus, tmp_path):
    run = tmp_path / "run"
    assert train(corpus, run, "--out", run, "--max-steps", "6", "--report-to", "csv") == 0
    assert cli.main(["train", "--resume", str(run), "--max-steps", "10", "--quiet"]) == 0
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = [(int(r["step"]), r["split"], r["name"]) for r in rows]
    assert len(got) == len(set(got)) and max(s for s, _, _ in got) == 10
    assert {k: float(r["value"]) for k, r in zip(got, rows, strict=True)} == jsonl_scalars(run)


def test_an_unknown_tracker_is_a_one_line_error_before_anything_is_written(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--out", run, "--max-steps", "2", "--report-to", "csv,mlflow") == 2
    err = capsys.readouterr().err
    assert "unknown tracker 'mlflow'; choose from csv, tensorboard, wandb" in err and err.count("\n") == 1
    assert not run.exists()


def test_plot_leaves_out_empty_panels_and_marks_few_points(tmp_path):
    records = [{"step": 5, "split": "valid", "loss": 2.0, "bleu": 10.0}]
    assert [title for title, _ in curve_panels(records)] == ["loss (cross-entropy, nats/token)", "validation bleu"]
    records.append({"step": 2, "split": "train", "loss": 3.0, "lr": 1e-3})
    panels = dict(curve_panels(records))
    assert [label for label, *_ in panels["loss (cross-entropy, nats/token)"]] == ["train", "validation"]
    assert panels["learning rate"] == [(None, [2], [1e-3])]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    png = plot_curves(tmp_path).read_bytes()
    width = struct.unpack(">I", png[16:20])[0]  # the PNG header's width: two panels of 500 pixels
    assert width == 1000
