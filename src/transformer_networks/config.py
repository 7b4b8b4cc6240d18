"""One configuration for the three Transformer families, with named presets.

`TransformerConfig` describes an encoder-decoder (`Seq2SeqTransformer`), a decoder-only language model
(`TransformerLM`) or an encoder-only classifier (`TransformerClassifier`); each model reads the fields it needs.
Optional fields left as `None` take their value from a more general field (for example `src_vocab_size` from
`vocab_size`); the resolved values are the properties at the bottom of the class.

    cfg = TransformerConfig.from_preset("paper-base", vocab_size=37000)
    cfg.to_json("config.json");  TransformerConfig.from_json("config.json") == cfg
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .nn.feedforward import ACTIVATIONS

POSITIONAL = ("sinusoidal", "learned", "rope")
NORMS = ("layernorm", "rmsnorm")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")
POOLINGS = ("cls", "mean", "max")


@dataclass
class TransformerConfig:
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
    # Per-stack depth of an encoder-decoder; None = `n_layers`.
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    d_ff: int = 2048  # hidden size of the position-wise feed-forward network

    dropout: float = 0.1  # on sub-layer outputs and on embeddings + positions (the paper's P_drop)
    attention_dropout: float = 0.0  # on the attention weights
    max_seq_len: int = 1024  # longest sequence the positional encoding supports (learned: its table size)

    positional: str = "sinusoidal"  # "sinusoidal" (the paper) | "learned" | "rope"
    rope_theta: float = 10000.0  # RoPE base frequency, used when positional == "rope"
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

    def __post_init__(self) -> None:
        # Types first: a JSON file or a command line can hand us "false" or "0.1" as strings.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = _FIELD_TYPES[f.name]
            if value is None and "None" in f.type:
                continue
            ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
            if not ok:
                kind = _TYPE_NAMES[allowed]
                raise ConfigError(f"{f.name} must be {kind}" + (" or null" if "None" in f.type else "") +
                                  f", got {value!r}")
            if allowed == (int, float):
                setattr(self, f.name, float(value))

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
            raise ConfigError("position_offset and n_token_types must be >= 0, got "
                              f"{self.position_offset} and {self.n_token_types}")
        probability("dropout")
        probability("attention_dropout")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model must be divisible by n_heads: d_model={self.d_model}, n_heads={self.n_heads}"
            )
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
        if self.pad_id is not None and not 0 <= self.pad_id < min(self.source_vocab_size, self.target_vocab_size):
            raise ConfigError(f"pad_id must be a token id inside the vocabulary (or None), got {self.pad_id!r}")
        for name in ("bos_id", "eos_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.target_vocab_size:
                raise ConfigError(f"{name} must be a token id inside the vocabulary (or None), got {value!r}")

    # --- resolved values -------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def encoder_layers(self) -> int:
        return self.n_layers if self.n_encoder_layers is None else self.n_encoder_layers

    @property
    def decoder_layers(self) -> int:
        return self.n_layers if self.n_decoder_layers is None else self.n_decoder_layers

    @property
    def source_vocab_size(self) -> int:
        return self.vocab_size if self.src_vocab_size is None else self.src_vocab_size

    @property
    def target_vocab_size(self) -> int:
        return self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size

    # --- presets and serialization ---------------------------------------------------------------------------
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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to `path` when one is given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TransformerConfig:
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


# The Python types each field accepts (checked in __post_init__; bool is never taken for an int).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    f.name: {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}[f.type.split(" ")[0]]
    for f in dataclasses.fields(TransformerConfig)
}

_TYPE_NAMES = {(bool,): "true or false", (int,): "an integer", (int, float): "a number", (str,): "a string"}

# Named presets. Sizes from the papers named; `vocab_size` is the paper's where it has one.
PRESETS: dict[str, dict[str, Any]] = {
    # Vaswani et al. 2017, Table 3 "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1; post-LN, sinusoidal
    # positions, ReLU, embeddings shared and scaled by sqrt(d_model) (Section 3.4), shared BPE vocabulary of
    # about 37000 tokens (Section 5.1). Label smoothing 0.1 is a training setting, not a model one.
    # With vocab_size=37000 this model has exactly 63,082,496 parameters (the paper reports 65M).
    "paper-base": dict(
        vocab_size=37000, d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.1,
        positional="sinusoidal", norm="layernorm", norm_first=False, activation="relu",
        tie_embeddings=True, scale_embeddings=True, max_seq_len=1024,
    ),
    # Vaswani et al. 2017, Table 3 "big": d_model=1024, d_ff=4096, h=16, P_drop=0.3, otherwise as base.
    # With vocab_size=37000 this model has exactly 214,245,376 parameters (the paper reports 213M).
    "paper-big": dict(
        vocab_size=37000, d_model=1024, n_heads=16, n_layers=6, d_ff=4096, dropout=0.3,
        positional="sinusoidal", norm="layernorm", norm_first=False, activation="relu",
        tie_embeddings=True, scale_embeddings=True, max_seq_len=1024,
    ),
    # Radford et al. 2019 (GPT-2), smallest model: 12 layers, 768 dims, 12 heads, context 1024, vocabulary 50257;
    # pre-LN with a final LayerNorm, learned positions, GELU (its tanh approximation), output projection tied to
    # the token embedding.
    "gpt2-small": dict(
        vocab_size=50257, d_model=768, n_heads=12, n_layers=12, d_ff=3072, dropout=0.1,
        positional="learned", norm="layernorm", norm_first=True, activation="gelu_tanh",
        tie_embeddings=True, scale_embeddings=False, max_seq_len=1024, pad_id=None,
    ),
    # Devlin et al. 2019 (BERT-base): 12 layers, 768 dims, 12 heads, d_ff 3072, 512 positions, WordPiece
    # vocabulary 30522, post-LN with LayerNorm eps 1e-12, learned positions, two token types, a LayerNorm on the
    # embeddings, GELU (exact), dropout 0.1, and the pooler (dense + tanh on [CLS]) under the classification head.
    "bert-base": dict(
        vocab_size=30522, d_model=768, n_heads=12, n_layers=12, d_ff=3072, dropout=0.1,
        positional="learned", norm="layernorm", norm_eps=1e-12, norm_first=False, activation="gelu",
        tie_embeddings=True, scale_embeddings=False, max_seq_len=512, pooling="cls",
        n_token_types=2, embedding_norm=True, classifier_pooler=True,
    ),
    # The default model of `transformer-networks train`: the size of the 3-layer, 256-dim Transformer often
    # trained on Multi30k (about 9M parameters with its vocabularies); pre-LN, which trains stably without a long
    # warmup. Our own choice of the remaining settings.
    "small": dict(
        vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.1,
        positional="sinusoidal", norm="layernorm", norm_first=True, activation="relu",
        tie_embeddings=True, scale_embeddings=True, max_seq_len=512,
    ),
    # A small model for tests and CPU demos (our own choice, not from a paper).
    "tiny": dict(
        vocab_size=1000, d_model=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.1,
        positional="sinusoidal", norm="layernorm", norm_first=True, activation="gelu",
        tie_embeddings=True, scale_embeddings=True, max_seq_len=256,
    ),
}
