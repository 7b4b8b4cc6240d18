"""Hugging Face checkpoints in and out: BERT, GPT-2, BART and MarianMT as our model classes.

    model = load_hf("path/to/bert-dir")            # config.json + model.safetensors (or pytorch_model.bin)
    model = load_hf("path/to/bert-dir", family="qa")  # any BERT checkpoint as a TransformerQA (fresh span head)
    export_hf(model, "out-dir")                      # back to the Hugging Face layout (GPT-2 and BERT families)

Each pair of a checkpoint kind (config.json's model_type) and one of our model classes is a `Family`: how its
config.json becomes a `TransformerConfig`, and a table from its weight names to ours (`{}` = the layer index,
`:q`/`:k`/`:v` = a third of our fused attention projection, GPT-2's Conv1D weights listed as transposed).
`FAMILIES` holds each model_type's default (BERT: TransformerClassifier); `VARIANTS` the other classes its
checkpoints load as (BERT: TransformerQA, picked by default when the weights have BertForQuestionAnswering's
`qa_outputs`). Loading checks that every foreign tensor has a place and every one of ours is filled with
the right shape (interop/weights.py), and names what does not fit. Nothing is downloaded: the path is a local
directory. `pytorch_model.bin` is read with `torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TransformerConfig
from ..errors import UserError, read_json_object
from ..models import ModelBase, Seq2SeqTransformer, TransformerClassifier, TransformerLM, TransformerQA
from .weights import WeightMappingError, load_state_dict_strict, map_state_dict, unmap_state_dict


class HFError(UserError):
    """A Hugging Face directory that cannot be read or is not supported (the message names the file)."""


def _pair(foreign: str, ours: str) -> dict[str, str]:
    """Rows for a weight and its bias."""
    return {f"{foreign}.weight": f"{ours}.weight", f"{foreign}.bias": f"{ours}.bias"}


def _qkv(foreign: str, ours: str, names: tuple[str, str, str]) -> dict[str, str]:
    """Rows for separate q/k/v projections (weights and biases) into our fused in_proj."""
    rows = {}
    for name, part in zip(names, "qkv", strict=True):
        rows[f"{foreign}.{name}.weight"] = f"{ours}.in_proj.weight:{part}"
        rows[f"{foreign}.{name}.bias"] = f"{ours}.in_proj.bias:{part}"
    return rows


# --- the weight tables -----------------------------------------------------------------------------------------

_BERT_LAYER = "encoder.layer.{}"
_OUR_ENC = "encoder.stack.layers.{}"
BERT_ENCODER_TABLE: dict[str, str] = {
    "embeddings.word_embeddings.weight": "encoder.embeddings.token.weight",
    "embeddings.position_embeddings.weight": "encoder.embeddings.position.embedding.weight",
    "embeddings.token_type_embeddings.weight": "encoder.embeddings.token_type.weight",
    **_pair("embeddings.LayerNorm", "encoder.embeddings.norm"),
    **_qkv(f"{_BERT_LAYER}.attention.self", f"{_OUR_ENC}.self_attn", ("query", "key", "value")),
    **_pair(f"{_BERT_LAYER}.attention.output.dense", f"{_OUR_ENC}.self_attn.out_proj"),
    **_pair(f"{_BERT_LAYER}.attention.output.LayerNorm", f"{_OUR_ENC}.self_attn_residual.norm"),
    **_pair(f"{_BERT_LAYER}.intermediate.dense", f"{_OUR_ENC}.ffn.fc1"),
    **_pair(f"{_BERT_LAYER}.output.dense", f"{_OUR_ENC}.ffn.fc2"),
    **_pair(f"{_BERT_LAYER}.output.LayerNorm", f"{_OUR_ENC}.ffn_residual.norm"),
}
BERT_TABLE: dict[str, str] = {
    **BERT_ENCODER_TABLE,
    **_pair("pooler.dense", "pooler"),
    **_pair("classifier", "head"),  # BertForSequenceClassification only
}
# BertForQuestionAnswering: no pooler; qa_outputs (hidden -> start, end) is our span head.
BERT_QA_TABLE: dict[str, str] = {**BERT_ENCODER_TABLE, **_pair("qa_outputs", "span_head")}

_OUR_DEC = "decoder.stack.layers.{}"
GPT2_TABLE: dict[str, str] = {
    "wte.weight": "decoder.embeddings.token.weight",
    "wpe.weight": "decoder.embeddings.position.embedding.weight",
    **_pair("h.{}.ln_1", f"{_OUR_DEC}.self_attn_residual.norm"),
    **_pair("h.{}.attn.c_attn", f"{_OUR_DEC}.self_attn.in_proj"),  # q, k, v already fused, in that order
    **_pair("h.{}.attn.c_proj", f"{_OUR_DEC}.self_attn.out_proj"),
    **_pair("h.{}.ln_2", f"{_OUR_DEC}.ffn_residual.norm"),
    **_pair("h.{}.mlp.c_fc", f"{_OUR_DEC}.ffn.fc1"),
    **_pair("h.{}.mlp.c_proj", f"{_OUR_DEC}.ffn.fc2"),
    **_pair("ln_f", "decoder.stack.final_norm"),
}
# GPT-2's Conv1D keeps weights as (in, out); nn.Linear as (out, in).
GPT2_TRANSPOSED = frozenset(
    f"h.{{}}.{name}.weight" for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
)


def _bart_stack(side: str, ours: str, cross: bool) -> dict[str, str]:
    layer, our = f"{side}.layers.{{}}", f"{ours}.stack.layers.{{}}"
    rows = {
        **_qkv(f"{layer}.self_attn", f"{our}.self_attn", ("q_proj", "k_proj", "v_proj")),
        **_pair(f"{layer}.self_attn.out_proj", f"{our}.self_attn.out_proj"),
        **_pair(f"{layer}.self_attn_layer_norm", f"{our}.self_attn_residual.norm"),
        **_pair(f"{layer}.fc1", f"{our}.ffn.fc1"),
        **_pair(f"{layer}.fc2", f"{our}.ffn.fc2"),
        **_pair(f"{layer}.final_layer_norm", f"{our}.ffn_residual.norm"),
    }
    if cross:
        rows.update(
            {
                **_qkv(f"{layer}.encoder_attn", f"{our}.cross_attn", ("q_proj", "k_proj", "v_proj")),
                **_pair(f"{layer}.encoder_attn.out_proj", f"{our}.cross_attn.out_proj"),
                **_pair(f"{layer}.encoder_attn_layer_norm", f"{our}.cross_attn_residual.norm"),
            }
        )
    return rows


MARIAN_TABLE: dict[str, str] = {
    "shared.weight": "decoder.embeddings.token.weight",  # one matrix: both embeddings and the output projection
    "final_logits_bias": "lm_head.bias",
    **_bart_stack("encoder", "encoder", cross=False),
    **_bart_stack("decoder", "decoder", cross=True),
}
BART_TABLE: dict[str, str] = {
    **MARIAN_TABLE,
    "encoder.embed_positions.weight": "encoder.embeddings.position.embedding.weight",
    "decoder.embed_positions.weight": "decoder.embeddings.position.embedding.weight",
    **_pair("encoder.layernorm_embedding", "encoder.embeddings.norm"),
    **_pair("decoder.layernorm_embedding", "decoder.embeddings.norm"),
}
_SHARED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


# --- config.json -> TransformerConfig ---------------------------------------------------------------------------

_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
}


def _activation(name: str, source: str) -> str:
    if name not in _ACTIVATIONS:
        raise HFError(f"{source}: activation {name!r} is not supported (supported: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]


def _require(hf: dict[str, Any], source: str, **expected: Any) -> None:
    """Refuse configs whose variant we do not implement (rather than load them into the wrong maths)."""
    for key, value in expected.items():
        if key in hf and hf[key] is not None and hf[key] != value:
            raise HFError(f"{source}: {key}={hf[key]!r} is not supported (only {value!r})")


def _bert_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    _require(hf, source, position_embedding_type="absolute", is_decoder=False, add_cross_attention=False)
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"],
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        max_seq_len=hf.get("max_position_embeddings", 512),
        positional="learned",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_first=False,
        activation=_activation(hf.get("hidden_act", "gelu"), source),
        tie_embeddings=False,
        scale_embeddings=False,
        pad_id=hf.get("pad_token_id", 0),
        n_token_types=hf.get("type_vocab_size", 2),
        embedding_norm=True,
        pooling="cls",
        classifier_pooler=True,
        n_classes=len(hf.get("id2label") or {}) or 2,
    )


def _bert_qa_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    """As `_bert_config`, less the classifier's settings (pooling, pooler, n_classes), which a TransformerQA has
    no use for: they keep our defaults."""
    fields = _bert_config(hf, source)
    for name in ("pooling", "classifier_pooler", "n_classes"):
        del fields[name]
    return fields


def _gpt2_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    _require(hf, source, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, add_cross_attention=False)
    d = hf["n_embd"]
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=d,
        n_heads=hf["n_head"],
        n_layers=hf["n_layer"],
        d_ff=hf.get("n_inner") or 4 * d,
        dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        max_seq_len=hf.get("n_positions", 1024),
        positional="learned",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        norm_first=True,
        activation=_activation(hf.get("activation_function", "gelu_new"), source),
        tie_embeddings=True,
        scale_embeddings=False,
        pad_id=None,
        bos_id=hf.get("bos_token_id"),
        eos_id=hf.get("eos_token_id"),
    )


def _seq2seq_config(hf: dict[str, Any], source: str, *, bart: bool) -> dict[str, Any]:
    if hf["encoder_attention_heads"] != hf["decoder_attention_heads"] or hf["encoder_ffn_dim"] != hf["decoder_ffn_dim"]:
        raise HFError(f"{source}: encoder and decoder of different widths (heads or ffn_dim) are not supported")
    if not bart and (
        not hf.get("share_encoder_decoder_embeddings", True)
        or hf.get("decoder_vocab_size", hf["vocab_size"]) != hf["vocab_size"]
    ):
        raise HFError(f"{source}: separate source and target vocabularies are not supported")
    _require(hf, source, normalize_before=False, add_final_layer_norm=False)
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        n_heads=hf["encoder_attention_heads"],
        n_layers=hf["encoder_layers"],
        n_encoder_layers=hf["encoder_layers"],
        n_decoder_layers=hf["decoder_layers"],
        d_ff=hf["encoder_ffn_dim"],
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        max_seq_len=hf.get("max_position_embeddings", 1024),
        positional="learned" if bart else "sinusoidal",
        position_offset=2 if bart else 0,
        sinusoidal_layout="halves",
        norm="layernorm",
        norm_eps=1e-5,
        norm_first=False,
        activation=_activation(hf.get("activation_function", "gelu"), source),
        tie_embeddings=True,
        scale_embeddings=bool(hf.get("scale_embedding", False)),
        embedding_norm=bart,
        final_logits_bias=True,
        pad_id=hf.get("pad_token_id"),
        bos_id=hf.get("decoder_start_token_id"),
        eos_id=hf.get("eos_token_id"),
    )


@dataclass(frozen=True)
class Family:
    name: str  # config.json's model_type
    model_class: type[ModelBase]
    table: dict[str, str]
    config: Callable[[dict[str, Any], str], dict[str, Any]]
    prefix: str = ""  # the base model's prefix in task-specific checkpoints ("bert.", "transformer.", "model.")
    transposed: frozenset[str] = frozenset()
    ignored: tuple[str, ...] = ()  # regexes of foreign tensors that are not weights of ours (buffers, other heads)
    copies: dict[str, str] = field(default_factory=dict)  # tied copies saved by older versions -> the original
    head: str = ""  # our task head ("head", "span_head"): freshly initialised when the checkpoint has none that fits
    heads: tuple[str, ...] = ()  # foreign names of the task head, saved without `prefix` ("classifier.")
    marker: str = ""  # a (prefix-less) foreign tensor that makes this variant the default choice ("qa_outputs.weight")


FAMILIES: dict[str, Family] = {
    "bert": Family(
        "bert",
        TransformerClassifier,
        BERT_TABLE,
        _bert_config,
        prefix="bert.",
        ignored=(r"embeddings\.position_ids", r"cls\..*", r"qa_outputs\..*"),  # the pretraining and QA heads
        head="head",
        heads=("classifier.",),
    ),
    "gpt2": Family(
        "gpt2",
        TransformerLM,
        GPT2_TABLE,
        _gpt2_config,
        prefix="transformer.",
        transposed=GPT2_TRANSPOSED,
        ignored=(r"h\.\d+\.attn\.(bias|masked_bias)",),  # causal-mask buffers
        copies={"lm_head.weight": "wte.weight"},
    ),
    "bart": Family(
        "bart",
        Seq2SeqTransformer,
        BART_TABLE,
        lambda hf, src: _seq2seq_config(hf, src, bart=True),
        prefix="model.",
        copies={k: "shared.weight" for k in _SHARED_COPIES},
    ),
    "marian": Family(
        "marian",
        Seq2SeqTransformer,
        MARIAN_TABLE,
        lambda hf, src: _seq2seq_config(hf, src, bart=False),
        prefix="model.",
        # Marian's sinusoidal positions are computed, not weights (older exports saved them)
        ignored=(r"(en|de)coder\.embed_positions\.weight",),
        copies={k: "shared.weight" for k in _SHARED_COPIES},
    ),
}
# The other model classes a model_type's checkpoints load as (`load_hf(family=...)`), besides its default above.
VARIANTS: dict[str, tuple[Family, ...]] = {
    "bert": (
        Family(
            "bert",
            TransformerQA,
            BERT_QA_TABLE,
            _bert_qa_config,
            prefix="bert.",
            # BertModel's pooler, a classifier's head and the pretraining heads have no place in a TransformerQA
            ignored=(r"embeddings\.position_ids", r"cls\..*", r"pooler\..*", r"classifier\..*"),
            head="span_head",
            heads=("qa_outputs.",),
            marker="qa_outputs.weight",
        ),
    ),
}


def hf_family(model_type: str, family: str | None = None, weights: Iterable[str] = ()) -> Family:
    """The `Family` that loads a `model_type` checkpoint as our model family `family` ("classifier", "qa", "lm",
    "seq2seq"); None: the variant whose marker is among the weight names, else the model_type's default."""
    default = FAMILIES[model_type]
    choices = {f.model_class.family: f for f in (default, *VARIANTS.get(model_type, ()))}
    if family is None:
        names = {name.removeprefix(default.prefix) for name in weights}
        return next((f for f in choices.values() if f.marker and f.marker in names), default)
    if family not in choices:
        options = ", ".join(f"{k!r} ({f.model_class.__name__})" for k, f in choices.items())
        raise HFError(f"a {model_type} checkpoint does not load as family {family!r}; it loads as {options}")
    return choices[family]


# --- reading a directory ----------------------------------------------------------------------------------------


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise HFError(f"{directory}: no config.json (not a Hugging Face model directory)")
    hf = read_json_object(path, HFError)
    if "model_type" not in hf:
        raise HFError(f"{path}: no model_type (not a Hugging Face config)")
    if hf["model_type"] not in FAMILIES:
        raise HFError(
            f"{path}: model_type {hf['model_type']!r} is not supported; supported: "
            f"{', '.join(FAMILIES)} (BertModel, BERT classifiers and question answering, GPT-2, BART, MarianMT)"
        )
    return hf


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """model.safetensors (or its shards), else pytorch_model.bin loaded without running pickled code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    files = [directory / "model.safetensors"]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HFError(f"{index}: unreadable: {e}") from None
        files = [directory / name for name in shards]
    if all(f.is_file() for f in files):
        state: dict[str, Tensor] = {}
        for f in files:
            try:
                state.update(load_file(str(f)))
            except (SafetensorError, OSError) as e:
                raise HFError(f"{f}: cannot read (truncated or not safetensors): {e}") from None
        return state
    bin_file = directory / "pytorch_model.bin"
    if bin_file.is_file():
        try:
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file, said in one line
            raise HFError(f"{bin_file}: cannot load safely: {str(e).splitlines()[0]}") from None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise HFError(f"{bin_file}: not a state dict of tensors")
        return state
    raise HFError(f"{directory}: no weights (model.safetensors or pytorch_model.bin)")


def _foreign_state(family: Family, raw: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Strip the task prefix, drop ignored tensors, fold tied copies into their original."""
    state = {}
    for key, value in raw.items():
        state[key.removeprefix(family.prefix)] = value
    ignored = [re.compile(p) for p in family.ignored]
    state = {k: v for k, v in state.items() if not any(p.fullmatch(k) for p in ignored)}
    for copy, original in family.copies.items():
        if copy not in state:
            continue
        value = state.pop(copy)
        if original not in state:
            state[original] = value
        elif not torch.equal(state[original], value):
            raise HFError(f"{source}: {copy} differs from {original}; untied weights are not supported")
    return state


def load_hf(path: str | Path, *, n_classes: int | None = None, family: str | None = None) -> ModelBase:
    """Our model with the weights of a local Hugging Face directory (see the module docstring), in eval mode.

    BERT -> TransformerClassifier (its head is fresh unless the checkpoint has one; n_classes sets its size), or
    TransformerQA for BertForQuestionAnswering (its qa_outputs as the span head); GPT-2 -> TransformerLM, BART and
    MarianMT -> Seq2SeqTransformer. `family` (our model family: "classifier", "qa", "lm", "seq2seq") overrides the
    choice: family="qa" loads any BERT checkpoint (BertModel, a classifier, a pretraining checkpoint) as a
    TransformerQA, dropping the pooler and other heads, with a fresh span head; family="classifier" loads a
    question-answering checkpoint as a classifier with a fresh head. A family the model_type has no class for,
    and n_classes for anything but a classifier, are HFErrors."""
    directory = Path(path)
    if not directory.is_dir():
        raise HFError(f"{directory}: no such directory")
    hf = read_hf_config(directory)
    source = str(directory / "config.json")
    raw = read_hf_weights(directory)
    try:
        chosen = hf_family(hf["model_type"], family, raw)
    except HFError as e:
        raise HFError(f"{source}: {e}") from None
    classifier = chosen.model_class is TransformerClassifier
    if n_classes is not None and not classifier:
        raise HFError(f"{source}: n_classes is for a classifier; this loads as a {chosen.model_class.__name__}")
    state = _foreign_state(chosen, raw, str(directory))
    fields = chosen.config(hf, source)
    if classifier:
        fields["classifier_pooler"] = "pooler.dense.weight" in state  # sentence-transformers may have none
        if "classifier.weight" in state:
            fields["n_classes"] = state["classifier.weight"].shape[0]
        if n_classes is not None:
            fields["n_classes"] = n_classes
    try:
        cfg = TransformerConfig(**fields)
    except UserError as e:
        raise HFError(f"{source}: {e}") from None
    model = chosen.model_class(cfg)
    try:
        ours = map_state_dict(state, chosen.table, chosen.transposed, hint=f"{chosen.name} weights in {directory}")
        if chosen.head:
            # BertModel has no head, a classifier one of another size: the new head keeps its fresh initialisation
            fresh = {k: v for k, v in model.state_dict().items() if k.startswith(chosen.head + ".")}
            if any(k not in ours or ours[k].shape != v.shape for k, v in fresh.items()):
                ours.update(fresh)
        if "lm_head.bias" in ours:
            ours["lm_head.bias"] = ours["lm_head.bias"].reshape(-1)  # BART keeps it as (1, V)
        load_state_dict_strict(model, ours)
    except WeightMappingError as e:
        raise HFError(f"{directory}: {e}") from None
    id2label = hf.get("id2label")
    known = isinstance(id2label, dict) and len(id2label) == cfg.n_classes and "classifier.weight" in state
    if isinstance(model, TransformerClassifier) and isinstance(id2label, dict) and known:
        model.labels = [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(cfg.n_classes)]
    return model.eval()


# --- writing the Hugging Face layout ----------------------------------------------------------------------------


def export_hf(model: nn.Module, out: str | Path) -> Path:
    """Write `model` as a Hugging Face directory (config.json + model.safetensors) that `transformers` loads:
    a TransformerLM shaped like GPT-2 as GPT2LMHeadModel, a TransformerClassifier shaped like BERT as
    BertForSequenceClassification, a TransformerQA shaped like BERT as BertForQuestionAnswering. Other shapes are
    refused, naming the setting that does not fit."""
    from safetensors.torch import save_file

    # The depth of the one stack each model builds: n_decoder_layers / n_encoder_layers when set, else n_layers.
    if isinstance(model, TransformerLM):
        cfg = model.cfg
        n_layers = cfg.decoder_layers
        family, hf = FAMILIES["gpt2"], _gpt2_export_config(cfg, n_layers)
    elif isinstance(model, TransformerClassifier):
        cfg = model.cfg
        n_layers = cfg.encoder_layers
        family, hf = FAMILIES["bert"], _bert_export_config(cfg, n_layers, labels=model.labels)
    elif isinstance(model, TransformerQA):
        cfg = model.cfg
        n_layers = cfg.encoder_layers
        family, hf = hf_family("bert", "qa"), _bert_export_config(cfg, n_layers, qa=True)
    else:
        raise HFError(
            f"export to the Hugging Face layout supports TransformerLM (as GPT-2), TransformerClassifier and "
            f"TransformerQA (as BERT), not {type(model).__name__}"
        )
    ours = model.state_dict()
    state = unmap_state_dict(ours, family.table, family.transposed, n_layers=n_layers)
    _check_all_exported(ours, family, n_layers)
    tensors = {
        (k if k.startswith(family.heads) else family.prefix + k): v.detach().cpu().contiguous()
        for k, v in state.items()
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    return out


def _check_all_exported(ours: dict[str, Tensor], family: Family, n_layers: int) -> None:
    """Refuse to write a directory that would silently lack one of our tensors (one name per tied group suffices),
    as loading refuses one that lacks a tensor the model needs."""
    placed = {
        dst.format(i).partition(":")[0]
        for src, dst in family.table.items()
        for i in (range(n_layers) if "{}" in src else [0])
    }
    groups: dict[int, list[str]] = {}
    for name, tensor in ours.items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    left = [names[0] for names in groups.values() if not placed.intersection(names)]
    if left:
        raise HFError(f"this model cannot be written as {family.name}: no place for {', '.join(left)}")


def _check_export(cfg: TransformerConfig, family: str, **expected: Any) -> None:
    wrong = [f"{k}={getattr(cfg, k)!r} (needs {v!r})" for k, v in expected.items() if getattr(cfg, k) != v]
    if wrong:
        raise HFError(f"this model cannot be written as {family}: {', '.join(wrong)}")


_ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def _gpt2_export_config(cfg: TransformerConfig, n_layers: int) -> dict[str, Any]:
    _check_export(
        cfg,
        "GPT-2",
        positional="learned",
        norm="layernorm",
        norm_first=True,
        bias=True,
        tie_embeddings=True,
        scale_embeddings=False,
        kv_heads=cfg.n_heads,
        position_offset=0,
        n_token_types=0,
        embedding_norm=False,
        final_logits_bias=False,
    )
    if cfg.activation not in _ACTIVATION_NAMES:
        raise HFError(f"this model cannot be written as GPT-2: activation={cfg.activation!r}")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_head": cfg.n_heads,
        "n_layer": n_layers,
        "n_inner": cfg.d_ff,
        "n_positions": cfg.max_seq_len,
        "activation_function": _ACTIVATION_NAMES[cfg.activation],
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.attention_dropout,
        "bos_token_id": cfg.bos_id,
        "eos_token_id": cfg.eos_id,
        "tie_word_embeddings": True,
    }


def _bert_export_config(
    cfg: TransformerConfig, n_layers: int, *, qa: bool = False, labels: list[str] | None = None
) -> dict[str, Any]:
    """BertForSequenceClassification's config.json, or with `qa` BertForQuestionAnswering's (which has no pooler:
    a TransformerQA's pooling settings do not matter)."""
    classifier = {} if qa else dict(pooling="cls", classifier_pooler=True)
    _check_export(
        cfg,
        "BERT",
        positional="learned",
        norm="layernorm",
        norm_first=False,
        bias=True,
        kv_heads=cfg.n_heads,
        position_offset=0,
        embedding_norm=True,
        scale_embeddings=False,
        **classifier,
    )
    if cfg.activation not in _ACTIVATION_NAMES or cfg.n_token_types < 1:
        raise HFError(
            f"this model cannot be written as BERT: activation={cfg.activation!r}, "
            f"n_token_types={cfg.n_token_types} (needs at least 1)"
        )
    hf = {
        "architectures": ["BertForQuestionAnswering" if qa else "BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.n_heads,
        "num_hidden_layers": n_layers,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "type_vocab_size": cfg.n_token_types,
        "hidden_act": _ACTIVATION_NAMES[cfg.activation],
        "layer_norm_eps": cfg.norm_eps,
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "pad_token_id": cfg.pad_id or 0,
        "position_embedding_type": "absolute",
    }
    if not qa:  # BertForQuestionAnswering keeps the default of two labels: start and end
        names = labels if labels and len(labels) == cfg.n_classes else [f"LABEL_{i}" for i in range(cfg.n_classes)]
        hf["id2label"] = {str(i): name for i, name in enumerate(names)}
        hf["label2id"] = {name: i for i, name in enumerate(names)}
    return hf


def export_hf_tokenizer(tokenizer: Any, out: str | Path, max_len: int | None = None) -> list[Path]:
    """Write the tokenizer beside an exported model, so that `AutoTokenizer.from_pretrained(out)` loads it:
    `tokenizer.json` as it is and a `tokenizer_config.json` naming its special tokens. A chat model's tokenizer
    (with the chat markers) also gets `chat_template` (`apply_chat_template` then renders the ids our template
    gives) and the end-of-turn token as its EOS, and a `generation_config.json` that makes `generate` stop there.
    `tokenizer`: a TextTokenizer or a `tokenizers.Tokenizer`. Returns the files written."""
    from ..data.chat_template import END_OF_TURN, JINJA, ChatTemplate
    from ..data.tokenizer import TextTokenizer

    text = tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer.from_pretrained_tokenizer(tokenizer)
    raw = text.tokenizer
    out = Path(out)
    raw.save(str(out / "tokenizer.json"))
    name = raw.id_to_token
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(text.bos_id),
        "eos_token": name(text.eos_id),
        "unk_token": name(text.unk_id),
        "pad_token": name(text.pad_id),
        "clean_up_tokenization_spaces": False,
    }
    if text.cls_id != text.bos_id:
        config["cls_token"] = name(text.cls_id)
    if max_len is not None:
        config["model_max_length"] = max_len
    written = [out / "tokenizer.json", out / "tokenizer_config.json"]
    if raw.token_to_id(END_OF_TURN) is not None:
        template = ChatTemplate.of(text)
        config["chat_template"] = JINJA
        config["eos_token"] = END_OF_TURN
        generation = {"bos_token_id": text.bos_id, "eos_token_id": template.end_id, "pad_token_id": text.pad_id}
        (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        written.append(out / "generation_config.json")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return written
