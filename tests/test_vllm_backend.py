"""The vLLM backend gives the HF backend's outputs (fp32, greedy) on tiny models, through the same `Generator`
interface, evaluation runner and records.

These tests need vLLM, which lives in its own environment (scripts/vllm_env.sh):
    $LINGUALIFT_VLLM_VENV/bin/python -m pytest tests/test_vllm_backend.py
Elsewhere only the tests that do not start an engine run.

vLLM's CPU attention supports head sizes 32..512; the tiny presets have head size 16, so the engine tests
use the same tiny shapes with 2 heads of 32 (`vllm_tiny_llm`).
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from helpers import QUESTIONS, check_stops_and_near_greedy_sampling, save_tiny_llm, tiny_causal_lm
from helpers import bridge_checkpoint as tiny_bridge_checkpoint

from lingualift.cli import main
from lingualift.errors import LinguaLiftError
from lingualift.inference.generators import load_generator

try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except ImportError:
    HAVE_VLLM = False

needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM, reason="vLLM is not importable here; run `bash scripts/vllm_env.sh` and "
    "$LINGUALIFT_VLLM_VENV/bin/python -m pytest tests/test_vllm_backend.py")
# No torch.compile, engine and worker inside the test process (no spawned processes re-importing torch and
# vLLM): an engine starts in seconds.
ENGINE = {"engine_kwargs": {"enforce_eager": True, "distributed_executor_backend": "uni"}}
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
NEW_TOKENS = 12


VLLM_HEAD_DIM = 32  # a head size vLLM's CPU kernels take


def vllm_tiny_llm(kind: str = "llama"):
    return tiny_causal_lm(kind, head_dim=VLLM_HEAD_DIM)


def save_llm(path, kind: str = "llama"):
    return save_tiny_llm(path, kind, head_dim=VLLM_HEAD_DIM)


def bridge_checkpoint(path, lora: bool = False):
    return tiny_bridge_checkpoint(path, lora=lora, head_dim=VLLM_HEAD_DIM)


def both(spec, **vllm_options):
    hf = load_generator(str(spec), backend="hf", device="cpu", dtype="fp32")
    fast = load_generator(str(spec), backend="vllm", dtype="fp32", **ENGINE, **vllm_options)
    return hf, fast


# ---------------------------------------------------------------------------------------------- no engine
def test_missing_vllm_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(LinguaLiftError, match="scripts/vllm_env.sh"):
        load_generator("tiny-llama", backend="vllm")
    assert main(["eval", "--model", "tiny-llama", "--backend", "vllm", "--tasks", "mgsm", "--langs", "en",
                 "--offline", "--data-dir", "."]) == 2
    error = capsys.readouterr().err.strip()
    assert "vllm_env.sh" in error and "\n" not in error


def test_unknown_backend_and_misplaced_options_are_user_errors():
    with pytest.raises(LinguaLiftError, match="unknown backend"):
        load_generator("tiny-llama", backend="tgi")
    with pytest.raises(LinguaLiftError, match="do not apply to the hf backend"):
        load_generator("tiny-llama", backend="hf", tensor_parallel_size=2)


def test_default_precision_is_the_checkpoints_own_as_in_hf(tmp_path):
    """Unset, vLLM runs in the checkpoint's dtype, as the HF path loads it: vLLM's own `auto` would run an fp32
    checkpoint in bf16 on CPU (other answers; an emulated, far slower matmul on CPUs without bf16)."""
    from transformers import AutoConfig

    from lingualift.inference.vllm_engine import _vllm_dtype

    fp32 = save_llm(tmp_path / "fp32")
    model, tokenizer = vllm_tiny_llm()
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    configs = {path: AutoConfig.from_pretrained(path) for path in (fp32, tmp_path / "bf16")}
    for path, dtype in ((fp32, "float32"), (tmp_path / "bf16", "bfloat16")):
        assert _vllm_dtype(None, configs[path]) == dtype == load_generator(str(path), backend="hf", device="cpu").dtype
    assert _vllm_dtype("bf16", configs[fp32]) == "bfloat16"
    assert _vllm_dtype("fp32", configs[tmp_path / "bf16"]) == "float32"


# ---------------------------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    path = bridge_checkpoint(tmp_path_factory.mktemp("bridge") / "ckpt")
    hf, fast = both(path)
    yield path, hf, fast
    fast.close()


@needs_vllm
def test_bridge_greedy_outputs_match_hf(bridge):
    _, hf, fast = bridge
    assert fast.backend == "vllm" and hf.backend == "hf" and fast.name == hf.name
    assert fast.prompt_template == hf.prompt_template
    expected = hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)
    assert len(set(expected)) > 1  # the outputs depend on the prompt, so equality means something
    assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == expected


@needs_vllm
def test_bridge_prompts_are_the_models_packed_rows(bridge):
    _, hf, fast = bridge
    inputs = fast.prompts(QUESTIONS[:3], batch_size=3)
    batch = hf.prepare_batch(QUESTIONS[:3], left_pad=True)
    with torch.inference_mode():
        packed = hf.model.pack(**batch.model_inputs(), left_pad=True)
    for row, item in enumerate(inputs):
        mask = packed.attention_mask[row].bool()
        assert torch.equal(item["prompt_embeds"], packed.inputs_embeds[row][mask])
    assert torch.equal(fast.prompt_embeddings(QUESTIONS[:3], batch_size=3), hf.prompt_embeddings(QUESTIONS[:3],
                                                                                                   batch_size=3))


@needs_vllm
def test_stop_strings_and_near_greedy_sampling_match_hf(bridge):
    _, hf, fast = bridge
    free = check_stops_and_near_greedy_sampling(hf, fast, QUESTIONS, NEW_TOKENS)
    assert hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=0.7, top_p=1e-9,
                       batch_size=4) == free  # HF's own sampling path keeps the one token too


@needs_vllm
def test_scoring_falls_back_to_hf(bridge):
    _, hf, fast = bridge
    targets = ["7", "84", "180"]
    scored, expected = fast.target_nll(QUESTIONS[:3], targets), hf.target_nll(QUESTIONS[:3], targets)
    assert [(s.tokens, s.greedy) for s in scored] == [(s.tokens, s.greedy) for s in expected]
    assert [s.nll for s in scored] == pytest.approx([s.nll for s in expected])


@needs_vllm
def test_evaluation_records_match_and_backends_never_mix(bridge, tmp_path, monkeypatch):
    from lingualift.eval.runner import evaluate
    from lingualift.eval.tasks import parse_task_langs

    _, hf, fast = bridge
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data" / "mgsm"
    data.mkdir(parents=True)
    rows = [f"{question}\t{index}" for index, question in enumerate(QUESTIONS)]
    (data / "mgsm_en.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plan = parse_task_langs("mgsm", "en")
    from lingualift.eval.runner import GenerationSettings

    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    runs = {}
    for generator in (hf, fast):
        out = tmp_path / generator.backend
        evaluate(generator, plan, out, data_dir=tmp_path / "data", batch_size=4, settings=settings, progress=False)
        runs[generator.backend] = out
        assert json.loads((out / "run.json").read_text())["generation"]["backend"] == generator.backend
    assert ((runs["hf"] / "predictions/mgsm/en.jsonl").read_bytes()
            == (runs["vllm"] / "predictions/mgsm/en.jsonl").read_bytes())
    with pytest.raises(LinguaLiftError, match="generation"):
        evaluate(hf, plan, runs["vllm"], data_dir=tmp_path / "data", batch_size=4, settings=settings, progress=False)


@needs_vllm
@pytest.mark.parametrize("mode", ["merge", "request"])
def test_lora_checkpoint_matches_hf(tmp_path, mode):
    path = bridge_checkpoint(tmp_path / "lora", lora=True)
    assert (path / "llm_adapter").is_dir()
    hf, fast = both(path, lora=mode)
    try:
        expected = hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)
        assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == expected
        assert (fast.lora_request is not None) == (mode == "request")
    finally:
        fast.close()


@needs_vllm
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_plain_llm_token_prompts_match_hf(tmp_path, kind):
    path = save_llm(tmp_path / f"tiny-{kind}", kind)
    (path / "lingualift.json").write_text(json.dumps({"prompt_template": "plain", "llm_suffix": " A:"}))
    hf = load_generator(str(path), backend="hf", device="cpu")
    fast = load_generator(str(path), backend="vllm", **ENGINE)  # the default precision: the checkpoint's (fp32)
    try:
        assert fast.dtype == hf.dtype == "float32"
        assert fast.prompts(QUESTIONS[:1])[0]["prompt_token_ids"] == hf.collator.prompt_ids(
            hf.examples(QUESTIONS[:1])[0].prompt)
        expected = hf.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4)
        assert len(set(expected)) > 1
        assert fast.generate(QUESTIONS, max_new_tokens=NEW_TOKENS, batch_size=4) == expected
    finally:
        fast.close()


@needs_vllm
def test_tiny_presets_are_refused_with_one_line_on_cpu():
    """The tiny presets' head size (16) is below what vLLM's CPU attention supports: refused before the engine
    starts, with a one-line error (documented in docs/performance.md)."""
    if torch.cuda.is_available():
        pytest.skip("GPU attention backends take head size 16")
    with pytest.raises(LinguaLiftError, match="head size 16"):
        load_generator("tiny-llama", backend="vllm", **ENGINE)


@needs_vllm
def test_bench_compares_backends_on_the_same_items(tmp_path):
    from lingualift.tools import bench

    path = bridge_checkpoint(tmp_path / "ckpt")
    settings = bench.BenchSettings(device="cpu", backends=("hf", "vllm"), dtypes=("fp32",), model=str(path),
                                   items=4, new_tokens=6, eval_repeats=1, vllm_eager=True)
    rows = bench.run_bench(settings, tmp_path / "out", train=False)["backends"]["rows"]
    assert [row["backend"] for row in rows] == ["hf", "vllm"]
    assert rows[1]["same_as_reference"] == 4 and rows[1]["first_difference"] == [None] * 4
    assert rows[1]["tokens_per_s"] > 0 and rows[1]["memory_mb"] > 0
