"""One inference interface over every kind of model the harness evaluates, on a chosen backend.

`load_generator(spec, backend=)` accepts a LinguaLIFT checkpoint (either stage, both baselines' outputs), a
plain Hugging Face causal-LM directory or hub id (the `sft` baseline, zero-shot LLMs), or a preset name, and
returns a `Generator` that applies the model's prompt template itself. Evaluation, diagnostics, the pipeline,
the page and the lm-eval plugin only ever talk to this interface.

The backends live side by side and import none of this module: `hf` (transformers), `vllm_engine` and
`llamacpp_engine` (both on `engine.EngineGenerator`). A new backend is one module plus one row of
`base.BACKEND_REGISTRY`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lingualift.checkpoint import resolve_model_spec
from lingualift.errors import LinguaLiftError
from lingualift.inference.base import BACKEND_REGISTRY, BACKENDS, Generator, TargetScore, check_backend, trim_at_stop
from lingualift.inference.hf import BridgeGenerator, CausalLMGenerator, load_hf_generator


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
    entry = BACKEND_REGISTRY[backend]
    factory = getattr(importlib.import_module(entry.module), entry.factory)
    generator = factory(str(spec), prompt_template=prompt_template, device=device, dtype=dtype, **backend_options)
    generator.name = name
    return generator


__all__ = ["BACKENDS", "BridgeGenerator", "CausalLMGenerator", "Generator", "TargetScore", "check_backend",
           "load_generator", "trim_at_stop"]
