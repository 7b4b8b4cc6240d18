"""The `transformer-networks` command line. Each subcommand is a plain function that Python users can call too;
`main` only parses arguments and turns a `UserError` into a one-line message with exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__
from .config import PRESETS, TransformerConfig
from .errors import ConfigError, UserError
from .models import Seq2SeqTransformer, TransformerClassifier, TransformerLM
from .training.config import FIELDS as TRAIN_FIELDS
from .training.config import TrainConfig

FAMILIES = {"seq2seq": Seq2SeqTransformer, "lm": TransformerLM, "classifier": TransformerClassifier}


def build_config(preset: str | None = None, config_file: str | None = None,
                 overrides: dict[str, Any] | None = None) -> TransformerConfig:
    """A config from a preset or a JSON file (not both), with field overrides."""
    if preset and config_file:
        raise UserError("give --preset or --config, not both")
    overrides = overrides or {}
    if config_file:
        return TransformerConfig.from_dict({**TransformerConfig.from_json(config_file).to_dict(), **overrides})
    return TransformerConfig.from_preset(preset or "tiny", **overrides)


_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["d_model=256", "norm_first=true", "positional=rope"] -> {"d_model": 256, "norm_first": True, ...}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects FIELD=VALUE, got {item!r}")
        if text in _PYTHON_LITERALS:  # people write True/False/None as often as true/false/null
            out[key] = _PYTHON_LITERALS[text]
            continue
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text  # a bare string such as rope
    return out


MODEL_FIELDS = tuple(TransformerConfig.__dataclass_fields__)


def read_config_file(path: str) -> dict[str, Any]:
    """A YAML or JSON file of settings: flat, or with "model" and "train" sections (and an optional "preset")."""
    import yaml  # JSON is YAML too, so one parser reads both

    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise UserError(f"--config {path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not UTF-8 text") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UserError(f"--config {path}: {where}invalid YAML/JSON: {getattr(e, 'problem', e)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("model", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    # YAML 1.1 reads 1e-3 (no dot) as a string; take such strings as the numbers they spell.
    for key, value in flat.items():
        if isinstance(value, str):
            try:
                number = json.loads(value)
            except json.JSONDecodeError:
                continue
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                flat[key] = number
    return flat


def split_settings(settings: dict[str, Any], origin: dict[str, str], preset: str) -> tuple[dict, dict]:
    """Route each setting to the training config or the model config, checking its name and type one by one so
    that an error names the option it came from (`origin[key]`, e.g. "--set lr=abc"). A name in both configs
    (vocab_size) is the tokenizer's: the model's vocabulary always comes from the tokenizer."""
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in settings.items():
        where = origin.get(key, key)
        if key in TRAIN_FIELDS:
            try:
                TrainConfig.from_dict({key: value})
            except ConfigError as e:
                raise UserError(f"{where}: {e}") from None
            train[key] = value
        elif key in MODEL_FIELDS:
            model[key] = value
        else:
            raise UserError(f"{where}: unknown setting {key!r}; training settings: {', '.join(TRAIN_FIELDS)}; "
                            f"model settings: {', '.join(f for f in MODEL_FIELDS if f not in TRAIN_FIELDS)}")
    try:  # model fields depend on each other (d_model and n_heads): check them together, then blame one
        TransformerConfig.from_preset(preset, **model)
    except ConfigError as e:
        for key, value in model.items():
            try:
                TransformerConfig.from_preset(preset, **{key: value})
            except ConfigError as single:
                raise UserError(f"{origin.get(key, key)}: {single}") from None
        raise UserError(f"{', '.join(sorted({origin.get(k, k).split(':')[0] for k in model}))}: {e}") from None
    return model, train


@dataclass
class ModelSummary:
    family: str
    config: TransformerConfig
    parameters: int
    output_shape: tuple[int, ...] | None = None
    seconds: float | None = None


def info(family: str = "seq2seq", preset: str | None = None, config_file: str | None = None,
         overrides: dict[str, Any] | None = None) -> ModelSummary:
    """Build a model and count its parameters."""
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    cfg = build_config(preset, config_file, overrides)
    return ModelSummary(family, cfg, FAMILIES[family](cfg).num_parameters())


def demo(preset: str = "paper-base", batch_size: int = 2, seq_len: int = 32, seed: int = 0) -> ModelSummary:
    """Build the encoder-decoder of a preset, run one forward pass on random tokens, report its size."""
    torch.manual_seed(seed)
    cfg = TransformerConfig.from_preset(preset)
    model = Seq2SeqTransformer(cfg).eval()
    src = torch.randint(1, cfg.source_vocab_size, (batch_size, seq_len))
    tgt = torch.randint(1, cfg.target_vocab_size, (batch_size, seq_len))
    start = time.perf_counter()
    with torch.no_grad():
        logits = model(src, tgt)
    seconds = time.perf_counter() - start
    return ModelSummary("seq2seq", cfg, model.num_parameters(), tuple(logits.shape), seconds)


def _print_summary(s: ModelSummary) -> None:
    cfg = s.config
    print(f"model:      {FAMILIES[s.family].__name__}")
    print(f"parameters: {s.parameters:,} ({s.parameters / 1e6:.1f}M)")
    print(f"layers:     d_model={cfg.d_model} heads={cfg.n_heads} kv_heads={cfg.kv_heads} d_ff={cfg.d_ff} "
          f"encoder={cfg.encoder_layers} decoder={cfg.decoder_layers}")
    print(f"style:      {'pre' if cfg.norm_first else 'post'}-LN {cfg.norm}, {cfg.positional} positions, "
          f"{cfg.activation}, vocab {cfg.vocab_size}")
    if s.output_shape is not None:
        print(f"forward:    logits {s.output_shape} in {s.seconds:.3f}s")


# Flags of `train` that are shorthands for a training setting (the same as --set NAME=VALUE).
TRAIN_FLAGS = ("tokenizer", "vocab_size", "max_len", "truncate", "batch_size", "max_tokens", "block_size",
               "max_steps", "max_epochs", "max_minutes", "eval_every", "patience", "lr", "device", "seed",
               "precision", "compile", "text_column", "label_column", "skip_nonfinite")


def train_command(args: argparse.Namespace) -> int:
    """`transformer-networks train TASK ...`: resolve the configs, train, print the best validation metrics."""
    from .training.tasks import DataSpec
    from .training.trainer import train

    if args.resume is not None:
        return resume_command(args)
    if args.task is None or args.out is None:
        raise UserError("train needs a task (lm, translation or classification) and --out DIR, or --resume RUN_DIR")
    settings: dict[str, Any] = {}
    origin: dict[str, str] = {}
    preset = args.preset
    if args.config_file:
        values = read_config_file(args.config_file)
        file_preset = values.pop("preset", None)
        preset = preset or file_preset  # --preset on the command line wins over the file's
        settings.update(values)
        origin.update({k: f"--config {args.config_file}: {k}" for k in values})
    preset = preset or "small"
    if preset not in PRESETS:
        raise UserError(f"--preset: unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    for name in TRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None and value is not False:
            settings[name] = value
            origin[name] = f"--{name.replace('_', '-')}"
    for key, value in parse_overrides(args.overrides).items():
        settings[key] = value
        origin[key] = f"--set {key}"
    model_settings, train_settings = split_settings(settings, origin, preset)
    if args.init and model_settings:
        raise UserError(f"--init takes the architecture from {args.init}; model settings "
                        f"({', '.join(sorted(model_settings))}) cannot change it")
    model_config = TransformerConfig.from_preset(preset, **model_settings)
    train_config = TrainConfig.from_dict(train_settings)
    spec = DataSpec(data=args.data or [], valid=args.valid or [], source_file=args.source_file,
                    target_file=args.target_file, valid_source_file=args.valid_source_file,
                    valid_target_file=args.valid_target_file)
    result = train(args.task, args.out, data=spec, model_config=model_config, train_config=train_config,
                   model_fields_set=set(model_settings), overwrite=args.overwrite, quiet=args.quiet,
                   init=args.init)
    return _train_finished(result)


def _train_finished(result: Any) -> int:
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    if result.interrupted:
        print(f"transformer-networks: {result.stop_reason}", file=sys.stderr)
        return 130 if result.interrupted == "SIGINT" else 143
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.best.items())
    print(f"best validation: {shown}")
    print(f"checkpoint: {result.out / 'best'}")
    return 0


def resume_command(args: argparse.Namespace) -> int:
    """`train --resume RUN_DIR` (or `train TASK --out RUN_DIR --resume`): continue a run from its last checkpoint
    with its own settings; nothing else may be changed, or the run would not be the one it was."""
    from .training.trainer import train

    run = args.out if args.resume is True else args.resume
    if run is None:
        raise UserError("--resume needs the run directory: --resume RUN_DIR")
    changed = [f"--{name.replace('_', '-')}" for name in (*TRAIN_FLAGS, "data", "valid", "preset", "config_file")
               if getattr(args, name, None) not in (None, False, [])] + ["--set"] * bool(args.overrides)
    if changed:
        raise UserError(f"--resume continues a run with its own settings; leave out {', '.join(changed)}")
    return _train_finished(train(args.task or "", run, resume=True, quiet=args.quiet))


def evaluate_command(args: argparse.Namespace) -> int:
    """`transformer-networks evaluate CHECKPOINT`: print the task's metrics (one JSON object with --json)."""
    from .training.evaluation import evaluate, evaluate_ensemble
    from .training.tasks import DataSpec

    spec = DataSpec(data=args.data or [], source_file=args.source_file, target_file=args.target_file)
    log = None if args.json or args.quiet else (lambda message: print(message, file=sys.stderr))
    if len(args.checkpoint) > 1:
        if args.examples:
            raise UserError("--examples prints one checkpoint's predictions; leave it out for an ensemble")
        result = evaluate_ensemble(args.checkpoint, spec, split=args.split, device=args.device, log=log)
    else:
        result = evaluate(args.checkpoint[0], spec, split=args.split, device=args.device, samples=args.examples,
                          log=log, num_beams=args.beam, length_penalty=args.length_penalty)
    if args.json:
        print(json.dumps({"task": result.task, "data": result.data, "examples": result.examples,
                          "dropped": result.dropped, **result.metrics}))
        return 0
    unit = "characters" if result.task == "lm" else "examples"
    dropped = f", {result.dropped:,} too long or empty and left out" if result.dropped else ""
    print(f"checkpoint: {result.checkpoint}")
    print(f"data:       {result.data} ({result.examples:,} {unit}{dropped})")
    for name, value in result.metrics.items():
        print(f"{name + ':':<20}{value:.4f}")
    for sample in result.samples:
        print()
        for key, value in sample.items():
            print(f"  {key + ':':<11} {value}")
    return 0


def plot_command(args: argparse.Namespace) -> int:
    """`transformer-networks plot RUN_DIR`: learning curves to a PNG."""
    from .viz.curves import plot_curves

    print(plot_curves(args.run_dir, args.out))
    return 0


def read_lines(stream: Any, chunk: int) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) from a binary stream, `chunk` lines at a time, without line endings.
    A line that is not UTF-8 is an error naming it."""
    lines: list[str] = []
    first = 1
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            raise UserError(f"stdin: line {number}: not valid UTF-8") from None
        if len(lines) == chunk:
            yield first, lines
            first, lines = number + 1, []
    if lines:
        yield first, lines


def _stdin() -> Any:
    return sys.stdin.buffer


def _line_progress(quiet: bool) -> Any:
    """A tqdm bar counting input lines on stderr when it is a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(file=sys.stderr, unit="line", dynamic_ncols=True)


def translate_command(args: argparse.Namespace) -> int:
    """`transformer-networks translate CHECKPOINT`: source lines on stdin, one translation per line on stdout
    (with --n-best N: N lines per input, `LINE<TAB>SCORE<TAB>TRANSLATION`)."""
    from .inference import load_for, translate_lines
    from .training.trainer import pick_device

    if args.n_best > args.beam:
        raise UserError(f"--n-best {args.n_best} needs --beam of at least {args.n_best}")
    ck = load_for("translation", args.checkpoint, pick_device(args.device))
    bar = _line_progress(args.quiet)
    for first, lines in read_lines(_stdin(), args.batch_size * 16):
        results = translate_lines(ck, lines, num_beams=args.beam, length_penalty=args.length_penalty,
                                  n_best=args.n_best, batch_size=args.batch_size, truncate=args.truncate,
                                  first_line=first, on_batch=None if bar is None else bar.update)
        for number, hyps in enumerate(results, start=first):
            if args.n_best == 1:
                print(hyps[0].text)
            else:
                for h in hyps:
                    print(f"{number}\t{h.score:.4f}\t{h.text}")
        sys.stdout.flush()
    if bar is not None:
        bar.close()
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """`transformer-networks generate CHECKPOINT`: continue a prompt (--prompt, else all of stdin)."""
    from .generation.logits import check_sampling
    from .inference import generate_text, load_for
    from .training.trainer import pick_device

    if not args.greedy:
        check_sampling(args.temperature, args.top_k, args.top_p)
    ck = load_for("lm", args.checkpoint, pick_device(args.device))
    if args.prompt is not None:
        prompt = args.prompt
    else:
        prompt = "\n".join(line for _, lines in read_lines(_stdin(), 1024) for line in lines)
    room = ck.config.max_seq_len - len(ck.tokenizer.encode(prompt))
    if 0 < room < args.max_new_tokens and not args.quiet:
        print(f"note: the model's context is {ck.config.max_seq_len} tokens: generating {room}, not "
              f"{args.max_new_tokens}", file=sys.stderr)
    text = generate_text(ck, prompt, max_new_tokens=args.max_new_tokens, do_sample=not args.greedy,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                         stop=args.stop, truncate=args.truncate)
    print(prompt + text)
    return 0


def classify_command(args: argparse.Namespace) -> int:
    """`transformer-networks classify CHECKPOINT`: one text per line on stdin; `label<TAB>probability` per line
    on stdout, or with --json one object per line with every class's probability. Empty lines stay empty."""
    from .inference import classify_lines, load_for
    from .training.trainer import pick_device

    ck = load_for("classification", args.checkpoint, pick_device(args.device))
    bar = _line_progress(args.quiet)
    for first, lines in read_lines(_stdin(), args.batch_size * 16):
        results = classify_lines(ck, lines, batch_size=args.batch_size, truncate=args.truncate, first_line=first)
        for line, probs in zip(lines, results, strict=True):
            if probs is None:
                print()
                continue
            label = max(probs, key=probs.get)
            if args.json:
                print(json.dumps({"text": line, "label": label, "probabilities": probs}, ensure_ascii=False))
            else:
                print(f"{label}\t{probs[label]:.4f}")
        sys.stdout.flush()
        if bar is not None:
            bar.update(len(lines))
    if bar is not None:
        bar.close()
    return 0


def attention_command(args: argparse.Namespace) -> int:
    """`transformer-networks attention CHECKPOINT --text ... --out FILE.png`: draw attention heatmaps."""
    from .inference import attention_maps
    from .training.checkpoint import load_checkpoint
    from .viz.attention import plot_attention

    ck = load_checkpoint(args.checkpoint)
    if args.target is not None and ck.task != "translation":
        raise UserError(f"--target is for translation checkpoints; {ck.path} is a {ck.task} checkpoint")
    maps = attention_maps(ck, args.text, args.target, truncate=args.truncate)
    kind = args.kind or ("cross" if ck.task == "translation" else next(iter(maps.weights)))
    if kind not in maps.weights:
        raise UserError(f"--kind {kind}: a {ck.task} model has {', '.join(maps.weights)} attention")
    print(plot_attention(maps.weights[kind], maps.queries[kind], maps.keys[kind], args.out, kind=kind,
                         layer=args.layer, head=args.head))
    return 0


def average_command(args: argparse.Namespace) -> int:
    """`transformer-networks average CKPT... --out DIR`, or `average RUN --last N --out DIR`."""
    from .training.average import average_checkpoints, step_checkpoints

    paths = args.checkpoints
    if args.last is not None:
        if len(paths) != 1:
            raise UserError("--last N takes one run directory")
        kept = step_checkpoints(paths[0])
        if len(kept) < args.last:
            raise UserError(f"{paths[0]}: {len(kept)} kept checkpoint(s) (step-*), fewer than --last {args.last} "
                            f"(train with --set keep_checkpoints=N to keep them)")
        paths = kept[-args.last :]
    out = average_checkpoints(paths, args.out, overwrite=args.overwrite)
    print(f"averaged {len(paths)} checkpoints into {out}")
    return 0


def _fresh_output(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"{out}: already exists; choose another path or pass --overwrite")
    return out


def convert_command(args: argparse.Namespace) -> int:
    """`transformer-networks convert HF_DIR OUT_DIR`: a Hugging Face model directory in our layout."""
    from .pretrained import from_pretrained, save_pretrained

    out = _fresh_output(args.out_dir, args.overwrite)
    model = from_pretrained(args.hf_dir)
    save_pretrained(model, out)
    print(f"{type(model).__name__}, {model.num_parameters():,} parameters -> {out}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """`transformer-networks export CHECKPOINT --onnx OUT.onnx` and/or `--hf DIR` (GPT-2 / BERT layout)."""
    from .pretrained import from_pretrained

    if not (args.onnx or args.hf):
        raise UserError("say what to write: --onnx OUT.onnx and/or --hf DIR")
    model = from_pretrained(args.checkpoint)
    if args.hf:
        from .interop.hf import export_hf

        print(export_hf(model, _fresh_output(args.hf, args.overwrite)))
    if args.onnx:
        from .interop.onnx import export_onnx

        _fresh_output(args.onnx, args.overwrite)
        for path in export_onnx(model, args.onnx):
            print(path)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit code 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="transformer-networks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="build the paper-base model, run a forward pass, print its size")
    p.add_argument("--preset", default="paper-base", choices=sorted(PRESETS))
    p.add_argument("--batch-size", type=_positive_int, default=2)
    p.add_argument("--seq-len", type=_positive_int, default=32)

    p = sub.add_parser("info", help="build a model from a preset or config file and print its size")
    p.add_argument("--family", default="seq2seq", choices=sorted(FAMILIES))
    p.add_argument("--preset", help=f"one of: {', '.join(sorted(PRESETS))} (default tiny)")
    p.add_argument("--config", dest="config_file", help="a JSON config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field (repeatable), e.g. --set positional=rope")
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")

    p = sub.add_parser("train", help="train a language model, translator or classifier; write a run directory",
                       description="Train on files or on built-in data (builtin:scan, builtin:scan-length, "
                       "builtin:stdlib-docs, builtin:stdlib-topics; the default when no data is given).")
    p.add_argument("task", nargs="?", choices=["lm", "translation", "classification"])
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN_DIR",
                   help="continue RUN_DIR (or --out) from its last checkpoint, exactly as it would have gone on")
    p.add_argument("--init", metavar="PATH", help="fine-tune pretrained weights: a checkpoint of ours or a local "
                   "Hugging Face directory (BERT for classification, GPT-2 for lm, BART/Marian for translation), "
                   "with its own tokenizer.json")
    p.add_argument("--data", nargs="+", metavar="PATH", help="training files (lm: files or directories; "
                   "translation: a source<TAB>target TSV; classification: TSV/CSV/JSONL), or builtin:NAME")
    p.add_argument("--valid", nargs="+", metavar="PATH", help="validation data (default: a held-out part of --data)")
    p.add_argument("--source-file", help="translation: source side, line-aligned with --target-file")
    p.add_argument("--target-file")
    p.add_argument("--valid-source-file")
    p.add_argument("--valid-target-file")
    p.add_argument("--out", metavar="DIR", help="the run directory (refused if it holds files)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--preset", help=f"model preset: {', '.join(sorted(PRESETS))} (default small)")
    p.add_argument("--config", dest="config_file", metavar="FILE",
                   help="YAML or JSON settings (model and training fields, flat or under model:/train:)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any model or training field (repeatable), e.g. --set d_model=128 --set lr=5e-4")
    p.add_argument("--tokenizer", choices=["char", "word", "bpe", "unigram"])
    p.add_argument("--vocab-size", type=_positive_int, help="bpe/unigram vocabulary size (default 8000)")
    p.add_argument("--max-len", type=_positive_int, help="longest example in tokens (default 256)")
    p.add_argument("--truncate", action="store_true", help="cut over-long examples instead of dropping them")
    p.add_argument("--batch-size", type=_positive_int, help="sequences per batch (lm, classification)")
    p.add_argument("--max-tokens", type=_positive_int, help="translation: tokens per batch (default 4096)")
    p.add_argument("--block-size", type=_positive_int, help="lm: tokens per sequence (default 128)")
    p.add_argument("--max-steps", type=_positive_int)
    p.add_argument("--max-epochs", type=float)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--eval-every", type=_positive_int, help="steps between evaluations and checkpoints")
    p.add_argument("--patience", type=_positive_int, help="early stopping after N evaluations without progress")
    p.add_argument("--lr", type=float)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--text-column", help="classification: the text column (default text, else sentence)")
    p.add_argument("--label-column", help="classification: the label column (default label)")
    p.add_argument("--skip-nonfinite", type=_positive_int, metavar="N",
                   help="skip at most N batches whose loss is NaN or infinite (default: stop at the first)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("evaluate", help="print a checkpoint's metrics on its test or validation data, or on files")
    p.add_argument("checkpoint", nargs="+",
                   help="a checkpoint directory, or a run directory (its best checkpoint); several classification "
                   "checkpoints are evaluated as an ensemble (their class probabilities averaged; needs --data)")
    p.add_argument("--data", nargs="+", metavar="PATH", help="files in the task's format, or builtin:NAME")
    p.add_argument("--source-file")
    p.add_argument("--target-file")
    p.add_argument("--split", choices=["train", "valid", "test"],
                   help="which part of the run's data (default test; test falls back to the validation data when "
                   "the run had no test split); with --data builtin:NAME, test or train")
    p.add_argument("--examples", type=int, default=0, metavar="N", help="also print N predictions")
    p.add_argument("--beam", type=_positive_int, default=4, help="translation: beam width for BLEU (default 4)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="translation: GNMT alpha (default 0.6)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("translate", help="translate source lines from stdin to stdout, one per line",
                       description="Reads source sentences on stdin, writes translations to stdout in the same "
                       "order (empty lines stay empty). Beam search with the GNMT length penalty, as the paper.")
    p.add_argument("checkpoint", help="a translation checkpoint, or a run directory (its best checkpoint)")
    p.add_argument("--beam", type=_positive_int, default=4, help="beam width (default 4; 1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT alpha (default 0.6)")
    p.add_argument("--n-best", type=_positive_int, default=1,
                   help="print the N best per input as LINE<TAB>SCORE<TAB>TEXT")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="sentences decoded together (default 64)")
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than the model's context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("generate", help="continue a prompt with a language model",
                       description="Samples a continuation of --prompt (or of stdin) and prints prompt and "
                       "continuation. Sampling by default; --greedy for the most likely tokens.")
    p.add_argument("checkpoint", help="a language-model checkpoint, or a run directory")
    p.add_argument("--prompt", help="the text to continue (default: all of stdin)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=200)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=_positive_int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="makes sampling reproducible")
    p.add_argument("--greedy", action="store_true", help="take the most likely token at every step")
    p.add_argument("--stop", action="append", default=[], metavar="STR",
                   help="end the output before this string (repeatable)")
    p.add_argument("--truncate", action="store_true", help="keep the end of a prompt longer than the context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("classify", help="classify text lines from stdin: label<TAB>probability per line")
    p.add_argument("checkpoint", help="a classification checkpoint, or a run directory")
    p.add_argument("--json", action="store_true", help="one JSON object per line with every class's probability")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("attention", help="draw attention heatmaps (layers x heads) for a text to a PNG")
    p.add_argument("checkpoint", help="a checkpoint of any task, or a run directory")
    p.add_argument("--text", required=True, help="the input (a translator's source)")
    p.add_argument("--target", help="translation: the target to force (default: the model's greedy translation)")
    p.add_argument("--kind", choices=["encoder", "decoder", "cross"],
                   help="which attention (default: cross for translation, else the model's self-attention)")
    p.add_argument("--layer", type=int, help="only this layer (from 0)")
    p.add_argument("--head", type=int, help="only this head (from 0)")
    p.add_argument("--truncate", action="store_true")
    p.add_argument("--out", required=True, metavar="FILE.png")

    p = sub.add_parser("average", help="average the weights of several checkpoints (as the paper reports)")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints of one model, or one run directory "
                   "with --last N")
    p.add_argument("--last", type=_positive_int, metavar="N", help="the run's last N kept checkpoints (step-*)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")

    p = sub.add_parser("convert", help="convert a local Hugging Face model directory (BERT, GPT-2, BART, Marian) "
                       "to our layout")
    p.add_argument("hf_dir", metavar="HF_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="write into OUT_DIR even if it holds files")

    p = sub.add_parser("export", help="export a model to ONNX (classifier, language model) or to the Hugging Face "
                       "layout (GPT-2, BERT)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a run, checkpoint, or model directory")
    p.add_argument("--onnx", metavar="OUT.onnx", help="a language model also writes OUT.decode.onnx (one step with "
                   "the KV cache)")
    p.add_argument("--hf", metavar="DIR", help="config.json + model.safetensors that transformers loads")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("plot", help="draw a run's learning curves (loss, metric, learning rate) to a PNG")
    p.add_argument("run_dir")
    p.add_argument("--out", help="the PNG (default RUN_DIR/curves.png)")
    return parser


COMMANDS = {"translate": translate_command, "generate": generate_command, "classify": classify_command,
            "attention": attention_command, "average": average_command, "convert": convert_command,
            "export": export_command}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            _print_summary(demo(args.preset, args.batch_size, args.seq_len))
        elif args.command == "train":
            return train_command(args)
        elif args.command == "evaluate":
            return evaluate_command(args)
        elif args.command == "plot":
            return plot_command(args)
        elif args.command in COMMANDS:
            return COMMANDS[args.command](args)
        elif args.command == "info":
            summary = info(args.family, args.preset, args.config_file, parse_overrides(args.overrides))
            if args.json:
                print(summary.config.to_json(), end="")
            else:
                _print_summary(summary)
    except UserError as e:
        print(f"transformer-networks: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("transformer-networks: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
