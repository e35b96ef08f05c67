"""Teacher-forced transfer diagnostic and prompt-vector retrieval, on fixtures with a fake whose NLLs
are known in closed form, plus one real tiny-model run through the CLI."""

from __future__ import annotations

import json

import pytest
from fakes import FakeGenerator

from lingualift.cli import main
from lingualift.data.gsm8k import english_solution
from lingualift.eval.diagnose import diagnose, retrieval_accuracy, transfer_diagnostic
from lingualift.errors import LinguaLiftError


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for sub in ("mgsm", "gsm8k", "mmwp"):
        (root / sub).mkdir(parents=True)
    n = 5
    answers = [{"question": f"q{i}", "answer": f"She has item{i} apples<<1+1=2>>.\n#### {i}"} for i in range(n + 2)]
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8")
    en = [f"How many apples does she have item{i} She has\t{i}" for i in range(n)]
    bn = [f"প্রশ্ন item{i}\t{i}" for i in range(n)]
    (root / "mgsm" / "mgsm_en.tsv").write_text("\n".join(en) + "\n", encoding="utf-8")
    (root / "mgsm" / "mgsm_bn.tsv").write_text("\n".join(bn) + "\n", encoding="utf-8")
    for lang, text in (("en", "item {i}"), ("bn", "প্রশ্ন {i}"), ("sw", "swali")):
        items = [{"question": text.format(i=i), "answer": str(i)} for i in range(n)]
        (root / "mmwp" / f"test_{lang}.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return root


def test_english_solution():
    assert english_solution("2+2=<<2+2=4>>4 eggs\n#### 4") == "2+2=4 eggs\nThe answer is: 4"


def test_transfer_ratio_closed_form(data_dir):
    result = transfer_diagnostic(FakeGenerator(), data_dir=data_dir, langs=["bn"], progress=False, n_bootstrap=100)
    # Solutions have 8 words; the fake's NLL is (2·8 − shared words) per item, i.e. per token (16 − s)/8.
    assert result["n_items"] == 5 and result["nll_no_question"] == pytest.approx(2.0)
    en, bn = result["languages"]["en"], result["languages"]["bn"]
    assert en["gain"] == pytest.approx(3 / 8) and bn["gain"] == pytest.approx(1 / 8)
    assert en["gain_mismatched"] == pytest.approx(2 / 8) and bn["gain_mismatched"] == pytest.approx(0.0)
    assert en["transfer_ratio"] == pytest.approx(1.0) and bn["transfer_ratio"] == pytest.approx(1 / 3)
    assert bn["transfer_ratio_ci95"][0] <= 1 / 3 <= bn["transfer_ratio_ci95"][1]
    assert bn["tier"] == "low"


def test_transfer_rejects_non_mgsm_language(data_dir):
    with pytest.raises(LinguaLiftError, match="MGSM has no language"):
        transfer_diagnostic(FakeGenerator(), data_dir=data_dir, langs=["ha"])


def test_retrieval(data_dir):
    result = retrieval_accuracy(FakeGenerator(), data_dir=data_dir, langs=["bn", "sw"], progress=False)
    assert result["languages"]["bn"]["accuracy"] == 1.0
    assert result["languages"]["sw"]["to_pivot"] == pytest.approx(1 / 5)  # identical vectors: no information
    assert result["mean_accuracy"] == pytest.approx((1.0 + 0.2) / 2)


def test_diagnose_report(tmp_path, data_dir):
    report = diagnose(FakeGenerator(), tmp_path / "out", data_dir=data_dir, transfer_langs=["bn"],
                      retrieval_langs=["bn"], progress=False)
    assert set(report) == {"model", "transfer", "retrieval"}
    markdown = (tmp_path / "out" / "diagnose.md").read_text(encoding="utf-8")
    assert "| low | bn |" in markdown and "transfer ratio" in markdown
    assert (tmp_path / "out" / "diagnose.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "diagnose.json").read_text(encoding="utf-8")) == report


def test_diagnose_cli_tiny_model(tmp_path, data_dir, capsys):
    pytest.importorskip("lingualift.inference.generators")
    code = main(["diagnose", "--model", "tiny-llama", "--langs", "bn", "--retrieval-langs", "bn", "--limit", "3",
                 "--retrieval-limit", "3", "--data-dir", str(data_dir), "--offline", "--device", "cpu",
                 "--out", str(tmp_path / "d"), "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "d" / "diagnose.json").read_text(encoding="utf-8"))
    assert report["transfer"]["n_items"] == 3 and set(report["transfer"]["languages"]) == {"en", "bn"}
    assert 0.0 <= report["retrieval"]["languages"]["bn"]["accuracy"] <= 1.0
    assert main(["diagnose", "--model", "tiny-llama", "--limit", "-1"]) == 2
