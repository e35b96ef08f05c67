"""Training configuration: YAML in, strictly checked dataclasses out.

Unknown keys, wrong types, missing required fields and out-of-range numbers are reported as
`config.yaml: section.key: …` (with a did-you-mean suggestion). `--set section.key=value` overrides are
parsed as YAML scalars; a float field also accepts `1e-3` (which YAML 1.1 reads as a string).
String values may use `${data_dir}`, resolved with `lingualift.paths.find_data_dir`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lingualift.errors import LinguaLiftError
from lingualift.paths import find_data_dir, resolve_config


@dataclass
class ModelSection:
    encoder: str = "default"
    llm: str = "default"
    alignment: str = "mlp"
    alignment_kwargs: dict = field(default_factory=dict)
    llm_sees_query: bool = False
    chat_template: bool = False  # place the soft prompt inside the LLM's chat template (user turn)
    llm_prefix: str = ""
    llm_suffix: str = ""
    encoder_max_length: int = 512
    init_from: str | None = None  # checkpoint of the previous stage
    dtype: str | None = None  # load dtype of the parts (fp32, bf16); None keeps the checkpoint's
    trainable: list[str] | None = None  # overrides the stage's trainable groups
    warm_start: str | None = None  # "lexical": fit the alignment layer to the LLM's token embeddings first
    warm_start_texts: int = 512  # how many training questions (English, before code-switching) it uses


@dataclass
class DataSection:
    train: str = ""
    prompt_template: str = "paper"
    target: str = "response"  # stage 1: response | source | both
    max_examples: int | None = None
    max_target_length: int = 512
    codeswitch: dict | None = None  # generate code-switched prompts on the fly (see lingualift.data.codeswitch)


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainingSection:
    output_dir: str = ""
    tuning: str = "full"  # full | lora (stage task, sft)
    lora: LoraSection = field(default_factory=LoraSection)
    learning_rate: float | None = None
    lr_groups: dict = field(default_factory=dict)  # per-group learning rates, e.g. {alignment: 1e-3}
    weight_decay: float | None = None
    lr_scheduler: str | None = None
    warmup_ratio: float | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int | None = None
    save_total_limit: int = 2
    log_every: int = 10
    resume_from_checkpoint: str | None = None  # a checkpoint dir, or "latest"
    resume_override: bool = False  # resume even if the checkpoint's stage / model / hyper-parameters differ
    tensorboard: bool = True


@dataclass
class TrainConfig:
    method: str = "lingualift"
    stage: str | None = None
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    source: str = "config"  # where the config came from, for error messages (not a YAML key)
    data_dir: str | None = None  # --data-dir of the run, for `muse:XX` lexicon specs (not a YAML key)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("source")
        out.pop("data_dir")
        return out


_RUNTIME_FIELDS = ("source", "data_dir")


def read_yaml_with_overrides(path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read a YAML mapping and apply `--set a.b=value` overrides; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise LinguaLiftError(f"config file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise LinguaLiftError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise LinguaLiftError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise LinguaLiftError(f"{path}: the top level must be a mapping of sections")
    for override in overrides or []:
        _apply_override(raw, override, path)
    return raw


def load_config(path: str | os.PathLike, overrides: list[str] | None = None,
                data_dir: str | None = None) -> TrainConfig:
    path = resolve_config(path)
    return config_from_dict(read_yaml_with_overrides(path, overrides), str(path), data_dir=data_dir)


def config_from_dict(raw: dict, source: str = "config", data_dir: str | None = None) -> TrainConfig:
    raw = _substitute(raw, data_dir, source)
    config = _build(TrainConfig, raw, source, "")
    config.source, config.data_dir = source, data_dir
    _validate(config)
    return config


def _apply_override(raw: dict, override: str, path: Path) -> None:
    if "=" not in override:
        raise LinguaLiftError(f"--set {override!r}: expected section.key=value")
    key, value = override.split("=", 1)
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LinguaLiftError(f"--set {key}: {part} is not a section in {path}")
    node[parts[-1]] = yaml.safe_load(value) if value != "" else ""


def _substitute(value: Any, data_dir: str | None, source: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, data_dir, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, data_dir, source) for v in value]
    if isinstance(value, str) and "${data_dir}" in value:
        return value.replace("${data_dir}", str(find_data_dir(data_dir)))
    return value


def _build(cls, raw: Any, source: str, prefix: str):
    if not isinstance(raw, dict):
        raise LinguaLiftError(f"{source}: {prefix or 'top level'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _RUNTIME_FIELDS}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise LinguaLiftError(f"{source}: {where}: unknown key{hint}")
        kwargs[key] = _coerce(hints[key], value, source, where)
    return cls(**kwargs)


_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(annotation, value: Any, source: str, where: str):
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value if value is not None else {}, source, f"{where}.")
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None and type(None) in options:
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # `1e-3`: YAML 1.1 wants `1.0e-3` for a float
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict, list) and isinstance(value, base):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise LinguaLiftError(f"{source}: {where}: expected {expected}, got {value!r}")


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _check_ranges(config: TrainConfig) -> None:
    """Every numeric field in its range, so that no value is silently misread (max_steps 0, log_every 0, …)."""
    source = config.source
    model, data, training, lora = config.model, config.data, config.training, config.training.lora

    def check(where: str, value, ok: bool, rule: str) -> None:
        if value is not None and (not ok or (isinstance(value, float) and not math.isfinite(value))):
            raise LinguaLiftError(f"{source}: {where}: must be {rule}, got {value!r}")

    def at_least(where: str, value, low) -> None:
        check(where, value, value is None or value >= low, f"at least {low}" + (" (or null)" if value is None else ""))

    def positive(where: str, value) -> None:
        check(where, value, value is None or value > 0, "a positive number")

    at_least("model.encoder_max_length", model.encoder_max_length, 1)
    at_least("model.warm_start_texts", model.warm_start_texts, 1)
    check("data.max_examples", data.max_examples, data.max_examples is None or data.max_examples >= 1,
          "at least 1, or null for all examples")
    at_least("data.max_target_length", data.max_target_length, 1)
    at_least("training.lora.r", lora.r, 1)
    positive("training.lora.alpha", lora.alpha)
    check("training.lora.dropout", lora.dropout, 0 <= lora.dropout < 1, "in [0, 1)")
    positive("training.learning_rate", training.learning_rate)
    for group, value in training.lr_groups.items():
        where = f"training.lr_groups.{group}"
        value = _coerce(float, value, source, where)
        positive(where, value)
        training.lr_groups[group] = value
    check("training.weight_decay", training.weight_decay, training.weight_decay is None or training.weight_decay >= 0,
          "at least 0")
    check("training.warmup_ratio", training.warmup_ratio,
          training.warmup_ratio is None or 0 <= training.warmup_ratio <= 1, "in [0, 1]")
    positive("training.epochs", training.epochs)
    check("training.max_steps", training.max_steps, training.max_steps is None or training.max_steps >= 1,
          "at least 1, or null to train training.epochs epochs")
    at_least("training.batch_size", training.batch_size, 1)
    at_least("training.gradient_accumulation_steps", training.gradient_accumulation_steps, 1)
    check("training.max_grad_norm", training.max_grad_norm, training.max_grad_norm >= 0, "at least 0 (0: no clipping)")
    at_least("training.seed", training.seed, 0)
    check("training.save_every", training.save_every, training.save_every is None or training.save_every >= 1,
          "at least 1, or null for no step checkpoints")
    at_least("training.save_total_limit", training.save_total_limit, 1)
    at_least("training.log_every", training.log_every, 1)


def _validate(config: TrainConfig) -> None:
    source = config.source
    _check_ranges(config)
    if not config.data.train:
        raise LinguaLiftError(f"{source}: data.train is required (a JSONL file of instructions)")
    if not Path(config.data.train).is_file():
        raise LinguaLiftError(f"{source}: data.train: file not found: {config.data.train}")
    if config.model.init_from and not Path(config.model.init_from).is_dir():
        raise LinguaLiftError(f"{source}: model.init_from: checkpoint directory not found: {config.model.init_from} "
                              "(train the previous stage first)")
    if not config.training.output_dir:
        raise LinguaLiftError(f"{source}: training.output_dir is required")
    if config.model.warm_start is not None:
        if config.model.warm_start != "lexical":
            raise LinguaLiftError(f"{source}: model.warm_start: must be lexical or null, "
                                  f"got {config.model.warm_start!r}")
        if config.model.init_from or config.method == "sft":
            raise LinguaLiftError(f"{source}: model.warm_start: only for a freshly built alignment layer "
                                  "(not with model.init_from, not for method sft)")
        if config.model.warm_start_texts < 1:
            raise LinguaLiftError(f"{source}: model.warm_start_texts: must be at least 1, "
                                  f"got {config.model.warm_start_texts}")
    choices = {
        "training.tuning": (config.training.tuning, ("full", "lora")),
        "training.precision": (config.training.precision, ("fp32", "bf16")),
    }
    for where, (value, allowed) in choices.items():
        if value not in allowed:
            raise LinguaLiftError(f"{source}: {where}: must be one of {', '.join(allowed)}, got {value!r}")
    if config.training.resume_from_checkpoint not in (None, "latest") \
            and not Path(config.training.resume_from_checkpoint).is_dir():
        raise LinguaLiftError(f"{source}: training.resume_from_checkpoint: {config.training.resume_from_checkpoint} "
                              "is not a folder; give a checkpoints/step-N folder or latest")
