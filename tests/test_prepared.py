"""`prepare lm`: a corpus tokenized once into token shards, trained on through memory maps. Training from the
shards takes the same batches (and losses) as training from the files; an interrupted `prepare` leaves no
manifest; bad input is one line naming the file and position, exit 2, and no manifest."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from transformer_networks import cli
from transformer_networks.data import prepared
from transformer_networks.data.batching import pack_blocks
from transformer_networks.data.prepared import (
    MANIFEST,
    TokenStream,
    line_chunks,
    open_split,
    prepare_lm,
    read_documents,
    read_manifest,
    verify,
)
from transformer_networks.data.readers import read_lm_text
from transformer_networks.tasks.lm import LanguageModelingTask

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TINY = ["--preset", "tiny", "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "d_ff=64"]
TINY += ["--device", "cpu", "--quiet"]


@pytest.fixture
def corpus(tmp_path):
    """Several text files (one in a subdirectory, one gzipped), JSONL and Parquet, and a validation file."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("the quick brown fox\njumps over the lazy dog\n" * 40, encoding="utf-8")
    (root / "sub" / "b.txt").write_text("a cat naps in the sun\r\nby the barn" * 30, encoding="utf-8")
    with gzip.open(root / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("zipped lines of text\n" * 25)
    with open(root / "d.jsonl", "w", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"id": i, "text": f"record {i} holds\na short note"}) + "\n")
    table = pa.table({"text": [f"row {i} of the table" for i in range(20)] + [None], "n": list(range(21))})
    pq.write_table(table, root / "e.parquet")
    (tmp_path / "valid.txt").write_text("the lazy cat naps by the fox\n" * 10, encoding="utf-8")
    return root


def test_line_chunks_cut_after_newlines_and_rejoin():
    text = "ab\ncdefgh\nij\n" + "x" * 30 + "\nend"
    chunks = list(line_chunks(text, size=8))
    assert "".join(chunks) == text
    assert chunks[:3] == ["ab\n", "cdefgh\n", "ij\n"]  # whole lines, at most 8 characters unless one is longer
    assert chunks[3] == "x" * 30 + "\n"


def test_documents_of_every_format(corpus):
    docs = read_documents([corpus])
    assert docs[0] == "the quick brown fox\njumps over the lazy dog\n" * 40
    assert docs[1] == "zipped lines of text\n" * 25
    assert docs[2 : 2 + 30] == [f"record {i} holds\na short note" for i in range(30)]
    assert docs[32 : 32 + 20] == [f"row {i} of the table" for i in range(20)]  # the null row is skipped
    assert docs[-1] == read_lm_text([corpus / "sub" / "b.txt"])[0]  # text files as the text reader reads them


def test_prepare_writes_shards_a_manifest_and_the_same_tokens_as_the_task_on_the_files(corpus, tmp_path):
    out = tmp_path / "prep"
    manifest = prepare_lm(
        [corpus], out, kind="bpe", vocab_size=120, valid=[tmp_path / "valid.txt"], shard_tokens=500, quiet=True
    )
    assert manifest == read_manifest(out) and manifest["dtype"] == "uint16"
    train = manifest["splits"]["train"]
    assert len(train["shards"]) > 2 and all(s["tokens"] <= 500 for s in train["shards"])
    assert train["documents"] == 2 + 30 + 20 + 1 and manifest["splits"]["valid"]["documents"] == 1
    verify(out)  # every sha256 matches
    stream = open_split(out, "train")
    assert len(stream) == train["tokens"]
    # The task on the files, with the prepared tokenizer, makes exactly this stream (<eos> after each document).
    task = LanguageModelingTask.__new__(LanguageModelingTask)
    task.tokenizer = LanguageModelingTask.train_tokenizers(
        LanguageModelingTask.read_paths([str(out)], None), "bpe", None
    )[0]
    direct = task.encode(read_documents([corpus])).examples[0]
    assert torch.equal(direct[0 : len(direct)], stream[0 : len(stream)])
    assert int((stream[0 : len(stream)] == task.tokenizer.eos_id).sum()) == train["documents"]
    # A slice across shard boundaries.
    whole = np.concatenate([np.fromfile(out / s["file"], dtype=np.uint16) for s in train["shards"]])
    assert stream[490:1010].tolist() == whole[490:1010].tolist()


def test_without_valid_the_end_of_the_corpus_is_held_out(corpus, tmp_path):
    manifest = prepare_lm([corpus], tmp_path / "prep", kind="char", valid_fraction=0.05, shard_tokens=700, quiet=True)
    train, valid = manifest["splits"]["train"], manifest["splits"]["valid"]
    everything = prepare_lm([corpus], tmp_path / "all", kind="char", valid=[corpus / "a.txt"], quiet=True)
    total = everything["splits"]["train"]["tokens"]
    assert train["tokens"] + valid["tokens"] == total and valid["tokens"] == round(total * 0.05)
    joined = open_split(tmp_path / "all", "train")
    assert (
        open_split(tmp_path / "prep", "valid")[0 : valid["tokens"]].tolist() == joined[train["tokens"] : total].tolist()
    )
    verify(tmp_path / "prep")  # the shrunk shard's sha256 was updated


def test_training_from_shards_takes_the_same_batches_and_losses_as_from_the_files(corpus, tmp_path):
    valid = tmp_path / "valid.txt"
    assert (
        cli.main(
            [
                "prepare",
                "lm",
                "--data",
                str(corpus),
                "--valid",
                str(valid),
                "--out",
                str(tmp_path / "prep"),
                "--tokenizer",
                "char",
                "--quiet",
            ]
        )
        == 0
    )
    common = ["--max-steps", "2", "--eval-every", "1", "--block-size", "16", "--batch-size", "4", *TINY]
    runs = {}
    for name, data in (
        ("files", ["--data", str(corpus), "--valid", str(valid), "--tokenizer", "char"]),
        ("shards", ["--data", str(tmp_path / "prep")]),
    ):
        runs[name] = tmp_path / name
        assert cli.main(["train", "lm", *data, "--out", str(runs[name]), *common]) == 0

    def losses(run):  # the validation loss after each step: it depends on every batch trained on
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in lines]

    assert losses(runs["files"]) == losses(runs["shards"]) and len(losses(runs["files"])) >= 2
    # The batches themselves, for the first epoch: equal tensors.
    from transformer_networks.checkpoints import load_checkpoint

    ck = load_checkpoint(runs["shards"])
    task = ck.make_task()
    from_files = task.batches(task.encode(read_documents([corpus])), epoch=0)
    from_shards = task.batches(
        task.encode(LanguageModelingTask.read_paths([str(tmp_path / "prep")], ck.train_config)), epoch=0
    )
    assert len(from_files) == len(from_shards)
    for a, b in zip(from_files[:3], from_shards[:3], strict=True):
        assert torch.equal(a["ids"], b["ids"]) and torch.equal(a["targets"], b["targets"])


def test_lazy_blocks_equal_pack_blocks():
    ids = torch.arange(1000) % 97
    stream = TokenStream([ids[:300].numpy(), ids[300:].numpy()])
    from transformer_networks.data.batching import LMBlocks

    order = torch.randperm(61, generator=torch.Generator().manual_seed(0))
    blocks = LMBlocks(stream, 16, 8, offset=5, order=order)
    inputs, targets = pack_blocks(ids[5:], 16)
    assert blocks.blocks == len(inputs) == 62 - 1 + 0 or blocks.blocks == len(inputs)
    batch = blocks[2]
    assert torch.equal(batch["ids"], inputs[order[16:24]]) and torch.equal(batch["targets"], targets[order[16:24]])
    assert len(blocks) == 8 and len(blocks[6:20]) == 2


def test_an_interrupted_prepare_leaves_no_manifest_and_is_not_trained_on(tmp_path):
    big = tmp_path / "big.txt"
    line = "".join(chr(97 + (i * 7) % 26) for i in range(79)) + "\n"
    with open(big, "w", encoding="utf-8") as f:
        for i in range(400_000):  # 32 MB
            f.write(f"{i} {line}")
    out = tmp_path / "prep"
    cmd = [
        sys.executable,
        "-m",
        "transformer_networks",
        "prepare",
        "lm",
        "--data",
        str(big),
        "--out",
        str(out),
        "--tokenizer",
        "char",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "train-00000.bin").exists():
            time.sleep(0.05)
        assert (out / "train-00000.bin").exists(), "prepare never started writing"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / MANIFEST).exists()
    code = cli.main(["train", "lm", "--data", str(out), "--out", str(tmp_path / "run"), *TINY])
    assert code == 2 and not (tmp_path / "run").exists()


def test_bad_input_is_one_line_naming_the_file_and_position_and_writes_no_manifest(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nsecond \xff\xfe line\n")
    records = tmp_path / "r.jsonl"
    records.write_text('{"text": "fine"}\n{"body": "no text field"}\n', encoding="utf-8")
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "t.parquet")
    packed = gzip.compress("".join(f"line {i * 7919 % 10007} of text\n" for i in range(5000)).encode())
    (tmp_path / "cut.txt.gz").write_bytes(packed[: len(packed) // 2])  # a download cut short
    cases = [
        (bad, "bad.txt: line 2: not UTF-8 text (invalid start byte at byte 17 of the file)"),
        (records, "r.jsonl: line 2: no 'text' field"),
        (tmp_path / "t.parquet", "t.parquet: no 'text' column (columns: content)"),
        (tmp_path / "cut.txt.gz", "cut.txt.gz: line"),
    ]
    for i, (path, says) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code = cli.main(["prepare", "lm", "--data", str(path), "--out", str(out), "--tokenizer", "char", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not (out / MANIFEST).exists()
    out = tmp_path / "replaced"
    assert (
        cli.main(
            [
                "prepare",
                "lm",
                "--data",
                str(bad),
                "--out",
                str(out),
                "--tokenizer",
                "char",
                "--errors",
                "replace",
                "--quiet",
            ]
        )
        == 0
    )
    assert "\ufffd" in "".join(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])


def test_prepare_refuses_to_overwrite_what_is_not_prepared_data(tmp_path, corpus, capsys):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious", encoding="utf-8")
    assert cli.main(["prepare", "lm", "--data", str(corpus), "--out", str(keep), "--quiet"]) == 2
    assert cli.main(["prepare", "lm", "--data", str(corpus), "--out", str(keep), "--overwrite", "--quiet"]) == 2
    assert (keep / "notes.txt").read_text(encoding="utf-8") == "precious"
    assert "not prepared data" in capsys.readouterr().err


def test_train_refuses_a_corpus_too_large_for_memory_with_the_advice_to_prepare(tmp_path, corpus, capsys, monkeypatch):
    size = sum(f.stat().st_size for f in corpus.rglob("*") if f.is_file() and f.suffix != ".gz")
    size += (corpus / "c.txt.gz").stat().st_size * prepared.GZ_RATIO
    assert prepared.check_fits_in_memory([corpus], available=size * prepared.MEMORY_PER_TEXT_BYTE) == size
    monkeypatch.setattr(prepared, "available_memory", lambda: size * prepared.MEMORY_PER_TEXT_BYTE - 1)
    run = tmp_path / "run"
    code = cli.main(["train", "lm", "--data", str(corpus), "--out", str(run), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and not run.exists() and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"corpus: {size / 1e6:,.0f} MB of text needs up to" in err and "prepare lm" in err, err
    # A prepared directory of the same corpus trains: its memory does not grow with the corpus.
    data = tmp_path / "data"
    prepare = ["prepare", "lm", "--data", str(corpus), "--out", str(data), "--tokenizer", "char"]
    assert cli.main([*prepare, "--valid-fraction", "0.2", "--quiet"]) == 0
    train = ["train", "lm", "--data", str(data), "--out", str(run), "--max-steps", "1", "--block-size", "16"]
    assert cli.main([*train, *TINY]) == 0


@pytest.mark.parametrize("prepared_data", [False, True])
def test_eval_examples_caps_the_validation_text_at_that_many_blocks(tmp_path, corpus, capsys, prepared_data):
    data = corpus
    if prepared_data:
        data = tmp_path / "data"
        prepare = ["prepare", "lm", "--data", str(corpus), "--out", str(data), "--tokenizer", "char", "--quiet"]
        assert cli.main([*prepare, "--valid-fraction", "0.2"]) == 0
    train = ["train", "lm", "--data", str(data), "--max-steps", "1", "--block-size", "8", *TINY[:-1]]
    runs = {}
    for n in (None, 3):
        runs[n] = tmp_path / f"run-{n}"
        extra = [] if n is None else ["--set", f"eval_examples={n}"]
        assert cli.main([*train, "--out", str(runs[n]), *extra]) == 0
        line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("data:"))
        tokens = int(line.split("validation ")[1].split()[0].replace(",", ""))
        assert (tokens == 3 * 8 + 1) == (n == 3), line  # the whole validation text holds more than 3 blocks
    metrics = [json.loads(x) for x in (runs[3] / "metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(x) for x in (runs[None] / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("loss") for m in metrics if "perplexity" in m] != [m.get("loss") for m in whole if "perplexity" in m]
