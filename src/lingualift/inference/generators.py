"""One inference interface over every kind of model the harness evaluates, on a chosen backend.

`load_generator(spec, backend=)` accepts a LinguaLIFT checkpoint (either stage, both baselines' outputs), a
plain Hugging Face causal-LM directory or hub id (the `sft` baseline, zero-shot LLMs), or a preset name, and
returns a `Generator` that applies the model's prompt template itself. Evaluation, diagnostics, the pipeline,
the page and the lm-eval plugin only ever talk to this interface.

The backends live side by side and import none of this module: `hf` (transformers), `vllm_engine` and
`llamacpp_engine` (both on `engine.EngineGenerator`). A new backend is one module plus one `_BACKENDS` row.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable, NamedTuple

from lingualift.checkpoint import resolve_model_spec
from lingualift.errors import LinguaLiftError
from lingualift.inference.base import Generator, TargetScore, trim_at_stop
from lingualift.inference.hf import BridgeGenerator, CausalLMGenerator, load_hf_generator


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


def _check_llamacpp() -> None:
    importlib.import_module("lingualift.inference.llamacpp_engine").check_installation()


_BACKENDS: dict[str, Backend] = {
    "hf": Backend("lingualift.inference.hf", "load_hf_generator", _check_hf),
    "vllm": Backend("lingualift.inference.vllm_engine", "VLLMGenerator", _check_vllm),
    "llamacpp": Backend("lingualift.inference.llamacpp_engine", "LlamaCppGenerator", _check_llamacpp),
}
BACKENDS = tuple(_BACKENDS)


def check_backend(name: str) -> None:
    """Fail with one line if backend `name` is unknown or not installed here; loads no model (pre-flight)."""
    if name not in _BACKENDS:
        raise LinguaLiftError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    _BACKENDS[name].check()


def load_generator(spec: str, *, prompt_template: str | None = None, device: str | None = None,
                   dtype: str | None = None, backend: str = "hf", **backend_options) -> Generator:
    """Build the right generator for a checkpoint directory, hub id (LinguaLIFT checkpoint or plain LM) or preset.

    `backend="hf"` is transformers' `generate`; `"vllm"` decodes in a vLLM engine (options such as
    `tensor_parallel_size` and `lora` go to `vllm_engine.VLLMGenerator`); `"llamacpp"` in llama.cpp (options
    such as `precision` go to `llamacpp_engine.LlamaCppGenerator`).
    """
    check_backend(backend)
    if backend_options and backend == "hf":
        raise LinguaLiftError(f"options {', '.join(sorted(backend_options))} do not apply to the hf backend")
    name = Path(str(spec)).name or str(spec)
    spec = resolve_model_spec(spec)  # a LinguaLIFT checkpoint's hub id: its snapshot folder in the HF cache
    if backend == "hf":
        return load_hf_generator(str(spec), name=name, prompt_template=prompt_template, device=device, dtype=dtype)
    entry = _BACKENDS[backend]
    factory = getattr(importlib.import_module(entry.module), entry.factory)
    generator = factory(str(spec), prompt_template=prompt_template, device=device, dtype=dtype, **backend_options)
    generator.name = name
    return generator


__all__ = ["BACKENDS", "BridgeGenerator", "CausalLMGenerator", "Generator", "TargetScore", "check_backend",
           "load_generator", "trim_at_stop"]
