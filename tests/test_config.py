import dataclasses
import json

import pytest

import transformer_networks as tn
from transformer_networks.config import PRESETS


def test_public_api_names():
    cfg = tn.TransformerConfig(vocab_size=1000, d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.1)
    assert cfg.head_dim == 64
    cfg = tn.TransformerConfig.from_preset("paper-base", vocab_size=37000)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.dropout) == (512, 8, 6, 2048, 0.1)
    assert not cfg.norm_first and cfg.positional == "sinusoidal" and cfg.activation == "relu"
    assert cfg.tie_embeddings and cfg.scale_embeddings


# Exact counts with a shared 37,000-token vocabulary; Vaswani et al. 2017, Table 3, report 65M and 213M.
@pytest.mark.parametrize("preset, expected", [("paper-base", 63_082_496), ("paper-big", 214_245_376)])
def test_paper_parameter_counts(preset, expected):
    model = tn.Seq2SeqTransformer(tn.TransformerConfig.from_preset(preset, vocab_size=37000))
    assert model.num_parameters() == expected


def test_gpt2_small_has_the_published_parameter_count():
    # Hugging Face's GPT-2 (124,439,808 parameters) has the same tensors: tied embeddings, final norm, biases.
    assert tn.TransformerLM(tn.TransformerConfig.from_preset("gpt2-small")).num_parameters() == 124_439_808


def test_bert_base_count_is_bertmodel_plus_a_two_class_head():
    # BertModel (109,482,240: token types, embedding LayerNorm and pooler included) + our head (768*2 + 2).
    expected = 109_482_240 + (768 * 2 + 2)
    assert tn.TransformerClassifier(tn.TransformerConfig.from_preset("bert-base")).num_parameters() == expected


def test_derived_sizes():
    cfg = tn.TransformerConfig(vocab_size=100, src_vocab_size=50, n_layers=3, n_decoder_layers=2, n_kv_heads=2)
    assert (cfg.source_vocab_size, cfg.target_vocab_size) == (50, 100)
    assert (cfg.encoder_layers, cfg.decoder_layers) == (3, 2)
    assert cfg.kv_heads == 2
    # Optional fields stay unresolved, so replacing the general field still moves them.
    assert dataclasses.replace(cfg, n_layers=5).encoder_layers == 5


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name, tmp_path):
    cfg = tn.TransformerConfig.from_preset(name, n_kv_heads=2, pooling="mean")
    assert tn.TransformerConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "config.json"
    cfg.to_json(path)
    assert tn.TransformerConfig.from_json(path) == cfg
    assert json.loads(path.read_text())["n_kv_heads"] == 2


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(d_model=30, n_heads=4), ["d_model", "n_heads"]),
        (dict(n_heads=8, n_kv_heads=3), ["n_heads", "n_kv_heads"]),
        (dict(positional="absolute"), ["positional", "'sinusoidal'", "'learned'", "'rope'"]),
        (dict(activation="tanh"), ["activation", "'relu'", "'gelu'", "'swiglu'"]),
        (dict(norm="batchnorm"), ["norm", "'layernorm'", "'rmsnorm'"]),
        (dict(pooling="attention"), ["pooling", "'cls'", "'mean'", "'max'"]),
        (dict(d_model=-8), ["d_model", "positive"]),
        (dict(n_layers=0), ["n_layers", "positive"]),
        (dict(vocab_size=-1), ["vocab_size"]),
        (dict(d_ff=-2048), ["d_ff"]),
        (dict(dropout=1.5), ["dropout"]),
        (dict(pad_id=5000), ["pad_id"]),
    ],
)
def test_bad_configs_name_the_field(kwargs, names):
    with pytest.raises(ValueError) as err:
        tn.TransformerConfig(**kwargs)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(norm_first="false"), "norm_first must be true or false, got 'false'"),
        (dict(bias="no"), "bias must be true or false"),
        (dict(dropout="0.1"), "dropout must be a number"),
        (dict(norm_eps=None), "norm_eps must be a number"),
        (dict(pad_id=1.5), "pad_id must be an integer or null"),
        (dict(d_model=True), "d_model must be an integer"),
        (dict(positional=3), "positional must be a string"),
    ],
)
def test_wrong_types_are_refused(kwargs, message):
    with pytest.raises(tn.ConfigError, match=message):
        tn.TransformerConfig(**kwargs)


def test_integers_are_accepted_for_float_fields():
    cfg = tn.TransformerConfig(dropout=0, rope_theta=10000)
    assert isinstance(cfg.dropout, float) and isinstance(cfg.rope_theta, float)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="paper-base"):
        tn.TransformerConfig.from_preset("paper-huge")
    with pytest.raises(ValueError, match="d_modle"):
        tn.TransformerConfig.from_preset("tiny", d_modle=3)


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "d_model": 64,\n  oops\n}\n')
    with pytest.raises(tn.ConfigError, match=r"bad\.json: line 3"):
        tn.TransformerConfig.from_json(path)


def test_resolved_pairs_are_attributes_not_fields():
    cfg = tn.TransformerConfig(vocab_size=100, tgt_vocab_size=80, n_layers=3, n_encoder_layers=1)
    assert "target_vocab_size" not in cfg.to_dict() and cfg.to_dict()["src_vocab_size"] is None
    assert (cfg.source_vocab_size, cfg.target_vocab_size, cfg.encoder_layers, cfg.decoder_layers) == (100, 80, 1, 3)
    assert tn.TransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AttributeError, match="encoder_layers is resolved from n_encoder_layers"):
        cfg.encoder_layers = 4
    cfg.n_layers = 5  # a field set later moves what falls back to it
    assert (cfg.encoder_layers, cfg.decoder_layers) == (1, 5)
    cfg.n_encoder_layers = None
    assert cfg.encoder_layers == 5
    assert cfg.replace(n_kv_heads=2).kv_heads == 2
    with pytest.raises(tn.ConfigError, match=r"unknown config field.* 'n_kv_head' \(did you mean 'n_kv_heads'\?\)"):
        cfg.replace(n_kv_head=2)


def test_pickled_configs_keep_their_resolved_values():
    import pickle

    cfg = tn.TransformerConfig(n_kv_heads=2)
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.kv_heads == 2


def test_floats_must_be_finite():
    with pytest.raises(tn.ConfigError, match="norm_eps must be a finite number"):
        tn.TransformerConfig(norm_eps=float("inf"))


def test_config_module_is_the_bottom_layer():
    # config.py imports nothing of the package but errors, so every other module can import it.
    import ast
    from pathlib import Path

    from transformer_networks import config
    from transformer_networks.nn.feedforward import ACTIVATIONS

    tree = ast.parse(Path(config.__file__).read_text())
    relative = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == ["errors"]
    assert config.ACTIVATIONS == ACTIVATIONS  # the activations nn/feedforward.py implements
