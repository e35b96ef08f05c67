"""The fidelity measure (`eval/fidelity.py`): number scoring, chrF, the restatement frame, the report, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_model

from lingualift.cli import main
from lingualift.errors import LinguaLiftError
from lingualift.eval.extraction import numbers_in_text
from lingualift.eval.fidelity import (RESTATE_INSTRUCTION, chrf, measure_fidelity, number_recall, restating_generator,
                                      score_restatement, write_fidelity_report)
from lingualift.inference.generators import BridgeGenerator, load_generator

# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("text, numbers", [
    ("39 balloons into 7 groups", [39, 7]),
    ("1,050 ml and 65 ml", [1050, 65]),
    ("১,০৫০ মিলি এবং ৬৫ মিলি", [1050, 65]),  # Bengali
    ("๑๒๕๐ บาท", [1250]),  # Thai
    ("४५६ रुपये", [456]),  # Devanagari
    ("١٢٥ درهم", [125]),  # Arabic-Indic
    ("3,5 kg en 1.234,5 g", [3.5, 1234.5]),  # decimal commas
    ("no numbers here", []),
])
def test_numbers_in_text_reads_native_digits_and_groups(text, numbers):
    assert numbers_in_text(text) == pytest.approx(numbers)


def test_number_recall_counts_the_questions_numbers_exactly():
    assert number_recall("Tom puts 39 balloons into 7 groups.", "Tom puts 360 balloons into 7 groups.") == 0.5
    assert number_recall("A jug holds 1,050 ml; a cup 65 ml.", "A jug holds 1050 ml and a cup 65 ml.") == 1.0
    assert number_recall("A jug holds 1,050 ml; a cup 65 ml.", "A jug holds 1500 ml and a cup 60 ml.") == 0.0
    assert number_recall("রিনার ১২৫টি আপেল আছে, সে ৭টি খায়", "Rina has 125 apples and eats 7.") == 1.0
    assert number_recall("5 red, 5 blue and 3 green", "5 red and 3 green") == pytest.approx(2 / 3)  # multiplicity
    assert number_recall("How many legs does a cat have?", "How many legs?") is None


def test_score_restatement_combines_numbers_and_chrf():
    scores = score_restatement("Ana ana mipira 12 na 5.", "Ana has 12 balls and 5.", "Ana has 12 balls and 5 bats.")
    assert scores["numbers"] == 1.0 and scores["all_numbers"] == 1.0
    assert 0 < scores["chrf"] < 100
    partial = score_restatement("12 na 5", "12 only", None)
    assert partial == {"numbers": 0.5, "all_numbers": 0.0, "chrf": None}


# ------------------------------------------------------------------ chrF

# Sentence chrF computed by sacrebleu 2.6.0 (`sacrebleu.metrics.CHRF().sentence_score(hyp, [ref]).score`).
SACREBLEU_CHRF = [
    ("The cat sat on the mat.", "The cat sat on the mat.", 100.0),
    ("The cat sat on the mat.", "A cat was sitting on a mat.", 19.450981437099635),
    ("Tom has 39 balloons and puts them into 7 groups.",
     "Tom has 39 balloons. He splits them into 7 equal groups. How many are in each group?", 45.52532903417519),
    ("ab", "abcdefgh", 23.404255319148938),
    ("There are 1500 ml and 60 ml.", "A jug holds 1,050 ml and a cup 65 ml.", 22.18471626616428),
    ("", "abc", 0.0),
    ("abc", "", 0.0),
    ("হাঁস ১৬টি ডিম পাড়ে", "Janet's ducks lay 16 eggs per day.", 0.0),
]


@pytest.mark.parametrize("hypothesis, reference, expected", SACREBLEU_CHRF)
def test_chrf_matches_sacrebleu_known_values(hypothesis, reference, expected):
    assert chrf(hypothesis, reference) == pytest.approx(expected, abs=1e-9)


def test_chrf_ignores_whitespace_and_is_case_sensitive():
    assert chrf("The  cat\nsat", "Thecat sat") == 100.0
    assert chrf("the cat sat", "The cat sat") < 100.0


def test_chrf_agrees_with_sacrebleu_when_installed():
    sacrebleu = pytest.importorskip("sacrebleu")
    metric = sacrebleu.metrics.CHRF()
    for hypothesis, reference in [("Ana has 12 balls.", "Ana had twelve balls and 5 bats."),
                                  ("x", "xy"), ("Ein Hund bellt laut.", "A dog barks loudly.")]:
        assert chrf(hypothesis, reference) == pytest.approx(metric.sentence_score(hypothesis, [reference]).score)


# ------------------------------------------------------------------ the restatement frame


def test_the_bridge_restates_from_the_soft_prompt_alone():
    model = tiny_model(llm_sees_query=True)
    view = restating_generator(BridgeGenerator(model, name="tiny"))
    batch = view.prepare_batch(["Tom has 39 pens."])
    assert batch.suffix_mask.sum() > 0
    llm_text = model.llm_tokenizer.decode(torch.cat([batch.prefix_ids[0], batch.suffix_ids[0]]))
    assert "39" not in llm_text and RESTATE_INSTRUCTION in llm_text  # the query's own tokens are switched off
    encoder_text = model.encoder_tokenizer.decode(batch.encoder_input_ids[0], skip_special_tokens=True)
    assert encoder_text == "Tom has 39 pens."  # the encoder reads the bare question


def test_the_reference_reads_the_question_and_the_same_instruction():
    view = restating_generator(load_generator("tiny-llama", prompt_template="paper"))
    prompt = view.rendered_prompt("Tom has 39 pens.")
    assert prompt.startswith("Tom has 39 pens.") and RESTATE_INSTRUCTION in prompt and "### Instruction" not in prompt


# ------------------------------------------------------------------ measure and report


def write_mmwp(root, rows: dict[str, list[str]]):
    (root / "mmwp").mkdir(parents=True, exist_ok=True)
    for lang, questions in rows.items():
        items = [{"question": question, "answer": "1"} for question in questions]
        (root / "mmwp" / f"test_{lang}.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return root


PARALLEL = {
    "en": ["Tom has 39 balloons and 7 groups.", "A jug holds 1,050 ml.", "How many legs does a cat have?"],
    "bn": ["টমের ৩৯টি বেলুন এবং ৭টি দল আছে।", "একটি জগে ১,০৫০ মিলি ধরে।", "একটি বিড়ালের কয়টি পা?"],
    "sw": ["Tom ana puto 39 na vikundi 7.", "Jagi lina ml 1,050.", "Paka ana miguu mingapi?"],
}


def test_measure_fidelity_on_tiny_models_reports_languages_and_tiers(tmp_path):
    data = write_mmwp(tmp_path / "data", PARALLEL)
    report = measure_fidelity(BridgeGenerator(tiny_model(), name="tiny"), langs=["en", "bn", "sw"], data_dir=data,
                              limit=3, max_new_tokens=4, n_bootstrap=50, progress=False)
    assert report["settings"]["soft_prompt_only"] is True
    assert set(report["languages"]) == {"en", "bn", "sw"} and set(report["tiers"]) == {"high", "low"}
    assert report["tiers"]["low"]["languages"] == ["bn", "sw"]
    bn = report["languages"]["bn"]
    assert bn["n"] == 3 and bn["numbers_n"] == 2 and bn["chrf_n"] == 3  # the third question has no number
    assert bn["numbers_as_english"] == 1.0
    for item in report["items"]:
        assert 0.0 <= item["chrf"] <= 100.0 and isinstance(item["restatement"], str)
    lows = [report["languages"][lang]["chrf"] for lang in ("bn", "sw")]
    assert report["tiers"]["low"]["chrf"] == pytest.approx(sum(lows) / 2)
    low, high = report["languages"]["en"]["chrf_ci95"]
    assert low <= report["languages"]["en"]["chrf"] <= high

    paths = write_fidelity_report(report, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"fidelity.json", "fidelity.md", "fidelity.png",
                                                                "fidelity_items.jsonl"}
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert "items" not in written and written["languages"]["sw"]["n"] == 3
    assert "| low | bn | 3 |" in paths["md"].read_text(encoding="utf-8")
    assert len(paths["items"].read_text(encoding="utf-8").splitlines()) == 9


def test_measure_fidelity_takes_a_model_in_training_and_leaves_its_mode(tmp_path):
    data = write_mmwp(tmp_path / "data", PARALLEL)
    model = tiny_model().train()
    model.llm.eval()  # a frozen part, as the freeze policy leaves it
    report = measure_fidelity(model, langs=["sw"], data_dir=data, limit=2, max_new_tokens=3, n_bootstrap=20,
                              progress=False)
    assert model.training and model.alignment.training and not model.llm.training
    assert report["settings"]["soft_prompt_only"] is True
    assert report["languages"]["sw"]["n"] == 2


def test_measure_fidelity_refuses_files_that_are_not_parallel(tmp_path):
    data = write_mmwp(tmp_path / "data", {"en": PARALLEL["en"], "sw": PARALLEL["sw"][:2]})
    with pytest.raises(LinguaLiftError, match="sw has 2 questions where en has 3"):
        measure_fidelity(load_generator("tiny-llama"), langs=["sw"], data_dir=data, limit=None, progress=False)


def test_fidelity_command_writes_its_report(tmp_path, capsys):
    data = write_mmwp(tmp_path / "data", PARALLEL)
    out = tmp_path / "fid"
    assert main(["fidelity", "--model", "tiny-llama", "--data-dir", str(data), "--langs", "en,sw", "--limit", "2",
                 "--max-new-tokens", "3", "--bootstrap", "20", "--out", str(out), "--offline", "--no-progress"]) == 0
    assert "# Fidelity: tiny-llama" in capsys.readouterr().out
    report = json.loads((out / "fidelity.json").read_text(encoding="utf-8"))
    assert report["settings"]["soft_prompt_only"] is False and report["languages"]["sw"]["n"] == 2
