"""Corpora larger than memory: tokenized once into token shards on disk, trained on through memory maps.

    prepare_lm(["corpus/", "web.jsonl.gz"], "data/corpus", kind="bpe", vocab_size=8000)   # `prepare lm`
    train = open_split("data/corpus", "train")       # a TokenStream: len(train), train[i:j] -> int64 tensor

A prepared directory holds:
    manifest.json       written last, atomically: counts, the shards with their sha256, the tokenizer, the sources
    tokenizer.json
    train-00000.bin ... tokens as uint16 (a vocabulary of at most 65,536) or uint32, little-endian, documents
    valid-00000.bin     separated by <eos>; a shard holds at most `shard_tokens` tokens

An interrupted `prepare` leaves no manifest, and a directory without one is never trained on.

Documents: a text file is one document (its lines, each ending in a newline); a JSONL line or a Parquet row is
one (its `text_field`). A document is tokenized in chunks of whole lines of about `CHUNK_CHARS` characters, each
chunk on its own, many chunks at once over all cores (`Tokenizer.encode_batch`); `train lm` on the files
directly tokenizes the same chunks (`encode_documents`), so both give the same token stream.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import UserError
from .readers import DataError, expand
from .tokenizer import TextTokenizer, train_tokenizer

MANIFEST = "manifest.json"
FORMAT = "transformer-networks/prepared-lm"
CHUNK_CHARS = 1 << 16  # characters per tokenized chunk (whole lines; a longer line is a chunk of its own)
BATCH_CHUNKS = 16  # chunks per encode_batch call: enough for every core, little memory (~1 MB of text)
SHARD_TOKENS = 1 << 28  # tokens per shard file (512 MB as uint16)
# Text a subword tokenizer is trained on (the corpus's first bytes). The BPE trainer's memory grows with it: on
# source code, about 0.8 GB at 16 MB and 1.9 GB at 64 MB (bench/data.py's corpus).
SAMPLE_BYTES = 16 << 20


# --- reading documents, one line at a time ------------------------------------------------------------------------


def is_prepared(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _open(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _lines(path: Path, errors: str) -> Iterator[tuple[int, int, str]]:
    """(line number, byte offset of the line in the (decompressed) file, line without its line end)."""
    offset, number = 0, 0
    with _open(path) as f:
        try:
            for number, raw in enumerate(f, start=1):  # noqa: B007 (number names the line on errors)
                try:
                    line = raw.decode("utf-8", errors=errors)
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}: line {number}: not UTF-8 text ({e.reason} at byte {offset + e.start} of the file); "
                        "--errors replace reads it with U+FFFD in place of the bad bytes"
                    ) from None
                if number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark is not text
                yield number, offset, line.rstrip("\r\n")
                offset += len(raw)
        except (OSError, EOFError) as e:  # a corrupt or cut .gz (gzip.BadGzipFile is an OSError)
            raise DataError(f"{path}: line {number + 1} (byte {offset}): cannot read: {e}") from None


def _field_text(record: Any, field: str, where: str) -> str:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object")
    if field not in record:
        raise DataError(f"{where}: no {field!r} field (--text-field names the field that holds the text)")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: the {field!r} field is {type(value).__name__}, not text")
    return value


def document_chunks(
    paths: Sequence[str | Path], text_field: str = "text", errors: str = "strict"
) -> Iterator[tuple[str, bool]]:
    """(chunk, whether it ends its document) for the documents of the files, streamed (a file is never held
    whole): a text file is one document (its lines, each ending in a newline), a JSONL line's or a Parquet row's
    `text_field` one each. Blank documents are skipped. The chunks are those `line_chunks` cuts each document's
    text into."""
    for path in expand(paths):
        kind = _kind(path)
        if kind == "text":
            yield from _text_file_chunks(path, errors)
            continue
        texts = _jsonl_texts(path, text_field, errors) if kind == "jsonl" else _parquet_texts(path, text_field)
        for text in texts:
            yield from chunks_of([text])


def chunks_of(docs: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """(chunk, whether it ends its document) for documents given as strings."""
    for doc in docs:
        pieces = list(line_chunks(doc))
        for i, piece in enumerate(pieces):
            yield piece, i == len(pieces) - 1


def _text_file_chunks(path: Path, errors: str, size: int = CHUNK_CHARS) -> Iterator[tuple[str, bool]]:
    """`chunks_of([the file's text])` without holding the file: whole lines gathered up to `size` characters."""
    held: list[str] = []  # chunks not yet given: blank so far (a blank file is no document)
    lines: list[str] = []
    length = 0
    text_seen = False

    def cut() -> None:
        nonlocal length
        held.append("".join(lines))
        lines.clear()
        length = 0

    for _, _, line in _lines(path, errors):
        line += "\n"
        if lines and length + len(line) > size:
            cut()
        lines.append(line)
        length += len(line)
        text_seen = text_seen or bool(line.strip())
        if text_seen and held:  # more follows (this line at least): none of them ends the document
            for chunk in held:
                yield chunk, False
            held.clear()
    if lines:
        cut()
    if text_seen:
        for i, chunk in enumerate(held):
            yield chunk, i == len(held) - 1


def _jsonl_texts(path: Path, field: str, errors: str) -> Iterator[str]:
    for number, _, line in _lines(path, errors):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {number}: invalid JSON: {e.msg}") from None
        text = _field_text(record, field, f"{path}: line {number}")
        if text.strip():
            yield text


def read_documents(paths: Sequence[str | Path], text_field: str = "text") -> list[str]:
    """Every document's text in memory (small corpora: `train lm --data FILES`): the documents
    `document_chunks` streams, whole."""
    docs: list[str] = []
    parts: list[str] = []
    for chunk, last in document_chunks(paths, text_field):
        parts.append(chunk)
        if last:
            docs.append("".join(parts))
            parts.clear()
    return docs


def _parquet_texts(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        reader = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types with a message
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None
    if field not in reader.schema_arrow.names:
        raise DataError(f"{path}: no {field!r} column (columns: {', '.join(reader.schema_arrow.names)})")
    row = 0
    for batch in reader.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            row += 1
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}: row {row}: the {field!r} column holds {type(value).__name__}, not text")
            if value.strip():
                yield value


def line_chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """`text` cut after newlines into pieces of about `size` characters (a longer line is a piece of its own)."""
    start, n = 0, len(text)
    while start < n:
        end = start + size
        if end >= n:
            yield text[start:]
            return
        cut = text.rfind("\n", start, end)
        if cut < start:  # one line longer than size: up to its end
            cut = text.find("\n", end)
            if cut < 0:
                yield text[start:]
                return
        yield text[start : cut + 1]
        start = cut + 1


def encode_chunks(
    tokenizer: TextTokenizer, chunks: Iterable[tuple[str, bool]], dtype: np.dtype | type = np.int32
) -> Iterator[np.ndarray]:
    """Token ids of (chunk, ends its document) pairs as arrays, <eos> after each document: the chunks encoded
    `BATCH_CHUNKS` at a time (in parallel). Yields one array per batch of chunks (documents may span batches)."""
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    pending: list[str] = []
    ends: list[bool] = []  # whether each pending chunk ends its document

    def flush() -> np.ndarray:
        parts = []
        for ids, last in zip(tokenizer.encode_arrays(pending, dtype), ends, strict=True):
            parts.append(ids)
            if last:
                parts.append(eos)
        pending.clear()
        ends.clear()
        return np.concatenate(parts)

    for chunk, last in chunks:
        pending.append(chunk)
        ends.append(last)
        if len(pending) >= BATCH_CHUNKS:
            yield flush()
    if pending:
        yield flush()


# --- token streams ------------------------------------------------------------------------------------------------


class TokenStream:
    """A sequence of token ids held in pieces (memory-mapped shards, or one in-memory array): `len(stream)`, and
    `stream[i:j]` (a slice, step 1) as an int64 tensor. Nothing is read until sliced."""

    def __init__(self, pieces: Sequence[np.ndarray]) -> None:
        self.pieces = [p for p in pieces if len(p)]
        self.starts = np.cumsum([0] + [len(p) for p in self.pieces])  # where each piece begins

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: slice) -> Tensor:
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise IndexError("a TokenStream is sliced with step 1")
        out = np.empty(max(0, stop - start), dtype=np.int64)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        at = start
        for p in range(max(first, 0), len(self.pieces)):
            if at >= stop:
                break
            lo = at - int(self.starts[p])
            take = min(stop - at, len(self.pieces[p]) - lo)
            out[at - start : at - start + take] = self.pieces[p][lo : lo + take]
            at += take
        return torch.from_numpy(out)

    def head(self, n: int) -> TokenStream:
        """The first n tokens (memory maps stay maps: nothing is read)."""
        pieces, left = [], n
        for piece in self.pieces:
            if left <= 0:
                break
            pieces.append(piece[:left])
            left -= len(pieces[-1])
        return TokenStream(pieces)

    def tolist(self) -> list[int]:
        return self[0 : len(self)].tolist()


@dataclass(frozen=True)
class PreparedSplit:
    """One split of a prepared directory, as the language-modeling task reads it (its raw "examples")."""

    directory: Path
    split: str  # "train" | "valid"

    @property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.directory)

    @property
    def tokens(self) -> int:
        return int(self.manifest["splits"][self.split]["tokens"])

    def stream(self) -> TokenStream:
        return open_split(self.directory, self.split)

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer.load(self.directory / self.manifest["tokenizer"])


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{directory}: not a prepared directory (no {MANIFEST}; `prepare lm` writes one)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a manifest of prepared language-modeling data")
    return manifest


def open_split(directory: str | Path, split: str) -> TokenStream:
    """The memory-mapped shards of one split; each shard's size is checked against the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    dtype = np.dtype(manifest["dtype"])
    pieces = []
    for shard in manifest["splits"][split]["shards"]:
        path = directory / shard["file"]
        expected = int(shard["tokens"]) * dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise DataError(f"{path}: missing or not {expected} bytes as {MANIFEST} says: prepare the data again")
        pieces.append(np.memmap(path, dtype=dtype, mode="r"))
    return TokenStream(pieces)


def verify(directory: str | Path) -> None:
    """Check every shard's sha256 against the manifest (reads every byte)."""
    directory = Path(directory)
    for split in read_manifest(directory)["splits"].values():
        for shard in split["shards"]:
            if _sha256(directory / shard["file"]) != shard["sha256"]:
                raise DataError(f"{directory / shard['file']}: sha256 differs from {MANIFEST}: the file changed")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# --- writing ------------------------------------------------------------------------------------------------------


class ShardWriter:
    """Appends token arrays to `{split}-NNNNN.bin` files of at most `shard_tokens` tokens each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._file: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self.tokens = 0

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._file is None:
                name = f"{self.split}-{len(self.shards):05d}.bin"
                self._file = open(self.directory / name, "wb")  # noqa: SIM115 (closed by _close)
                self.shards.append({"file": name, "tokens": 0, "sha256": ""})
                self._digest = hashlib.sha256()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            data = part.astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
            self._file.write(data)
            self._digest.update(data)
            self.shards[-1]["tokens"] += len(part)
            self.tokens += len(part)
            if self.shards[-1]["tokens"] == self.shard_tokens:
                self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.shards[-1]["sha256"] = self._digest.hexdigest()

    def close(self) -> dict[str, Any]:
        self._close()
        return {"tokens": self.tokens, "shards": self.shards}


def _tail_to_valid(directory: Path, train: dict[str, Any], dtype: np.dtype, count: int) -> dict[str, Any]:
    """Move the last `count` tokens of the training shards into `valid-00000.bin` (the end of the corpus, as
    nanoGPT holds out the end of Tiny Shakespeare); the shards shrink and get their new sha256."""
    tail: list[np.ndarray] = []
    need = count
    while need:
        shard = train["shards"][-1]
        path = directory / shard["file"]
        take = min(need, shard["tokens"])
        data = np.memmap(path, dtype=dtype, mode="r")  # only the tail is read: a shard is up to 512 MB
        tail.insert(0, np.array(data[len(data) - take :]))
        del data
        shard["tokens"] -= take
        need -= take
        if shard["tokens"] == 0:
            path.unlink()
            train["shards"].pop()
        else:
            os.truncate(path, shard["tokens"] * dtype.itemsize)
            shard["sha256"] = _sha256(path)
    train["tokens"] -= count
    valid = ShardWriter(directory, "valid", dtype, SHARD_TOKENS)
    valid.write(np.concatenate(tail))
    return valid.close()


def _total_bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


# Training straight from text files holds the documents as strings, their chunks and the token stream at once:
# about this many bytes of memory per byte of text, at most (measured: bench/data.py), and a .gz file's text is
# assumed this many times its size.
MEMORY_PER_TEXT_BYTE = 8
GZ_RATIO = 4
PREPARE_ADVICE_BYTES = 200 * 10**6  # from this much text on, `train lm` suggests `prepare lm`


def text_bytes(paths: Sequence[str | Path]) -> int:
    """About how many bytes of text the files under `paths` hold (a .gz file: GZ_RATIO times its size)."""
    return sum(f.stat().st_size * (GZ_RATIO if f.suffix == ".gz" else 1) for f in expand(paths))


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_in_memory(paths: Sequence[str | Path], available: int | None = None) -> int:
    """Refuse (DataError, with the advice to `prepare`) a corpus too large to train on from its files on this
    machine; returns its size in bytes."""
    size = text_bytes(paths)
    available = available_memory() if available is None else available
    if available is not None and size * MEMORY_PER_TEXT_BYTE > available:
        raise DataError(
            f"{', '.join(map(str, paths))}: {size / 1e6:,.0f} MB of text needs up to "
            f"{size * MEMORY_PER_TEXT_BYTE / 1e9:.1f} GB of memory to train on from the files, and "
            f"{available / 1e9:.1f} GB is available: tokenize it once with `transformer-networks prepare lm --data "
            f"PATH... --out DIR` (streamed, bounded memory), then train with `--data DIR`"
        )
    return size


def prepare_lm(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    kind: str = "bpe",
    vocab_size: int = 8000,
    valid: Sequence[str | Path] = (),
    valid_fraction: float = 0.005,
    text_field: str = "text",
    errors: str = "strict",
    tokenizer: str | Path | None = None,
    sample_bytes: int = SAMPLE_BYTES,
    shard_tokens: int = SHARD_TOKENS,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Tokenize a corpus once into `out` (see the module docstring); returns the manifest.

    kind / vocab_size: the tokenizer trained (char and word on the whole corpus, streamed; bpe and unigram on its
    first `sample_bytes` of text), unless `tokenizer` names a tokenizer.json to use. valid: files of validation
    text, else the corpus's last `valid_fraction` of tokens. errors: "strict" (a line that is not UTF-8 is an
    error naming it) or "replace"."""
    if errors not in ("strict", "replace"):
        raise UserError(f"--errors must be strict or replace, not {errors!r}")
    if not 0 < valid_fraction < 1:
        raise UserError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    out = Path(out)
    files, valid_files = expand(paths), expand(valid) if valid else []
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UserError(f"{out} exists and is not empty: give --overwrite to replace it")
        if out.is_dir() and not is_prepared(out) and not all(p.suffix in (".bin", ".json") for p in out.iterdir()):
            raise UserError(f"{out} holds files that are not prepared data: refusing to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    # The tokenizer: given, or trained on the corpus (a bounded sample for subwords).
    if tokenizer is not None:
        tok = TextTokenizer.load(tokenizer)
        kind = "given"
    else:
        sample = "" if kind in ("char", "word") else f" on the first {sample_bytes / 1e6:.0f} MB"
        say(f"prepare: training a {kind} tokenizer{sample}")
        tok = train_tokenizer(_sample(document_chunks(files, text_field, errors), kind, sample_bytes), kind, vocab_size)
    tok.save(out / "tokenizer.json")
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32)

    splits: dict[str, Any] = {}
    for split, sources in (("train", files), ("valid", valid_files)):
        if not sources:
            continue
        writer = ShardWriter(out, split, dtype, shard_tokens)
        total = None if any(f.suffix == ".gz" or _kind(f) == "parquet" for f in sources) else _total_bytes(sources)
        seen = [0]  # documents
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenizing {split}", disable=quiet) as bar:
            chunks = _counted(document_chunks(sources, text_field, errors), bar, seen)
            for ids in encode_chunks(tok, chunks, dtype=np.int64):
                writer.write(ids)
        splits[split] = writer.close()
        splits[split]["documents"] = seen[0]
    if splits["train"]["tokens"] < 2:
        raise DataError(f"{', '.join(map(str, paths))}: no text")
    if "valid" in splits:
        valid_source = "files: " + ", ".join(map(str, valid))
    else:
        count = max(2, round(splits["train"]["tokens"] * valid_fraction))
        if count >= splits["train"]["tokens"]:
            raise DataError(f"the corpus has {splits['train']['tokens']} tokens: too few to hold some out")
        splits["valid"] = _tail_to_valid(out, splits["train"], dtype, count)
        valid_source = f"the corpus's last {valid_fraction:.1%} of tokens"
    manifest = {
        "format": FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tokenizer": "tokenizer.json",
        "tokenizer_kind": kind,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "dtype": dtype.name,
        "text_field": text_field,
        "chunk_chars": CHUNK_CHARS,
        "splits": splits,
        "valid_source": valid_source,
        "sources": [{"path": str(f.resolve()), "bytes": f.stat().st_size} for f in files],
        "valid_sources": [{"path": str(f.resolve()), "bytes": f.stat().st_size} for f in valid_files],
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)  # the data is complete only now
    say(
        f"prepare: {splits['train']['tokens']:,} training and {splits['valid']['tokens']:,} validation tokens "
        f"({dtype.name}, {len(splits['train']['shards'])} + {len(splits['valid']['shards'])} shards), vocabulary "
        f"{tok.vocab_size:,}; wrote {out}"
    )
    return manifest


def _sample(chunks: Iterator[tuple[str, bool]], kind: str, limit: int) -> Iterator[str]:
    """What the tokenizer trains on: the whole corpus for char/word (a symbol never seen would be unknown),
    else its chunks until `limit` characters."""
    seen = 0
    for chunk, _ in chunks:
        yield chunk
        seen += len(chunk)
        if kind not in ("char", "word") and seen >= limit:
            return


def _counted(chunks: Iterator[tuple[str, bool]], bar: tqdm, documents: list[int]) -> Iterator[tuple[str, bool]]:
    """The chunks, advancing the progress bar by their size in bytes (UTF-8) and counting the documents."""
    for chunk, last in chunks:
        yield chunk, last
        bar.update(len(chunk.encode("utf-8")))
        documents[0] += last
