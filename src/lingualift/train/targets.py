"""What the training loop needs to know about each kind of model it trains, chosen once per run.

`BridgeTarget`: a LinguaLIFT / langbridge model (encoder + alignment layer + LLM); `CausalLMTarget`: the
`sft` baseline's plain LLM. Each builds its model and collator and knows the model's parameter groups,
where LoRA goes, the extra forward options, the prompt template and how the final model is saved, so
`lingualift.train.loop` never asks which kind it holds (as `inference.generators` has one generator per kind).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

from torch import nn

from lingualift.checkpoint import replace_directory
from lingualift.data.collate import BridgeCollator, CausalLMCollator
from lingualift.data.prompts import llm_affixes
from lingualift.checkpoint import RUN_METADATA
from lingualift.io import write_json
from lingualift.model import components
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.config import TrainConfig
from lingualift.train.stages import StagePolicy

logger = logging.getLogger(__name__)


class TrainingTarget(ABC):
    """One model kind's side of training; `model` arguments are the unwrapped model (after LoRA, if any)."""

    forward_options: dict = {}  # extra keyword arguments of the training forward pass
    collator: BridgeCollator | CausalLMCollator
    prompt_template: str  # the template the training examples are built with

    def __init__(self, config: TrainConfig):
        self.config = config

    @abstractmethod
    def parameter_groups(self, model) -> dict[str, nn.Module]:
        """The groups a freeze policy and `training.lr_groups` name."""

    @abstractmethod
    def add_lora(self, model, peft_config):
        """The model with LoRA adapters on its LLM."""

    @abstractmethod
    def llm(self, model) -> nn.Module:
        """The causal LM inside the model (gradient checkpointing is switched on there)."""

    @abstractmethod
    def save(self, model, final: Path) -> None:
        """Write the final model to `final` (staged and swapped atomically)."""


def _affixes(config: TrainConfig, tokenizer) -> tuple[str, str]:
    """LLM text around the prompt (sft) or the soft prompt (bridge): the chat template's user turn when asked."""
    return llm_affixes(tokenizer, config.data.prompt_template, config.model.llm_prefix, config.model.llm_suffix)


class BridgeTarget(TrainingTarget):
    """A LinguaLIFT or langbridge model; the loss needs logits only over the target window."""

    forward_options = {"targets_only": True}

    def __init__(self, config: TrainConfig, model: LinguaLiftModel, policy: StagePolicy):
        super().__init__(config)
        self.collator = BridgeCollator.for_model(model, max_target_length=config.data.max_target_length)
        self.prompt_template = model.config.prompt_template
        # Stage 1 and LoRA stage 2 save the trained parts and refer to the frozen ones.
        self.include_frozen = policy.save_frozen_parts and config.training.tuning == "full"

    @classmethod
    def build(cls, config: TrainConfig, stage: str, policy: StagePolicy) -> tuple[BridgeTarget, LinguaLiftModel]:
        model_cfg = config.model
        if model_cfg.init_from:
            model = LinguaLiftModel.from_pretrained(model_cfg.init_from, dtype=model_cfg.dtype)
            if model_cfg.llm_sees_query is not None:  # e.g. MindMerger's augmentation after a mapping stage
                model.config.llm_sees_query = model_cfg.llm_sees_query
        else:
            if stage == "task":
                logger.warning("stage task without model.init_from: the alignment layer is untrained")
            model = LinguaLiftModel.from_components(
                model_cfg.encoder, model_cfg.llm, model_cfg.alignment, dtype=model_cfg.dtype,
                alignment_kwargs=model_cfg.alignment_kwargs, seed=config.training.seed,
                llm_sees_query=bool(model_cfg.llm_sees_query), prompt_template=config.data.prompt_template,
                encoder_max_length=model_cfg.encoder_max_length, encoder_split_digits=model_cfg.encoder_split_digits,
                error_context=f"{config.source}: model",
            )
            model.config.llm_prefix, model.config.llm_suffix = _affixes(config, model.llm_tokenizer)
        return cls(config, model, policy), model

    def parameter_groups(self, model: LinguaLiftModel) -> dict[str, nn.Module]:
        return model.parameter_groups()

    def add_lora(self, model: LinguaLiftModel, peft_config) -> LinguaLiftModel:
        from peft import get_peft_model

        model.llm = get_peft_model(model.llm, peft_config)
        return model

    def llm(self, model: LinguaLiftModel) -> nn.Module:
        return model.llm

    def save(self, model: LinguaLiftModel, final: Path) -> None:
        model.save_pretrained(final, include_frozen=self.include_frozen)


class CausalLMTarget(TrainingTarget):
    """The `sft` baseline: the LLM alone, reading the templated prompt; saved as a plain HF directory."""

    def __init__(self, config: TrainConfig, collator: CausalLMCollator):
        super().__init__(config)
        self.collator = collator
        self.prompt_template = config.data.prompt_template

    @classmethod
    def build(cls, config: TrainConfig, stage: str, policy: StagePolicy) -> tuple[CausalLMTarget, nn.Module]:
        llm, tokenizer = components.load_component(config.model.llm, components.LLM, dtype=config.model.dtype,
                                                    where=f"{config.source}: model.llm")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        prefix, suffix = _affixes(config, tokenizer)
        collator = CausalLMCollator(tokenizer, llm_prefix=prefix, llm_suffix=suffix,
                                    max_target_length=config.data.max_target_length)
        return cls(config, collator), llm

    def parameter_groups(self, model) -> dict[str, nn.Module]:
        return {"llm": model}

    def add_lora(self, model, peft_config):
        from peft import get_peft_model

        return get_peft_model(model, peft_config)

    def llm(self, model) -> nn.Module:
        return model

    def save(self, model, final: Path) -> None:
        """A plain HF causal-LM directory (LoRA merged) plus its prompt metadata."""
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        with replace_directory(final) as staging:
            model.save_pretrained(staging)
            self.collator.llm_tokenizer.save_pretrained(staging)
            write_json(staging / RUN_METADATA, {"method": "sft", "prompt_template": self.config.data.prompt_template,
                                                "llm_prefix": self.collator.llm_prefix,
                                                "llm_suffix": self.collator.llm_suffix})


def training_target(config: TrainConfig, stage: str, policy: StagePolicy) -> tuple[TrainingTarget, nn.Module]:
    """The target for `config.method` and the freshly built model it trains."""
    kind = CausalLMTarget if config.method == "sft" else BridgeTarget
    return kind.build(config, stage, policy)
