import pytest

from transformer_networks.data.builtin import TOPICS, load_builtin
from transformer_networks.errors import UserError


def test_stdlib_docs_is_a_real_corpus_with_a_disjoint_test_split():
    ds = load_builtin("stdlib-docs")
    assert ds.task == "lm" and ds.tokenizer == "char"
    train_chars = sum(map(len, ds.train))
    assert train_chars > 500_000  # about 1.5M characters of docstrings on CPython 3.11
    assert 0.03 < sum(map(len, ds.test)) / train_chars < 0.3
    assert not set(ds.train) & set(ds.test)
    assert load_builtin("stdlib-docs").train == ds.train  # deterministic


def test_stdlib_topics_labels_are_the_packages():
    ds = load_builtin("stdlib-topics")
    labels = {y for _, y in ds.train} | {y for _, y in ds.test}
    assert labels == set(TOPICS)
    assert len(ds.train) > 1000 and 0.15 < len(ds.test) / (len(ds.train) + len(ds.test)) < 0.25
    assert all(text and "\n" not in text for text, _ in ds.train)


def test_scan_builtins():
    simple, length = load_builtin("scan"), load_builtin("scan-length")
    assert len(simple.train) == 16_728 and len(simple.test) == 4_182 and simple.tokenizer == "word"
    assert max(len(t.split()) for _, t in length.train) == 22 < min(len(t.split()) for _, t in length.test)


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(UserError, match="builtin:scan, builtin:scan-simple"):
        load_builtin("mnist")
