"""The pipeline config: dataclasses built with `lingualift.schema`, whose defaults are the packaged `default`.

`lingualift pipeline --dry-run` prints the effective config. `stage1` / `stage2` are `lingualift train` configs
(checked with `lingualift.train.config.config_from_dict`) that the pipeline completes with method, stage, models,
data and output folders; a config that gives a stage block replaces the default block as a whole, and `--set
stage1.…` overrides apply to the block in effect. Everything, stage configs and code-switching included, is
checked when the config loads, before any file is written or model loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from lingualift.data.codeswitch import CodeSwitchSettings
from lingualift.errors import LinguaLiftError
from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES
from lingualift.inference.base import BACKENDS
from lingualift.paths import resolve_config
from lingualift.schema import apply_override, from_dict, option, parse_languages, read_yaml, to_dict

DEFAULT_CONFIG = "default"  # the packaged configs/pipeline/default.yaml
PHASES = ("assets", "lexicons", "data", "stage1", "stage2", "evaluate", "diagnose", "report")
STAGES = ("stage1", "stage2")

# Stage 1 (language alignment: the alignment layer alone), sized for the default models on 2 CPU cores.
DEFAULT_STAGE1 = {
    "model": {
        "alignment": "mlp",
        "alignment_kwargs": {"input_norm": True},  # LayerNorm on the encoder states (e5 states are small-scale)
        "encoder_max_length": 192,
        # Fit the layer to SmolLM2's token embeddings first: without it, CPU-sized stage-1 runs carry no
        # question content (experiments/small/README.md, part 4).
        "warm_start": "lexical",
    },
    # The plain template gives shorter sequences than the paper's Alpaca template: ~2x cheaper on CPU.
    "data": {"prompt_template": "plain", "target": "response", "max_target_length": 64},
    # lr 1e-4 after the warm start (experiments/small/README.md, part 4).
    "training": {"batch_size": 4, "max_steps": 10, "learning_rate": 1.0e-4, "log_every": 2},
}
# Stage 2 (task transfer: the LLM on English GSM8K solutions). LoRA: on CPU a step costs about the same as a
# stage-1 step (full fine-tuning measured ~2.5x slower), and the checkpoint is a small adapter.
DEFAULT_STAGE2 = {
    "data": {"max_target_length": 64},
    "training": {"tuning": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0}, "batch_size": 4,
                 "max_steps": 10, "learning_rate": 3.0e-4, "log_every": 2},
}
_DEFAULT_STAGES = {"stage1": DEFAULT_STAGE1, "stage2": DEFAULT_STAGE2}
_LANGUAGES_HELP = "all, none, a list or a comma-separated string of language codes"


@dataclass
class ModelsSection:
    encoder: str = option("default", help="encoder spec: default (multilingual-e5-small), preset, folder or hub id")
    llm: str = option("default", help="LLM spec: default (SmolLM2-135M-Instruct), preset, folder or hub id")


@dataclass
class LexiconsSection:
    languages: list[str] = option(default_factory=lambda: ["de", "es", "fr", "ru", "zh", "ja", "th", "bn"],
                                  help="stage-1 languages (MUSE has no sw te ne mr kn: list those in `induced` too)")
    source: str = option("muse", choices=("muse",), help="muse: <data_dir>/muse/en-XX.txt")
    induced: list[str] = option(default_factory=list,
                                help="languages of `languages` whose lexicon is induced without parallel data "
                                     "(MUSE has none for sw te ne mr kn): <cache>/lexicons/induced/en-XX.tsv, "
                                     "built by scripts/lexicons.sh")

    def spec(self, lang: str) -> str:
        """The lexicon spec of stage-1 language `lang`."""
        return f"induced:{lang}" if lang in self.induced else f"muse:{lang}"


@dataclass
class DataSection:
    train: str = option("gsm8k/train.jsonl",
                        help="relative to the data directory; never GSM8K test (MGSM is its translation)")
    stage1_examples: int = option(256, min=1, help="first N training rows, code-switched for stage 1")
    stage2_examples: int = option(256, min=1, help="first N training rows, in English for stage 2")
    codeswitch: CodeSwitchSettings = option(default_factory=CodeSwitchSettings,
                                            help="code-switching of the stage-1 prompts (lingualift.data.codeswitch)")


@dataclass
class MgsmSection:
    languages: str | list[str] | None = option("all", help=_LANGUAGES_HELP)
    limit: int | None = option(2, min=1, null="for every problem", help="first N problems per language")


@dataclass
class MmwpSection(MgsmSection):
    limit: int | None = option(1, min=1, null="for every problem", help="first N problems per language")


@dataclass
class EvaluationSection:
    mgsm: MgsmSection = option(default_factory=MgsmSection, help="MGSM (11 languages)")
    mmwp: MmwpSection = option(default_factory=MmwpSection, help="MMWP (48 languages in high / medium / low tiers)")
    max_new_tokens: int = option(48, min=1, help="generated tokens per problem (48 truncates most solutions)")
    batch_size: int = option(16, min=1, help="questions per generation batch")
    backend: str = option("hf", choices=BACKENDS,
                          help="decoding engine; vllm needs its own environment (scripts/vllm_env.sh), llamacpp "
                               "scripts/llamacpp_env.sh (CPU; default precision)")
    bootstrap: int = option(1000, min=1, help="bootstrap resamples for the 95% intervals")


@dataclass
class DiagnoseSection:
    languages: str | list[str] | None = option("all", help="MGSM languages for the teacher-forced transfer "
                                                           "diagnostic: " + _LANGUAGES_HELP)
    limit: int = option(4, min=1, help="MGSM items per language (paired with GSM8K test's English solutions)")
    batch_size: int = option(8, min=1, help="items per scoring batch")
    retrieval_languages: str | list[str] | None = option("none", help="MMWP languages for soft-prompt retrieval "
                                                                      "(none skips it): " + _LANGUAGES_HELP)
    retrieval_limit: int = option(20, min=1, help="MMWP items per retrieval language")
    reference_llm: bool = option(True, help="also score the plain LLM reading the question itself")


@dataclass
class PipelineConfig:
    output_dir: str = option("outputs/pipeline", help="where everything goes (--output-dir overrides it)")
    threads: int | str = option("auto", min=1, help="torch CPU threads: an integer, or auto (all cores unless "
                                                    "other jobs already keep them busy)")
    models: ModelsSection = option(default_factory=ModelsSection, help="encoder and LLM")
    lexicons: LexiconsSection = option(default_factory=LexiconsSection, help="bilingual dictionaries")
    data: DataSection = option(default_factory=DataSection, help="training data of both stages")
    stage1: dict = option(default_factory=lambda: copy.deepcopy(DEFAULT_STAGE1),
                          help="lingualift train config of stage 1 (method, stage, models, data.train and "
                               "training.output_dir are filled in)")
    stage2: dict = option(default_factory=lambda: copy.deepcopy(DEFAULT_STAGE2),
                          help="lingualift train config of stage 2 (starts from the stage-1 checkpoint)")
    evaluation: EvaluationSection = option(default_factory=EvaluationSection, help="MGSM and MMWP subsets")
    diagnose: DiagnoseSection = option(default_factory=DiagnoseSection, help="transfer diagnostic")
    source: str = dataclasses.field(default="pipeline config", init=False)  # the file, for error messages

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(frozen=True)
class Languages:
    """The language settings resolved to lists of language codes."""

    mgsm: list[str]
    mmwp: list[str]
    diagnose: list[str]
    retrieval: list[str]


@dataclass(frozen=True)
class Layout:
    """Where the phases write inside the output folder."""

    out: Path

    @property
    def lexicons(self) -> Path:
        return self.out / "lexicons"

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def eval(self) -> Path:
        return self.out / "eval"

    @property
    def diagnose(self) -> Path:
        return self.out / "diagnose"

    def lexicon(self, lang: str) -> Path:
        return self.lexicons / f"en-{lang}.tsv"

    def stage_data(self, stage: str) -> Path:
        return self.data / f"{stage}.jsonl"

    def run_dir(self, stage: str) -> Path:
        return self.out / "runs" / stage

    def final(self, stage: str) -> Path:
        return self.run_dir(stage) / "final"


def load_pipeline_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """A pipeline YAML (or packaged name; none: `default`) with `--set key=value` overrides, completely checked."""
    path = resolve_config(path or DEFAULT_CONFIG, "pipeline")
    raw = read_yaml(path)
    for stage in STAGES:  # so that `--set stage1.…` changes the default block instead of replacing it
        if stage not in raw:
            raw[stage] = copy.deepcopy(_DEFAULT_STAGES[stage])
    for override in overrides or []:
        apply_override(raw, override, str(path))
    config = from_dict(PipelineConfig, raw, str(path))
    config.source = str(path)
    validate(config)
    return config


def validate(config: PipelineConfig) -> None:
    """The rules beyond each field's type and range: languages, code-switching and both stage configs."""
    source = config.source
    if isinstance(config.threads, str) and config.threads != "auto":
        raise LinguaLiftError(f"{source}: threads: expected 'auto' or a positive integer, got {config.threads!r}")
    if not config.output_dir:
        raise LinguaLiftError(f"{source}: output_dir: expected a folder name")
    for role in ("encoder", "llm"):
        if not getattr(config.models, role):
            raise LinguaLiftError(f"{source}: models.{role}: expected a model spec (preset, folder or hub id)")
    if not config.lexicons.languages:
        raise LinguaLiftError(f"{source}: lexicons.languages: expected a non-empty list of language codes")
    stray = [lang for lang in config.lexicons.induced if lang not in config.lexicons.languages]
    if stray:
        raise LinguaLiftError(f"{source}: lexicons.induced: {', '.join(stray)} not in lexicons.languages")
    resolve_languages(config)
    codeswitch_settings(config, {lang: config.lexicons.spec(lang) for lang in config.lexicons.languages}) \
        .validate(f"{source}: data.codeswitch")
    layout = Layout(Path(config.output_dir))
    for stage in STAGES:
        stage_config(config, stage, layout)


def resolve_languages(config: PipelineConfig) -> Languages:
    """Every language setting as a list; unknown codes are errors naming the key."""
    def read(value, key: str, known) -> list[str]:
        return parse_languages(value, f"{config.source}: {key}", known, allow_none=True)

    return Languages(
        mgsm=read(config.evaluation.mgsm.languages, "evaluation.mgsm.languages", MGSM_LANGUAGES),
        mmwp=read(config.evaluation.mmwp.languages, "evaluation.mmwp.languages", MMWP_LANGUAGES),
        diagnose=read(config.diagnose.languages, "diagnose.languages", MGSM_LANGUAGES),
        retrieval=read(config.diagnose.retrieval_languages, "diagnose.retrieval_languages", MMWP_LANGUAGES),
    )


def codeswitch_settings(config: PipelineConfig, lexicons: dict[str, str]) -> CodeSwitchSettings:
    """`data.codeswitch` with the pipeline's lexicons (lexicons given in the block itself take precedence)."""
    block = config.data.codeswitch
    return dataclasses.replace(block, lexicons=dict(block.lexicons or lexicons))


def stage_config(config: PipelineConfig, stage: str, layout: Layout):
    """The `TrainConfig` of stage 1 (`align`) or stage 2 (`task`), completed with the pipeline's models and paths."""
    from lingualift.train.config import config_from_dict

    source = config.source
    raw = copy.deepcopy(getattr(config, stage))
    for key in ("method", "stage"):
        if key in raw:
            raise LinguaLiftError(f"{source}: {stage}.{key}: set by the pipeline (lingualift {stage}), remove it")
    for section in ("model", "data", "training"):
        if not isinstance(raw.setdefault(section, {}), dict):
            raise LinguaLiftError(f"{source}: {stage}.{section}: expected a mapping")
    raw["method"], raw["stage"] = "lingualift", ("align" if stage == "stage1" else "task")
    if stage == "stage1":
        raw["model"].setdefault("encoder", config.models.encoder)
        raw["model"].setdefault("llm", config.models.llm)
    else:
        for key in ("encoder", "llm", "alignment", "alignment_kwargs", "llm_sees_query"):
            if key in raw["model"]:
                raise LinguaLiftError(f"{source}: stage2.model.{key}: comes from the stage-1 checkpoint; set it in stage1")
        raw["model"]["init_from"] = str(layout.final("stage1"))
    raw["data"]["train"] = str(layout.stage_data(stage))
    raw["training"]["output_dir"] = str(layout.run_dir(stage))
    raw["training"].setdefault("tensorboard", False)
    return config_from_dict(raw, f"{source}: {stage}")
