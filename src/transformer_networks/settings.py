"""Settings of a run from the three places they come from, in this order of precedence: `--set FIELD=VALUE`
(and the `train` flags that are shorthands for one), a YAML/JSON file (`--config`), and a named preset.

    model_config, train_config, model_fields = resolve_settings(preset="small", config_file="configs/scan.yaml",
                                                                overrides={"lr": 5e-4, "d_model": 128})
    build_config("tiny", overrides={"positional": "rope"})   # a TransformerConfig alone (`info`)

Each setting goes to the model (`TransformerConfig`) or to training (`TrainConfig`) by its name, checked one by one
so that an error names the option it came from. The command line and Python users call the same functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Sequence
from typing import Any

from .config import PRESETS, TrainConfig, TransformerConfig
from .errors import ConfigError, UserError

__all__ = ["build_config", "parse_overrides", "read_config_file", "resolve_settings", "split_settings"]


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def build_config(
    preset: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> TransformerConfig:
    """A model config alone (`info`), from the same places as `train`'s: a preset (default "small", as `train`),
    a YAML or JSON settings file (flat or under model:/train:, with an optional preset:; its training fields are
    not the model's and are left out) and overrides, which win."""
    settings: dict[str, Any] = {}
    if config_file:
        settings = read_config_file(config_file)
        file_preset = settings.pop("preset", None)
        preset = preset or file_preset  # a preset given directly wins over the file's, as in `resolve_settings`
    preset = preset or "small"
    if preset not in PRESETS:
        raise UserError(f"--preset: unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    settings.update(overrides or {})
    training_only = set(TRAIN_FIELDS) - set(MODEL_FIELDS)
    return TransformerConfig.from_preset(preset, **{k: v for k, v in settings.items() if k not in training_only})


_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["d_model=256", "norm_first=true", "positional=rope"] -> {"d_model": 256, "norm_first": True, ...}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects FIELD=VALUE, got {item!r}")
        if text in _PYTHON_LITERALS:  # people write True/False/None as often as true/false/null
            out[key] = _PYTHON_LITERALS[text]
            continue
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text  # a bare string such as rope
    return out


MODEL_FIELDS = tuple(TransformerConfig.__dataclass_fields__)


def read_config_file(path: str) -> dict[str, Any]:
    """A YAML or JSON file of settings: flat, or with "model" and "train" sections (and an optional "preset")."""
    import yaml  # JSON is YAML too, so one parser reads both

    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise UserError(f"--config {path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not UTF-8 text") from None
    if path.lower().endswith(".json"):  # JSON exactly: YAML would read some broken JSON as something else
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--config {path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UserError(f"--config {path}: {where}invalid YAML/JSON: {getattr(e, 'problem', e)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("model", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    # YAML 1.1 reads 1e-3 (no dot) as a string; take such strings as the numbers they spell.
    for key, value in flat.items():
        if isinstance(value, str):
            try:
                number = json.loads(value)
            except json.JSONDecodeError:
                continue
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                flat[key] = number
    return flat


def split_settings(settings: dict[str, Any], origin: dict[str, str], preset: str) -> tuple[dict, dict]:
    """Route each setting to the training config or the model config, checking its name and type one by one so
    that an error names the option it came from (`origin[key]`, e.g. "--set lr=abc"). A name in both configs
    (vocab_size) is the tokenizer's: the model's vocabulary always comes from the tokenizer."""
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in settings.items():
        where = origin.get(key, key)
        if key in TRAIN_FIELDS:
            try:
                TrainConfig.from_dict({key: value})
            except ConfigError as e:
                raise UserError(f"{where}: {e}") from None
            train[key] = value
        elif key in MODEL_FIELDS:
            model[key] = value
        else:
            close = difflib.get_close_matches(key, [*TRAIN_FIELDS, *MODEL_FIELDS], n=1)
            if close:
                raise UserError(f"{where}: unknown setting {key!r}; did you mean {close[0]!r}?")
            raise UserError(
                f"{where}: unknown setting {key!r}; training settings: {', '.join(TRAIN_FIELDS)}; "
                f"model settings: {', '.join(f for f in MODEL_FIELDS if f not in TRAIN_FIELDS)}"
            )
    try:  # model fields depend on each other (d_model and n_heads): check them together, then blame one
        TransformerConfig.from_preset(preset, **model)
    except ConfigError as e:
        for key, value in model.items():
            try:
                TransformerConfig.from_preset(preset, **{key: value})
            except ConfigError:  # this one is wrong alone; the message gives the values the user set together
                raise UserError(f"{origin.get(key, key)}: {e}") from None
        raise UserError(f"{', '.join(sorted({origin.get(k, k).split(':')[0] for k in model}))}: {e}") from None
    return model, train


def resolve_settings(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    origin: dict[str, str] | None = None,
) -> tuple[TransformerConfig, TrainConfig, set[str]]:
    """(model config, training config, the model fields set explicitly) from a preset (default "small"), a
    settings file and overrides (which win over the file). `origin` names where each override came from, for
    messages (default "--set NAME")."""
    settings: dict[str, Any] = {}
    where: dict[str, str] = {}
    if config_file:
        values = read_config_file(config_file)
        file_preset = values.pop("preset", None)
        preset = preset or file_preset  # a preset given directly wins over the file's
        settings.update(values)
        where.update({k: f"--config {config_file}: {k}" for k in values})
    preset = preset or "small"
    if preset not in PRESETS:
        raise UserError(f"--preset: unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    for key, value in (overrides or {}).items():
        settings[key] = value
        where[key] = (origin or {}).get(key, f"--set {key}")
    model_settings, train_settings = split_settings(settings, where, preset)
    return (
        TransformerConfig.from_preset(preset, **model_settings),
        TrainConfig.from_dict(train_settings),
        set(model_settings),
    )
