"""Inference: one `Generator` interface over LinguaLIFT checkpoints, baselines and plain LLMs.

`load_generator(spec, backend="hf" | "vllm" | "llamacpp")` is the public entry point (README) and
`check_backend(name)` the cheap pre-flight check; the backends live side by side: `hf` (transformers),
`vllm_engine` (own environment, scripts/vllm_env.sh) and `llamacpp_engine` (scripts/llamacpp_env.sh).
`BACKENDS` and `check_backend` import no torch; the rest loads on first use.
"""

from lingualift.inference.base import BACKENDS, check_backend

__all__ = ["BACKENDS", "Generator", "check_backend", "load_generator"]


def __getattr__(name: str):
    if name in ("Generator", "load_generator"):
        from lingualift.inference import generators

        return getattr(generators, name)
    raise AttributeError(f"module 'lingualift.inference' has no attribute {name!r}")
