"""The two configurations: `TransformerConfig` (the model) and `TrainConfig` (a training run), with model presets.

`TransformerConfig` describes an encoder-decoder (`Seq2SeqTransformer`), a decoder-only language model
(`TransformerLM`) or an encoder-only classifier (`TransformerClassifier`); each model reads the fields it needs.
Optional fields left as `None` take their value from a more general field (for example `src_vocab_size` from
`vocab_size`): `__post_init__` resolves each pair once into a plain attribute (`source_vocab_size`, `kv_heads`,
`encoder_layers`, ...; see `TransformerConfig.DERIVED`), which is not a field and so never written to JSON.

`TrainConfig` holds every setting of a training run that is not part of the model. The two are saved side by
side with each run (`config.json` and `train_config.json`), and `--set key=value` on the command line reaches a
field of either.

Both share `ConfigBase`: each field's type is checked from its type hint (a JSON file or a command line can hand
us "false" or "0.1" as strings), `from_dict` refuses unknown fields by name, and `to_dict`, `to_json`, `from_json`
and `replace` work the same way for both.

    cfg = TransformerConfig.from_preset("paper-base", vocab_size=37000)
    cfg.to_json("config.json");  TransformerConfig.from_json("config.json") == cfg

This module is the package's bottom layer: it imports nothing of the package but `errors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .errors import ConfigError

__all__ = ["ConfigBase", "PRESETS", "TrainConfig", "TransformerConfig", "report_to_names"]


POSITIONAL = ("sinusoidal", "learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
# The feed-forward activations nn/feedforward.py implements (named here, the bottom layer, for validation).
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")
POOLINGS = ("cls", "mean", "max")

OPTIMIZERS = ("adamw", "adam", "paper")  # "paper": Adam with betas (0.9, 0.98), eps 1e-9 (Section 5.3)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# torch.compile's modes: reduce-overhead records CUDA graphs (a GPU's launches replayed at once: what small models
# need there; the trainer takes them with grad_accum 1 in one process), max-autotune also searches kernels (and
# records CUDA graphs); a CPU has no CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TOKENIZERS = ("char", "word", "bpe", "unigram", "pretrained")  # pretrained: the --init model's own
SCHEDULES = ("noam", "inverse_sqrt", "cosine", "constant")
TRAIN_ON = ("assistant", "all", "last")  # chat: which tokens the loss is on
REPORT_TO = ("csv", "tensorboard", "wandb")  # the trackers of training/tracking.py
BEST_BY_METRIC_EXAMPLES = 1000  # best_metric=None: the task's metric picks best/ from this many validation examples
NO_LIMIT_WARMUP = 200  # warmup=None in a run with no step limit (only --max-minutes): warmup_ratio has no length


# --- the shared mechanism -----------------------------------------------------------------------------------------

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}

_C = TypeVar("_C", bound="ConfigBase")


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """Each field's allowed types (from its type hint) and whether it may be None."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        types = tuple(t for t in args if t is not type(None))
        if not set(types) <= set(_TYPE_NAMES):
            raise TypeError(f"{cls.__name__}.{f.name}: only bool, int, float, str and their optionals are checked")
        out[f.name] = (types, type(None) in args)
    return out


class ConfigBase:
    """What the config dataclasses share: type checks, unknown-field checks, dict/JSON round trips, `replace`.

    `__post_init__` checks each field's type against its hint (bool is never taken for an int; an int is taken
    for a float and stored as one; floats must be finite), then resolves `DERIVED`, then runs `check_values`.
    """

    # Names the config in "unknown <kind> field(s)".
    KIND: ClassVar[str] = "config"
    # Resolved attributes: name -> (the optional field, the field it falls back to when that is None). They are
    # plain attributes, not fields (to_dict and equality ignore them), kept in step when either field is set.
    DERIVED: ClassVar[dict[str, tuple[str, str]]] = {}

    def __post_init__(self) -> None:
        self._check_types()
        self._resolve()
        self.check_values()

    def check_values(self) -> None:
        """The checks on values (ranges, choices, relations between fields), once the types are right."""

    def _check_types(self) -> None:
        cls: type = type(self)  # as `type`: mypy takes type[ConfigBase] for unhashable (the instances' __hash__)
        for name, (types, optional) in _field_types(cls).items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            accepted = (*types, int) if float in types else types
            if not isinstance(value, accepted) or isinstance(value, bool) and bool not in types:
                kinds = " or ".join(_TYPE_NAMES[t] for t in types)
                raise ConfigError(f"{name} must be {kinds}" + (" or null" if optional else "") + f", got {value!r}")
            if float in types and isinstance(value, int):  # an int for a float (bool is refused above unless hinted)
                try:
                    value = float(value)
                except OverflowError:
                    value = math.inf
                setattr(self, name, value)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")

    def _resolve(self) -> None:
        for name, (specific, general) in self.DERIVED.items():
            value = getattr(self, specific)
            object.__setattr__(self, name, getattr(self, general) if value is None else value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.DERIVED:
            specific, general = self.DERIVED[name]
            raise AttributeError(f"{name} is resolved from {specific} (or {general} when it is None); set those")
        object.__setattr__(self, name, value)
        # A field set after construction (rare: configs are usually rebuilt with `replace`) moves what it resolves.
        if (
            self.DERIVED
            and all(n in self.__dict__ for n in self.DERIVED)
            and any(name in pair for pair in self.DERIVED.values())
        ):
            self._resolve()

    def __setstate__(self, state: dict[str, Any]) -> None:  # a pickle's state may lack the DERIVED attributes
        self.__dict__.update(state)
        self._resolve()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any]) -> _C:
        known = cls.field_names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
            if len(close) == len(unknown):  # a typing mistake each: say what was meant
                meant = ", ".join(f"{name!r} (did you mean {m!r}?)" for name, m in zip(unknown, close, strict=True))
                raise ConfigError(f"unknown {cls.KIND} field(s) {meant}")
            raise ConfigError(
                f"unknown {cls.KIND} field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields only (what config.json holds), None included."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to `path` when one is given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls: type[_C], text_or_path: str | Path) -> _C:
        """Read a config from JSON text or from a file holding it."""
        text = str(text_or_path)
        source = "JSON text"
        if not text.lstrip().startswith("{"):
            source = str(text_or_path)
            try:
                text = Path(text_or_path).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"{source}: cannot read config: {e.strerror}") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source}: line {e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: a config must be a JSON object")
        return cls.from_dict(values)

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with some fields changed, checked as a new config (unknown names refused as in `from_dict`)."""
        return self.from_dict({**self.to_dict(), **changes})


# --- the model --------------------------------------------------------------------------------------------------


def report_to_names(value: str | None) -> list[str]:
    """TrainConfig.report_to as a list: "tensorboard,csv" -> ["tensorboard", "csv"]; None, "" and "none" -> []."""
    names = [n.strip() for n in (value or "").split(",") if n.strip() and n.strip() != "none"]
    for name in names:
        if name not in REPORT_TO:
            choices = ", ".join(REPORT_TO)
            raise ConfigError(f"unknown tracker {name!r}; choose from {choices} (comma-separated)")
    return list(dict.fromkeys(names))


@dataclass
class TransformerConfig(ConfigBase):
    vocab_size: int = 1000
    # Separate source / target vocabularies for an encoder-decoder; None = `vocab_size`.
    src_vocab_size: int | None = None
    tgt_vocab_size: int | None = None

    d_model: int = 512
    n_heads: int = 8
    # Key/value heads: n_heads = ordinary multi-head attention, 1 = multi-query, in between = grouped-query.
    # None = n_heads. Must divide n_heads.
    n_kv_heads: int | None = None
    n_layers: int = 6
    # Per-stack depth; None = `n_layers`. A TransformerLM builds `decoder_layers`, a classifier `encoder_layers`.
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    d_ff: int = 2048  # hidden size of the position-wise feed-forward network

    dropout: float = 0.1  # on sub-layer outputs and on embeddings + positions (the paper's P_drop)
    attention_dropout: float = 0.0  # on the attention weights
    max_seq_len: int = 1024  # longest sequence the positional encoding supports (learned: its table size)

    # "sinusoidal" (the paper) | "learned" | "rope" | "none" (no positions: a causal mask or stick-breaking heads
    # give the order; an encoder of softmax heads alone sees its input as a set)
    positional: str = "sinusoidal"
    rope_theta: float = 10000.0  # RoPE base frequency, used when positional == "rope"
    # Primer's multi-dconv-head attention (So et al. 2021): an odd width > 1 convolves every query, key and value
    # channel of self-attention over the sequence (centred, one kernel per channel, starting as the identity);
    # 0 = none. Encoders only: a classifier, a QA model, an encoder-decoder's encoder (its decoder has none).
    qkv_conv: int = 0
    # QK-norm (Qwen3, Gemma 3): every attention's queries and keys RMS-normalised per head (over head_dim, with a
    # learned scale per dimension shared by the heads, norm_eps as the other norms) before rotary positions.
    qk_norm: bool = False
    # Stick-breaking attention (Tan et al. 2025) in the first n heads of self-attention: each query reads the
    # nearest matching earlier (even heads) or later (odd heads) token rather than a softmax over all of them;
    # 0 = none. Encoders only, as qkv_conv.
    stick_breaking_heads: int = 0
    # Added to every stick-breaking logit: 0 as the paper; negative lets a head read far from the start (-4: each key
    # first takes about 2% of what is left), which a model whose heads are all stick-breaking needs to learn at all.
    stick_breaking_bias: float = 0.0
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    norm_first: bool = False  # False = post-LN as in the paper; True = pre-LN (stacks then end with a norm)
    # "relu" (the paper) | "gelu" (exact, erf: BERT, BART) | "gelu_tanh" (tanh approximation: GPT-2) | "silu"
    # (Marian's "swish") | "swiglu"
    activation: str = "relu"
    bias: bool = True  # biases in linear layers and LayerNorm

    # Share the target embedding with the output projection, and the source embedding too when the source and
    # target vocabularies are the same size (the paper's shared 37k BPE vocabulary, Section 3.4).
    tie_embeddings: bool = True
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(d_model) (Section 3.4)

    pad_id: int | None = 0  # padding token; attention never looks at it. None = no padding mask
    # Generation defaults: the decoder's first token and the end token (None: the tokenizer's <bos> 2 and <eos> 3;
    # a language model then stops only at max_new_tokens). Imported models bring their own.
    bos_id: int | None = None
    eos_id: int | None = None
    n_classes: int = 2  # classifier outputs
    pooling: str = "cls"  # classifier: "cls" = first token's state, "mean" / "max" over non-padding tokens

    # What imported model families need (interop/hf.py); the defaults are the paper's model.
    sinusoidal_layout: str = "interleaved"  # sin on even dims, cos on odd (the paper); "halves": sin | cos (Marian)
    position_offset: int = 0  # learned positions: position p uses row p + offset of the table (BART: 2)
    n_token_types: int = 0  # token-type (segment) embeddings added to the input (BERT: 2); 0 = none
    embedding_norm: bool = False  # a norm on the summed embeddings, before dropout (BERT, BART)
    final_logits_bias: bool = False  # a bias on the output logits, kept fixed (BART, Marian)
    classifier_pooler: bool = False  # classifier: a dense layer + tanh on the pooled state before the head (BERT)

    DERIVED: ClassVar[dict[str, tuple[str, str]]] = {
        "kv_heads": ("n_kv_heads", "n_heads"),
        "encoder_layers": ("n_encoder_layers", "n_layers"),
        "decoder_layers": ("n_decoder_layers", "n_layers"),
        "source_vocab_size": ("src_vocab_size", "vocab_size"),
        "target_vocab_size": ("tgt_vocab_size", "vocab_size"),
    }
    if TYPE_CHECKING:  # set by __post_init__ (DERIVED); not fields, so not in to_dict() or config.json. Declared
        # as init=False fields for the type checker alone: plain annotations would be fields without a default.
        kv_heads: int = dataclasses.field(init=False)
        encoder_layers: int = dataclasses.field(init=False)
        decoder_layers: int = dataclasses.field(init=False)
        source_vocab_size: int = dataclasses.field(init=False)
        target_vocab_size: int = dataclasses.field(init=False)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def check_values(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")

        def probability(name: str) -> None:
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value!r}")

        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_seq_len", "n_classes"):
            positive(name)
        for name in ("src_vocab_size", "tgt_vocab_size", "n_kv_heads", "n_encoder_layers", "n_decoder_layers"):
            if getattr(self, name) is not None:
                positive(name)
        choice("positional", POSITIONAL)
        choice("norm", NORMS)
        choice("activation", ACTIVATIONS)
        choice("pooling", POOLINGS)
        choice("sinusoidal_layout", SINUSOIDAL_LAYOUTS)
        if self.position_offset < 0 or self.n_token_types < 0:
            raise ConfigError(
                f"position_offset and n_token_types must be >= 0, got {self.position_offset} and {self.n_token_types}"
            )
        probability("dropout")
        probability("attention_dropout")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model must be divisible by n_heads: d_model={self.d_model}, n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ConfigError(
                f"n_heads must be a multiple of n_kv_heads: n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"
            )
        if self.positional == "rope" and self.head_dim % 2:
            raise ConfigError(f"positional='rope' needs an even head dimension, got d_model/n_heads={self.head_dim}")
        if not self.norm_eps > 0:
            raise ConfigError(f"norm_eps must be positive, got {self.norm_eps!r}")
        if not self.rope_theta > 0:
            raise ConfigError(f"rope_theta must be positive, got {self.rope_theta!r}")
        if self.qkv_conv < 0 or (self.qkv_conv and self.qkv_conv % 2 == 0):
            raise ConfigError(f"qkv_conv must be 0 (none) or an odd width, got {self.qkv_conv!r}")
        if not 0 <= self.stick_breaking_heads <= self.n_heads or self.stick_breaking_heads % (
            self.n_heads // self.kv_heads
        ):
            raise ConfigError(
                f"stick_breaking_heads must be between 0 and n_heads={self.n_heads} and a multiple of the query heads "
                f"per key/value head ({self.n_heads // self.kv_heads}), got {self.stick_breaking_heads!r}"
            )
        if not math.isfinite(self.stick_breaking_bias):
            raise ConfigError(f"stick_breaking_bias must be a finite number, got {self.stick_breaking_bias!r}")
        if self.pad_id is not None and not 0 <= self.pad_id < min(self.source_vocab_size, self.target_vocab_size):
            raise ConfigError(f"pad_id must be a token id inside the vocabulary (or None), got {self.pad_id!r}")
        for name in ("bos_id", "eos_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.target_vocab_size:
                raise ConfigError(f"{name} must be a token id inside the vocabulary (or None), got {value!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TransformerConfig:
        """A named preset with any field overridden by keyword.

        Presets (sources cited beside each in `PRESETS`); parameter counts are exact, for the model named:
            paper-base  Vaswani et al. 2017 base, Seq2SeqTransformer, vocab 37000:   63,082,496 (paper: 65M)
            paper-big   Vaswani et al. 2017 big,  Seq2SeqTransformer, vocab 37000:  214,245,376 (paper: 213M)
            gpt2-small  GPT-2 124M, TransformerLM, vocab 50257:                      124,439,808
            bert-base   BERT-base, TransformerClassifier, vocab 30522:                109,483,778
                        (BertModel's 109,482,240 with its pooler, plus a 2-class head)
            small       256-dim, 3-layer model, the default of `train`
            tiny        64-dim, 2-layer model for tests and CPU demos
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return cls.from_dict({**PRESETS[name], **overrides})


# Named presets. Sizes from the papers named; `vocab_size` is the paper's where it has one.
PRESETS: dict[str, dict[str, Any]] = {
    # Vaswani et al. 2017, Table 3 "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1; post-LN, sinusoidal
    # positions, ReLU, embeddings shared and scaled by sqrt(d_model) (Section 3.4), shared BPE vocabulary of
    # about 37000 tokens (Section 5.1). Label smoothing 0.1 is a training setting, not a model one.
    # With vocab_size=37000 this model has exactly 63,082,496 parameters (the paper reports 65M).
    "paper-base": dict(
        vocab_size=37000,
        d_model=512,
        n_heads=8,
        n_layers=6,
        d_ff=2048,
        dropout=0.1,
        positional="sinusoidal",
        norm="layernorm",
        norm_first=False,
        activation="relu",
        tie_embeddings=True,
        scale_embeddings=True,
        max_seq_len=1024,
    ),
    # Vaswani et al. 2017, Table 3 "big": d_model=1024, d_ff=4096, h=16, P_drop=0.3, otherwise as base.
    # With vocab_size=37000 this model has exactly 214,245,376 parameters (the paper reports 213M).
    "paper-big": dict(
        vocab_size=37000,
        d_model=1024,
        n_heads=16,
        n_layers=6,
        d_ff=4096,
        dropout=0.3,
        positional="sinusoidal",
        norm="layernorm",
        norm_first=False,
        activation="relu",
        tie_embeddings=True,
        scale_embeddings=True,
        max_seq_len=1024,
    ),
    # Radford et al. 2019 (GPT-2), smallest model: 12 layers, 768 dims, 12 heads, context 1024, vocabulary 50257;
    # pre-LN with a final LayerNorm, learned positions, GELU (its tanh approximation), output projection tied to
    # the token embedding.
    "gpt2-small": dict(
        vocab_size=50257,
        d_model=768,
        n_heads=12,
        n_layers=12,
        d_ff=3072,
        dropout=0.1,
        positional="learned",
        norm="layernorm",
        norm_first=True,
        activation="gelu_tanh",
        tie_embeddings=True,
        scale_embeddings=False,
        max_seq_len=1024,
        pad_id=None,
    ),
    # Devlin et al. 2019 (BERT-base): 12 layers, 768 dims, 12 heads, d_ff 3072, 512 positions, WordPiece
    # vocabulary 30522, post-LN with LayerNorm eps 1e-12, learned positions, two token types, a LayerNorm on the
    # embeddings, GELU (exact), dropout 0.1, and the pooler (dense + tanh on [CLS]) under the classification head.
    "bert-base": dict(
        vocab_size=30522,
        d_model=768,
        n_heads=12,
        n_layers=12,
        d_ff=3072,
        dropout=0.1,
        positional="learned",
        norm="layernorm",
        norm_eps=1e-12,
        norm_first=False,
        activation="gelu",
        tie_embeddings=True,
        scale_embeddings=False,
        max_seq_len=512,
        pooling="cls",
        n_token_types=2,
        embedding_norm=True,
        classifier_pooler=True,
    ),
    # The default model of `transformer-networks train`: the size of the 3-layer, 256-dim Transformer often
    # trained on Multi30k (about 9M parameters with its vocabularies); pre-LN, which trains stably without a long
    # warmup. Our own choice of the remaining settings.
    "small": dict(
        vocab_size=8000,
        d_model=256,
        n_heads=4,
        n_layers=3,
        d_ff=1024,
        dropout=0.1,
        positional="sinusoidal",
        norm="layernorm",
        norm_first=True,
        activation="relu",
        tie_embeddings=True,
        scale_embeddings=True,
        max_seq_len=512,
    ),
    # A small model for tests and CPU demos (our own choice, not from a paper).
    "tiny": dict(
        vocab_size=1000,
        d_model=64,
        n_heads=4,
        n_layers=2,
        d_ff=256,
        dropout=0.1,
        positional="sinusoidal",
        norm="layernorm",
        norm_first=True,
        activation="gelu",
        tie_embeddings=True,
        scale_embeddings=True,
        max_seq_len=256,
    ),
}


# --- a training run -----------------------------------------------------------------------------------------


@dataclass
class TrainConfig(ConfigBase):
    """Every setting of a training run that is not part of the model (the model's is a `TransformerConfig`).

    Fields left at None take a default that depends on the task or the data, chosen when training starts: for
    example the tokenizer is word-level for SCAN and character-level for language modeling.
    """

    KIND = "training"

    # --- data -----------------------------------------------------------------------------------------------
    tokenizer: str | None = None  # char | word | bpe | unigram (default: char for lm, bpe otherwise, word for SCAN)
    vocab_size: int = 8000  # for bpe/unigram; char and word keep every symbol of the training data
    shared_vocab: bool = True  # translation: one vocabulary for source and target (and tied embeddings)
    # Longest example in tokens (translation: each side; classification: the text; qa: a window of question and
    # context). None: the task's default (256; qa 384, as Hugging Face's run_qa.py).
    max_len: int | None = None
    truncate: bool = False  # cut over-long examples to max_len instead of dropping them
    valid_fraction: float = 0.05  # held out of the training data (seeded) when no validation data is given
    block_size: int = 128  # language modeling: tokens per training sequence
    text_field: str = "text"  # language modeling: the JSONL field / Parquet column that holds a document's text
    text_column: str | None = None  # classification: default "text", else "sentence"
    label_column: str = "label"
    source_lang: str | None = None  # translation JSONL/CSV: the source language's key or column (see README)
    target_lang: str | None = None  # translation JSONL/CSV: the target language's key or column
    # Question answering: consecutive windows of a long context overlap by doc_stride tokens; questions are cut
    # to max_question_len tokens; an answer is at most max_answer_length tokens, chosen among the n_best spans
    # of every window; "no answer" is predicted when its score beats the best span's by more than
    # null_threshold, if allow_no_answer (SQuAD v2; None: when the training data has unanswerable questions).
    doc_stride: int = 128
    max_question_len: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float = 0.0
    allow_no_answer: bool | None = None
    # Dialogue (chat): which tokens the loss is on: the assistant's replies (each with its end-of-turn token),
    # every token, or the last assistant reply only.
    train_on: str = "assistant"
    # --- batches --------------------------------------------------------------------------------------------
    batch_size: int = 32  # sequences per batch (lm, classification, qa, chat)
    # qa, classification: training batches of windows of similar length (less padding), as Hugging Face's Trainer
    # `group_by_length`: each pool of 50 shuffled batches is sorted by length, cut into batches, and the batches
    # of every pool are shuffled again
    group_by_length: bool = False
    max_tokens: int = 4096  # translation: padded tokens per batch, source or target side (as fairseq)
    grad_accum: int = 1  # batches per optimizer step
    # --- optimization ---------------------------------------------------------------------------------------
    optimizer: str = "adamw"
    lr: float = 1e-3  # peak learning rate (for "noam": a factor on the paper's formula, 1.0 = the paper's rates)
    weight_decay: float = 0.01  # decoupled (AdamW); ignored by adam and paper
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "cosine"
    warmup: int | None = None  # steps of linear warmup (None: warmup_ratio of the run; the paper: 4000 with "noam")
    warmup_ratio: float = 0.05  # the warmup without `warmup`: this fraction of the run's steps (200 with no step limit)
    min_lr_ratio: float = 0.1  # cosine: final learning rate as a fraction of lr
    # cosine: the steps the decay spans (None: the step limit). `train --resume RUN --max-steps N` sets it to the
    # run's old limit, so an extended run keeps its schedule and trains on at the floor (min_lr_ratio x lr).
    schedule_steps: int | None = None
    label_smoothing: float = 0.0  # the paper: 0.1; padding is never a target
    clip_norm: float | None = 1.0  # gradient norm clipping (None: off)
    skip_nonfinite: int = 0  # skip at most this many batches whose loss is NaN or infinite (then stop)
    # --- stopping -------------------------------------------------------------------------------------------
    max_steps: int | None = 2000  # optimizer steps
    max_epochs: float | None = None  # passes over the training data (with max_steps: whichever comes first)
    max_minutes: float | None = None  # wall-clock limit of the training loop
    patience: int | None = None  # stop after this many evaluations without a better best metric
    # What picks best/: "loss" (the validation loss) or the task's metric (bleu, accuracy, f1); None: the task's
    # metric when the validation set has at least BEST_BY_METRIC_EXAMPLES examples (enough to be stable), else the
    # loss (a BLEU or an accuracy on 20 lines is noise).
    best_metric: str | None = None
    # --- evaluation and logging -----------------------------------------------------------------------------
    eval_every: int = 500  # steps between evaluations on the validation data (and checkpoints)
    eval_examples: int | None = None  # evaluate on at most this many validation examples (spread over the split;
    # lm: its first blocks) while training
    log_every: int = 50  # steps between progress lines when stderr is not a terminal
    # Also send metrics.jsonl's scalars (and the settings) to these, comma-separated: csv, tensorboard, wandb
    # (training/tracking.py); None or "none": metrics.jsonl only.
    report_to: str | None = None
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    activation_checkpointing: bool = False  # recompute each layer's activations in the backward pass (less memory)
    keep_checkpoints: int = 0  # also keep the last N evaluation checkpoints as RUN/step-NNNNNNN (for `average`)
    # --- machine --------------------------------------------------------------------------------------------
    device: str = "auto"  # auto: cuda, then mps, then cpu
    precision: str = "auto"  # auto: bf16 on a CUDA device that supports it, else fp32
    compile: bool = False  # torch.compile the model for training
    compile_mode: str | None = None  # torch.compile's mode (COMPILE_MODES); given, the trainer compiles (compile too)
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: PyTorch's default)

    def check_values(self) -> None:
        def check(name: str, ok: bool, what: str) -> None:
            if getattr(self, name) is not None and not ok:
                raise ConfigError(f"{name} must be {what}, got {getattr(self, name)!r}")

        for name in (
            "vocab_size",
            "max_len",
            "block_size",
            "batch_size",
            "max_tokens",
            "grad_accum",
            "eval_every",
            "log_every",
            "max_steps",
            "schedule_steps",
            "patience",
            "eval_examples",
            "threads",
            "max_question_len",
            "max_answer_length",
            "n_best",
        ):
            value = getattr(self, name)
            check(name, value is None or value >= 1, "a positive integer")
        check("warmup", self.warmup is None or self.warmup >= 0, "zero or a positive integer")
        check("doc_stride", self.doc_stride >= 0, "zero or a positive integer")
        check("keep_checkpoints", self.keep_checkpoints >= 0, "zero or a positive integer")
        check("skip_nonfinite", self.skip_nonfinite >= 0, "zero or a positive integer")
        noam_warmup = self.warmup is None or self.warmup >= 1 or self.schedule != "noam"
        check("warmup", noam_warmup, "at least 1 with the noam schedule")
        check("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)")
        report_to_names(self.report_to)
        check("seed", 0 <= self.seed < 2**32, "in [0, 2**32)")
        check("lr", self.lr > 0, "positive")
        check("eps", self.eps > 0, "positive")
        check("weight_decay", self.weight_decay >= 0, "zero or positive")
        for name in ("beta1", "beta2", "valid_fraction", "label_smoothing"):
            check(name, 0 <= getattr(self, name) < 1, "in [0, 1)")
        check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]")
        check("clip_norm", self.clip_norm is None or self.clip_norm > 0, "positive (or null for no clipping)")
        check("max_epochs", self.max_epochs is None or self.max_epochs > 0, "positive")
        check("max_minutes", self.max_minutes is None or self.max_minutes > 0, "positive")
        for name, allowed in (
            ("tokenizer", TOKENIZERS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("compile_mode", COMPILE_MODES),
            ("train_on", TRAIN_ON),
        ):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")

    def check_stopping(self) -> None:
        """A run needs a stop condition (checked when training starts, so each field can be set on its own)."""
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ConfigError("set at least one of max_steps, max_epochs and max_minutes, or training never stops")


TRAIN_FIELDS = TrainConfig.field_names()
