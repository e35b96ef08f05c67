"""The models the page offers and their background loading.

With no `--model`, the page offers what a user who has just run the main job has: the LLM alone and the
checkpoints of the last pipeline run (`outputs/pipeline/runs/stage*/final`, each answering with the prompt
template it was trained with); without a pipeline run, the embedded default LLM through its chat template.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lingualift.checkpoint import is_lingualift_checkpoint, read_model_config
from lingualift.data.prompts import PROMPT_TEMPLATES
from lingualift.errors import LinguaLiftError
from lingualift.io import read_json
from lingualift.pipeline.config import STAGES, Layout
from lingualift.schema import read_yaml
from lingualift.tools.demo.common import first_line, logger

DEFAULT_PIPELINE_DIR = "outputs/pipeline"  # the main job's output folder (pipeline config `output_dir`)
STAGE_NAMES = {"stage1": "stage 1 (alignment layer trained)", "stage2": "stage 2 (trained bridge)"}


@dataclass(frozen=True)
class ModelEntry:
    """One model the page offers: its name on the page, what `load_generator` gets, and its prompt template
    (None: the model's own, e.g. the one a checkpoint was trained with)."""

    label: str
    spec: str
    prompt_template: str | None = None


def template_name(template: str | None) -> str:
    if template is None:
        return "its own"
    return template if template in PROMPT_TEMPLATES or template == "chat" else "custom"


def _has_chat_template(spec: str) -> bool:
    """Whether an LLM folder ships a chat template (the embedded `default`, SmolLM2-Instruct, does)."""
    if spec == "default":
        return True
    folder = Path(spec)
    if (folder / "chat_template.jinja").is_file():
        return True
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return False
    try:
        config = read_json(config_file)
    except LinguaLiftError:  # a damaged tokenizer: the LLM fails to load, and the page says why
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _trained_template(checkpoint: Path) -> str | None:
    template = (read_model_config(checkpoint) or {}).get("prompt_template")
    return template if isinstance(template, str) else None


def default_models(pipeline_dir: str | Path | None = DEFAULT_PIPELINE_DIR) -> list[ModelEntry]:
    """The LLM alone and the last pipeline run's checkpoints in `pipeline_dir`; the embedded default LLM with
    its chat template when that folder holds no trained checkpoint."""
    layout = Layout(Path(pipeline_dir)) if pipeline_dir else None
    checkpoints = [(stage, layout.final(stage)) for stage in STAGES
                   if layout is not None and is_lingualift_checkpoint(layout.final(stage))]
    if not checkpoints:
        return [ModelEntry("default LLM alone (chat template)", "default", "chat")]
    config_file = layout.out / "config.yaml"
    config = read_yaml(config_file) if config_file.is_file() else {}
    models = config.get("models")
    llm = str((models.get("llm") if isinstance(models, dict) else None) or "default")
    trained = _trained_template(checkpoints[-1][1])
    # Zero-shot, an instruct LLM answers best through its chat template; otherwise it gets the template the
    # bridge was trained with, so the two read the same words.
    llm_template = "chat" if _has_chat_template(llm) else trained
    entries = [ModelEntry(f"LLM alone: {Path(llm).name} ({template_name(llm_template)} template)", llm, llm_template)]
    for stage, folder in checkpoints:
        entries.append(ModelEntry(f"{STAGE_NAMES[stage]}: {folder} ({template_name(_trained_template(folder))} "
                                  "template)", str(folder)))
    return entries


@dataclass
class LoadedModel:
    """One model of the pool: its generator once loaded, or the one-line reason it failed."""

    entry: ModelEntry
    generator: object | None = None
    error: str | None = None
    seconds: float = 0.0


class ModelPool:
    """Loads models one after another in a background thread, so the page is up (and says "loading")
    long before a large model is ready; a model that fails to load keeps its error for the page.

    `models` are `ModelEntry`s or specs (a spec is its own label); `prompt_template`, when given, overrides
    every model's template (`--prompt-template`)."""

    def __init__(self, models=(), *, loader: Callable | None = None, prompt_template: str | None = None,
                 **load_options):
        if loader is None:
            from lingualift.inference.generators import load_generator as loader
        self._loader = loader
        self._template = prompt_template
        self._options = load_options
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingualift-demo-load")
        self._futures: dict[str, Future] = {}
        self._submitted: dict[str, float] = {}
        self._lock = threading.Lock()
        self.generate_lock = threading.Lock()  # one generation at a time: the models share the CPUs / GPU
        for model in models:
            self.add(model)

    def add(self, model: ModelEntry | str) -> str:
        """Queue a model for loading (once per label); returns its label."""
        if not isinstance(model, ModelEntry):
            spec = (model or "").strip()
            if not spec:
                raise LinguaLiftError("no model given: type a checkpoint folder, a Hugging Face id or a preset "
                                      "(tiny-llama, default)")
            model = ModelEntry(spec, spec)
        if self._template is not None:
            model = ModelEntry(model.label, model.spec, self._template)
        with self._lock:
            if model.label not in self._futures:
                self._submitted[model.label] = time.monotonic()
                self._futures[model.label] = self._executor.submit(self._load, model)
        return model.label

    def _load(self, entry: ModelEntry) -> LoadedModel:
        start = time.perf_counter()
        try:
            generator = self._loader(entry.spec, prompt_template=entry.prompt_template, **self._options)
        except LinguaLiftError as exc:
            logger.warning("model %s failed to load: %s", entry.label, exc)
            return LoadedModel(entry, error=str(exc), seconds=time.perf_counter() - start)
        except Exception as exc:  # a broken checkpoint must not take the page down
            logger.exception("model %s failed to load", entry.label)
            return LoadedModel(entry, error=first_line(exc), seconds=time.perf_counter() - start)
        logger.info("model %s loaded in %.1f s", entry.label, time.perf_counter() - start)
        return LoadedModel(entry, generator=generator, seconds=time.perf_counter() - start)

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return list(self._futures)

    def ready(self, label: str) -> bool:
        return self._futures[label].done()

    def settled(self) -> bool:
        """Every model has loaded or failed: the page can stop polling."""
        return all(self.ready(label) for label in self.labels)

    def get(self, label: str, timeout: float | None = None) -> LoadedModel:
        return self._futures[label].result(timeout)

    def status_markdown(self) -> str:
        if not self.labels:
            return "No models yet: add one below."
        lines = []
        for label in self.labels:
            if not self.ready(label):
                waited = time.monotonic() - self._submitted[label]
                lines.append(f"- … `{label}`: loading ({waited:.0f} s so far)")
                continue
            model = self.get(label)
            if model.error:
                lines.append(f"- ✗ `{label}`: failed to load: {model.error}")
            else:
                lines.append(f"- ✓ `{label}`: ready ({type(model.generator).__name__}, loaded in {model.seconds:.1f} s)")
        return "\n".join(lines)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
