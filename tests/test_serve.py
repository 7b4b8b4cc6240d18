"""`serve`: a real server on a free loopback port, talked to by real clients (the `openai` package and `httpx`).
Answers equal the Python API's (greedy completions equal `generate_text` under concurrency), every bad request
gets its status and an OpenAI-style error, and the server keeps serving after each."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn

from transformer_networks import cli
from transformer_networks.checkpoints import load_checkpoint
from transformer_networks.data.dialogue import Message
from transformer_networks.inference import (
    answer_questions,
    chat_reply,
    classify_lines,
    generate_text,
    translate_lines,
)
from transformer_networks.serving.app import ServerSettings, create_app

TINY = ["--preset", "tiny", "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "d_ff=64"]
TINY += ["--device", "cpu", "--quiet"]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()
TEXT = "the quick brown fox jumps over the lazy dog. a cat naps in the warm sun by the old barn door.\n"
PROMPTS = ["the quick", "a cat", "over the l", "sun by", "warm", "the old barn", "jumps", "dog. a"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny checkpoints of every task: lm (characters), chat, translation, classification, qa."""
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "lm.txt").write_text(TEXT * 30, encoding="utf-8")
    pairs = [(a, b) for a in WORDS for b in WORDS[:5]]
    (tmp / "mt.tsv").write_text("".join(f"{a} {b}\t{b} {a}\n" for a, b in pairs), encoding="utf-8")
    rows = "".join(f"{w} {w}\t{'pos' if i % 2 else 'neg'}\n" for i, w in enumerate(WORDS))
    (tmp / "cls.tsv").write_text("text\tlabel\n" + rows * 5, encoding="utf-8")
    argvs = {
        "lm": ["lm", "--data", tmp / "lm.txt", "--tokenizer", "char", "--block-size", "32", "--max-steps", "30"],
        "chat": ["chat", "--max-steps", "2", "--set", "eval_examples=2"],
        "mt": ["translation", "--data", tmp / "mt.tsv", "--tokenizer", "word", "--max-steps", "5"],
        "cls": ["classification", "--data", tmp / "cls.tsv", "--tokenizer", "word", "--max-steps", "5"],
        "qa": ["qa", "--data", "builtin:babi-1", "--max-steps", "2", "--set", "eval_examples=4"],
    }
    out = {}
    for name, argv in argvs.items():
        out[name] = tmp / name
        argv = ["train", *argv, "--eval-every", argv[argv.index("--max-steps") + 1], "--out", out[name], *TINY]
        assert cli.main([str(a) for a in argv]) == 0, name
    return out


@pytest.fixture(scope="module")
def cks(runs):
    return {name: load_checkpoint(path) for name, path in runs.items()}


class Slow:
    """A model that sleeps before every forward pass: requests stay in flight long enough to act on them."""

    def __init__(self, model, delay: float) -> None:
        self.model, self.delay, self.cfg = model, delay, model.cfg

    def __call__(self, *args, **kwargs):
        time.sleep(self.delay)
        return self.model(*args, **kwargs)

    def init_cache(self, *args, **kwargs):
        return self.model.init_cache(*args, **kwargs)

    def parameters(self, recurse: bool = True):
        return self.model.parameters(recurse)


class Running:
    """A server in a thread of this process, on a free port of 127.0.0.1."""

    def __init__(self, models, **settings) -> None:
        self.app = create_app(models, ServerSettings(**settings))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started

    def engine(self, name):
        return self.app.server.models[name].engine

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture(scope="module")
def server(cks):
    running = Running(cks)
    yield running
    running.close()


def client(server, **kwargs):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=kwargs.pop("api_key", "none"), max_retries=0, **kwargs)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code", "param"} <= set(body["error"]), body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


# --- answers ----------------------------------------------------------------------------------------------------


def test_models_and_health(server):
    models = client(server).models.list()
    assert {m.id for m in models.data} == {"lm", "chat", "mt", "cls", "qa"}
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_concurrent_greedy_completions_equal_generate_alone(server, cks):
    lm = cks["lm"]
    expected = [generate_text(lm, p, max_new_tokens=8 + 3 * i, do_sample=False) for i, p in enumerate(PROMPTS)]
    api = client(server)

    def complete(i):
        return api.completions.create(model="lm", prompt=PROMPTS[i], max_tokens=8 + 3 * i, temperature=0)

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(complete, range(len(PROMPTS))))
    assert [a.choices[0].text for a in answers] == expected
    assert all(a.choices[0].finish_reason in ("length", "stop") for a in answers)
    first = answers[0]
    assert first.object == "text_completion" and first.model == "lm"
    assert first.usage.prompt_tokens == len(cks["lm"].tokenizer.encode(PROMPTS[0]))
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_a_streamed_completion_is_the_same_text_in_pieces(server, cks):
    expected = generate_text(cks["lm"], "the quick", max_new_tokens=30, do_sample=False)
    chunks = list(
        client(server).completions.create(model="lm", prompt="the quick", max_tokens=30, temperature=0, stream=True)
    )
    assert len(chunks) > 2
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_stop_strings_seeds_and_several_choices(server, cks):
    api = client(server)
    full = generate_text(cks["lm"], "the quick", max_new_tokens=30, do_sample=False)
    stop = full[5:7]
    cut = api.completions.create(model="lm", prompt="the quick", max_tokens=30, temperature=0, stop=stop)
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    one = api.completions.create(model="lm", prompt="a", max_tokens=20, temperature=1.0, seed=3, n=3)
    two = api.completions.create(model="lm", prompt="a", max_tokens=20, temperature=1.0, seed=3, n=3)
    assert [c.index for c in one.choices] == [0, 1, 2]
    assert [c.text for c in one.choices] == [c.text for c in two.choices]  # seeded: reproducible
    alone = generate_text(cks["lm"], "a", max_new_tokens=20, do_sample=True, seed=3)
    assert one.choices[0].text == alone  # choice j samples with seed + j, as generate does with that seed
    batch = api.completions.create(model="lm", prompt=["the", "a cat"], max_tokens=5, temperature=0)
    assert [c.text for c in batch.choices] == [
        generate_text(cks["lm"], p, max_new_tokens=5, do_sample=False) for p in ["the", "a cat"]
    ]


def test_chat_completions_streamed_and_not_equal_chat_reply(server, cks):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, I am Ann."}]
    expected = chat_reply(cks["chat"], [Message(m["role"], m["content"]) for m in messages], max_new_tokens=12)
    api = client(server)
    answer = api.chat.completions.create(model="chat", messages=messages, max_tokens=12, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.content == expected
    chunks = list(
        api.chat.completions.create(
            model="chat",
            messages=messages,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_translations_classifications_and_answers_equal_the_python_api(server, cks):
    lines = ["alpha bravo", "golf echo", "india delta"]
    body = httpx.post(
        server.url + "/v1/translations", json={"model": "mt", "input": lines, "num_beams": 2, "n_best": 2}
    ).json()
    expected = translate_lines(cks["mt"], lines, num_beams=2, n_best=2)
    assert [[t["text"] for t in d["translations"]] for d in body["data"]] == [[t.text for t in h] for h in expected]
    body = httpx.post(server.url + "/v1/classifications", json={"model": "cls", "input": ["alpha alpha"]}).json()
    probs = classify_lines(cks["cls"], ["alpha alpha"])[0]
    assert body["data"][0]["label"] == max(probs, key=probs.get)
    assert body["data"][0]["probabilities"] == pytest.approx(probs, abs=1e-5)
    story = "Mary went to the kitchen. John moved to the garden."
    body = httpx.post(
        server.url + "/v1/answers",
        json={"model": "qa", "questions": [{"question": "Where is Mary?", "context": story}]},
    ).json()
    best = answer_questions(cks["qa"], [("Where is Mary?", story)])[0][0]
    assert body["data"][0]["answers"][0]["text"] == best.text
    assert body["data"][0]["answers"][0]["start"] == best.start


# --- bad requests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v1/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/completions", {"model": "nope", "prompt": "a"}, 404, "does not exist"),
        ("/v1/completions", {"prompt": "a"}, 400, "'model' is required"),
        (
            "/v1/completions",
            {"model": "lm", "prompt": "a", "max_tokens": "ten"},
            400,
            "'max_tokens' must be an integer",
        ),
        ("/v1/completions", {"model": "lm", "prompt": "a", "max_tokens": 0}, 400, "'max_tokens' must be >= 1"),
        ("/v1/completions", {"model": "lm", "prompt": "a", "temperature": 5}, 400, "'temperature' must be between"),
        ("/v1/completions", {"model": "lm", "prompt": 3}, 400, "'prompt' must be a string"),
        ("/v1/completions", {"model": "lm", "prompt": "a", "stop": [1]}, 400, "'stop' must be"),
        ("/v1/completions", {"model": "lm", "prompt": "the " * 60}, 400, "the model's context is 32"),
        ("/v1/completions", {"model": "mt", "prompt": "a"}, 400, "is a translation model"),
        ("/v1/chat/completions", {"model": "lm", "messages": []}, 400, "serves chat models"),
        ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            400,
            "must end with a user message",
        ),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "hi " * 300}]},
            400,
            "context",
        ),
        ("/v1/translations", {"model": "mt", "input": []}, 400, "'input' must be a string or a non-empty list"),
        ("/v1/answers", {"model": "qa", "questions": [{"question": "x"}]}, 400, "'question' and 'context'"),
        ("/v1/nothing", {}, 404, "no such endpoint"),
    ],
)
def test_bad_requests_get_their_status_and_an_openai_error(server, path, body, status, says):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(server.url + path, **kwargs)
    assert response.status_code == status
    assert says in error_of(response)["message"]
    assert httpx.get(server.url + "/health").status_code == 200  # still serving


def test_over_long_prompts_are_truncated_when_asked_and_the_openai_client_sees_the_error(server):
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).completions.create(model="lm", prompt="the " * 60, max_tokens=3)
    assert caught.value.code == "context_length_exceeded"
    answer = httpx.post(
        server.url + "/v1/completions",
        json={"model": "lm", "prompt": "the " * 60, "max_tokens": 3, "truncate": True, "temperature": 0},
    ).json()
    # The context (32) holds the prompt's last 31 tokens and one new token; then it slides, as `generate` does.
    assert answer["usage"]["prompt_tokens"] == 31 and answer["usage"]["completion_tokens"] == 3


def test_a_body_over_the_limit_is_413(cks):
    running = Running({"lm": cks["lm"]}, max_body_bytes=2000)
    try:
        response = httpx.post(running.url + "/v1/completions", json={"model": "lm", "prompt": "a" * 3000})
        assert response.status_code == 413 and "limit of 2000 bytes" in error_of(response)["message"]
        chunked = httpx.post(running.url + "/v1/completions", content=iter([b"x" * 1500, b"y" * 1500]))
        assert chunked.status_code == 413
        assert httpx.post(running.url + "/v1/completions", json={"model": "lm", "prompt": "a"}).status_code == 200
    finally:
        running.close()


def test_the_api_key_guards_every_endpoint_but_health(cks):
    running = Running({"lm": cks["lm"]}, api_key="sesame")
    try:
        assert httpx.get(running.url + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = httpx.get(running.url + "/v1/models", headers=headers)
            assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
        assert httpx.get(running.url + "/metrics").status_code == 401
        with pytest.raises(openai.AuthenticationError):
            client(running, api_key="wrong").models.list()
        answer = client(running, api_key="sesame").completions.create(model="lm", prompt="a", max_tokens=2)
        assert answer.choices[0].finish_reason in ("length", "stop")
    finally:
        running.close()


# --- load, limits and failure ------------------------------------------------------------------------------------


def test_a_full_queue_answers_503_with_retry_after_and_the_rest_are_served(cks):
    slow = dataclasses.replace(cks["lm"], model=Slow(cks["lm"].model, 0.02))
    running = Running({"lm": slow}, max_batch_size=1, max_queue=1)
    try:

        async def burst():
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as http:
                body = {"model": "lm", "prompt": "the", "max_tokens": 30, "ignore_eos": True}
                return await asyncio.gather(*(http.post("/v1/completions", json=body) for _ in range(5)))

        answers = asyncio.run(burst())
        statuses = [r.status_code for r in answers]
        refused = [r for r in answers if r.status_code == 503]
        assert statuses.count(200) >= 1 and statuses.count(200) + len(refused) == 5 and refused
        assert refused and refused[0].headers["Retry-After"] == "1" and error_of(refused[0])["type"] == "server_busy"
        assert httpx.post(running.url + "/v1/completions", json={"model": "lm", "prompt": "a"}).status_code == 200
    finally:
        running.close()


def test_a_client_that_disconnects_mid_stream_frees_its_row(cks):
    # 0.2 s per step: 100 tokens take about 20 s, so the row is still there when the client looks, even on a busy
    # machine (at 0.05 s, 1.5 s, a CI run once found it gone already).
    slow = dataclasses.replace(cks["lm"], model=Slow(cks["lm"].model, 0.2))
    running = Running({"lm": slow})
    try:
        body = {"model": "lm", "prompt": "the", "max_tokens": 100, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", running.url + "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert len(running.engine("lm").rows) == 1
        deadline = time.time() + 10
        while running.engine("lm").rows and time.time() < deadline:
            time.sleep(0.05)
        assert not running.engine("lm").rows  # cancelled long before its 29 tokens (6 s)
        # The same for a request that is not streamed: the client gives up, the row goes.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(running.url + "/v1/completions", json={**body, "stream": False}, timeout=0.5)
        deadline = time.time() + 10
        while running.engine("lm").rows and time.time() < deadline:
            time.sleep(0.05)
        assert not running.engine("lm").rows
        answer = httpx.post(running.url + "/v1/completions", json={"model": "lm", "prompt": "a", "max_tokens": 2})
        assert answer.status_code == 200
    finally:
        running.close()


def test_a_request_past_the_time_limit_is_504(cks):
    slow = dataclasses.replace(cks["lm"], model=Slow(cks["lm"].model, 0.05))
    running = Running({"lm": slow}, timeout=0.5)
    try:
        response = httpx.post(
            running.url + "/v1/completions",
            json={"model": "lm", "prompt": "the", "max_tokens": 100, "ignore_eos": True},
        )
        assert response.status_code == 504 and error_of(response)["type"] == "timeout"
    finally:
        running.close()


def test_64_concurrent_mixed_requests_are_all_answered_right(server, cks):
    """A bounded load test: greedy completions (streamed and not) and chat completions at once; every answer
    equals the Python API's, nothing is lost, and /metrics counts them and saw batches of several rows."""
    expected = {p: generate_text(cks["lm"], p, max_new_tokens=10, do_sample=False) for p in PROMPTS}
    messages = [{"role": "user", "content": "Hello there."}]
    chat_expected = chat_reply(cks["chat"], [Message("user", "Hello there.")], max_new_tokens=6)

    async def one(http, i):
        if i % 4 == 3:
            body = {"model": "chat", "messages": messages, "max_tokens": 6, "temperature": 0}
            answer = (await http.post("/v1/chat/completions", json=body)).json()
            return answer["choices"][0]["message"]["content"] == chat_expected
        prompt = PROMPTS[i % len(PROMPTS)]
        body = {"model": "lm", "prompt": prompt, "max_tokens": 10, "temperature": 0, "stream": i % 2 == 0}
        if not body["stream"]:
            return (await http.post("/v1/completions", json=body)).json()["choices"][0]["text"] == expected[prompt]
        text = ""
        async with http.stream("POST", "/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    text += json.loads(line[6:])["choices"][0]["text"]
        return text == expected[prompt]

    async def load():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            return await asyncio.gather(*(one(http, i) for i in range(64)))

    assert all(asyncio.run(load()))
    metrics = httpx.get(server.url + "/metrics").text
    assert 'tn_requests_total{endpoint="/v1/completions",status="200"}' in metrics
    assert 'tn_generated_tokens_total{model="lm"}' in metrics
    sizes = [line for line in metrics.splitlines() if line.startswith('tn_batch_size_bucket{model="lm",le="1"}')]
    total = [line for line in metrics.splitlines() if line.startswith('tn_batch_size_count{model="lm"}')]
    assert int(sizes[0].split()[-1]) < int(total[0].split()[-1])  # some steps decoded several rows
    assert 'tn_queue_depth{model="lm"} 0' in metrics


def test_the_serve_command_finishes_requests_in_flight_on_sigterm(runs):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "transformer_networks", "serve", f"tiny={runs['lm']}", "--port", str(port)]
    proc = subprocess.Popen([*argv, "--device", "cpu", "--quiet"], stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.ConnectError:
                time.sleep(0.1)
        body = {"model": "tiny", "prompt": "the", "max_tokens": 120, "stream": True, "ignore_eos": True}
        text = ""
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            first = next(lines)
            proc.send_signal(signal.SIGTERM)  # while the reply is being generated
            rest = [first, *lines]
        events = [line[6:] for line in rest if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["text"] for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length" and text
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn ends by raising the signal again, once done
        assert "Traceback" not in proc.stderr.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
