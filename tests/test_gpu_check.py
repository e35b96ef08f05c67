"""scripts/gpu_check.py (issue 15): the sub-checks run on tiny shapes and the summary names every one.

Behaviour only, never timings: the CPU dry-run settings, in process (no subprocess imports), without the
FSDP launches (covered by the script's own dry run, `bash scripts/gpu_check.sh DIR --cpu-dry-run`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their annotations through the module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def test_sub_checks_run_on_tiny_shapes_and_the_summary_lists_every_check(gpu_check, tmp_path):
    from lingualift.tools import bench

    original = bench.paper_configs, bench.matmul_rate
    settings = gpu_check.Settings.cpu_dry_run()
    for name in ("stage2-lora", "invariance"):
        assert gpu_check.child(name, tmp_path, settings, deadline=time.time() + 600, watchdog=False) == 0
    results = {name: json.loads((tmp_path / "checks" / f"{name}.json").read_text())
               for name in ("stage2-lora", "invariance")}
    assert (bench.paper_configs, bench.matmul_rate) == original  # the dry-run patches are undone

    lora = results["stage2-lora"]
    assert lora["status"] == "ok" and lora["stage"] == "task-lora" and lora["tokens_per_s"] > 0
    assert lora["mfu"] is None and lora["dry_run_patches"]  # no GPU peak on a CPU; the patches are named
    invariance = results["invariance"]
    assert invariance["attention"] == "sdpa"
    for run in ("bf16", "fp32_control"):
        assert invariance[run]["examples"] == settings.invariance_prompts == len(invariance[run]["per_example"])
        assert 0 <= invariance[run]["identical"] <= invariance[run]["examples"]

    summary = gpu_check.summarise(results, settings, {"started": "now", "elapsed_s": 1.0, "budget_s": 2.0})
    statuses = {row["check"]: row["status"] for row in summary["rows"]}
    assert list(statuses) == [check.name for check in gpu_check.CHECKS]
    assert statuses["stage2-lora"] == statuses["invariance"] == "ok" and statuses["fsdp"] == "not run"
    verdicts = {row["check"]: row["verdict"] for row in summary["rows"]}
    assert verdicts["stage2-lora"] == "n/a (CPU)" and verdicts["invariance"] in ("met", "missed")
    assert "| invariance | ok |" in gpu_check.markdown(summary)


def test_a_spent_budget_skips_checks_and_still_writes_the_summary(gpu_check, tmp_path):
    assert gpu_check.main([str(tmp_path), "--cpu-dry-run", "--budget", "1"]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {row["check"]: row["status"] for row in summary["rows"]} == {c.name: "skipped" for c in gpu_check.CHECKS}
    assert "CPU DRY RUN" in (tmp_path / "gpu_check.md").read_text()


def test_unknown_sub_check_is_refused(gpu_check, tmp_path, capsys):
    assert gpu_check.main([str(tmp_path), "--only", "stage3"]) == 2
    assert "unknown check(s) stage3" in capsys.readouterr().err
