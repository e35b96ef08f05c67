"""Prompt templates.

A template is a string with one `{question}` field. Named templates can be used anywhere a template is
accepted; anything else containing `{question}` is taken literally. The default is the paper's
Alpaca/MetaMath template (docs: METHOD, "Inference and evaluation"), which both the encoder and, for
the `sft` baseline and plain LLMs, the LLM read.
"""

from __future__ import annotations

from lingualift.errors import LinguaLiftError

PROMPT_TEMPLATES = {
    "paper": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{question}\n\n### Response: Let's think step by step."
    ),
    "alpaca": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{question}\n\n### Response:"
    ),
    "plain": "{question}",
}
DEFAULT_TEMPLATE = "paper"


def resolve_template(template: str | None) -> str:
    """Return the template text for a name or a literal template."""
    template = template or DEFAULT_TEMPLATE
    if template in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[template]
    if "{question}" not in template:
        known = ", ".join(PROMPT_TEMPLATES)
        raise LinguaLiftError(
            f"prompt template {template!r} is neither a known name ({known}) nor a text with a {{question}} field"
        )
    return template


def format_prompt(template: str | None, question: str) -> str:
    return resolve_template(template).replace("{question}", question)
