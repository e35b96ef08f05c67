"""Instruction data: record formats, training examples, and the collators that tokenise them.

Accepted JSONL layouts (detected per record):
- `question` / `answer` (GSM8K included; `answer` may be a worked solution ending in `#### N`);
- Alpaca `instruction` / `input` / `output`;
- MetaMathQA `query` / `response`;
- code-switched stage-1 files also carry `source_question` (the original English prompt).

The encoder always reads the templated prompt; the LLM gets the soft prompt, then (optionally) its own
tokens of the same prompt, then the target. The `sft` baseline feeds the templated prompt to the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from lingualift.errors import LinguaLiftError
from lingualift.io import iter_numbered_jsonl
from lingualift.data.prompts import format_prompt

TARGETS = ("response", "source", "both")


def normalize_record(record: dict, where: str) -> dict:
    """Map any supported layout onto `question` / `answer` (+ `source_question` when present)."""
    if "question" in record and "answer" in record:
        out = dict(record)
    elif "instruction" in record and "output" in record:
        extra = record.get("input") or ""
        question = f"{record['instruction']}\n\n{extra}" if extra else record["instruction"]
        out = {"question": question, "answer": record["output"], **_other_keys(record, "instruction", "input", "output")}
    elif "query" in record and "response" in record:
        out = {"question": record["query"], "answer": record["response"], **_other_keys(record, "query", "response")}
    else:
        raise LinguaLiftError(
            f"{where}: record has keys {sorted(record)}; expected question/answer, "
            "instruction/input/output (Alpaca) or query/response (MetaMathQA)"
        )
    for key in ("question", "answer"):
        if not isinstance(out[key], str):
            raise LinguaLiftError(f"{where}: field {key!r} must be a string, got {type(out[key]).__name__}")
    return out


def _other_keys(record: dict, *layout_keys: str) -> dict:
    return {key: value for key, value in record.items() if key not in layout_keys}


def read_instructions(path, limit: int | None = None) -> Iterator[dict]:
    """Stream normalised records from a JSONL file (each error names the file and line)."""
    for index, (line_number, record) in enumerate(iter_numbered_jsonl(path)):
        if limit is not None and index >= limit:
            return
        yield normalize_record(record, f"{path}:{line_number}")


@dataclass(frozen=True)
class Example:
    prompt: str              # what the encoder reads (templated); also the LLM's query tokens if enabled
    target: str | None = None  # what the LLM learns to produce (None at inference)


def build_examples(records: Iterable[dict], template: str | None, target: str = "response") -> list[Example]:
    """Turn normalised records into examples for a stage-1 target mode (`response`, `source`, `both`)."""
    if target not in TARGETS:
        raise LinguaLiftError(f"data.target must be one of {', '.join(TARGETS)}, got {target!r}")
    examples = []
    for record in records:
        prompt = format_prompt(template, record["question"])
        if target in ("response", "both"):
            examples.append(Example(prompt, record["answer"]))
        if target in ("source", "both"):
            examples.append(Example(prompt, record.get("source_question", record["question"])))
    return examples


def leading_special_ids(tokenizer) -> list[int]:
    """The ids a tokenizer puts before plain text (e.g. Llama's bos); empty for tokenizers that add none."""
    with_special = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    if plain and plain[0] in with_special:
        return with_special[: with_special.index(plain[0])]
    return []


def _pad(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask


class _TargetTokens:
    def __init__(self, llm_tokenizer, max_target_length: int):
        self.llm_tokenizer = llm_tokenizer
        self.max_target_length = max_target_length
        self.pad_id = llm_tokenizer.pad_token_id if llm_tokenizer.pad_token_id is not None else 0

    def target_ids(self, text: str) -> list[int]:
        ids = self.llm_tokenizer(text, add_special_tokens=False).input_ids[: self.max_target_length - 1]
        return ids + [self.llm_tokenizer.eos_token_id]


class BridgeCollator(_TargetTokens):
    """Tokenise examples into the model's segments: encoder prompt, LLM prefix, LLM suffix, target."""

    def __init__(self, encoder_tokenizer, llm_tokenizer, *, llm_sees_query: bool = False, llm_prefix: str = "",
                 llm_suffix: str = "", encoder_max_length: int = 512, max_target_length: int = 512):
        super().__init__(llm_tokenizer, max_target_length)
        self.encoder_tokenizer = encoder_tokenizer
        self.llm_sees_query = llm_sees_query
        self.encoder_max_length = encoder_max_length
        self.llm_prefix, self.llm_suffix = llm_prefix, llm_suffix
        self.prefix = leading_special_ids(llm_tokenizer) + self._text_ids(llm_prefix)
        self.suffix = self._text_ids(llm_suffix)

    @classmethod
    def for_model(cls, model, max_target_length: int = 512,
                  llm_affixes: tuple[str, str] | None = None) -> "BridgeCollator":
        """The collator a checkpoint was trained with; `llm_affixes` replaces its LLM text around the soft prompt."""
        config = model.config
        prefix, suffix = llm_affixes or (config.llm_prefix, config.llm_suffix)
        return cls(model.encoder_tokenizer, model.llm_tokenizer, llm_sees_query=config.llm_sees_query,
                   llm_prefix=prefix, llm_suffix=suffix,
                   encoder_max_length=config.encoder_max_length, max_target_length=max_target_length)

    def _text_ids(self, text: str) -> list[int]:
        return self.llm_tokenizer(text, add_special_tokens=False).input_ids if text else []

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        encoded = self.encoder_tokenizer(
            [example.prompt for example in examples], truncation=True, max_length=self.encoder_max_length
        ).input_ids
        encoder_pad = self.encoder_tokenizer.pad_token_id or 0
        batch = dict(zip(("encoder_input_ids", "encoder_attention_mask"), _pad(encoded, encoder_pad)))
        batch["prefix_ids"], batch["prefix_mask"] = _pad([self.prefix] * len(examples), self.pad_id)
        suffixes = [
            (self._text_ids(example.prompt) if self.llm_sees_query else []) + self.suffix for example in examples
        ]
        batch["suffix_ids"], batch["suffix_mask"] = _pad(suffixes, self.pad_id)
        if all(example.target is not None for example in examples):
            targets = [self.target_ids(example.target) for example in examples]
            batch["target_ids"], batch["target_mask"] = _pad(targets, self.pad_id)
        return batch


class CausalLMCollator(_TargetTokens):
    """The `sft` baseline and plain LLMs: the LLM reads the templated prompt as its own tokens."""

    def __init__(self, llm_tokenizer, *, llm_prefix: str = "", llm_suffix: str = "", max_length: int = 1024,
                 max_target_length: int = 512):
        super().__init__(llm_tokenizer, max_target_length)
        self.prefix = leading_special_ids(llm_tokenizer)
        self.llm_prefix, self.llm_suffix = llm_prefix, llm_suffix
        self.max_length = max_length

    def prompt_text(self, prompt: str) -> str:
        """The text the LLM reads for a templated prompt (before any leading special ids)."""
        return f"{self.llm_prefix}{prompt}{self.llm_suffix}"

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.prefix + self.llm_tokenizer(self.prompt_text(prompt), add_special_tokens=False).input_ids[-self.max_length:]

    def __call__(self, examples: Sequence[Example], left_pad: bool = False) -> dict[str, torch.Tensor]:
        prompts = [self.prompt_ids(example.prompt) for example in examples]
        with_targets = all(example.target is not None for example in examples)
        targets = [self.target_ids(example.target) for example in examples] if with_targets else [[]] * len(prompts)
        sequences = [p + t for p, t in zip(prompts, targets)]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, (prompt, target) in enumerate(zip(prompts, targets)):
            start = width - len(prompt) - len(target) if left_pad else 0
            input_ids[row, start : start + len(prompt) + len(target)] = torch.tensor(prompt + target)
            attention_mask[row, start : start + len(prompt) + len(target)] = 1
            if target:
                labels[row, start + len(prompt) : start + len(prompt) + len(target)] = torch.tensor(target)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if with_targets:
            batch["labels"] = labels
        return batch
