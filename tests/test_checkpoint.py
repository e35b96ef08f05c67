"""checkpoint.py as the one owner of checkpoint formats: detection, step checkpoints, loading by hub id from
the Hugging Face cache (offline), and pushing with a generated model card (HfApi monkeypatched: no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from helpers import tiny_config

from lingualift import checkpoint
from lingualift.cli import main
from lingualift.errors import LinguaLiftError
from lingualift.inference.generators import BridgeGenerator, load_generator
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.config import config_from_dict
from lingualift.tools import hub
from lingualift.train.loop import Trainer

REPO_ID = "someone/lingualift-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
QUESTION = "Tom has 3 apples and buys 4 more. How many?"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A real two-stage tiny run: stage 1 refers to its frozen parts, stage 2 (full tuning) is self-contained."""
    root = tmp_path_factory.mktemp("runs")
    align = Trainer(config_from_dict(tiny_config(root, stage="align"))).train()
    task = Trainer(config_from_dict(tiny_config(root, stage="task", model={"init_from": str(align)}))).train()
    return {"align": align, "task": task}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, runs) -> Path:
    """The stage-2 checkpoint as `REPO_ID` in a fresh HF cache (hub layout), with the hub offline."""
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    shutil.copytree(runs["task"], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------ detection


def test_checkpoint_kind_tells_every_format_apart(tmp_path, runs):
    assert checkpoint.checkpoint_kind(runs["task"]) == checkpoint.LINGUALIFT
    assert checkpoint.is_lingualift_checkpoint(runs["align"])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / checkpoint.ADAPTER_CONFIG).write_text("{}")
    assert checkpoint.checkpoint_kind(adapter) == checkpoint.LORA_ADAPTER
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert checkpoint.checkpoint_kind(plain) == checkpoint.HF_MODEL
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert checkpoint.checkpoint_kind(tmp_path / "broken") is None
    assert checkpoint.checkpoint_kind(tmp_path / "missing") is None
    assert checkpoint.checkpoint_kind("tiny-llama") is None
    assert checkpoint.missing_parts(runs["task"]) == []
    assert {"encoder", "llm"} <= set(checkpoint.missing_parts(runs["align"]))


# ------------------------------------------------------------------ step checkpoints


def test_step_checkpoints_are_listed_in_step_order_and_rotated(tmp_path):
    for step in (1, 10, 2):
        target = checkpoint.step_checkpoint_dir(tmp_path, step)
        with checkpoint.replace_directory(target) as staging:
            checkpoint.write_step_state(staging, {"w": torch.full((2,), float(step))},
                                        {"optimizer": {}, "scheduler": {}, "rng": torch.get_rng_state()})
            checkpoint.write_trainer_state(staging, step, 10, {"stage": "align"})
    (tmp_path / "checkpoints" / "step-final").mkdir()  # a foreign name is neither listed nor deleted
    assert [p.name for p in checkpoint.step_checkpoints(tmp_path)] == ["step-1", "step-2", "step-10"]
    latest = checkpoint.latest_step_checkpoint(tmp_path)
    assert latest.name == "step-10" and checkpoint.checkpoint_kind(latest) == checkpoint.STEP_CHECKPOINT
    assert checkpoint.read_trainer_state(latest, "here")["identity"] == {"stage": "align"}
    assert torch.equal(checkpoint.load_trainable(latest)["w"], torch.full((2,), 10.0))
    assert set(checkpoint.load_training_state(latest)) == {"optimizer", "scheduler", "rng"}
    checkpoint.rotate_step_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-10", "step-2", "step-final"]
    assert not checkpoint.has_step_checkpoints(tmp_path / "elsewhere")


def test_bad_step_checkpoints_are_one_line_errors(tmp_path):
    step = checkpoint.step_checkpoint_dir(tmp_path, 3)
    step.mkdir(parents=True)
    with pytest.raises(LinguaLiftError, match="config.yaml: training.resume_from_checkpoint: .* \\(no trainer_state"):
        checkpoint.read_trainer_state(step, "config.yaml: training.resume_from_checkpoint")
    (step / checkpoint.TRAINER_STATE_FILE).write_text(json.dumps({"step": "three"}))
    with pytest.raises(LinguaLiftError, match="no integer 'step'"):
        checkpoint.read_trainer_state(step, "here")
    (step / checkpoint.TRAINABLE_FILE).write_bytes(b"\x00" * 5)
    with pytest.raises(LinguaLiftError, match="trainable.safetensors: unreadable"):
        checkpoint.load_trainable(step)
    with pytest.raises(LinguaLiftError, match="state.pt: missing"):
        checkpoint.load_training_state(step)


# ------------------------------------------------------------------ loading by hub id


def test_a_hub_id_loads_from_the_cache_offline(hub_cache, runs):
    local = LinguaLiftModel.from_pretrained(runs["task"])
    shared = LinguaLiftModel.from_pretrained(REPO_ID)
    assert Path(shared.config.encoder).is_relative_to(hub_cache.resolve())  # frozen parts: from the snapshot
    for name, tensor in local.state_dict().items():
        assert torch.equal(tensor, shared.state_dict()[name]), name
    generator = load_generator(REPO_ID, device="cpu")
    assert isinstance(generator, BridgeGenerator) and generator.name == "lingualift-tiny"
    expected = load_generator(str(runs["task"]), device="cpu").generate([QUESTION], max_new_tokens=4)
    assert generator.generate([QUESTION], max_new_tokens=4) == expected
    identity = checkpoint.path_fingerprint(REPO_ID)  # eval runs of a hub id are told apart by the revision's files
    assert Path(identity["path"]).is_relative_to(hub_cache.resolve()) and identity["content"]


def test_the_cli_generates_with_a_hub_id(hub_cache, capsys):
    assert main(["generate", "--model", REPO_ID, "--max-new-tokens", "3", QUESTION]) == 0
    assert capsys.readouterr().out.startswith(f"### {QUESTION}\n")


def test_a_local_folder_wins_over_a_hub_id(hub_cache, runs):
    shutil.copytree(runs["align"], Path(REPO_ID))  # ./someone/lingualift-tiny, relative to the working folder
    assert not checkpoint.is_hub_id(REPO_ID)
    assert checkpoint.resolve_model_spec(REPO_ID) == REPO_ID
    assert LinguaLiftModel.from_pretrained(REPO_ID).config.encoder == "tiny-bert"  # the stage-1 copy, not the hub's


def test_an_unknown_hub_id_is_one_line_naming_it_and_the_fix(hub_cache, capsys):
    with pytest.raises(LinguaLiftError, match="nobody/missing: not a local folder.*HF_HUB_OFFLINE unset"):
        LinguaLiftModel.from_pretrained("nobody/missing")
    before = snapshot(hub_cache.parent)
    assert main(["generate", "--model", "nobody/missing", "q?"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nobody/missing" in errors[0]
    assert snapshot(hub_cache.parent) == before


def test_a_checkpoint_referring_to_another_machine_s_path_says_so(tmp_path, runs):
    moved = tmp_path / "moved"
    shutil.copytree(runs["align"], moved)
    config = json.loads((moved / "config.json").read_text())
    config["encoder"] = "/nowhere/on/this/machine/encoder"
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(LinguaLiftError, match="encoder is not stored in the checkpoint.*include_frozen=True"):
        LinguaLiftModel.from_pretrained(moved)


# ------------------------------------------------------------------ model card and push


def eval_results(path: Path) -> Path:
    results = {"model": "final", "n_bootstrap": 10, "tasks": {"mgsm": {
        "languages": {"de": {"n": 4, "correct": 3, "accuracy": 0.75, "ci95": [0.5, 1.0], "tier": "high"},
                      "sw": {"n": 4, "correct": 1, "accuracy": 0.25, "ci95": [0.0, 0.5], "tier": "low"}},
        "tiers": {"high": {"languages": ["de"], "accuracy": 0.75, "ci95": [0.5, 1.0]},
                  "low": {"languages": ["sw"], "accuracy": 0.25, "ci95": [0.0, 0.5]}},
        "overall": {"languages": ["de", "sw"], "accuracy": 0.5, "ci95": [0.25, 0.75]}}}}
    path.write_text(json.dumps(results))
    return path


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_names_stages_data_and_results(tmp_path, runs):
    card = hub.model_card(runs["task"], eval_results(tmp_path / "results.json"), repo_id=REPO_ID)
    meta = front_matter(card)
    assert meta["library_name"] == "lingualift" and "license" not in meta and "base_model" not in meta
    assert meta["language"] == ["de", "sw"] and {"lingualift-align", "lingualift-task"} <= set(meta["tags"])
    assert "the lingualift preset `tiny-bert`" in card and "the lingualift preset `tiny-llama`" in card
    assert "| `lingualift` | `align` | train.jsonl | 12 | 2 | alignment |" in card
    assert "| `lingualift` | `task` | train.jsonl | 12 | 2 | llm |" in card
    assert "| mgsm | 2 | 50.0 [25.0, 75.0] | 75.0 | – | 25.0 | – |" in card
    assert str(runs["task"].parent.parent) not in card and "output_dir" not in card  # no paths of this machine
    assert f"from_pretrained(\"{REPO_ID}\")" in card


def test_model_card_names_hub_base_models_and_licence(tmp_path, runs):
    run = tmp_path / "run"
    shutil.copytree(runs["task"], run / "final")
    config = yaml.safe_load((runs["task"].parent / "train_config.yaml").read_text())
    config["model"].update(encoder="default", llm="Qwen/Qwen2.5-0.5B-Instruct", init_from=None)
    (run / "train_config.yaml").write_text(yaml.safe_dump(config))
    meta = front_matter(hub.model_card(run / "final", license="apache-2.0"))
    assert meta["base_model"] == ["intfloat/multilingual-e5-small", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert meta["license"] == "apache-2.0" and "language" not in meta


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi.create_repo / upload_folder recorded, the uploaded folder copied; the hub counts as online."""
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = {"repo_id": repo_id, **kwargs}
        shutil.copytree(folder_path, tmp_path / "uploaded")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return calls


def test_push_uploads_the_complete_checkpoint_with_its_card(tmp_path, runs, fake_hub, capsys):
    before = snapshot(runs["task"].parent)
    results = eval_results(tmp_path / "results.json")
    assert main(["push", str(runs["task"]), REPO_ID, "--private", "--results", str(results)]) == 0
    assert f"https://huggingface.co/{REPO_ID}" in capsys.readouterr().out
    assert fake_hub["create_repo"] == {"repo_id": REPO_ID, "private": True, "exist_ok": True}
    assert fake_hub["upload_folder"]["repo_id"] == REPO_ID
    uploaded = tmp_path / "uploaded"
    expected = {p.relative_to(runs["task"]) for p in runs["task"].rglob("*")} | {Path("README.md")}
    assert {p.relative_to(uploaded) for p in uploaded.rglob("*")} == expected
    card = (uploaded / "README.md").read_text()
    assert "`task`" in card and "| mgsm |" in card
    assert snapshot(runs["task"].parent) == before  # the checkpoint is untouched, no staging folder is left
    assert checkpoint.is_lingualift_checkpoint(uploaded) and not checkpoint.missing_parts(uploaded)


def test_push_shares_a_stage1_checkpoint_as_a_self_contained_copy(tmp_path, runs, fake_hub):
    before = snapshot(runs["align"].parent)
    assert main(["push", str(runs["align"]), REPO_ID]) == 0
    uploaded = tmp_path / "uploaded"
    assert not checkpoint.missing_parts(uploaded) and (uploaded / "README.md").is_file()
    expected = load_generator(str(runs["align"]), device="cpu").generate([QUESTION], max_new_tokens=4)
    assert load_generator(str(uploaded), device="cpu").generate([QUESTION], max_new_tokens=4) == expected
    assert snapshot(runs["align"].parent) == before


@pytest.mark.parametrize("what", ["not a checkpoint", "bad repo id", "bad results", "offline"])
def test_push_refuses_bad_input_before_writing_anything(tmp_path, runs, fake_hub, capsys, monkeypatch, what):
    work = tmp_path / "work"
    work.mkdir()
    (work / "results.json").write_text(json.dumps({"tasks": {}}))
    source = {"not a checkpoint": work}.get(what, runs["task"])
    argv = ["push", str(source), "a/b/c" if what == "bad repo id" else REPO_ID]
    if what == "bad results":
        argv += ["--results", str(work / "results.json")]
    if what == "offline":
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = snapshot(runs["task"].parent.parent), snapshot(work)
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert not fake_hub and not (tmp_path / "uploaded").exists()
    assert (snapshot(runs["task"].parent.parent), snapshot(work)) == before


# ------------------------------------------------------------------ content fingerprints


def test_large_files_are_hashed_once_and_then_known_by_their_stat(tmp_path, monkeypatch):
    """A repeat fingerprint of a settled file reads no bytes; any change of its size, mtime or inode re-hashes."""
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint, "_CACHED_FROM", 0)
    monkeypatch.setattr(checkpoint, "_SETTLED_SECONDS", -3600.0)  # treat files written just now as settled
    hashed = []
    real_sha256 = checkpoint._sha256
    monkeypatch.setattr(checkpoint, "_sha256", lambda file: hashed.append(file.name) or real_sha256(file))
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"a" * 1000)
    first = checkpoint.path_fingerprint(model)
    assert checkpoint.path_fingerprint(model) == first and hashed == ["weights.bin"]
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"b" * 1000)
    replacement.replace(model / "weights.bin")  # same size: the inode and ctime tell it apart
    assert checkpoint.path_fingerprint(model) != first and hashed == ["weights.bin", "weights.bin"]


def test_a_file_written_just_now_is_not_remembered_by_its_stat(tmp_path, monkeypatch):
    """Two writes within one clock tick keep mtime and ctime: a fresh file is hashed every time."""
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint, "_CACHED_FROM", 0)
    (tmp_path / "weights.bin").write_bytes(b"a" * 1000)
    first = checkpoint.path_fingerprint(tmp_path / "weights.bin")
    with open(tmp_path / "weights.bin", "r+b") as handle:  # in place: same inode, same size
        handle.write(b"b")
    assert checkpoint.path_fingerprint(tmp_path / "weights.bin") != first
    assert not (tmp_path / "cache" / checkpoint.FINGERPRINT_CACHE).exists()


def test_a_reference_loop_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / checkpoint.ADAPTER_CONFIG).write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "adapter")}))
    with pytest.raises(LinguaLiftError, match="levels deep"):
        checkpoint.path_fingerprint(tmp_path / "adapter")


# ------------------------------------------------------------------ push --dry-run checks what push checks (issue 26)


def _break(final: Path, what: str) -> str:
    """Damage a copy of a checkpoint; returns the repo id to push it to."""
    if what == "no llm weights":
        (final / checkpoint.LLM_DIR / "model.safetensors").unlink()
    elif what == "no tokenizer":
        shutil.rmtree(final / checkpoint.LLM_TOKENIZER_DIR)
    elif what == "truncated alignment":
        data = (final / checkpoint.ALIGNMENT_FILE).read_bytes()
        (final / checkpoint.ALIGNMENT_FILE).write_bytes(data[:10])
    return "not a valid/repo/id" if what == "invalid repo id" else REPO_ID


@pytest.mark.parametrize("what", ["no llm weights", "no tokenizer", "truncated alignment", "invalid repo id"])
def test_push_and_its_dry_run_refuse_the_same_checkpoints(tmp_path, runs, fake_hub, capsys, what):
    final = tmp_path / "copy" / "final"
    shutil.copytree(runs["task"], final)
    repo_id = _break(final, what)
    before = snapshot(tmp_path / "copy")
    messages = []
    for dry_run in (["--dry-run"], []):
        assert main(["push", str(final), repo_id, *dry_run]) == 2
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in captured.err and not captured.out, captured
        messages.append(errors[0])
    assert messages[0] == messages[1]
    assert not fake_hub and snapshot(tmp_path / "copy") == before


def test_an_unreachable_hub_during_push_is_one_line(tmp_path, runs, fake_hub, monkeypatch, capsys):
    from huggingface_hub.errors import HfHubHTTPError

    transport = next(base for base in HfHubHTTPError.__mro__ if base.__name__ == "HTTPError")
    connect_error = getattr(__import__(transport.__module__), "ConnectError")

    def unreachable(self, repo_id, **kwargs):
        raise connect_error("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", unreachable)
    before = snapshot(runs["task"].parent)
    assert main(["push", str(runs["task"]), REPO_ID]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "upload failed (" in errors[0] and "Name or service not known" in errors[0]
    assert snapshot(runs["task"].parent) == before


def test_the_model_card_keeps_no_lexicon_paths(tmp_path, runs):
    run = tmp_path / "run"
    shutil.copytree(runs["task"], run / "final")
    config = yaml.safe_load((runs["task"].parent / "train_config.yaml").read_text())
    config["data"]["codeswitch"] = {"lexicons": {"de": str(tmp_path / "lexicons" / "en-de.tsv"), "fr": "muse:fr"},
                                    "ratio": 0.5}
    (run / "train_config.yaml").write_text(yaml.safe_dump(config))
    card = hub.model_card(run / "final")
    assert str(tmp_path) not in card
    assert "de: en-de.tsv" in card and "fr: muse:fr" in card


def test_resolving_a_preset_or_hub_id_touches_no_sidecars_a_bare_folder_name_is_recovered(tmp_path, monkeypatch):
    """Recovery (restore a renamed-aside folder, delete stale staging) runs only for specs that name a folder."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    staging = tmp_path / f".tiny-llama.staging-{dead.pid}-abc123"
    staging.mkdir()
    assert checkpoint.resolve_model_spec("tiny-llama") == "tiny-llama" and staging.is_dir()
    (tmp_path / f".myrun.old-{dead.pid}-abc123").mkdir()  # a kill between the two renames of `myrun`
    assert checkpoint.resolve_model_spec("myrun") == "myrun" and (tmp_path / "myrun").is_dir()
