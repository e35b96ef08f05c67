"""The end-to-end pipeline on tiny random models and tiny data fixtures in the public layouts:
every phase runs, the report is written, a second run skips what is up to date, bad input exits 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from lingualift.cli import main
from lingualift.pipeline.cache import STATE_FILE
from lingualift.pipeline.config import PHASES, Layout, PipelineConfig, load_pipeline_config, stage_config
from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "src" / "lingualift" / "configs" / "pipeline" / "tiny.yaml"
DEFAULT = REPO / "src" / "lingualift" / "configs" / "pipeline" / "default.yaml"

WORDS = {"de": {"how": "wie", "many": "viele", "apples": "äpfel", "she": "sie", "has": "hat", "buys": "kauft"},
         "fr": {"how": "comment", "many": "beaucoup", "apples": "pommes", "she": "elle", "has": "a", "buys": "achète"}}


def write_data(root: Path) -> Path:
    """GSM8K train/test, MGSM (11 languages), MMWP (48 languages) and two MUSE dictionaries, a few rows each."""
    for sub in ("gsm8k", "mgsm", "mmwp", "muse"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    train = [{"question": f"She has {i} apples and buys {i + 1} more. How many apples does she have?",
              "answer": f"She has {i} + {i + 1} = <<{i}+{i + 1}={2 * i + 1}>>{2 * i + 1} apples.\n#### {2 * i + 1}"}
             for i in range(12)]
    (root / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    test = [{"question": f"Tom has {i} pens and gets {i} more. How many?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"}
            for i in range(4)]
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test), encoding="utf-8")
    for lang in MGSM_LANGUAGES:
        rows = [f"[{lang}] Tom has {i} pens and gets {i} more. How many?\t{2 * i}" for i in range(4)]
        (root / "mgsm" / f"mgsm_{lang}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for lang in MMWP_LANGUAGES:
        items = [{"question": f"[{lang}] {i} birds and {i} more birds. How many birds?", "answer": f"{2 * i} "}
                 for i in range(3)]
        (root / "mmwp" / f"test_{lang}.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    for lang, words in WORDS.items():
        (root / "muse" / f"en-{lang}.txt").write_text("".join(f"{en} {xx}\n" for en, xx in words.items()),
                                                      encoding="utf-8")
    return root


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LINGUALIFT_DATA_DIR", raising=False)
    return write_data(tmp_path / "data")


def _state(out: Path) -> dict:
    return json.loads((out / STATE_FILE).read_text(encoding="utf-8"))


def _run(out: Path, data_dir: Path, *extra: str) -> int:
    return main(["pipeline", str(TINY), "--data-dir", str(data_dir), "--output-dir", str(out), "--no-progress", *extra])


def test_pipeline_end_to_end_then_skips_done_phases(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    assert _run(out, data_dir) == 0
    first = capsys.readouterr().out
    assert f"data directory: {data_dir.resolve()} (--data-dir)" in first
    state = _state(out)
    assert [name for name in PHASES if state["phases"][name]["status"] == "done"] == list(PHASES)
    assert state["last_run"]["phases"] == {name: "ran" for name in PHASES}
    for name in ("report.md", "report.json", "report.png", "training.png", "config.yaml", "eval/results.json",
                 "diagnose/diagnose.json", "diagnose/reference_llm.json", "data/stage1.jsonl", "data/stage2.jsonl",
                 "lexicons/en-de.tsv", "runs/stage1/final/config.json", "runs/stage2/final/config.json"):
        assert (out / name).exists(), name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Phases and timings", "## Training", "## Evaluation", "## Transfer diagnostic",
                    "### mgsm per language", "### mmwp per language", "## Effective configuration"):
        assert heading in report
    results = json.loads((out / "eval" / "results.json").read_text(encoding="utf-8"))
    assert set(results["tasks"]["mgsm"]["languages"]) == set(MGSM_LANGUAGES)
    assert set(results["tasks"]["mmwp"]["languages"]) == set(MMWP_LANGUAGES)
    assert set(results["tasks"]["mmwp"]["tiers"]) == {"high", "medium", "low"}
    assert all(v["n"] == 2 for v in results["tasks"]["mgsm"]["languages"].values())
    diagnosis = json.loads((out / "diagnose" / "diagnose.json").read_text(encoding="utf-8"))
    assert set(diagnosis["transfer"]["languages"]) == set(MGSM_LANGUAGES)
    assert {"gain", "gain_mismatched", "transfer_ratio"} <= set(diagnosis["transfer"]["languages"]["de"])

    # Stage-1 data is code-switched with the fixture lexicons; stage 2 keeps English with clean solutions.
    stage1 = [json.loads(line) for line in (out / "data" / "stage1.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(stage1) == 12  # stage1_examples is 16 but the fixture has 12 rows
    assert any(r["question"] != r["source_question"] for r in stage1)
    stage2 = [json.loads(line) for line in (out / "data" / "stage2.jsonl").read_text(encoding="utf-8").splitlines()]
    assert stage2[0]["answer"].endswith("The answer is: 1") and "<<" not in stage2[0]["answer"]

    final = out / "runs" / "stage1" / "final" / "config.json"
    stamp = final.stat().st_mtime_ns
    assert _run(out, data_dir) == 0
    second = capsys.readouterr().out
    assert "ran: nothing" in second
    assert _state(out)["last_run"]["phases"] == {name: "cached" for name in PHASES}
    assert final.stat().st_mtime_ns == stamp

    # A changed evaluation setting reruns evaluation and the report only.
    assert _run(out, data_dir, "--set", "evaluation.mmwp.limit=2") == 0
    capsys.readouterr()
    ran = {name for name, status in _state(out)["last_run"]["phases"].items() if status == "ran"}
    assert ran == {"evaluate", "report"}
    results = json.loads((out / "eval" / "results.json").read_text(encoding="utf-8"))
    assert all(v["n"] == 2 for v in results["tasks"]["mmwp"]["languages"].values())
    assert final.stat().st_mtime_ns == stamp

    # --force reruns everything.
    assert _run(out, data_dir, "--force", "--until", "lexicons") == 0
    capsys.readouterr()
    assert _state(out)["last_run"]["phases"] == {"assets": "ran", "lexicons": "ran"}


def test_missing_data_dir_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LINGUALIFT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data and no ../shared/data here
    assert main(["pipeline", str(TINY), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no data directory") and "--data-dir" in err and "\n" not in err
    assert main(["pipeline", str(TINY), "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data directory not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_incomplete_data_dir_and_bad_config_exit_2(tmp_path, data_dir, capsys):
    os.remove(data_dir / "mmwp" / "test_sw.json")
    assert _run(tmp_path / "out", data_dir) == 2
    err = capsys.readouterr().err
    assert "lacks mmwp/test_sw.json" in err and "--data-dir" in err
    assert _run(tmp_path / "out", data_dir, "--set", "lexicons.languages=[de,sw]") == 2
    assert "MUSE has no dictionary for sw" in capsys.readouterr().err
    assert _run(tmp_path / "out", data_dir, "--set", "stage1.training.max_stepz=3") == 2
    assert "did you mean training.max_steps" in capsys.readouterr().err
    assert _run(tmp_path / "out", data_dir, "--set", "evaluation.mgsm.languages=[en,xx]") == 2
    assert "unknown language(s) xx" in capsys.readouterr().err


def test_never_deletes_folders_it_did_not_make(tmp_path, data_dir, capsys):
    victim = tmp_path / "project"
    (victim / "data").mkdir(parents=True)
    (victim / "data" / "precious.txt").write_text("keep me")
    assert _run(victim, data_dir) == 2
    assert "was not made by the pipeline" in capsys.readouterr().err
    assert (victim / "data" / "precious.txt").read_text() == "keep me"


def test_default_config_is_valid_and_covers_all_languages():
    config = load_pipeline_config(DEFAULT)
    assert config.to_dict() == PipelineConfig().to_dict() == load_pipeline_config().to_dict()
    assert (config.models.encoder, config.models.llm) == ("default", "default")
    assert config.evaluation.mgsm.languages == "all" and config.evaluation.mmwp.languages == "all"
    assert not {"sw", "te"} & set(config.lexicons.languages)


def test_qwen_config_is_the_round_two_stage_one(tmp_path):
    """The packaged qwen05b recipe is the stage 1 measured best in experiments/qwen05b (README, "Round 2")."""
    config = load_pipeline_config("qwen05b")
    stage1 = stage_config(config, "stage1", Layout(tmp_path))
    assert (stage1.training.objective, stage1.training.lexical_cache, stage1.model.encoder_split_digits) == \
        ("lexical", True, True)
    assert stage1.training.max_steps * stage1.training.lexical_batch_size >= 99_840
    assert {"bn", "te", "sw", "ta", "ne", "mr", "kn"} <= set(config.lexicons.languages)  # MMWP's low tier
    assert set(config.lexicons.induced) == {"te", "sw", "ne", "mr", "kn"}  # the ones MUSE lacks


def test_set_on_a_stage_block_changes_the_block_in_effect():
    config = load_pipeline_config(None, ["stage1.training.max_steps=500"])
    assert config.stage1["training"]["max_steps"] == 500 and config.stage1["model"]["warm_start"] == "lexical"
    tiny = load_pipeline_config(TINY, ["stage1.training.max_steps=5"])
    assert tiny.stage1["training"]["max_steps"] == 5 and "warm_start" not in tiny.stage1["model"]


def _dry_run(out: Path, data_dir: Path, capsys, *extra: str) -> dict[str, str]:
    """Phase → its dry-run line (`run  <why>` or `reuse  up to date`); also checks that the config is printed."""
    assert _run(out, data_dir, "--dry-run", *extra) == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["models"] == {"encoder": "tiny-bert", "llm": "tiny-llama"} and config["output_dir"] == str(out)
    lines = [line.split(None, 2) for line in printed.splitlines() if line.startswith("#   ")]
    return {name: f"{action} {why}" for _, name, rest in lines for action, why in [rest.split(None, 1)]}


def test_dry_run_says_what_would_run_and_writes_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    assert _dry_run(out, data_dir, capsys) == {name: "run no previous run" for name in PHASES}
    assert not out.exists()
    assert _run(out, data_dir) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert _dry_run(out, data_dir, capsys) == {name: "reuse up to date" for name in PHASES}
    plan = _dry_run(out, data_dir, capsys, "--set", "evaluation.mgsm.limit=1")
    assert {name for name, line in plan.items() if line.startswith("run")} == {"evaluate", "report"}
    assert plan["evaluate"] == "run config changed"
    os.remove(out / "report.png")
    assert _dry_run(out, data_dir, capsys)["report"] == "run outputs missing"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == {p: t for p, t in before.items()
                                                                if p.name != "report.png"}
    assert _run(out, data_dir, "--dry-run", "--set", "evaluation.mgsm.limit=0") == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "evaluation.mgsm.limit" in err


@pytest.mark.slow
@pytest.mark.assets
def test_pipeline_on_default_models(tmp_path, shared_data, capsys):
    """The real models for a handful of steps and problems (minutes on CPU)."""
    from lingualift.tools import assets

    if not all(assets.provenance(name) for name in assets.DEFAULTS):
        pytest.skip("default models not built (run `lingualift assets`)")
    out = tmp_path / "out"
    overrides = ["stage1.training.max_steps=2", "stage2.training.max_steps=2", "data.stage1_examples=16",
                 "data.stage2_examples=16", "evaluation.mgsm.languages=[en,de]", "evaluation.mmwp.languages=[en,sw]",
                 "evaluation.max_new_tokens=8", "diagnose.languages=[en,de]", "diagnose.limit=2"]
    args = ["pipeline", str(DEFAULT), "--data-dir", str(shared_data), "--output-dir", str(out), "--no-progress"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    assert (out / "report.md").is_file() and (out / "report.png").is_file()


def test_an_llm_folder_changed_in_place_retrains_stage1(tmp_path, data_dir, capsys):
    """The stage-1 fingerprint covers the content of the models it starts from, not only their names."""
    from helpers import sharpen

    from lingualift.model import components

    def save_llm(seed: int) -> Path:
        model, tokenizer = components.load_component("tiny-llama", "llm")
        sharpen(model, seed=seed)
        model.save_pretrained(tmp_path / "llm")
        tokenizer.save_pretrained(tmp_path / "llm")
        return tmp_path / "llm"

    out = tmp_path / "out"
    llm = save_llm(seed=1)
    assert _run(out, data_dir, "--until", "stage1", "--set", f"models.llm={llm}") == 0
    capsys.readouterr()

    def stage1_plan() -> str:
        assert _run(out, data_dir, "--dry-run", "--until", "stage1", "--set", f"models.llm={llm}") == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("#   stage1"))
        return " ".join(line.split()[2:])

    assert stage1_plan() == "reuse up to date"
    save_llm(seed=2)  # same folder, same file sizes, other weights
    assert stage1_plan() == "run config changed"


def test_induced_lexicons_serve_languages_muse_lacks(tmp_path, data_dir, capsys):
    from lingualift.data.lexicon import induced_lexicon_dir, induced_lexicon_path

    out = tmp_path / "out"
    languages = ("--set", "lexicons.languages=[de,sw]", "--set", "lexicons.induced=[sw]")
    assert _run(out, data_dir, *languages, "--dry-run") == 2
    assert "no induced lexicon for sw" in capsys.readouterr().err and not induced_lexicon_dir().exists()
    assert _run(out, data_dir, *languages, "--until", "data") == 2
    err = capsys.readouterr().err
    assert "no induced lexicon for sw" in err and "scripts/lexicons.sh" in err and not out.exists()
    induced_lexicon_dir().mkdir(parents=True)
    induced_lexicon_path("sw").write_text("apples\tmatufaha\t1\nbuys\tananunua\t1\n", encoding="utf-8")
    assert _run(out, data_dir, *languages, "--until", "data") == 0
    summary = _state(out)["phases"]["lexicons"]["summary"]["languages"]
    assert summary["sw"]["source"] == "induced" and summary["sw"]["kept_words"] == 2
    assert summary["de"]["source"] == "muse"
    switched = [json.loads(line) for line in (out / "data" / "stage1.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any("matufaha" in r["question"] for r in switched if r["codeswitch"]["langs"] == ["sw"])
