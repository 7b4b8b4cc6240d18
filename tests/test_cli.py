"""The command line: real subprocesses, exit codes and messages as a user sees them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import transformer_networks as tn
from transformer_networks import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transformer_networks", *args], capture_output=True, text=True, timeout=120
    )


def test_forward_builds_paper_base_and_prints_its_size():
    for argv in (["forward", "--seq-len", "8"], ["demo", "--seq-len", "8"], ["demo", "--forward", "--seq-len", "8"]):
        result = run(*argv)  # `demo` with the forward pass's options is what it was: the forward pass
        assert result.returncode == 0, result.stderr
        assert "parameters: 63,082,496" in result.stdout
        assert "logits (2, 8, 37000)" in result.stdout


def test_demo_trains_evaluates_and_plots_as_make_demo_with_the_settings_of_its_config(monkeypatch):
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "scan-demo.yaml").read_text())
    assert config["preset"] == "small" and config["model"] == cli.DEMO_MODEL and config["train"] == cli.DEMO_TRAIN
    calls = []
    real_main = cli.main
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0 if argv[0] != "demo" else real_main(argv))
    assert cli.main(["demo", "--out", "runs/d", "--overwrite"]) == 0
    train, evaluate, plot = calls
    assert train[:6] == ["train", "translation", "--data", "builtin:scan", "--preset", "small"]
    settings = dict(x.split("=", 1) for x in train[7::2][: len(cli.DEMO_MODEL) + len(cli.DEMO_TRAIN)])
    assert settings == {k: str(v) for k, v in {**cli.DEMO_MODEL, **cli.DEMO_TRAIN}.items()}
    assert train[-3:] == ["--out", "runs/d", "--overwrite"]
    assert evaluate == ["evaluate", "runs/d", "--examples", "3"] and plot == ["plot", "runs/d"]


def test_info_prints_the_resolved_config_as_json():
    result = run(
        "info", "--family", "lm", "--preset", "tiny", "--set", "positional=rope", "--set", "n_kv_heads=2", "--json"
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["positional"] == "rope" and values["n_kv_heads"] == 2 and values["d_model"] == 64


def test_info_reads_a_config_file(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"vocab_size": 100, "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32}))
    result = run("info", "--family", "classifier", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "TransformerClassifier" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "--set", "d_model=30"], "d_model must be divisible by n_heads"),
        (["info", "--set", "activation=tanh"], "activation must be one of"),
        (["info", "--set", "oops"], "--set expects FIELD=VALUE"),
        (["info", "--config", "/nonexistent/model.json"], "--config /nonexistent/model.json: cannot read"),
        (["info", "--set", "dropout=abc"], "dropout must be a number, got 'abc'"),
        (["info", "--family", "bogus"], "invalid choice: 'bogus'"),
        (["forward", "--seq-len", "5000"], "exceeds max_seq_len=1024"),
        (["demo", "--batch-size", "-1"], "expected a positive integer"),
        (["bogus"], "invalid choice"),
        # Help for typing mistakes: the option meant (of the subcommand used), the setting meant, and the values
        # the user set (not the preset's) when settings conflict.
        (["info", "--famly", "lm"], "--famly: did you mean --family?"),
        (["info", "--set", "d_modle=64"], "unknown config field(s) 'd_modle' (did you mean 'd_model'?)"),
        (["info", "--set", "d_model=32", "--set", "n_heads=3"], "d_model must be divisible by n_heads: d_model=32, n_"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_an_unknown_option_is_matched_against_the_subcommand_used_only():
    assert "did you mean --max-steps?" in run("train", "lm", "--max_steps", "3").stderr
    assert "did you mean" not in run("train", "lm", "--temprature", "2").stderr  # generate's option, not train's


def test_info_reads_what_train_reads_and_defaults_to_trains_preset(tmp_path):
    assert cli.info("lm").config == tn.TransformerConfig.from_preset("small")  # as `train`, not "tiny"
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\nmodel:\n  d_model: 32\n  n_heads: 2\ntrain:\n  lr: 0.01\n", encoding="utf-8")
    result = run("info", "--family", "lm", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    expected = tn.TransformerConfig.from_preset("tiny", d_model=32, n_heads=2).to_dict()
    assert {k: values[k] for k in expected} == expected  # the training field lr is not the model's


def test_bad_json_file_names_the_line(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"d_model": 64,\n "n_heads": }\n')
    result = run("info", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: line 2" in result.stderr


def test_functions_behind_the_commands():
    summary = cli.info("lm", "tiny", overrides={"n_layers": 1})
    assert summary.config.n_layers == 1 and summary.parameters > 0
    assert cli.parse_overrides(["norm_first=true", "positional=rope", "dropout=0.2", "bias=False"]) == {
        "norm_first": True,
        "positional": "rope",
        "dropout": 0.2,
        "bias": False,
    }


def test_train_task_help_shows_that_tasks_options():
    lm, translation, every = (run("train", *task, "--help").stdout for task in (["lm"], ["translation"], []))
    assert "Train a language model." in lm and "--block-size" in lm
    assert "--max-tokens" not in lm and "--source-file" not in lm and "--text-column" not in lm
    assert "Train a translator." in translation and "--max-tokens" in translation and "--source-file" in translation
    assert "--block-size" not in translation
    assert all(option in every for option in ("--block-size", "--max-tokens", "--source-file", "--text-column"))
    assert "--max-steps" in lm and "--max-steps" in translation  # what every task reads
