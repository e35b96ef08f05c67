"""Word lists for languages wordfreq lacks: spell-checking dictionaries ranked by a unigram tokenizer,
and FreeDict dictionaries as evaluation references."""

from __future__ import annotations

import gzip
import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from lingualift.cli import main
from lingualift.data import lexicon as lx
from lingualift.data import wordlists as wl
from lingualift.errors import LinguaLiftError


def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A sentencepiece-style unigram model: `▁na` is a likely piece, `ko` `t` `a` are not."""
    vocab = [("<unk>", 0.0), ("▁", -2.0), ("▁na", -1.0), ("▁kwa", -2.5), ("na", -3.0), ("k", -4.0), ("w", -4.0),
             ("a", -4.0), ("t", -5.0), ("o", -5.0), ("ko", -6.0)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def write_hunspell(folder, name: str, entries: list[str], encoding: str = "utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.aff").write_bytes(f"SET {encoding.upper()}\nTRY abc\n".encode("ascii"))
    (folder / f"{name}.dic").write_bytes((f"{len(entries)}\n" + "\n".join(entries) + "\n").encode(encoding))
    return folder


def test_hunspell_reader_strips_flags_and_morphology_and_honours_the_encoding(tmp_path):
    folder = write_hunspell(tmp_path, "sw_TZ", ["kwa/AB", "njia st:njia", "café", "a\\/b/X", ""], "iso8859-1")
    assert wl.read_hunspell_dic(folder / "sw_TZ.dic", folder / "sw_TZ.aff") == ["kwa", "njia", "café", "a/b"]
    (folder / "sw_TZ.aff").write_bytes(b"SET NOT-A-CODEC\n")
    with pytest.raises(LinguaLiftError, match="cannot decode as NOT-A-CODEC"):
        wl.read_hunspell_dic(folder / "sw_TZ.dic", folder / "sw_TZ.aff")


def test_aspell_expand_output_is_split_into_forms():
    assert wl.parse_aspell_expand("आहे\nकाम कामे कामाला\n\n") == ["आहे", "काम", "कामे", "कामाला"]


def test_unigram_scorer_sums_piece_log_probabilities():
    scorer = wl.UnigramScorer(unigram_tokenizer())
    na, kwa, kota, unknown = scorer(["na", "kwa", "kota", "zzz"])
    assert na == pytest.approx(-1.0)  # one piece `▁na`
    assert kwa == pytest.approx(-2.5)
    assert kota == pytest.approx(-2.0 - 6.0 - 5.0 - 4.0)  # `▁` `ko` `t` `a`: rare, many pieces
    assert unknown == float("-inf")


def test_unigram_scorer_rejects_other_tokenizers():
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(LinguaLiftError, match="unigram tokenizer"):
        wl.UnigramScorer(backend)


def test_rank_words_orders_by_probability_dedupes_and_drops_non_words():
    scorer = wl.UnigramScorer(unigram_tokenizer())
    ranked = wl.rank_words(["kota", "Kwa", "na", "kwa", "zzz", "k2", "na"], scorer, n=10)
    assert ranked == ["na", "kwa", "kota"]  # `zzz` cannot be spelt, `k2` is not a word
    assert wl.rank_words(["kota", "kwa", "na"], scorer, n=2) == ["na", "kwa"]


def test_build_word_list_records_its_source(tmp_path):
    folder = write_hunspell(tmp_path / "hunspell", "sw_TZ", ["kota/A", "kwa", "na"])
    words, provenance = wl.build_word_list("sw", 2, unigram_tokenizer(), folder)
    assert words == ["na", "kwa"]
    assert provenance["package"] == "hunspell-sw" and provenance["licence"] == "LGPL-2.1+"
    assert provenance["dictionary_entries"] == 3 and provenance["words"] == 2 and provenance["version"]


def test_dictionary_errors_name_the_package(tmp_path):
    with pytest.raises(LinguaLiftError, match="no spell-checking dictionary is known for 'xx'"):
        wl.dictionary_words("xx")
    with pytest.raises(LinguaLiftError, match="apt-get install hunspell-te"):
        wl.dictionary_words("te", tmp_path)


def test_corpus_word_lists_keep_indic_words_whole(tmp_path):
    path = tmp_path / "mr.txt"
    path.write_text("आहे\nहैं\nಮತ್ತು\nआहे\n", encoding="utf-8")
    assert lx.word_list("mr", 5, path) == ["आहे", "हैं", "ಮತ್ತು"]  # `\w` alone would cut at the vowel signs


def test_cli_wordlist_writes_lists_and_provenance(tmp_path, monkeypatch, capsys):
    encoder = tmp_path / "encoder"
    unigram_tokenizer().save_pretrained(encoder)
    monkeypatch.setattr(wl, "HUNSPELL_DIR", write_hunspell(tmp_path / "hunspell", "sw_TZ", ["kota", "kwa", "na"]))
    out = tmp_path / "lists"
    assert main(["lexicon", "wordlist", "--langs", "sw", "--words", "2", "--encoder", str(encoder), "--out", str(out)]) == 0
    assert (out / "sw.txt").read_text(encoding="utf-8") == "na\nkwa\n"
    provenance = json.loads((out / "wordlists.json").read_text())
    assert provenance["sw"]["package"] == "hunspell-sw" and provenance["sw"]["encoder"] == str(encoder)
    assert "2 words from hunspell-sw" in capsys.readouterr().out
    assert lx.word_list("sw", 5, out / "sw.txt") == ["na", "kwa"]  # what `induce --corpus sw=…` reads


# ---- FreeDict (dictd) references -----------------------------------------------------------------


def dictd_number(value: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    text = ""
    while True:
        text = digits[value % 64] + text
        value //= 64
        if not value:
            return text


def write_dictd(folder, name: str, entries: list[tuple[str, str]]):
    """A dictd pair `name.index` + `name.dict.dz` with a database header entry, as FreeDict ships them."""
    data, index = b"", []
    for headword, text in [("00-database-info", "header\n\nnot an entry\n"), *entries]:
        body = text.encode("utf-8")
        index.append(f"{headword}\t{dictd_number(len(data))}\t{dictd_number(len(body))}")
        data += body
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.dict.dz").write_bytes(gzip.compress(data))
    (folder / f"{name}.index").write_text("\n".join(index) + "\n", encoding="utf-8")


def test_freedict_reader_merges_both_directions_and_keeps_one_word_senses(tmp_path):
    write_dictd(tmp_path, "freedict-eng-swh", [
        ("agree", "agree /ɐɡɹˈiː/ <v>\n\nkubali\n patana\n"),
        ("ice cream", "ice cream <n>\n\naiskrimu\n"),
    ])
    write_dictd(tmp_path, "freedict-swh-eng", [
        ("adhabu", "adhabu /aðˈabu/ <n> [sg=pl]\n1.\npunishment, penalty\n2.\nreprimand, lesson\n"),
        ("afisa", "afisa, ofisa /afˈisa/ <n>\n\nofficer\n"),
        ("adhuhuri", "adhuhuri <n>\n\nmidday\n period between noon and 2 p.m.\n"),
    ])
    lexicon = lx.read_freedict("swh", "sw", tmp_path)
    assert lexicon.translations("agree") == ["kubali", "patana"]
    assert lexicon.translations("punishment") == ["adhabu"] and lexicon.translations("lesson") == ["adhabu"]
    assert lexicon.translations("officer") == ["afisa"] and lexicon.translations("midday") == ["adhuhuri"]
    assert "ice" not in lexicon and "period" not in lexicon and "1." not in lexicon


def test_freedict_errors(tmp_path):
    with pytest.raises(LinguaLiftError, match="apt-get install dict-freedict-eng-xyz"):
        lx.read_freedict("xyz", "xy", tmp_path)
    with pytest.raises(LinguaLiftError, match="give the language code"):
        lx.load_lexicon("freedict:swh")
    (tmp_path / "freedict-eng-abc.index").write_text("word\tA\tB\n", encoding="utf-8")
    with pytest.raises(LinguaLiftError, match="no freedict-eng-abc.dict.dz"):
        lx.read_freedict("abc", "ab", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "freedict-eng-abc.index").write_text(
        "00-database-info\tA\tQ\nagree\tA!\tB\n", encoding="utf-8"),
     r"freedict-eng-abc.index:2: 'A!' is not a dictd base-64 number"),
    (lambda folder: (folder / "freedict-eng-abc.index").write_text("agree\tA\tBAAA\n", encoding="utf-8"),
     r"freedict-eng-abc.index:1: the entry ends at byte \d+, past the end of freedict-eng-abc.dict.dz"),
    (lambda folder: (folder / "freedict-eng-abc.dict.dz").write_bytes(gzip.compress(  # same length, bad bytes
        gzip.decompress((folder / "freedict-eng-abc.dict.dz").read_bytes()).replace(b"kubali", b"\xff\xfebali"))),
     r"freedict-eng-abc.index:2: the entry it points to in freedict-eng-abc.dict.dz is not valid UTF-8"),
    (lambda folder: (folder / "freedict-eng-abc.dict.dz").write_bytes(b"not gzip at all"),
     r"freedict-eng-abc.dict.dz: not a readable dictzip file"),
    (lambda folder: (folder / "freedict-eng-abc.dict.dz").write_bytes(
        gzip.compress(b"header\n\nnot an entry\nagree\n\nkubali\n")[:20]),
     r"freedict-eng-abc.dict.dz: not a readable dictzip file"),
])
def test_a_corrupt_dictd_dictionary_is_one_error_naming_the_place(tmp_path, damage, message):
    write_dictd(tmp_path, "freedict-eng-abc", [("agree", "agree <v>\n\nkubali\n")])
    damage(tmp_path)
    with pytest.raises(LinguaLiftError, match=message):
        lx.read_freedict("abc", "ab", tmp_path)
