"""What every backend shares: the `Generator` interface, teacher-forced scores, stop-string trimming.

The backends (`hf`, `vllm_engine`, `llamacpp_engine`) import this module and never each other's front
door: `generators` picks one by name (`load_generator`) and is imported by none of them.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

import torch
from tqdm.auto import tqdm


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
