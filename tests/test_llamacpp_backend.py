"""The llama.cpp backend gives the HF backend's outputs (f32 GGUF, greedy) on tiny models, through the same
`Generator` interface and evaluation runner.

These tests need llama-cpp-python built for this CPU and the llama.cpp converter next to it:
    bash scripts/llamacpp_env.sh    (builds or reuses it; .ci/run does, so under CI a missing binding fails)
Without it only the tests that start no engine run. Each test converts tiny random models (sharpened so their
greedy output depends on the prompt) to GGUF in a temporary cache.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require
from helpers import QUESTIONS, bridge_checkpoint, check_stops_and_near_greedy_sampling, save_tiny_llm as save_llm

from lingualift.cli import main
from lingualift.errors import LinguaLiftError
from lingualift.inference import BACKENDS, check_backend, load_generator


@pytest.fixture
def llamacpp_installed():
    """llama-cpp-python built for this CPU: skipped when missing locally, a failure under CI (.ci/run builds it)."""
    require(importlib.util.find_spec("llama_cpp"), "llama-cpp-python", "bash scripts/llamacpp_env.sh")


needs_llamacpp = pytest.mark.usefixtures("llamacpp_installed")
NEW_TOKENS = 12




@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Converted GGUF files go to a temporary cache (the converter's source is found through the build stamp)."""
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path_factory.mktemp("cache")))


# ---------------------------------------------------------------------------------------------- no engine
def test_backend_is_listed_and_checked_cheaply(monkeypatch):
    assert "llamacpp" in BACKENDS
    with pytest.raises(LinguaLiftError, match="choose from hf, vllm, llamacpp"):
        check_backend("tgi")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(LinguaLiftError, match="scripts/llamacpp_env.sh") as error:
        check_backend("llamacpp")
    assert "\n" not in str(error.value)


def test_a_build_for_another_cpu_is_refused(tmp_path, monkeypatch):
    """scripts/llamacpp_env.sh stamps the CPU flags it built for; another CPU kind must rebuild, not crash."""
    from lingualift.inference import base

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    (tmp_path / base.LLAMACPP_BUILD_STAMP).write_text("0123456789abcdef\n fpu sse2 avx512f amx_tile \n")
    monkeypatch.setattr(base, "cpu_flags", lambda: {"fpu", "sse2", "avx2"})
    with pytest.raises(LinguaLiftError, match="built for another CPU"):
        check_backend("llamacpp")
    monkeypatch.setattr(base, "cpu_flags", lambda: {"fpu", "sse2", "avx512f", "amx_tile"})
    check_backend("llamacpp")


def test_precision_is_checked_before_anything_loads(capsys):
    from lingualift.inference.llamacpp_engine import check_precision

    with pytest.raises(LinguaLiftError, match="unknown llama.cpp precision 'q4_0'; choose from f32, f16, q8_0"):
        check_precision("q4_0")
    assert main(["eval", "--model", "tiny-llama", "--precision", "f32", "--tasks", "mgsm", "--langs", "en",
                 "--offline", "--data-dir", "."]) == 2
    assert "--precision only applies to --backend llamacpp" in capsys.readouterr().err


def test_sampling_follows_hf_processors():
    """Repetition penalty, temperature, top-k and top-p as HF applies them; top_p ~ 0 keeps the best token."""
    from lingualift.inference.llamacpp_engine import _choose_tokens

    logits = np.array([[1.0, 3.0, 2.0, -1.0], [0.5, -2.0, 0.0, 4.0]], dtype=np.float32)
    plain = {"top_k": 50, "repetition_penalty": 1.0, "min_p": 0.0}
    rng = np.random.default_rng(0)
    assert _choose_tokens(logits.copy(), [[], []], do_sample=False, temperature=1, top_p=1, defaults=plain,
                          rng=rng).tolist() == [1, 3]
    assert _choose_tokens(logits.copy(), [[], []], do_sample=True, temperature=0.7, top_p=1e-9, defaults=plain,
                          rng=rng).tolist() == [1, 3]
    top1 = dict(plain, top_k=1)
    assert _choose_tokens(logits.copy(), [[], []], do_sample=True, temperature=5, top_p=1, defaults=top1,
                          rng=rng).tolist() == [1, 3]
    penalised = dict(plain, repetition_penalty=4.0)  # 3.0 / 4 < 2.0: the seen token loses its lead
    assert _choose_tokens(logits.copy(), [[1], []], do_sample=False, temperature=1, top_p=1, defaults=penalised,
                          rng=rng).tolist() == [2, 3]


def stage1_checkpoint(path, llm, seed: int):
    """A stage-1 LinguaLIFT checkpoint that refers to `llm` (its own alignment layer from `seed`)."""
    from lingualift.model.modeling import LinguaLiftModel

    model = LinguaLiftModel.from_components("tiny-bert", str(llm), "mlp", seed=seed, prompt_template="plain")
    model.save_pretrained(path, include_frozen=False)
    return path


def test_gguf_is_keyed_by_the_llm_and_adapter_it_is_made_from(tmp_path):
    """Stage-1 checkpoints of one LLM share its GGUF; an LLM (or a LoRA checkpoint's base) changed in place gets a
    new one; the precision is part of the key."""
    from lingualift.inference.llamacpp_engine import cached_gguf

    llm = save_llm(tmp_path / "llm")
    first, second = stage1_checkpoint(tmp_path / "a", llm, seed=0), stage1_checkpoint(tmp_path / "b", llm, seed=1)
    shared = cached_gguf(first, "f16")
    assert cached_gguf(second, "f16") == shared != cached_gguf(first, "f32")
    save_llm(llm, seed=7)  # the same folder, other weights
    assert cached_gguf(first, "f16") == cached_gguf(second, "f16") != shared

    lora = bridge_checkpoint(tmp_path / "stage2", lora=True)
    merged = cached_gguf(lora, "f16")
    assert merged != cached_gguf(tmp_path / "stage2-base-llm", "f16")  # the adapter is part of it
    save_llm(tmp_path / "stage2-base-llm", seed=7)
    assert cached_gguf(lora, "f16") != merged


def test_a_killed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    """The converter writes into a staging folder: a failed conversion leaves none, and the staging folder of a
    conversion whose process died is removed by the next conversion of that model."""
    import subprocess

    from lingualift.inference import llamacpp_engine

    def converter(command, **options):
        outfile = Path(command[command.index("--outfile") + 1])
        if "broken" in command[command.index("--outfile") - 1]:
            outfile.write_bytes(b"half")
            return subprocess.CompletedProcess(command, 1, "", "ValueError: no such tensor\n")
        outfile.write_bytes(b"GGUF")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(llamacpp_engine, "converter_source", lambda: tmp_path)
    monkeypatch.setattr(llamacpp_engine.subprocess, "run", converter)
    target = tmp_path / "gguf" / "llm-0123-f16" / llamacpp_engine.GGUF_FILE
    with pytest.raises(LinguaLiftError, match=r"converter cannot take this model \(ValueError: no such tensor\)"):
        llamacpp_engine.convert_to_gguf(tmp_path / "broken", target, "f16", "broken")
    assert not target.parent.parent.exists() or list(target.parent.parent.iterdir()) == []
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = target.parent.with_name(f".{target.parent.name}.staging-{dead.pid}-x1y2")
    stale.mkdir(parents=True)
    (stale / llamacpp_engine.GGUF_FILE).write_bytes(b"partial")
    assert llamacpp_engine.convert_to_gguf(tmp_path / "llm", target, "f16", "llm") == target
    assert target.read_bytes() == b"GGUF" and [p.name for p in target.parent.parent.iterdir()] == [target.parent.name]


# ---------------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = save_llm(tmp_path_factory.mktemp("plain") / "llm")
    return path, load_generator(str(path), backend="hf", device="cpu", dtype="fp32")


@needs_llamacpp
def test_plain_llm_greedy_outputs_match_hf(plain):
    path, hf = plain
    fast = load_generator(str(path), backend="llamacpp", precision="f32")
    assert (fast.backend, fast.dtype, fast.name) == ("llamacpp", "f32", hf.name)
    assert fast.rendered_prompt("{question}") == hf.rendered_prompt("{question}")
    expected = hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)
    assert len(set(expected)) > 1  # the outputs depend on the prompt, so equality means something
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == expected
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=len(QUESTIONS)) == expected


@needs_llamacpp
def test_plain_llm_by_hub_id_is_converted_from_its_snapshot(plain, tmp_path, monkeypatch):
    """A hub id of a plain LLM (here in an offline HF cache) is converted from its cached snapshot folder."""
    import shutil

    import huggingface_hub

    path, hf = plain
    repo_id, commit = "someone/tiny-llm", "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fast = load_generator(repo_id, backend="llamacpp", precision="f32")
    assert fast.gguf_path.is_file() and fast.name == "tiny-llm"
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == hf.generate(
        QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)


@needs_llamacpp
def test_embeddings_path_equals_token_path(plain):
    """The prompt's own token embeddings fed through `llama_batch.embd` decode exactly as its token ids."""
    path, hf = plain
    fast = load_generator(str(path), backend="llamacpp", precision="f32")
    ids = fast.prompt_token_ids(QUESTIONS)
    table = hf.model.get_input_embeddings().weight.detach()
    rows = [table[torch.tensor(prompt)].float() for prompt in ids]
    options = dict(max_new_tokens=NEW_TOKENS, stop=None, do_sample=False, temperature=1.0, top_p=1.0)
    by_tokens = fast._decode(ids, **options)
    assert len({tuple(row) for row in by_tokens}) > 1
    assert fast._decode(rows, **options) == by_tokens


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    path = bridge_checkpoint(tmp_path_factory.mktemp("bridge") / "ckpt")
    return path, load_generator(str(path), backend="hf", device="cpu", dtype="fp32")


@needs_llamacpp
def test_bridge_greedy_outputs_and_stop_strings_match_hf(bridge):
    path, hf = bridge
    fast = load_generator(str(path), backend="llamacpp", precision="f32")
    assert fast.bridge and fast.prompt_template == hf.prompt_template
    free = check_stops_and_near_greedy_sampling(hf, fast, QUESTIONS, NEW_TOKENS)
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == free
    assert torch.equal(fast.prompt_embeddings(QUESTIONS[:3], batch_size=3),
                       hf.prompt_embeddings(QUESTIONS[:3], batch_size=3))
    targets = ["7", "84", "180"]
    assert ([s.nll for s in fast.target_nll(QUESTIONS[:3], targets)]
            == pytest.approx([s.nll for s in hf.target_nll(QUESTIONS[:3], targets)]))


@needs_llamacpp
def test_lora_checkpoint_is_merged_converted_once_and_matches_hf(tmp_path, monkeypatch):
    from lingualift.inference import llamacpp_engine

    path = bridge_checkpoint(tmp_path / "stage2", lora=True)
    hf = load_generator(str(path), backend="hf", device="cpu", dtype="fp32")
    fast = load_generator(str(path), backend="llamacpp", precision="f32")
    expected = hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == expected
    calls = []
    monkeypatch.setattr(llamacpp_engine, "convert_to_gguf", lambda *args: calls.append(args))
    again = load_generator(str(path), backend="llamacpp", precision="f32")  # cached by the fingerprint
    assert calls == [] and again.gguf_path == fast.gguf_path


@needs_llamacpp
def test_precision_and_backend_are_part_of_the_run_identity(plain):
    from lingualift.eval.runner import GenerationSettings, run_identity

    path, hf = plain
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    identities = [run_identity(generator, settings, str(path)) for generator in
                  (hf, load_generator(str(path), backend="llamacpp", precision="f32"),
                   load_generator(str(path), backend="llamacpp", precision="q8_0"))]
    generations = [identity["generation"] for identity in identities]
    assert [(g["backend"], g["dtype"]) for g in generations] == [("hf", "float32"), ("llamacpp", "f32"),
                                                                 ("llamacpp", "q8_0")]
    assert len({str(identity) for identity in identities}) == 3


@needs_llamacpp
def test_an_unconvertible_model_is_one_error_line(tmp_path):
    import json

    path = save_llm(tmp_path / "odd")
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["NoSuchArchitectureForCausalLM"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LinguaLiftError, match="converter cannot take this model") as error:
        load_generator(str(path), backend="llamacpp", precision="f32")
    assert "\n" not in str(error.value)
