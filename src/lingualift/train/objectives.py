"""Stage-1 objectives and which one each optimiser step uses (`training.objective`).

- `lm` (`LanguageModelling`): the paper's stage 1, next-token loss of the target through the soft prompt. Every
  example costs a forward and backward pass of the whole frozen LLM (16 s per step of 4 on two CPU cores for
  Qwen2.5-0.5B: `experiments/qwen05b/README.md`).
- `lexical` (`LexicalAlignment`): the lexical warm start (`lingualift.model.warmstart`) grown into a training
  objective over the code-switched prompts themselves. The code-switcher knows which English word each swapped
  word replaced (`codeswitch.spans`), so every encoder state of a prompt has a target: the LLM's input embedding
  of its English token, the original word's for a swapped one. The loss is the squared error of the mapped
  states against those embeddings, relative to the embeddings' mean square (0 is a perfect fit, 1 is mapping
  everything to zero). No LLM pass: a step costs the frozen encoder's forward and the alignment layer, or the
  alignment layer alone with `training.lexical_cache` (the encoder's states computed once, kept in memory).
- `mixed`: lexical steps, with an `lm` step every `training.lm_every` steps, so the soft prompt is still
  trained on what the LLM makes of it (the lexical objective alone never trains the begin / end vectors).

The data order stays a pure function of the step: the objective of step `s` and how many steps of that
objective came before it are arithmetic, and each objective draws its own deterministic batches, so a resumed
run sees the same batches as an uninterrupted one. Still the paper's stage 1: English task data, code-switched
by bilingual lexicons, no parallel corpus, the LLM frozen.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from lingualift.data.collate import Batch
from lingualift.data.instructions import build_examples
from lingualift.data.prompts import format_prompt, resolve_template
from lingualift.errors import LinguaLiftError
from lingualift.model.warmstart import paired_encoder_batch, require_fast_tokenizers

IGNORE = -100
logger = logging.getLogger(__name__)


class Objective(ABC):
    """One training objective: its examples, how they are collated, and the loss of a collated batch."""

    name: str
    batch_size: int
    examples: Sequence

    @abstractmethod
    def collate(self, examples: Sequence) -> Batch:
        """A batch of `examples` (on the CPU)."""

    @abstractmethod
    def loss(self, model, batch: Batch) -> torch.Tensor:
        """The scalar loss of `batch` under `model` (the prepared model the loop trains)."""


class LanguageModelling(Objective):
    """The LLM's next-token loss on the target (`data.target`), through the soft prompt: the paper's stage 1."""

    name = "lm"

    def __init__(self, target, records: Sequence[dict], data_target: str, batch_size: int):
        self.target, self.batch_size = target, batch_size
        self.examples = build_examples(records, target.prompt_template, data_target)

    def collate(self, examples: Sequence) -> Batch:
        return self.target.collator(examples)

    def loss(self, model, batch: Batch) -> torch.Tensor:
        return model(**batch.model_inputs(), **self.target.forward_options).loss


@dataclass(frozen=True)
class LexicalExample:
    """A prompt as the encoder reads it, the English prompt it came from, and the swapped words' alignment."""

    prompt: str
    source_prompt: str
    spans: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class LexicalBatch(Batch):
    """Encoder tokens and, per position, the LLM token whose input embedding the mapped state should be."""

    encoder_input_ids: torch.Tensor
    encoder_attention_mask: torch.Tensor
    llm_token_ids: torch.Tensor  # [B, L]; IGNORE where a position pairs with no LLM token

    @property
    def num_tokens(self) -> int:
        return int(self.encoder_attention_mask.sum())


def lexical_examples(records: Sequence[dict], template: str | None, where: str) -> list[LexicalExample]:
    """One example per record; a code-switched record must carry its word alignment (`codeswitch.spans`)."""
    examples = []
    offset = resolve_template(template).index("{question}")  # the template's text before the question
    for index, record in enumerate(records):
        question, source = record["question"], record.get("source_question", record["question"])
        spans = (record.get("codeswitch") or {}).get("spans")
        if spans is None and source != question:
            raise LinguaLiftError(
                f"{where}: record {index + 1} is code-switched but has no word alignment (codeswitch.spans), which "
                "training.objective lexical / mixed needs; write the file again with `lingualift codeswitch`, or "
                "code-switch on the fly with data.codeswitch")
        prompt, source_prompt = format_prompt(template, question), format_prompt(template, source)
        shifted = tuple((start + offset, end + offset, source_start + offset, source_end + offset)
                        for start, end, source_start, source_end in spans or ())
        if any(not (0 <= start <= end <= len(prompt) and 0 <= source_start <= source_end <= len(source_prompt))
               for start, end, source_start, source_end in shifted) or list(shifted) != sorted(shifted):
            raise LinguaLiftError(f"{where}: record {index + 1}: codeswitch.spans do not fit its question and "
                                  "source_question; write the file again with `lingualift codeswitch`")
        examples.append(LexicalExample(prompt, source_prompt, shifted))
    return examples


class LexicalCollator:
    """Encoder tokens of each prompt, read as the model reads them (`encoder_split_digits`), paired with the LLM
    tokens of its English source (`paired_encoder_batch`)."""

    def __init__(self, encoder_tokenizer, llm_tokenizer, encoder_max_length: int, encoder_split_digits: bool = False):
        self.encoder_tokenizer, self.llm_tokenizer = encoder_tokenizer, llm_tokenizer
        self.encoder_max_length, self.encoder_split_digits = encoder_max_length, encoder_split_digits

    def __call__(self, examples: Sequence[LexicalExample]) -> LexicalBatch:
        input_ids, attention_mask, paired = paired_encoder_batch(
            self.encoder_tokenizer, self.llm_tokenizer, [example.prompt for example in examples],
            max_length=self.encoder_max_length, split_digits=self.encoder_split_digits,
            source_texts=[example.source_prompt for example in examples],
            spans=[example.spans for example in examples])
        return LexicalBatch(input_ids, attention_mask, paired.masked_fill(paired < 0, IGNORE))


@dataclass(frozen=True)
class CachedLexicalExample:
    """An example's paired encoder states and LLM tokens, computed once (`training.lexical_cache`)."""

    states: torch.Tensor  # [n, d_enc]
    llm_token_ids: torch.Tensor  # [n]


@dataclass(frozen=True)
class CachedLexicalBatch(Batch):
    """Paired encoder states of a batch's examples, concatenated, and their LLM tokens."""

    states: torch.Tensor
    llm_token_ids: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return len(self.llm_token_ids)


class LexicalAlignment(Objective):
    """Map each encoder state onto the LLM input embedding of its English token; no LLM pass (module doc)."""

    name = "lexical"

    def __init__(self, model, records: Sequence[dict], template: str | None, batch_size: int, where: str,
                 cache: bool = False):
        require_fast_tokenizers(model)
        self.batch_size = batch_size
        self.examples = lexical_examples(records, template, where)
        self.collator = LexicalCollator(model.encoder_tokenizer, model.llm_tokenizer, model.config.encoder_max_length,
                                        model.config.encoder_split_digits)
        with torch.no_grad():
            self.embedding_mean_square = float(model.llm.get_input_embeddings().weight.float().pow(2).mean())
        if cache:
            self.examples = self._encoded(model, self.examples)

    def _encoded(self, model, examples: list[LexicalExample]) -> list[CachedLexicalExample]:
        """Every example's paired encoder states. Chunks of `batch_size` examples of similar length (sorted by
        prompt length: on the first 2,048 GSM8K questions, code-switched, padding is 56% of the encoder's
        positions in data order and 19% sorted), always the same chunks, so a resumed run rebuilds the same
        states and stays bitwise equal to an uninterrupted one."""
        if any(p.requires_grad for p in model.encoder.parameters()):
            raise LinguaLiftError("training.lexical_cache: the encoder is trained in this stage, so its states "
                                  "change; set training.lexical_cache: false")
        device = next(model.encoder.parameters()).device
        order = sorted(range(len(examples)), key=lambda index: (len(examples[index].prompt), index))
        cached: list[CachedLexicalExample | None] = [None] * len(examples)
        for start in tqdm(range(0, len(examples), self.batch_size), desc="encoder states (lexical cache)",
                          unit="batch"):
            chunk = order[start : start + self.batch_size]
            batch = self.collator([examples[index] for index in chunk])
            with torch.no_grad():
                hidden = model.encode(batch.encoder_input_ids.to(device), batch.encoder_attention_mask.to(device))
            for row, (index, tokens) in enumerate(zip(chunk, batch.llm_token_ids)):
                paired = tokens != IGNORE
                cached[index] = CachedLexicalExample(hidden[row][paired.to(device)].cpu().clone(), tokens[paired])
        logger.info("lexical cache: %d examples, %d paired encoder states", len(cached),
                    sum(len(example.llm_token_ids) for example in cached))
        return cached

    def collate(self, examples: Sequence) -> Batch:
        if examples and isinstance(examples[0], CachedLexicalExample):
            return CachedLexicalBatch(torch.cat([example.states for example in examples]),
                                      torch.cat([example.llm_token_ids for example in examples]))
        return self.collator(examples)

    def loss(self, model, batch: LexicalBatch | CachedLexicalBatch) -> torch.Tensor:
        if isinstance(batch, CachedLexicalBatch):
            states, token_ids = batch.states, batch.llm_token_ids
        else:
            paired = batch.llm_token_ids != IGNORE
            states = model.encode(batch.encoder_input_ids, batch.encoder_attention_mask)[paired]
            token_ids = batch.llm_token_ids[paired]
        if not len(token_ids):
            raise LinguaLiftError("training.objective lexical: no encoder token of this batch pairs with an LLM "
                                  "token (empty prompts?)")
        mapped = model.alignment.map_states(states.to(model.alignment_dtype))
        embeddings = model.llm.get_input_embeddings().weight.detach()[token_ids]
        error = torch.nn.functional.mse_loss(mapped.float(), embeddings.float())
        return error / self.embedding_mean_square


class ObjectiveSchedule:
    """Which objective optimiser step `s` uses, and how many steps of that objective preceded it."""

    def __init__(self, config, target, model, records: Sequence[dict], num_processes: int):
        training = config.training
        self.kind, self.lm_every = training.objective, training.lm_every
        self.objectives: dict[str, Objective] = {}
        if self.kind != "lexical":
            self.objectives["lm"] = LanguageModelling(target, records, config.data.target, training.batch_size)
        if self.kind != "lm":
            if num_processes > 1:
                raise LinguaLiftError(f"{config.source}: training.objective {self.kind} runs in one process only "
                                      "(its loss bypasses the data-parallel wrapper); use objective lm with "
                                      "several processes")
            self.objectives["lexical"] = LexicalAlignment(model, records, target.prompt_template,
                                                          training.lexical_batch_size, config.data.train,
                                                          cache=training.lexical_cache)
        for objective in self.objectives.values():
            if not objective.examples:
                raise LinguaLiftError(f"{config.data.train}: no training examples")

    @property
    def primary(self) -> Objective:
        """The objective most steps use; `training.epochs` counts its passes over the data."""
        return self.objectives["lm" if self.kind == "lm" else "lexical"]

    def steps_for(self, primary_steps: int) -> int:
        """Total optimiser steps that give the primary objective `primary_steps` steps."""
        if self.kind != "mixed":
            return primary_steps
        return math.ceil(primary_steps * self.lm_every / (self.lm_every - 1))

    def example_passes(self, steps: int, accumulation: int) -> int:
        """Examples seen in the first `steps` optimiser steps, all objectives together."""
        lm_steps = steps if self.kind == "lm" else steps // self.lm_every if self.kind == "mixed" else 0
        passes = lm_steps * self.objectives["lm"].batch_size if lm_steps else 0
        if "lexical" in self.objectives:
            passes += (steps - lm_steps) * self.objectives["lexical"].batch_size
        return passes * accumulation

    def is_lm_step(self, step: int) -> bool:
        return self.kind == "lm" or (self.kind == "mixed" and (step + 1) % self.lm_every == 0)

    def at(self, step: int) -> tuple[Objective, int]:
        """`(objective of step `step`, number of earlier steps of that objective)` (steps count from 0)."""
        if self.kind in ("lm", "lexical"):
            return self.objectives[self.kind], step
        lm_steps_before = step // self.lm_every
        if self.is_lm_step(step):
            return self.objectives["lm"], lm_steps_before
        return self.objectives["lexical"], step - lm_steps_before
