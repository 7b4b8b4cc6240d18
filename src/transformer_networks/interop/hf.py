"""Hugging Face checkpoints in and out: BERT, GPT-2, Llama, BART and MarianMT as our model classes (and Qwen3 in).

    model = load_hf("path/to/bert-dir")            # config.json + model.safetensors (or pytorch_model.bin)
    model = load_hf("path/to/bert-dir", family="qa")  # any BERT checkpoint as a TransformerQA (fresh span head)
    export_hf(model, "out-dir")                      # to the Hugging Face layout (GPT-2, Llama, BERT, Marian)

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
import math
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
from ..nn.positional import sinusoidal_table
from ..tokens import BOS_ID, EOS_ID, PAD_ID
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

_LLAMA_LAYER = "layers.{}"
LLAMA_TABLE: dict[str, str] = {
    "embed_tokens.weight": "decoder.embeddings.token.weight",
    **{
        f"{_LLAMA_LAYER}.self_attn.{name}.weight": f"{_OUR_DEC}.self_attn.in_proj.weight:{part}"
        for name, part in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"))
    },
    f"{_LLAMA_LAYER}.self_attn.o_proj.weight": f"{_OUR_DEC}.self_attn.out_proj.weight",
    f"{_LLAMA_LAYER}.input_layernorm.weight": f"{_OUR_DEC}.self_attn_residual.norm.weight",
    # SwiGLU: Llama's down(silu(gate(x)) * up(x)) is our fc2(silu(fc1(x)) * gate(x))
    f"{_LLAMA_LAYER}.mlp.gate_proj.weight": f"{_OUR_DEC}.ffn.fc1.weight",
    f"{_LLAMA_LAYER}.mlp.up_proj.weight": f"{_OUR_DEC}.ffn.gate.weight",
    f"{_LLAMA_LAYER}.mlp.down_proj.weight": f"{_OUR_DEC}.ffn.fc2.weight",
    f"{_LLAMA_LAYER}.post_attention_layernorm.weight": f"{_OUR_DEC}.ffn_residual.norm.weight",
    "norm.weight": "decoder.stack.final_norm.weight",
    "lm_head.weight": "lm_head.weight",  # saved without the "model." prefix; absent when tied
}

QWEN3_TABLE: dict[str, str] = {  # Llama's, with QK-norm
    **LLAMA_TABLE,
    f"{_LLAMA_LAYER}.self_attn.q_norm.weight": f"{_OUR_DEC}.self_attn.q_norm.weight",
    f"{_LLAMA_LAYER}.self_attn.k_norm.weight": f"{_OUR_DEC}.self_attn.k_norm.weight",
}


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


def _llama_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    _require(hf, source, attention_bias=False, mlp_bias=False, hidden_act="silu", rope_scaling=None)
    rope = hf.get("rope_parameters") or {}  # transformers 5 keeps rope_theta there
    if rope.get("rope_type", "default") != "default":
        raise HFError(f"{source}: rope_type={rope['rope_type']!r} is not supported (only 'default')")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):
        raise HFError(f"{source}: head_dim={hf['head_dim']} is not hidden_size / num_attention_heads")
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=d,
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"],
        dropout=0.0,
        attention_dropout=hf.get("attention_dropout", 0.0),
        max_seq_len=hf.get("max_position_embeddings", 2048),
        positional="rope",
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        norm_first=True,
        activation="swiglu",
        bias=False,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        scale_embeddings=False,
        pad_id=hf.get("pad_token_id"),
        bos_id=hf.get("bos_token_id"),
        eos_id=hf.get("eos_token_id"),
    )


def _qwen3_config(hf: dict[str, Any], source: str) -> dict[str, Any]:
    _require(hf, source, use_sliding_window=False)
    return {**_llama_config(hf, source), "qk_norm": True}


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
    "llama": Family(
        "llama",
        TransformerLM,
        LLAMA_TABLE,
        _llama_config,
        prefix="model.",
        ignored=(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq",),  # older versions saved RoPE's frequencies
        heads=("lm_head.",),
    ),
    "qwen3": Family(
        "qwen3",
        TransformerLM,
        QWEN3_TABLE,
        _qwen3_config,
        prefix="model.",
        heads=("lm_head.",),
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
        heads=("final_logits_bias",),  # a buffer of MarianMTModel itself, not of its base model
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
    """Write `model` as a Hugging Face directory (config.json + model.safetensors) that `transformers` loads with
    the same outputs: a TransformerLM as LlamaForCausalLM when it has rotary positions, RMSNorm and SwiGLU, else as
    GPT2LMHeadModel; a TransformerClassifier shaped like BERT as BertForSequenceClassification (with its label
    names), a TransformerQA as BertForQuestionAnswering; a Seq2SeqTransformer shaped like Marian as MarianMTModel.
    Other shapes are refused, naming the settings that do not fit. An LM that scales its embeddings by
    sqrt(d_model) is written with the scaled table and a separate output projection (neither GPT-2 nor Llama
    scales), and sinusoidal positions as GPT-2's learned table of the same values."""
    from safetensors.torch import save_file

    qkv_rows = None
    extra: dict[str, Tensor] = {}  # written as they are, outside the family's table
    ours = dict(model.state_dict())
    # The depth of the one stack each model builds: n_decoder_layers / n_encoder_layers when set, else n_layers.
    if isinstance(model, TransformerLM):
        cfg = model.cfg
        n_layers = cfg.decoder_layers
        ours, head = _lm_export_state(model)
        if cfg.positional == "rope" or cfg.norm == "rmsnorm" or cfg.activation == "swiglu":
            family, hf = FAMILIES["llama"], _llama_export_config(cfg, n_layers, tied=head is None)
            qkv_rows = (cfg.d_model, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim)
            if head is not None:
                ours["lm_head.weight"] = head
        else:
            family, hf = FAMILIES["gpt2"], _gpt2_export_config(cfg, n_layers, tied=head is None)
            if head is not None:
                extra["lm_head.weight"] = head
    elif isinstance(model, TransformerClassifier):
        cfg = model.cfg
        n_layers = cfg.encoder_layers
        family, hf = FAMILIES["bert"], _bert_export_config(cfg, n_layers, labels=model.labels)
    elif isinstance(model, TransformerQA):
        cfg = model.cfg
        n_layers = cfg.encoder_layers
        family, hf = hf_family("bert", "qa"), _bert_export_config(cfg, n_layers, qa=True)
    elif isinstance(model, Seq2SeqTransformer):
        cfg = model.cfg
        n_layers = max(cfg.encoder_layers, cfg.decoder_layers)
        family, hf = FAMILIES["marian"], _marian_export_config(cfg)
        if "lm_head.bias" not in ours:  # MarianMTModel always has final_logits_bias: zeros add nothing
            ours["lm_head.bias"] = torch.zeros(cfg.target_vocab_size)
    else:
        raise HFError(
            f"export to the Hugging Face layout supports TransformerLM (as Llama or GPT-2), TransformerClassifier "
            f"and TransformerQA (as BERT), Seq2SeqTransformer (as Marian), not {type(model).__name__}"
        )
    state = unmap_state_dict(ours, family.table, family.transposed, n_layers=n_layers, qkv_rows=qkv_rows)
    if "final_logits_bias" in state:
        state["final_logits_bias"] = state["final_logits_bias"].reshape(1, -1)  # Marian keeps it as (1, V)
    _check_all_exported(ours, family, n_layers)
    tensors = {
        (k if k.startswith(family.heads) else family.prefix + k): v.detach().cpu().contiguous()
        for k, v in {**state, **extra}.items()
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    return out


def _lm_export_state(model: TransformerLM) -> tuple[dict[str, Tensor], Tensor | None]:
    """An LM's tensors as GPT-2 and Llama compute: (state, the output projection when it must be written on its
    own, else None for tied embeddings). GPT-2 and Llama add no sqrt(d_model) factor: a model that scales gets the
    scaled table as its input embeddings and the plain one as its output projection; sinusoidal positions become
    the values of a learned table (GPT-2's wpe)."""
    cfg = model.cfg
    state = dict(model.state_dict())
    token = state["decoder.embeddings.token.weight"]
    head = state.pop("lm_head.weight")
    separate = None if cfg.tie_embeddings and not cfg.scale_embeddings else head
    if cfg.scale_embeddings:
        state["decoder.embeddings.token.weight"] = token * math.sqrt(cfg.d_model)
    if cfg.positional == "sinusoidal":
        table = sinusoidal_table(cfg.max_seq_len, cfg.d_model, cfg.sinusoidal_layout)  # what the model adds
        state["decoder.embeddings.position.embedding.weight"] = table.to(token.dtype)
    return state, separate


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


# What exports as each architecture, said when a model does not fit (no Hugging Face class computes it).
EXPORT_HINTS = {
    "GPT-2": "language models of the default preset (small), gpt2-small, or with rope, rmsnorm and swiglu (as Llama)",
    "Llama": "language models with positional=rope, norm=rmsnorm, activation=swiglu, bias=false",
    "BERT": "classifiers and QA models of the bert-base preset (post-LN, learned positions, GELU)",
    "Marian": "translators of the paper-base preset with --set sinusoidal_layout=halves (post-LN)",
}


def _check_export(cfg: TransformerConfig, family: str, **expected: Any) -> None:
    # No exported class has Primer's convolution or stick-breaking attention; QK-norm loads from Qwen3 but is not
    # written back (yet).
    expected = {**expected, "qkv_conv": 0, "qk_norm": False, "stick_breaking_heads": 0}
    wrong = [f"{k}={getattr(cfg, k)!r} (needs {v!r})" for k, v in expected.items() if getattr(cfg, k) != v]
    if wrong:
        raise HFError(
            f"this model cannot be written as {family}: {', '.join(wrong)}; what exports: {EXPORT_HINTS[family]}"
        )


_ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def _gpt2_export_config(cfg: TransformerConfig, n_layers: int, *, tied: bool = True) -> dict[str, Any]:
    """GPT2LMHeadModel's config.json (`tied`: its output projection is its input embedding)."""
    if cfg.positional not in ("learned", "sinusoidal"):
        raise HFError(f"this model cannot be written as GPT-2: positional={cfg.positional!r} (needs 'learned')")
    _check_export(
        cfg,
        "GPT-2",
        norm="layernorm",
        norm_first=True,
        bias=True,
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
        "tie_word_embeddings": tied,
    }


def _llama_export_config(cfg: TransformerConfig, n_layers: int, *, tied: bool) -> dict[str, Any]:
    """LlamaForCausalLM's config.json: rotary positions (the "rotate half" layout), RMSNorm, SwiGLU, no biases."""
    _check_export(
        cfg,
        "Llama",
        positional="rope",
        norm="rmsnorm",
        norm_first=True,
        activation="swiglu",
        bias=False,
        position_offset=0,
        n_token_types=0,
        embedding_norm=False,
        final_logits_bias=False,
    )
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": cfg.attention_dropout,
        "tie_word_embeddings": tied,
        "bos_token_id": cfg.bos_id,
        "eos_token_id": cfg.eos_id,
        "pad_token_id": cfg.pad_id,
    }


def _marian_export_config(cfg: TransformerConfig) -> dict[str, Any]:
    """MarianMTModel's config.json: post-LN, sinusoidal positions in the "halves" layout, one shared vocabulary."""
    _check_export(
        cfg,
        "Marian",
        positional="sinusoidal",
        sinusoidal_layout="halves",
        position_offset=0,
        norm="layernorm",
        norm_eps=1e-5,
        norm_first=False,
        bias=True,
        tie_embeddings=True,
        kv_heads=cfg.n_heads,
        n_token_types=0,
        embedding_norm=False,
        source_vocab_size=cfg.target_vocab_size,
    )
    if cfg.activation not in _ACTIVATION_NAMES:
        raise HFError(f"this model cannot be written as Marian: activation={cfg.activation!r}")
    bos = cfg.bos_id if cfg.bos_id is not None else BOS_ID
    eos = cfg.eos_id if cfg.eos_id is not None else EOS_ID
    return {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": cfg.target_vocab_size,
        "decoder_vocab_size": cfg.target_vocab_size,
        "share_encoder_decoder_embeddings": True,
        "d_model": cfg.d_model,
        "encoder_layers": cfg.encoder_layers,
        "decoder_layers": cfg.decoder_layers,
        "encoder_attention_heads": cfg.n_heads,
        "decoder_attention_heads": cfg.n_heads,
        "encoder_ffn_dim": cfg.d_ff,
        "decoder_ffn_dim": cfg.d_ff,
        "activation_function": _ACTIVATION_NAMES[cfg.activation],
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": 0.0,
        "max_position_embeddings": cfg.max_seq_len,
        "scale_embedding": cfg.scale_embeddings,
        "pad_token_id": cfg.pad_id if cfg.pad_id is not None else PAD_ID,
        "eos_token_id": eos,
        "forced_eos_token_id": eos,
        "decoder_start_token_id": bos,
        "is_encoder_decoder": True,
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
