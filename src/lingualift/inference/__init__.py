"""Inference: one `Generator` interface over LinguaLIFT checkpoints, baselines and plain LLMs.

`load_generator(spec, backend="hf" | "vllm")` is the public entry point (README); the Hugging Face generators
live in `generators`, the vLLM engine in `vllm_engine` (optional `[vllm]` extra). `check_backend(name)` says
before any work starts whether a backend can run in this environment.
"""

import importlib.util

from lingualift.errors import LinguaLiftError
from lingualift.inference.generators import BACKENDS, Generator, load_generator

__all__ = ["BACKENDS", "Generator", "check_backend", "load_generator"]

_BACKEND_PACKAGES = {"vllm": ("vllm", "vLLM runs from its own environment: run `bash scripts/vllm_env.sh` and use "
                                      "$LINGUALIFT_VLLM_VENV/bin/lingualift (default .venv-vllm; on GPU: "
                                      "pip install 'lingualift[vllm]')")}


def check_backend(name: str) -> None:
    """Fail with one line naming what is missing (and how to get it) unless backend `name` can run here.

    Cheap: the backend's package is looked up (`find_spec`), not imported, so a pipeline checks it before its
    first phase."""
    if name not in BACKENDS:
        raise LinguaLiftError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    package, how = _BACKEND_PACKAGES.get(name, (None, ""))
    if package is not None and importlib.util.find_spec(package) is None:
        raise LinguaLiftError(f"backend {name}: the {package} package is not installed in this environment; {how}")
