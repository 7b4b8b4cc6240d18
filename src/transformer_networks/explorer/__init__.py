"""The attention explorer: every layer's and head's attention for one input, in one self-contained HTML page
(page.html, page.css and page.js beside this file; it sits above `inference`, whose attention_maps it shows).

`explorer_data` runs the model once (`inference.attention_maps`) and gathers what the page shows: the weights of
each attention kind, per-query statistics of every head, and what the model outputs. `explorer_page` puts that data,
the script and the styles into one HTML file that needs no network; `serve_explorer` serves the page on loopback and
runs the model on text typed into it.

Weights travel as thousandths (what the page shows is within 5e-4 of the model's weight) and sparsely: a weight
under the threshold `min_weight` is left out and shown as 0, and the page says so. By default the threshold is the
smallest of THRESHOLDS that keeps the stored weights within `max_weights`, so that broad heads over 512 tokens do not
make a 100 MB file; with min_weight 0.001 every weight shown is within 1e-3 of the model's.
"""

from __future__ import annotations

import base64
import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoints import Checkpoint
from ..errors import UserError
from ..inference import _pieces, answer_questions, attention_maps

__all__ = [
    "SCALE",
    "THRESHOLDS",
    "explorer_data",
    "explorer_page",
    "head_statistics",
    "serve_explorer",
    "write_explorer",
]

SCALE = 1000  # weights are stored as integers in thousandths
THRESHOLDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # the thresholds `min_weight=None` picks from
MAX_BODY = 1 << 20  # the live mode's largest request body


def head_statistics(weights: Tensor, self_attention: bool) -> dict[str, Tensor]:
    """Per-query statistics of (L, H, Tq, Tk) attention weights, each (L, H, Tq): "entropy" of the query's weights
    (nats; low = a sharp head, log Tk = uniform) and, for self-attention, "distance" (the mean |query - key| in
    tokens, weighted by attention: large for broad heads) and "previous" (the weight on the token just before;
    query 0 has none and gets 0). The page averages them over the queries it shows."""
    w = weights.double()
    stats = {"entropy": -(w * torch.log(w.clamp_min(1e-30))).sum(-1)}
    if self_attention:
        n = w.shape[-1]
        pos = torch.arange(n, dtype=w.dtype)
        stats["distance"] = (w * (pos[:, None] - pos[None, :]).abs()[: w.shape[-2]]).sum(-1)
        stats["previous"] = torch.nn.functional.pad(w.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0))
    return {k: v.float() for k, v in stats.items()}


def _threshold(weights: list[Tensor], min_weight: float | None, max_weights: int) -> float:
    if min_weight is not None:
        return min_weight
    for t in THRESHOLDS:
        if sum(int((w >= t).sum()) for w in weights) <= max_weights:
            return t
    return THRESHOLDS[-1]


def _pack_layer(weights: Tensor, min_weight: float) -> str:
    """(H, Tq, Tk) weights -> base64 of little-endian uint16s: the number of weights kept in each row (H * Tq,
    row-major), then their key indices, then their values in thousandths, rows in order."""
    quantized = torch.round(weights * SCALE)
    keep = (weights >= min_weight) & (quantized > 0)
    counts = keep.sum(-1).flatten()
    where = keep.nonzero()  # (N, 3) head, query, key: row-major, so each row's keys come together and in order
    values = quantized[keep]
    parts = [counts.numpy(), where[:, 2].numpy(), values.numpy()]
    data = np.concatenate([p.astype("<u2") for p in parts])
    return base64.b64encode(data.tobytes()).decode("ascii")


def _rounded(t: Tensor, digits: int = 3) -> list[Any]:
    return np.round(t.numpy().astype(np.float64), digits).tolist()


def _top_tokens(ck: Checkpoint, logits: Tensor, k: int) -> list[list[list[Any]]]:
    """For each position, the k likeliest next tokens as [token text, probability]."""
    probs, ids = logits.float().softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
    return [
        [[name, round(p, 4)] for name, p in zip(_pieces(ck.tokenizer, row_ids), row_p, strict=True)]
        for row_ids, row_p in zip(ids.tolist(), probs.tolist(), strict=True)
    ]


def explorer_data(
    ck: Checkpoint,
    text: str,
    *,
    target: str | None = None,
    context: str | None = None,
    truncate: bool = False,
    continuation: int = 16,
    top_k: int = 5,
    min_weight: float | None = None,
    max_weights: int = 2_000_000,
) -> dict[str, Any]:
    """What the explorer page shows for one input, as JSON-ready data: the model, each attention kind's tokens,
    packed weights and head statistics, and the model's outputs (an LM's next tokens at each position over `text`
    and its greedy continuation of `continuation` tokens, a translation, class probabilities, a QA span)."""
    family = ck.model.family
    if target is not None and family != "seq2seq":
        raise UserError(f"--target is for translation checkpoints; {ck.path} is a {ck.task} checkpoint")
    if context is not None and family != "qa":
        raise UserError(f"--context is for question-answering checkpoints; {ck.path} is a {ck.task} checkpoint")
    if continuation < 0:
        raise UserError(f"--continuation {continuation}: give a number of tokens, 0 or more")
    if min_weight is not None and not 0 < min_weight < 1:
        raise UserError(f"--min-weight {min_weight}: give a weight between 0 and 1")
    maps = attention_maps(
        ck, text, target, truncate=truncate, context=context, continuation=continuation if family == "lm" else 0
    )
    threshold = _threshold(list(maps.weights.values()), min_weight, max_weights)
    kinds = {}
    for kind, weights in maps.weights.items():
        if weights.shape[-1] >= 1 << 16:
            raise UserError(f"{weights.shape[-1]} tokens: the explorer shows at most 65535")
        stats = head_statistics(weights, self_attention=kind != "cross")
        kinds[kind] = {
            "queries": maps.queries[kind],
            "keys": maps.keys[kind],
            "causal": kind == "decoder",
            "layers": [_pack_layer(w, threshold) for w in weights],
            "stats": {name: _rounded(s) for name, s in stats.items()},
        }
    n_layers, n_heads = next(iter(maps.weights.values())).shape[:2]
    outputs: dict[str, Any] = {}
    if family in ("lm", "seq2seq"):
        assert maps.logits is not None  # attention_maps gives an LM's and a translator's logits
        outputs["next"] = _top_tokens(ck, maps.logits, top_k)
    if family == "lm":
        outputs["prompt_tokens"] = maps.prompt_tokens
    elif family == "seq2seq":
        assert maps.decoder_ids is not None  # <bos> then the translation
        outputs["translation"] = ck.tokenizer.decode(maps.decoder_ids[1:])
        outputs["forced"] = target is not None
    elif family == "qa":
        assert context is not None  # attention_maps asked for it
        [[answer]] = answer_questions(ck, [(text, context)])
        outputs["answer"] = {"text": answer.text, "start": answer.start, "end": answer.end, "score": answer.score}
        outputs["context"] = context
    else:
        assert maps.logits is not None
        probs = maps.logits.float().softmax(-1).tolist()
        outputs["classes"] = [[label, round(p, 4)] for label, p in zip(ck.labels, probs, strict=True)]
    cfg = ck.config
    return {
        "format": 1,
        "model": {
            "path": str(ck.path),
            "task": ck.task,
            "family": family,
            "layers": int(n_layers),
            "heads": int(n_heads),
            "d_model": cfg.d_model,
            "params": sum(p.numel() for p in ck.model.parameters()),
        },
        "input": {"text": text, "target": target, "context": context},
        "scale": SCALE,
        "min_weight": threshold,
        "kinds": kinds,
        "outputs": outputs,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def explorer_page(data: dict[str, Any] | None, *, live: dict[str, Any] | None = None) -> str:
    """The explorer as one HTML document: styles, script and `data` inline (no network). `live` ({"family": the
    model's family}) adds the form that asks the server that sent the page to run the model on new text."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    title = "Attention explorer" + (f": {html.escape(Path(data['model']['path']).name)}" if data else "")
    page = _asset("page.html")
    for key, value in (
        ("/*STYLE*/", _asset("page.css")),
        ("/*SCRIPT*/", _asset("page.js")),
        ("/*DATA*/", payload),
        ("/*LIVE*/", json.dumps(live)),
        ("{{TITLE}}", title),
    ):
        page = page.replace(key, value)
    return page


def write_explorer(ck: Checkpoint, text: str, out: str | Path, *, overwrite: bool = False, **options: Any) -> Path:
    """Write the explorer page for `text` (options: those of `explorer_data`) to `out`; returns its path. An
    existing file is kept unless `overwrite`."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    page = explorer_page(explorer_data(ck, text, **options))
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"--out {out}: cannot write: {e.strerror or e}") from None
    return out


def serve_explorer(
    ck: Checkpoint, host: str = "127.0.0.1", port: int = 8765, *, text: str | None = None, **options: Any
) -> ThreadingHTTPServer:
    """A server (not yet started: call its serve_forever) for the live explorer: GET / is the page (showing `text`
    when given), POST /api/explore with {"text", "target"?, "context"?} runs the model and answers the page's data,
    or 400 {"error": message} for input the model cannot take. Options: those of `explorer_data`."""
    lock = threading.Lock()  # one model, one request at a time

    def run(body: dict[str, Any]) -> dict[str, Any]:
        with lock:
            return explorer_data(
                ck, body.get("text") or "", target=body.get("target"), context=body.get("context"), **options
            )

    first = run({"text": text}) if text else None

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] != "/":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}; the explorer is at /"})
            page = explorer_page(first, live={"family": ck.model.family})
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/api/explore":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"})
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY:
                return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"the body is over {MAX_BODY} bytes"})
            try:
                body = json.loads(self.rfile.read(size) or b"null")
                if not isinstance(body, dict) or not all(
                    isinstance(body.get(k), str | None) for k in ("text", "target", "context")
                ):
                    raise UserError('send a JSON object {"text": ..., "target": ..., "context": ...} of strings')
                self._json(HTTPStatus.OK, run(body))
            except json.JSONDecodeError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"the body is not JSON: {e}"})
            except UserError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass  # quiet: the command prints the address once

    return ThreadingHTTPServer((host, port), Handler)
