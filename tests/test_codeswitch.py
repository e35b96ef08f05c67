"""Code-switching: prompt-only replacement, ratio, determinism, settings, CLI."""

from __future__ import annotations

import json
import random
import re

import pytest

from lingualift.cli import main
from lingualift.data.codeswitch import CodeSwitcher, CodeSwitchSettings, codeswitch_records, match_case
from lingualift.errors import LinguaLiftError
from lingualift.data.lexicon import Lexicon, write_tsv

VOCAB = ["apple", "apples", "has", "she", "the", "store", "buys", "each", "costs", "how", "many", "dollars",
         "does", "spend", "tom", "week", "more", "than", "half", "of", "them", "are", "red", "green", "boxes"]


def lexicon(lang: str) -> Lexicon:
    result = Lexicon(lang, source="test")
    for word in VOCAB:
        result.add(word, f"{lang}_{word}")
        result.add(word, f"{lang} {word}")  # two equally good translations, one multi-word
    return result


def switcher(ratio=0.5, mixing="per_example", weights=None, seed=0, langs=("de", "ru")) -> CodeSwitcher:
    settings = CodeSwitchSettings({lang: f"muse:{lang}" for lang in langs}, ratio, mixing, weights, seed)
    return CodeSwitcher(settings, {lang: lexicon(lang) for lang in langs})


def problems(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(VOCAB + ["zebra", "quietly"]) for _ in range(rng.randint(3, 25))]
        words[0] = words[0].capitalize()
        question = f"{' '.join(words)}, {rng.randint(1, 999)} $4.50 (3rd) 2,000 {words[-1].upper()}?\n  Why?"
        out.append({"question": question, "answer": f"She has {i} apples.\n#### {i}", "id": i})
    return out


NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def test_answer_numbers_and_non_words_unchanged():
    cs = switcher(ratio=1.0)
    for index, record in enumerate(problems(200)):
        out = cs.switch(record, index)
        assert out["answer"] == record["answer"] and out["id"] == record["id"]
        assert out["source_question"] == record["question"]
        assert NUMBER.findall(out["question"]) == NUMBER.findall(record["question"])
        assert "(3rd)" in out["question"] and out["question"].endswith("?\n  Why?")
        # everything but the replaced words is byte-identical: strip words from both sides
        strip = lambda text: re.sub(r"[^\W\d_]+(?:[-_ ][^\W\d_]+)*", "W", text)
        assert strip(out["question"]) == strip(record["question"])


def test_capitalisation_and_multiword_translations():
    assert match_case("The", "die") == "Die"
    assert match_case("USA", "сша") == "США"
    assert match_case("I", "ich") == "Ich"
    assert match_case("dog", "Hund") == "Hund"
    fr = Lexicon("fr")
    fr.add("the", "le")
    fr.add("store", "grand magasin")
    fr.add("store", "boutique", 2)  # never used: only best-ranked translations are sampled
    cs = CodeSwitcher(CodeSwitchSettings({"fr": "unused"}, ratio=1.0), {"fr": fr})
    out = cs.switch({"question": "The store. STORE", "answer": "x"}, 0)
    assert out["question"] == "Le grand magasin. GRAND MAGASIN"
    # The word alignment: [start, end] in the switched question, [start, end] of the English word it replaced.
    assert out["codeswitch"] == {"langs": ["fr"], "replaced": 3, "replaceable": 3,
                                 "spans": [[0, 2, 0, 3], [3, 16, 4, 9], [18, 31, 11, 16]]}
    for start, end, source_start, source_end in out["codeswitch"]["spans"]:
        assert fr.best(out["source_question"][source_start:source_end].lower())[0] == \
            out["question"][start:end].lower()


def test_words_without_an_entry_stay_english():
    out = switcher(ratio=1.0).switch({"question": "Zebra quietly has apples", "answer": "x"}, 0)
    assert out["question"].startswith("Zebra quietly ")
    assert out["codeswitch"]["replaceable"] == 2 == out["codeswitch"]["replaced"]


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("mixing", ["per_example", "mixed"])
def test_ratio_is_hit_on_a_large_sample(ratio, mixing):
    cs = switcher(ratio=ratio, mixing=mixing)
    for index, record in enumerate(problems(1500)):
        cs.switch(record, index)
    rate = cs.stats.replaced / cs.stats.replaceable
    assert abs(rate - ratio) <= 0.05 * max(ratio, 0.01)


def test_reproducible_by_seed_and_independent_of_stream_position():
    records = problems(50)
    first = [switcher(seed=3).switch(r, i) for i, r in enumerate(records)]
    again = [switcher(seed=3).switch(r, i) for i, r in enumerate(records)]
    other = [switcher(seed=4).switch(r, i) for i, r in enumerate(records)]
    assert first == again and first != other
    assert switcher(seed=3).switch(records[7], 7) == first[7]


def test_language_choice_per_example_mixed_and_weights():
    records = problems(400)
    per_example = [switcher(ratio=1.0).switch(r, i) for i, r in enumerate(records)]
    assert all(len(r["codeswitch"]["langs"]) == 1 for r in per_example)
    assert {r["codeswitch"]["langs"][0] for r in per_example} == {"de", "ru"}
    mixed = [switcher(ratio=1.0, mixing="mixed").switch(r, i) for i, r in enumerate(records)]
    assert sum(len(r["codeswitch"]["langs"]) == 2 for r in mixed) > 300
    only_ru = switcher(ratio=1.0, mixing="mixed", weights={"de": 0, "ru": 1.0})
    assert all(only_ru.switch(r, i)["codeswitch"]["langs"] == ["ru"] for i, r in enumerate(records[:50]))


def test_settings_from_dict_is_strict():
    where = "config.yaml: data.codeswitch"
    settings = CodeSwitchSettings.from_dict({"lexicons": {"de": "muse:de"}, "ratio": 0.3, "mixing": "mixed"}, where)
    assert (settings.ratio, settings.mixing, settings.weights, settings.seed) == (0.3, "mixed", None, 0)
    bad = [
        ({"lexicons": {"de": "muse:de"}, "ratoi": 0.3}, "unknown key"),
        ({"ratio": 0.3}, "missing `lexicons`"),
        ({"lexicons": {}}, "lexicons"),
        ({"lexicons": {"de": "muse:de"}, "ratio": 1.5}, "ratio: must be at least 0 and at most 1"),
        ({"lexicons": {"de": "muse:de"}, "ratio": -0.1}, "ratio"),
        ({"lexicons": {"de": "muse:de"}, "mixing": "word"}, "mixing"),
        ({"lexicons": {"de": "muse:de"}, "weights": {"ru": 1}}, "weights must name exactly"),
        ({"lexicons": {"de": "muse:de"}, "weights": {"de": 0}}, "positive sum"),
    ]
    for data, message in bad:
        with pytest.raises(LinguaLiftError, match=f"^{re.escape(where)}: .*{message}"):
            CodeSwitchSettings.from_dict(data, where)


def test_missing_lexicon_is_a_clear_error(tmp_path):
    (tmp_path / "muse").mkdir()
    settings = CodeSwitchSettings({"xx": "muse:xx"})
    with pytest.raises(LinguaLiftError, match="muse:xx"):
        list(codeswitch_records([{"question": "a", "answer": "b"}], settings, data_dir=tmp_path))
    with pytest.raises(LinguaLiftError, match="no lexicon loaded for requested language"):
        CodeSwitcher(CodeSwitchSettings({"de": "x", "ru": "y"}), {"de": lexicon("de")})


def test_codeswitch_records_with_real_muse(shared_data):
    settings = CodeSwitchSettings({"de": "muse:de", "zh": "muse:zh"}, ratio=1.0, mixing="mixed")
    record = {"question": "The dog eats 3 apples.", "answer": "3"}
    out = next(codeswitch_records([record], settings, data_dir=shared_data))
    assert out["question"] != record["question"] and " 3 " in out["question"] and out["question"].endswith(".")


def test_cli_codeswitch(tmp_path, capsys):
    write_tsv(lexicon("de"), tmp_path / "en-de.tsv")
    write_tsv(lexicon("ru"), tmp_path / "en-ru.tsv")
    source = tmp_path / "in.jsonl"
    records = problems(30) + [{"instruction": "How many apples", "input": "", "output": "7"}]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    args = ["codeswitch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
            "--lexicons", f"de={tmp_path}/en-de.tsv,ru={tmp_path}/en-ru.tsv", "--weights", "de=1,ru=3"]
    assert main(args) == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 31 and lines[-1]["answer"] == "7" and lines[-1]["source_question"] == "How many apples"
    summary = capsys.readouterr().out
    assert "rate" in summary and "coverage" in summary
    first = (tmp_path / "out.jsonl").read_bytes()
    assert main(args) == 0 and (tmp_path / "out.jsonl").read_bytes() == first

    capsys.readouterr()
    bad = [
        args + ["--ratio", "1.2"],
        args[:5] + ["--lexicons", f"de={tmp_path}/en-de.tsv,sw=muse:sw", "--data-dir", str(tmp_path)],
        args + ["--weights", "de=1"],
        args[:5] + ["--lexicons", f"de={tmp_path}/en-de.tsv", "--input", str(tmp_path / "missing.jsonl")],
    ]
    for argv in bad:
        assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    assert "ratio: must be at least 0 and at most 1" in errors[0] and "muse:sw" in errors[1] and "missing.jsonl" in errors[3]
