"""Trustworthy runs (issue 12): a run identity that cannot collide, locked run folders, safe resume, the
NaN guard, resumable pipeline training, and kill-safety of every rename / delete of `final` and of the
pipeline's phase folders (kills simulated by making os.rename / os.replace / shutil.rmtree raise at the
k-th call, for every k)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from fakes import FakeGenerator
from helpers import sharpen, tiny_config, tiny_model
from safetensors.torch import load_file

from lingualift import checkpoint
from lingualift.pipeline import cache as pipeline_cache
from lingualift.checkpoint import exclusive_lock, recover, replace_directory
from lingualift.cli import main
from lingualift.train.config import config_from_dict
from lingualift.errors import LinguaLiftError
from lingualift.eval.runner import GenerationSettings, evaluate
from lingualift.model.modeling import LinguaLiftModel
from lingualift.eval.tasks import parse_task_langs
from lingualift.train.loop import Trainer


class Killed(BaseException):
    """A simulated SIGKILL: once raised, every later patched call fails too (the process is gone)."""


def kill_at(monkeypatch, k: int) -> dict:
    """Make the k-th call (1-based) of os.rename / os.replace / shutil.rmtree, and every later one, raise."""
    state = {"calls": 0}
    real = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree}

    def wrap(name):
        def fake(*args, **kwargs):
            state["calls"] += 1
            if state["calls"] >= k:
                raise Killed(f"killed at call {state['calls']} ({name})")
            return real[name](*args, **kwargs)
        return fake

    monkeypatch.setattr(os, "rename", wrap("rename"))
    monkeypatch.setattr(os, "replace", wrap("replace"))
    monkeypatch.setattr(shutil, "rmtree", wrap("rmtree"))
    return state


def kill_at_every_step(monkeypatch, prepare, act):
    """For k = 1, 2, …: `prepare(k)` a fresh target, then `act(target)` with the k-th rename/replace/rmtree
    killed; yields `(k, target, finished, state)` so the caller checks what each kill left, until `act` completes."""
    k = 1
    while True:
        target = prepare(k)
        with monkeypatch.context() as patch:
            state = kill_at(patch, k)
            try:
                act(target)
                finished = True
            except Killed:
                finished = False
        yield k, target, finished, state
        if finished:
            return
        k += 1


def write_version(folder: Path, version: str) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(version)


def version_of(folder: Path) -> str:
    contents = {(folder / name).read_text() for name in ("a.txt", "b.txt", "c.txt")}
    assert len(contents) == 1, f"incomplete directory {folder}: {contents}"
    return contents.pop()


# ------------------------------------------------------------------ atomic replacement of `final`


def test_a_kill_at_any_rename_or_delete_leaves_a_complete_final(tmp_path, monkeypatch):
    def prepare(k):
        target = tmp_path / f"run{k}" / "final"
        target.parent.mkdir()
        with replace_directory(target) as staging:
            write_version(staging, "old")
        return target

    def replace_with_new(target):
        with replace_directory(target) as staging:
            write_version(staging, "new")

    seen_new = False
    for k, target, finished, state in kill_at_every_step(monkeypatch, prepare, replace_with_new):
        recover(target)  # what the next run or load does first
        assert version_of(target) in ("old", "new")
        seen_new |= version_of(target) == "new"
        leftovers = [p.name for p in target.parent.iterdir() if p.name != "final"]
        assert leftovers == [], leftovers
        if finished:
            assert state["calls"] < k and version_of(target) == "new"
    assert k > 2 and seen_new


def test_saving_a_model_over_final_survives_a_kill_at_every_step(tmp_path, monkeypatch):
    first, second = tiny_model(), tiny_model()
    sharpen(second.alignment, seed=9, std=0.5)

    def prepare(k):
        final = tmp_path / f"k{k}" / "final"
        first.save_pretrained(final, include_frozen=False)
        return final

    for _, final, finished, _ in kill_at_every_step(
            monkeypatch, prepare, lambda final: second.save_pretrained(final, include_frozen=False)):
        loaded = LinguaLiftModel.from_pretrained(final)  # recovers, then loads a complete checkpoint
        weights = loaded.alignment.state_dict()
        matches = [all(torch.equal(weights[n], m.alignment.state_dict()[n]) for n in weights) for m in (first, second)]
        assert any(matches)
        assert sorted(p.name for p in final.parent.iterdir()) == ["final"]
        if finished:
            assert matches[1]


def test_stale_staging_of_a_dead_writer_is_cleaned(tmp_path):
    target = tmp_path / "final"
    with replace_directory(target) as staging:
        write_version(staging, "v1")
    dead = tmp_path / ".final.staging-999999999-abc"
    dead.mkdir()
    legacy = tmp_path / ".final.tmp"
    legacy.mkdir()
    with replace_directory(target) as staging:
        write_version(staging, "v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"] and version_of(target) == "v2"


def test_files_and_folders_honour_the_umask(tmp_path):
    from lingualift.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {})
        with replace_directory(tmp_path / "final") as staging:
            (staging / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "final").stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------------------ pipeline phase folders


def test_a_kill_while_clearing_a_phase_folder_never_locks_the_user_out(tmp_path, monkeypatch):
    def prepare(k):
        folder = tmp_path / f"k{k}" / "runs" / "stage1"
        pipeline_cache.claim_folder(folder, clear=False)
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "weights.bin").write_text("x")
        return folder

    for k, folder, _, _ in kill_at_every_step(
            monkeypatch, prepare, lambda folder: pipeline_cache.claim_folder(folder, clear=True)):
        pipeline_cache.claim_folder(folder, clear=True)  # the rerun: never refused
        assert sorted(p.name for p in folder.iterdir()) == [pipeline_cache.FOLDER_MARKER]
        assert sorted(p.name for p in folder.parent.iterdir()) == ["stage1"]
    assert k > 1


def test_pipeline_refuses_a_foreign_output_dir_before_writing_anything(tmp_path, capsys):
    from test_pipeline import TINY, write_data

    data = write_data(tmp_path / "data")
    victim = tmp_path / "project"
    victim.mkdir()
    (victim / "config.yaml").write_text("mine: true\n")
    before = {p: p.read_bytes() for p in victim.rglob("*") if p.is_file()}
    assert main(["pipeline", str(TINY), "--data-dir", str(data), "--output-dir", str(victim), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "was not made by the pipeline" in err
    assert {p: p.read_bytes() for p in victim.rglob("*") if p.is_file()} == before


def test_pipeline_killed_inside_stage1_resumes_from_its_last_step_checkpoint(tmp_path, monkeypatch, capsys):
    from test_pipeline import TINY, write_data

    from lingualift.train import loop as training

    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    data = write_data(tmp_path / "data")
    out = tmp_path / "out"
    args = ["pipeline", str(TINY), "--data-dir", str(data), "--output-dir", str(out), "--no-progress",
            "--until", "stage1", "--set", "stage1.training.max_steps=6", "--set", "stage1.training.save_every=2",
            "--set", "stage1.training.log_every=1"]
    real_step = training.Trainer.optimizer_step

    def dying_step(self, *a, **kw):
        if self.step == 5:
            raise KeyboardInterrupt("simulated kill at step 5")
        return real_step(self, *a, **kw)

    monkeypatch.setattr(training.Trainer, "optimizer_step", dying_step)
    assert main(args) == 130
    stage1 = out / "runs" / "stage1"
    assert sorted(p.name for p in (stage1 / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert not (stage1 / "final").exists()

    started = []
    real_resume = training.Trainer.resume

    def spy(self, checkpoint):
        real_resume(self, checkpoint)
        started.append(self.step)

    monkeypatch.setattr(training.Trainer, "optimizer_step", real_step)
    monkeypatch.setattr(training.Trainer, "resume", spy)
    assert main(args) == 0
    capsys.readouterr()
    assert started == [4]
    assert (stage1 / "final" / "alignment.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (stage1 / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step logged twice after the resume


# ------------------------------------------------------------------ evaluation run identity


@pytest.fixture
def mgsm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "mgsm").mkdir(parents=True)
    rows = [f"Tom has {i} apples and {i + 2} pears, how many fruits?\t{2 * i + 2}" for i in range(3)]
    (root / "mgsm" / "mgsm_de.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_two_checkpoints_both_called_final_are_scored_with_their_own_outputs(tmp_path, mgsm_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    finals = {}
    for name, seed in (("a", 3), ("b", 4)):
        model = tiny_model()
        sharpen(model.alignment, seed=seed, std=1.0)
        sharpen(model.llm, seed=seed, std=0.3)
        finals[name] = tmp_path / name / "final"
        model.save_pretrained(finals[name])
    outputs = {}
    for name, final in finals.items():
        assert main(["eval", "--model", str(final), "--tasks", "mgsm", "--langs", "de", "--limit", "3",
                     "--data-dir", str(mgsm_dir), "--offline", "--max-new-tokens", "6", "--no-progress",
                     "--bootstrap", "10"]) == 0
        capsys.readouterr()
    runs = sorted((tmp_path / "runs" / "eval").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("final-") for r in runs)
    for run in runs:
        identity = json.loads((run / "run.json").read_text())
        owner = next(n for n, f in finals.items() if identity["model_id"]["path"] == str(f.resolve()))
        records = [json.loads(line) for line in (run / "predictions" / "mgsm" / "de.jsonl").read_text().splitlines()]
        assert len(records) == 3
        outputs[owner] = [r["output"] for r in records]
    assert set(outputs) == {"a", "b"} and outputs["a"] != outputs["b"]
    # The same command again resumes the same folder (no new folder, nothing regenerated).
    assert main(["eval", "--model", str(finals["b"]), "--tasks", "mgsm", "--langs", "de", "--limit", "3",
                 "--data-dir", str(mgsm_dir), "--offline", "--max-new-tokens", "6", "--no-progress",
                 "--bootstrap", "10"]) == 0
    assert len(list((tmp_path / "runs" / "eval").iterdir())) == 2


def test_run_identity_covers_every_generation_setting_the_backend_and_the_precision(tmp_path):
    from dataclasses import dataclass

    from lingualift.eval.runner import default_run_dir, run_identity

    @dataclass(frozen=True)
    class WithNewField(GenerationSettings):
        repetition_penalty: float = 1.0

    hf, vllm, bf16 = FakeGenerator(), FakeGenerator(), FakeGenerator()
    vllm.backend, bf16.dtype = "vllm", "bfloat16"
    ids = {default_run_dir(run_identity(generator, s, tmp_path)) for generator, s in
           ((hf, GenerationSettings()), (hf, GenerationSettings(max_new_tokens=5)), (hf, WithNewField()),
            (hf, WithNewField(repetition_penalty=1.2)), (vllm, GenerationSettings()), (bf16, GenerationSettings()))}
    assert len(ids) == 6


def test_concurrent_evaluations_into_one_folder_cannot_mix(tmp_path, mgsm_dir):
    plan = parse_task_langs("mgsm", "de")
    out = tmp_path / "run"
    out.mkdir()
    with exclusive_lock(out, "test"):  # another process evaluating into `out` right now
        with pytest.raises(LinguaLiftError, match="another lingualift process"):
            evaluate(FakeGenerator(), plan, out, data_dir=mgsm_dir, progress=False, model_spec="model-a")
    assert not (out / "run.json").exists() and not (out / "predictions").exists()
    evaluate(FakeGenerator(), plan, out, data_dir=mgsm_dir, progress=False, n_bootstrap=10, model_spec="model-a")
    with pytest.raises(LinguaLiftError, match="different model"):
        evaluate(FakeGenerator(), plan, out, data_dir=mgsm_dir, progress=False, model_spec="model-b")


# ------------------------------------------------------------------ training: safe resume, NaN guard


def _train(tmp_path, **training) -> Path:
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5, **training})
    Trainer(config_from_dict(config)).train()
    return Path(config["training"]["output_dir"])


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_crafted_pickle_in_a_step_checkpoint_does_not_run_on_resume(tmp_path):
    out = _train(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(str(marker)), "scheduler": {}, "rng": torch.get_rng_state()},
               out / "checkpoints" / "step-2" / "state.pt")
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5,
                                             "resume_from_checkpoint": "latest"})
    with pytest.raises(LinguaLiftError, match=r"step-2/state.pt: not a plain training state"):
        Trainer(config_from_dict(config)).train()
    assert not marker.exists()


def test_resume_refuses_changed_settings_unless_overridden(tmp_path, caplog):
    out = _train(tmp_path)
    base = {"max_steps": 3, "save_every": 1, "save_total_limit": 5, "resume_from_checkpoint": "latest"}
    changed = tiny_config(tmp_path, training={**base, "learning_rate": 0.1})
    with pytest.raises(LinguaLiftError, match=r"different settings: training.learning_rate \(None in the checkpoint"):
        Trainer(config_from_dict(changed)).train()
    other_stage = tiny_config(tmp_path, stage="task", training={**base, "resume_from_checkpoint":
                                                                 str(out / "checkpoints" / "step-2")})
    with pytest.raises(LinguaLiftError, match="stage"):
        Trainer(config_from_dict(other_stage)).train()
    changed["training"]["resume_override"] = True
    trainer = Trainer(config_from_dict(changed))
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("stored, resumes", [(False, True), (True, False)])
def test_a_checkpoint_from_before_an_option_was_removed_resumes_if_it_left_it_neutral(tmp_path, stored, resumes):
    """`model.chat_template` is gone (`data.prompt_template: chat` replaced it): step checkpoints that stored it
    as false still resume; one trained with it on is refused, as its prompts differed."""
    out = _train(tmp_path)
    state_file = out / "checkpoints" / "step-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["identity"]["model"]["chat_template"] = stored
    state_file.write_text(json.dumps(state))
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5,
                                             "resume_from_checkpoint": "latest"})
    if resumes:
        trainer = Trainer(config_from_dict(config))
        trainer.train()
        assert trainer.step == 3
    else:
        with pytest.raises(LinguaLiftError, match="model.chat_template"):
            Trainer(config_from_dict(config)).train()


@pytest.mark.parametrize("lm_every, resumes", [(10, True), (5, False)])
def test_a_checkpoint_from_before_an_option_existed_counts_it_as_its_default(tmp_path, lm_every, resumes):
    """Step checkpoints written before `training.lm_every` (and friends) existed lack them in their identity:
    a missing option counts as its declared default, so the run resumes unless it sets another value."""
    out = _train(tmp_path)
    state_file = out / "checkpoints" / "step-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    for section, key in [("model", "encoder_split_digits"), ("training", "objective"), ("training", "lm_every"),
                         ("training", "lexical_batch_size"), ("training", "lexical_cache")]:
        del state["identity"][section][key]
    state_file.write_text(json.dumps(state))
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5,
                                             "resume_from_checkpoint": "latest", "lm_every": lm_every})
    if resumes:
        trainer = Trainer(config_from_dict(config))
        trainer.train()
        assert trainer.step == 3
    else:
        with pytest.raises(LinguaLiftError, match=r"training.lm_every \(10 in the checkpoint, 5 now\)"):
            Trainer(config_from_dict(config)).train()


def test_a_diverging_run_stops_with_one_line_and_keeps_only_finite_weights(tmp_path, capsys):
    config = tiny_config(tmp_path, training={"max_steps": 6, "save_every": 1, "save_total_limit": 10,
                                             "learning_rate": 1e38, "max_grad_norm": 0.0})
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "training diverged at step" in err and "Traceback" not in err
    out = Path(config["training"]["output_dir"])
    assert not (out / "final").exists()
    for step in (out / "checkpoints").glob("step-*"):
        assert all(torch.isfinite(t).all() for t in load_file(step / "trainable.safetensors").values())


def test_exploding_but_finite_weights_warn(tmp_path, caplog):
    config = tiny_config(tmp_path, training={"max_steps": 1, "learning_rate": 1e6})
    Trainer(config_from_dict(config)).train()
    assert "norm of the trained weights grew" in caplog.text


def test_recover_ignores_unrelated_files(tmp_path):
    (tmp_path / "final").mkdir()
    (tmp_path / ".finalize.old-1-x").mkdir()
    checkpoint.recover(tmp_path / "final")
    assert (tmp_path / ".finalize.old-1-x").is_dir()


# ------------------------------------------------------------------ run identity follows referenced parts (issue 26)


def save_preset(name: str, role: str, folder: Path, seed: int | None = None) -> Path:
    """A tiny preset written as a local model folder (re-drawn with `seed`: the same shapes, other weights)."""
    from lingualift.model import components

    model, tokenizer = components.load_component(name, role)
    if seed is not None:
        sharpen(model, seed=seed, std=0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_overwriting_the_llm_a_stage1_checkpoint_refers_to_is_a_new_run(tmp_path, mgsm_dir, monkeypatch, capsys):
    """The frozen LLM changed in place at the same path: eval must not answer from the earlier run folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    encoder = save_preset("tiny-bert", "encoder", tmp_path / "encoder")
    llm = save_preset("tiny-llama", "llm", tmp_path / "llm", seed=1)
    stage1 = tmp_path / "align" / "final"
    model = LinguaLiftModel.from_components(str(encoder), str(llm), "mlp", seed=0, prompt_template="plain")
    sharpen(model.alignment, seed=2, std=0.5)
    model.save_pretrained(stage1, include_frozen=False)
    assert checkpoint.referenced_parts(stage1) == {"encoder": str(encoder.resolve()), "llm": str(llm.resolve())}
    argv = ["eval", "--model", str(stage1), "--tasks", "mgsm", "--langs", "de", "--limit", "3", "--data-dir",
            str(mgsm_dir), "--offline", "--max-new-tokens", "6", "--no-progress", "--bootstrap", "10"]
    before = checkpoint.path_fingerprint(stage1)
    assert main(argv) == 0
    size = (llm / "model.safetensors").stat().st_size
    save_preset("tiny-llama", "llm", llm, seed=7)  # same path, same file size, other weights
    assert (llm / "model.safetensors").stat().st_size == size
    after = checkpoint.path_fingerprint(stage1)
    assert after["content"] == before["content"]  # the checkpoint's own files did not change ...
    assert after["refers_to"]["llm"] != before["refers_to"]["llm"]  # ... the model did
    assert after["refers_to"]["encoder"] == before["refers_to"]["encoder"]
    assert main(argv) == 0
    capsys.readouterr()
    runs = sorted((tmp_path / "runs" / "eval").iterdir(), key=lambda run: run.stat().st_mtime_ns)
    assert len(runs) == 2
    outputs = [[json.loads(line)["output"] for line in (run / "predictions" / "mgsm" / "de.jsonl").read_text()
                .splitlines()] for run in runs]
    assert outputs[0] != outputs[1]  # the second run generated with the new LLM instead of reusing the first


def test_overwriting_the_base_of_a_lora_adapter_changes_its_fingerprint(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model

    from lingualift.model import components

    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    base = save_preset("tiny-llama", "llm", tmp_path / "base", seed=1)
    model, _ = components.load_component(str(base), "llm")
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    assert checkpoint.referenced_parts(tmp_path / "adapter") == {"base": str(base)}
    before = checkpoint.path_fingerprint(tmp_path / "adapter")
    save_preset("tiny-llama", "llm", base, seed=2)
    after = checkpoint.path_fingerprint(tmp_path / "adapter")
    assert after["content"] == before["content"] and after["refers_to"] != before["refers_to"]


def _poison(step: Path) -> None:
    """Write NaN into a step checkpoint's trained tensors (a run that diverged before the guard existed)."""
    from safetensors.torch import save_file

    tensors = load_file(step / "trainable.safetensors")
    save_file({name: torch.full_like(tensor, float("nan")) for name, tensor in tensors.items()},
              step / "trainable.safetensors")


def test_resume_refuses_non_finite_weights_and_names_the_last_finite_checkpoint(tmp_path):
    out = _train(tmp_path)
    _poison(out / "checkpoints" / "step-2")
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5,
                                             "resume_from_checkpoint": "latest"})
    with pytest.raises(LinguaLiftError, match=r"step-2/trainable.safetensors: .* NaN or inf .* resume from .*step-1$"):
        Trainer(config_from_dict(config)).train()


def test_a_diverged_run_never_calls_a_nan_checkpoint_the_last_finite_one(tmp_path, capsys):
    out = _train(tmp_path)
    for step in ("step-1", "step-2"):
        _poison(out / "checkpoints" / step)
    config = tiny_config(tmp_path, training={"max_steps": 6, "save_total_limit": 10, "learning_rate": 1e38,
                                             "max_grad_norm": 0.0})
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "the last finite checkpoint is" not in err
    assert "there is no finite step checkpoint" in err


def test_a_loader_recovers_a_final_folder_caught_between_its_two_renames(tmp_path, capsys):
    """The writer was killed after renaming the old `final` aside and before renaming the new one in."""
    import subprocess
    import sys

    final = tmp_path / "run" / "final"
    tiny_model().save_pretrained(final)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(final, final.with_name(f".final.old-{dead.pid}-abc123"))
    assert main(["generate", "--model", str(final), "--max-new-tokens", "2", "q?"]) == 0
    assert checkpoint.is_lingualift_checkpoint(final) and not list(final.parent.glob(".final.*"))
    assert capsys.readouterr().out.startswith("### q?")


def test_resume_drops_a_loss_log_line_a_kill_cut_short(tmp_path):
    out = _train(tmp_path)
    with open(out / "train_log.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 3, "lo')  # killed while appending
    config = tiny_config(tmp_path, training={"max_steps": 3, "save_every": 1, "save_total_limit": 5,
                                             "resume_from_checkpoint": "latest"})
    Trainer(config_from_dict(config)).train()
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
