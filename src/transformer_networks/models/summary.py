"""`info` and `demo`: build a model of a family from a preset or a config file, count its parameters, and (demo)
run one forward pass on random tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..config import TransformerConfig
from ..errors import UserError
from ..settings import build_config
from . import MODELS, Seq2SeqTransformer


@dataclass
class ModelSummary:
    family: str
    config: TransformerConfig
    parameters: int
    output_shape: tuple[int, ...] | None = None
    seconds: float | None = None


def info(
    family: str = "seq2seq",
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelSummary:
    """Build a model and count its parameters."""
    if family not in MODELS:
        raise UserError(f"unknown model family {family!r}; choose one of {', '.join(MODELS)}")
    cfg = build_config(preset, config_file, overrides)
    return ModelSummary(family, cfg, MODELS[family](cfg).num_parameters())


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


def describe(s: ModelSummary) -> str:
    """The lines `info` and `demo` print."""
    cfg = s.config
    lines = [
        f"model:      {MODELS[s.family].__name__}",
        f"parameters: {s.parameters:,} ({s.parameters / 1e6:.1f}M)",
        f"layers:     d_model={cfg.d_model} heads={cfg.n_heads} kv_heads={cfg.kv_heads} d_ff={cfg.d_ff} "
        f"encoder={cfg.encoder_layers} decoder={cfg.decoder_layers}",
        f"style:      {'pre' if cfg.norm_first else 'post'}-LN {cfg.norm}, "
        f"{'no' if cfg.positional == 'none' else cfg.positional} positions, "
        f"{cfg.activation}, vocab {cfg.vocab_size}",
    ]
    if s.output_shape is not None:
        lines.append(f"forward:    logits {s.output_shape} in {s.seconds:.3f}s")
    return "\n".join(lines)
