"""`train`, `evaluate` and `plot` on the command line, and every bad input the training issue lists: one line on
stderr naming the file and line (or the option), exit code 2, no traceback, nothing existing overwritten."""

import json
import subprocess
import sys

import pytest

from transformer_networks import cli

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
]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "transformer_networks", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_train_evaluate_plot_end_to_end(tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{a} {b}\t{b} {a}\n" for a in "abcdefg" for b in "hijklmn"), encoding="utf-8")
    out = tmp_path / "run"
    result = run(
        "train",
        "translation",
        "--data",
        data,
        "--out",
        out,
        *TINY,
        "--tokenizer",
        "word",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--set",
        "lr=3e-3",
    )
    assert result.returncode == 0, result.stderr
    assert "best validation:" in result.stdout and "Traceback" not in result.stderr
    assert "step 6/6" in result.stderr  # plain progress lines when stderr is not a terminal
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["train"]["lr"] == 0.003 and run_info["model"]["d_model"] == 32
    assert run_info["train"]["tokenizer"] == "word"

    result = run("evaluate", out, "--json")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert {"loss", "perplexity", "bleu", "chrf", "exact_match", "token_accuracy"} <= set(values)
    assert values["task"] == "translation" and values["examples"] == 2  # 5% of 49 pairs held out

    result = run("evaluate", out / "last", "--data", data)
    assert result.returncode == 0, result.stderr
    assert "bleu:" in result.stdout and "(49 examples)" in result.stdout
    result = run("evaluate", out, "--data", data, "--split", "valid")
    assert result.returncode == 2 and "--split applies to the run's own data" in result.stderr

    result = run("plot", out)
    assert result.returncode == 0, result.stderr
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_quiet_prints_no_progress(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    code = cli.main(
        [
            "train",
            "lm",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "r"),
            *TINY,
            "--max-steps",
            "2",
            "--block-size",
            "8",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert captured.out.startswith("best validation: loss ")


@pytest.mark.parametrize("tokenizer", ["bpe", "word"])
def test_quiet_output_redirected_holds_only_the_result(tmp_path, tokenizer):
    """Nothing of the tokenizer library's own (its progress bars once wrote blank lines to a redirected stdout)."""
    data = tmp_path / "t.txt"
    data.write_text("hello world, the quick brown fox\n" * 50, encoding="utf-8")
    args = ["train", "lm", "--data", data, "--out", tmp_path / "r", *TINY, "--max-steps", "1", "--block-size", "8"]
    result = run(*args, "--tokenizer", tokenizer, "--vocab-size", "60", "--quiet")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("best validation: loss ") and len(result.stdout.splitlines()) == 2


def test_config_file_yaml_sets_model_and_training_fields(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        "preset: gpt2-small\nmodel:\n  d_model: 16\n  n_heads: 2\n  n_layers: 1\ntrain:\n"
        "  max_steps: 2\n  block_size: 8\n  lr: 2e-3\n  weight_decay: 1e-2\n",
        encoding="utf-8",
    )
    out = tmp_path / "r"
    code = cli.main(
        [
            "train",
            "lm",
            "--data",
            str(data),
            "--out",
            str(out),
            "--config",
            str(config),
            "--quiet",
            "--set",
            "lr=0.004",
            "--preset",
            "tiny",
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["d_model"] == 16 and info["model"]["n_layers"] == 1
    assert info["model"]["d_ff"] == 256  # from tiny: --preset wins over the file's preset
    assert info["train"]["lr"] == 0.004 and info["train"]["block_size"] == 8  # --set wins over the file
    assert info["train"]["weight_decay"] == 0.01  # YAML 1.1 reads "1e-2" as text; it is taken as the number


def bad_input_cases(tmp):
    good = tmp / "good.tsv"
    good.write_text("a b\tb a\nc d\td c\n", encoding="utf-8")
    latin1 = tmp / "latin1.txt"
    latin1.write_bytes("line one\ncaf\xe9\n".encode("latin-1"))
    empty = tmp / "empty.txt"
    empty.write_text("", encoding="utf-8")
    notab = tmp / "notab.tsv"
    notab.write_text("a b\tb a\nno tab here\n", encoding="utf-8")
    nolabel = tmp / "nolabel.tsv"
    nolabel.write_text("sentence\tscore\ngood\t1\n", encoding="utf-8")
    short = tmp / "short.txt"  # its 5% validation part is 30 characters, too few for one block of 128 + 1
    short.write_text("hello world\n" * 50, encoding="utf-8")
    one_label = tmp / "one.tsv"
    one_label.write_text("text\tlabel\n" + "".join(f"text {i}\tpos\n" for i in range(20)), encoding="utf-8")
    out = str(tmp / "out")
    return [
        (["train", "lm", "--data", str(tmp / "missing.txt"), "--out", out], "missing.txt: no such file"),
        (["train", "translation", "--data", str(tmp), "--out", out], f"{tmp}: not a file"),
        (["train", "lm", "--data", str(latin1), "--out", out], "latin1.txt: line 2: not UTF-8"),
        (["train", "lm", "--data", str(empty), "--out", out], "empty.txt: no text"),
        (["train", "translation", "--data", str(notab), "--out", out], "notab.tsv: line 2: expected 'source<TAB>"),
        (["train", "classification", "--data", str(nolabel), "--out", out], "nolabel.tsv: line 1: no label column"),
        (["train", "lm", "--data", "builtin:nope", "--out", out], "unknown built-in dataset builtin:nope"),
        (["train", "lm", "--data", "builtin:scan", "--out", out], "builtin:scan is a translation dataset"),
        (
            ["train", "translation", "--data", str(good), "--out", out, "--set", "d_modle=4"],
            "--set d_modle: unknown setting 'd_modle'; did you mean 'd_model'?",
        ),
        (
            ["train", "translation", "--data", str(good), "--out", out, "--set", "lr=fast"],
            "--set lr: lr must be a number, got 'fast'",
        ),
        (
            ["train", "translation", "--data", str(good), "--out", out, "--set", "n_layers=2.5"],
            "--set n_layers: n_layers must be an integer",
        ),
        (
            ["train", "translation", "--data", str(good), "--out", out, "--set", "optimizer=sgd"],
            "--set optimizer: optimizer must be one of",
        ),
        (["train", "translation", "--data", str(good), "--out", out, "--preset", "huge"], "unknown preset 'huge'"),
        (["evaluate", str(tmp / "nowhere")], "nowhere: no such checkpoint or run directory"),
        (["train", "lm", "--data", str(short), "--out", out], "too short for one block of 128"),
        (["train", "classification", "--data", str(one_label), "--out", out], "needs at least 2 labels"),
        (["train", "lm", "--data", str(short), "--out", out, "--seed", "-1"], "seed must be in [0, 2**32)"),
        (["train", "lm", "--data", str(short), "--out", out, "--set", "lr=Infinity"], "lr must be a finite number"),
        (
            ["train", "lm", "--data", str(short), "--out", out, "--set", "schedule=noam", "--set", "warmup=0"],
            "warmup must be at least 1 with the noam schedule",
        ),
    ]


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    for argv, message in bad_input_cases(tmp_path):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("transformer-networks: error: "), (argv, err)
        assert message in lines[0], (argv, lines[0])
        assert not (tmp_path / "out").exists(), argv


def test_bad_input_through_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\ttwo\nthree\n", encoding="utf-8")
    result = run("train", "translation", "--data", bad, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"transformer-networks: error: {bad}: line 2: expected 'source<TAB>target', "
        "found no tab"
    )


def test_an_existing_run_is_refused_unless_overwrite(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    out = tmp_path / "run"
    argv = [
        "train",
        "lm",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY,
        "--max-steps",
        "2",
        "--block-size",
        "8",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main([*argv[:-1], "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: already holds a training run" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert cli.main(["train", "lm", "--data", str(data), "--out", str(other), "--quiet"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert json.loads((out / "run.json").read_text())["train"]["seed"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "lm", "--out", "x", "--max-steps", "0"], "--max-steps: expected a positive integer"),
        (["train", "poetry", "--out", "x"], "invalid choice: 'poetry'"),
    ],
)
def test_argument_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_train_without_out_is_one_line(capsys):
    assert cli.main(["train", "lm"]) == 2  # --out is optional only with --resume
    err = capsys.readouterr().err.strip()
    assert (
        err == "transformer-networks: error: train needs a task (lm, translation, classification, qa, chat) and "
        "--out DIR, or --resume RUN_DIR"
    )


def test_model_settings_are_checked_together_then_blamed_one_by_one():
    origin = {"d_model": "--set d_model", "n_heads": "--set n_heads", "lr": "--set lr"}
    # d_model=128 alone does not divide into gpt2-small's 12 heads; with n_heads=4 it does
    model, train = cli.split_settings({"d_model": 128, "n_heads": 4, "lr": 0.01}, origin, "gpt2-small")
    assert model == {"d_model": 128, "n_heads": 4} and train == {"lr": 0.01}
    with pytest.raises(cli.UserError, match="--set d_model, --set n_heads: d_model must be divisible by n_heads"):
        cli.split_settings({"d_model": 36, "n_heads": 8}, origin, "gpt2-small")  # each alone fits 768 / 12
    with pytest.raises(cli.UserError, match="^--set n_heads: n_heads must be a positive integer"):
        cli.split_settings({"d_model": 768, "n_heads": 0}, origin, "gpt2-small")


def test_translation_trains_from_hugging_face_jsonl_with_the_languages_named(tmp_path, capsys):
    pairs = [(f"{a} {b}", f"{b} {a}") for a in "abcdefg" for b in "hijklmn"]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"translation": {"de": s, "en": t}}) + "\n" for s, t in pairs), "utf-8")
    out = tmp_path / "run"
    langs = ["--set", "source_lang=en", "--set", "target_lang=de"]
    args = ["train", "translation", "--data", str(data), "--out", str(out), "--max-steps", "2", *langs, *TINY]
    assert cli.main([*args, "--quiet"]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert json.dumps(saved).count('"source_lang": "en"') >= 1
    code = cli.main(
        ["train", "translation", "--data", str(data), "--out", str(tmp_path / "r2"), "--set", "source_lang=fr"]
    )
    assert code == 2 and "give both --set source_lang and --set target_lang" in capsys.readouterr().err


def test_common_training_fields_are_flags_and_the_help_shows_the_defaults(tmp_path):
    help_text = " ".join(run("train", "--help").stdout.split())
    for shown in (
        "optimizer steps (default 2000)",
        "--warmup WARMUP steps of linear warmup (default: 5% of the run's steps, --set warmup_ratio=R)",
        "(default 0.01)",
    ):
        assert shown in help_text, shown
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    out = tmp_path / "r"
    flags = ["--warmup", "0", "--weight-decay", "0.05", "--grad-accum", "2", "--max-steps", "1", "--block-size", "8"]
    assert cli.main(["train", "lm", "--data", str(data), "--out", str(out), *TINY, *flags, "--quiet"]) == 0
    saved = json.loads((out / "run.json").read_text())["train"]
    assert (saved["warmup"], saved["weight_decay"], saved["grad_accum"]) == (0, 0.05, 2)


def test_warmup_is_a_share_of_the_run_and_best_is_chosen_by_loss_on_a_small_validation_set(tmp_path, capsys):
    # A 40-step run: warmup 5% (2 steps), so the learning rate reaches its peak (200 steps of warmup never did).
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()
    data = tmp_path / "cls.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{w} {w}\t{i % 2}\n" for i, w in enumerate(words)) * 6, "utf-8")
    common = ["--data", data, "--max-steps", "40", "--eval-every", "5", "--set", "log_every=1", "--set", "lr=3e-3"]
    runs = {}
    for name, extra in (("auto", []), ("accuracy", ["--set", "best_metric=accuracy"])):
        out = tmp_path / name
        assert cli.main(["train", "classification", *map(str, common), "--out", str(out), *TINY, *extra]) == 0
        runs[name] = (out, capsys.readouterr().err)
    out, log = runs["auto"]
    assert "warmup 2 steps (5% of 40" in log
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["lr"] for r in records if r["split"] == "train") > 0.95 * 3e-3
    # 3 validation examples: the accuracy is noise, so the lowest validation loss picks best/.
    assert "best/ is chosen by validation loss (accuracy on 3 validation examples is too noisy" in log
    valid = [r for r in records if r["split"] == "valid"]
    best_step = json.loads((out / "best" / "task.json").read_text())["step"]
    assert best_step == min(valid, key=lambda r: (r["loss"], r["step"]))["step"]
    out, log = runs["accuracy"]
    assert "best/ is chosen by validation accuracy (best_metric=accuracy)" in log
    valid = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    best_step = json.loads((out / "best" / "task.json").read_text())["step"]
    assert best_step == max(valid, key=lambda r: (r["accuracy"], -r["step"]))["step"]
    code = cli.main(
        ["train", "classification", *map(str, common), "--out", str(tmp_path / "x"), *TINY, "--set", "best_metric=bleu"]
    )
    assert code == 2 and "best_metric must be 'loss' or 'accuracy' for classification" in capsys.readouterr().err


def test_a_run_the_time_limit_stops_before_its_step_budget_warns(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    argv = ["train", "lm", "--data", str(data), "--out", str(tmp_path / "r"), "--block-size", "8", *TINY]
    assert cli.main([*argv, "--max-steps", "100000", "--max-minutes", "0.002"]) == 0
    err = capsys.readouterr().err
    assert "stopped: reached the time limit of 0.002 minutes" in err
    assert "warning: the time limit stopped the run at step" in err and "of its 100,000" in err
    assert cli.main([*argv, "--max-steps", "2", "--max-minutes", "10", "--overwrite"]) == 0
    assert "warning" not in capsys.readouterr().err  # the step budget was reached
