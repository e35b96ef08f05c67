"""Instruction data: record formats and training examples (`lingualift.data.collate` tokenises them).

Accepted JSONL layouts (detected per record):
- `question` / `answer` (GSM8K included; `answer` may be a worked solution ending in `#### N`);
- Alpaca `instruction` / `input` / `output`;
- MetaMathQA `query` / `response`;
- code-switched stage-1 files also carry `source_question` (the original English prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

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
class PromptTarget:
    """A templated prompt and what the LLM should produce for it (training; `target` is None at inference).

    Not to be confused with `eval.tasks.Example`, a test item with its gold answer.
    """

    prompt: str              # what the encoder reads (templated); also the LLM's query tokens if enabled
    target: str | None = None  # what the LLM learns to produce (None at inference)
    end_of_sequence: bool = True  # an end-of-sequence token follows the target (False: a scored continuation)


def build_examples(records: Iterable[dict], template: str | None, target: str = "response") -> list[PromptTarget]:
    """Turn normalised records into examples for a stage-1 target mode (`response`, `source`, `both`)."""
    if target not in TARGETS:
        raise LinguaLiftError(f"data.target must be one of {', '.join(TARGETS)}, got {target!r}")
    examples = []
    for record in records:
        prompt = format_prompt(template, record["question"])
        if target in ("response", "both"):
            examples.append(PromptTarget(prompt, record["answer"]))
        if target in ("source", "both"):
            examples.append(PromptTarget(prompt, record.get("source_question", record["question"])))
    return examples
