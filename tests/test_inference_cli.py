"""`translate`, `generate`, `classify` and `attention` on tiny trained checkpoints: outputs in input order, the same
as the Python API, and every bad input a one-line error with exit code 2."""

import io
import json
import math
import subprocess
import sys

import pytest
import torch

from transformer_networks import cli
from transformer_networks.generation import generate
from transformer_networks.inference import (
    attention_maps,
    classify_lines,
    generate_stream,
    generate_text,
    load_for,
    translate_lines,
)
from transformer_networks.training.evaluation import evaluate
from transformer_networks.training.tasks import DataSpec

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
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny checkpoints: a word reverser (translation), a character LM, a two-class classifier."""
    tmp = tmp_path_factory.mktemp("runs")
    pairs = [(a, b, c) for a in WORDS for b in WORDS[:5] for c in WORDS[:3]]
    (tmp / "mt.tsv").write_text("".join(f"{a} {b} {c}\t{c} {b} {a}\n" for a, b, c in pairs), encoding="utf-8")
    (tmp / "lm.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    rows = "".join(f"{w} {w}\t{'pos' if i % 2 else 'neg'}\n" for i, w in enumerate(WORDS))
    (tmp / "cls.tsv").write_text("text\tlabel\n" + rows * 5, encoding="utf-8")
    argvs = {
        "mt": [
            "train",
            "translation",
            "--data",
            tmp / "mt.tsv",
            "--tokenizer",
            "word",
            "--max-steps",
            "40",
            "--set",
            "lr=3e-3",
            "--eval-every",
            "40",
        ],
        "lm": [
            "train",
            "lm",
            "--data",
            tmp / "lm.txt",
            "--tokenizer",
            "char",
            "--block-size",
            "16",
            "--max-steps",
            "20",
            "--eval-every",
            "20",
        ],
        "cls": [
            "train",
            "classification",
            "--data",
            tmp / "cls.tsv",
            "--tokenizer",
            "word",
            "--max-steps",
            "10",
            "--eval-every",
            "10",
        ],
    }
    for name, argv in argvs.items():
        assert cli.main([*map(str, argv), "--out", str(tmp / name), *TINY]) == 0
    return tmp


def run_cli(monkeypatch, capsys, argv, stdin=b""):
    monkeypatch.setattr(cli, "_stdin", lambda: io.BytesIO(stdin))
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- translate --------------------------------------------------------------------------------------------------


def test_translate_keeps_order_and_empty_lines_and_equals_beam_search(runs, monkeypatch, capsys):
    sources = ["alpha bravo charlie", "", "golf", "juliet echo alpha bravo charlie delta"]
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        ["translate", runs / "mt", "--batch-size", "2", "--device", "cpu"],
        "\n".join(sources).encode() + b"\n",
    )
    assert code == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == ""
    ck = load_for("translation", runs / "mt")
    for source, line in zip(sources, lines, strict=True):
        if not source:
            continue
        src = torch.tensor([ck.source_tokenizer.encode(source) + [ck.tokenizer.eos_id]])
        ids = generate(ck.model, src, num_beams=4, length_penalty=0.6)  # one sentence alone, no batching
        assert line == ck.tokenizer.decode(ids[0].tolist())


def test_translate_n_best(runs, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        ["translate", runs / "mt", "--n-best", "3", "--beam", "5", "--device", "cpu"],
        b"alpha bravo charlie\ngolf hotel\n",
    )
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == ["1", "1", "1", "2", "2", "2"]
    for group in (rows[:3], rows[3:]):
        scores = [float(r[1]) for r in group]
        assert scores == sorted(scores, reverse=True)
        assert len({r[2] for r in group}) == 3


def test_evaluate_scores_translations_from_beam_search(runs):
    result = evaluate(runs / "mt", split="valid", device="cpu", samples=5)
    ck = load_for("translation", runs / "mt")
    beams = translate_lines(ck, [s["source"] for s in result.samples], num_beams=4, length_penalty=0.6)
    assert [s["prediction"] for s in result.samples] == [b[0].text for b in beams]


# --- generate ---------------------------------------------------------------------------------------------------


def test_generate_is_reproducible_with_a_seed_and_stops_at_a_stop_string(runs, monkeypatch, capsys):
    argv = ["generate", runs / "lm", "--prompt", "the quick", "--max-new-tokens", "12", "--device", "cpu"]
    first = run_cli(monkeypatch, capsys, [*argv, "--seed", "3"])
    again = run_cli(monkeypatch, capsys, [*argv, "--seed", "3"])
    assert first[0] == 0 and first == again
    assert first[1].startswith("the quick")
    code, greedy, _ = run_cli(monkeypatch, capsys, [*argv, "--greedy"])
    ck = load_for("lm", runs / "lm")
    ids = torch.tensor([ck.tokenizer.encode("the quick")])
    expected = ck.tokenizer.decode(generate(ck.model, ids, max_new_tokens=12)[0].tolist())
    assert greedy == expected + "\n"
    stop = expected[len("the quick") + 3 :][:2]  # a string the greedy continuation contains
    code, cut, _ = run_cli(monkeypatch, capsys, [*argv, "--greedy", "--stop", stop])
    assert cut == expected[: expected.index(stop, len("the quick"))] + "\n"
    code, piped, _ = run_cli(
        monkeypatch, capsys, [a for a in argv if a not in ("--prompt", "the quick")] + ["--greedy"], b"the quick"
    )
    assert piped == greedy


def test_generate_goes_past_the_context_and_streams_the_same_text(runs, monkeypatch, capsys):
    # The model's context is 16 tokens: 40 new ones slide the window (it says so once), and the streamed pieces,
    # greedy or seeded, are exactly generate_text's string.
    argv = ["generate", runs / "lm", "--prompt", "the quick", "--max-new-tokens", "40", "--device", "cpu"]
    code, out, err = run_cli(monkeypatch, capsys, [*argv, "--greedy"])
    assert code == 0 and err.count("the model's context is 16 tokens: past it") == 1, err
    ck = load_for("lm", runs / "lm")
    ids = ck.tokenizer.encode("the quick")
    expected = generate(ck.model, torch.tensor([ids]), max_new_tokens=40, eos_id=ck.tokenizer.eos_id)[0].tolist()
    assert len(expected) > 16 and out == ck.tokenizer.decode(expected) + "\n"
    for options in ({"do_sample": False}, {"do_sample": True, "seed": 5}):
        text = generate_text(ck, "the quick", max_new_tokens=40, **options)
        assert "".join(generate_stream(ck, "the quick", max_new_tokens=40, **options)) == text
        assert len(ck.tokenizer.encode(text)) > 16 - len(ids)


def test_generate_prompt_longer_than_the_context(runs, monkeypatch, capsys):
    long = "the quick brown fox " * 5  # 100 characters, the context is 16
    code, out, err = run_cli(monkeypatch, capsys, ["generate", runs / "lm", "--prompt", long, "--device", "cpu"])
    assert code == 2 and err.count("\n") == 1 and "--truncate" in err and "16" in err
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        ["generate", runs / "lm", "--prompt", long, "--truncate", "--max-new-tokens", "1", "--device", "cpu"],
    )
    assert code == 0 and out.startswith(long)


# --- classify ---------------------------------------------------------------------------------------------------


def test_classify_plain_and_json(runs, monkeypatch, capsys):
    texts = ["alpha alpha", "", "bravo bravo", "charlie"]
    stdin = "\n".join(texts).encode() + b"\n"
    code, out, err = run_cli(monkeypatch, capsys, ["classify", runs / "cls", "--device", "cpu"], stdin)
    assert code == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == ""
    code, out_json, _ = run_cli(monkeypatch, capsys, ["classify", runs / "cls", "--json", "--device", "cpu"], stdin)
    records = out_json.split("\n")[:-1]
    assert records[1] == ""
    ck = load_for("classification", runs / "cls")
    expected = classify_lines(ck, [texts[0]])[0]
    first = json.loads(records[0])
    assert first["text"] == "alpha alpha" and first["probabilities"] == pytest.approx(expected)
    assert sum(first["probabilities"].values()) == pytest.approx(1.0)
    for line, record in zip(lines, records, strict=True):
        if line:
            label, prob = line.split("\t")
            values = json.loads(record)
            assert label == values["label"] == max(values["probabilities"], key=values["probabilities"].get)
            assert float(prob) == pytest.approx(values["probabilities"][label], abs=1e-4)


def test_evaluate_an_ensemble_averages_the_members_probabilities(runs, monkeypatch, capsys):
    # A second classifier from another seed (another held-out part, so possibly another vocabulary); the ensemble's
    # accuracy and loss must equal those of the mean of the two models' probabilities as `classify_lines` gives them.
    other = runs / "cls-seed1"
    if not other.exists():
        argv = [
            "train",
            "classification",
            "--data",
            runs / "cls.tsv",
            "--tokenizer",
            "word",
            "--max-steps",
            "6",
            "--eval-every",
            "6",
            "--seed",
            "1",
            "--out",
            other,
            *TINY,
        ]
        assert cli.main([str(a) for a in argv]) == 0
        capsys.readouterr()  # the run's summary
    data = runs / "cls.tsv"
    code, out, err = run_cli(
        monkeypatch, capsys, ["evaluate", runs / "cls", other, "--data", data, "--json", "--device", "cpu"]
    )
    assert code == 0, err
    result = json.loads(out)
    rows = [line.split("\t") for line in data.read_text(encoding="utf-8").splitlines()[1:]]
    members = [
        classify_lines(load_for("classification", run), [text for text, _ in rows]) for run in (runs / "cls", other)
    ]
    mean = [{label: (a[label] + b[label]) / 2 for label in a} for a, b in zip(*members, strict=True)]
    correct = [max(m, key=m.get) == label for m, (_, label) in zip(mean, rows, strict=True)]
    loss = -sum(math.log(m[label]) for m, (_, label) in zip(mean, rows, strict=True)) / len(rows)
    assert result["examples"] == len(rows) and "ensemble of 2" in result["data"]
    assert result["accuracy"] == pytest.approx(sum(correct) / len(rows))
    assert result["loss"] == pytest.approx(loss, rel=1e-5)

    # One checkpoint twice is that checkpoint.
    single = evaluate(runs / "cls", DataSpec(data=[str(data)]), device="cpu")
    code, out, _ = run_cli(
        monkeypatch, capsys, ["evaluate", runs / "cls", runs / "cls", "--data", data, "--json", "--device", "cpu"]
    )
    twice = json.loads(out)
    assert twice["accuracy"] == single.metrics["accuracy"]
    assert twice["loss"] == pytest.approx(single.metrics["loss"], rel=1e-5)

    for argv, message in (
        (["evaluate", runs / "cls", other], "evaluate an ensemble on data given with --data"),
        (["evaluate", runs / "cls", runs / "mt", "--data", data], "ensembles are for classification"),
        (["evaluate", runs / "cls", other, "--data", data, "--examples", "2"], "leave it out"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, [*argv, "--device", "cpu"])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# --- attention --------------------------------------------------------------------------------------------------


def test_attention_maps_are_the_models_weights_and_draw(runs, tmp_path, monkeypatch, capsys):
    ck = load_for("translation", runs / "mt")
    maps = attention_maps(ck, "alpha bravo charlie", "charlie bravo alpha")
    src = torch.tensor([ck.source_tokenizer.encode("alpha bravo charlie") + [3]])
    tgt = torch.tensor([[2] + ck.tokenizer.encode("charlie bravo alpha")])
    out = ck.model(src, tgt, return_attentions=True)
    torch.testing.assert_close(maps.weights["cross"][0], out.cross_attentions[0][0])
    assert maps.weights["encoder"].shape == (1, 2, 4, 4) and maps.keys["cross"][-1] == "<eos>"
    assert maps.queries["decoder"][0] == "<bos>"
    torch.testing.assert_close(maps.weights["decoder"].sum(-1), torch.ones(1, 2, 4))
    assert maps.weights["decoder"][0, :, 0, 1:].abs().max() == 0  # causal: the first query sees itself only
    for task, extra in (("mt", []), ("mt", ["--kind", "encoder", "--head", "1"]), ("lm", []), ("cls", [])):
        png = tmp_path / f"{task}{len(extra)}.png"
        code, printed, err = run_cli(
            monkeypatch, capsys, ["attention", runs / task, "--text", "alpha bravo", "--out", png, *extra]
        )
        assert code == 0, err
        assert printed.strip() == str(png) and png.read_bytes()[:4] == b"\x89PNG"


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["translate", "{runs}/nope"], b"x\n", "no such checkpoint"),
        (["translate", "{runs}/cls"], b"x\n", "is a classification checkpoint; this needs a translation checkpoint"),
        (["classify", "{runs}/mt"], b"x\n", "is a translation checkpoint"),
        (["generate", "{runs}/cls", "--prompt", "x"], b"", "is a classification checkpoint"),
        (["translate", "{runs}/mt"], b"alpha\n" + b"alpha " * 400 + b"\n", "line 2: 401 tokens do not fit"),
        (["classify", "{runs}/cls"], b"ok\n\xff\xfe\n", "stdin: line 2: not valid UTF-8"),
        (["translate", "{runs}/mt", "--n-best", "5"], b"x\n", "--n-best 5 needs --beam of at least 5"),
        (["generate", "{runs}/lm", "--prompt", "the", "--top-p", "2"], b"", "top_p must be in (0, 1]"),
        (["attention", "{runs}/mt", "--text", "alpha", "--layer", "3", "--out", "{runs}/x.png"], b"", "--layer 3"),
        (["attention", "{runs}/lm", "--text", "the", "--kind", "cross", "--out", "{runs}/x.png"], b"", "--kind cross"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, monkeypatch, capsys, argv, stdin, message):
    argv = [a.format(runs=runs) for a in argv]
    code, out, err = run_cli(monkeypatch, capsys, argv, stdin)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err


def test_too_long_input_is_cut_with_truncate(runs, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, ["translate", runs / "mt", "--truncate", "--device", "cpu"], b"alpha " * 400 + b"\n"
    )
    assert code == 0 and out.count("\n") == 1


def test_a_real_process_pipes_text_through(runs):
    result = subprocess.run(
        [sys.executable, "-m", "transformer_networks", "classify", str(runs / "cls")],
        input="alpha alpha\n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.split("\n")[1] == "" and result.stdout.split("\t")[0] in ("neg", "pos")
    result = subprocess.run(
        [sys.executable, "-m", "transformer_networks", "translate", str(runs / "lm")],
        input="x\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_checkpoints_tokenizer_is_callable_and_adds_what_its_model_needs(runs):
    from transformer_networks.errors import UserError

    cls = load_for("classification", runs / "cls")
    batch = cls.tokenizer(["alpha alpha", "bravo"], padding=True, return_tensors="pt")
    assert batch["input_ids"][:, 0].tolist() == [cls.tokenizer.cls_id] * 2  # a classifier reads <cls> first
    assert batch["attention_mask"].tolist() == [[True, True, True], [True, True, False]]
    probs = cls.model(batch["input_ids"], attention_mask=batch["attention_mask"]).softmax(-1)
    expected = classify_lines(cls, ["alpha alpha", "bravo"])
    for row, p in zip(probs.tolist(), expected, strict=True):
        assert row == pytest.approx([p[label] for label in cls.labels], abs=1e-5)
    assert cls.tokenizer("alpha", add_special_tokens=False)["input_ids"] == cls.tokenizer.encode("alpha")
    mt = load_for("translation", runs / "mt")
    src = mt.source_tokenizer("alpha bravo charlie", return_tensors="pt")["input_ids"]
    assert src[0].tolist() == mt.source_tokenizer.encode("alpha bravo charlie") + [mt.tokenizer.eos_id]
    lm = load_for("lm", runs / "lm")
    prompts = lm.tokenizer(["the", "the quick"], padding=True, padding_side="left", return_tensors="pt")
    together = generate(lm.model, prompts["input_ids"], attention_mask=prompts["attention_mask"], max_new_tokens=5)
    for row, prompt in zip(together, ["the", "the quick"], strict=True):
        alone = generate(lm.model, torch.tensor([lm.tokenizer.encode(prompt)]), max_new_tokens=5)[0]
        assert row[-5:].tolist() == alone[-5:].tolist()  # the padding changes nothing
    with pytest.raises(UserError, match="pass padding=True"):
        lm.tokenizer(["a", "abc"], return_tensors="pt")
    assert lm.tokenizer("the quick", truncation=True, max_length=3)["input_ids"] == lm.tokenizer.encode("the")
