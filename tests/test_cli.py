"""The CLI on user mistakes: one line naming the place, exit code 2, no traceback; and a happy path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


def lingualift(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lingualift", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _config_file(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def _broken_configs(tmp_path: Path):
    good = tiny_config(tmp_path)
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"question": "q", "answer": "a"}\n{"question": "q", "answer": \n')
    yield "unknown key", dict(good, training=dict(good["training"], learnig_rate=1e-3)), \
        ("training.learnig_rate", "did you mean training.learning_rate")
    yield "missing data file", dict(good, data=dict(good["data"], train=str(tmp_path / "nope.jsonl"))), \
        ("data.train", "nope.jsonl")
    yield "unresolvable model", dict(good, model=dict(good["model"], llm="no-such-org/no-such-model")), \
        ("model.llm", "no-such-org/no-such-model")
    yield "malformed data line", dict(good, data=dict(good["data"], train=str(malformed))), ("bad.jsonl:2",)
    yield "wrong type", dict(good, training=dict(good["training"], batch_size="eight")), ("training.batch_size",)
    yield "bad stage", dict(good, stage="pretrain"), ("stage 'pretrain'",)


@pytest.mark.slow
def test_bad_configs_give_one_line_errors(tmp_path):
    for name, config, fragments in _broken_configs(tmp_path):
        result = lingualift("train", str(_config_file(tmp_path, config)))
        _assert_user_error(result, *fragments)


def test_missing_config_and_bad_yaml(tmp_path):
    _assert_user_error(lingualift("train", str(tmp_path / "absent.yaml")), "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: lingualift\nmodel: [unclosed\n")
    _assert_user_error(lingualift("train", str(bad)), "bad.yaml")


def test_set_overrides_and_happy_path(tmp_path):
    config = _config_file(tmp_path, tiny_config(tmp_path, method="langbridge", stage=None))
    result = lingualift("train", str(config), "--set", "training.max_steps=1", "--set", "model.alignment=linear")
    assert result.returncode == 0, result.stderr
    final = Path(tiny_config(tmp_path, method="langbridge", stage=None)["training"]["output_dir"]) / "final"
    assert json.loads((final / "config.json").read_text())["alignment"] == "linear"
    answer = lingualift("generate", "--model", str(final), "--max-new-tokens", "4", "What is 2+2?")
    assert answer.returncode == 0 and answer.stdout.startswith("### What is 2+2?")


def test_help_lists_every_command():
    result = lingualift("--help")
    for command in ("train", "eval", "codeswitch", "lexicon", "pipeline", "bench", "assets", "diagnose"):
        assert command in result.stdout


@pytest.mark.parametrize("leave", [True, False])
def test_the_error_line_never_shares_the_progress_bar_s_line(monkeypatch, capsys, leave):
    """A bar left open by the failure is ended first: the error starts a line of its own (`grep '^error:'`)."""
    from tqdm.auto import tqdm

    from lingualift import cli
    from lingualift.commands import score
    from lingualift.errors import LinguaLiftError

    def fails_mid_bar(args):
        bar = tqdm(total=10, desc="generate", leave=leave, mininterval=0, file=sys.stderr)
        bar.update(3)
        raise LinguaLiftError("data/file.jsonl:4: something is wrong")

    monkeypatch.setattr(score, "run", fails_mid_bar)
    assert cli.main(["score", "anything.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: data/file.jsonl:4: something is wrong\n" in err
    assert "generate" in err.split("\nerror:")[0]  # the bar's last state stays visible above the error
