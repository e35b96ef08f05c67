"""Lexical warm start: token pairing by character offset, the fit itself, and its place in stage 1."""

from __future__ import annotations

import pytest
import torch

from helpers import QUESTIONS, tiny_config, tiny_model
from lingualift.train.config import config_from_dict
from lingualift.errors import LinguaLiftError
from lingualift.train.loop import Trainer
from lingualift.model.warmstart import lexical_warm_start, token_pairs


def test_pairs_are_encoder_states_and_llm_embedding_rows():
    model = tiny_model()
    states, targets = token_pairs(model, QUESTIONS)
    # The tiny models use byte-level tokenizers on both sides: one pair per byte of text.
    assert states.shape == (sum(len(q.encode()) for q in QUESTIONS), model.encoder.config.hidden_size)
    embedding = model.llm.get_input_embeddings().weight
    first_byte = model.llm_tokenizer(QUESTIONS[0][0], add_special_tokens=False).input_ids[0]
    assert torch.equal(targets[0], embedding[first_byte])
    hidden = model.encode(*model.encoder_tokenizer(QUESTIONS[:1], return_tensors="pt").values())
    assert torch.allclose(states[0], hidden[0, 1], atol=1e-5)  # position 0 is <s>, skipped


def test_fit_maps_states_onto_their_tokens_and_leaves_the_rest_alone():
    model = tiny_model(alignment="linear")
    states, targets = token_pairs(model, QUESTIONS)
    alignment = model.alignment
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(alignment.map_states(states), targets)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith("alignment.proj")}
    stats = lexical_warm_start(model, QUESTIONS, steps=300, learning_rate=1e-2)
    assert stats["token_pairs"] == len(states)
    assert stats["mse"] < 0.5 * float(before)
    # Two tiny random models, one linear map: far from perfect, but far above chance (1 / 260 tokens).
    assert stats["nearest_is_paired_token"] > 0.1
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen)


def test_fit_is_reproducible_by_seed():
    first, second = tiny_model(), tiny_model()
    lexical_warm_start(first, QUESTIONS, steps=20, seed=3)
    lexical_warm_start(second, QUESTIONS, steps=20, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.alignment.parameters(), second.alignment.parameters()))


def test_stage_one_config_runs_the_warm_start(tmp_path):
    plain = Trainer(config_from_dict(tiny_config(tmp_path))).unwrapped.alignment.state_dict()
    warm = tiny_config(tmp_path)
    warm["model"]["warm_start"] = "lexical"
    warmed = Trainer(config_from_dict(warm)).unwrapped.alignment.state_dict()
    changed = {name for name in plain if not torch.equal(plain[name], warmed[name])}
    assert changed and all(name.startswith("mlp.") for name in changed)


def test_resuming_skips_the_warm_start_its_checkpoint_replaces(tmp_path, monkeypatch):
    from lingualift.train import loop

    config = tiny_config(tmp_path)
    config["model"]["warm_start"] = "lexical"
    config["training"].update(max_steps=2, save_every=1, resume_from_checkpoint="latest")
    fits = []
    monkeypatch.setattr(loop, "lexical_warm_start", lambda *args, **kwargs: fits.append(args))
    Trainer(config_from_dict(config)).train()  # nothing to resume yet: the fit runs
    assert len(fits) == 1
    assert Trainer(config_from_dict(config)).step == 0 and len(fits) == 1  # a step checkpoint will be loaded


@pytest.mark.parametrize("section, fragment", [
    ({"model": {"warm_start": "glove"}}, "model.warm_start: must be one of lexical"),
    ({"stage": "task", "model": {"warm_start": "lexical"}}, "needs a stage that trains the alignment layer"),
    ({"model": {"warm_start": "lexical", "warm_start_texts": 0}}, "model.warm_start_texts"),
])
def test_bad_warm_start_settings_name_the_field(tmp_path, section, fragment):
    config = tiny_config(tmp_path)
    config["stage"] = section.get("stage", config["stage"])
    config["model"].update(section["model"])
    with pytest.raises(LinguaLiftError, match=fragment):
        Trainer(config_from_dict(config))


def test_code_switched_file_warm_starts_on_the_english_originals(tmp_path, monkeypatch):
    data = tmp_path / "switched.jsonl"
    data.write_text('{"question": "Tom hat 3 Äpfel", "answer": "3", "source_question": "Tom has 3 apples"}\n')
    seen = []
    monkeypatch.setattr("lingualift.train.loop.lexical_warm_start", lambda model, texts, seed: seen.extend(texts))
    config = tiny_config(tmp_path)
    config["data"]["train"] = str(data)
    config["model"]["warm_start"] = "lexical"
    Trainer(config_from_dict(config))
    assert seen == ["Tom has 3 apples"]


def test_output_scale_embedding_rms_works_in_the_llm_embedding_units(tmp_path):
    from lingualift.model.modeling import LinguaLiftModel

    def build(**alignment_kwargs):
        return LinguaLiftModel.from_components("tiny-bert", "tiny-llama", "mlp", seed=0,
                                               alignment_kwargs=alignment_kwargs)

    model, unscaled = build(output_scale="embedding_rms"), build()
    weight = model.llm.get_input_embeddings().weight.detach()
    scale = model.config.alignment_kwargs["output_scale"]
    assert scale == pytest.approx(float(weight.pow(2).mean().sqrt()), rel=1e-5)  # resolved to a number, saved
    states = torch.randn(3, model.encoder.config.hidden_size)
    with torch.no_grad():
        assert torch.allclose(model.alignment.map_states(states), unscaled.alignment.map_states(states) * scale)
    model.save_pretrained(tmp_path / "ckpt")
    reloaded = LinguaLiftModel.from_pretrained(tmp_path / "ckpt")
    assert reloaded.alignment.output_scale == scale
    with pytest.raises(LinguaLiftError, match="output_scale must be a positive number"):
        build(output_scale="large")
