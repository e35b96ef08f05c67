"""Every bad input is a clean error (issue 12): exit code 2, exactly one `error:` line that names the place
(file[:line], config field or flag), no traceback, and no file left behind or changed.

The cases run in-process through `lingualift.cli.main(argv)` (imports are paid once); a few also run as
real subprocesses. Each case builds its fixtures in a fresh work folder, which is snapshotted (paths,
bytes, modes) before and compared after the command.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from conftest import require_module
from helpers import tiny_config, tiny_model, write_instructions

from lingualift.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_PIPELINE = REPO / "src" / "lingualift" / "configs" / "pipeline" / "tiny.yaml"


@dataclass
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # builds fixtures in the work folder, returns argv
    place: str  # must appear in the error line
    patch: Callable | None = None  # (monkeypatch) -> None, for simulated OS failures


CASES: list[Case] = []


def case(name: str, place: str, patch=None):
    def register(setup):
        CASES.append(Case(name, setup, place, patch))
        return setup
    return register


# ------------------------------------------------------------------ fixtures


def mgsm_data(work: Path, lang: str = "de", rows: bytes | None = None) -> Path:
    root = work / "data"
    (root / "mgsm").mkdir(parents=True, exist_ok=True)
    body = rows if rows is not None else "".join(f"Tom has {i} pens, how many?\t{i}\n" for i in range(3)).encode()
    (root / "mgsm" / f"mgsm_{lang}.tsv").write_bytes(body)
    return root


def train_yaml(work: Path, name: str = "config.yaml", **sections) -> Path:
    config = tiny_config(work, **{k: v for k, v in sections.items() if k in ("model", "data", "training")})
    for key in ("method", "stage"):
        if key in sections:
            config[key] = sections[key]
    path = work / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def train_set(*overrides: str, **sections) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        argv = ["train", str(train_yaml(work, **sections))]
        for override in overrides:
            argv += ["--set", override]
        return argv
    return setup


def saved_checkpoint(work: Path) -> Path:
    final = work / "ckpt" / "final"
    tiny_model().save_pretrained(final, include_frozen=True)
    return final


# ------------------------------------------------------------------ train: config values

for field, value, place in [
    ("training.log_every", "0", "training.log_every"),
    ("training.log_every", "-3", "training.log_every"),
    ("training.max_steps", "-5", "training.max_steps"),
    ("training.max_steps", "0", "training.max_steps"),
    ("training.save_every", "-1", "training.save_every"),
    ("training.save_every", "0", "training.save_every"),
    ("training.save_total_limit", "0", "training.save_total_limit"),
    ("model.encoder_max_length", "0", "model.encoder_max_length"),
    ("training.batch_size", "0", "training.batch_size"),
    ("training.gradient_accumulation_steps", "0", "training.gradient_accumulation_steps"),
    ("training.learning_rate", "0", "training.learning_rate"),
    ("training.learning_rate", "-1e-3", "training.learning_rate"),
    ("training.learning_rate", ".nan", "training.learning_rate"),
    ("training.learning_rate", ".inf", "training.learning_rate"),
    ("training.learning_rate", "fast", "training.learning_rate"),
    ("training.epochs", "0", "training.epochs"),
    ("training.epochs", "-1.5", "training.epochs"),
    ("training.warmup_ratio", "1.5", "training.warmup_ratio"),
    ("training.warmup_ratio", "-0.1", "training.warmup_ratio"),
    ("training.weight_decay", "-0.1", "training.weight_decay"),
    ("training.max_grad_norm", "-1", "training.max_grad_norm"),
    ("training.seed", "-1", "training.seed"),
    ("training.lora.r", "0", "training.lora.r"),
    ("training.lora.alpha", "0", "training.lora.alpha"),
    ("training.lora.dropout", "1.0", "training.lora.dropout"),
    ("data.max_examples", "0", "data.max_examples"),
    ("data.max_target_length", "0", "data.max_target_length"),
    ("training.lr_groups", "{alignment: -1}", "training.lr_groups.alignment"),
    ("training.lr_groups", "{alignment: fast}", "training.lr_groups.alignment"),
    ("training.tuning", "half", "training.tuning"),
    ("training.precision", "fp8", "training.precision"),
    ("training.max_stepz", "3", "did you mean training.max_steps"),
    ("training.batch_size", "abc", "training.batch_size"),
    ("training.batch_size", "2.5", "training.batch_size"),
    ("training.output_dir", "''", "training.output_dir"),
    ("training.resume_from_checkpoint", "nowhere/step-3", "training.resume_from_checkpoint"),
    ("training.tensorboard", "maybe", "training.tensorboard"),
    ("model.warm_start", "semantic", "model.warm_start"),
    ("model.llm_sees_query", "7", "model.llm_sees_query"),
    ("model.chat_template", "true", "data.prompt_template: chat"),
    ("model.init_from", "no/such/checkpoint", "model.init_from"),
    ("data.train", "no/such/file.jsonl", "data.train"),
    ("data.train", "''", "data.train"),
    ("method", "bogus", "method"),
    ("stage", "bogus", "stage"),
    ("model", "[1, 2]", "model"),
    ("training.objective", "telepathy", "training.objective"),
    ("training.lm_every", "1", "training.lm_every"),
    ("training.lexical_batch_size", "0", "training.lexical_batch_size"),
]:
    case(f"train-set-{field}={value}", place)(train_set(f"{field}={value}"))

case("train-warm-start-texts-0", "model.warm_start_texts")(
    train_set("model.warm_start=lexical", "model.warm_start_texts=0"))
case("train-lexical-objective-for-sft", "training.objective")(
    train_set("training.objective=lexical", method="sft", stage=None))
case("train-lexical-objective-without-the-alignment-layer", "training.objective")(
    train_set("training.objective=mixed", "model.trainable=[llm]"))
case("train-set-without-equals", "--set")(train_set("training.max_steps"))
case("train-set-into-a-value", "--set training.max_steps.x")(train_set("training.max_steps.x=1"))


@case("train-config-not-found", "config file not found")
def _(work):
    return ["train", str(work / "missing.yaml")]


@case("train-invalid-yaml", "config.yaml:")
def _(work):
    (work / "config.yaml").write_text("training:\n  max_steps: [1, 2\n", encoding="utf-8")
    return ["train", str(work / "config.yaml")]


@case("train-top-level-list", "config.yaml")
def _(work):
    (work / "config.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    return ["train", str(work / "config.yaml")]


@case("train-config-not-utf8", "config.yaml:2")
def _(work):
    (work / "config.yaml").write_bytes(b"method: lingualift\nstage: \xff\n")
    return ["train", str(work / "config.yaml")]


# ------------------------------------------------------------------ train: data and model (tiny models load)


@case("train-encoder-max-length-beyond-positions", "encoder_max_length")
def _(work):
    return ["train", str(train_yaml(work, model={"encoder_max_length": 100_000}))]


@case("train-empty-data", "train.jsonl")
def _(work):
    (work / "train.jsonl").write_text("")
    return ["train", str(train_yaml(work))]


@case("train-data-not-utf8", "train.jsonl:2")
def _(work):
    write_instructions(work / "train.jsonl", repeat=1)
    with open(work / "train.jsonl", "ab") as handle:
        handle.write(b'{"question": "caf\xe9", "answer": "1"}\n')
    lines = (work / "train.jsonl").read_bytes().splitlines(keepends=True)
    (work / "train.jsonl").write_bytes(lines[0] + lines[-1])
    return ["train", str(train_yaml(work))]


@case("train-data-malformed-json", "train.jsonl:2")
def _(work):
    (work / "train.jsonl").write_text('{"question": "a", "answer": "1"}\n{"question": \n', encoding="utf-8")
    return ["train", str(train_yaml(work))]


@case("train-data-not-an-object", "train.jsonl:1")
def _(work):
    (work / "train.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    return ["train", str(train_yaml(work))]


@case("train-data-missing-answer", "train.jsonl:1")
def _(work):
    (work / "train.jsonl").write_text('{"question": "a"}\n', encoding="utf-8")
    return ["train", str(train_yaml(work))]


def codeswitched_row(spans: list | None) -> str:
    alignment = {"langs": ["de"], "replaced": 1, "replaceable": 1, **({"spans": spans} if spans is not None else {})}
    return json.dumps({"question": "Tom hat 3 apples", "source_question": "Tom has 3 apples", "answer": "3",
                       "codeswitch": alignment}) + "\n"


@case("train-lexical-objective-codeswitched-without-alignment", "train.jsonl: record 1")
def _(work):
    (work / "train.jsonl").write_text(codeswitched_row(None), encoding="utf-8")
    return ["train", str(train_yaml(work, training={"objective": "lexical"}))]


@case("train-lexical-objective-alignment-out-of-range", "train.jsonl: record 1")
def _(work):
    (work / "train.jsonl").write_text(codeswitched_row([[4, 7, 4, 99]]), encoding="utf-8")
    return ["train", str(train_yaml(work, training={"objective": "lexical"}))]


@case("train-output-dir-is-a-file", "out-file")
def _(work):
    (work / "out-file").write_text("not a folder")
    return ["train", str(train_yaml(work, training={"output_dir": str(work / "out-file")}))]


@case("train-output-dir-below-a-file", "out-file")
def _(work):
    (work / "out-file").write_text("not a folder")
    return ["train", str(train_yaml(work, training={"output_dir": str(work / "out-file" / "run")}))]


@case("train-unknown-trainable-group", "model.trainable")
def _(work):
    return ["train", str(train_yaml(work, model={"trainable": ["bogus"]}))]


@case("train-unknown-lr-group", "training.lr_groups")
def _(work):
    return ["train", str(train_yaml(work, training={"lr_groups": {"bogus": 1e-3}}))]


@case("train-resume-not-a-checkpoint", "training.resume_from_checkpoint")
def _(work):
    (work / "empty-step").mkdir()
    return ["train", str(train_yaml(work, training={"resume_from_checkpoint": str(work / "empty-step")}))]


@case("train-resume-truncated-state", "state.pt")
def _(work):
    step = work / "lingualift-align" / "checkpoints" / "step-1"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text(json.dumps({"step": 1, "total_steps": 2}))
    from safetensors.torch import save_file
    import torch

    save_file({}, step / "trainable.safetensors")
    torch.save({"optimizer": {}, "scheduler": {}, "rng": torch.get_rng_state()}, step / "state.pt")
    (step / "state.pt").write_bytes((step / "state.pt").read_bytes()[:40])
    return ["train", str(train_yaml(work, training={"resume_from_checkpoint": "latest"}))]


# ------------------------------------------------------------------ generate

for flags, place in [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-2"], "--batch-size"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--sample", "--temperature", "0"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "0"], "--top-p"),
]:
    case(f"generate-{'-'.join(flags)}", place)(lambda work, flags=flags: ["generate", "--model", "tiny-llama", "q?",
                                                                           *flags])


@case("generate-no-questions", "no questions given")
def _(work):
    return ["generate", "--model", "tiny-llama"]


@case("generate-missing-model-dir", "no-such-model")
def _(work):
    return ["generate", "--model", str(work / "no-such-model"), "q?"]


@case("generate-truncated-alignment", "alignment.safetensors")
def _(work):
    final = saved_checkpoint(work)
    data = (final / "alignment.safetensors").read_bytes()
    (final / "alignment.safetensors").write_bytes(data[: len(data) // 2])
    return ["generate", "--model", str(final), "q?"]


@case("generate-alignment-wrong-shape", "alignment.safetensors")
def _(work):
    from safetensors.torch import save_file
    import torch

    final = saved_checkpoint(work)
    save_file({"weight": torch.zeros(2, 2)}, final / "alignment.safetensors")
    return ["generate", "--model", str(final), "q?"]


# ------------------------------------------------------------------ push


@case("push-checkpoint-part-elsewhere", "neither stored in the checkpoint nor on this machine")
def _(work):
    tiny_model().save_pretrained(work / "stage1", include_frozen=False)
    config = json.loads((work / "stage1" / "config.json").read_text())
    (work / "stage1" / "config.json").write_text(json.dumps({**config, "llm": "/elsewhere/llm"}))
    return ["push", str(work / "stage1"), "someone/model"]


@case("push-checkpoint-not-a-checkpoint", "not a LinguaLIFT checkpoint")
def _(work):
    (work / "folder").mkdir()
    return ["push", str(work / "folder"), "someone/model"]


@case("push-checkpoint-bad-results", "results.json")
def _(work):
    (work / "results.json").write_text('{"tasks": {}}')
    return ["push", str(saved_checkpoint(work)), "someone/model", "--results", str(work / "results.json")]


# ------------------------------------------------------------------ eval

EVAL = ["eval", "--model", "tiny-llama", "--offline", "--no-progress", "--max-new-tokens", "2", "--bootstrap", "10"]

for flags, place in [
    (["--tasks", ""], "--tasks"),
    (["--tasks", ","], "--tasks"),
    (["--tasks", "bogus"], "unknown task 'bogus'"),
    (["--langs", "xx"], "task mgsm has none of the languages"),
    (["--limit", "0"], "--limit"),
    (["--batch-size", "0"], "--batch-size"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--bootstrap", "0"], "--bootstrap"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
]:
    case(f"eval-{'-'.join(flags) or 'empty'}", place)(
        lambda work, flags=flags: [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--out",
                                   str(work / "run"), *flags])


@case("eval-mgsm-not-utf8", "mgsm_de.tsv:2")
def _(work):
    data = mgsm_data(work, rows=b"Tom has 1 pen?\t1\nTom h\xe4t 2?\t2\n")
    return [*EVAL, "--data-dir", str(data), "--tasks", "mgsm", "--langs", "de", "--out", str(work / "run")]


@case("eval-mgsm-three-fields", "mgsm_de.tsv:1")
def _(work):
    data = mgsm_data(work, rows=b"a\tb\t3\n")
    return [*EVAL, "--data-dir", str(data), "--langs", "de", "--out", str(work / "run")]


@case("eval-mgsm-answer-not-a-number", "mgsm_de.tsv:2")
def _(work):
    data = mgsm_data(work, rows=b"Tom has 1 pen?\t1\nTom has 2?\ttwo\n")
    return [*EVAL, "--data-dir", str(data), "--langs", "de", "--out", str(work / "run")]


@case("eval-mgsm-empty", "mgsm_de.tsv")
def _(work):
    data = mgsm_data(work, rows=b"")
    return [*EVAL, "--data-dir", str(data), "--langs", "de", "--out", str(work / "run")]


@case("eval-data-missing-offline", "mgsm_fr.tsv")
def _(work):
    return [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "fr", "--out", str(work / "run")]


@case("eval-mmwp-malformed-json", "test_de.json")
def _(work):
    data = mgsm_data(work)
    (data / "mmwp").mkdir()
    (data / "mmwp" / "test_de.json").write_text("[{", encoding="utf-8")
    return [*EVAL, "--data-dir", str(data), "--tasks", "mmwp", "--langs", "de", "--out", str(work / "run")]


@case("eval-mmwp-missing-field", "test_de.json")
def _(work):
    data = mgsm_data(work)
    (data / "mmwp").mkdir()
    (data / "mmwp" / "test_de.json").write_text('[{"question": "a"}]', encoding="utf-8")
    return [*EVAL, "--data-dir", str(data), "--tasks", "mmwp", "--langs", "de", "--out", str(work / "run")]


@case("eval-out-is-a-file", "run-file")
def _(work):
    (work / "run-file").write_text("x")
    return [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--limit", "1", "--out", str(work / "run-file")]


@case("eval-out-other-model", "run.json")
def _(work):
    run = work / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": "other", "model_id": {"spec": "other"},
                                              "prompt_template": "x", "generation": {}}))
    return [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--limit", "1", "--out", str(run)]


@case("eval-missing-model-dir", "no-such-model")
def _(work):
    return ["eval", "--model", str(work / "no-such-model"), "--offline", "--data-dir", str(mgsm_data(work)),
            "--langs", "de", "--out", str(work / "run")]


# ------------------------------------------------------------------ score


def prediction_file(work: Path, lines: list[bytes]) -> Path:
    path = work / "pred.jsonl"
    path.write_bytes(b"".join(lines))
    return path


GOOD = json.dumps({"id": "de-0", "task": "mgsm", "lang": "de", "output": "The answer is 3", "gold": "3",
                   "extracted": "3", "correct": True}).encode() + b"\n"
NO_OUTPUT = json.dumps({"id": "de-1", "task": "mgsm", "lang": "de", "gold": "3"}).encode() + b"\n"

case("score-record-without-output", "pred.jsonl:2")(
    lambda work: ["score", str(prediction_file(work, [GOOD, NO_OUTPUT]))])
case("score-dry-run-without-output-and-truncated", "pred.jsonl:2")(
    lambda work: ["score", "--dry-run", str(prediction_file(work, [GOOD, NO_OUTPUT, b'{"id": "de-2", "tas']))])
case("score-malformed-line", "pred.jsonl:2")(
    lambda work: ["score", str(prediction_file(work, [GOOD, b"{not json}\n"]))])
case("score-record-without-id", "pred.jsonl:1")(
    lambda work: ["score", str(prediction_file(work, [b'{"task": "mgsm"}\n']))])
case("score-unknown-task", "pred.jsonl")(
    lambda work: ["score", str(prediction_file(work, [GOOD.replace(b'"mgsm"', b'"bogus"')]))])
case("score-missing-file", "nope.jsonl")(lambda work: ["score", str(work / "nope.jsonl")])
case("score-not-a-run-dir", "empty-dir")(lambda work: (work / "empty-dir").mkdir() or ["score", str(work / "empty-dir")])
case("score-bootstrap-0", "--bootstrap")(
    lambda work: ["score", "--bootstrap", "0", str(prediction_file(work, [GOOD]))])


# ------------------------------------------------------------------ codeswitch


def cs(work: Path, *extra: str, input_text: str | bytes | None = None, lexicon: str | None = None) -> list[str]:
    source = work / "in.jsonl"
    if input_text is None:
        write_instructions(source, repeat=1)
    else:
        source.write_bytes(input_text if isinstance(input_text, bytes) else input_text.encode())
    (work / "en-de.tsv").write_text(lexicon if lexicon is not None else "apples\täpfel\n", encoding="utf-8")
    argv = ["codeswitch", "--input", str(source), "--output", str(work / "out.jsonl"),
            "--lexicons", f"de={work / 'en-de.tsv'}"]
    return argv + list(extra)


def _replace(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


case("codeswitch-empty-input", "in.jsonl")(lambda work: cs(work, input_text=""))
case("codeswitch-input-not-utf8", "in.jsonl:1")(lambda work: cs(work, input_text=b'{"question": "\xff"}\n'))
case("codeswitch-input-malformed", "in.jsonl:1")(lambda work: cs(work, input_text="{oops\n"))
case("codeswitch-input-missing-question", "in.jsonl:1")(lambda work: cs(work, input_text='{"answer": "1"}\n'))
case("codeswitch-missing-input", "in.jsonl")(
    lambda work: _replace(cs(work), "--input", str(work / "missing" / "in.jsonl")))
case("codeswitch-ratio-1.5", "ratio")(lambda work: cs(work, "--ratio", "1.5"))
case("codeswitch-ratio-negative", "ratio")(lambda work: cs(work, "--ratio", "-0.5"))
case("codeswitch-lexicons-no-equals", "--lexicons")(lambda work: _replace(cs(work), "--lexicons", "de"))
case("codeswitch-lexicon-missing", "nowhere.tsv")(
    lambda work: _replace(cs(work), "--lexicons", f"de={work / 'nowhere.tsv'}"))
case("codeswitch-lexicon-malformed", "en-de.tsv:1")(lambda work: cs(work, lexicon="only-one-column\n"))
case("codeswitch-lexicon-bad-rank", "en-de.tsv:1")(lambda work: cs(work, lexicon="a\tb\tfirst\n"))
case("codeswitch-weights-negative", "weights")(lambda work: cs(work, "--weights", "de=-1"))
case("codeswitch-weights-not-a-number", "--weights")(lambda work: cs(work, "--weights", "de=heavy"))
case("codeswitch-output-below-a-file", "blocker")(
    lambda work: (work / "blocker").write_text("x") and _replace(cs(work), "--output", str(work / "blocker" / "o.jsonl")))


def _disk_full(monkeypatch):
    from lingualift import io as lio

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lio.os, "fsync", full)


case("codeswitch-disk-full", "out.jsonl", patch=_disk_full)(lambda work: cs(work))


# ------------------------------------------------------------------ lexicon

case("lexicon-show-missing", "nope.tsv")(lambda work: ["lexicon", "show", str(work / "nope.tsv")])
case("lexicon-show-malformed-tsv", "en-de.tsv:2")(
    lambda work: (work / "en-de.tsv").write_text("a\tb\nbroken\n") and ["lexicon", "show", str(work / "en-de.tsv")])
case("lexicon-show-malformed-muse", "en-de.txt:1")(
    lambda work: (work / "en-de.txt").write_text("three words here\n") and ["lexicon", "show", str(work / "en-de.txt")])
case("lexicon-show-not-utf8", "en-de.tsv:1")(
    lambda work: (work / "en-de.tsv").write_bytes(b"a\t\xff\n") and ["lexicon", "show", str(work / "en-de.tsv")])
case("lexicon-eval-missing-lexicon", "nope.tsv")(
    lambda work: ["lexicon", "eval", "--lexicon", str(work / "nope.tsv"), "--reference", str(work / "nope2.tsv")])
case("lexicon-induce-empty-langs", "--langs")(
    lambda work: ["lexicon", "induce", "--langs", ",", "--out", str(work / "lex")])
case("lexicon-induce-words-0", "--words")(
    lambda work: ["lexicon", "induce", "--langs", "de", "--words", "0", "--out", str(work / "lex")])
case("lexicon-induce-drop-foreign-unknown", "--drop-foreign")(
    lambda work: ["lexicon", "induce", "--langs", "sw", "--drop-foreign", "en,xx", "--out", str(work / "lex")])
case("lexicon-induce-reference-other-language", "--reference")(
    lambda work: ["lexicon", "induce", "--langs", "sw", "--reference", "te=none.tsv", "--out", str(work / "lex")])
case("lexicon-wordlist-unknown-language", "'xx'")(
    lambda work: ["lexicon", "wordlist", "--langs", "xx", "--out", str(work / "lists")])
case("lexicon-wordlist-words-0", "--words")(
    lambda work: ["lexicon", "wordlist", "--langs", "sw", "--words", "0", "--out", str(work / "lists")])


# ------------------------------------------------------------------ diagnose, assets, bench

for flags, place in [(["--limit", "0"], "--limit"), (["--batch-size", "0"], "--batch-size"),
                     (["--retrieval-limit", "0"], "--retrieval-limit")]:
    case(f"diagnose-{'-'.join(flags)}", place)(
        lambda work, flags=flags: ["diagnose", "--model", "tiny-llama", "--out", str(work / "diag"), *flags])

for flags, place in [(["--limit", "0"], "--limit"), (["--max-new-tokens", "0"], "--max-new-tokens"),
                     (["--langs", "en,xx"], "--langs"), (["--bootstrap", "0"], "--bootstrap")]:
    case(f"fidelity-{'-'.join(flags)}", place)(
        lambda work, flags=flags: ["fidelity", "--model", "tiny-llama", "--out", str(work / "fid"), *flags])


def mmwp_unparallel(work: Path) -> list[str]:
    (work / "data" / "mmwp").mkdir(parents=True)
    for lang, rows in (("en", 3), ("sw", 2)):
        items = [{"question": f"Tom has {i} pens.", "answer": str(i)} for i in range(rows)]
        (work / "data" / "mmwp" / f"test_{lang}.json").write_text(json.dumps(items), encoding="utf-8")
    return ["fidelity", "--model", "tiny-llama", "--data-dir", str(work / "data"), "--langs", "sw", "--offline",
            "--out", str(work / "fid"), "--no-progress"]


case("fidelity-files-not-parallel", "mmwp sw has 2 questions")(mmwp_unparallel)
case("assets-unknown", "unknown asset")(lambda work: ["assets", "bogus-model"])
case("bench-unknown-stage", "--stages")(
    lambda work: ["bench", "--stages", "bogus", "--output", str(work / "bench"), "--device", "cpu"])
case("bench-batch-size-0", "--batch-size")(
    lambda work: ["bench", "--batch-size", "0", "--output", str(work / "bench"), "--device", "cpu"])
case("bench-layers-without-paper-shapes", "--layers")(
    lambda work: ["bench", "--layers", "2", "--output", str(work / "bench"), "--device", "cpu"])


# ------------------------------------------------------------------ pipeline


def pipe(work: Path, *extra: str, out: Path | None = None) -> list[str]:
    from test_pipeline import write_data

    data = work / "data"
    if not data.exists():
        write_data(data)
    return ["pipeline", str(TINY_PIPELINE), "--data-dir", str(data), "--output-dir", str(out or work / "out"),
            "--no-progress", *extra]


for override, place in [
    ("bogus=1", "bogus"),
    ("threads=0", "threads"),
    ("evaluation.batch_size=0", "evaluation.batch_size"),
    ("evaluation.mgsm.limit=0", "evaluation.mgsm.limit"),
    ("data.stage1_examples=0", "data.stage1_examples"),
    ("stage1.training.max_steps=0", "training.max_steps"),
    ("stage1.training.log_every=0", "training.log_every"),
    ("stage1.training.learning_rate=-1", "training.learning_rate"),
    ("stage2.model.llm=tiny-llama", "stage2.model.llm"),
    ("lexicons.languages=[]", "lexicons.languages"),
    ("lexicons.induced=[sw]", "lexicons.induced"),
    ("diagnose.reference_llm=maybe", "diagnose.reference_llm"),
    ("evaluation.backend=tgi", "evaluation.backend"),
    ("data.codeswitch.ratio=2", "data.codeswitch.ratio"),
    ("data.codeswitch.weights={de: 1}", "data.codeswitch: weights"),
    ("stage1.data.codeswitch={ratio: 0.5}", "stage1: data.codeswitch"),
]:
    case(f"pipeline-set-{override}", place)(lambda work, override=override: pipe(work, "--set", override))


case("pipeline-dry-run-bad-config", "evaluation.mgsm.limit")(
    lambda work: pipe(work, "--dry-run", "--set", "evaluation.mgsm.limit=0"))


@case("pipeline-dry-run-foreign-output-dir", "was not made by the pipeline")
def _(work):
    (work / "project").mkdir()
    (work / "project" / "config.yaml").write_text("mine: true\n")
    return pipe(work, "--dry-run", out=work / "project")


@case("pipeline-foreign-output-dir", "was not made by the pipeline")
def _(work):
    (work / "project").mkdir()
    (work / "project" / "config.yaml").write_text("mine: true\n")
    return pipe(work, out=work / "project")


@case("pipeline-output-dir-is-a-file", "out-file")
def _(work):
    (work / "out-file").write_text("x")
    return pipe(work, out=work / "out-file")


@case("pipeline-config-not-found", "nope.yaml")
def _(work):
    return ["pipeline", str(work / "nope.yaml"), "--output-dir", str(work / "out")]


@case("pipeline-data-dir-missing", "data directory not found")
def _(work):
    return ["pipeline", str(TINY_PIPELINE), "--data-dir", str(work / "nodata"), "--output-dir", str(work / "out")]


@case("pipeline-data-dir-incomplete", "lacks mgsm")
def _(work):
    argv = pipe(work)
    os.remove(work / "data" / "mgsm" / "mgsm_de.tsv")
    return argv


# ------------------------------------------------------------------ the runner


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def check_error(rc: int, err: str, place: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert place in errors[0], errors[0]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A work folder to snapshot, with the cache and the working directory kept outside it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LINGUALIFT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return work


def test_there_are_at_least_100_cases():
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)
    covered = {c.name.split("-")[0] for c in CASES}
    assert covered >= {"train", "generate", "lexicon", "codeswitch", "eval", "score", "diagnose", "fidelity", "assets",
                       "bench", "pipeline"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_is_one_clean_error(isolated, capsys):
    locked = isolated / "locked"
    locked.mkdir()
    argv = cs(isolated)
    argv = _replace(argv, "--output", str(locked / "out.jsonl"))
    locked.chmod(0o555)
    try:
        before = snapshot(isolated)
        rc = main(argv)
        check_error(rc, capsys.readouterr().err, str(locked))
        assert snapshot(isolated) == before
    finally:
        locked.chmod(0o755)


def test_read_only_file_system_message_names_the_path(isolated, monkeypatch, capsys):
    """EROFS / EACCES (a read-only mount) as the OS reports it, on any machine (root included)."""
    from lingualift import io as lio

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(isolated / "out.jsonl"))

    argv = cs(isolated)
    before = snapshot(isolated)
    monkeypatch.setattr(lio.tempfile, "mkstemp", read_only)
    rc = main(argv)
    monkeypatch.undo()
    check_error(rc, capsys.readouterr().err, "out.jsonl")
    assert snapshot(isolated) == before


SUBPROCESS_CASES = ["train-set-training.log_every=0", "eval---tasks-", "score-record-without-output",
                    "codeswitch-input-not-utf8"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_as_a_real_subprocess(name, isolated):
    case = next(c for c in CASES if c.name == name)
    argv = case.setup(isolated)
    before = snapshot(isolated)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "lingualift", *argv], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, cwd=isolated.parent)
    check_error(result.returncode, result.stderr, case.place)
    assert snapshot(isolated) == before


# ------------------------------------------------------------------ issue 26: no unbounded inputs, no late failures

def billion_laughs(indent: str) -> str:
    """Nine nested levels of nine aliases each: under 1 KB of YAML that expands to 9**9 (387 million) values."""
    lines = [f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@case("train-billion-laughs-in-alignment-kwargs", "config.yaml:")
def _(work):
    path = train_yaml(work)
    text = path.read_text(encoding="utf-8").replace("model:\n", "model:\n  alignment_kwargs:\n"
                                                    + billion_laughs("    "), 1)
    path.write_text(text, encoding="utf-8")
    return ["train", str(path)]


@case("pipeline-dry-run-billion-laughs-in-a-stage-block", "pipe.yaml:")
def _(work):
    text = TINY_PIPELINE.read_text(encoding="utf-8").replace(
        "  model: {alignment: mlp, encoder_max_length: 128}\n",
        "  model:\n    alignment: mlp\n    alignment_kwargs:\n" + billion_laughs("      "), 1)
    (work / "pipe.yaml").write_text(text, encoding="utf-8")
    argv = pipe(work, "--dry-run")
    argv[argv.index(str(TINY_PIPELINE))] = str(work / "pipe.yaml")
    return argv


@case("train-recursive-yaml-alias", "config.yaml:")
def _(work):
    path = train_yaml(work)
    path.write_text(path.read_text(encoding="utf-8") + "loop: &loop [*loop]\n", encoding="utf-8")
    return ["train", str(path)]


case_set_bomb = "{a: &a [x, x, x, x, x, x, x, x, x], b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], " + ", ".join(
    f"{chr(99 + i)}: &{chr(99 + i)} [{', '.join([f'*{chr(98 + i)}'] * 9)}]" for i in range(7)) + "}"
case("train-set-billion-laughs", "--set model.alignment_kwargs")(
    train_set(f"model.alignment_kwargs={case_set_bomb}"))
case("train-set-invalid-yaml-value", "--set training.max_steps")(train_set("training.max_steps=[1,"))


case("pipeline-unknown-llm", "models.llm")(lambda work: pipe(work, "--set", "models.llm=no-such-llm"))
case("pipeline-dry-run-unknown-llm", "models.llm")(
    lambda work: pipe(work, "--dry-run", "--set", "models.llm=no-such-llm"))
case("pipeline-unknown-encoder-in-stage1", "stage1.model.encoder")(
    lambda work: pipe(work, "--set", "stage1.model.encoder=no-such-encoder"))
case("pipeline-preset-without-the-role", "models.llm")(
    lambda work: pipe(work, "--set", "models.llm=tiny-bert"))


def _without_vllm(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "vllm" else real_find_spec(name, *args))


case("pipeline-vllm-backend-missing", "evaluation.backend", patch=_without_vllm)(
    lambda work: pipe(work, "--set", "evaluation.backend=vllm"))
case("pipeline-dry-run-vllm-backend-missing", "evaluation.backend", patch=_without_vllm)(
    lambda work: pipe(work, "--dry-run", "--set", "evaluation.backend=vllm"))


@case("push-dry-run-no-llm-weights", "llm")
def _(work):
    final = saved_checkpoint(work)
    (final / "llm" / "model.safetensors").unlink()
    return ["push", "--dry-run", str(final), "someone/model"]


@case("push-dry-run-no-tokenizer", "llm_tokenizer")
def _(work):
    import shutil

    final = saved_checkpoint(work)
    shutil.rmtree(final / "llm_tokenizer")
    return ["push", "--dry-run", str(final), "someone/model"]


case("push-dry-run-invalid-repo-id", "a/b/c")(
    lambda work: ["push", "--dry-run", str(saved_checkpoint(work)), "a/b/c"])


def eval_run_dir(work: Path, run_json: str) -> Path:
    run = work / "run"
    (run / "predictions" / "mgsm").mkdir(parents=True)
    (run / "predictions" / "mgsm" / "de.jsonl").write_bytes(GOOD.replace(b'"correct": true', b'"correct": false'))
    (run / "run.json").write_text(run_json, encoding="utf-8")
    return run


case("score-malformed-run-json", "run.json")(lambda work: ["score", str(eval_run_dir(work, '{"model": '))])
case("score-run-json-not-an-object", "run.json")(lambda work: ["score", str(eval_run_dir(work, "[1, 2]"))])
case("score-non-numeric-gold", "pred.jsonl: record 'de-0': gold answer 'three'")(
    lambda work: ["score", str(prediction_file(work, [GOOD.replace(b'"gold": "3"', b'"gold": "three"')]))])


def _no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


case("eval-empty-stop-string", "--stop")(
    lambda work: [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--out", str(work / "run"), "--stop", ""])
case("generate-empty-stop-string", "--stop")(lambda work: ["generate", "--model", "tiny-llama", "q?",
                                                                   "--stop", ""])
case("eval-device-cuda-without-cuda", "--device cuda", patch=_no_cuda)(
    lambda work: [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--out", str(work / "run"),
                  "--device", "cuda"])
case("diagnose-device-cuda-without-cuda", "--device cuda:1", patch=_no_cuda)(
    lambda work: ["diagnose", "--model", "tiny-llama", "--out", str(work / "diag"), "--device", "cuda:1"])
case("fidelity-device-cuda-without-cuda", "--device cuda", patch=_no_cuda)(
    lambda work: ["fidelity", "--model", "tiny-llama", "--out", str(work / "fid"), "--device", "cuda"])
case("fidelity-device-not-a-device", "--device gpu0")(
    lambda work: ["fidelity", "--model", "tiny-llama", "--out", str(work / "fid"), "--device", "gpu0"])
case("eval-device-not-a-device", "--device gpu0")(
    lambda work: [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--out", str(work / "run"),
                  "--device", "gpu0"])
case("bench-device-cuda-without-cuda", "--device cuda", patch=_no_cuda)(
    lambda work: ["bench", "--output", str(work / "bench"), "--device", "cuda"])


class _RunsCode:
    """Unpickling this would call print: what a crafted pytorch_model.bin does with os.system."""

    def __reduce__(self):
        return (print, ("unpickled",))


@case("generate-pickle-weights-refused", "pickle weights")
def _(work):
    import torch

    from lingualift.model import components

    model, tokenizer = components.load_component("tiny-llama", "llm")
    model.config.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    torch.save({"model.embed_tokens.weight": _RunsCode()}, work / "model" / "pytorch_model.bin")
    return ["generate", "--model", str(work / "model"), "q?"]


def test_a_full_disk_while_saving_safetensors_is_one_line(isolated, monkeypatch, capsys):
    """safetensors raises its own error type (not an OSError) for a failed write; the final folder stays absent."""
    from safetensors import SafetensorError

    from lingualift.model import modeling

    def disk_full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(modeling, "save_file", disk_full)
    rc = main(["train", str(train_yaml(isolated))])
    check_error(rc, capsys.readouterr().err, str(isolated / "lingualift-align" / "final"))
    run = isolated / "lingualift-align"
    assert not (run / "final").exists() and not list(run.glob(".final.*"))


case("codeswitch-output-is-the-input", "--output")(
    lambda work: _replace(cs(work), "--output", str(work / "in.jsonl")))
case("codeswitch-output-is-a-lexicon", "--lexicons de")(
    lambda work: _replace(cs(work), "--output", str(work / "en-de.tsv")))
case("diagnose-nothing-to-measure", "nothing to measure")(
    lambda work: ["diagnose", "--model", "tiny-llama", "--out", str(work / "diag"), "--langs", "none",
                  "--retrieval-langs", "none"])


case("train-unknown-alignment", "config.yaml: model.alignment")(train_set("model.alignment=bogus"))
case("train-unknown-alignment-option", "config.yaml: model.alignment_kwargs.bogus")(
    train_set("model.alignment_kwargs={bogus: 1}"))
case("pipeline-unknown-alignment-in-stage1", "stage1: model.alignment")(
    lambda work: pipe(work, "--set", "stage1.model.alignment=bogus"))


@case("eval-out-is-a-folder-of-user-data", "run: holds files an evaluation run does not write (notes.txt)")
def _(work):
    (work / "run").mkdir()
    (work / "run" / "notes.txt").write_text("my notes")
    return [*EVAL, "--data-dir", str(mgsm_data(work)), "--langs", "de", "--limit", "1", "--out", str(work / "run")]


@case("train-output-dir-is-a-folder-of-user-data", "training.output_dir")
def _(work):
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("chapter 1")
    return ["train", str(train_yaml(work, training={"output_dir": str(work / "mine")}))]


def folder_of_user_data(work: Path) -> Path:
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("my notes")
    return work / "mine"


case("diagnose-out-is-a-folder-of-user-data", "--out")(
    lambda work: ["diagnose", "--model", "tiny-llama", "--out", str(folder_of_user_data(work))])
case("fidelity-out-is-a-folder-of-user-data", "--out")(
    lambda work: ["fidelity", "--model", "tiny-llama", "--out", str(folder_of_user_data(work))])
case("lexicon-wordlist-out-is-a-folder-of-user-data", "--out")(
    lambda work: ["lexicon", "wordlist", "--langs", "sw", "--words", "10", "--out", str(folder_of_user_data(work))])
case("lexicon-induce-out-is-a-folder-of-user-data", "--out")(
    lambda work: ["lexicon", "induce", "--langs", "de", "--out", str(folder_of_user_data(work))])
case("bench-output-is-a-folder-of-user-data", "--output")(
    lambda work: ["bench", "--output", str(folder_of_user_data(work)), "--device", "cpu"])


@case("generate-damaged-lora-adapter-config", "llm_adapter: unreadable LoRA adapter")
def _(work):
    from peft import LoraConfig, get_peft_model

    model = tiny_model()
    model.llm = get_peft_model(model.llm, LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(work / "lora", include_frozen=False)
    (work / "lora" / "llm_adapter" / "adapter_config.json").write_text("{oops", encoding="utf-8")
    return ["generate", "--model", str(work / "lora"), "q?"]


# the page (`lingualift demo`): every flag is checked before Gradio is imported, a model loads or the server starts


def _without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


case("demo-port-out-of-range", "--port 70000")(lambda work: ["demo", "--port", "70000"])
case("demo-port-negative", "--port -1")(lambda work: ["demo", "--port", "-1"])
case("demo-host-unresolvable", "--host 'no-such-host.invalid'")(
    lambda work: ["demo", "--host", "no-such-host.invalid"])
case("demo-host-not-of-this-machine", "--host 192.0.2.1")(  # TEST-NET-1: never a local address
    lambda work: ["demo", "--host", "192.0.2.1", "--port", "7860"])
case("demo-device-cuda-without-cuda", "--device cuda", patch=_without_cuda)(
    lambda work: ["demo", "--device", "cuda"])
case("demo-dtype-unknown", "--dtype int3")(lambda work: ["demo", "--dtype", "int3"])
case("demo-prompt-template-unknown", "--prompt-template")(lambda work: ["demo", "--prompt-template", "oops"])
case("demo-model-missing-folder", "--model")(lambda work: ["demo", "--model", str(work / "no-such-model")])
case("demo-model-empty", "--model")(lambda work: ["demo", "--model", " "])
case("demo-model-is-a-folder-of-user-data", "--model")(
    lambda work: ["demo", "--model", str(folder_of_user_data(work))])
case("demo-pipeline-dir-missing", "--pipeline-dir")(
    lambda work: ["demo", "--pipeline-dir", str(work / "no-such-run")])
case("demo-pipeline-dir-not-a-pipeline-run", "--pipeline-dir")(
    lambda work: ["demo", "--pipeline-dir", str(folder_of_user_data(work))])
case("demo-runs-is-a-file", "--runs")(
    lambda work: ["demo", "--runs", str(mgsm_data(work) / "mgsm" / "mgsm_de.tsv")])
case("demo-data-dir-missing", "data directory not found")(
    lambda work: ["demo", "--data-dir", str(work / "no-such-data")])


@case("demo-model-is-a-file", "--model")
def _(work):
    (work / "model.safetensors").write_bytes(b"not weights")
    return ["demo", "--model", str(work / "model.safetensors")]


@case("demo-model-is-a-step-checkpoint", "step checkpoint")
def _(work):
    (work / "step-10").mkdir()
    (work / "step-10" / "trainer_state.json").write_text('{"step": 10}', encoding="utf-8")
    return ["demo", "--model", str(work / "step-10")]


def test_demo_port_in_use_is_one_clean_error(isolated, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = snapshot(isolated)
        rc = main(["demo", "--host", "127.0.0.1", "--port", str(port), "--runs", str(isolated)])
    check_error(rc, capsys.readouterr().err, f"--port {port}: already in use")
    assert snapshot(isolated) == before


# ------------------------------------------------------------------ the llama.cpp backend (issue 27)
@case("eval-llamacpp-unknown-precision", "--precision")
def _(work):
    return [*EVAL, "--backend", "llamacpp", "--precision", "q4_0", "--data-dir", str(mgsm_data(work)),
            "--langs", "de", "--out", str(work / "run")]


@case("eval-precision-without-llamacpp", "--precision")
def _(work):
    return [*EVAL, "--precision", "f16", "--data-dir", str(mgsm_data(work)), "--langs", "de",
            "--out", str(work / "run")]


@case("bench-llamacpp-unknown-precision", "--llamacpp-precisions")
def _(work):
    return ["bench", "--backend", "llamacpp", "--llamacpp-precisions", "q4_0", "--output", str(work / "bench.json")]


@case("eval-llamacpp-unconvertible-model", "converter cannot take this model")
def _(work):
    require_module("llama_cpp", "llama-cpp-python", "bash scripts/llamacpp_env.sh")
    from lingualift.model import components

    model, tokenizer = components.load_component("tiny-llama", components.LLM)
    model.save_pretrained(work / "odd-llm")
    tokenizer.save_pretrained(work / "odd-llm")
    config = json.loads((work / "odd-llm" / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = ["NoSuchArchitectureForCausalLM"]  # a model llama.cpp's converter does not know
    (work / "odd-llm" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return ["eval", "--model", str(work / "odd-llm"), "--backend", "llamacpp", "--precision", "f32", "--offline",
            "--no-progress", "--max-new-tokens", "2", "--data-dir", str(mgsm_data(work)), "--langs", "de",
            "--out", str(work / "run")]


# Declared last: pytest reads CASES at collection, so every case registered anywhere above runs here.
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)  # read at collection: every case in the file
def test_bad_input_is_one_clean_error(case, isolated, monkeypatch, capsys):
    argv = case.setup(isolated)
    before = snapshot(isolated)
    if case.patch:
        case.patch(monkeypatch)
    rc = main(argv)
    err = capsys.readouterr().err
    monkeypatch.undo()
    check_error(rc, err, case.place)
    assert snapshot(isolated) == before, "a file was left behind or changed"
