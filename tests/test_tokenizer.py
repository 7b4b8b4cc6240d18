import pytest

from transformer_networks.data.scan import scan_commands
from transformer_networks.data.tokenizer import EOS_ID, SPECIAL_TOKENS, TextTokenizer, train_tokenizer
from transformer_networks.errors import UserError

TEXT = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    "All:\nSpeak, speak.\n",
    "Zwei junge Männer stehen draußen im Garten.",
    "A man in an orange hat starring at something.",
] * 20


@pytest.mark.parametrize("kind", ["char", "bpe", "unigram"])
def test_round_trip_gives_back_the_text(kind, tmp_path):
    tok = train_tokenizer(TEXT, kind, vocab_size=120)
    for text in set(TEXT):
        ids = tok.encode(text, bos=True, eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == text
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(TEXT[2]) == tok.encode(TEXT[2]) and again.vocab_size == tok.vocab_size


def test_special_tokens_have_fixed_ids():
    for kind in ("char", "word", "bpe", "unigram"):
        tok = train_tokenizer(TEXT, kind, vocab_size=120)
        assert [tok.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_character_level_keeps_every_character():
    tok = train_tokenizer(["ab\nc"], "char")
    assert tok.tokens("a\nb") == ["a", "\n", "b"]
    assert tok.vocab_size == len(SPECIAL_TOKENS) + 4
    assert tok.encode("abz")[-1] == tok.unk_id


def test_word_level_on_scan():
    pairs = scan_commands()
    tok = train_tokenizer((c for c, _ in pairs), "word")
    assert tok.vocab_size == len(SPECIAL_TOKENS) + 13  # SCAN's 13 command words
    command = "jump opposite left twice and walk"
    assert tok.tokens(command) == command.split()
    assert tok.decode(tok.encode(command) + [EOS_ID, 7]) == command  # stops at <eos>


def test_word_level_keeps_every_word_past_the_trainers_default_of_30000():
    words = [f"w{i}" for i in range(30_010)]
    tok = train_tokenizer([" ".join(words)], "word")
    assert tok.vocab_size == len(SPECIAL_TOKENS) + len(words)
    assert tok.unk_id not in tok.encode("w0 w30009")


@pytest.mark.parametrize("kind", ["word", "bpe", "unigram"])
def test_batch_encoding_gives_each_texts_ids_alone(kind):
    tok = train_tokenizer(TEXT, kind, vocab_size=120)
    texts = [*set(TEXT), "unseen wörds, <unk> and <eos> inside", ""]
    alone = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == alone
    assert list(tok.encode_each(texts, chunk=2)) == alone  # chunk boundaries change nothing
    assert [a.tolist() for a in tok.encode_arrays(texts)] == alone


def test_subword_vocabulary_size_is_bounded():
    tok = train_tokenizer(TEXT, "bpe", vocab_size=60)
    assert tok.vocab_size <= 60


def test_errors():
    with pytest.raises(UserError, match="char, word, bpe, unigram"):
        train_tokenizer(TEXT, "sentencepiece")
    with pytest.raises(UserError, match="cannot load tokenizer"):
        TextTokenizer.load("/nonexistent/tokenizer.json")


def test_the_fast_character_tokenizer_equals_the_librarys_trainer_and_encoder():
    """`train_tokenizer(kind="char")` counts characters itself and encodes through a table: the tokenizer.json is
    the one `WordLevelTrainer` writes, and the ids are those the library's encoder gives (unknown characters,
    special tokens' names in the text, astral characters, line ends)."""
    import random

    import numpy as np

    rng = random.Random(0)
    alphabet = "abc xyz\n\t\r.éü日本😀<>/" + "eos"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300))) for _ in range(40)]
    fast, reference = train_tokenizer(texts, "char"), train_tokenizer(texts, "char-trainer")
    assert fast.tokenizer.to_str() == reference.tokenizer.to_str()
    probe = [*texts[:5], "a <eos> b <pad>", "never seen: Ω ✓", ""]
    assert [a.tolist() for a in fast.encode_arrays(probe, np.int64)] == reference.encode_batch(probe)
