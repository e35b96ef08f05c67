"""Prompt templates: named and literal templates, and `chat` for both model kinds."""

from __future__ import annotations

import pytest

from lingualift import LinguaLiftModel
from lingualift.model.components import byte_tokenizer, load_component, LLM
from lingualift.errors import LinguaLiftError
from lingualift.inference.generators import BridgeGenerator, CausalLMGenerator
from lingualift.data.prompts import chat_template_affixes, format_prompt, resolve_template

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_named_and_literal_templates():
    assert format_prompt("plain", "2+2?") == "2+2?"
    assert format_prompt("Q: {question}\nA:", "2+2?") == "Q: 2+2?\nA:"
    assert format_prompt(None, "2+2?").startswith("Below is an instruction")
    with pytest.raises(LinguaLiftError, match="neither a known name"):
        resolve_template("no field here")


def test_chat_template_affixes():
    tokenizer = byte_tokenizer(add_eos=False)
    tokenizer.chat_template = CHAT
    assert chat_template_affixes(tokenizer) == ("<|user|>", "<|end|><|assistant|>")
    tokenizer.chat_template = None
    with pytest.raises(LinguaLiftError, match="chat template"):
        chat_template_affixes(tokenizer)


def test_chat_prompt_for_a_plain_llm_is_the_user_turn():
    model, tokenizer = load_component("tiny-llama", LLM)
    tokenizer.chat_template = CHAT
    generator = CausalLMGenerator(model, tokenizer, prompt_template="chat", device="cpu")
    assert generator.rendered_prompt("Wie viel ist 2+2?") == "<|user|>Wie viel ist 2+2?<|end|><|assistant|>"
    # The token ids the LLM reads are exactly those of the rendered text (after any leading special ids).
    batch = generator.prepare_batch(["Wie viel ist 2+2?"])
    expected = tokenizer("<|user|>Wie viel ist 2+2?<|end|><|assistant|>", add_special_tokens=False).input_ids
    assert batch.input_ids[0, -len(expected):].tolist() == expected


def test_chat_prompt_for_a_bridge_puts_the_soft_prompt_in_the_user_turn():
    model = LinguaLiftModel.from_components(encoder="tiny-bert", llm="tiny-llama", alignment="mlp")
    model.llm_tokenizer.chat_template = CHAT
    generator = BridgeGenerator(model, prompt_template="chat", device="cpu")
    assert generator.rendered_prompt("Juma ana machungwa 3") == (
        "<|user|>[soft prompt; the encoder reads: Juma ana machungwa 3]<|end|><|assistant|>")
    batch = generator.prepare_batch(["Juma ana machungwa 3"])
    suffix = model.llm_tokenizer("<|end|><|assistant|>", add_special_tokens=False).input_ids
    assert batch.suffix_ids[0].tolist() == suffix
    # The encoder reads the bare question: no instruction template around it.
    encoder_ids = model.encoder_tokenizer("Juma ana machungwa 3").input_ids
    assert batch.encoder_input_ids[0].tolist() == encoder_ids
    # The paper template keeps the checkpoint's own affixes (none here) and templated encoder text.
    paper = BridgeGenerator(model, prompt_template="paper", device="cpu")
    assert paper.rendered_prompt("Q").startswith("[soft prompt; the encoder reads: Below is an instruction")


def test_chat_template_without_one_is_a_clear_error():
    model, tokenizer = load_component("tiny-llama", LLM)
    tokenizer.chat_template = None
    with pytest.raises(LinguaLiftError, match="chat template"):
        CausalLMGenerator(model, tokenizer, prompt_template="chat", device="cpu")
