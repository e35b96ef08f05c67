"""What every backend shares: the `Generator` interface, teacher-forced scores, stop-string trimming, and
the registry of backends with their cheap installation checks (`check_backend`).

The backends (`hf`, `vllm_engine`, `llamacpp_engine`) import this module and never each other's front
door: `generators` picks one by name (`load_generator`) and is imported by none of them. This module
imports no torch, so the CLI can list `BACKENDS` without loading it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Protocol, Sequence

from tqdm.auto import tqdm

from lingualift.errors import LinguaLiftError

if TYPE_CHECKING:
    import torch


class TargetScore(NamedTuple):
    """A target scored teacher-forced after its prompt."""

    nll: float  # summed over the target's tokens (nats)
    tokens: int  # how many tokens were scored
    greedy: bool  # every target token is the model's top prediction (lm-eval's `is_greedy`)


class Generator(Protocol):
    name: str
    prompt_template: str
    backend: str  # "hf", "vllm" or "llamacpp"
    dtype: str  # the precision the LLM decodes in ("float32", "bfloat16", "q8_0", …): part of a run's identity

    def rendered_prompt(self, question: str) -> str:
        """What the model is given for `question`, template and LLM affixes applied (records, the demo)."""

    def generate(self, questions: list[str], *, max_new_tokens: int = 512, stop: list[str] | None = None,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 16,
                 progress: bool = False) -> list[str]: ...

    def target_nll(self, questions: list[str | None], targets: list[str], *, batch_size: int = 8,
                   end_of_sequence: bool = True) -> list[TargetScore]: ...

    def prompt_embeddings(self, questions: list[str], *, batch_size: int = 16) -> torch.Tensor: ...


def trim_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut generated text at the earliest stop string (generation halts *after* producing it)."""
    cut = min((text.find(s) for s in stop or () if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def batches(items: Sequence, size: int, progress: bool, description: str):
    """`items` in chunks of `size`, with a tqdm bar counting examples."""
    bar = tqdm(total=len(items), desc=description, disable=not progress, unit="ex")
    for start in range(0, len(items), size):
        yield items[start : start + size]
        bar.update(min(size, len(items) - start))
    bar.close()


class Backend(NamedTuple):
    module: str  # imported only when the backend is used (vLLM and llama.cpp are optional)
    factory: str  # name of `(spec, *, prompt_template, device, dtype, **options) -> Generator` in `module`
    check: Callable[[], None]  # cheap: imports / find_spec only; raises LinguaLiftError saying what to install


def _check_hf() -> None:
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            raise LinguaLiftError(f"the hf backend needs {package}: install lingualift (bash scripts/env.sh)")


def _check_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise LinguaLiftError("the vllm backend needs vLLM: run from its environment (bash scripts/vllm_env.sh, "
                              "then $LINGUALIFT_VLLM_VENV/bin/lingualift)")


LLAMACPP_BUILD_STAMP = ".lingualift-llamacpp-build"  # next to the environment: scripts/llamacpp_env.sh writes it
# The weights' precision in llama.cpp; the default is the fastest whose answers agree with HF fp32
# (docs/performance.md, "llama.cpp precision").
LLAMACPP_PRECISIONS = ("f32", "f16", "q8_0")
LLAMACPP_DEFAULT_PRECISION = "f16"


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU, as scripts/llamacpp_env.sh keys its native build."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _check_llamacpp() -> None:
    """Cheap pre-flight (no import of the native library): the binding is installed, and its native build was
    made for this CPU (a build for another CPU kind may die with an illegal instruction)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LinguaLiftError("the llamacpp backend needs llama-cpp-python built for this CPU: run "
                              "`bash scripts/llamacpp_env.sh`")
    stamp = Path(sys.prefix) / LLAMACPP_BUILD_STAMP
    if stamp.is_file():
        lines = stamp.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2 or set(lines[1].split()) != cpu_flags():
            raise LinguaLiftError("llama-cpp-python here was built for another CPU (its native kernels may crash "
                                  "on this one): rebuild it with `bash scripts/llamacpp_env.sh`")


BACKEND_REGISTRY: dict[str, Backend] = {
    "hf": Backend("lingualift.inference.hf", "load_hf_generator", _check_hf),
    "vllm": Backend("lingualift.inference.vllm_engine", "VLLMGenerator", _check_vllm),
    "llamacpp": Backend("lingualift.inference.llamacpp_engine", "LlamaCppGenerator", _check_llamacpp),
}
BACKENDS = tuple(BACKEND_REGISTRY)


def check_backend(name: str) -> None:
    """Fail with one line if backend `name` is unknown or not installed here; loads no model (pre-flight)."""
    if name not in BACKEND_REGISTRY:
        raise LinguaLiftError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    BACKEND_REGISTRY[name].check()
