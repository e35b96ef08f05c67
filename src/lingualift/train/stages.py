"""Stages are a freeze policy plus default hyper-parameters; there is one training loop.

| method      | stage | trains                  | defaults (paper)                                   |
|-------------|-------|-------------------------|----------------------------------------------------|
| lingualift  | align | alignment layer         | lr 6e-4, no weight decay, constant schedule        |
| lingualift  | task  | LLM (full or LoRA)      | lr 2e-5, weight decay 0.01, cosine, 3% warm-up     |
| langbridge  | align | alignment layer (1 stage, English data, LLM frozen) | as `align`             |
| sft         | task  | the LLM alone (no encoder) | as `task`                                       |

A config may override the trainable groups (`model.trainable`, e.g. `[alignment, encoder]`) and any
hyper-parameter; the table only supplies defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lingualift.errors import LinguaLiftError

METHODS = ("lingualift", "langbridge", "sft")
GROUPS = ("encoder", "alignment", "llm")


@dataclass(frozen=True)
class StagePolicy:
    trainable: tuple[str, ...]
    learning_rate: float
    weight_decay: float
    lr_scheduler: str
    warmup_ratio: float
    save_frozen_parts: bool  # stage 1 saves only the alignment layer plus references


ALIGN = StagePolicy(("alignment",), 6e-4, 0.0, "constant", 0.0, save_frozen_parts=False)
TASK = StagePolicy(("llm",), 2e-5, 0.01, "cosine", 0.03, save_frozen_parts=True)

POLICIES: dict[tuple[str, str], StagePolicy] = {
    ("lingualift", "align"): ALIGN,
    ("lingualift", "task"): TASK,
    ("langbridge", "align"): ALIGN,
    ("sft", "task"): TASK,
}
DEFAULT_STAGE = {"langbridge": "align", "sft": "task"}


def policy_for(method: str, stage: str | None, where: str) -> tuple[str, StagePolicy]:
    """Validate the method/stage pair of a config and return the stage name with its policy."""
    if method not in METHODS:
        raise LinguaLiftError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
    stage = stage or DEFAULT_STAGE.get(method)
    if (method, stage) not in POLICIES:
        valid = ", ".join(f"{m}/{s}" for m, s in POLICIES)
        raise LinguaLiftError(f"{where}: method {method!r} has no stage {stage!r} (valid: {valid})")
    return stage, POLICIES[(method, stage)]


def apply_freeze_policy(groups: dict[str, nn.Module], trainable: tuple[str, ...] | list[str]) -> None:
    """Freeze every group not listed; frozen groups also go to eval mode (no dropout)."""
    unknown = set(trainable) - set(groups)
    if unknown:
        raise LinguaLiftError(f"model.trainable: unknown group(s) {sorted(unknown)} (groups: {', '.join(groups)})")
    for name, module in groups.items():
        is_trainable = name in trainable
        module.requires_grad_(is_trainable)
        module.train(is_trainable)
