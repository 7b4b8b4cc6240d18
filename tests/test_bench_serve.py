"""bench/serve.py: the tokenizer fits the model, both servers answer the same greedy text for the same work, and
the script runs end to end (tiny settings, nothing written)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import serve  # noqa: E402  (bench/ is not a package)


def test_the_word_tokenizer_has_the_models_vocabulary_and_decodes_every_id():
    tok = serve.word_tokenizer(50257)  # gpt2-small's
    assert tok.vocab_size == 50257 and (tok.pad_id, tok.eos_id) == (0, 3)
    assert tok.encode("w0 w7 w50251") == [5, 12, 50256]
    assert tok.tokenizer.decode([5, 3, 12, 50256], skip_special_tokens=True) == "w0 w7 w50251"
    prompt = serve.prompt_text(50257, 20, "seed")
    assert len(tok.encode(prompt)) == 20 and prompt != serve.prompt_text(50257, 20, "other")


def test_both_servers_do_the_same_work_and_answer_the_same_text():
    ck = serve.build_checkpoint(serve.SHAPES["tiny"])
    assert ck.tokenizer.vocab_size == ck.config.vocab_size == 100
    prompt = serve.prompt_text(100, 12, "test")
    body = {"model": serve.MODEL, "prompt": prompt, "max_tokens": 9, "temperature": 0, "ignore_eos": True}
    answers = {}
    apps = {"ours": serve.create_app({serve.MODEL: ck}, serve.ServerSettings()), "peer": serve.one_at_a_time_app(ck)}
    for side, app in apps.items():
        with serve.Served(app) as served:
            answers[side] = httpx.post(f"{served.url}/v1/completions", json=body, timeout=60).json()
            load = asyncio.run(serve.run_load(served.url, [[prompt], [prompt, prompt]], 5, expected=5))
        assert load.tokens == 15 and len(load.latencies) == 3 and load.throughput > 0 and load.p50 > 0
        assert not served.thread.is_alive()  # stopped
    assert answers["ours"]["usage"]["completion_tokens"] == answers["peer"]["usage"]["completion_tokens"] == 9
    with torch.no_grad():  # the greedy continuation, through the library's own `generate`
        ids = ck.tokenizer.encode(prompt)
        expected = serve.generate(ck.model, torch.tensor([ids]), max_new_tokens=9)[0, len(ids) :].tolist()
    words = ck.tokenizer.tokenizer.decode(expected, skip_special_tokens=True).split()
    assert answers["ours"]["choices"][0]["text"].split() == answers["peer"]["choices"][0]["text"].split() == words


def test_script_runs_and_writes_nothing():
    benchmarks = ROOT / "BENCHMARKS.md"
    before = benchmarks.read_bytes() if benchmarks.exists() else None
    argv = ["--shapes", "tiny", "--clients", "1,3", "--requests", "1", "--new-tokens", "4", "--rounds", "1"]
    result = subprocess.run(
        [sys.executable, "bench/serve.py", *argv, "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.startswith("### Serving: throughput with concurrent clients")
    assert "| clients | ours tokens/s | ours p50 latency s | one-at-a-time tokens/s | one-at-a-time p50 s |" in out
    rows = re.findall(r"^\| (\d+) \| ([\d,.]+) \| ([\d.]+) \| ([\d,.]+) \| ([\d.]+) \|$", out, flags=re.M)
    assert [r[0] for r in rows] == ["1", "3"]
    assert all(float(x.replace(",", "")) > 0 for r in rows for x in r[1:])
    ratios = re.search(
        r"Result \(tiny\): ours 3 clients / 1 client throughput \*\*([\d.]+)x\*\*.*at 3 / at 1 "
        r"\*\*([\d.]+)x\*\*.*at 3 clients \*\*([\d.]+)x\*\*",
        out,
    )
    assert ratios and all(float(x) > 0 for x in ratios.groups()), out
    assert "- Setup:" in out and torch.__version__ in out and "python bench/serve.py --shapes tiny" in out
    assert (benchmarks.read_bytes() if benchmarks.exists() else None) == before
