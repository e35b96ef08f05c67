"""Prompt templates.

A template is a string with one `{question}` field. Named templates can be used anywhere a template is
accepted; anything else containing `{question}` is taken literally. The default is the paper's
Alpaca/MetaMath template (docs: METHOD, "Inference and evaluation"), which both the encoder and, for
the `sft` baseline and plain LLMs, the LLM read.

`chat` prompts an instruct LLM the way it was trained: the question becomes the user turn of the LLM
tokenizer's own chat template. The encoder, which has no chat template, reads the bare question; for a
LinguaLIFT model the soft prompt takes the question's place inside the user turn.
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
    "chat": "{question}",
}
DEFAULT_TEMPLATE = "paper"
CHAT_TEMPLATE = "chat"


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


def uses_chat_template(template: str | None) -> bool:
    """Whether the LLM side of this template is the tokenizer's chat template (see the module doc)."""
    return template == CHAT_TEMPLATE


def llm_affixes(tokenizer, template: str | None, prefix: str = "", suffix: str = "") -> tuple[str, str]:
    """The LLM's text around the prompt (or soft prompt): its chat template's user turn for `chat`, else the
    given affixes."""
    return chat_template_affixes(tokenizer) if uses_chat_template(template) else (prefix, suffix)


def chat_template_affixes(tokenizer) -> tuple[str, str]:
    """Text before and after the user message in the LLM's chat template (generation prompt included)."""
    if not getattr(tokenizer, "chat_template", None):
        raise LinguaLiftError(
            "the chat prompt template needs an LLM whose tokenizer has a chat template; this one has none "
            "(use prompt_template: paper, or an instruct LLM)"
        )
    marker = "\u2063LINGUALIFT_QUERY\u2063"
    text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                         add_generation_prompt=True)
    before, after = text.split(marker)
    return before, after
