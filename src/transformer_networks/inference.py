"""Using a trained checkpoint on text: translate, generate, classify, answer questions, and look at attention.

Each function takes a loaded `Checkpoint` (see `load_for`) and plain strings, and does the batching, the
tokenization and the length checks. `translate_stream` and `classify_stream` run them over a stream of lines (the
`translate` and `classify` commands: stdin to stdout), `answer_stream` answers JSONL questions (the `answer`
command), `draw_attention` draws `attention_maps` (the `attention` command).

    ck = load_for("translation", "runs/multi30k")
    translate_lines(ck, ["ein Hund läuft .", ""], num_beams=4)     # [[Translation(text, score)], [...]]
    answer_questions("runs/squad", [("Who won?", "The Broncos won.")])  # [[Answer("The Broncos", 0, 11, 9.2)]]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import torch
from torch import Tensor

from .backends.onednn import use_onednn
from .checkpoints import Checkpoint, load_checkpoint
from .data import dialogue
from .data.batching import pad_batch
from .data.chat_template import ChatTemplate
from .data.dialogue import Message
from .data.qa import QAExample
from .errors import UserError
from .generation import generate, generate_in_batches
from .generation.incremental import next_tokens
from .generation.steps import DecodingLM, DecodingModel
from .generation.streaming import TextStreamer
from .tasks.qa import Answer, QuestionAnsweringTask
from .viz.attention import plot_attention

__all__ = [
    "AttentionMaps",
    "ChatSession",
    "Translation",
    "answer_questions",
    "answer_stream",
    "attention_maps",
    "chat_reply",
    "chat_stream",
    "classify_lines",
    "classify_stream",
    "draw_attention",
    "generate_stream",
    "generate_text",
    "load_for",
    "parse_chat_line",
    "read_lines",
    "translate_lines",
    "translate_stream",
]


WHAT = {
    "translation": "translation",
    "lm": "language-model",
    "classification": "classification",
    "qa": "question-answering",
    "chat": "chat",
}


def load_for(task: str, checkpoint: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (or a run directory's best) and check that it was trained for `task`. On a CPU the model
    runs its products on the faster library where that pays (`backends.onednn.use_onednn`)."""
    ck = load_checkpoint(checkpoint, device)
    if ck.task != task:
        what = WHAT.get(ck.task, ck.task)
        raise UserError(f"{ck.path} is a {what} checkpoint; this needs a {WHAT.get(task, task)} checkpoint")
    if torch.device(device).type == "cpu":
        use_onednn(ck.model)
    return ck


def _fit(ids: list[int], limit: int, truncate: bool, where: str, keep_end: bool = False, room: int = 0) -> list[int]:
    """ids if they fit in `limit` tokens less `room` (kept free for new tokens); cut to fit with `truncate`
    (keeping the end with keep_end); else a clear error naming `where`."""
    if len(ids) <= limit - room:
        return ids
    if not truncate:
        needs = ", with room for a new token" if room else ""
        raise UserError(
            f"{where}: {len(ids)} tokens do not fit the model's context of {limit} tokens{needs} "
            f"(--truncate cuts the input to fit)"
        )
    return ids[len(ids) - (limit - room) :] if keep_end else ids[: limit - room]


def _by_length(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar lengths (less padding); callers put results back in input order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# --- translation ------------------------------------------------------------------------------------------------


@dataclass
class Translation:
    text: str
    score: float  # beam search: log p / length penalty; greedy: log p


@torch.no_grad()
def translate_lines(
    ck: Checkpoint,
    lines: list[str],
    *,
    num_beams: int = 4,
    length_penalty: float = 0.6,
    n_best: int = 1,
    batch_size: int = 64,
    truncate: bool = False,
    first_line: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[Translation]]:
    """The n best translations of each line, in order. An empty line gives one empty translation.
    `first_line` numbers the lines in error messages (for input read in chunks)."""
    eos = ck.tokenizer.eos_id
    limit = ck.config.max_seq_len
    sources = [
        _fit(ck.source_tokenizer.encode(line) + [eos], limit, truncate, f"line {first_line + i}")
        if line.strip()
        else []
        for i, line in enumerate(lines)
    ]
    out: list[list[Translation]] = [[Translation("", 0.0)] for _ in lines]
    todo = [i for i, s in enumerate(sources) if s]
    model = cast(DecodingModel, ck.model)  # a translation checkpoint's: a Seq2SeqTransformer
    found = generate_in_batches(
        model,
        [sources[i] for i in todo],
        pad_id=ck.tokenizer.pad_id,
        batch_size=batch_size,
        on_batch=on_batch,
        num_beams=num_beams,
        length_penalty=length_penalty,
        num_return_sequences=n_best,
        bos_id=ck.tokenizer.bos_id,
        eos_id=eos,
    )
    for i, hyps in zip(todo, found, strict=True):
        out[i] = [Translation(ck.tokenizer.decode(h.tokens), h.score) for h in hyps]
    return out


# --- language models --------------------------------------------------------------------------------------------


@torch.no_grad()
def _prompt_ids(ck: Checkpoint, prompt: str, truncate: bool) -> list[int]:
    """A language model's prompt as ids, checked: not empty, and leaving room for a new token (or cut to)."""
    ids = ck.tokenizer.encode(prompt)
    if not ids:
        raise UserError("the prompt is empty (or has no token the model knows): give some text to continue")
    return _fit(ids, ck.config.max_seq_len, truncate, "the prompt", keep_end=True, room=1)


def generate_text(
    ck: Checkpoint,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Iterable[str] = (),
    truncate: bool = False,
    num_beams: int = 1,
) -> str:
    """The continuation of `prompt` (without the prompt), cut before the first stop string."""
    ids = _prompt_ids(ck, prompt, truncate)
    device = next(ck.model.parameters()).device
    model = cast(DecodingModel, ck.model)  # a language model's checkpoint: a TransformerLM
    out = generate(
        model,
        torch.tensor([ids], device=device),
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        num_beams=num_beams,
        eos_id=ck.tokenizer.eos_id,
        pad_id=ck.tokenizer.pad_id,
    )
    assert isinstance(out, Tensor)  # the sequences: no return_dict_in_generate
    # Decode prompt and continuation together, so that a word-level tokenizer puts the space between them.
    head, full = ck.tokenizer.decode(ids), ck.tokenizer.decode(out[0].tolist())
    text = full[len(head) :] if full.startswith(head) else ck.tokenizer.decode(out[0, len(ids) :].tolist())
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def generate_stream(
    ck: Checkpoint,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Iterable[str] = (),
    truncate: bool = False,
) -> Iterator[str]:
    """`generate_text`, streamed: pieces of the continuation as the tokens are produced (never half a character,
    never part of a stop string); together they are exactly the text `generate_text` returns."""
    ids = _prompt_ids(ck, prompt, truncate)
    model = cast(DecodingLM, ck.model)
    device = next(ck.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    streamer = TextStreamer(ck.tokenizer, stop=[s for s in stop if s], context=ids)
    eos = ck.tokenizer.eos_id
    for token in next_tokens(
        model,
        model.init_cache(1),
        ids,
        max_new_tokens=max_new_tokens,
        stop_ids={eos},
        slide=True,  # past the context as generate_text goes
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    ):
        if token == eos:
            break
        piece = streamer.put(token)
        if piece:
            yield piece
        if streamer.stopped:
            return
    tail = streamer.finish()
    if tail:
        yield tail


# --- classification ---------------------------------------------------------------------------------------------


@torch.no_grad()
def classify_lines(
    ck: Checkpoint, lines: list[str], *, batch_size: int = 64, truncate: bool = False, first_line: int = 1
) -> list[dict[str, float] | None]:
    """Each line's probability for every class (label -> probability), in order; None for an empty line."""
    tok = ck.tokenizer
    limit = ck.config.max_seq_len
    encoded = [
        _fit([tok.cls_id, *tok.encode(line)], limit, truncate, f"line {first_line + i}") if line.strip() else []
        for i, line in enumerate(lines)
    ]
    out: list[dict[str, float] | None] = [None] * len(lines)
    todo = [i for i, ids in enumerate(encoded) if ids]
    device = next(ck.model.parameters()).device
    for rows in _by_length([len(encoded[i]) for i in todo], batch_size):
        rows = [todo[r] for r in rows]
        probs = ck.model(pad_batch([encoded[i] for i in rows], tok.pad_id).to(device)).float().softmax(-1)
        for i, p in zip(rows, probs.tolist(), strict=True):
            out[i] = dict(zip(ck.labels, p, strict=True))
    return out


# --- question answering -----------------------------------------------------------------------------------------


@torch.no_grad()
def answer_questions(
    ck: Checkpoint | str | Path,
    pairs: Iterable[tuple[str, str]],
    *,
    n_best: int = 1,
    null_threshold: float | None = None,
    first_line: int = 1,
) -> list[list[Answer]]:
    """The `n_best` answers (best first) to each (question, context) pair, each an exact character span of its
    context (`context[a.start:a.end] == a.text`), or "" for no answer when the model was trained to give one.
    `ck`: a loaded question-answering checkpoint, or its path. `first_line` numbers the pairs in error messages."""
    if not isinstance(ck, Checkpoint):
        ck = load_for("qa", ck)
    task = ck.make_task()
    assert isinstance(task, QuestionAnsweringTask)  # a qa checkpoint's task
    if null_threshold is not None:
        task.cfg = task.cfg.replace(null_threshold=null_threshold)
    raw = []
    for i, (question, context) in enumerate(pairs):
        for name, value in (("question", question), ("context", context)):
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"line {first_line + i}: the {name} is empty")
        raw.append(QAExample(str(first_line + i), question, context))
    if not raw:
        return []
    device = next(ck.model.parameters()).device
    answers, _ = task.predict(ck.model, task.encode(raw), device, n_best=n_best)
    return answers


def _qa_records(chunk: list[str], first: int) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of the non-empty JSONL lines of a chunk; a bad line is an error naming it."""
    out = []
    for number, line in enumerate(chunk, start=first):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"stdin: line {number}: invalid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise UserError(f"stdin: line {number}: expected a JSON object with 'question' and 'context'")
        for key in ("question", "context"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise UserError(f"stdin: line {number}: {key!r} must be a non-empty string")
        out.append((number, record))
    return out


def answer_stream(
    ck: Checkpoint,
    lines: BinaryIO,
    out: TextIO,
    *,
    n_best: int = 1,
    null_threshold: float | None = None,
    chunk: int = 256,
    on_lines: Callable[[int], None] | None = None,
) -> None:
    """Answer JSONL questions (`{"question", "context"}` per line, an "id" kept when given) from `lines`: one JSON
    object per line on `out`, `{"answer", "start", "end", "score"}`, or with n_best > 1 `{"answers": [...]}`."""
    for first, lines_read in read_lines(lines, chunk):
        records = _qa_records(lines_read, first)
        pairs = [(r["question"], r["context"]) for _, r in records]
        for (_, record), answers in zip(
            records,
            answer_questions(ck, pairs, n_best=n_best, null_threshold=null_threshold, first_line=first),
            strict=True,
        ):
            shown: dict[str, Any] = {"id": record["id"]} if "id" in record else {}
            if n_best == 1:
                shown.update(answers[0].to_dict())
            else:
                shown["answers"] = [a.to_dict() for a in answers]
            print(json.dumps(shown, ensure_ascii=False), file=out)
        out.flush()
        if on_lines is not None:
            on_lines(len(lines_read))


# --- attention --------------------------------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    """Attention weights of one example, each (layers, heads, queries, keys), with the tokens on each axis.

    kind -> weights: "encoder" (a translator's or classifier's self-attention), "decoder" (causal self-attention of
    a translator's decoder or a language model), "cross" (decoder queries over encoder keys).
    """

    weights: dict[str, Tensor]
    queries: dict[str, list[str]]
    keys: dict[str, list[str]]
    # What the model outputs for the example in the same pass: a language model's or a translator's next-token
    # logits at each (decoder) position (T, V), a classifier's class logits (C,), a QA model's span logits (T, 2).
    logits: Tensor | None = None
    # A language model's decoder tokens: the first `prompt_tokens` are the text, the rest its greedy continuation.
    prompt_tokens: int | None = None
    # The ids of the decoder's tokens (a language model's, or a translator's decoder input: <bos> then its output).
    decoder_ids: list[int] | None = None


def _pieces(tok, ids: list[int]) -> list[str]:
    names = {tok.pad_id: "<pad>", tok.bos_id: "<bos>", tok.eos_id: "<eos>", tok.cls_id: "<cls>"}
    return [names.get(i) or tok.tokenizer.id_to_token(i) or "?" for i in ids]


@torch.no_grad()
def attention_maps(
    ck: Checkpoint,
    text: str,
    target: str | None = None,
    *,
    truncate: bool = False,
    context: str | None = None,
    continuation: int = 0,
) -> AttentionMaps:
    """Every layer's and head's attention weights for `text` (and, for a translator, `target`; without one its
    own greedy translation is used; for question answering `text` is the question and `context` the passage, the
    first window of the two). The same weights the model computes, from its plain-attention path. A language
    model reads `text` followed by its own greedy continuation of up to `continuation` tokens (within its context):
    causal attention makes the weights of any prefix those of the prefix alone."""
    tok, model = ck.tokenizer, ck.model
    device = next(model.parameters()).device
    limit = ck.config.max_seq_len

    def stack(layers: list[Tensor]) -> Tensor:
        return torch.stack([w[0] for w in layers]).float().cpu()  # (L, H, Tq, Tk)

    if not text.strip():
        raise UserError("--text is empty")
    family = ck.model.family
    if continuation and family != "lm":
        raise UserError(f"a continuation is for language models; {ck.path} is a {ck.task} checkpoint")
    if family == "seq2seq":
        src = _fit(ck.source_tokenizer.encode(text) + [tok.eos_id], limit, truncate, "--text")
        src_t = torch.tensor([src], device=device)
        if target is None:
            generated = generate(cast(DecodingModel, model), src_t, bos_id=tok.bos_id, eos_id=tok.eos_id)
            assert isinstance(generated, Tensor)  # the sequences: no return_dict_in_generate
            tgt = generated[0].tolist()
            tgt = tgt[: tgt.index(tok.eos_id) + 1] if tok.eos_id in tgt else tgt
        else:
            tgt = tok.encode(target) + [tok.eos_id]
        tgt_in = _fit([tok.bos_id, *tgt[:-1]], limit, truncate, "--target")
        out = model(src_t, torch.tensor([tgt_in], device=device), return_attentions=True)
        src_names, tgt_names = _pieces(ck.source_tokenizer, src), _pieces(tok, tgt_in)
        return AttentionMaps(
            {
                "encoder": stack(out.encoder_attentions),
                "decoder": stack(out.attentions),
                "cross": stack(out.cross_attentions),
            },
            {"encoder": src_names, "decoder": tgt_names, "cross": tgt_names},
            {"encoder": src_names, "decoder": tgt_names, "cross": src_names},
            logits=out.logits[0].float().cpu(),
            decoder_ids=tgt_in,
        )
    if family == "lm":
        ids = _fit(tok.encode(text), limit, truncate, "--text", keep_end=True)
        n_prompt = len(ids)
        new_tokens = min(continuation, limit - n_prompt)
        if new_tokens > 0:
            lm = cast(DecodingModel, model)  # a language model's checkpoint: a TransformerLM
            generated = generate(lm, torch.tensor([ids], device=device), max_new_tokens=new_tokens, eos_id=tok.eos_id)
            assert isinstance(generated, Tensor)  # the sequences: no return_dict_in_generate
            ids = generated[0].tolist()
        out = model(torch.tensor([ids], device=device), return_attentions=True)
        names = _pieces(tok, ids)
        return AttentionMaps(
            {"decoder": stack(out.attentions)},
            {"decoder": names},
            {"decoder": names},
            logits=out.logits[0].float().cpu(),
            prompt_tokens=n_prompt,
            decoder_ids=ids,
        )
    if family == "qa":
        if not context or not context.strip():
            raise UserError("a question-answering model reads a question (--text) and a context (--context)")
        task = ck.make_task()
        assert isinstance(task, QuestionAnsweringTask)  # a qa checkpoint's task
        [(context_ids, offsets)] = tok.encode_with_offsets([context])
        window = task.windows(tok.encode(text)[: task.cfg.max_question_len], context_ids, offsets, 0)[0]
        out = model(
            torch.tensor([window.ids], device=device),
            token_type_ids=torch.tensor([window.types], device=device),
            return_attentions=True,
        )
        names = _pieces(tok, window.ids)
        weights = {"encoder": stack(out.attentions)}
        return AttentionMaps(weights, {"encoder": names}, {"encoder": names}, logits=out.logits[0].float().cpu())
    ids = _fit([tok.cls_id, *tok.encode(text)], limit, truncate, "--text")
    out = model(torch.tensor([ids], device=device), return_attentions=True)
    names = _pieces(tok, ids)
    return AttentionMaps(
        {"encoder": stack(out.attentions)}, {"encoder": names}, {"encoder": names}, logits=out.logits[0].float().cpu()
    )


# --- streams of lines (the commands) ----------------------------------------------------------------------------


def read_lines(stream: BinaryIO, chunk: int) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) from a binary stream, `chunk` lines at a time, without line endings.
    A line that is not UTF-8 is an error naming it."""
    lines: list[str] = []
    first = 1
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            raise UserError(f"stdin: line {number}: not valid UTF-8") from None
        if len(lines) == chunk:
            yield first, lines
            first, lines = number + 1, []
    if lines:
        yield first, lines


def translate_stream(
    ck: Checkpoint,
    lines: BinaryIO,
    out: TextIO,
    *,
    num_beams: int = 4,
    length_penalty: float = 0.6,
    n_best: int = 1,
    batch_size: int = 64,
    truncate: bool = False,
    on_lines: Callable[[int], None] | None = None,
) -> None:
    """Translate UTF-8 lines from `lines` to `out` in order, one per line (empty lines stay empty); with n_best > 1
    `n_best` lines per input, `LINE<TAB>SCORE<TAB>TRANSLATION`. Reads `batch_size * 16` lines at a time."""
    if n_best > num_beams:
        raise UserError(f"--n-best {n_best} needs --beam of at least {n_best}")
    for first, chunk in read_lines(lines, batch_size * 16):
        results = translate_lines(
            ck,
            chunk,
            num_beams=num_beams,
            length_penalty=length_penalty,
            n_best=n_best,
            batch_size=batch_size,
            truncate=truncate,
            first_line=first,
            on_batch=on_lines,
        )
        for number, hyps in enumerate(results, start=first):
            if n_best == 1:
                print(hyps[0].text, file=out)
            else:
                for h in hyps:
                    print(f"{number}\t{h.score:.4f}\t{h.text}", file=out)
        out.flush()


def classify_stream(
    ck: Checkpoint,
    lines: BinaryIO,
    out: TextIO,
    *,
    json_lines: bool = False,
    batch_size: int = 64,
    truncate: bool = False,
    on_lines: Callable[[int], None] | None = None,
) -> None:
    """Classify UTF-8 lines from `lines`: `label<TAB>probability` per line on `out`, or with json_lines one object
    per line with every class's probability. Empty lines stay empty."""
    for first, chunk in read_lines(lines, batch_size * 16):
        results = classify_lines(ck, chunk, batch_size=batch_size, truncate=truncate, first_line=first)
        for line, probs in zip(chunk, results, strict=True):
            if probs is None:
                print(file=out)
                continue
            label = max(probs, key=probs.__getitem__)
            if json_lines:
                print(json.dumps({"text": line, "label": label, "probabilities": probs}, ensure_ascii=False), file=out)
            else:
                print(f"{label}\t{probs[label]:.4f}", file=out)
        out.flush()
        if on_lines is not None:
            on_lines(len(chunk))


def draw_attention(
    ck: Checkpoint,
    text: str,
    out: str | Path,
    *,
    target: str | None = None,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
    truncate: bool = False,
    context: str | None = None,
) -> Path:
    """Heatmaps of `attention_maps` (layers x heads, or one `layer` / `head`) of one attention `kind` to a PNG:
    cross-attention by default for a translator, else the model's self-attention."""
    if target is not None and ck.model.family != "seq2seq":
        raise UserError(f"--target is for translation checkpoints; {ck.path} is a {ck.task} checkpoint")
    if context is not None and ck.model.family != "qa":
        raise UserError(f"--context is for question-answering checkpoints; {ck.path} is a {ck.task} checkpoint")
    maps = attention_maps(ck, text, target, truncate=truncate, context=context)
    kind = kind or ("cross" if "cross" in maps.weights else next(iter(maps.weights)))
    if kind not in maps.weights:
        raise UserError(f"--kind {kind}: a {ck.task} model has {', '.join(maps.weights)} attention")
    return plot_attention(
        maps.weights[kind], maps.queries[kind], maps.keys[kind], out, kind=kind, layer=layer, head=head
    )


# --- dialogue ---------------------------------------------------------------------------------------------------


class ChatSession:
    """A multi-turn conversation with a chat model. Its KV cache is kept between turns, so each reply prefills
    only the new tokens (the last reply's end of turn and the new user message), not the whole history.

        session = ChatSession(load_for("chat", "runs/chat"), system="You are terse.", do_sample=False)
        for piece in session.reply("Hi, I am Ann."):
            print(piece, end="", flush=True)
        session.messages                      # [system, user, assistant]: the conversation so far

    When the context (the model's max_seq_len) cannot hold the conversation and room for a reply of
    `max_new_tokens` (at most half the context), the oldest exchanges are dropped (the system message is kept),
    `dropped` counts them, and the cache is rebuilt from what is left.
    """

    def __init__(
        self,
        ck: Checkpoint,
        *,
        system: str | None = None,
        max_new_tokens: int = 256,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Iterable[str] = (),
    ) -> None:
        """stop: strings that end a reply (not included), beside its end-of-turn token."""
        if ck.task != "chat":
            raise UserError(f"{ck.path} is a {WHAT.get(ck.task, ck.task)} checkpoint; chat needs a chat checkpoint")
        self.ck, self.model = ck, ck.model
        self.template = ChatTemplate.of(ck.tokenizer)
        self.max_new_tokens = max_new_tokens
        self.stop = [s for s in stop if s]
        self.do_sample, self.temperature, self.top_k, self.top_p = do_sample, temperature, top_k, top_p
        device = next(self.model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        self.cache = cast(DecodingLM, self.model).init_cache(1)  # growing: holds the first cache.length of ids
        self.messages: list[Message] = []
        self.ids: list[int] = []  # the conversation's tokens as the model has seen (and written) them
        self.dropped = 0  # exchanges dropped to fit the context, since the last reset
        self.reset(system)

    def reset(self, system: str | None = None) -> None:
        """Forget the conversation (keeping the system message unless a new one is given)."""
        if system is None:
            system = self.messages[0].content if self.messages and self.messages[0].role == "system" else None
        self.messages = [Message("system", system)] if system else []
        self.ids = self.template.encode(self.messages)[0]
        self.cache.reset()
        self.dropped = 0

    def set_system(self, system: str) -> None:
        """A new system message; the conversation starts over."""
        self.messages = []
        self.reset(system)

    def _fit(self) -> int:
        """Drop the oldest exchanges until the conversation and the reply's room fit; the tokens of room."""
        limit = self.model.cfg.max_seq_len
        room = max(1, min(self.max_new_tokens, limit // 2))
        if len(self.ids) + room <= limit:
            return room
        head = self.messages[:1] if self.messages and self.messages[0].role == "system" else []
        turns = self.messages[len(head) :]
        while True:
            ids = self.template.encode(head + turns, add_generation_prompt=True)[0]
            if len(ids) + room <= limit:
                break
            users = [i for i, m in enumerate(turns) if m.role == "user"]
            if len(users) < 2:
                raise UserError(
                    f"the message is too long: with the system message it takes {len(ids)} of the model's "
                    f"{limit} tokens, leaving no room for a reply of {room}"
                )
            turns = turns[users[1] :]
            self.dropped += 1
        self.messages = head + turns
        self.ids = ids
        self.cache.reset()  # positions changed: prefill what is left
        return room

    def reply(self, text: str) -> Generator[str, None, None]:
        """Add the user's message and stream the reply's text as it is generated. When the iteration ends (or is
        interrupted: Ctrl-C, close), the reply so far is the assistant's message of the conversation."""
        if not text.strip():
            raise UserError("the message is empty")
        before = (list(self.messages), list(self.ids), self.dropped)
        self.messages.append(Message("user", text))
        self.ids += self.template.message("user", text) + [self.template.role_ids["assistant"]]
        try:
            room = self._fit()
        except UserError:  # the message cannot fit: the conversation stays as it was
            self.messages, self.ids, self.dropped = before
            raise
        streamer = TextStreamer(self.ck.tokenizer, stop=self.stop)
        end = self.template.end_id
        clean = False
        try:
            for token in next_tokens(
                cast(DecodingLM, self.model),
                self.cache,
                self.ids[self.cache.length :],
                max_new_tokens=room,
                stop_ids={end},
                do_sample=self.do_sample,
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                generator=self.generator,
            ):
                self.ids.append(token)
                if token == end:
                    break
                piece = streamer.put(token)
                if piece:
                    yield piece
                if streamer.stopped:
                    break
            tail = streamer.finish()
            if tail:
                yield tail
            clean = True
        except GeneratorExit:
            clean = True  # closed between tokens: the cache holds exactly the tokens fed
            raise
        finally:
            if not clean:  # interrupted inside a forward pass: the cache may be half updated
                self.cache.reset()
            if self.ids[-1] != end:  # stopped early (length, Ctrl-C): the reply ends here
                self.ids.append(end)
            self.messages.append(Message("assistant", streamer.text if clean else streamer.text.rstrip()))

    def to_json(self) -> str:
        """The conversation as one line of the training format (`{"messages": [...]}`)."""
        return json.dumps({"messages": [{"role": m.role, "content": m.content} for m in self.messages]})


def chat_reply(
    ck: Checkpoint,
    messages: list[Message],
    *,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Iterable[str] = (),
) -> str:
    """The model's reply to a conversation that ends with a user message (greedy by default)."""
    if not messages or messages[-1].role != "user":
        raise UserError("the conversation must end with a user message")
    first_system = messages[0].content if messages[0].role == "system" else None
    session = ChatSession(
        ck,
        system=first_system,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop=stop,
    )
    session.messages = list(messages[:-1])
    session.ids = session.template.encode(session.messages)[0]
    return "".join(session.reply(messages[-1].content))


def parse_chat_line(line: str, where: str) -> list[Message]:
    """One conversation of the training format (`messages`, or ShareGPT's `conversations`) ending with a user
    turn, as the `chat` command reads it from a pipe; a bad line is a `UserError` naming `where`."""
    messages = list(dialogue.parse_chat_line(line, where))
    if not messages or messages[-1].role != "user":
        raise UserError(f"{where}: the conversation must end with a user message (the one to reply to)")
    return messages


def chat_stream(ck: Checkpoint, stream: BinaryIO, out: TextIO, **options: Any) -> int:
    """The `chat` command on a pipe: one conversation per input line, one `{"role": "assistant", "content"}`
    JSON object per output line (blank lines skipped). Returns the number of replies."""
    count = 0
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"stdin: line {number}: not UTF-8 text") from None
        if not line.strip():
            continue
        messages = parse_chat_line(line, f"stdin: line {number}")
        text = chat_reply(ck, messages, **options)
        out.write(json.dumps({"role": "assistant", "content": text}, ensure_ascii=False) + "\n")
        out.flush()
        count += 1
    return count
