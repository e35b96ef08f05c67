"""Task loaders on small fixtures in each dataset's public layout, the real data when present, the tier
table and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import pytest

from lingualift.eval import tasks
from lingualift.errors import LinguaLiftError
from lingualift.io import file_sha256
from lingualift.eval.tasks import MMWP_LANGUAGES, TASKS, get_task, load_examples, parse_task_langs, tier_of, tier_table


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LINGUALIFT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_registry_languages():
    assert len(TASKS["mmwp"].languages) == 48
    assert len(TASKS["mgsm"].languages) == 11
    assert len(TASKS["msvamp"].languages) == 10
    assert TASKS["gsm8k"].languages == ("en",)
    assert len(TASKS["xcsqa"].languages) == 16
    assert len(TASKS["xnli"].languages) == 15


def test_tier_table_sums_to_10_17_21():
    table = tier_table()
    mmwp = {lang: row for lang, row in table.items() if row["set"] == "mmwp"}
    assert set(mmwp) == set(MMWP_LANGUAGES)
    assert Counter(row["tier"] for row in mmwp.values()) == {"high": 10, "medium": 17, "low": 21}
    # Tiers follow the Common Crawl share ranking.
    ranked = sorted(mmwp, key=lambda l: -mmwp[l]["cc_share_percent"])
    assert [mmwp[l]["tier"] for l in ranked] == ["high"] * 10 + ["medium"] * 17 + ["low"] * 21
    for task in TASKS.values():  # every evaluated language has a tier
        assert all(tier_of(lang) != "unranked" for lang in task.languages), task.name


def test_mgsm_fixture(tmp_path):
    write(tmp_path / "mgsm" / "mgsm_bn.tsv", "প্রশ্ন এক?\t18\n\"quoted\" question?\t1,000\n")
    examples = load_examples("mgsm", "bn", tmp_path)
    assert [(e.id, e.question, e.gold) for e in examples] == [("bn-0", "প্রশ্ন এক?", "18"), ("bn-1", '"quoted" question?', "1000")]


def test_mmwp_fixture(tmp_path):
    items = [{"question": "Q one", "answer": "5 "}, {"question": "Q two", "answer": "45.0"}, {"question": "Q3", "answer": "0.9"}]
    write(tmp_path / "mmwp" / "test_sw.json", json.dumps(items, indent=4))
    examples = load_examples("mmwp", "sw", tmp_path, limit=2)
    assert [e.gold for e in examples] == ["5", "45"]
    assert TASKS["mmwp"].is_correct("45.0004", examples[1].gold)


def test_msvamp_fixture(tmp_path):
    rows = [{"m_query": "Swali?", "response": "8.0", "equation": "4*2", "query": "Question?"}]
    write(tmp_path / "msvamp" / "test_Swahili.json", "\n".join(json.dumps(r) for r in rows) + "\n")
    (example,) = load_examples("msvamp", "sw", tmp_path)
    assert (example.question, example.gold) == ("Swali?", "8")


def test_gsm8k_fixture(tmp_path):
    write(tmp_path / "gsm8k" / "test.jsonl", json.dumps({"question": "Q?", "answer": "2+2=<<2+2=4>>4\n#### 1,004"}) + "\n")
    (example,) = load_examples("gsm8k", "en", tmp_path)
    assert example.gold == "1004"


def test_xcsqa_fixture(tmp_path):
    record = {
        "id": "x1", "lang": "ja",
        "question": {"stem": "キツネはどこに住んでいますか?", "choices": [
            {"label": l, "text": t} for l, t in zip("ABCDE", ["銀行", "森", "図書館", "台所", "川"])]},
        "answerKey": "B",
    }
    write(tmp_path / "X-CSR_datasets" / "X-CSQA" / "jap" / "dev.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
    (example,) = load_examples("xcsqa", "ja", tmp_path)
    assert example.gold == "B" and example.choices[1] == "森"
    assert "B. 森" in example.question
    task = get_task("xcsqa")
    assert task.is_correct(task.extract("The answer is (B).", example), example.gold)


def test_xnli_fixture(tmp_path):
    header = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
              "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre"]
    rows = [
        ["de", "neutral", "", "", "", "", "Er ging nach Hause.", "Er war müde.", "1", "1", "fiction"],
        ["en", "entailment", "", "", "", "", "He went home.", "He left.", "1", "2", "fiction"],
        ["de", "contradiction", "", "", "", "", "Es regnet \"stark\".", "Es ist trocken.", "2", "3", "fiction"],
    ]
    write(tmp_path / "XNLI-1.0" / "xnli.test.tsv", "\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    examples = load_examples("xnli", "de", tmp_path)
    assert [e.gold for e in examples] == ["neutral", "contradiction"]
    assert 'Es regnet "stark".' in examples[1].question
    task = get_task("xnli")
    assert task.extract("Nein", examples[1]) == "contradiction"


@pytest.mark.parametrize(
    "relpath, text, message",
    [
        ("mgsm/mgsm_de.tsv", "ok?\t1\nno tab here\n", "mgsm_de.tsv:2: expected 2 tab-separated fields"),
        ("mgsm/mgsm_de.tsv", "ok?\tfive\n", "mgsm_de.tsv:1: field 'answer'"),
        ("mmwp/test_de.json", '[{"question": "q"}]', "test_de.json: item 0: missing or invalid field 'answer'"),
        ("mmwp/test_de.json", '{"question": "q"}', "expected a JSON array"),
        ("mmwp/test_de.json", '[{"question": "q",', "test_de.json:1: malformed JSON"),
        ("msvamp/test_German.json", '{"m_query": "q", "response": "1"}\n\n{"m_query": "q"}\n',
         "test_German.json:3: missing or invalid field 'response'"),
        ("X-CSR_datasets/X-CSQA/de/dev.jsonl",
         '{"question": {"stem": "s", "choices": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}]}}\n',
         "dev.jsonl:1: field 'answerKey'"),
        ("XNLI-1.0/xnli.test.tsv", "language\tsentence1\n", "xnli.test.tsv:1: header lacks column(s)"),
    ],
)
def test_bad_input_names_file_line_field(tmp_path, relpath, text, message):
    write(tmp_path / relpath, text)
    task = next(t for t in TASKS.values() if t.relpath("de") == relpath)
    with pytest.raises(LinguaLiftError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_examples(task, "de", tmp_path)
    assert "\n" not in str(info.value)


def test_missing_data_says_what_to_download(tmp_path):
    with pytest.raises(LinguaLiftError) as info:
        load_examples("msvamp", "sw", tmp_path)
    message = str(info.value)
    assert "msvamp/test_Swahili.json" in message and "https://raw.githubusercontent.com/microsoft/MathOctopus" in message
    assert "\n" not in message
    with pytest.raises(LinguaLiftError, match="xnli.test.tsv from https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip"):
        load_examples("xnli", "de", tmp_path)


def test_unknown_task_and_language():
    with pytest.raises(LinguaLiftError, match="unknown task 'mgsn'"):
        parse_task_langs("mgsn", None)
    with pytest.raises(LinguaLiftError, match="has none of the languages"):
        parse_task_langs("gsm8k", "de")
    plan = parse_task_langs("mgsm,gsm8k", "en,bn")
    assert [(t.name, langs) for t, langs in plan] == [("mgsm", ["en", "bn"]), ("gsm8k", ["en"])]


def test_download_checks_sha256(tmp_path, monkeypatch):
    """The download path with a fake URL opener (nothing is fetched): a wrong checksum is rejected."""
    payload = b"q?\t1\n"
    monkeypatch.setattr(tasks.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    with pytest.raises(LinguaLiftError, match="checksum mismatch"):
        load_examples("mgsm", "de", None, download=True)
    monkeypatch.setattr(tasks, "_checksums", lambda: {"mgsm/mgsm_de.tsv": hashlib.sha256(payload).hexdigest()})
    (example,) = load_examples("mgsm", "de", None, download=True)
    assert example.gold == "1"
    assert (tmp_path / "cache" / "data" / "mgsm" / "mgsm_de.tsv").is_file()


def test_real_mgsm_and_mmwp(shared_data):
    for lang in TASKS["mgsm"].languages:
        examples = load_examples("mgsm", lang, shared_data)
        assert len(examples) == 250
    assert load_examples("mgsm", "de", shared_data)[0].gold == "18"
    golds = None
    for lang in MMWP_LANGUAGES:
        examples = load_examples("mmwp", lang, shared_data)
        assert len(examples) == 811
        golds = golds or [e.gold for e in examples]
        assert [e.gold for e in examples] == golds, lang  # parallel: same answers in every language
    assert golds[0] == "5"
    assert len(load_examples("gsm8k", "en", shared_data)) == 1319


def test_real_files_match_pinned_checksums(shared_data):
    for relpath, digest in tasks._checksums().items():
        assert file_sha256(shared_data / relpath) == digest, relpath
