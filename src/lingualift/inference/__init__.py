"""Inference: one `Generator` interface over LinguaLIFT checkpoints, baselines and plain LLMs.

`load_generator(spec, backend="hf" | "vllm")` is the public entry point (README); the Hugging Face generators
live in `generators`, the vLLM engine in `vllm_engine` (optional `[vllm]` extra).
"""

from lingualift.inference.generators import BACKENDS, Generator, load_generator

__all__ = ["BACKENDS", "Generator", "load_generator"]
