"""Stages as freeze policies: what changes, what does not, resume, data parallelism, overfitting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_config
from lingualift.train.config import config_from_dict
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def _one_step(config: dict):
    trainer = Trainer(config_from_dict(config))
    model = trainer.unwrapped
    before = _snapshot(model)
    trainer.total_steps = 1
    trainer.train()
    return model, before, _snapshot(model)


def test_align_step_changes_only_the_alignment_layer(tmp_path):
    model, before, after = _one_step(tiny_config(tmp_path, stage="align"))
    changed = _changed(before, after)
    assert changed and all(name.startswith("alignment.") for name in changed)
    assert {n for n in before if n.startswith("alignment.")} == changed
    assert not any(p.requires_grad for p in model.llm.parameters())  # output head included


def test_task_step_keeps_encoder_and_alignment(tmp_path):
    align = Trainer(config_from_dict(tiny_config(tmp_path, stage="align")))
    stage1 = align.train()
    model, before, after = _one_step(tiny_config(tmp_path, stage="task", model={"init_from": str(stage1)}))
    changed = _changed(before, after)
    assert changed and all(name.startswith("llm.") for name in changed)


def test_llm_sees_query_switched_on_for_a_loaded_stage_one(tmp_path):
    """MindMerger's order: a mapping stage without the query, then augmentation from it with the query read too."""
    mapping = Trainer(config_from_dict(tiny_config(tmp_path, stage="align"))).train()
    assert json.loads((mapping / "config.json").read_text())["llm_sees_query"] is False
    augmented = tiny_config(tmp_path, stage="align", model={"init_from": str(mapping), "llm_sees_query": True},
                            training={"output_dir": str(tmp_path / "augmented")})
    trainer = Trainer(config_from_dict(augmented))
    assert trainer.unwrapped.config.llm_sees_query
    final = trainer.train()
    assert LinguaLiftModel.from_pretrained(final).config.llm_sees_query
    inherited = tiny_config(tmp_path, stage="align", model={"init_from": str(final)},
                            training={"output_dir": str(tmp_path / "inherited")})
    assert Trainer(config_from_dict(inherited)).unwrapped.config.llm_sees_query  # unset: as the checkpoint says


def test_a_second_training_into_the_same_folder_fails_at_once(tmp_path):
    from lingualift.checkpoint import exclusive_lock
    from lingualift.errors import LinguaLiftError

    trainer = Trainer(config_from_dict(tiny_config(tmp_path, stage="align")))
    trainer.output_dir.mkdir(parents=True)
    with exclusive_lock(trainer.output_dir, "the first training"):
        with pytest.raises(LinguaLiftError, match="another lingualift process is using it"):
            trainer.train()
    assert not list(trainer.output_dir.iterdir())  # nothing written by the refused run
    assert (trainer.train() / "config.json").is_file()


def test_lora_step_changes_only_adapter_weights(tmp_path):
    stage1 = Trainer(config_from_dict(tiny_config(tmp_path, stage="align"))).train()
    config = tiny_config(tmp_path, stage="task", model={"init_from": str(stage1)},
                         training={"output_dir": str(tmp_path / "lora"), "tuning": "lora",
                                   "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "learning_rate": 1e-2})
    model, before, after = _one_step(config)
    changed = _changed(before, after)
    assert changed and all("lora_" in name for name in changed)
    final = tmp_path / "lora" / "final"
    assert (final / "llm_adapter").is_dir() and not (final / "llm").exists()
    reloaded = LinguaLiftModel.from_pretrained(final, merge_lora=False)
    assert any("lora_" in name for name, _ in reloaded.named_parameters())


def test_stage_two_full_checkpoint_is_self_contained(tmp_path):
    stage1 = Trainer(config_from_dict(tiny_config(tmp_path, stage="align"))).train()
    assert not (stage1 / "llm").exists() and (stage1 / "alignment.safetensors").is_file()
    stage2 = Trainer(config_from_dict(tiny_config(tmp_path, stage="task", model={"init_from": str(stage1)}))).train()
    assert (stage2 / "encoder").is_dir() and (stage2 / "llm").is_dir()
    config = json.loads((stage2 / "config.json").read_text())
    assert config["encoder"] is None and config["llm"] is None


OVERFIT = {
    "align": dict(stage="align", training={"learning_rate": 3e-3}),
    "task": dict(stage="task", training={"learning_rate": 3e-3}),
    "langbridge": dict(method="langbridge", stage=None, model={"alignment": "linear"},
                       training={"learning_rate": 3e-3}),
    "sft": dict(method="sft", stage=None, training={"learning_rate": 3e-3}),
}


@pytest.mark.parametrize("name", OVERFIT)
def test_loss_decreases_on_a_tiny_overfit_run(tmp_path, name):
    options = OVERFIT[name]
    config = tiny_config(tmp_path, method=options.get("method", "lingualift"), stage=options["stage"],
                         model=options.get("model", {}))
    config["training"].update(options["training"], max_steps=12, batch_size=6, output_dir=str(tmp_path / name))
    config["data"]["max_examples"] = 6
    Trainer(config_from_dict(config)).train()
    losses = [json.loads(line)["loss"] for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] == min(losses), losses


def _write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lingualift", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, **kwargs)


def test_starting_over_an_earlier_runs_checkpoints_says_so(tmp_path, caplog):
    config = tiny_config(tmp_path, stage="align")
    config["training"].update(max_steps=2, save_every=1)
    Trainer(config_from_dict(config)).train()
    with caplog.at_level("WARNING", logger="lingualift.train.loop"):
        Trainer(config_from_dict(config)).train()
    assert "starting again from step 0" in caplog.text and "resume_from_checkpoint: latest" in caplog.text


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path):
    base = tiny_config(tmp_path, stage="align")
    base["training"].update(max_steps=12, save_every=2, save_total_limit=3, batch_size=2)
    reference = dict(base, training=dict(base["training"], output_dir=str(tmp_path / "reference")))
    Trainer(config_from_dict(reference)).train()

    killed = dict(base, training=dict(base["training"], output_dir=str(tmp_path / "killed")))
    process = subprocess.Popen([sys.executable, "-m", "lingualift", "train", str(_write_config(tmp_path, killed))],
                               cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoints" / "step-4"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (tmp_path / "killed" / "final").exists(), "the run was not killed mid-way"

    killed["training"]["resume_from_checkpoint"] = "latest"
    Trainer(config_from_dict(killed)).train()
    from safetensors.torch import load_file

    expected = load_file(tmp_path / "reference" / "final" / "alignment.safetensors")
    resumed = load_file(tmp_path / "killed" / "final" / "alignment.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name


@pytest.mark.slow
def test_two_process_data_parallel_run(tmp_path):
    config = tiny_config(tmp_path, stage="align")
    config["training"].update(max_steps=3, batch_size=2)
    path = _write_config(tmp_path, config)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "lingualift", "train", str(path)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert (Path(config["training"]["output_dir"]) / "final" / "alignment.safetensors").is_file()


def test_bf16_mixed_precision_step(tmp_path):
    config = tiny_config(tmp_path, stage="align", training={"precision": "bf16", "max_steps": 1})
    final = Trainer(config_from_dict(config)).train()
    losses = [json.loads(line)["loss"] for line in (final.parent / "train_log.jsonl").read_text().splitlines()]
    assert losses and all(loss == loss for loss in losses)  # finite, not NaN
