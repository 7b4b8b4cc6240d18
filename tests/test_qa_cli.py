"""Question answering end to end: `train qa` on built-in stories and on SQuAD-format files, `evaluate` with
`--predictions`, `answer` (one question, JSONL on stdin), `attention` on a QA checkpoint, and bad input."""

import io
import json
import subprocess
import sys

import pytest

from transformer_networks import cli
from transformer_networks.data.babi import babi_split
from transformer_networks.inference import answer_questions, attention_maps, load_for

TINY = [
    "--preset",
    "tiny",
    "--set",
    "d_model=32",
    "--set",
    "n_heads=2",
    "--set",
    "n_layers=1",
    "--set",
    "d_ff=64",
    "--device",
    "cpu",
    "--quiet",
]


def run_cli(monkeypatch, capsys, argv, stdin=b""):
    monkeypatch.setattr(cli, "_stdin", lambda: io.BytesIO(stdin))
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa") / "babi"
    argv = ["train", "qa", "--data", "builtin:babi-1", "--max-steps", "30", "--eval-every", "30", "--out", out]
    assert cli.main([*map(str, argv), *TINY]) == 0
    return out


def test_evaluate_scores_the_test_split_and_writes_the_official_predictions_file(run, tmp_path, monkeypatch, capsys):
    predictions = tmp_path / "predictions.json"
    code, out, err = run_cli(
        monkeypatch, capsys, ["evaluate", run, "--json", "--predictions", predictions, "--device", "cpu"]
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "qa" and result["examples"] == 300 and result["dropped"] == 0
    assert 0 <= result["exact_match"] <= result["f1"] <= 100
    written = json.loads(predictions.read_text())
    test = {ex.id: ex for ex in babi_split((1,))[1]}
    assert set(written) == set(test)
    assert all(text in test[qid].context for qid, text in written.items())  # spans of the context
    # The file's answers are the ones the score was computed from.
    exact = sum(written[qid] == test[qid].answers[0][0] for qid in test) / len(test)
    assert abs(100 * exact - result["exact_match"]) < 1e-9


def test_answer_one_question_and_jsonl_on_stdin(run, tmp_path, monkeypatch, capsys):
    context = "Mary moved to the bathroom. John went to the hallway. Mary travelled to the office."
    path = tmp_path / "story.txt"
    path.write_text(context + "\n")
    code, out, err = run_cli(
        monkeypatch, capsys, ["answer", run, "--question", "Where is Mary?", "--context", path, "--json"]
    )
    assert code == 0, err
    answer = json.loads(out)
    assert context[answer["start"] : answer["end"]] == answer["answer"] and answer["answer"]
    code, plain, _ = run_cli(
        monkeypatch, capsys, ["answer", run, "--question", "Where is Mary?", "--context", "-"], context.encode()
    )
    assert code == 0 and plain.strip() == answer["answer"]

    lines = [
        {"id": "a", "question": "Where is Mary?", "context": context},
        {"question": "Where is John?", "context": context},
    ]
    stdin = "\n".join(json.dumps(x) for x in lines).encode() + b"\n\n"
    code, out, err = run_cli(monkeypatch, capsys, ["answer", run, "--n-best", "3"], stdin)
    assert code == 0, err
    first, second = [json.loads(line) for line in out.splitlines()]
    assert first["id"] == "a" and "id" not in second
    for record in (first, second):
        scores = [a["score"] for a in record["answers"]]
        assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
        for a in record["answers"]:
            assert context[a["start"] : a["end"]] == a["answer"]
    # The Python API gives the same best answer.
    ck = load_for("qa", run)
    [[best, *_]] = answer_questions(ck, [("Where is Mary?", context)], n_best=3)
    assert best.text == first["answers"][0]["answer"] == answer["answer"]


@pytest.mark.parametrize(
    "stdin, message",
    [
        (b'{"question": "Where?", "context": "x"}\nnot json\n', "stdin: line 2: invalid JSON"),
        (b'{"question": "Where?"}\n', "stdin: line 1: 'context' must be a non-empty string"),
        (b'["a list"]\n', "stdin: line 1: expected a JSON object"),
    ],
)
def test_bad_answer_input_is_one_line_naming_the_line(run, monkeypatch, capsys, stdin, message):
    code, _, err = run_cli(monkeypatch, capsys, ["answer", run], stdin)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_attention_on_a_qa_checkpoint_labels_question_and_context_tokens(run, tmp_path, monkeypatch, capsys):
    ck = load_for("qa", run)
    maps = attention_maps(ck, "Where is Mary?", context="Mary went to the garden.")
    names = maps.queries["encoder"]
    assert names[0] == "<cls>" and "Mary" in names and "garden" in names and names.count("<eos>") == 2
    layers, heads, q, k = maps.weights["encoder"].shape
    assert q == k == len(names)
    png = tmp_path / "a.png"
    argv = ["attention", run, "--text", "Where is Mary?", "--context", "Mary went to the garden.", "--out", png]
    code, _, err = run_cli(monkeypatch, capsys, argv)
    assert code == 0 and png.stat().st_size > 0, err
    code, _, err = run_cli(monkeypatch, capsys, ["attention", run, "--text", "Where is Mary?", "--out", png])
    assert code == 2 and "--context" in err


def squad_file(path, version_2):
    """A small SQuAD-format file: facts about named things, some questions unanswerable (v2)."""
    things = ["apple", "river", "castle", "violin", "comet", "garden", "lantern", "harbor"]
    colors = ["red", "blue", "green", "amber", "silver", "black", "white", "golden"]
    articles = []
    for i, (thing, color) in enumerate(zip(things, colors, strict=True)):
        context = f"The {thing} is {color}. It was found in {1900 + i}. Nobody knows why the {thing} is {color}."
        qas = [
            {
                "id": f"{i}-c",
                "question": f"What color is the {thing}?",
                "answers": [{"text": color, "answer_start": context.index(color)}],
            },
            {
                "id": f"{i}-y",
                "question": f"When was the {thing} found?",
                "answers": [{"text": str(1900 + i), "answer_start": context.index(str(1900 + i))}],
            },
        ]
        if version_2:
            qas.append({"id": f"{i}-n", "question": f"Who painted the {thing}?", "answers": [], "is_impossible": True})
        articles.append({"title": thing, "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "v2.0" if version_2 else "1.1", "data": articles}))
    return path


def test_train_and_evaluate_squad_v2_files_with_has_and_no_answer_scores(tmp_path, monkeypatch, capsys):
    data = squad_file(tmp_path / "train-v2.json", version_2=True)
    out = tmp_path / "run"
    argv = ["train", "qa", "--data", data, "--valid", data, "--max-steps", "4", "--eval-every", "4", "--out", out]
    code, _, err = run_cli(monkeypatch, capsys, [*argv, *TINY])
    assert code == 0, err
    code, text, err = run_cli(monkeypatch, capsys, ["evaluate", out, "--json", "--device", "cpu"])
    result = json.loads(text)
    assert result["examples"] == 24 and result["has_ans_total"] == 16 and result["no_ans_total"] == 8
    for key in ("exact_match", "f1", "has_ans_exact_match", "has_ans_f1", "no_ans_exact_match", "no_ans_f1"):
        assert 0 <= result[key] <= 100
    # The run learned that "no answer" is possible (the training data has unanswerable questions).
    assert json.loads((out / "run.json").read_text())["train"]["allow_no_answer"] is True


def test_training_reports_what_encoding_left_out(tmp_path):
    data = squad_file(tmp_path / "train.json", version_2=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "transformer_networks",
            "train",
            "qa",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "r"),
            "--max-steps",
            "1",
            *[a for a in TINY if a != "--quiet"],
            "--set",
            "max_len=16",
            "--set",
            "doc_stride=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("training data:"))
    assert "unanswerable" in line and "windows of at most 16 tokens" in line


def test_bad_qa_files_are_one_line_errors_and_touch_nothing(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "context": "abc", "answers": [{"text": "b", "answer_start": 0}]}\n')
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, ["train", "qa", "--data", bad, "--out", out, *TINY])
    assert code == 2 and f"{bad}: line 1: answer 1: answer_start 0 spans 'a'" in err and err.count("\n") == 1
    assert not out.exists()
