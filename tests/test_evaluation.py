"""The runner: batching never changes results, killed runs resume without recomputation and end with
identical files, statistics and reports, `score`, and the CLI (errors exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import FakeGenerator

from lingualift.cli import main
from lingualift.errors import LinguaLiftError
from lingualift.eval.runner import (
    GenerationSettings, evaluate, load_run, percentile_interval, predictions_path, rescore, summarize,
)
from lingualift.eval.report import write_eval_report
from lingualift.eval.tasks import parse_task_langs


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """MGSM (3 languages × 7 items) and MMWP (4 × 5) fixtures in the public layout."""
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "mgsm").mkdir(parents=True)
    (root / "mmwp").mkdir()
    for lang in ("en", "bn", "sw"):
        rows = [f"{lang}: {i * 3} eggs, item {i}{' and more words' * (i % 3)}?\t{i * 3 + (i % 2)}" for i in range(7)]
        (root / "mgsm" / f"mgsm_{lang}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for lang in ("en", "bn", "sw", "ha"):
        items = [{"question": f"{lang} item {i}: {i} + 1?", "answer": f"{i + 1} "} for i in range(5)]
        (root / "mmwp" / f"test_{lang}.json").write_text(json.dumps(items), encoding="utf-8")
    return root


PLAN = "mgsm,mmwp"
LANGS = "en,bn,sw,ha"


def run(generator, out_dir, data_dir, batch_size=3, **kwargs):
    return evaluate(generator, parse_task_langs(PLAN, LANGS), out_dir, data_dir=data_dir, batch_size=batch_size,
                    progress=False, n_bootstrap=200, **kwargs)


def files(out_dir):
    return {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in sorted(out_dir.rglob("*.jsonl"))}


def test_batched_equals_batch_size_one(tmp_path, data_dir):
    batched = run(FakeGenerator(), tmp_path / "b4", data_dir, batch_size=4)
    single = run(FakeGenerator(), tmp_path / "b1", data_dir, batch_size=1)
    assert files(tmp_path / "b4") == files(tmp_path / "b1")
    assert batched == single
    records = load_run(tmp_path / "b4")["mgsm"]["en"]
    assert [r["id"] for r in records] == [f"en-{i}" for i in range(7)]  # original order, not length order
    assert set(records[0]) >= {"prompt", "output", "extracted", "gold", "correct"}
    assert records[0]["prompt"].startswith("Q: en: 0 eggs, item 0?")
    assert [r["correct"] for r in records] == [i % 2 == 1 for i in range(7)]


def saved_ids(out_dir):
    return {json.loads(line)["id"] for path in out_dir.rglob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()}


def test_batches_pool_languages(tmp_path, data_dir):
    """Pending questions of all languages and tasks with the same decoding options share batches, longest first."""
    generator = FakeGenerator()
    run(generator, tmp_path / "r", data_dir, batch_size=8)
    assert [len(call) for call in generator.calls] == [8, 8, 8, 8, 8, 1]  # mgsm 3 × 7 + mmwp 4 × 5
    assert len({q[:2] for q in generator.calls[0]}) > 1
    lengths = [len(q) for q in generator.calls[0]]
    assert lengths == sorted(lengths, reverse=True)


def test_killed_run_resumes_without_recomputing(tmp_path, data_dir):
    reference = run(FakeGenerator(), tmp_path / "ref", data_dir)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run(FakeGenerator(fail_after_calls=4), out, data_dir)  # four batches of 3 saved, then killed
    saved = saved_ids(out)
    assert len(saved) == 12
    partial = predictions_path(out, "mgsm", "bn")
    with open(partial, "a", encoding="utf-8") as handle:  # a write cut short by the kill
        handle.write('{"id": "bn-9", "task": "mgs')
    resumed_generator = FakeGenerator()
    resumed = run(resumed_generator, out, data_dir)
    asked = [q for call in resumed_generator.calls for q in call]
    assert len(asked) == len(set(asked)) == 3 * 7 + 4 * 5 - len(saved)  # nothing saved is asked again
    assert files(out) == files(tmp_path / "ref")
    assert resumed == reference
    again = FakeGenerator()
    run(again, out, data_dir)
    assert again.calls == []


def test_a_smaller_limit_scores_its_examples_and_keeps_the_rest(tmp_path, data_dir):
    full = run(FakeGenerator(), tmp_path / "r", data_dir)
    before = files(tmp_path / "r")
    generator = FakeGenerator()
    first = run(generator, tmp_path / "r", data_dir, limit=3)
    assert generator.calls == []
    assert first["tasks"]["mgsm"]["languages"]["en"]["n"] == 3 and full["tasks"]["mgsm"]["languages"]["en"]["n"] == 7
    assert files(tmp_path / "r") == before  # nothing computed is thrown away


def test_resume_refuses_other_settings(tmp_path, data_dir):
    run(FakeGenerator(), tmp_path / "r", data_dir)
    with pytest.raises(LinguaLiftError, match="different generation"):
        run(FakeGenerator(), tmp_path / "r", data_dir, settings=GenerationSettings(max_new_tokens=7))
    run_json = tmp_path / "r" / "run.json"
    old = json.loads(run_json.read_text())
    del old["generation"]["dtype"]  # a folder made before the precision was recorded
    run_json.write_text(json.dumps(old))
    with pytest.raises(LinguaLiftError, match="predates recording the precision"):
        run(FakeGenerator(), tmp_path / "r", data_dir)


def test_a_repeated_task_or_language_is_evaluated_once(tmp_path, data_dir):
    generator = FakeGenerator()
    results = evaluate(generator, parse_task_langs("mgsm,mgsm", "en,en,bn"), tmp_path / "r", data_dir=data_dir,
                       progress=False, n_bootstrap=10)
    asked = [q for call in generator.calls for q in call]
    assert len(asked) == len(set(asked)) == 14
    assert sorted(results["tasks"]["mgsm"]["languages"]) == ["bn", "en"]
    assert len(predictions_path(tmp_path / "r", "mgsm", "en").read_text().splitlines()) == 7


def test_corrupt_prediction_line_is_named(tmp_path, data_dir):
    run(FakeGenerator(), tmp_path / "r", data_dir)
    path = predictions_path(tmp_path / "r", "mmwp", "ha")
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[2:]]) + "\n", encoding="utf-8")
    with pytest.raises(LinguaLiftError, match=r"ha.jsonl:2: not a prediction record"):
        run(FakeGenerator(), tmp_path / "r", data_dir)


def test_summary_tiers_and_intervals(tmp_path, data_dir):
    results = run(FakeGenerator(), tmp_path / "r", data_dir)
    mgsm = results["tasks"]["mgsm"]
    assert mgsm["languages"]["en"]["accuracy"] == pytest.approx(3 / 7)
    assert mgsm["languages"]["bn"]["tier"] == "low" and mgsm["languages"]["en"]["tier"] == "high"
    assert mgsm["tiers"]["low"]["languages"] == ["bn", "sw"]
    assert mgsm["overall"]["accuracy"] == pytest.approx(3 / 7)
    low, high = mgsm["overall"]["ci95"]
    assert low <= 3 / 7 <= high and high - low < mgsm["languages"]["en"]["ci95"][1] - mgsm["languages"]["en"]["ci95"][0]
    assert results["tasks"]["mmwp"]["overall"]["accuracy"] == 1.0
    assert summarize({"mgsm": {"en": [{"correct": True}] * 4}})["tasks"]["mgsm"]["overall"]["ci95"] == [1.0, 1.0]


def test_an_interval_bound_of_zero_is_not_negative():
    # 0.3 - 0.1 - 0.2 is -2.8e-17 in floating point: a macro average of paired differences hits such sums.
    samples = np.full(100, 0.3 - 0.1 - 0.2)
    low, high = percentile_interval(samples)
    assert (low, high) == (0.0, 0.0) and f"{100 * low:+.1f}" == "+0.0"


def test_report_files(tmp_path, data_dir):
    results = run(FakeGenerator(), tmp_path / "r", data_dir)
    paths = write_eval_report(results, tmp_path / "r")
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == results
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "| mgsm |" in markdown and "| low | bn |" in markdown
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_rescore_and_score_cli(tmp_path, data_dir, capsys):
    out = tmp_path / "r"
    run(FakeGenerator(), out, data_dir)
    write_eval_report(summarize(load_run(out)), out)
    path = predictions_path(out, "mgsm", "en")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    broken = [{**r, "extracted": None, "correct": False} for r in records]  # as if an old extractor missed them
    path.write_text("".join(json.dumps(r) + "\n" for r in broken), encoding="utf-8")
    assert rescore(broken) == records
    assert main(["score", str(out)]) == 0
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == records
    assert "en.jsonl: 7 examples, accuracy 42.9%, 7 changed" in capsys.readouterr().out
    assert main(["score", str(tmp_path / "missing.jsonl")]) == 2
    assert "error: prediction file not found" in capsys.readouterr().err


def test_cli_errors_exit_2(tmp_path, data_dir, capsys):
    assert main(["eval", "--model", "tiny-llama", "--tasks", "nope", "--data-dir", str(data_dir)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--limit", "0"]) == 2
    assert main(["eval", "--model", "tiny-llama", "--tasks", "msvamp", "--langs", "sw", "--offline",
                 "--data-dir", str(data_dir), "--out", str(tmp_path / "o")]) == 2
    assert "msvamp/test_Swahili.json" in capsys.readouterr().err


def test_real_tiny_model_batching_and_cli(tmp_path, data_dir, capsys):
    """A random tiny Llama: batch size 4 and 1 give the same greedy outputs; the CLI writes every artefact."""
    inference = pytest.importorskip("lingualift.inference.generators")
    generator = inference.load_generator("tiny-llama", device="cpu")
    settings = GenerationSettings(max_new_tokens=6)
    plan = parse_task_langs("mgsm", "en,bn")
    kwargs = dict(data_dir=data_dir, limit=5, settings=settings, progress=False, n_bootstrap=100)
    evaluate(generator, plan, tmp_path / "b4", batch_size=4, **kwargs)
    evaluate(generator, plan, tmp_path / "b1", batch_size=1, **kwargs)
    assert files(tmp_path / "b4") == files(tmp_path / "b1")
    out = tmp_path / "cli"
    code = main(["eval", "--model", "tiny-llama", "--tasks", "mmwp", "--langs", "en,ha", "--limit", "3",
                 "--batch-size", "2", "--max-new-tokens", "4", "--data-dir", str(data_dir), "--offline",
                 "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.md", "results.png", "run.json", "predictions"}
    assert "| mmwp |" in capsys.readouterr().out


def test_resume_refuses_records_made_for_a_question_the_data_no_longer_holds(tmp_path, data_dir):
    """Same id, same gold, another question: the saved answer is stale, not reusable."""
    run(FakeGenerator(), tmp_path / "r", data_dir)
    mgsm = data_dir / "mgsm" / "mgsm_en.tsv"
    lines = mgsm.read_text(encoding="utf-8").splitlines(keepends=True)
    question, gold = lines[0].split("\t")
    mgsm.write_text("".join([f"{question} Think twice.\t{gold}", *lines[1:]]), encoding="utf-8")
    with pytest.raises(LinguaLiftError, match="another question than the data now holds"):
        run(FakeGenerator(), tmp_path / "r", data_dir)
