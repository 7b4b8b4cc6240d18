"""Serving throughput with concurrent clients: our server's continuous batching against one request at a time.

    python bench/serve.py                   # 1, 4 and 8 clients; a nanoGPT-sized and a gpt2-small-shaped model
    python bench/serve.py --shapes nano     # one shape (nano, gpt2-small, or tiny: the test's)
    python bench/serve.py --no-write        # print only

Each shape (random weights: the timing does not depend on them) is served twice on 127.0.0.1, each by uvicorn in a
thread of this process: "ours" is `serving.app.create_app` (its `Engine` decodes the requests in flight together,
admitting new ones at every step); "one at a time" is what wrapping `generation.generate` in a plain web handler
gives, a Starlette app whose one `POST /v1/completions` route runs `generate` for its prompt alone under a lock, in
a worker thread. The clients are `httpx.AsyncClient` coroutines in this process's main thread: with C clients,
each sends `--requests` completions one after another (each greedy, `--new-tokens` new tokens with `ignore_eos`,
so every request does the same work; a different `--prompt`-token prompt each). Throughput is the tokens
generated over the wall time from the first request sent to the last answer; latency is per request, from sent to
answered. Both servers are warmed up first and measured one after the other (never both under load at once),
alternating (ours, one at a time, ours, ...) over `--rounds` rounds at each number of clients; medians over the
rounds. Targets: with 8 clients, ours serves >= 3x the tokens/s of 1 client, at a p50 latency <= 2x. Writes its
block of BENCHMARKS.md.

The checkpoint is built in memory (`Checkpoint(...)`): the model, and a word-level tokenizer made from a vocabulary
of exactly the model's size (`tokenizers` WordLevel: our special tokens, then the words w0, w1, ...), so every id
the random model generates decodes (built directly: no text to train it on is needed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch
import uvicorn
from harness import footer, parameters, write_block
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from tokenizers import Tokenizer, models, pre_tokenizers

from transformer_networks.backends import use_onednn
from transformer_networks.checkpoints import Checkpoint
from transformer_networks.config import TrainConfig, TransformerConfig
from transformer_networks.data.tokenizer import SPECIAL_TOKENS, TextTokenizer
from transformer_networks.generation import generate
from transformer_networks.models import TransformerLM
from transformer_networks.serving.app import ServerSettings, create_app

SCRIPT = "bench/serve.py"
MODEL = "lm"  # the name both servers serve the model under


@dataclass
class Shape:
    title: str
    config: dict[str, Any]  # TransformerConfig.from_preset("gpt2-small", **config)
    requests: int  # default requests per client


SHAPES = {
    "nano": Shape(
        "nanoGPT-sized (6 layers, 384 wide, 6 heads, vocabulary 8,000, context 256)",
        dict(n_layers=6, d_model=384, n_heads=6, d_ff=1536, vocab_size=8000, max_seq_len=256),
        requests=3,
    ),
    "gpt2-small": Shape(
        "gpt2-small-shaped (12 layers, 768 wide, 12 heads, vocabulary 50,257, context 1,024)",
        dict(vocab_size=50257),
        requests=3,
    ),
    "tiny": Shape(  # for the test: seconds, not minutes
        "tiny (1 layer, 32 wide, 2 heads, vocabulary 100, context 128)",
        dict(n_layers=1, d_model=32, n_heads=2, d_ff=64, vocab_size=100, max_seq_len=128),
        requests=1,
    ),
}
SIDES = ("ours", "one at a time")


# --- the model and its checkpoint --------------------------------------------------------------------------------


def word(i: int) -> str:
    return f"w{i}"


def word_tokenizer(vocab_size: int) -> TextTokenizer:
    """A word-level tokenizer of exactly `vocab_size` tokens: our five special tokens, then the words w0, w1, ...
    (a token per word, so a prompt of n words is n tokens, and every id decodes to a word or nothing)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({word(i): len(SPECIAL_TOKENS) + i for i in range(vocab_size - len(SPECIAL_TOKENS))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # already in the vocabulary: marks them special, adds no id
    text_tokenizer = TextTokenizer(tok)
    assert text_tokenizer.vocab_size == vocab_size, text_tokenizer.vocab_size
    return text_tokenizer


def build_checkpoint(shape: Shape) -> Checkpoint:
    """A language model of `shape` with random weights, as `transformer-networks serve` holds a loaded one: in
    eval mode, on oneDNN as the command runs it on a CPU, with a tokenizer of the model's vocabulary."""
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("gpt2-small", **shape.config, dropout=0.0)
    model = TransformerLM(cfg).eval()
    use_onednn(model)
    tokenizer = word_tokenizer(cfg.vocab_size)
    return Checkpoint(
        path=Path("random-weights"),
        task="lm",
        model=model,
        config=cfg,
        train_config=TrainConfig(tokenizer="word"),
        tokenizer=tokenizer,
        source_tokenizer=tokenizer,
    )


# --- the two servers ---------------------------------------------------------------------------------------------


def one_at_a_time_app(ck: Checkpoint) -> Starlette:
    """`generate` wrapped in a plain web handler: each request's prompt decoded alone, one request at a time (a
    lock around the model, which a worker thread runs so the event loop stays free), run to `max_tokens`."""
    lock = threading.Lock()

    def complete(ids: list[int], max_tokens: int) -> list[int]:
        with lock:
            out = generate(ck.model, torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)
        return out[0, len(ids) :].tolist()

    async def completions(request: Request) -> Response:
        body = await request.json()
        ids = ck.tokenizer.encode(body["prompt"])
        new = await run_in_threadpool(complete, ids, int(body.get("max_tokens") or 16))
        text = ck.tokenizer.tokenizer.decode(new, skip_special_tokens=True)
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        return JSONResponse({"object": "text_completion", "model": MODEL, "choices": [choice], "usage": usage})

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


class Served:
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, in a background thread of this process."""

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True  # finishes the requests in flight, runs the app's shutdown (the engine's)
        self.thread.join(30)
        self.sock.close()


# --- the clients -------------------------------------------------------------------------------------------------


@dataclass
class Load:
    seconds: float  # from the first request sent to the last answer
    latencies: list[float]  # per request
    tokens: int  # generated, as the answers' usage counts them

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def prompt_text(vocab_size: int, length: int, seed: str) -> str:
    """`length` words (so `length` tokens) drawn from the vocabulary, a different prompt per seed."""
    rng = random.Random(seed)
    return " ".join(word(rng.randrange(vocab_size - len(SPECIAL_TOKENS))) for _ in range(length))


async def run_load(url: str, prompts: list[list[str]], new_tokens: int, expected: int | None = None) -> Load:
    """Client c sends prompts[c] one after another; all the clients at once."""

    async def client_loop(http: httpx.AsyncClient, mine: list[str]) -> list[tuple[float, int]]:
        done = []
        for prompt in mine:
            body = {"model": MODEL, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
            start = time.perf_counter()
            response = await http.post("/v1/completions", json=body)
            seconds = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:500]}")
            tokens = response.json()["usage"]["completion_tokens"]
            if expected is not None and tokens != expected:
                raise RuntimeError(f"{url}: {tokens} tokens generated, expected {expected}: not the same work")
            done.append((seconds, tokens))
        return done

    limits = httpx.Limits(max_connections=len(prompts) + 1)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900.0), limits=limits) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(client_loop(http, mine) for mine in prompts))
        seconds = time.perf_counter() - start
    answered = [r for per_client in results for r in per_client]
    return Load(seconds, [s for s, _ in answered], sum(t for _, t in answered))


async def measure_shape(
    ck: Checkpoint, levels: list[int], requests: int, new_tokens: int, prompt: int, rounds: int, label: str = ""
) -> dict[str, dict[int, list[Load]]]:
    """Each side's load at each number of clients in each round: both servers up, one loaded at a time."""
    vocab = ck.config.vocab_size

    def prompts(clients: int, tag: str) -> list[list[str]]:
        return [
            [prompt_text(vocab, prompt, f"{tag}/{clients}/{c}/{k}") for k in range(requests)] for c in range(clients)
        ]

    loads: dict[str, dict[int, list[Load]]] = {side: {n: [] for n in levels} for side in SIDES}
    apps = {"ours": create_app({MODEL: ck}, ServerSettings()), "one at a time": one_at_a_time_app(ck)}
    with contextlib.ExitStack() as stack:
        servers = {side: stack.enter_context(Served(app)) for side, app in apps.items()}
        for url in (s.url for s in servers.values()):
            # Warm-up: a request as measured, then a burst as wide as the widest load (the engine's joins and
            # drops of rows, the one-at-a-time server's worker threads).
            await run_load(url, prompts(1, "warm-up"), new_tokens)
            await run_load(url, [ps[:1] for ps in prompts(max(levels), "warm-up")], min(new_tokens, 8))
        for r in range(rounds):
            for clients in levels:
                for side, server in servers.items():
                    load = await run_load(server.url, prompts(clients, f"round {r}"), new_tokens, new_tokens)
                    loads[side][clients].append(load)
                    print(
                        f"  {label}round {r + 1}/{rounds}, {clients} clients: {side} {load.throughput:.1f} tokens/s, "
                        f"p50 {load.p50:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    return loads


# --- the report --------------------------------------------------------------------------------------------------


def shape_report(name: str, shape: Shape, ck: Checkpoint, loads: dict[str, dict[int, list[Load]]]) -> list[str]:
    """The table of one shape and its result line."""
    levels = list(loads["ours"])
    throughput = {side: {n: statistics.median(x.throughput for x in loads[side][n]) for n in levels} for side in SIDES}
    p50 = {side: {n: statistics.median(x.p50 for x in loads[side][n]) for n in levels} for side in SIDES}
    rows = [
        f"#### {shape.title}, {parameters(ck.model)} parameters",
        "",
        "| clients | ours tokens/s | ours p50 latency s | one-at-a-time tokens/s | one-at-a-time p50 s |",
        "|---|---|---|---|---|",
    ]
    for n in levels:
        rows.append(
            f"| {n} | {throughput['ours'][n]:,.1f} | {p50['ours'][n]:.3f} | {throughput['one at a time'][n]:,.1f} | "
            f"{p50['one at a time'][n]:.3f} |"
        )
    low, high = min(levels), max(levels)
    if high == low:
        return [
            *rows,
            "",
            f"- Result ({name}): ours / one at a time at {high} clients "
            f"**{throughput['ours'][high] / throughput['one at a time'][high]:.2f}x** throughput",
            "",
        ]
    scaling = throughput["ours"][high] / throughput["ours"][low]
    latency = p50["ours"][high] / p50["ours"][low]
    versus = throughput["ours"][high] / throughput["one at a time"][high]
    per_round = ", ".join(
        f"{a.throughput / b.throughput:.2f}" for a, b in zip(loads["ours"][high], loads["ours"][low], strict=True)
    )
    result = (
        f"- Result ({name}): ours {high} clients / {low} client{plural(low)} throughput **{scaling:.2f}x** "
        f"(target >= 3x: {'met' if scaling >= 3 else 'not met'}; round by round {per_round}); ours p50 latency at "
        f"{high} / at {low} **{latency:.2f}x** (target <= 2x: {'met' if latency <= 2 else 'not met'}); ours / one "
        f"at a time at {high} clients **{versus:.2f}x** throughput"
    )
    return [*rows, "", result, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="nano,gpt2-small", help=f"of {', '.join(SHAPES)} (default nano,gpt2-small)")
    parser.add_argument("--clients", default="1,4,8", help="numbers of concurrent clients (default 1,4,8)")
    parser.add_argument(
        "--requests",
        type=int,
        help="per client (default: each shape's, " + ", ".join(f"{k} {v.requests}" for k, v in SHAPES.items()) + ")",
    )
    parser.add_argument("--new-tokens", type=int, default=64, help="per request (default 64)")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per request (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two servers (default 2)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown or not names:
        parser.error(f"--shapes: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SHAPES)}")
    levels = sorted({int(n) for n in args.clients.split(",")})
    if not levels or levels[0] < 1:
        parser.error("--clients: positive numbers, e.g. 1,4,8")

    sections = []
    requests = {}
    for name in names:
        shape = SHAPES[name]
        requests[name] = args.requests or shape.requests
        ck = build_checkpoint(shape)
        print(f"{name}: {shape.title}", file=sys.stderr, flush=True)
        loads = asyncio.run(
            measure_shape(ck, levels, requests[name], args.new_tokens, args.prompt, args.rounds, f"{name}: ")
        )
        sections += shape_report(name, shape, ck, loads)
        del ck, loads

    if len(set(requests.values())) == 1:
        counts = f"{requests[names[0]]} `/v1/completions` request{plural(requests[names[0]])}"
    else:
        counts = "`/v1/completions` requests (" + ", ".join(f"{requests[n]} for {n}" for n in names) + ")"

    text = "\n".join(
        [
            "### Serving: throughput with concurrent clients",
            "",
            *sections,
            "- Setup: two servers of the same model on 127.0.0.1, each run by uvicorn in a thread of the benchmark's "
            "process: ours, `serving.app.create_app` (continuous batching, max_batch_size "
            f"{ServerSettings().max_batch_size}), and one at a time, a plain Starlette handler calling "
            "`generation.generate` for its prompt alone under a lock in a worker thread. Clients: httpx.AsyncClient "
            f"coroutines in the main thread; each client sends {counts} one after another, each greedy "
            f"(`temperature: 0`), {args.new_tokens} new tokens with `ignore_eos` (every request the same work, checked "
            f"in the answers' usage), a different {args.prompt}-token prompt each. Throughput: tokens generated / wall "
            "time of the whole load; latency: per request, sent to answered. Clients, server and decoding share the "
            "process (and its GIL) and the machine's cores. Models: gpt2-small's architecture (TransformerLM, pre-LN, "
            "learned positions, tied embeddings), random weights (timing only), float32, eval mode, `use_onednn` as "
            "the serve command runs it on a CPU; tokenizer: a word-level `tokenizers` WordLevel built with exactly "
            "the model's vocabulary (our 5 special tokens, then the words w0, w1, ...), so a prompt of n words is n "
            "tokens and every generated id decodes. Both servers warmed up, then loaded one after the other, "
            f"alternating (ours, one at a time, ours, ...) over {args.rounds} round{plural(args.rounds)} per number "
            "of clients; medians over the rounds",
            *footer(SCRIPT, f", uvicorn {uvicorn.__version__}, httpx {httpx.__version__}"),
        ]
    )
    print(text)
    if not args.no_write:
        write_block("serve", text, script="serve")


if __name__ == "__main__":
    main()
