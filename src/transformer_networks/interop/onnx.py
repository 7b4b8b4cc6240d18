"""ONNX export of the classifier and the language model, for onnxruntime and other ONNX runtimes.

    paths = export_onnx(model, "model.onnx")     # TransformerClassifier: [model.onnx]
                                                 # TransformerLM: [model.onnx, model.decode.onnx]

The graphs are traced from the model's own modules (embeddings, layers, norms, output projection), so they follow
its configuration (positions, norms, activations, grouped-query attention) as PyTorch runs it. Needs
`pip install 'transformer-networks[onnx]'`.

Shape legend: B batch, T length, P past length (tokens already in the cache), L layers, H key/value heads,
D head dim, V vocabulary, N classes. Every name below is an ONNX input or output; B, T and P are dynamic.

Classifier, one file:
    inputs   input_ids (B, T) int64, attention_mask (B, T) int64 (1 = real token, 0 = padding)
    outputs  logits (B, N), floats of the model's dtype (as every float tensor below)

Language model, two files:
    prefill (`path`):
        inputs   input_ids (B, T) int64, attention_mask (B, T) int64
        outputs  logits (B, T, V), present.{i}.key and present.{i}.value (B, H, T, D) for i in 0..L-1
    one decode step (`path` with the suffix `.decode.onnx`):
        inputs   input_ids (B, 1) int64, attention_mask (B, P + 1) int64 (the past tokens, then the new one),
                 past.{i}.key and past.{i}.value (B, H, P, D)   (the previous call's present.{i}.*)
        outputs  logits (B, 1, V), present.{i}.key and present.{i}.value (B, H, P + 1, D)

Positions come from the attention mask: a token's position is the number of real tokens before it in its row
(as `generation.left_padded_positions` computes them). So rows may be padded on either side: prompts of different
lengths padded on the left (as `generate` takes them), or on the right, where the cache then keeps the padding
slots and the mask hides them. Every decode step appends one slot per row: feed each row's new token with
attention_mask 1 (and the mask of the earlier slots unchanged). Padding tokens' own logits are meaningless.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..models import TransformerClassifier, TransformerLM
from ..nn.cache import KVCache, LayerCache
from ..nn.masks import causal_mask, left_padded_positions

__all__ = ["decode_path", "export_onnx"]


def decode_path(path: str | Path) -> Path:
    """Where the decode-step graph of a language model exported to `path` goes: OUT.onnx -> OUT.decode.onnx."""
    path = Path(path)
    return path.with_name(path.stem + ".decode.onnx") if path.suffix == ".onnx" else Path(f"{path}.decode.onnx")


class ClassifierGraph(nn.Module):
    """The classifier with an int64 mask, the one ONNX input type tokenizers and onnxruntime users expect."""

    def __init__(self, model: TransformerClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask=attention_mask != 0)  # (B, N)


class LMStepGraph(nn.Module):
    """The language model over new tokens given the keys/values of earlier ones as plain tensors.

    forward(input_ids (B, T), attention_mask (B, P + T), past_0_key, past_0_value, ...) with P = 0 and no past
    tensors for the prefill; returns (logits (B, T, V), present_0_key, present_0_value, ...).

    It runs the model's own embeddings, rotary table, layer stack and output projection; only the bookkeeping of
    `TransformerBody.forward` (slots, positions, masks, the cache object) is done here with tensor operations,
    because that method checks positions with Python ints, which a traced graph with dynamic shapes cannot do.
    """

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        body = self.model.decoder
        n_new = input_ids.size(1)  # T
        n_seen = attention_mask.size(1) - n_new  # P, 0 in the prefill
        keys = attention_mask != 0  # (B, P + T) which slots hold real tokens
        positions = left_padded_positions(keys)[:, n_seen:]  # (B, T) real tokens before each new one
        slots = torch.arange(n_seen, n_seen + n_new, device=input_ids.device)  # (T,) where the new tokens go

        x = body.embeddings(input_ids, positions)  # (B, T, C)
        rotary = body.rotary(positions) if body.rotary is not None else None  # (B, T, D) cos and sin
        mask = keys[:, None, None, :] & causal_mask(slots, keys.size(1))  # (B, 1, T, P + T)

        caches = []
        for i in range(len(body.stack.layers)):
            # A growing cache by concatenation (one Concat node): the layer appends this step's (B, H, T, D) keys
            # and values.
            cache = KVCache(concatenate=True)
            if past:
                cache.k, cache.v = past[2 * i], past[2 * i + 1]  # (B, H, P, D) each
            caches.append(LayerCache(cache))
        out = body.stack(x, mask=mask, rotary=rotary, caches=caches, positions=slots)
        logits = self.model.lm_head(out.last_hidden_state)  # (B, T, V)
        presents = [t for cache in caches for t in (cache.self_attn.k, cache.self_attn.v)]  # (B, H, P + T, D)
        return (logits, *presents)


def export_onnx(model: nn.Module, path: str | Path, *, opset: int | None = None) -> list[Path]:
    """Export a `TransformerClassifier` (one file) or a `TransformerLM` (prefill at `path`, one decode step at
    `decode_path(path)`) to ONNX; see the module docstring for the inputs and outputs. Returns the files written
    (with `.onnx.data` weight files beside them for models over `MAX_INLINE_BYTES`).

    opset: the ONNX opset version (default: the exporter's). The model is exported in eval mode (no dropout) and
    left in the mode it was in.
    """
    if not isinstance(model, (TransformerClassifier, TransformerLM)):
        raise UserError(f"ONNX export supports TransformerClassifier and TransformerLM, not {type(model).__name__}")
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"ONNX export needs {' and '.join(missing)}: pip install 'transformer-networks[onnx]'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(model, TransformerClassifier):
                return _export_classifier(model, path, opset)
            return _export_lm(model, path, opset)
    finally:
        model.train(was_training)


# The exporter: torch.onnx.export(dynamo=True), i.e. torch.export, then onnxscript's translation to ONNX. The
# TorchScript exporter (dynamo=False, deprecated) traces sizes as tensors, and fails on the model's own attention
# (`enable_gqa=n_rep > 1` in `nn/attention.py` gets a tensor, not a bool); torch.export keeps sizes as symbols,
# so the model's Python code runs unchanged and the batch, length and past length stay dynamic. Example inputs
# have sizes >= 2, which torch.export needs to keep a dimension dynamic rather than specialize it.
EXAMPLE_BATCH, EXAMPLE_LENGTH = 2, 3
# Weights go inside the .onnx file up to this size (protobuf caps a file at 2 GB); larger models get them in a
# file beside it, `path` + ".data", which onnxruntime finds by itself.
MAX_INLINE_BYTES = 1_800_000_000


def _example_ids(model: TransformerClassifier | TransformerLM, batch: int, length: int) -> Tensor:
    device = next(model.parameters()).device
    return torch.randint(0, model.cfg.vocab_size, (batch, length), device=device)  # (B, T), all marked real


def _save(
    wrapper: nn.Module,
    args: tuple,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple,
    opset: int | None,
) -> list[Path]:
    wrapper.eval()
    # Quiet torch's harmless notes: that `batch` of several inputs is one dimension, a pytree deprecation, and
    # (logged) that torchvision's operators are skipped when torchvision is not installed.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name")
            warnings.filterwarnings("ignore", category=FutureWarning)
            program = torch.onnx.export(
                wrapper,
                args,
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                verbose=False,
            )
    finally:
        registry_log.setLevel(level)
    size = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    assert program is not None  # dynamo=True returns the program
    program.save(path, external_data=size > MAX_INLINE_BYTES)
    data = path.with_name(path.name + ".data")
    return [path, data] if size > MAX_INLINE_BYTES and data.exists() else [path]


def _export_classifier(model: TransformerClassifier, path: Path, opset: int | None) -> list[Path]:
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=model.cfg.max_seq_len)
    ids = _example_ids(model, EXAMPLE_BATCH, EXAMPLE_LENGTH)
    mask = torch.ones_like(ids)
    return _save(
        ClassifierGraph(model),
        (ids, mask),
        path,
        ["input_ids", "attention_mask"],
        ["logits"],
        ({0: batch, 1: length}, {0: batch, 1: length}),
        opset,
    )


def _export_lm(model: TransformerLM, path: Path, opset: int | None) -> list[Path]:
    cfg = model.cfg
    wrapper = LMStepGraph(model)
    n_layers = len(model.decoder.stack.layers)
    kv_names = [f"{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=cfg.max_seq_len)
    past_length = torch.export.Dim("past_length", max=cfg.max_seq_len - 1)

    ids = _example_ids(model, EXAMPLE_BATCH, EXAMPLE_LENGTH)
    mask = torch.ones_like(ids)
    written = _save(
        wrapper,
        (ids, mask),
        path,
        ["input_ids", "attention_mask"],
        ["logits"] + [f"present.{name}" for name in kv_names],
        ({0: batch, 1: length}, {0: batch, 1: length}),
        opset,
    )

    # The decode step's example past: the prefill's own keys and values.
    past = wrapper(ids, mask)[1:]  # (B, H, P, D) each
    new_ids = _example_ids(model, EXAMPLE_BATCH, 1)
    new_mask = torch.ones(EXAMPLE_BATCH, EXAMPLE_LENGTH + 1, dtype=mask.dtype, device=mask.device)
    written += _save(
        wrapper,
        (new_ids, new_mask, *past),
        decode_path(path),
        ["input_ids", "attention_mask"] + [f"past.{name}" for name in kv_names],
        ["logits"] + [f"present.{name}" for name in kv_names],
        ({0: batch}, {0: batch, 1: past_length + 1}, tuple({0: batch, 2: past_length} for _ in past)),
        opset,
    )
    return written
