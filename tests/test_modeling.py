"""The composite model: batch-independence, generation, save/load, alignment registry."""

from __future__ import annotations

import pytest
import torch

from helpers import QUESTIONS, tiny_model
from lingualift.model.alignment import ALIGNMENT_LAYERS, build_alignment
from lingualift.data.collate import BridgeCollator
from lingualift.data.instructions import PromptTarget
from lingualift.errors import LinguaLiftError
from lingualift.inference.generators import BridgeGenerator, load_generator
from lingualift.model.modeling import LinguaLiftModel, pack_segments

VARIANTS = [(alignment, sees) for alignment in ("linear", "mlp") for sees in (False, True)]
TARGETS = ["7", "eighty-four", "180 km", "8", "11", "sixteen legs"]


def _per_example_loss(output) -> torch.Tensor:
    logits, labels = output.logits[:, :-1], output.labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return nll.sum(1) / (labels != -100).sum(1)


@pytest.mark.parametrize("alignment,llm_sees_query", VARIANTS)
def test_loss_and_logits_do_not_depend_on_the_batch(alignment, llm_sees_query):
    model = tiny_model(alignment, llm_sees_query)
    collator = BridgeCollator.for_model(model)
    examples = [PromptTarget(q, t) for q, t in zip(QUESTIONS, TARGETS)]
    with torch.no_grad():
        batched = model(**collator(examples).model_inputs())
        batched_losses = _per_example_loss(batched)
        for row, example in enumerate(examples):
            alone = model(**collator([example]).model_inputs())
            valid = alone.labels.shape[1]
            assert torch.allclose(_per_example_loss(alone)[0], batched_losses[row], atol=1e-5)
            # right padding: the example's positions are the first `valid` ones in the batch
            assert torch.allclose(alone.logits[0], batched.logits[row, :valid], atol=1e-5)
            assert torch.equal(alone.labels[0], batched.labels[row, :valid])


@pytest.mark.parametrize("alignment,llm_sees_query", VARIANTS)
def test_generation_does_not_depend_on_the_batch(alignment, llm_sees_query):
    generator = BridgeGenerator(tiny_model(alignment, llm_sees_query))
    batched = generator.generate(QUESTIONS, max_new_tokens=8, batch_size=len(QUESTIONS))
    alone = [generator.generate([q], max_new_tokens=8, batch_size=1)[0] for q in QUESTIONS]
    assert batched == alone
    assert len(set(batched)) > 1, "outputs should depend on the question"


def test_soft_prompt_positions_and_labels():
    model = tiny_model("mlp")
    batch = BridgeCollator.for_model(model)([PromptTarget("ab", "xyz"), PromptTarget("abcdef", "x")])
    packed = model.pack(**batch.model_inputs())
    encoder_lengths = batch.encoder_attention_mask.sum(1)
    # mlp: begin + every valid encoder state + end
    assert packed.soft_mask.sum(1).tolist() == (encoder_lengths + 2).tolist()
    assert (packed.labels != -100).sum(1).tolist() == batch.target_mask.sum(1).tolist()
    for row in range(2):  # contiguous valid positions, positions 0..n-1
        n = int(packed.attention_mask[row].sum())
        assert packed.attention_mask[row, :n].all() and not packed.attention_mask[row, n:].any()
        assert packed.position_ids[row, :n].tolist() == list(range(n))


def test_pack_segments_left_padding():
    embeds = torch.arange(2 * 3, dtype=torch.float).view(2, 3, 1)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1]])
    packed, attention, positions, _ = pack_segments([(embeds, mask)], left_pad=True)
    assert packed[:, :, 0].tolist() == [[0.0, 0.0, 2.0], [3.0, 4.0, 5.0]]
    assert attention.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert positions.tolist() == [[0, 0, 1], [0, 1, 2]]


@pytest.mark.parametrize("encoder,llm", [("tiny-t5", "tiny-llama"), ("tiny-qwen2", "tiny-qwen2"),
                                         ("tiny-bert", "tiny-qwen2")])
def test_any_encoder_and_llm_family(encoder, llm):
    model = tiny_model("mlp", encoder=encoder, llm=llm)
    batch = BridgeCollator.for_model(model)([PromptTarget(q, "1") for q in QUESTIONS[:2]])
    output = model(**batch.model_inputs())
    assert torch.isfinite(output.loss)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model("mlp", llm_sees_query=True)
    batch = BridgeCollator.for_model(model)([PromptTarget(q, t) for q, t in zip(QUESTIONS, TARGETS)])
    model.save_pretrained(tmp_path / "full")
    loaded = LinguaLiftModel.from_pretrained(tmp_path / "full")
    with torch.no_grad():
        assert torch.equal(model(**batch.model_inputs()).logits, loaded(**batch.model_inputs()).logits)
    assert loaded.config.llm_sees_query and loaded.config.prompt_template == "plain"
    assert (tmp_path / "full" / "encoder").is_dir() and (tmp_path / "full" / "llm").is_dir()


def test_alignment_only_checkpoint_is_small_and_refers_to_frozen_parts(tmp_path):
    model = LinguaLiftModel.from_components("tiny-bert", "tiny-llama", "mlp", seed=0)
    model.save_pretrained(tmp_path / "stage1", include_frozen=False)
    files = {p.name for p in (tmp_path / "stage1").iterdir()}
    assert "encoder" not in files and "llm" not in files
    weights = (tmp_path / "stage1" / "alignment.safetensors").stat().st_size
    assert weights < 0.25 * sum(p.numel() * 4 for p in model.parameters())
    loaded = LinguaLiftModel.from_pretrained(tmp_path / "stage1")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_generator_loads_checkpoints_and_plain_llms(tmp_path):
    tiny_model("linear").save_pretrained(tmp_path / "ckpt")
    bridge = load_generator(str(tmp_path / "ckpt"))
    plain = load_generator("tiny-llama", prompt_template="plain")
    for generator in (bridge, plain):
        assert len(generator.generate(QUESTIONS[:3], max_new_tokens=3)) == 3
        assert generator.prompt_embeddings(QUESTIONS[:3]).shape[0] == 3
        (nll, count, _), = generator.target_nll([None], ["12"])
        assert nll > 0 and count >= 2
        (continuation_nll, continuation_count, _), = generator.target_nll([None], ["12"], end_of_sequence=False)
        assert continuation_count == count - 1 and 0 < continuation_nll < nll  # the eos term left out
    # A greedy answer, scored after its question, is greedy token by token (lm-eval's is_greedy). The plain
    # tiny LLM's answers survive decoding and re-encoding; the bridge's start with special tokens, which do not.
    answers = plain.generate(QUESTIONS[:2], max_new_tokens=4)
    scores = plain.target_nll(QUESTIONS[:2] * 2, answers + ["12 eggs"] * 2, end_of_sequence=False)
    assert [score.greedy for score in scores] == [True, True, False, False]


def test_stop_strings_are_trimmed():
    from lingualift.inference.generators import trim_at_stop

    assert trim_at_stop("The answer is 7.\n\n### Instruction: next", ["\n\n### Instruction"]) == "The answer is 7."
    assert trim_at_stop("no stop here", ["###"]) == "no stop here"


def test_alignment_registry_and_errors():
    assert {"linear", "mlp"} <= set(ALIGNMENT_LAYERS)
    layer = build_alignment("mlp", 8, 16)
    embeds, mask = layer(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.long))
    assert embeds.shape == (2, 7, 16) and mask.shape == (2, 7)
    with pytest.raises(LinguaLiftError, match="unknown alignment"):
        build_alignment("qformer", 8, 16)


def test_unresolvable_model_spec_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LinguaLiftError, match="not a preset"):
        LinguaLiftModel.from_components("no-such/encoder", "tiny-llama")


def test_an_asset_preset_is_fingerprinted_by_its_folder_a_tiny_one_by_its_name(tmp_path, monkeypatch):
    """A rebuilt asset is new content (word-vector caches, pipeline stages and eval runs keyed on it go stale);
    a tiny random preset is built from a config in code, so its name identifies it."""
    from lingualift.checkpoint import path_fingerprint
    from lingualift.model import components
    from lingualift.tools import assets

    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    encoder = components.model_location("default", components.ENCODER)
    assert encoder == assets.asset_path(assets.ENCODER) and not (tmp_path / "cache").exists()  # nothing built
    assert components.model_location("default", components.LLM) == assets.asset_path(assets.LLM)
    assert components.model_location("tiny-llama", components.LLM) == "tiny-llama"
    assert components.model_location(str(tmp_path), components.LLM) == str(tmp_path)
    encoder.mkdir(parents=True)
    (encoder / "model.safetensors").write_bytes(b"first build")
    first = path_fingerprint(components.model_location("default", components.ENCODER))
    (encoder / "model.safetensors").write_bytes(b"rebuilt")
    assert path_fingerprint(components.model_location("default", components.ENCODER)) != first


def test_preset_registry():
    """Tiny presets are registered by `components`, asset-backed ones by `tools.assets` (on the first lookup,
    never when `components` is imported); bench-style temporary presets vanish after their block."""
    import subprocess
    import sys

    from lingualift.model import components
    from lingualift.tools import assets

    code = ("import sys; from lingualift.model import components; before = 'lingualift.tools.assets' in sys.modules; "
            "names = list(components.presets()); print(before, 'default' in names, 'tiny-llama' in names)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["False", "True", "True"]
    registered = components.presets()
    assert registered["default"] == {components.ENCODER: assets.AssetBuilder(assets.ENCODER),
                                     components.LLM: assets.AssetBuilder(assets.LLM)}
    with pytest.raises(LinguaLiftError, match="preset 'tiny-bert' has no llm"):
        components.load_component("tiny-bert", components.LLM)
    with pytest.raises(ValueError, match="roles"):
        components.register_preset("bad", decoder=lambda: None)

    def build():
        return components.load_component("tiny-llama", components.LLM)

    with components.temporary_presets(**{"test-llm": {components.LLM: build}}):
        model, _ = components.load_component("test-llm", components.LLM)
        assert model.name_or_path == "tiny-llama" and components.is_preset("test-llm")
        with pytest.raises(ValueError, match="replace registered"):
            with components.temporary_presets(**{"tiny-llama": {components.LLM: build}}):
                pass
    assert not components.is_preset("test-llm") and components.is_preset("tiny-llama")
