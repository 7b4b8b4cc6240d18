import gzip

import pytest

from data_paths import shared_file
from transformer_networks.data.readers import (
    DataError,
    read_classification,
    read_lm_text,
    read_parallel,
    read_translation,
    read_translation_tsv,
)


def write(path, text: str, compress: bool = False):
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_lm_text_from_files_directories_and_gzip(tmp_path):
    (tmp_path / "corpus").mkdir()
    write(tmp_path / "corpus" / "a.txt", "first file\nline two\n")
    write(tmp_path / "corpus" / "b.txt.gz", "zweite Datei\n", compress=True)
    assert read_lm_text(tmp_path / "corpus") == ["first file\nline two\n", "zweite Datei\n"]
    assert read_lm_text([tmp_path / "corpus" / "a.txt"]) == ["first file\nline two\n"]


def test_translation_tsv_and_parallel_files(tmp_path):
    tsv = write(tmp_path / "pairs.tsv", "ein Hund\ta dog\n\nzwei Katzen\ttwo cats\n")
    assert read_translation_tsv(tsv) == [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]
    de = write(tmp_path / "train.de.gz", "ein Hund\nzwei Katzen\n", compress=True)
    en = write(tmp_path / "train.en", "a dog\ntwo cats\n")
    assert read_parallel(de, en) == [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]


def test_translation_jsonl_and_csv(tmp_path):
    expected = [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]
    hf = write(
        tmp_path / "train.jsonl.gz",
        '{"translation": {"de": "ein Hund", "en": "a dog"}}\n\n'
        '{"translation": {"de": "zwei Katzen", "en": "two cats"}}\n',
        compress=True,
    )
    assert read_translation(hf) == expected  # the object's two languages in their order
    assert read_translation(hf, "en", "de") == [(t, s) for s, t in expected]
    fields = write(tmp_path / "train.json", '{"target": "a dog", "source": "ein Hund", "id": 1}\n')
    assert read_translation(fields) == expected[:1]
    table = write(tmp_path / "train.csv", 'id,target,source\n1,a dog,ein Hund\n2,"two cats","zwei Katzen"\n')
    assert read_translation(table) == expected
    langs = write(tmp_path / "langs.csv", "de,en\nein Hund,a dog\n")
    assert read_translation(langs, "de", "en") == expected[:1]
    assert read_translation(write(tmp_path / "pairs.tsv", "ein Hund\ta dog\n")) == expected[:1]


def test_classification_tsv_csv_jsonl(tmp_path):
    tsv = write(tmp_path / "train.tsv", "sentence\tlabel\na fine film\t1\nawful\t0\n")
    assert read_classification(tsv) == [("a fine film", "1"), ("awful", "0")]
    csv_file = write(tmp_path / "train.csv", 'label,text\npos,"good, really"\nneg,bad\n')
    assert read_classification(csv_file) == [("good, really", "pos"), ("bad", "neg")]
    jsonl = write(tmp_path / "train.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
    assert read_classification(jsonl) == [("good", "1"), ("bad", "0")]
    bom = write(tmp_path / "bom.tsv", "\ufefftext\tlabel\nfine\t1\n")
    assert read_classification(bom) == [("fine", "1")]
    custom = write(tmp_path / "custom.tsv", "review\tstars\nok\t3\n")
    assert read_classification(custom, text_column="review", label_column="stars") == [("ok", "3")]


def test_reads_the_shared_sst2_and_multi30k_files():
    rows = read_classification(shared_file("sst2/dev.tsv"))
    assert len(rows) == 872 and {label for _, label in rows} == {"0", "1"}
    pairs = read_parallel(shared_file("multi30k/val.de.gz"), shared_file("multi30k/val.en.gz"))
    assert len(pairs) == 1014


@pytest.mark.parametrize(
    "name, content, reader, message",
    [
        ("missing.txt", None, read_lm_text, "missing.txt: no such file"),
        ("empty.txt", "", read_lm_text, "empty.txt: no text"),
        ("latin1.txt", b"ok\ncaf\xe9\n", read_lm_text, "latin1.txt: line 2: not UTF-8"),
        ("pairs.tsv", "a\tb\nno tab here\n", read_translation_tsv, "pairs.tsv: line 2: expected 'source<TAB>target'"),
        ("empty.tsv", "\n", read_translation_tsv, "empty.tsv: empty file"),
        ("nolabel.tsv", "sentence\tscore\nx\t1\n", read_classification, "nolabel.tsv: line 1: no label column 'label'"),
        ("notext.tsv", "body\tlabel\nx\t1\n", read_classification, "no text column"),
        ("short.tsv", "sentence\tlabel\nx\t1\ny\n", read_classification, "short.tsv: line 3: expected 2 fields"),
        ("bad.jsonl", '{"text": "a", "label": 1}\n{oops\n', read_classification, "bad.jsonl: line 2: invalid JSON"),
        ("nokey.jsonl", '{"text": "a"}\n', read_classification, "nokey.jsonl: line 1: no 'label' key"),
        (
            "t.jsonl",
            '{"source": "a", "target": "b"}\n{"src": "a"}\n',
            read_translation,
            't.jsonl: line 2: expected "source"',
        ),
        ("t3.jsonl", '{"translation": {"de": "a", "en": "b", "fr": "c"}}\n', read_translation, "has 3 languages"),
        (
            "tnum.jsonl",
            '{"source": "a", "target": 3}\n',
            read_translation,
            "tnum.jsonl: line 1: 'source' and 'target' must",
        ),
        ("t.csv", "de,en\nx,y\n", read_translation, "t.csv: line 1: no 'source' or 'target' column"),
        ("t2.csv", "source,target\nx,y\nz\n", read_translation, "t2.csv: line 3: expected 2 fields"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, content, reader, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        reader(path)
    assert message in str(err.value)


def test_parallel_files_must_align(tmp_path):
    de, en = write(tmp_path / "a.de", "eins\nzwei\n"), write(tmp_path / "a.en", "one\n")
    with pytest.raises(DataError, match="line-aligned"):
        read_parallel(de, en)
