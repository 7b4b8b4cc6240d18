"""The `transformer-networks` command line. Each subcommand is a plain function that Python users can call too;
`main` only parses arguments and turns a `UserError` into a one-line message with exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from . import __version__
from .config import PRESETS, TransformerConfig
from .errors import UserError
from .models import Seq2SeqTransformer, TransformerClassifier, TransformerLM

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            _print_summary(demo(args.preset, args.batch_size, args.seq_len))
        elif args.command == "info":
            summary = info(args.family, args.preset, args.config_file, parse_overrides(args.overrides))
            if args.json:
                print(summary.config.to_json(), end="")
            else:
                _print_summary(summary)
    except UserError as e:
        print(f"transformer-networks: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
