"""Training configuration: the `lingualift train` YAML as dataclasses (built with `lingualift.schema`).

Unknown keys, wrong types and out-of-range numbers are reported as `config.yaml: section.key: …` (with a
did-you-mean suggestion) by the schema; `check_files` then checks the paths the config names. `--set
section.key=value` overrides are parsed as YAML scalars; a float field also accepts `1e-3`. String values may
use `${data_dir}`, resolved with `lingualift.paths.find_data_dir`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingualift.checkpoint import CHECKPOINTS_DIR, FINAL_DIR, LOG_FILE, TRAIN_CONFIG_FILE, recover
from lingualift.errors import LinguaLiftError
from lingualift.io import check_output_dir
from lingualift.paths import find_data_dir, resolve_config
from lingualift.schema import from_dict, option, read_yaml, to_dict

OBJECTIVES = ("lm", "lexical", "mixed")  # lingualift.train.objectives


@dataclass
class ModelSection:
    encoder: str = option("default", help="encoder spec: preset, local dir or hub id")
    llm: str = option("default", help="LLM spec: preset, local dir or hub id")
    alignment: str = option("mlp", help="alignment layer (registry in lingualift.model.alignment)")
    alignment_kwargs: dict = option(default_factory=dict, help="alignment layer options, e.g. {output_scale: embedding_rms}")
    llm_sees_query: bool | None = option(None, null="as the model.init_from checkpoint says (false for a new model)",
                                         help="the LLM also reads the question's own tokens (MindMerger-style); "
                                         "with model.init_from it switches that on or off for the loaded model")
    llm_prefix: str = option("", help="text before the soft prompt")
    llm_suffix: str = option("", help="text after the soft prompt")
    encoder_max_length: int = option(512, min=1, help="encoder tokens per prompt")
    encoder_split_digits: bool = option(False, help="one encoder position per digit: number pieces the encoder's "
                                        "tokenizer merges (e5: '▁1,0' '50') are split into one piece per digit; "
                                        "the lexical warm start and objective pair each with the LLM's digit token")
    init_from: str | None = option(None, help="checkpoint of the previous stage")
    dtype: str | None = option(None, help="load dtype of the parts (fp32, bf16); null keeps the checkpoint's")
    trainable: list[str] | None = option(None, help="overrides the stage's trainable groups")
    warm_start: str | None = option(None, choices=("lexical",),
                                    help="lexical: fit the alignment layer to the LLM's token embeddings first")
    warm_start_texts: int = option(512, min=1, help="training questions (English, before code-switching) it uses")


@dataclass
class DataSection:
    train: str = option("", help="JSONL file of instructions (required)")
    prompt_template: str = option("paper", help="paper, plain, chat, …  (lingualift.data.prompts)")
    target: str = option("response", choices=("response", "source", "both"), help="stage 1 target")
    max_examples: int | None = option(None, min=1, null="for all examples", help="first N training rows")
    max_target_length: int = option(512, min=1, help="target tokens per example, end-of-sequence included; a "
                                    "target of this many tokens or more is cut, without end-of-sequence")
    codeswitch: dict | None = option(None, help="generate code-switched prompts on the fly (lingualift.data.codeswitch)")


@dataclass
class LoraSection:
    r: int = option(16, min=1, help="LoRA rank")
    alpha: float = option(32, above=0, help="LoRA alpha")
    dropout: float = option(0.05, min=0, below=1, help="LoRA dropout")
    target_modules: str | list[str] = option("all-linear", help="modules LoRA adapts")


@dataclass
class TrainingSection:
    output_dir: str = option("", help="where checkpoints and the final model go (required)")
    tuning: str = option("full", choices=("full", "lora"), help="stage task and sft: full fine-tuning or LoRA")
    lora: LoraSection = option(default_factory=LoraSection, help="LoRA settings")
    learning_rate: float | None = option(None, above=0, null="for the stage default", help="peak learning rate")
    lr_groups: dict[str, float] = option(default_factory=dict, above=0,
                                         help="per-group learning rates, e.g. {alignment: 1e-3}")
    weight_decay: float | None = option(None, min=0, null="for the stage default", help="AdamW weight decay")
    lr_scheduler: str | None = option(None, help="transformers scheduler name; null for the stage default")
    warmup_ratio: float | None = option(None, min=0, max=1, null="for the stage default", help="warm-up fraction")
    epochs: float = option(1.0, above=0, help="epochs when max_steps is null")
    max_steps: int | None = option(None, min=1, null="to train training.epochs epochs", help="optimiser steps")
    batch_size: int = option(8, min=1, help="examples per device and step")
    gradient_accumulation_steps: int = option(1, min=1, help="micro-batches per optimiser step")
    max_grad_norm: float = option(1.0, min=0, help="gradient clipping (0: none)")
    precision: str = option("fp32", choices=("fp32", "bf16"), help="training precision")
    gradient_checkpointing: bool = option(False, help="recompute activations to save memory")
    seed: int = option(0, min=0, help="random seed")
    save_every: int | None = option(None, min=1, null="for no step checkpoints", help="steps between step checkpoints")
    save_total_limit: int = option(2, min=1, help="step checkpoints kept")
    log_every: int = option(10, min=1, help="steps between log lines")
    resume_from_checkpoint: str | None = option(None, help="a checkpoints/step-N folder, or latest")
    resume_override: bool = option(False, help="resume even if the checkpoint's stage / model / hyper-parameters differ")
    tensorboard: bool = option(True, help="write TensorBoard logs")
    objective: str = option("lm", choices=OBJECTIVES,
                            help="lm: the LLM's next-token loss on the target through the soft prompt (the paper's "
                                 "stage 1); lexical: no LLM pass, the alignment layer maps each encoder state of the "
                                 "(code-switched) prompt onto the LLM input embedding of its English token; mixed: "
                                 "lexical steps with an lm step every training.lm_every steps")
    lm_every: int = option(10, min=2, help="objective mixed: every N-th step is an lm step, the others lexical")
    lexical_batch_size: int = option(64, min=1, help="examples per lexical step (objective lexical or mixed)")
    lexical_cache: bool = option(False, help="lexical steps: run the frozen encoder once over every example at the "
                                             "start and keep its paired states in memory (~0.15 MB per example for "
                                             "e5-small), so a step costs only the alignment layer")


@dataclass
class TrainConfig:
    method: str = option("lingualift", help="lingualift, langbridge or sft (lingualift.train.stages)")
    stage: str | None = option(None, help="align or task; null for the method's default")
    model: ModelSection = option(default_factory=ModelSection, help="encoder, LLM and alignment layer")
    data: DataSection = option(default_factory=DataSection, help="training data and prompts")
    training: TrainingSection = option(default_factory=TrainingSection, help="optimisation and checkpoints")
    source: str = dataclasses.field(default="config", init=False)  # where the config came from, for error messages
    data_dir: str | None = dataclasses.field(default=None, init=False)  # --data-dir of the run, for `muse:XX` specs

    def to_dict(self) -> dict:
        return to_dict(self)


# Options since removed → (the value that behaves as if the option never existed, what replaces it). Naming one
# in a config is an error pointing to its replacement; a step checkpoint that stored the neutral value resumes.
REMOVED_OPTIONS = {("model", "chat_template"): (False, "replaced by `data.prompt_template: chat`; use that")}


def load_config(path: str | os.PathLike, overrides: list[str] | None = None,
                data_dir: str | None = None) -> TrainConfig:
    """A YAML file or packaged config name (`tiny/align`) → a checked config whose files exist."""
    path = resolve_config(path)
    config = config_from_dict(read_yaml(path, overrides), str(path), data_dir=data_dir)
    check_files(config)
    return config


def config_from_dict(raw: dict, source: str = "config", data_dir: str | None = None) -> TrainConfig:
    """Schema and cross-field checks only (no file system): the pipeline validates stage configs this way."""
    raw = _substitute(raw, data_dir, source)
    for (section, key), (_, replacement) in REMOVED_OPTIONS.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise LinguaLiftError(f"{source}: {section}.{key}: {replacement}")
    config = from_dict(TrainConfig, raw, source)
    config.source, config.data_dir = source, data_dir
    _validate(config)
    return config


def _substitute(value: Any, data_dir: str | None, source: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, data_dir, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, data_dir, source) for v in value]
    if isinstance(value, str) and "${data_dir}" in value:
        return value.replace("${data_dir}", str(find_data_dir(data_dir)))
    return value


def _validate(config: TrainConfig) -> None:
    """Rules that tie fields together (each field's own range is in the schema)."""
    source = config.source
    if not config.data.train:
        raise LinguaLiftError(f"{source}: data.train is required (a JSONL file of instructions)")
    if not config.training.output_dir:
        raise LinguaLiftError(f"{source}: training.output_dir is required")
    if config.training.objective != "lm" and config.method == "sft":
        raise LinguaLiftError(f"{source}: training.objective {config.training.objective}: the lexical objective "
                              "trains an alignment layer, which method sft has not; use objective lm")
    if config.data.codeswitch is not None:
        from lingualift.data.codeswitch import CodeSwitchSettings

        CodeSwitchSettings.from_dict(config.data.codeswitch, f"{source}: data.codeswitch")
    if config.method != "sft" and not config.model.init_from:
        _check_alignment(config.model.alignment, config.model.alignment_kwargs, source)
    if config.model.warm_start is not None and (config.model.init_from or config.method == "sft"):
        raise LinguaLiftError(f"{source}: model.warm_start: only for a freshly built alignment layer "
                              "(not with model.init_from, not for method sft)")


def _check_alignment(name: str, kwargs: dict, source: str) -> None:
    """The alignment layer exists and takes these options (otherwise the model build fails without naming them)."""
    import inspect

    from lingualift.model.alignment import ALIGNMENT_LAYERS

    if name not in ALIGNMENT_LAYERS:
        raise LinguaLiftError(f"{source}: model.alignment: unknown alignment layer {name!r}; choose from "
                              f"{', '.join(sorted(ALIGNMENT_LAYERS))}")
    parameters = inspect.signature(ALIGNMENT_LAYERS[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    options = [p for p in parameters if p not in ("self", "encoder_dim", "llm_dim")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise LinguaLiftError(f"{source}: model.alignment_kwargs.{unknown[0]}: not an option of the {name} alignment "
                              f"layer (options: {', '.join(options)})")


# What a training run writes into training.output_dir (hidden names are staging folders, temporary files and the
# pipeline's ownership marker).
RUN_ENTRIES = {TRAIN_CONFIG_FILE, LOG_FILE, FINAL_DIR, CHECKPOINTS_DIR, "tensorboard"}


def _check_output_dir(output_dir: Path, source: str) -> None:
    """An existing output folder must be a training run's (or empty): the run would write its files among the
    user's own and a later `rm -r` of the run would take those along."""
    if (output_dir / TRAIN_CONFIG_FILE).is_file():
        return  # a training run's own folder
    check_output_dir(output_dir, RUN_ENTRIES, f"{source}: training.output_dir:", writer="a training run")


def check_files(config: TrainConfig) -> None:
    """The files and folders the config names exist (kept apart from the schema, see `config_from_dict`)."""
    source = config.source
    if not Path(config.data.train).is_file():
        raise LinguaLiftError(f"{source}: data.train: file not found: {config.data.train}")
    if config.model.init_from:
        recover(config.model.init_from)  # the previous stage's `final`, if a killed writer left it renamed aside
    if config.model.init_from and not Path(config.model.init_from).is_dir():
        raise LinguaLiftError(f"{source}: model.init_from: checkpoint directory not found: {config.model.init_from} "
                              "(train the previous stage first)")
    _check_output_dir(Path(config.training.output_dir), source)
    if config.training.resume_from_checkpoint not in (None, "latest") \
            and not Path(config.training.resume_from_checkpoint).is_dir():
        raise LinguaLiftError(f"{source}: training.resume_from_checkpoint: {config.training.resume_from_checkpoint} "
                              "is not a folder; give a checkpoints/step-N folder or latest")
