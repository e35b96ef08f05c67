"""`lingualift bench`: behaviour only (what is measured and written), never timings."""

from __future__ import annotations

import json

import pytest

from lingualift import cli
from lingualift.tools import bench
from lingualift.errors import LinguaLiftError

TINY = dict(encoder="tiny-bert", llm="tiny-llama", device="cpu", batch_size=2, encoder_length=8, target_length=6,
            repeats=2, eval_batch_sizes=(1, 2), new_tokens=3, eval_repeats=1)


def test_bench_measures_every_stage_and_batch_size(tmp_path):
    report = bench.run_bench(bench.BenchSettings(**TINY), tmp_path)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert [row["stage"] for row in written["training"]] == list(bench.STAGES)
    for row in written["training"]:
        assert row["step_s"] > 0 and row["bare_s"] > 0 and row["tokens_per_s"] > 0 and row["peak_memory_mb"] > 0
        assert row["model_flops"] > 0 and row["achieved"] > 0 and row["mfu"] is None  # no GPU: no nominal peak
        assert len(row["step_times"]) == len(row["bare_times"]) == TINY["repeats"]
    by_stage = {row["stage"]: row for row in report["training"]}
    assert by_stage["langbridge"]["trainable_params"] < by_stage["align"]["trainable_params"]  # linear vs MLP
    assert by_stage["task-lora"]["trainable_params"] < by_stage["task-full"]["trainable_params"]
    assert by_stage["align"]["llm_tokens"] == 2 * (1 + 8 + 2 + 6)  # bos, encoder states + begin/end, target
    assert by_stage["langbridge"]["llm_tokens"] == 2 * (1 + 8 + 1 + 6)  # LangBridge: end vector only
    assert [row["batch_size"] for row in written["generation"]] == [1, 2]
    assert written["generation"][0]["speedup_vs_first"] == 1.0
    table = (tmp_path / "bench.md").read_text()
    assert "| task-lora |" in table and "| 2 |" in table and written["machine"]["cpu_count"] >= 1


def test_step_flops_count_backward_only_where_gradients_flow():
    from lingualift.model.modeling import LinguaLiftModel
    from lingualift.train.stages import apply_freeze_policy

    model = LinguaLiftModel.from_components("tiny-bert", "tiny-llama", "mlp", seed=0)
    flops = {}
    for trainable in (("alignment",), ("llm",), ()):
        apply_freeze_policy(model.parameter_groups(), trainable)
        flops[trainable] = bench.step_flops(model.encoder, model.alignment, model.llm, 2, 8, 12)
    assert flops[()] < flops[("alignment",)] < flops[("llm",)]


def test_paper_shapes_refuse_cpu_with_one_line(capsys):
    assert cli.main(["bench", "--paper-shapes", "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --paper-shapes needs a GPU") and "\n" not in error
    with pytest.raises(LinguaLiftError, match="--layers"):
        bench.check_paper_shapes_device("cpu", True, True, None)


def test_paper_shapes_are_the_papers_models():
    counts = bench.count_paper_params()  # meta device: no memory
    assert 6.7e9 < counts["llm"] < 6.8e9  # Llama-2-7B
    assert 1.6e9 < counts["encoder"] < 1.8e9  # mT5-xl encoder (embedding 250112 x 2048 included)


def test_paper_shapes_code_path_runs_on_cpu_with_few_layers(tmp_path):
    settings = bench.BenchSettings(device="cpu", paper_shapes=True, layers=1, width_divisor=64, precision="bf16",
                                   gradient_checkpointing=True, stages=("align", "task-lora", "sft"), batch_size=1,
                                   encoder_length=6, target_length=4, repeats=1, eval_batch_sizes=(1, 2),
                                   new_tokens=2, eval_repeats=1)
    report = bench.run_bench(settings, tmp_path)
    assert [row["stage"] for row in report["training"]] == ["align", "task-lora", "sft"]
    assert all(row["tokens_per_s"] > 0 for row in report["training"])
    assert report["generation"][1]["peak_memory_mb"] > 0
    assert "paper-" not in " ".join(bench.components.presets())  # the temporary presets are gone


def test_backend_comparison_reports_every_backend_and_dtype(tmp_path):
    """HF only (vLLM has its own environment; tests/test_vllm_backend.py runs hf against vllm)."""
    settings = bench.BenchSettings(**{**TINY, "eval_repeats": 2}, backends=("hf",), dtypes=("fp32", "bf16"), items=3)
    report = bench.run_bench(settings, tmp_path, train=False)
    section = json.loads((tmp_path / "bench.json").read_text())["backends"]
    assert [(row["backend"], row["dtype"]) for row in section["rows"]] == [("hf", "fp32"), ("hf", "bf16")]
    assert section["items"] == 3 and section["reference"] == "hf fp32"
    first, second = section["rows"]
    assert first["same_as_reference"] == first["same_as_hf_same_dtype"] == 3 and first["speedup"] == 1.0
    assert second["same_as_hf_same_dtype"] == 3 and len(second["times"]) == 2 and second["load_s"] > 0
    assert report["generation"] == []  # the comparison replaces the batch-size table
    assert "| hf | bf16 |" in (tmp_path / "bench.md").read_text()


def test_llamacpp_rows_load_on_the_cpu_beside_gpu_rows():
    """`--device cuda` is for the torch backends: llama.cpp gets no device (it would refuse one) and a precision."""
    settings = bench.BenchSettings(**{**TINY, "device": "cuda"}, backends=("hf", "llamacpp"))
    assert bench.backend_load_arguments(settings, "llamacpp", "q8_0") == {
        "backend": "llamacpp", "device": None, "dtype": None, "precision": "q8_0"}
    assert bench.backend_load_arguments(settings, "hf", "bf16") == {"backend": "hf", "device": "cuda", "dtype": "bf16"}
