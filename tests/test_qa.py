"""Question answering: reading SQuAD / JSONL, windows over long contexts, the span search, the loss, and the
model family."""

import gzip
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_networks import TransformerConfig
from transformer_networks.config import TrainConfig
from transformer_networks.data.qa import QAExample, read_qa
from transformer_networks.data.readers import DataError
from transformer_networks.data.tokenizer import train_tokenizer
from transformer_networks.models import MODELS, SpanLogits, TransformerQA
from transformer_networks.tasks import TASKS, QuestionAnsweringTask
from transformer_networks.tasks.classification import ClassificationTask

CONTEXT = "Denver Broncos beat the Carolina Panthers in Santa Clara, California."


def squad(paragraphs, version_2=False):
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "Super_Bowl", "paragraphs": paragraphs}],
    }


def write(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# --- reading -----------------------------------------------------------------------------------------------------


def test_squad_v1_and_v2_json_are_read_with_every_gold_answer(tmp_path):
    doc = squad(
        [
            {
                "context": CONTEXT,
                "qas": [
                    {
                        "id": "q1",
                        "question": "Who won?",
                        "answers": [
                            {"text": "Denver Broncos", "answer_start": 0},
                            {"text": "Broncos", "answer_start": 7},
                        ],
                    },
                    {
                        "id": "q2",
                        "question": "Who sang?",
                        "answers": [],
                        "plausible_answers": [{"text": "Carolina", "answer_start": 24}],
                        "is_impossible": True,
                    },
                ],
            }
        ],
        version_2=True,
    )
    path = write(tmp_path / "train.json", doc)
    examples = read_qa(path)
    assert [e.id for e in examples] == ["q1", "q2"]
    assert examples[0].answers == (("Denver Broncos", 0), ("Broncos", 7))
    assert examples[0].title == "Super_Bowl" and examples[0].answerable
    assert examples[1].answers == () and not examples[1].answerable
    gz = tmp_path / "train.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_qa(gz) == examples


def test_jsonl_with_answers_or_an_answer_string(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps({"question": "Where?", "context": CONTEXT, "answers": [{"text": "Santa Clara", "answer_start": 45}]})
        + "\n\n"
        + json.dumps({"id": "x", "question": "Who lost?", "context": CONTEXT, "answer": "Carolina Panthers"})
        + "\n",
        encoding="utf-8",
    )
    first, second = read_qa(path)
    assert first.id == "line-1" and first.answers == (("Santa Clara", 45),)
    assert second.id == "x" and second.answers == (("Carolina Panthers", 24),)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"question": "q", "context": CONTEXT, "answers": [{"text": "Denver", "answer_start": 3}]}, "spans 'ver Br'"),
        ({"question": "q", "context": CONTEXT}, "no 'answers' or 'answer' field"),
        ({"question": "q", "context": 7, "answer": "x"}, "'context' must be a string"),
        ({"context": CONTEXT, "answer": "Denver"}, "no 'question' field"),
        ({"question": "q", "context": CONTEXT, "answer": "Seattle"}, "'Seattle' is not in the context"),
    ],
)
def test_bad_jsonl_records_name_the_file_and_line(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    good = {"question": "q", "context": CONTEXT, "answer": "Denver"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_qa(path)
    assert f"{path}: line 2" in str(e.value) and message in str(e.value)


def test_bad_squad_records_name_the_question_id(tmp_path):
    doc = squad(
        [
            {
                "context": CONTEXT,
                "qas": [{"id": "abc", "question": "q", "answers": [{"text": "Denver", "answer_start": 1}]}],
            }
        ]
    )
    with pytest.raises(DataError, match=r"question id abc: answer 1: answer_start 1 spans 'enver ' in the context"):
        read_qa(write(tmp_path / "d.json", doc))
    doc["data"][0]["paragraphs"][0]["context"] = ["not", "text"]
    with pytest.raises(DataError, match=r"paragraph 1: 'context' must be a string"):
        read_qa(write(tmp_path / "d.json", doc))
    with pytest.raises(DataError, match="not SQuAD JSON"):
        read_qa(write(tmp_path / "d.json", {"articles": []}))


# --- windows and labels -----------------------------------------------------------------------------------------


def long_context(n=60):
    return " ".join(f"Sentence {i} says w{i}." for i in range(n))


@pytest.fixture(scope="module")
def tokenizer():
    texts = [long_context(), CONTEXT, "Who won? Where is w7? What does sentence 3 say?"]
    return train_tokenizer(texts, "word", split_punctuation=True)


def make_task(tokenizer, **settings):
    cfg = TrainConfig(**{"max_len": 32, "doc_stride": 8, "batch_size": 4, **settings})
    return QuestionAnsweringTask(cfg, tokenizer)


def test_windows_overlap_by_doc_stride_and_label_the_exact_answer_span(tokenizer):
    context = long_context()
    answers = [(f"w{i}", context.index(f"w{i}.")) for i in (0, 7, 31, 59)]
    raw = [QAExample(f"q{i}", "Where is it?", context, (a,)) for i, a in enumerate(answers)]
    task = make_task(tokenizer)
    encoded = task.encode(raw)
    assert encoded.dropped == 0 and encoded.kept_raw == raw
    head = 1 + len(tokenizer.encode("Where is it?")) + 1
    room = 32 - head - 1
    per_question = [w for w in encoded.examples if w.example == 0]
    assert all(len(w.ids) <= 32 for w in encoded.examples)
    assert len(per_question) > 1
    for a, b in zip(
        per_question, per_question[1:], strict=False
    ):  # consecutive slices share doc_stride = 8 context tokens
        shared = set(filter(None, a.offsets)) & set(filter(None, b.offsets))
        assert len(shared) == 8
        assert len(list(filter(None, a.offsets))) == room
    # Every question: some window holds its answer, and its labelled tokens are exactly the answer's characters.
    for i, (text, _start) in enumerate(answers):
        labelled = [w for w in encoded.examples if w.example == i and w.start > 0]
        assert labelled
        for w in labelled:
            assert context[w.offsets[w.start][0] : w.offsets[w.end][1]] == text
            assert w.types[w.start] == 1 and w.types[0] == 0
        unlabelled = [w for w in encoded.examples if w.example == i and w.start == 0]
        assert all(w.end == 0 for w in unlabelled)


def test_group_by_length_batches_the_same_windows_with_less_padding(tokenizer):
    words = long_context().split()
    raw = [QAExample(f"q{i}", "Where is it?", " ".join(words[: 3 + (7 * i) % 23]), ((words[0], 0),)) for i in range(40)]
    plain, grouped = make_task(tokenizer, max_len=64), make_task(tokenizer, max_len=64, group_by_length=True)
    encoded = plain.encode(raw)

    def rows(batches):
        return sorted(tuple(r[r != 0].tolist()) for b in batches for r in b["ids"])

    for epoch in (0, 1):
        a, b = plain.batches(encoded, epoch=epoch), grouped.batches(encoded, epoch=epoch)
        assert rows(a) == rows(b)  # the same windows, each once
        assert sum(x["ids"].numel() for x in b) < 0.8 * sum(x["ids"].numel() for x in a)
        # Every row keeps its own labels and token types.
        for x in b:
            assert x["token_type_ids"].shape == x["ids"].shape and len(x["starts"]) == len(x["ids"])
    assert rows(grouped.batches(encoded)) == rows(plain.batches(encoded))  # evaluation order: unchanged
    assert [x["ids"].tolist() for x in grouped.batches(encoded)] == [x["ids"].tolist() for x in plain.batches(encoded)]


def test_group_by_length_in_classification():
    texts = [" ".join(["word"] * (1 + (5 * i) % 30)) for i in range(64)]
    cls_tokenizer = train_tokenizer(texts, "word")
    raw = [(t, "ab"[i % 2]) for i, t in enumerate(texts)]
    plain = ClassificationTask(TrainConfig(batch_size=8, max_len=64), cls_tokenizer, labels=["a", "b"])
    grouped = ClassificationTask(
        TrainConfig(batch_size=8, max_len=64, group_by_length=True), cls_tokenizer, labels=["a", "b"]
    )
    encoded = plain.encode(raw)
    a, b = plain.batches(encoded, epoch=0), grouped.batches(encoded, epoch=0)
    pairs = sorted((int((r != 0).sum()), int(y)) for x in b for r, y in zip(x["ids"], x["labels"], strict=True))
    assert pairs == sorted((int((r != 0).sum()), int(y)) for x in a for r, y in zip(x["ids"], x["labels"], strict=True))
    assert sum(x["ids"].numel() for x in b) < 0.8 * sum(x["ids"].numel() for x in a)


def test_an_answer_no_window_holds_is_counted_and_left_out_of_training(tokenizer):
    context = long_context()
    text = context[context.index("w3.") : context.index("w40.") + 3]  # longer than any window
    raw = [
        QAExample("long", "Where is it?", context, ((text, context.index("w3.")),)),
        QAExample("short", "Where is it?", CONTEXT, (("Santa Clara", 45),)),
    ]
    task = make_task(tokenizer)
    encoded = task.encode(raw)
    assert encoded.dropped == 1
    trained = [w for batch in task.batches(encoded, epoch=0) for w in [batch]]
    rows = sum(len(b["ids"]) for b in trained)
    assert rows == sum(1 for w in encoded.examples if w.example == 1)  # only the short question's windows
    assert sum(len(b["ids"]) for b in task.batches(encoded)) == len(encoded.examples)  # evaluation: all of them
    lines = []
    task.describe("training data", encoded, lines.append)
    assert "1 whose answer no window holds whole" in lines[0]


def test_holdout_keeps_every_question_of_a_context_on_one_side():
    raw = [QAExample(f"{c}-{q}", f"q{q}", f"context {c}", ((f"{c}", 8),)) for c in range(20) for q in range(3)]
    train, valid = QuestionAnsweringTask.holdout(raw, 0.2, seed=1)
    assert len(valid) == 12 and len(train) == 48
    assert not {e.context for e in train} & {e.context for e in valid}
    assert QuestionAnsweringTask.holdout(raw, 0.2, seed=1) == (train, valid)
    assert QuestionAnsweringTask.holdout(raw, 0.2, seed=2) != (train, valid)


# --- the span search and the loss --------------------------------------------------------------------------------


class TableModel(nn.Module):
    """Start and end logits looked up per token id (-5 unless given): a model whose answers are known."""

    def __init__(self, vocab, start, end):
        super().__init__()
        self.start = torch.full((vocab,), -5.0)
        self.end = torch.full((vocab,), -5.0)
        for i, v in start.items():
            self.start[i] = v
        for i, v in end.items():
            self.end[i] = v
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, token_type_ids=None):
        return SpanLogits(self.start[ids], self.end[ids])


def test_predict_takes_the_best_span_within_the_limits_and_maps_it_to_characters(tokenizer):
    task = make_task(tokenizer, max_len=64, max_answer_length=3, n_best=5)
    ids = {w: tokenizer.encode(w)[0] for w in ("Denver", "Broncos", "Carolina", "Panthers", "Santa", "California")}
    model = TableModel(
        tokenizer.vocab_size,
        start={ids["Denver"]: 5.0, ids["Carolina"]: 4.0, ids["Santa"]: 9.0},
        # Santa ... California spans 4 tokens ("Santa Clara , California"): over max_answer_length=3
        end={ids["Broncos"]: 5.0, ids["Panthers"]: 4.0, ids["California"]: 9.0},
    )
    raw = [QAExample("q", "Who won?", CONTEXT)]
    [answers], _ = task.predict(model, task.encode(raw), torch.device("cpu"), n_best=3)
    assert [a.text for a in answers[:2]] == ["Denver Broncos", "Carolina Panthers"]
    assert [a.score for a in answers] == [10.0, 8.0, 4.0]  # then Santa (9 - 5), Santa Clara or Santa Clara,
    for a in answers:
        assert CONTEXT[a.start : a.end] == a.text
    # With room for four tokens, Santa Clara, California wins: the exact characters, comma included.
    task.cfg = task.cfg.replace(max_answer_length=4)
    [answers], _ = task.predict(model, task.encode(raw), torch.device("cpu"))
    assert answers[0].text == "Santa Clara, California" and answers[0].score == 18.0


def test_no_answer_wins_only_past_the_threshold_when_allowed(tokenizer):
    ids = {w: tokenizer.encode(w)[0] for w in ("Denver", "Broncos")}
    model = TableModel(
        tokenizer.vocab_size,
        start={ids["Denver"]: 2.0, tokenizer.cls_id: 3.0},
        end={ids["Broncos"]: 2.0, tokenizer.cls_id: 3.0},
    )
    raw = [QAExample("q", "Who won?", CONTEXT)]
    for allow, threshold, expected in [(False, 0.0, "Denver Broncos"), (True, 0.0, ""), (True, 2.5, "Denver Broncos")]:
        task = make_task(tokenizer, max_len=64, allow_no_answer=allow, null_threshold=threshold)
        [answers], _ = task.predict(model, task.encode(raw), torch.device("cpu"))
        assert answers[0].text == expected
        if expected == "":
            assert answers[0].start is None and answers[0].score == 6.0


def test_loss_is_the_mean_of_start_and_end_cross_entropy_over_real_tokens(tokenizer):
    torch.manual_seed(0)
    task = make_task(tokenizer, max_len=64)
    raw = [
        QAExample("a", "Who won?", CONTEXT, (("Denver Broncos", 0),)),
        QAExample("b", "Where is w7?", long_context(3), (("w1", long_context(3).index("w1")),)),
    ]
    batch = task.batches(task.encode(raw))[0]
    cfg = TransformerConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, n_token_types=2, dropout=0.0)
    model = TransformerQA(cfg)
    loss = task.loss(model, batch)
    out = model(batch["ids"], token_type_ids=batch["token_type_ids"])
    expected = 0.0
    for row in range(2):
        n = int((batch["ids"][row] != tokenizer.pad_id).sum())  # real tokens only: padding is never a choice
        s, e = out.start[row, :n], out.end[row, :n]
        expected += (
            F.cross_entropy(s[None], batch["starts"][row : row + 1])
            + F.cross_entropy(e[None], batch["ends"][row : row + 1])
        ) / 2
    torch.testing.assert_close(loss, expected / 2)
    assert int(batch["starts"][0]) > 0


# --- the model family ----------------------------------------------------------------------------------------------


def test_qa_is_a_task_and_a_model_family():
    assert TASKS["qa"] is QuestionAnsweringTask and MODELS["qa"] is TransformerQA
    assert QuestionAnsweringTask.family == "qa" and QuestionAnsweringTask.default_max_len == 384


def test_qa_parameter_count_is_berts_encoder_plus_the_span_head():
    # BERT-base without its pooler (109,482,240 - 768 * 768 - 768) plus a 768 x 2 head with bias: the 108,893,186
    # parameters of Hugging Face's BertForQuestionAnswering for bert-base-uncased.
    cfg = TransformerConfig.from_preset("bert-base")
    assert TransformerQA(cfg).num_parameters() == 109_482_240 - 768 * 768 - 768 + 768 * 2 + 2 == 108_893_186


def test_token_types_change_the_logits_only_when_the_config_has_them():
    ids = torch.tensor([[4, 7, 8, 3, 9, 10, 3]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    with_types = TransformerQA(TransformerConfig.from_preset("tiny", vocab_size=20, n_token_types=2)).eval()
    a, b = with_types(ids), with_types(ids, token_type_ids=types)
    assert not torch.allclose(a.start, b.start)
    without = TransformerQA(TransformerConfig.from_preset("tiny", vocab_size=20)).eval()
    torch.testing.assert_close(without(ids).start, without(ids, token_type_ids=types).start)
