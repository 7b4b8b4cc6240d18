"""Training on examples held in memory: `train(task, out, examples=..., valid=...)`.

A run must be able to read its data again (`evaluate`, `train --resume`), so in-memory examples become JSONL files
of the run, RUN/examples/train.jsonl (and valid.jsonl), read by the task's own JSONL reader like any file given on the
command line, with its checks: an error names the example by its line (line N is the Nth example). What each task
takes, as Python values or as the JSONL objects themselves:

    lm               "some text"                                   {"text": ...}
    classification   ("a fine film", "positive")                   {"text": ..., "label": ...}
    translation      ("ein Hund", "a dog")                         {"source": ..., "target": ...}
    qa               ("Where is Mary?", "Mary is in the garden.", "the garden")   (question, context, answer: its
                     first occurrence in the context)              {"question", "context", "answers": [...]}
    chat             [{"role": "user", "content": ...}, ...]       {"messages": [...]}
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["example_record", "stage_examples"]


def example_record(task: str, item: Any, index: int, where: str = "examples") -> dict[str, Any]:
    """One in-memory example of `task` as the JSONL object its reader takes (`where[index]` names it in errors)."""
    if isinstance(item, dict):
        return item
    where = f"{where}[{index}]"
    if task == "lm" and isinstance(item, str):
        return {"text": item}
    if task == "chat" and isinstance(item, list):
        return {"messages": item}
    if isinstance(item, tuple | list) and task in ("classification", "translation") and len(item) == 2:
        keys = ("text", "label") if task == "classification" else ("source", "target")
        return dict(zip(keys, item, strict=True))
    if task == "qa" and isinstance(item, tuple | list) and len(item) == 3:
        question, context, answer = item
        if not isinstance(context, str) or not isinstance(answer, str) or answer not in context:
            raise UserError(f"{where}: the answer {answer!r} is not in its context")
        return {
            "id": str(index),
            "question": question,
            "context": context,
            "answers": [{"text": answer, "answer_start": context.index(answer)}],
        }
    forms = {
        "lm": "a string",
        "classification": "a (text, label) pair",
        "translation": "a (source, target) pair",
        "qa": "a (question, context, answer) triple",
        "chat": "a list of messages",
    }
    wanted = forms.get(task, "a JSON object")
    raise UserError(f"{where}: a {task} example is {wanted} or a JSON object; got {type(item).__name__}")


def stage_examples(task: str, examples: Iterable[Any], valid: Iterable[Any] | None) -> Path:
    """A new temporary folder holding train.jsonl (and valid.jsonl) of the examples; the run moves it into its
    directory as RUN/examples."""
    folder = Path(tempfile.mkdtemp(prefix="tn-examples-"))
    try:
        for name, items in (("train", examples), ("valid", valid)):
            if items is None:
                continue
            with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for i, item in enumerate(items):
                    record = example_record(task, item, i, "examples" if name == "train" else "valid")
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
