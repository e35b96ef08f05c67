"""Inference: one `Generator` interface over LinguaLIFT checkpoints, baselines and plain LLMs.

`load_generator(spec, backend="hf" | "vllm" | "llamacpp")` is the public entry point (README) and
`check_backend(name)` the cheap pre-flight check; the backends live side by side: `hf` (transformers),
`vllm_engine` (own environment, scripts/vllm_env.sh) and `llamacpp_engine` (scripts/llamacpp_env.sh).
"""

from lingualift.inference.generators import BACKENDS, Generator, check_backend, load_generator

__all__ = ["BACKENDS", "Generator", "check_backend", "load_generator"]
