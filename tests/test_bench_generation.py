"""bench/generation.py greedy_vs_hf at a tiny size: our TransformerLM and the Hugging Face GPT2LMHeadModel exported
from it hold the same weights, so greedy decoding must give the same tokens."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def generation(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its `harness` neighbour
    spec = importlib.util.spec_from_file_location("bench_generation", BENCH / "generation.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_greedy_tokens_are_the_same_as_transformers(generation):
    cases = generation.greedy_cases(1, shapes=["nanogpt"], batches=[1, 3], new_tokens=24)
    assert [(c.shape, c.batch) for c in cases] == [("nanogpt", 1), ("nanogpt", 3)]
    for c in cases:
        assert c.full, f"batch {c.batch}: a side did not give 16 + 24 tokens per row"
        assert c.identical, f"batch {c.batch}: {c.mismatched} tokens differ between ours and transformers"
        assert len(c.times["ours"]) == len(c.times["hf"]) == 1


def test_the_command_prints_the_block_and_writes_nothing(generation, monkeypatch, capsys):
    written = []
    monkeypatch.setattr(generation, "write_block", lambda *args, **kwargs: written.append(args))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "generation.py",
            "greedy_vs_hf",
            "--shapes",
            "nanogpt",
            "--batches",
            "2",
            "--new-tokens",
            "8",
            "--rounds",
            "1",
            "--no-write",
        ],
    )
    threads = torch.get_num_threads()
    try:
        generation.main()
    finally:
        torch.set_num_threads(threads)  # main() sets it for the whole process
    out = capsys.readouterr().out
    assert "### Greedy generation against Hugging Face `generate`" in out
    rows = [line for line in out.splitlines() if line.startswith("| nanogpt |")]
    assert len(rows) == 1 and rows[0].startswith("| nanogpt | 2 |") and rows[0].endswith("| yes |")
    assert written == []


def test_the_compiled_part_times_both_paths_on_the_same_tokens(generation):
    text = generation.compiled(1, shapes=["nanogpt"], batches=[2], new_tokens=8)
    rows = [line for line in text.splitlines() if line.startswith("| nanogpt |")]
    assert len(rows) == 1 and rows[0].startswith("| nanogpt | 2 |") and rows[0].endswith("| yes |")
