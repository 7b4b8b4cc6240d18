import pytest
import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.errors import ConfigError
from transformer_networks.models import TransformerLM
from transformer_networks.training.config import FIELDS, TrainConfig
from transformer_networks.training.trainer import make_optimizer, pick_precision


def test_defaults_are_valid_and_round_trip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert set(cfg.to_dict()) == set(FIELDS)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", "fast", "lr must be a number"),
        ("lr", 0, "lr must be positive"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("batch_size", True, "batch_size must be an integer"),
        ("truncate", 1, "truncate must be true or false"),
        ("max_steps", 0, "max_steps must be a positive integer"),
        ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"),
        ("optimizer", "sgd", "optimizer must be one of 'adamw', 'adam', 'paper'"),
        ("schedule", "linear", "schedule must be one of"),
        ("tokenizer", "sentencepiece", "tokenizer must be one of"),
        ("clip_norm", -1.0, "clip_norm must be positive"),
    ],
)
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_unknown_fields_and_missing_stop_condition():
    with pytest.raises(ConfigError, match="unknown training field"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="never stops"):
        TrainConfig(max_steps=None).check_stopping()
    TrainConfig(max_steps=None, max_minutes=1).check_stopping()


def test_paper_optimizer_preset_and_weight_decay_groups():
    model = TransformerLM(TransformerConfig.from_preset("tiny"))
    opt = make_optimizer(model, TrainConfig(optimizer="paper", lr=2.0))
    assert type(opt) is torch.optim.Adam
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9 and group["lr"] == 2.0
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])


def test_precision_choices():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) is None and pick_precision("fp32", cpu) is None
    assert pick_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        pick_precision("fp16", cpu)


def test_json_round_trip_and_replace(tmp_path):
    cfg = TrainConfig(max_epochs=2, clip_norm=None, tokenizer="bpe")
    assert isinstance(cfg.max_epochs, float)
    path = tmp_path / "train_config.json"
    cfg.to_json(path)
    assert TrainConfig.from_json(path) == cfg and TrainConfig.from_json(cfg.to_json()) == cfg
    assert cfg.replace(lr=0.5).lr == 0.5
    with pytest.raises(ConfigError, match="unknown training field.* learning_rate"):
        cfg.replace(learning_rate=0.5)
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        cfg.replace(lr=float("nan"))


def test_old_import_path_is_the_same_class():
    from transformer_networks import config
    from transformer_networks.training import config as training_config

    assert training_config.TrainConfig is config.TrainConfig and training_config.FIELDS == config.TRAIN_FIELDS
    assert training_config.BEST_METRIC["translation"] == ("bleu", True)
