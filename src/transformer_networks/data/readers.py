"""Readers for the three tasks' files. UTF-8 text, optionally gzip-compressed (`.gz`).

    language modeling:  read_lm_text(paths)              plain text: files, or directories of them
    translation:        read_translation(path)           "source<TAB>target" lines, JSONL ({"source", "target"}
                                                         or {"translation": {"de", "en"}}), or CSV with a header
                        read_parallel(src, tgt)          two line-aligned files
    classification:     read_classification(path)        TSV / CSV with a header, or JSONL

Every problem is a `DataError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError


class DataError(UserError):
    """A data file is missing, unreadable or malformed (the message names the file and line)."""


def _open_binary(path: Path) -> io.BufferedIOBase:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for each line of a UTF-8 (or .gz) file.

    Lines are decoded one by one, so an encoding error names the exact line."""
    path = Path(path)
    with _open_binary(path) as f:
        number = 0
        try:
            for number, raw in enumerate(f, start=1):  # noqa: B007 (number names the line on errors)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}: line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
                if number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark is not text
                yield number, line.rstrip("\r\n")
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: line {number + 1}: cannot read: {e}") from None


def read_text(path: str | Path) -> str:
    return "\n".join(line for _, line in read_lines(path))


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSONL file; a line that is not a JSON object is an error
    naming it."""
    path = Path(path)
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object")
        yield number, record


def read_table(path: str | Path, delimiter: str) -> tuple[list[str], Iterator[list[str]]]:
    """(header, the fields of each non-blank line after it) of a CSV (delimiter ",", quoted fields allowed) or TSV
    ("\t", no quoting) file; a line with another number of fields than the header is an error naming it."""
    path = Path(path)
    lines = read_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file")
    header = next(csv.reader([first[1]], delimiter=delimiter))

    def rows() -> Iterator[list[str]]:
        for number, line in lines:
            if not line.strip():
                continue
            fields = next(
                csv.reader(
                    [line], delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
                )
            )
            if len(fields) != len(header):
                raise DataError(f"{path}: line {number}: expected {len(header)} fields, found {len(fields)}")
            yield fields

    return header, rows()


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files, with directories read recursively in name order (hidden files skipped)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not found:
                raise DataError(f"{p}: directory holds no files")
            files.extend(found)
        elif not p.exists():
            raise DataError(f"{p}: no such file or directory")
        else:
            files.append(p)
    return files


def read_lm_text(paths: Sequence[str | Path] | str | Path) -> list[str]:
    """The text of each file (directories are read recursively, in name order). Empty input is an error."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    texts = []
    for path in expand(paths):
        text = read_text(path)
        if text.strip():
            texts.append(text + "\n")
    if not texts:
        raise DataError(f"{', '.join(map(str, paths))}: no text")
    return texts


def read_translation_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Pairs from "source<TAB>target" lines; blank lines are skipped."""
    pairs = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{path}: line {number}: expected 'source<TAB>target', found no tab")
        source, target = line.split("\t", 1)
        if "\t" in target:
            raise DataError(f"{path}: line {number}: expected one tab, found {line.count(chr(9))}")
        pairs.append((source.strip(), target.strip()))
    if not pairs:
        raise DataError(f"{path}: empty file")
    return pairs


def read_translation(
    path: str | Path, source_lang: str | None = None, target_lang: str | None = None
) -> list[tuple[str, str]]:
    """Translation pairs from a file, by its name: JSONL (".jsonl"/".json"), CSV (".csv") or TSV (anything else;
    "source<TAB>target" lines). See `read_translation_jsonl` and `read_translation_csv`."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return read_translation_jsonl(path, source_lang, target_lang)
    if name.endswith(".csv"):
        return read_translation_csv(path, source_lang, target_lang)
    return read_translation_tsv(path)


def read_translation_jsonl(
    path: str | Path, source_lang: str | None = None, target_lang: str | None = None
) -> list[tuple[str, str]]:
    """Pairs from JSONL lines, each {"source": ..., "target": ...} or, as Hugging Face datasets write them,
    {"translation": {"de": ..., "en": ...}}: there the languages are `source_lang` and `target_lang`, else the
    object's two keys in their order (source first)."""
    path = Path(path)
    pairs = []
    for number, record in read_jsonl(path):
        where = f"{path}: line {number}"
        if isinstance(record.get("translation"), dict):
            record, keys = record["translation"], _languages(record["translation"], source_lang, target_lang, where)
        elif "source" in record and "target" in record:
            keys = ("source", "target")
        else:
            raise DataError(f'{where}: expected "source" and "target" fields, or a "translation" object')
        texts = [record[k] for k in keys]
        if not all(isinstance(t, str) for t in texts):
            raise DataError(f"{where}: {' and '.join(map(repr, keys))} must be strings")
        pairs.append((texts[0].strip(), texts[1].strip()))
    if not pairs:
        raise DataError(f"{path}: empty file")
    return pairs


def _languages(texts: dict, source: str | None, target: str | None, where: str) -> tuple[str, str]:
    """The (source, target) keys of a {"de": ..., "en": ...} object."""
    if (source is None) != (target is None):
        raise DataError(f"{where}: give both --set source_lang and --set target_lang, or neither")
    if source is not None and target is not None:
        for lang, option in ((source, "source_lang"), (target, "target_lang")):
            if lang not in texts:
                raise DataError(f"{where}: no {lang!r} in the translation object (keys: {', '.join(texts)}; {option})")
        return source, target
    if len(texts) != 2:
        raise DataError(
            f"{where}: the translation object has {len(texts)} languages ({', '.join(texts)}): "
            "name the pair with --set source_lang=.. --set target_lang=.."
        )
    first, second = texts
    return first, second


def read_translation_csv(
    path: str | Path, source_lang: str | None = None, target_lang: str | None = None
) -> list[tuple[str, str]]:
    """Pairs from a CSV file with a header: the columns `source_lang` and `target_lang` when given, else "source"
    and "target"."""
    path = Path(path)
    header, table = read_table(path, ",")
    wanted = (source_lang or "source", target_lang or "target")
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(
            f"{path}: line 1: no {' or '.join(map(repr, missing))} column in header {header} "
            "(--set source_lang / target_lang name the columns)"
        )
    si, ti = header.index(wanted[0]), header.index(wanted[1])
    pairs = [(fields[si].strip(), fields[ti].strip()) for fields in table]
    if not pairs:
        raise DataError(f"{path}: no examples")
    return pairs


def read_parallel(source_path: str | Path, target_path: str | Path) -> list[tuple[str, str]]:
    """Pairs from two line-aligned files (line i of one translates line i of the other)."""
    sources = [line for _, line in read_lines(source_path)]
    targets = [line for _, line in read_lines(target_path)]
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}: "
            f"parallel files must be line-aligned"
        )
    pairs = [(s.strip(), t.strip()) for s, t in zip(sources, targets, strict=True) if s.strip() or t.strip()]
    if not pairs:
        raise DataError(f"{source_path}: empty file")
    return pairs


TEXT_COLUMNS = ("text", "sentence")


def read_classification(
    path: str | Path, text_column: str | None = None, label_column: str = "label"
) -> list[tuple[str, str]]:
    """(text, label) pairs from a TSV/CSV with a header, or from JSONL (".jsonl"/".json" before any ".gz").
    The text column defaults to "text", else "sentence". Labels are kept as strings."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    text_columns = (text_column,) if text_column else TEXT_COLUMNS
    rows: list[tuple[str, str]] = []
    if name.endswith((".jsonl", ".json")):
        for number, record in read_jsonl(path):
            text_key = next((c for c in text_columns if c in record), None)
            if text_key is None or label_column not in record:
                missing = label_column if text_key else " or ".join(text_columns)
                raise DataError(f"{path}: line {number}: no {missing!r} key")
            rows.append((str(record[text_key]), str(record[label_column])))
    else:
        header, table = read_table(path, "," if name.endswith(".csv") else "\t")
        text_key = next((c for c in text_columns if c in header), None)
        if text_key is None:
            raise DataError(f"{path}: line 1: no text column ({' or '.join(text_columns)}) in header {header}")
        if label_column not in header:
            raise DataError(f"{path}: line 1: no label column {label_column!r} in header {header}")
        ti, li = header.index(text_key), header.index(label_column)
        rows.extend((fields[ti], fields[li]) for fields in table)
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows
