"""Instruction formats, stage-1 target modes, the collators' segments and the batches they return."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from lingualift.model.components import byte_tokenizer
from lingualift.data.collate import BridgeBatch, BridgeCollator, CausalLMBatch, CausalLMCollator
from lingualift.data.instructions import PromptTarget, build_examples, normalize_record, read_instructions
from lingualift.errors import LinguaLiftError


def test_record_layouts_are_normalised():
    gsm8k = normalize_record({"question": "Q?", "answer": "Work.\n#### 5"}, "f:1")
    alpaca = normalize_record({"instruction": "Add.", "input": "2 and 3", "output": "5"}, "f:2")
    alpaca_no_input = normalize_record({"instruction": "Say hi.", "input": "", "output": "hi"}, "f:3")
    metamath = normalize_record({"query": "Q2?", "response": "R"}, "f:4")
    assert (gsm8k["question"], gsm8k["answer"]) == ("Q?", "Work.\n#### 5")
    assert (alpaca["question"], alpaca["answer"]) == ("Add.\n\n2 and 3", "5")
    assert normalize_record({"instruction": "A", "output": "B", "src": "x"}, "f") == {"question": "A", "answer": "B",
                                                                                   "src": "x"}
    assert alpaca_no_input["question"] == "Say hi."
    assert (metamath["question"], metamath["answer"]) == ("Q2?", "R")
    with pytest.raises(LinguaLiftError, match="f:9: record has keys"):
        normalize_record({"prompt": "x"}, "f:9")
    with pytest.raises(LinguaLiftError, match="'answer' must be a string"):
        normalize_record({"question": "x", "answer": 5}, "f:9")


def test_read_instructions_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "a", "answer": "b"}) + "\n\n" + json.dumps({"q": 1}) + "\n")
    with pytest.raises(LinguaLiftError, match=r"d.jsonl:3"):
        list(read_instructions(path))
    assert len(list(read_instructions(path, limit=1))) == 1


def test_stage_one_targets():
    record = {"question": "Wie viele apples?", "source_question": "How many apples?", "answer": "3"}
    assert [e.target for e in build_examples([record], "plain", "response")] == ["3"]
    assert [e.target for e in build_examples([record], "plain", "source")] == ["How many apples?"]
    both = build_examples([record], "plain", "both")
    assert [e.target for e in both] == ["3", "How many apples?"]
    assert all(e.prompt == "Wie viele apples?" for e in both)
    with pytest.raises(LinguaLiftError, match="data.target"):
        build_examples([record], "plain", "everything")


def test_bridge_collator_segments():
    tokenizer = byte_tokenizer(add_eos=False)
    collator = BridgeCollator(byte_tokenizer(add_eos=True), tokenizer, llm_sees_query=True, llm_suffix="A:")
    batch = collator([PromptTarget("ab", "c"), PromptTarget("abcd", "de")])
    assert batch.prefix_ids.tolist() == [[1], [1]]  # the LLM's bos
    assert batch.encoder_attention_mask.sum(1).tolist() == [4, 6]  # <s> text </s>
    assert batch.suffix_mask.sum(1).tolist() == [2 + 2, 4 + 2]  # query tokens + "A:"
    assert batch.target_mask.sum(1).tolist() == [2, 3]  # target + eos
    assert batch.target_ids[0, 1] == tokenizer.eos_token_id
    assert "target_ids" not in collator([PromptTarget("ab")]).model_inputs()


@pytest.mark.parametrize("collator", [
    BridgeCollator(byte_tokenizer(add_eos=True), byte_tokenizer(add_eos=False), max_target_length=4),
    CausalLMCollator(byte_tokenizer(add_eos=False), max_target_length=4),
], ids=["bridge", "causal"])
def test_a_cut_target_does_not_end_the_sequence(collator):
    """A target longer than max_target_length is cut without end-of-sequence: an eos there would teach the model
    to stop mid-answer. One that fits ends with it, also when it fills the budget exactly with it."""
    eos = collator.llm_tokenizer.eos_token_id
    assert collator.target_ids("abcdefg") == collator.llm_tokenizer("abcd", add_special_tokens=False).input_ids
    assert collator.target_ids("abc")[-1] == eos and len(collator.target_ids("abc")) == 4
    assert eos not in collator.target_ids("abcd")


def test_a_tokenizer_without_end_of_sequence_is_named():
    tokenizer = byte_tokenizer(add_eos=False)
    tokenizer.eos_token = None
    collator = CausalLMCollator(tokenizer)
    assert collator.target_ids("ab", end_of_sequence=False) == tokenizer("ab", add_special_tokens=False).input_ids
    with pytest.raises(LinguaLiftError, match="no end-of-sequence token.*set `eos_token`"):
        collator.target_ids("ab")


def test_causal_collator_labels_only_the_target():
    tokenizer = byte_tokenizer(add_eos=False)
    batch = CausalLMCollator(tokenizer)([PromptTarget("abc", "d"), PromptTarget("a", "de")], left_pad=True)
    labels = batch.labels
    assert (labels != -100).sum(1).tolist() == [2, 3]
    assert batch.attention_mask.sum(1).tolist() == [1 + 3 + 2, 1 + 1 + 3]
    assert batch.attention_mask[1, 0] == 0  # left padding


def _tensor_parameters(function) -> set[str]:
    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "left_pad", "targets_only")}


def test_batch_fields_are_the_models_arguments():
    """Collators, training loop, generators and bench hand a batch over as `model(**batch.model_inputs())`."""
    from transformers import LlamaForCausalLM

    from lingualift.model.modeling import LinguaLiftModel

    bridge = {field.name for field in dataclasses.fields(BridgeBatch)}
    assert bridge == _tensor_parameters(LinguaLiftModel.forward) == _tensor_parameters(LinguaLiftModel.pack)
    assert _tensor_parameters(LinguaLiftModel.generate) == bridge - {"target_ids", "target_mask"}
    assert {field.name for field in dataclasses.fields(CausalLMBatch)} <= _tensor_parameters(LlamaForCausalLM.forward)


def test_batch_counts_tokens_and_moves_to_a_device():
    encoder_tokenizer, tokenizer = byte_tokenizer(add_eos=True), byte_tokenizer(add_eos=False)
    for collator in (BridgeCollator(encoder_tokenizer, tokenizer, llm_sees_query=True, llm_suffix="A:"),
                     CausalLMCollator(tokenizer)):
        for examples in ([PromptTarget("ab", "c"), PromptTarget("abcd", "de")], [PromptTarget("ab"), PromptTarget("abcd")]):
            batch = collator(examples)
            masks = {name: tensor for name, tensor in batch.model_inputs().items() if name.endswith("mask")}
            assert masks and batch.num_tokens == int(sum(mask.sum() for mask in masks.values()))  # the loop's count
            moved = batch.to("meta")
            assert all(tensor.device.type == "meta" for tensor in moved.model_inputs().values())
            assert moved.model_inputs().keys() == batch.model_inputs().keys()  # absent targets stay absent
            assert all(tensor.device.type == "cpu" for tensor in batch.model_inputs().values())
    assert BridgeCollator(encoder_tokenizer, tokenizer)([PromptTarget("ab", "c")]).num_tokens == 4 + 1 + 0 + 2
    assert CausalLMCollator(tokenizer)([PromptTarget("ab", "c")]).num_tokens == 1 + 2 + 2
