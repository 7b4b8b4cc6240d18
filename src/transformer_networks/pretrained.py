"""Pretrained models in one call: `from_pretrained(path)` and `save_pretrained(model, path)`.

    model = tn.from_pretrained("runs/mt")             # a training run or checkpoint of ours
    model = tn.from_pretrained("hf/bert-base-uncased")  # a local Hugging Face directory (BERT, GPT-2, BART, Marian)
    tn.save_pretrained(model, "my-model")             # our layout: config.json, model.json, model.safetensors
    model.tokenizer                                   # the tokenizer found beside the weights, or None

Our model layout is a directory of `config.json` (a `TransformerConfig`), `model.json` (which model class) and
`model.safetensors`, plus `tokenizer.json` when the model has a tokenizer (copied as it is). Nothing is ever
downloaded, and nothing pickled is run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .config import TransformerConfig
from .errors import UserError, read_json_object
from .models import Seq2SeqTransformer, TransformerClassifier, TransformerLM

MODEL_CLASSES = {cls.__name__: cls for cls in (Seq2SeqTransformer, TransformerLM, TransformerClassifier)}


def save_pretrained(model: nn.Module, path: str | Path, *, tokenizer: Any = None) -> Path:
    """Write `model` (and `tokenizer`, or the model's own `tokenizer` attribute) in our layout."""
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise UserError(f"save_pretrained takes one of {', '.join(MODEL_CLASSES)}, not {name}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.cfg.to_json(path / "config.json")
    (path / "model.json").write_text(json.dumps({"format": 1, "class": name}) + "\n", encoding="utf-8")
    save_model(model, str(path / "model.safetensors"))
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(str(path / "tokenizer.json"))
    return path


def from_pretrained(path: str | Path, **options: Any) -> nn.Module:
    """Our model, in eval mode, from a local directory: a checkpoint or run of ours, our `save_pretrained`
    layout, or a Hugging Face model directory (`interop.hf.load_hf`; options such as n_classes go to it).
    The tokenizer beside the weights becomes `model.tokenizer` (ours for our checkpoints, a Hugging Face
    `tokenizers.Tokenizer` for theirs; None when there is none)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such directory")
    if (path / "model.json").is_file():
        model, tokenizer_file = _load_ours(path), path / "tokenizer.json"
    elif (path / "config.json").is_file() and "model_type" in read_json_object(path / "config.json"):
        from .interop.hf import load_hf

        model, tokenizer_file = load_hf(path, **options), path / "tokenizer.json"
    else:
        from .training.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
        model, tokenizer_file = checkpoint.model, None
        model.tokenizer = checkpoint.tokenizer
    if tokenizer_file is not None:
        model.tokenizer = _hf_tokenizer(tokenizer_file) if tokenizer_file.is_file() else None
    return model.eval()


def _load_ours(path: Path) -> nn.Module:
    name = read_json_object(path / "model.json").get("class")
    if name not in MODEL_CLASSES:
        raise UserError(f"{path / 'model.json'}: unknown model class {name!r}")
    cfg = TransformerConfig.from_json(path / "config.json")
    model = MODEL_CLASSES[name](cfg)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise UserError(f"{path / 'model.safetensors'}: cannot load weights: {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise UserError(f"{path / 'model.safetensors'}: does not match config.json (missing {sorted(missing)[:5]}, "
                        f"unexpected {sorted(unexpected)[:5]})")
    return model


def _hf_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
        raise UserError(f"{path}: not a tokenizers file: {str(e).splitlines()[0]}") from None
