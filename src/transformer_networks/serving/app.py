"""An OpenAI-compatible HTTP API over trained checkpoints: what `transformer-networks serve` runs.

    app = create_app({"gpt": load_checkpoint("runs/lm"), "mt": load_checkpoint("runs/mt")}, ServerSettings())
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (bodies and answers as OpenAI's API where it has one; the README documents ours):
    GET  /health                 {"status": "ok"}; never needs the API key
    GET  /v1/models              every model served, with its task and context length
    POST /v1/completions         language models (and chat models, on raw text): `prompt`, `max_tokens`, ...
    POST /v1/chat/completions    chat models: `messages`
    POST /v1/translations        translation models: `input` (a string or a list), `num_beams`, `n_best`, ...
    POST /v1/classifications     classifiers: `input`; each input's label and class probabilities
    POST /v1/answers             question answering: `questions` [{question, context}], `n_best`
    GET  /metrics                Prometheus text: requests, latency, generated tokens, queue depth, batch sizes

Generation requests go to their model's `Engine` (continuous batching); `stream: true` answers with server-sent
events (`data: {chunk}` per piece of text, then `data: [DONE]`). The other tasks run their batch in a worker
thread, one request at a time per model. Every error is `{"error": {"message", "type", "code", "param"}}` with
its HTTP status, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..checkpoints import Checkpoint
from ..data.chat_template import ChatTemplate
from ..data.dialogue import Message as ChatMessage
from ..data.dialogue import conversation_from_record
from ..errors import UserError
from ..generation.steps import DecodingLM
from ..generation.streaming import TextStreamer
from ..inference import answer_questions, classify_lines, translate_lines
from .engine import Engine, QueueFull, Request
from .metrics import Metrics

GENERATING = ("lm", "chat")  # the tasks whose models decode through an Engine


@dataclass
class ServerSettings:
    api_key: str | None = None  # every endpoint but /health needs `Authorization: Bearer KEY`
    max_body_bytes: int = 1 << 20  # a larger request body is a 413
    max_batch_size: int = 16  # rows a model decodes together
    max_queue: int = 64  # generation requests waiting for a row before the server answers 503
    timeout: float = 300.0  # seconds a request may run before it is stopped (504)
    max_n: int = 16  # choices one request may ask for (`n`, times the prompts of a completion)
    max_inputs: int = 256  # inputs in one translation, classification or answers request


class APIError(Exception):
    """An error answered as OpenAI's API does: `{"error": {...}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class ServedModel:
    name: str
    ck: Checkpoint
    engine: Engine | None = None  # language and chat models
    lock: threading.Lock = field(default_factory=threading.Lock)  # the other tasks: one request at a time
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context(self) -> int:
        return self.ck.config.max_seq_len


# --- reading request bodies ---------------------------------------------------------------------------------------

_KINDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
    """body[name] checked to be of `kind` (a float field takes integers too); `default` when absent or null."""
    value = body.get(name)
    if value is None:
        if required:
            raise APIError(400, f"'{name}' is required", param=name)
        return default
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise APIError(400, f"'{name}' must be {_KINDS[kind]}, got {json.dumps(value)[:60]}", param=name)
    return value


def _bounded(body: dict[str, Any], name: str, kind: type, default: Any, low: float, high: float | None = None) -> Any:
    value = _field(body, name, kind, default)
    if value is not None and (value < low or (high is not None and value > high)):
        bound = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
        raise APIError(400, f"'{name}' must be {bound}, got {value}", param=name)
    return value


async def _body(request: HTTPRequest) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _texts(body: dict[str, Any], name: str, limit: int) -> list[str]:
    """A field that holds one string or a list of strings."""
    value = _field(body, name, object, required=True)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(t, str) for t in items):
        raise APIError(400, f"'{name}' must be a string or a non-empty list of strings", param=name)
    if len(items) > limit:
        raise APIError(400, f"'{name}' holds {len(items)} items; at most {limit} per request", param=name)
    return items


# --- generation -------------------------------------------------------------------------------------------------


@dataclass
class Sampling:
    max_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int | None
    stop: list[str]
    n: int
    ignore_eos: bool = False  # vLLM's extension: run to max_tokens (benchmarks)


def _sampling(body: dict[str, Any], default_max_tokens: int, max_n: int) -> Sampling:
    temperature = _bounded(body, "temperature", float, 1.0, 0.0, 2.0)
    top_p = _bounded(body, "top_p", float, 1.0, 0.0, 1.0)
    if top_p == 0:
        raise APIError(400, "'top_p' must be > 0", param="top_p")
    top_k = _field(body, "top_k", int)
    if top_k is not None and top_k <= 0:  # vLLM's convention: -1 (or 0) means no top-k
        top_k = None
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
        raise APIError(400, "'stop' must be a string or a list of at most 4 strings", param="stop")
    max_tokens = _bounded(body, "max_completion_tokens", int, None, 1)
    max_tokens = _bounded(body, "max_tokens", int, max_tokens, 1)
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else 1.0,
        top_k=top_k,
        top_p=top_p if top_p < 1 else None,
        seed=_field(body, "seed", int),
        stop=[s for s in stops if s],
        n=_bounded(body, "n", int, 1, 1, max_n),
        ignore_eos=bool(_field(body, "ignore_eos", bool, False)),
    )


@dataclass
class Piece:
    index: int  # which choice
    text: str = ""
    finish_reason: str | None = None  # set on a choice's last piece
    tokens: int = 0  # tokens generated for this piece


class Server:
    def __init__(self, models: dict[str, Checkpoint], settings: ServerSettings) -> None:
        if not models:
            raise UserError("no model to serve")
        self.settings = settings
        self.metrics = Metrics()
        self.models: dict[str, ServedModel] = {}
        for name, ck in models.items():
            served = ServedModel(name, ck)
            if ck.task in GENERATING:
                served.engine = Engine(
                    cast(DecodingLM, ck.model),
                    max_batch_size=settings.max_batch_size,
                    max_queue=settings.max_queue,
                    on_step=functools.partial(self.metrics.batch, name),
                )
            self.models[name] = served

    def close(self) -> None:
        for served in self.models.values():
            if served.engine is not None:
                served.engine.close()

    def model(self, body: dict[str, Any], tasks: tuple[str, ...], endpoint: str) -> ServedModel:
        name = _field(body, "model", str, required=True)
        if name not in self.models:
            raise APIError(
                404,
                f"the model '{name}' does not exist; served: {', '.join(self.models)}",
                code="model_not_found",
                param="model",
            )
        served = self.models[name]
        if served.ck.task not in tasks:
            raise APIError(
                400,
                f"the model '{name}' is a {served.ck.task} model; {endpoint} serves {' or '.join(tasks)} models",
                code="wrong_model_task",
                param="model",
            )
        return served

    async def generate(
        self, served: ServedModel, index: int, prompt_ids: list[int], s: Sampling, seed: int | None, chat: bool
    ) -> AsyncIterator[Piece]:
        """One choice, streamed as pieces of text; its last piece has the finish reason."""
        assert served.engine is not None  # a generating model
        tok = served.ck.tokenizer
        if chat:
            end = ChatTemplate.of(tok).end_id
            stop_ids, streamer = {end, tok.eos_id}, TextStreamer(tok, stop=s.stop)
        else:
            stop_ids, streamer = {tok.eos_id}, TextStreamer(tok, stop=s.stop, context=prompt_ids)
        if s.ignore_eos:
            stop_ids = set()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

        def emit(token: int | None, reason: str | None) -> None:  # called by the decoding thread
            loop.call_soon_threadsafe(events.put_nowait, (token, reason))

        request = Request(
            prompt_ids,
            # A completion goes on past the context as `generate` does; a chat reply must fit beside its
            # conversation, as in the chat command.
            max_new_tokens=min(s.max_tokens, served.context - len(prompt_ids)) if chat else s.max_tokens,
            slide=not chat,
            emit=emit,
            stop_ids=stop_ids,
            do_sample=s.do_sample,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            seed=seed,
        )
        try:
            served.engine.submit(request)
        except QueueFull as e:
            raise APIError(503, f"the server is busy: {e}", "server_busy", headers={"Retry-After": "1"}) from None
        deadline = loop.time() + self.settings.timeout
        finished = False
        try:
            while True:
                try:
                    token, reason = await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise APIError(
                        504, f"the request ran past the server's limit of {self.settings.timeout:g} s", "timeout"
                    ) from None
                if token is not None:
                    self.metrics.tokens(served.name, 1)
                    text = streamer.put(token)
                    if streamer.stopped:  # a stop string: the text before it, and this choice is done
                        request.cancel()
                        finished = True
                        yield Piece(index, text + streamer.finish(), "stop", 1)
                        return
                    if text:
                        yield Piece(index, text, None, 1)
                    else:
                        yield Piece(index, "", None, 1)
                    continue
                finished = True
                if reason is not None and reason.startswith("error: "):
                    raise APIError(500, f"generation failed: {reason[7:]}", "server_error")
                yield Piece(index, streamer.finish(), "length" if reason == "length" else "stop")
                return
        finally:
            if not finished:  # the client left or the request timed out: free its row
                request.cancel()

    async def choices(
        self, served: ServedModel, prompts: list[list[int]], s: Sampling, chat: bool
    ) -> AsyncIterator[Piece]:
        """Every choice of every prompt (n per prompt, index = prompt * n + j), their pieces interleaved."""
        streams = []
        for p, ids in enumerate(prompts):
            for j in range(s.n):
                seed = None if s.seed is None else s.seed + j
                streams.append(self.generate(served, p * s.n + j, ids, s, seed, chat))
        if len(streams) == 1:
            async for piece in streams[0]:
                yield piece
            return
        merged: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()

        async def pump(stream: AsyncIterator[Piece]) -> None:
            try:
                async for piece in stream:
                    await merged.put(piece)
                await merged.put(None)
            except BaseException as e:  # handed to the consumer, which raises it
                await merged.put(e)

        tasks = [asyncio.create_task(pump(stream)) for stream in streams]
        try:
            running = len(tasks)
            while running:
                item = await merged.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# --- the endpoints ------------------------------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _prompt_ids(served: ServedModel, prompt: str, truncate: bool) -> list[int]:
    ids = served.ck.tokenizer.encode(prompt)
    if not ids:
        raise APIError(400, "the prompt is empty (or has no token the model knows)", param="prompt")
    if len(ids) >= served.context:
        if not truncate:
            raise APIError(
                400,
                f"the prompt has {len(ids)} tokens; the model's context is {served.context}, which must also hold "
                'at least one new token (send "truncate": true to keep the prompt\'s end)',
                code="context_length_exceeded",
                param="prompt",
            )
        ids = ids[-(served.context - 1) :]
    return ids


def _chat_messages(body: dict[str, Any]) -> list[ChatMessage]:
    raw = _field(body, "messages", list, required=True)
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise APIError(400, f"messages[{i}] must be an object with 'role' and 'content'", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI's content parts: the text ones, joined
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise APIError(400, f"messages[{i}]: only text content parts are supported", param="messages")
            content = "".join(str(p.get("text", "")) for p in content)
        role = "system" if m.get("role") == "developer" else m.get("role")  # OpenAI's newer name for system
        messages.append({"role": role, "content": content})
    try:
        conversation = list(conversation_from_record({"messages": messages}))
    except ValueError as e:
        raise APIError(400, f"messages: {e}", param="messages") from None
    if not conversation or conversation[-1].role != "user":
        raise APIError(400, "messages must end with a user message (the one to reply to)", param="messages")
    return conversation


async def _until_disconnected(request: HTTPRequest, work: Awaitable[Response]) -> Response:
    """Run `work`; if the client goes away first, cancel it (freeing its rows) and answer nothing useful."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return Response(status_code=499)
    finally:
        if not task.done():
            task.cancel()


def _sse(pieces: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in pieces:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except APIError as e:  # the status is sent already: the error is the stream's last event
            error = {"message": e.message, "type": e.type, "code": e.code, "param": e.param}
            yield f"data: {json.dumps({'error': error})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def build_routes(server: Server) -> list[Route]:
    settings = server.settings

    async def health(request: HTTPRequest) -> Response:
        return JSONResponse({"status": "ok", "models": list(server.models)})

    async def models(request: HTTPRequest) -> Response:
        data = [
            {
                "id": m.name,
                "object": "model",
                "created": m.created,
                "owned_by": "transformer-networks",
                "task": m.ck.task,
                "max_model_len": m.context,
            }
            for m in server.models.values()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(request: HTTPRequest) -> Response:
        depths = {m.name: m.engine.queue_depth for m in server.models.values() if m.engine is not None}
        return PlainTextResponse(server.metrics.render(depths), media_type="text/plain; version=0.0.4")

    async def completions(request: HTTPRequest) -> Response:
        body = await _body(request)
        served = server.model(body, GENERATING, "/v1/completions")
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)):
            raise APIError(400, "'prompt' must be a string or a list of strings", param="prompt")
        texts = _texts(body, "prompt", settings.max_n)
        s = _sampling(body, 16, settings.max_n)
        if len(texts) * s.n > settings.max_n:
            raise APIError(400, f"{len(texts)} prompts x n={s.n} choices exceed {settings.max_n}", param="n")
        truncate = bool(_field(body, "truncate", bool, False))
        prompts = [_prompt_ids(served, t, truncate) for t in texts]
        rid, created = _id("cmpl"), int(time.time())

        def chunk(piece: Piece) -> dict[str, Any]:
            choice = {"index": piece.index, "text": piece.text, "logprobs": None, "finish_reason": piece.finish_reason}
            return {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": served.name,
                "choices": [choice],
            }

        usage = {"prompt_tokens": sum(len(p) for p in prompts) * s.n, "completion_tokens": 0}
        if _field(body, "stream", bool, False):
            include_usage = bool((_field(body, "stream_options", dict, {}) or {}).get("include_usage"))

            async def stream() -> AsyncIterator[dict[str, Any]]:
                async for piece in server.choices(served, prompts, s, chat=False):
                    usage["completion_tokens"] += piece.tokens
                    if piece.text or piece.finish_reason:
                        yield chunk(piece)
                if include_usage:
                    yield {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": served.name,
                        "choices": [],
                        "usage": _usage(usage),
                    }

            return _sse(stream())

        async def answer() -> Response:
            texts_out = [""] * (len(prompts) * s.n)
            finish: list[str | None] = [None] * len(texts_out)
            async for piece in server.choices(served, prompts, s, chat=False):
                texts_out[piece.index] += piece.text
                finish[piece.index] = piece.finish_reason or finish[piece.index]
                usage["completion_tokens"] += piece.tokens
            choices = [
                {"index": i, "text": t, "logprobs": None, "finish_reason": f}
                for i, (t, f) in enumerate(zip(texts_out, finish, strict=True))
            ]
            return JSONResponse(
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": served.name,
                    "choices": choices,
                    "usage": _usage(usage),
                }
            )

        return await _until_disconnected(request, answer())

    async def chat_completions(request: HTTPRequest) -> Response:
        body = await _body(request)
        served = server.model(body, ("chat",), "/v1/chat/completions")
        messages = _chat_messages(body)
        s = _sampling(body, served.context, settings.max_n)
        ids = ChatTemplate.of(served.ck.tokenizer).encode(messages, add_generation_prompt=True)[0]
        if len(ids) >= served.context:
            raise APIError(
                400,
                f"the conversation has {len(ids)} tokens; the model's context is {served.context}, which must also "
                "hold the reply: send fewer or shorter messages",
                code="context_length_exceeded",
                param="messages",
            )
        rid, created = _id("chatcmpl"), int(time.time())
        usage = {"prompt_tokens": len(ids) * s.n, "completion_tokens": 0}

        def chunk(index: int, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": served.name,
                "choices": [choice],
            }

        if _field(body, "stream", bool, False):
            include_usage = bool((_field(body, "stream_options", dict, {}) or {}).get("include_usage"))

            async def stream() -> AsyncIterator[dict[str, Any]]:
                for j in range(s.n):  # the first chunk of each choice says who speaks
                    yield chunk(j, {"role": "assistant", "content": ""}, None)
                async for piece in server.choices(served, [ids], s, chat=True):
                    usage["completion_tokens"] += piece.tokens
                    if piece.text:
                        yield chunk(piece.index, {"content": piece.text}, None)
                    if piece.finish_reason:
                        yield chunk(piece.index, {}, piece.finish_reason)
                if include_usage:
                    yield {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": served.name,
                        "choices": [],
                        "usage": _usage(usage),
                    }

            return _sse(stream())

        async def answer() -> Response:
            texts = [""] * s.n
            finish: list[str | None] = [None] * s.n
            async for piece in server.choices(served, [ids], s, chat=True):
                texts[piece.index] += piece.text
                finish[piece.index] = piece.finish_reason or finish[piece.index]
                usage["completion_tokens"] += piece.tokens
            choices = [
                {"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None, "finish_reason": f}
                for i, (t, f) in enumerate(zip(texts, finish, strict=True))
            ]
            return JSONResponse(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": served.name,
                    "choices": choices,
                    "usage": _usage(usage),
                }
            )

        return await _until_disconnected(request, answer())

    async def in_worker(served: ServedModel, work: Callable[[], Any]) -> Any:
        """Run a model's batch in a worker thread, one request at a time per model, within the time limit."""

        def locked() -> Any:
            with served.lock:
                return work()

        try:
            return await asyncio.wait_for(run_in_threadpool(locked), settings.timeout)
        except TimeoutError:
            raise APIError(
                504, f"the request ran past the server's limit of {settings.timeout:g} s", "timeout"
            ) from None
        except UserError as e:
            raise APIError(400, str(e)) from None

    async def translations(request: HTTPRequest) -> Response:
        body = await _body(request)
        served = server.model(body, ("translation",), "/v1/translations")
        lines = _texts(body, "input", settings.max_inputs)
        num_beams = _bounded(body, "num_beams", int, 4, 1, 64)
        n_best = _bounded(body, "n_best", int, 1, 1, num_beams)
        length_penalty = _bounded(body, "length_penalty", float, 0.6, 0.0)
        truncate = bool(_field(body, "truncate", bool, False))
        found = await in_worker(
            served,
            lambda: translate_lines(
                served.ck, lines, num_beams=num_beams, n_best=n_best, length_penalty=length_penalty, truncate=truncate
            ),
        )
        data = [
            {"index": i, "translations": [{"text": t.text, "score": round(t.score, 6)} for t in hyps]}
            for i, hyps in enumerate(found)
        ]
        return JSONResponse({"object": "list", "model": served.name, "data": data})

    async def classifications(request: HTTPRequest) -> Response:
        body = await _body(request)
        served = server.model(body, ("classification",), "/v1/classifications")
        lines = _texts(body, "input", settings.max_inputs)
        if not all(line.strip() for line in lines):
            raise APIError(400, "an input is empty", param="input")
        truncate = bool(_field(body, "truncate", bool, False))
        probs = await in_worker(served, lambda: classify_lines(served.ck, lines, truncate=truncate))
        data = []
        for i, p in enumerate(probs):
            label = max(p, key=p.get)
            data.append({"index": i, "label": label, "probabilities": {k: round(v, 6) for k, v in p.items()}})
        return JSONResponse({"object": "list", "model": served.name, "data": data})

    async def answers(request: HTTPRequest) -> Response:
        body = await _body(request)
        served = server.model(body, ("qa",), "/v1/answers")
        questions = _field(body, "questions", list, required=True)
        if not questions or len(questions) > settings.max_inputs:
            raise APIError(400, f"'questions' must hold 1 to {settings.max_inputs} items", param="questions")
        pairs = []
        for i, q in enumerate(questions):
            if not (isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("context"), str)):
                raise APIError(
                    400, f"questions[{i}] must be an object with string 'question' and 'context'", param="questions"
                )
            pairs.append((q["question"], q["context"]))
        n_best = _bounded(body, "n_best", int, 1, 1, 20)
        found = await in_worker(served, lambda: answer_questions(served.ck, pairs, n_best=n_best))
        data = [
            {
                "index": i,
                "answers": [{"text": a.text, "start": a.start, "end": a.end, "score": round(a.score, 4)} for a in best],
            }
            for i, best in enumerate(found)
        ]
        return JSONResponse({"object": "list", "model": served.name, "data": data})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/translations", translations, methods=["POST"]),
        Route("/v1/classifications", classifications, methods=["POST"]),
        Route("/v1/answers", answers, methods=["POST"]),
    ]


def _usage(counts: dict[str, int]) -> dict[str, int]:
    return {**counts, "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"]}


# --- what wraps every request: the key, the body's size, errors, metrics -----------------------------------------


class Gate:
    """ASGI middleware: checks the API key and the body size, turns every error into OpenAI-style JSON (never a
    traceback), and counts each request's status and time (to its last byte, so a stream counts whole)."""

    def __init__(self, app: ASGIApp, server: Server, paths: set[str]) -> None:
        self.app, self.server, self.paths = app, server, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        endpoint = scope["path"] if scope["path"] in self.paths else "other"
        status = 500
        started = False

        async def counted_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            receive = await self._check(scope, receive)
            await self.app(scope, receive, counted_send)
        except APIError as e:
            if not started:
                await e.response()(scope, receive, counted_send)
        except Exception as e:  # a bug: the client gets its one line, the server's log the traceback
            import traceback

            traceback.print_exc()
            if not started:
                await APIError(500, f"internal error: {type(e).__name__}: {e}", "server_error").response()(
                    scope, receive, counted_send
                )
        finally:
            self.server.metrics.request(endpoint, status, time.perf_counter() - start)

    async def _check(self, scope: Scope, receive: Receive) -> Receive:
        """Refuse a missing or wrong key (401) and a body over the limit (413); return the body to replay."""
        settings = self.server.settings
        if settings.api_key is not None and scope["path"] != "/health":
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {settings.api_key}":
                raise APIError(
                    401, "a missing or wrong API key: send 'Authorization: Bearer KEY'", code="invalid_api_key"
                )
        if scope["method"] != "POST":
            return receive
        limit = settings.max_body_bytes
        too_big = APIError(413, f"the request body is over the server's limit of {limit} bytes", code="body_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise too_big
        chunks, size = [], 0
        while True:  # read the whole body (bounded), then hand it to the app
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise too_big
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return replay


def create_app(models: dict[str, Checkpoint], settings: ServerSettings | None = None) -> ASGIApp:
    """The ASGI application serving `models` (name -> loaded checkpoint)."""
    server = Server(models, settings or ServerSettings())
    routes = build_routes(server)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.close()  # after uvicorn has finished the requests in flight (SIGTERM)

    async def not_found(request: HTTPRequest, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        what, code = (
            ("no such endpoint", "not_found") if status == 404 else ("method not allowed", "method_not_allowed")
        )
        return APIError(status, f"{request.method} {request.url.path}: {what}", code=code).response()

    async def api_error(request: HTTPRequest, exc: Exception) -> Response:
        return cast(APIError, exc).response()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found, APIError: api_error},
    )
    app.state.server = server
    return Gate(app, server, {cast(Route, r).path for r in routes})
