"""Built-in datasets, generated offline, named `builtin:NAME` on the command line.

    scan, scan-simple   translation  SCAN commands -> action sequences, random 80/20 split (see scan.py)
    scan-length         translation  SCAN, train on outputs of <= 22 actions, test on longer ones
    stdlib-docs         lm           the docstrings of this Python installation's standard library, about 1.5M
                                     characters of English technical prose with code examples
    stdlib-topics       classification  each docstring of eight standard-library packages, labelled with its
                                     package (asyncio, email, http, importlib, logging, multiprocessing,
                                     unittest, xml): topic classification, ~2,000 examples
    babi                qa           bAbI-style stories, tasks 1-3 (one, two and three supporting facts), 30,000
                                     training and 300 test questions per task; title "task1".."task3" (see babi.py)
    babi-1 .. babi-3    qa           one of those tasks alone
    chat                chat         conversations with an assistant that must remember what the user said
                                     turns earlier (names, pets, colours, numbers); see dialogue.py

The standard-library sets come from the running interpreter's own source files, so they exist wherever Python
does; their exact size varies a little between Python versions. Each dataset returns (train, test); splits are
seeded and deterministic for a given Python version.
"""

from __future__ import annotations

import ast
import functools
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .babi import babi_split
from .dialogue import chat_split
from .scan import scan_split

SKIPPED_PACKAGES = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo"}
TOPICS = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest", "xml")


@dataclass
class BuiltinDataset:
    name: str
    task: str
    train: list  # LM: texts; translation: (source, target); classification: (text, label); qa: QAExample
    test: list
    tokenizer: str  # the default tokenizer kind for this data


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[tuple[str, str], ...]:
    """(module path relative to the standard library, docstring) for every module, class and function docstring,
    in file order. Test suites and GUI tools are skipped; files that do not parse are skipped."""
    root = _stdlib_root()
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIPPED_PACKAGES & set(rel.parts[:-1]) or rel.parts[0] in SKIPPED_PACKAGES:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and doc.strip():
                    found.append((rel.as_posix(), doc.strip()))
    if not found:
        raise UserError(f"no docstrings found in the standard library at {root}")
    return tuple(found)


def stdlib_docs(seed: int = 0, test_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Language-modeling texts, one per module (its docstrings separated by blank lines); a seeded tenth of the
    modules is the test split."""
    by_module: dict[str, list[str]] = {}
    for module, doc in stdlib_docstrings():
        by_module.setdefault(module, []).append(doc)
    modules = sorted(by_module)
    random.Random(seed).shuffle(modules)
    n_test = max(1, int(test_fraction * len(modules)))
    texts = {m: "\n\n".join(by_module[m]) + "\n\n" for m in modules}
    return [texts[m] for m in sorted(modules[n_test:])], [texts[m] for m in sorted(modules[:n_test])]


def stdlib_topics(seed: int = 0, test_fraction: float = 0.2) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(docstring with whitespace collapsed, package) for the packages in TOPICS; seeded 80/20 split."""
    examples = [
        (" ".join(doc.split()), module.split("/")[0])
        for module, doc in stdlib_docstrings()
        if "/" in module and module.split("/")[0] in TOPICS
    ]
    examples = list(dict.fromkeys(examples))  # a docstring repeated in a package (overrides) counts once
    seen: dict[str, str] = {}
    for text, label in examples:  # the same text under two packages is ambiguous: keep neither
        seen[text] = label if seen.get(text, label) == label else ""
    examples = [(text, label) for text, label in examples if seen[text]]
    random.Random(seed).shuffle(examples)
    n_test = int(test_fraction * len(examples))
    return examples[n_test:], examples[:n_test]


BUILTINS = {
    "scan": "translation",
    "scan-simple": "translation",
    "scan-length": "translation",
    "stdlib-docs": "lm",
    "stdlib-topics": "classification",
    "babi": "qa",
    "babi-1": "qa",
    "babi-2": "qa",
    "babi-3": "qa",
    "chat": "chat",
}


def load_builtin(name: str, seed: int = 0) -> BuiltinDataset:
    """A built-in dataset by name (without the `builtin:` prefix)."""
    if name in ("scan", "scan-simple", "scan-length"):
        train, test = scan_split("length" if name == "scan-length" else "simple", seed=seed)
        return BuiltinDataset(name, "translation", train, test, tokenizer="word")
    if name == "stdlib-docs":
        return BuiltinDataset(name, "lm", *stdlib_docs(seed), tokenizer="char")
    if name == "stdlib-topics":
        return BuiltinDataset(name, "classification", *stdlib_topics(seed), tokenizer="word")
    if name in ("babi", "babi-1", "babi-2", "babi-3"):
        tasks = (1, 2, 3) if name == "babi" else (int(name[-1]),)
        return BuiltinDataset(name, "qa", *babi_split(tasks, seed=seed), tokenizer="word")
    if name == "chat":
        return BuiltinDataset(name, "chat", *chat_split(seed=seed), tokenizer="word")
    raise UserError(
        f"unknown built-in dataset builtin:{name}; choose one of {', '.join('builtin:' + n for n in BUILTINS)}"
    )
