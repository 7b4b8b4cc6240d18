"""Question-answering data: SQuAD v1.1 / v2.0 JSON as published, and JSONL, read into `QAExample`s.

    read_qa(path)        a SQuAD file ({"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}), or JSONL
                         with one {"question", "context", "answers": [{"text", "answer_start"}]} (or "answer": a
                         string found in the context) per line; `.gz` accepted

Every answer is a character span of its context: `context[start:start + len(text)] == text` is checked on reading,
and a record that breaks it (or lacks a field, or has a context that is not a string) is a `DataError` naming the
file and the record (its question id in SQuAD JSON, its line in JSONL). SQuAD v2's unanswerable questions
(`is_impossible`, an empty answer list) have no answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .readers import DataError, read_jsonl, read_lines


@dataclass(frozen=True)
class QAExample:
    """One question about one context. `answers`: (text, character offset in `context`) of each gold answer (SQuAD's
    dev sets have up to three, the training set one); empty when the question has no answer in the context (v2)."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...] = ()
    title: str = ""  # the article (SQuAD), or the kind of story (built-in data)

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def _is_json_document(path: Path) -> bool:
    """A SQuAD JSON file (one object) rather than JSONL: the name ends in .json (before any .gz)."""
    return path.name.removesuffix(".gz").endswith(".json")


def read_qa(path: str | Path) -> list[QAExample]:
    """The questions of a SQuAD JSON file (`.json`, `.json.gz`) or a JSONL file (any other name), in file order."""
    path = Path(path)
    examples = _read_squad(path) if _is_json_document(path) else _read_jsonl(path)
    if not examples:
        raise DataError(f"{path}: no questions")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"{path}: question id {ex.id!r} appears twice")
        seen.add(ex.id)
    return examples


def _answers(raw: Any, context: str, where: str) -> tuple[tuple[str, int], ...]:
    """Checked (text, start) pairs from a list of {"text", "answer_start"}."""
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'answers' must be a list of {{'text', 'answer_start'}}")
    out = []
    for i, answer in enumerate(raw):
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            raise DataError(f"{where}: answer {i + 1} needs 'text' and 'answer_start'")
        text, start = answer["text"], answer["answer_start"]
        if not isinstance(text, str) or not text:
            raise DataError(f"{where}: answer {i + 1}: 'text' must be a non-empty string")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise DataError(f"{where}: answer {i + 1}: 'answer_start' must be a non-negative integer, got {start!r}")
        found = context[start : start + len(text)]
        if found != text:
            raise DataError(
                f"{where}: answer {i + 1}: answer_start {start} spans {found!r} in the context, not the answer {text!r}"
            )
        out.append((text, start))
    return tuple(out)


def _string(record: dict[str, Any], key: str, where: str) -> str:
    if key not in record:
        raise DataError(f"{where}: no {key!r} field")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: {key!r} is empty")
    return value


def _read_squad(path: Path) -> list[QAExample]:
    text = "\n".join(line for _, line in read_lines(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: not SQuAD JSON (expected an object with a 'data' list of articles)")
    examples = []
    for a, article in enumerate(document["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{path}: article {a + 1}: expected an object with a 'paragraphs' list")
        title = article["title"] if isinstance(article.get("title"), str) else ""
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"{path}: article {a + 1} ({title!r}), paragraph {p + 1}"
            if not isinstance(paragraph, dict):
                raise DataError(f"{where}: expected an object")
            context = _string(paragraph, "context", where)
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise DataError(f"{where}: no 'qas' list")
            for q, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    raise DataError(f"{where}: question {q + 1}: expected an object")
                qid = qa.get("id")
                if not isinstance(qid, str) or not qid:
                    raise DataError(f"{where}: question {q + 1}: no 'id' string")
                record = f"{path}: question id {qid}"
                question = _string(qa, "question", record)
                answers = _answers(qa.get("answers", []), context, record)
                if qa.get("is_impossible"):
                    answers = ()  # v2: plausible_answers are not answers
                elif not answers:
                    raise DataError(f"{record}: no answers (and not marked is_impossible)")
                examples.append(QAExample(qid, question, context, answers, title))
    return examples


def _read_jsonl(path: Path) -> list[QAExample]:
    examples = []
    for number, record in read_jsonl(path):
        where = f"{path}: line {number}"
        question = _string(record, "question", where)
        context = _string(record, "context", where)
        if "answers" in record:
            answers = _answers(record["answers"], context, where)
        elif "answer" in record:
            answer = record["answer"]
            if answer is None or answer == "":
                answers = ()
            elif not isinstance(answer, str):
                raise DataError(f"{where}: 'answer' must be a string")
            elif answer not in context:
                raise DataError(f"{where}: the answer {answer!r} is not in the context")
            else:
                answers = ((answer, context.index(answer)),)
        else:
            raise DataError(f"{where}: no 'answers' or 'answer' field (an empty list marks an unanswerable question)")
        qid = record.get("id", f"line-{number}")
        examples.append(QAExample(str(qid), question, context, answers, str(record.get("title", ""))))
    return examples
