"""Stage-1 objectives: the lexical objective's token pairing, its training, the mixed schedule and resuming."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import QUESTIONS, tiny_config, tiny_model
from lingualift.data.codeswitch import CodeSwitcher, CodeSwitchSettings
from lingualift.data.lexicon import Lexicon
from lingualift.errors import LinguaLiftError
from lingualift.model.warmstart import paired_llm_tokens
from lingualift.train import loop as training
from lingualift.train.config import config_from_dict
from lingualift.checkpoint import load_trainable
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.loop import Trainer, export_step_checkpoint
from lingualift.train.objectives import IGNORE, LexicalCollator, lexical_examples


def test_pairing_follows_the_swapped_words_back_to_english():
    # "Der Hund eats" is "The dog eats" with two words swapped: "Der" (0-3) for "The" (0-3), "Hund" (4-8) for
    # "dog" (4-7), so after the second swap the switched text is one character ahead of the English.
    text, source = "Der Hund eats", "The dog eats"
    spans = [[0, 3, 0, 3], [4, 8, 4, 7]]
    encoder_offsets = [(0, 0), (0, 3), (3, 6), (6, 8), (8, 13)]  # special token, "Der", " Hu", "nd", " eats"
    llm_ids, llm_offsets = [10, 11, 12, 13], [(0, 3), (3, 5), (5, 7), (7, 12)]  # "The", " d", "og", " eats"
    paired = paired_llm_tokens(text, encoder_offsets, source, llm_ids, llm_offsets, spans)
    # "Hund": two encoder pieces onto the two LLM tokens of "dog", in order; " eats" onto " eats".
    assert paired == [-1, 10, 11, 12, 13]
    # Without swaps it is the warm start's pairing: the token covering the first non-space character.
    assert paired_llm_tokens(source, [(0, 3), (3, 5), (5, 7), (7, 12)], source, llm_ids, llm_offsets) == llm_ids


def test_pairing_spreads_more_pieces_over_fewer_tokens_in_order():
    text, source = "Katzenfutter x", "cat x"
    paired = paired_llm_tokens(text, [(0, 4), (4, 8), (8, 12), (12, 14)], source, [1, 2, 3],
                               [(0, 2), (2, 3), (3, 5)], [[0, 12, 0, 3]])
    assert paired == [1, 1, 2, 3]  # pieces k = 0, 1, 2 of 3 onto tokens k·2 // 3 of "cat"'s two


def _switched_records() -> list[dict]:
    lexicon = Lexicon("xx")
    for english, foreign in (("apples", "pommes"), ("buys", "achete"), ("how", "combien"), ("many", "beaucoup")):
        lexicon.add(english, foreign)
    switcher = CodeSwitcher(CodeSwitchSettings({"xx": "unused"}, ratio=1.0), {"xx": lexicon})
    return [switcher.switch({"question": question, "answer": "x"}, index) for index, question in enumerate(QUESTIONS)]


def test_lexical_targets_of_a_swapped_word_are_the_english_words_tokens():
    model = tiny_model()
    record = _switched_records()[0]
    assert record["question"] == "Tom has 3 pommes and achete 4 more. Combien beaucoup?"
    example, = lexical_examples([record], "plain", "test")
    batch = LexicalCollator(model.encoder_tokenizer, model.llm_tokenizer, 64)([example])
    encoded = model.encoder_tokenizer(example.prompt, return_offsets_mapping=True)
    english = model.llm_tokenizer(record["source_question"], add_special_tokens=False).input_ids
    targets = batch.llm_token_ids[0].tolist()
    # The tiny tokenizers are byte-level: "pommes" (6 pieces, at 10) maps onto "apples" (6 tokens, at 10).
    start = record["question"].index("pommes")
    positions = [i for i, (begin, _) in enumerate(encoded.offset_mapping) if start <= begin < start + 6]
    assert [targets[i] for i in positions] == english[10:16]
    # "achete" (6 pieces) onto "buys" (4 tokens), in order; and after it " 4 more" keeps its own tokens.
    start = record["question"].index("achete")
    positions = [i for i, (begin, _) in enumerate(encoded.offset_mapping) if start <= begin < start + 6]
    assert [targets[i] for i in positions] == [english[21 + k * 4 // 6] for k in range(6)]
    four = record["question"].index(" 4 more") + 1
    position = next(i for i, (begin, _) in enumerate(encoded.offset_mapping) if begin == four)
    assert targets[position] == english[record["source_question"].index(" 4 more") + 1]
    assert targets[0] == IGNORE  # the encoder's special token pairs with nothing


def test_a_codeswitched_record_without_its_alignment_is_refused():
    record = _switched_records()[0]
    del record["codeswitch"]["spans"]
    with pytest.raises(LinguaLiftError, match="no word alignment"):
        lexical_examples([record], "plain", "train.jsonl")


def _config(tmp_path, objective: str, **training) -> dict:
    data = tmp_path / "switched.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in _switched_records() * 2))
    config = tiny_config(tmp_path, stage="align")
    config["data"]["train"] = str(data)
    config["training"].update(objective=objective, lexical_batch_size=6, batch_size=2, log_every=1,
                              learning_rate=3e-3, output_dir=str(tmp_path / objective), **training)
    return config


def test_lexical_objective_fits_the_map_without_touching_the_llm(tmp_path):
    config = _config(tmp_path, "lexical", max_steps=12)
    trainer = Trainer(config_from_dict(config))
    frozen = {name: p.detach().clone() for name, p in trainer.unwrapped.named_parameters()
              if not name.startswith("alignment.")}
    boundary = trainer.unwrapped.alignment.end.detach().clone()
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "lexical" / "train_log.jsonl").read_text().splitlines()]
    losses = [record["loss_lexical"] for record in log]
    assert losses[-1] < 0.8 * losses[0], losses
    assert [record["example_passes"] for record in log] == [6 * step for step in range(1, 13)]
    assert all(torch.equal(p, frozen[name]) for name, p in trainer.unwrapped.named_parameters() if name in frozen)
    assert torch.equal(trainer.unwrapped.alignment.end, boundary)  # only an LLM pass trains the end vector
    assert (tmp_path / "lexical" / "final" / "alignment.safetensors").is_file()


def test_mixed_objective_interleaves_lm_steps(tmp_path):
    config = _config(tmp_path, "mixed", max_steps=6, lm_every=3)
    Trainer(config_from_dict(config)).train()
    log = [json.loads(line) for line in (tmp_path / "mixed" / "train_log.jsonl").read_text().splitlines()]
    assert [sorted(k for k in record if k.startswith("loss_")) for record in log] == \
        [["loss_lexical"], ["loss_lexical"], ["loss_lm"]] * 2
    assert [record["example_passes"] for record in log] == [6, 12, 14, 20, 26, 28]


def test_cached_encoder_states_give_the_same_losses(tmp_path):
    logs = {}
    for cache in (False, True):
        config = _config(tmp_path, "lexical", max_steps=4, lexical_cache=cache)
        config["training"]["output_dir"] = str(tmp_path / f"cache-{cache}")
        Trainer(config_from_dict(config)).train()
        lines = (tmp_path / f"cache-{cache}" / "train_log.jsonl").read_text().splitlines()
        logs[cache] = [json.loads(line)["loss_lexical"] for line in lines]
    # The same states, computed in other batches (other padding): equal up to float rounding.
    assert logs[True] == pytest.approx(logs[False], rel=1e-4)


def test_the_cache_is_refused_when_the_encoder_trains(tmp_path):
    config = _config(tmp_path, "lexical", max_steps=1, lexical_cache=True)
    config["model"]["trainable"] = ["alignment", "encoder"]
    with pytest.raises(LinguaLiftError, match="training.lexical_cache"):
        Trainer(config_from_dict(config))


@pytest.mark.parametrize("cache", [False, True])
def test_mixed_run_killed_and_resumed_ends_with_identical_weights(tmp_path, monkeypatch, cache):
    reference = _config(tmp_path, "mixed", max_steps=7, lm_every=3, save_every=2, lexical_cache=cache)
    reference["training"]["output_dir"] = str(tmp_path / "reference")
    Trainer(config_from_dict(reference)).train()

    config = _config(tmp_path, "mixed", max_steps=7, lm_every=3, save_every=2, lexical_cache=cache)
    real_step = training.Trainer.optimizer_step

    def dying_step(self, *args, **kwargs):
        if self.step == 5:
            raise KeyboardInterrupt("simulated kill at step 5")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "optimizer_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config_from_dict(config)).train()
    monkeypatch.setattr(training.Trainer, "optimizer_step", real_step)
    config["training"]["resume_from_checkpoint"] = "latest"
    resumed = Trainer(config_from_dict(config))
    resumed.train()
    expected = load_file(tmp_path / "reference" / "final" / "alignment.safetensors")
    actual = load_file(tmp_path / "mixed" / "final" / "alignment.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_lexical_objective_is_refused_for_sft(tmp_path):
    config = tiny_config(tmp_path, method="sft", stage=None, training={"objective": "lexical"})
    with pytest.raises(LinguaLiftError, match="training.objective lexical"):
        config_from_dict(config)


def test_a_step_checkpoint_exports_as_a_loadable_model(tmp_path):
    config = _config(tmp_path, "lexical", max_steps=4, save_every=2)
    Trainer(config_from_dict(config)).train()
    step = tmp_path / "lexical" / "checkpoints" / "step-2"
    exported = export_step_checkpoint(step, tmp_path / "step-2-model")
    model = LinguaLiftModel.from_pretrained(exported)
    parameters = dict(model.named_parameters())
    trained = load_trainable(step)
    assert trained and all(torch.equal(parameters[name], tensor) for name, tensor in trained.items())
    final = load_file(tmp_path / "lexical" / "final" / "alignment.safetensors")
    assert any(not torch.equal(final[name], load_file(exported / "alignment.safetensors")[name]) for name in final)
