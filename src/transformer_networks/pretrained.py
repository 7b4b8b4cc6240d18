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

from pathlib import Path
from typing import Any

from .checkpoints import load_checkpoint, load_model_dir, save_pretrained
from .errors import UserError, read_json_object
from .interop.hf import export_hf, export_hf_tokenizer, load_hf
from .interop.onnx import export_onnx  # the optional onnx packages are checked when it is called
from .models import ModelBase

__all__ = ["convert", "export", "from_pretrained", "save_pretrained"]


def from_pretrained(path: str | Path, **options: Any) -> ModelBase:
    """Our model, in eval mode, from a local directory: a checkpoint or run of ours, our `save_pretrained`
    layout, or a Hugging Face model directory (`interop.hf.load_hf`; options such as n_classes go to it).
    The tokenizer beside the weights becomes `model.tokenizer` (ours for our checkpoints, a Hugging Face
    `tokenizers.Tokenizer` for theirs; None when there is none)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such directory")
    if (path / "model.json").is_file():
        model, tokenizer_file = load_model_dir(path), path / "tokenizer.json"
    elif (path / "config.json").is_file() and "model_type" in read_json_object(path / "config.json"):
        model, tokenizer_file = load_hf(path, **options), path / "tokenizer.json"
    else:
        checkpoint = load_checkpoint(path)
        model, tokenizer_file = checkpoint.model, None
        model.tokenizer = checkpoint.tokenizer
    if tokenizer_file is not None:
        model.tokenizer = _hf_tokenizer(tokenizer_file) if tokenizer_file.is_file() else None
    return model.eval()


def _hf_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
        raise UserError(f"{path}: not a tokenizers file: {str(e).splitlines()[0]}") from None


def _fresh_output(path: str | Path, overwrite: bool) -> Path:
    """`path`, which must not exist yet (or be an empty directory) unless overwriting."""
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"{out}: already exists; choose another path or pass --overwrite")
    return out


def convert(hf_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> tuple[ModelBase, Path]:
    """A Hugging Face model directory rewritten in our layout (`save_pretrained`): (the model, its directory)."""
    out = _fresh_output(out_dir, overwrite)
    model = from_pretrained(hf_dir)
    return model, save_pretrained(model, out)


def export(
    checkpoint: str | Path, *, onnx: str | Path | None = None, hf: str | Path | None = None, overwrite: bool = False
) -> list[Path]:
    """Write a model of ours as a Hugging Face directory (`hf`: GPT-2, Llama, BERT or Marian layout, as
    `interop.hf.export_hf` picks) and/or ONNX graphs (`onnx`;
    a language model also writes its decode step beside it). Returns the paths written."""
    if not (onnx or hf):
        raise UserError("say what to write: --onnx OUT.onnx and/or --hf DIR")
    model = from_pretrained(checkpoint)
    written = []
    if hf:
        written.append(export_hf(model, _fresh_output(hf, overwrite)))
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is not None:  # AutoTokenizer loads it; a chat model's with its chat template
            export_hf_tokenizer(tokenizer, hf, max_len=model.cfg.max_seq_len)
    if onnx:
        _fresh_output(onnx, overwrite)
        written.extend(export_onnx(model, onnx))
    return written
