"""The streaming detokenizer: pieces that add up to the full decoding, whole characters, spaces in place, stop
strings never shown, bounded work per token."""

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from transformer_networks.data.tokenizer import TextTokenizer, train_tokenizer
from transformer_networks.errors import InputError
from transformer_networks.generation.streaming import TextStreamer, stream_text

TRAIN = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    "All:\nSpeak, speak.\n",
    "Zwei junge Maenner stehen draussen im Garten.",
    "A man in an orange hat starring at something.",
    "the quick brown fox jumps over the lazy dog",
] * 20
TEXTS = [
    "hello world",
    "héllo wörld 日本語 🙂",
    "  leading and trailing spaces  ",
    "multiple   spaces\n\nand\nnewlines\n",
    "Speak, speak. 🙂🙂 naïve café — ünïcödé",
    "日本語のテキスト",
    " ",
    "\n",
    "",
]
ALPHABET = "abcdefghij ABC .,:\n\t  éöü日本語🙂👍🏽€"


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def byte_level_tokenizer() -> TextTokenizer:
    """A byte-level BPE like GPT-2's: every byte is a symbol, so any text encodes, a character possibly split."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TRAIN, trainer)
    return TextTokenizer.from_pretrained_tokenizer(tok)


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, TextTokenizer]:
    return {
        "bpe": train_tokenizer(TRAIN + TEXTS, "bpe", 300),  # Metaspace: the first token of a decode loses its space
        "byte": byte_level_tokenizer(),
        "char": train_tokenizer(TRAIN + TEXTS + [ALPHABET], "char"),
    }


def full_text(tok: TextTokenizer, ids: list[int]) -> str:
    return tok.tokenizer.decode(ids, skip_special_tokens=True)


class Recorded:
    """An iterator over `ids` that counts how many were taken."""

    def __init__(self, ids: list[int]) -> None:
        self.ids, self.taken = ids, 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if self.taken == len(self.ids):
            raise StopIteration
        self.taken += 1
        return self.ids[self.taken - 1]


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_pieces_add_up_to_the_full_decoding(tokenizers, kind):
    tok = tokenizers[kind]
    for text in TEXTS + random_texts(200, seed=1):
        ids = tok.encode(text)
        full = full_text(tok, ids)
        pieces = list(stream_text(tok, ids))
        assert "".join(pieces) == full, (text, ids)
        assert all(pieces), pieces
        if "\ufffd" not in full:
            assert not any("\ufffd" in p for p in pieces), pieces
        # put/finish directly: the text shown so far is always a prefix of the full text
        streamer = TextStreamer(tok)
        for i in ids:
            streamer.put(i)
            assert full.startswith(streamer.text)
        streamer.finish()
        assert streamer.text == full and not streamer.stopped


def test_byte_level_splits_characters_and_none_is_shown_in_halves(tokenizers):
    tok = tokenizers["byte"]
    text = "héllo wörld 日本語 🙂"
    ids = tok.encode(text)
    assert any("\ufffd" in tok.tokenizer.decode([i]) for i in ids)  # some token holds part of a character
    pieces = list(stream_text(tok, ids))
    assert "".join(pieces) == text and len(pieces) > 1
    assert not any("\ufffd" in p for p in pieces)


def test_metaspace_spaces_are_kept(tokenizers):
    tok = tokenizers["bpe"]
    text = "hear me speak"
    ids = tok.encode(text)
    assert "".join(tok.tokenizer.decode([i]) for i in ids) != text  # one at a time loses the spaces
    assert "".join(stream_text(tok, ids)) == text


@pytest.mark.parametrize("kind", ["bpe", "byte"])
def test_random_ids(tokenizers, kind):
    """Any ids, not only those of some text: byte-level then makes invalid UTF-8, shown as U+FFFD at the end."""
    tok = tokenizers[kind]
    rng = random.Random(2)
    for _ in range(200):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randint(0, 30))]
        assert "".join(stream_text(tok, ids)) == full_text(tok, ids), ids


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_special_tokens_emit_nothing(tokenizers, kind):
    tok = tokenizers[kind]
    ids = tok.encode("hear me speak")
    special = tok.eos_id
    mixed = [special] + ids[:2] + [special, special] + ids[2:] + [special]
    streamer = TextStreamer(tok)
    assert streamer.put(special) == ""
    pieces = [streamer.put(i) for i in mixed[1:]] + [streamer.finish()]
    assert [p for i, p in zip(mixed[1:], pieces, strict=False) if i == special] == ["", "", ""]
    assert "".join(pieces) == full_text(tok, mixed) == full_text(tok, ids)


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_stop_string_over_several_tokens_is_never_shown(tokenizers, kind):
    tok = tokenizers[kind]
    before, stop, after = "First Citizen: hear me", " speak. All", ": more text"
    ids = tok.encode(before + stop + after)
    full = full_text(tok, ids)
    start = full.index(stop)
    stop_tokens = [k for k in range(len(ids) + 1) if stop in full_text(tok, ids[:k])]
    first_stop_token = stop_tokens[0]
    assert len(full_text(tok, ids[: first_stop_token - 1])) > start  # the stop string spans 2+ tokens
    source = Recorded(ids)
    pieces = list(stream_text(tok, source, stop=[stop]))
    assert "".join(pieces) == full[:start] == before
    assert all(pieces)
    assert source.taken == first_stop_token  # nothing read after the token that completed it
    # step by step: no prefix of the stop string is ever shown, the text before it all is
    streamer = TextStreamer(tok, stop=["never there", stop])
    for i in ids[:first_stop_token]:
        streamer.put(i)
        assert before.startswith(streamer.text) and not streamer.text.endswith(" ")
    assert streamer.stopped and streamer.text == before
    assert streamer.put(ids[first_stop_token]) == "" and streamer.finish() == "" and streamer.text == before


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_stop_string_at_the_start(tokenizers, kind):
    tok = tokenizers[kind]
    ids = tok.encode("speak. hear me")
    source = Recorded(ids)
    assert list(stream_text(tok, source, stop=["speak"])) == []
    assert source.taken < len(ids)
    streamer = TextStreamer(tok, stop=["speak"])
    for i in ids:
        streamer.put(i)
    assert streamer.stopped and streamer.text == "" and streamer.finish() == ""


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_near_miss_is_shown_in_full(tokenizers, kind):
    tok = tokenizers[kind]
    for text in ("hear me spea", "hear me spea all", "hear me speaSPEAK", "spe spe speak"):
        ids = tok.encode(text)
        full = full_text(tok, ids)
        stop = ["speak.", "me hear"]
        pieces = list(stream_text(tok, ids, stop=stop))
        assert "".join(pieces) == full
        streamer = TextStreamer(tok, stop=stop)
        for i in ids:
            streamer.put(i)
        assert not streamer.stopped and streamer.text + streamer.finish() == full
    # a near miss, then the stop string
    ids = tok.encode("me he speak me hear all")
    assert "".join(stream_text(tok, ids, stop=["me hear"])) == "me he speak "


def test_several_stop_strings_the_first_found_wins(tokenizers):
    tok = tokenizers["char"]
    assert "".join(stream_text(tok, tok.encode("xabcdef"), stop=["cde", "abc"])) == "x"
    assert "".join(stream_text(tok, tok.encode("xabcdef"), stop=["bcd", "abcdef"])) == "xa"  # bcd ends first
    assert "".join(stream_text(tok, tok.encode("x🙂y"), stop=["🙂"])) == "x"
    assert "".join(stream_text(tokenizers["byte"], tokenizers["byte"].encode("x🙂y"), stop=["🙂"])) == "x"


def test_stop_string_inside_held_back_text_at_finish(tokenizers):
    tok = tokenizers["char"]
    streamer = TextStreamer(tok, stop=["abc", "b!"])
    pieces = [streamer.put(i) for i in tok.encode("xab")]
    assert pieces == ["x", "", ""]  # "ab" may still become "abc"
    assert streamer.finish() == "ab" and streamer.text == "xab" and not streamer.stopped


class RecordingDecode:
    """Stands in for a `tokenizers.Tokenizer`, recording how many ids each decode call gets."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.inner, self.lengths = tokenizer, []

    def decode(self, ids, skip_special_tokens=True):
        self.lengths.append(len(ids))
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_work_per_token_is_bounded(tokenizers, kind):
    tok = tokenizers[kind]
    text = " ".join(TRAIN)
    ids = tok.encode(text)[:500]
    assert len(ids) == 500
    recording = RecordingDecode(tok.tokenizer)
    wrapped = TextTokenizer.from_pretrained_tokenizer(tok.tokenizer)
    wrapped.tokenizer = recording
    pieces = list(stream_text(wrapped, ids, stop=["never there"]))
    assert "".join(pieces) == full_text(tok, ids)
    assert recording.lengths and max(recording.lengths) <= 4
    assert len(recording.lengths) <= 2 * len(ids) + 2


class DropBeforeY:
    """A decoder whose text for a token depends on the next one: a first "x" followed by "y" decodes to nothing."""

    def decode_chain(self, tokens: list[str]) -> list[str]:
        drop = len(tokens) > 1 and tokens[:2] == ["x", "y"]
        return ["" if i == 0 and drop else t for i, t in enumerate(tokens)]


def test_window_that_is_not_an_extension_falls_back_to_the_full_decoding():
    vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "x": 3, "y": 4}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    inner.decoder = decoders.Decoder.custom(DropBeforeY())
    tok = TextTokenizer.from_pretrained_tokenizer(inner)
    ids = [1, 2, 3, 4, 1]  # a b x y a: the full text keeps the x (it is not the first token)
    assert full_text(tok, ids) == "abxya" and full_text(tok, [3, 4]) == "y"
    recording = RecordingDecode(inner)
    tok.tokenizer = recording
    assert "".join(stream_text(tok, ids)) == "abxya"
    assert max(recording.lengths) == 4  # the window [x, y] gave "y", not an extension of "x": all 4 ids decoded


def test_errors(tokenizers):
    tok = tokenizers["char"]
    with pytest.raises(InputError, match="empty"):
        TextStreamer(tok, stop=[""])
    with pytest.raises(InputError, match="not a string"):
        TextStreamer(tok, stop="abc")
    streamer = TextStreamer(tok)
    streamer.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        streamer.put(7)


@pytest.mark.parametrize("kind", ["bpe", "byte", "char", "word"])
def test_a_context_places_the_first_piece_after_it(tokenizers, kind):
    """With the prompt as context, the pieces are what decoding prompt and continuation together adds to the
    prompt's own text: a word-level tokenizer's space between them, a subword's leading space."""
    tok = tokenizers.get(kind) or train_tokenizer(TEXTS, "word", 1000)
    for text in TEXTS:
        ids = tok.tokenizer.encode(text, add_special_tokens=False).ids
        for cut in range(1, len(ids)):
            head, whole = full_text(tok, ids[:cut]), full_text(tok, ids)
            if not whole.startswith(head):
                continue
            streamer = TextStreamer(tok, context=ids[:cut])
            pieces = [streamer.put(t) for t in ids[cut:]] + [streamer.finish()]
            assert "".join(pieces) == whole[len(head) :], (kind, text, cut)
