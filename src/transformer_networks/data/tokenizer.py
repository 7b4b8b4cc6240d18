"""Tokenizers: character-level, word-level, and subword BPE / Unigram trained on the user's data.

All four are Hugging Face `tokenizers` objects underneath, so every kind saves to and loads from one
`tokenizer.json`. The special tokens come first, in this order, so their ids are the same for every tokenizer:
    0 <pad>   1 <unk>   2 <bos>   3 <eos>   4 <cls>
(`TransformerConfig.pad_id` defaults to 0.) `decode` drops special tokens and gives back readable text:
characters joined as they were, words joined by single spaces, subwords with their spaces restored.

A pretrained model's own `tokenizer.json` (BERT's WordPiece, GPT-2's byte-level BPE, ...) keeps its ids: the roles
pad/unk/bos/eos/cls are then found by the tokens' names (`KNOWN_SPECIALS`), so `pad_id`, `eos_id` and the others
are per tokenizer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..errors import UserError
from ..tokens import BOS_ID, CLS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

__all__ = [
    "BOS_ID",
    "CLS_ID",
    "EOS_ID",
    "KINDS",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "TextTokenizer",
    "train_tokenizer",
]

ROLES = ("pad", "unk", "bos", "eos", "cls")
# The names each role goes by in other tokenizers (BERT, GPT-2, BART/RoBERTa, Marian), the first found wins. A
# tokenizer without padding pads with its end token; one without a class token uses its start token.
KNOWN_SPECIALS = {
    "pad": ("<pad>", "[PAD]"),
    "unk": ("<unk>", "[UNK]", "<|endoftext|>"),
    "bos": ("<bos>", "<s>", "[CLS]", "<|endoftext|>"),
    "eos": ("<eos>", "</s>", "[SEP]", "<|endoftext|>"),
    "cls": ("<cls>", "[CLS]", "<s>"),
}
KINDS = ("char", "word", "bpe", "unigram")


class TextTokenizer:
    """Text <-> token ids. Build one with `train_tokenizer`, `TextTokenizer.load(path)`, or
    `TextTokenizer.from_pretrained_tokenizer(tokenizer)` for a pretrained model's own."""

    def __init__(self, tokenizer: Tokenizer, specials: dict[str, int] | None = None) -> None:
        """specials: the id of each role (pad, unk, bos, eos, cls); None = ours, ids 0-4, checked."""
        if specials is None:
            for i, token in enumerate(SPECIAL_TOKENS):
                if tokenizer.token_to_id(token) != i:
                    raise UserError(f"tokenizer has {token} at id {tokenizer.token_to_id(token)}, expected {i}")
            specials = dict(zip(ROLES, range(len(ROLES)), strict=True))
        self.tokenizer = tokenizer
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.cls_id = (specials[r] for r in ROLES)
        self._char_table = _char_table(tokenizer)  # a character tokenizer's ids by code point, else None
        # What calling the tokenizer adds around each text for the model it belongs to (a checkpoint sets it):
        # "cls" before (a classifier reads <cls> first), "eos" after (a translator's source ends with <eos>).
        self.adds: tuple[str, ...] = ()

    @classmethod
    def from_pretrained_tokenizer(cls, tokenizer: Tokenizer, source: str = "tokenizer") -> TextTokenizer:
        """Wrap any `tokenizers.Tokenizer`: ours as it is, another by the names of its special tokens."""
        if all(tokenizer.token_to_id(t) == i for i, t in enumerate(SPECIAL_TOKENS)):
            return cls(tokenizer)
        found = {
            role: next((i for name in names if (i := tokenizer.token_to_id(name)) is not None), None)
            for role, names in KNOWN_SPECIALS.items()
        }
        found["pad"] = found["pad"] if found["pad"] is not None else found["eos"]
        found["cls"] = found["cls"] if found["cls"] is not None else found["bos"]
        found["unk"] = found["unk"] if found["unk"] is not None else found["eos"]
        missing = [role for role, i in found.items() if i is None]
        if missing:
            raise UserError(
                f"{source}: no token for {', '.join(missing)} (looked for "
                f"{'; '.join(' '.join(KNOWN_SPECIALS[r]) for r in missing)})"
            )
        return cls(tokenizer, {role: i for role, i in found.items() if i is not None})  # all of them: none missing

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str, *, bos: bool = False, eos: bool = False, cls: bool = False) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.cls_id] * cls + [self.bos_id] * bos + ids + [self.eos_id] * eos

    def __call__(
        self,
        texts: str | Sequence[str],
        *,
        padding: bool = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
        padding_side: str = "right",
    ) -> dict[str, Any]:
        """Encode like a Hugging Face tokenizer: {"input_ids", "attention_mask"}, with the special tokens the model
        needs (`adds`: <cls> first for a classifier, <eos> last for a translator's source) unless
        add_special_tokens=False. padding: to the longest text, with <pad>, on `padding_side` ("left" for a batch
        of prompts to generate from); truncation: cut to `max_length` (keeping the specials). return_tensors="pt":
        tensors, the mask boolean (True = real token, as the models take it); else lists (mask 1/0)."""
        single = isinstance(texts, str)
        batch = [texts] if isinstance(texts, str) else list(texts)
        if return_tensors not in (None, "pt"):
            raise UserError(f"return_tensors={return_tensors!r}: only 'pt' (PyTorch) or None")
        if padding_side not in ("right", "left"):
            raise UserError(f"padding_side={padding_side!r}: 'right' or 'left'")
        cls_first = add_special_tokens and "cls" in self.adds
        eos_last = add_special_tokens and "eos" in self.adds
        rows = []
        for ids in self.encode_batch(batch):
            if truncation and max_length is not None:
                ids = ids[: max(0, max_length - cls_first - eos_last)]
            rows.append([self.cls_id] * cls_first + ids + [self.eos_id] * eos_last)
        width = max((len(r) for r in rows), default=0) if padding else None
        if return_tensors == "pt" and width is None and len({len(r) for r in rows}) > 1:
            raise UserError("texts of different lengths make no tensor: pass padding=True")
        masks = []
        for i, r in enumerate(rows):
            fill = (width or len(r)) - len(r)
            mask = [1] * len(r)
            if padding_side == "right":
                rows[i], mask = r + [self.pad_id] * fill, mask + [0] * fill
            else:
                rows[i], mask = [self.pad_id] * fill + r, [0] * fill + mask
            masks.append(mask)
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(rows, dtype=torch.long), "attention_mask": torch.tensor(masks).bool()}
        if single:
            return {"input_ids": rows[0], "attention_mask": masks[0]}
        return {"input_ids": rows, "attention_mask": masks}

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The ids of many texts, encoded in parallel. `encode_batch_fast` (tokenizers >= 0.21) skips the character
        offsets the ids do not need: about twice as fast."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def encode_each(self, texts: Sequence[str], chunk: int = 4096) -> Iterator[list[int]]:
        """The ids of each text in turn, `encode_batch`ed `chunk` texts at a time: a dataset's ids are never all
        lists of Python ints at once."""
        for start in range(0, len(texts), chunk):
            yield from self.encode_batch(list(texts[start : start + chunk]))

    def encode_arrays(self, texts: list[str], dtype: np.dtype | type = np.int32) -> list[np.ndarray]:
        """`encode_batch` as arrays (what tokenizing a corpus needs: no list of Python ints per token). A character
        tokenizer looks each character up in a table, many times faster than the general path (identical ids:
        tested); text holding a special token's name takes the general path, which matches those names."""
        table = self._char_table
        if table is None:
            return [np.asarray(ids, dtype=dtype) for ids in self.encode_batch(texts)]
        out: list[np.ndarray | None] = [None] * len(texts)
        general = [i for i, t in enumerate(texts) if "<" in t and any(name in t for name in self._special_names)]
        for i, ids in zip(general, self.encode_batch([texts[i] for i in general]), strict=True):
            out[i] = np.asarray(ids, dtype=dtype)
        for i, text in enumerate(texts):
            if out[i] is None:
                points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                known = points < len(table)
                found = np.where(known, table[np.where(known, points, 0)], self.unk_id)
                out[i] = found.astype(dtype, copy=False)
        return cast(list[np.ndarray], out)

    @property
    def _special_names(self) -> list[str]:
        return [t.content for t in self.tokenizer.get_added_tokens_decoder().values()]

    def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """(ids, character span of each token in its text) for each text: `text[start:end]` is what the token
        was read from (normalization such as lower-casing undone), which extractive QA answers with."""
        return [(e.ids, e.offsets) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens dropped; stops at the first <eos>."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust library raises plain Exceptions with its own message
            raise UserError(f"{path}: cannot load tokenizer: {e}") from None
        return cls.from_pretrained_tokenizer(tokenizer, str(path))


EVERY_SYMBOL = 1 << 31  # a vocabulary bound no corpus reaches: the word-level trainers keep every symbol seen


def train_tokenizer(
    texts: Iterable[str], kind: str = "bpe", vocab_size: int = 8000, *, split_punctuation: bool = False
) -> TextTokenizer:
    """Learn a vocabulary from `texts`. `vocab_size` bounds subword vocabularies (char and word keep every
    symbol seen). Unknown symbols at encoding time become <unk>. `split_punctuation`: every punctuation mark is a
    token of its own (word, bpe, unigram), so that a span of tokens can end before a full stop or a comma (what
    extractive QA needs: "Denver Broncos." holds the answer "Denver Broncos")."""
    trainer: trainers.Trainer
    if kind == "char":  # counted here: the same vocabulary as WordLevelTrainer, without a pass per character
        return TextTokenizer(_char_tokenizer(texts))
    if kind == "char-trainer":  # the library's trainer (what the fast count is tested against)
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, "\n" too
        tok.decoder = decoders.Fuse()  # join without separators
        trainer = trainers.WordLevelTrainer(
            vocab_size=EVERY_SYMBOL, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # Every word seen: the trainer's own default keeps the 30,000 most frequent.
        trainer = trainers.WordLevelTrainer(
            vocab_size=EVERY_SYMBOL, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind in ("bpe", "unigram"):
        # SentencePiece-style: spaces become "▁" and are put back on decoding, so text round-trips.
        if kind == "bpe":
            tok = Tokenizer(models.BPE(unk_token="<unk>"))
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
            )
        else:
            tok = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token="<unk>", show_progress=False
            )
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        raise UserError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
    if split_punctuation and kind != "char":
        tok.pre_tokenizer = pre_tokenizers.Sequence([tok.pre_tokenizer, pre_tokenizers.Punctuation()])
    tok.train_from_iterator(texts, trainer)
    return TextTokenizer(tok)


def _char_table(tokenizer: Tokenizer) -> np.ndarray | None:
    """For a character tokenizer as `train_tokenizer("char")` builds (WordLevel over single characters, no
    normalizer): each code point's id (unknown ones: <unk>'s), else None."""
    if not isinstance(tokenizer.model, models.WordLevel) or tokenizer.normalizer is not None:
        return None
    try:
        spec = json.loads(tokenizer.to_str())
    except Exception:  # a custom Python component cannot be serialized: not a tokenizer this library trained
        return None
    pre = spec.get("pre_tokenizer") or {}
    if (
        spec.get("normalizer") is not None
        or spec["model"].get("type") != "WordLevel"
        or pre.get("type") != "Split"
        or pre.get("pattern") != {"Regex": "[\\s\\S]"}
        or pre.get("behavior") != "Isolated"
    ):
        return None
    vocab = {token: i for token, i in spec["model"]["vocab"].items() if len(token) == 1}
    unk = spec["model"]["vocab"].get(spec["model"].get("unk_token"), 0)
    table = np.full(max(map(ord, vocab), default=0) + 1, unk, dtype=np.int64)
    for token, i in vocab.items():
        table[ord(token)] = i
    return table


def _char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """The character tokenizer `WordLevelTrainer` would train on `texts`: the special tokens, then every character
    by count (most frequent first, ties in code-point order), each character a token ("\n" too)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for ch, _ in ordered:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok
