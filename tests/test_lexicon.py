"""Lexicons: readers/writer, Procrustes, CSLS, seeds, induction, evaluation, and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lingualift.data import lexicon as lx
from lingualift.cli import main
from lingualift.errors import LinguaLiftError


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ---- readers and writer --------------------------------------------------------------------------


def test_muse_reader_duplicates_tabs_spaces_blank_lines(tmp_path):
    path = write(tmp_path / "en-de.txt", "the die\nthe\tder\n\nthe die\n  \ndog   Hund\nthe das\n")
    lexicon = lx.read_muse(path)
    assert lexicon.lang == "de"
    assert lexicon.translations("the") == ["die", "der", "das"]  # duplicate dropped, file order kept
    assert lexicon.translations("The") == ["die", "der", "das"]  # lookups ignore case
    assert lexicon.best("the") == ["die", "der", "das"]  # MUSE is unranked: all tie
    assert lexicon.translations("dog") == ["Hund"]
    assert lexicon.translations("cat") == [] and "cat" not in lexicon and len(lexicon) == 2


def test_muse_reader_names_file_and_line_on_bad_utf8(tmp_path):
    path = write(tmp_path / "en-de.txt", b"the die\ndog Hund\ncat K\xe4tzchen\n")
    with pytest.raises(LinguaLiftError, match=r"en-de\.txt:3: not valid UTF-8"):
        lx.read_muse(path)


def test_muse_reader_rejects_multiword_lines(tmp_path):
    path = write(tmp_path / "en-de.txt", "the die\nice cream Eis\n")
    with pytest.raises(LinguaLiftError, match=r"en-de\.txt:2: expected 2"):
        lx.read_muse(path)


def test_tsv_roundtrip_keeps_ranks_and_multiword(tmp_path):
    lexicon = lx.Lexicon("fr", source="test")
    lexicon.add("ice", "crème glacée", 2)
    lexicon.add("ice", "glace", 1)
    lexicon.add("dog", "chien")
    path = lx.write_tsv(lexicon, tmp_path / "out" / "en-fr.tsv")
    back = lx.read_tsv(path)
    assert back.lang == "fr"
    assert back.translations("ice") == ["glace", "crème glacée"]
    assert back.best("ice") == ["glace"]
    assert dict(back.entries) == dict(lexicon.entries)


def test_tsv_reader_errors(tmp_path):
    with pytest.raises(LinguaLiftError, match=r"en-fr\.tsv:1: rank must be an integer"):
        lx.read_tsv(write(tmp_path / "en-fr.tsv", "dog\tchien\tfirst\n"))
    with pytest.raises(LinguaLiftError, match="cannot tell the language"):
        lx.read_tsv(write(tmp_path / "words.tsv", "dog\tchien\n"))


def test_load_lexicon_specs(tmp_path):
    (tmp_path / "muse").mkdir()
    write(tmp_path / "muse" / "en-de.txt", "dog Hund\n")
    assert lx.load_lexicon("muse:de", data_dir=tmp_path).translations("dog") == ["Hund"]
    assert lx.load_lexicon(str(write(tmp_path / "mine.tsv", "dog\tpies\n")), "pl").lang == "pl"
    with pytest.raises(LinguaLiftError, match="muse:sw"):
        lx.load_lexicon("muse:sw", data_dir=tmp_path)
    with pytest.raises(LinguaLiftError, match="not found"):
        lx.load_lexicon(str(tmp_path / "nope.tsv"))
    with pytest.raises(LinguaLiftError, match="empty"):
        lx.load_lexicon(str(write(tmp_path / "en-xx.txt", "\n\n")))


def test_induced_spec_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LinguaLiftError, match="scripts/lexicons.sh"):
        lx.load_lexicon("induced:sw")
    assert not (tmp_path / "cache").exists()  # looking for a lexicon creates no folder
    lx.induced_lexicon_dir().mkdir(parents=True)
    write(lx.induced_lexicon_path("sw"), "water\tmaji\t1\nwater\tmajia\t2\n")
    lexicon = lx.load_lexicon("induced:sw")
    assert lexicon.lang == "sw" and lexicon.best("water") == ["maji"]
    assert lx.induced_lexicon_path("sw") == tmp_path / "cache" / "lexicons" / "induced" / "en-sw.tsv"


def test_real_muse_dictionaries(shared_data):
    de = lx.load_lexicon("muse:de", data_dir=shared_data)
    assert "Hund".lower() in de.translations("dog")
    zh = lx.load_lexicon("muse:zh", data_dir=shared_data)
    assert len(zh) > 10000 and zh.translations("and")


# ---- word lists and vectors ----------------------------------------------------------------------


def test_word_list_from_corpus_and_wordfreq(tmp_path):
    corpus = write(tmp_path / "c.txt", "Der Hund, der Hund! 42 Katzen 😀 u00\nder\n")
    assert lx.word_list("de", 3, corpus) == ["der", "hund", "42"]
    assert lx.word_list("hi", 50)[:3] == ["के", "है", "में"]  # combining marks count as letters
    with pytest.raises(LinguaLiftError, match="empty word list"):
        lx.word_list("de", 10, write(tmp_path / "empty.txt", "!!! ???\n"))
    with pytest.raises(LinguaLiftError, match="wordfreq has no word list"):
        lx.word_list("xx", 10)


def test_native_mask_drops_english_words_from_other_language_lists():
    assert lx.native_mask(["dog", "hund", "die", "3"], "de").tolist() == [False, True, True, True]


def test_foreign_mask_drops_words_other_languages_use():
    # `agua` (Spanish) and `sie` (German) sit in the Swahili hunspell list; `maji` and `kila` are Swahili.
    assert lx.foreign_mask(["maji", "agua", "sie", "kila", "3"], ["es", "de"]).tolist() == [True, False, False, True, True]


def test_read_vec(tmp_path):
    path = write(tmp_path / "de.vec", "3 2\nhund 1 0\nkatze 0 1\nhund 5 5\n")
    words, vectors = lx.read_vec(path)
    assert words == ["hund", "katze"] and vectors.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(LinguaLiftError, match="de.vec:2"):
        lx.read_vec(write(tmp_path / "de.vec", "1 3\nhund 1 0\n"))


def test_encoder_word_vectors_pool_the_word_only():
    from lingualift.model.components import load_component

    model, tokenizer = load_component("tiny-bert", "encoder")
    plain = lx.encoder_word_vectors(["dog", "a", "Katze"], model, tokenizer, batch_size=2)
    assert plain.shape == (3, model.config.hidden_size) and np.isfinite(plain).all()
    # Same words, other batch composition and order: same vectors (padding is masked out).
    again = lx.encoder_word_vectors(["Katze", "dog"], model, tokenizer, batch_size=8)
    np.testing.assert_allclose(again, plain[[2, 0]], atol=1e-5)
    prefixed = lx.encoder_word_vectors(["dog"], model, tokenizer, prefix="query: ", layer=1)
    assert prefixed.shape == (1, model.config.hidden_size)


# ---- mapping and retrieval -----------------------------------------------------------------------


def random_rotation(dim: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def test_procrustes_recovers_a_random_rotation_exactly():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((500, 64)).astype(np.float32)
    rotation = random_rotation(64, rng)
    mapping = lx.procrustes(src, src @ rotation)
    np.testing.assert_allclose(mapping, rotation, atol=1e-5)
    np.testing.assert_allclose(mapping @ mapping.T, np.eye(64), atol=1e-5)


def hubness_case(n: int = 300, dim: int = 32, seed: int = 0):
    """Queries share a strong common direction; their true targets do not, but that direction is a key.

    The hub key is then the plain nearest neighbour of most queries, while CSLS discounts it because
    it is close to every query.
    """
    rng = np.random.default_rng(seed)
    hub = rng.standard_normal(dim)
    hub /= np.linalg.norm(hub)
    specific = rng.standard_normal((n, dim)) / np.sqrt(dim)
    queries = lx.normalize(hub + specific, center=False)
    targets = lx.normalize(specific + 0.5 * rng.standard_normal((n, dim)) / np.sqrt(dim), center=False)
    return queries, np.vstack([targets, hub[None].astype(np.float32)])


def test_csls_beats_nearest_neighbour_on_hubness():
    queries, keys = hubness_case()
    gold = np.arange(len(queries))
    nn = lx.nn_retrieve(queries, keys, topn=1)[:, 0]
    csls = lx.csls_retrieve(queries, keys, k=10, topn=1)[:, 0]
    hub = len(keys) - 1
    assert (nn == hub).mean() > 0.5  # the hub steals most plain-NN queries
    assert (csls == hub).mean() < 0.1
    assert (csls == gold).mean() > (nn == gold).mean() + 0.5


def test_seed_pairs_identical_strings_and_numerals_of_any_script():
    seeds = lx.seed_pairs(["3", "internet", "the", "12"], ["इंटरनेट", "३", "internet", "१२", "3"])
    assert seeds == [(0, 1), (1, 2), (3, 3)]  # first target occurrence wins (३ before 3)


def name(prefix: str, i: int) -> str:
    """Letters only (vocabularies drop tokens with digits): 42 -> `xec`."""
    return prefix + "".join(chr(ord("a") + int(digit)) for digit in str(i))


def synthetic_languages(n: int = 800, dim: int = 32, noise: float = 0.05, seeds: int = 40, seed: int = 1):
    rng = np.random.default_rng(seed)
    src = rng.standard_normal((n, dim)).astype(np.float32)
    rotation = random_rotation(dim, rng)
    tgt = src @ rotation + noise * rng.standard_normal((n, dim)).astype(np.float32)
    perm = rng.permutation(n)  # target vocabulary in another order
    src_words = [name("w", i) for i in range(n)]
    tgt_words = [name("t", i) for i in range(n)]
    for i in range(seeds):  # identical strings (numerals) act as seeds
        src_words[i] = tgt_words[int(np.where(perm == i)[0][0])] = str(i)
    reference = lx.Lexicon("xx")
    for j, i in enumerate(perm):
        reference.add(src_words[i], tgt_words[j])
    return src_words, src, tgt_words, tgt[perm], reference


def test_induction_from_seeds_recovers_a_rotated_language():
    src_words, src, tgt_words, tgt, reference = synthetic_languages()
    result = lx.induce("xx", src_words, src, tgt_words, tgt, init="seeds", refinements=2, max_rank=800)
    assert len(result.seeds) == 40 and result.refinement_sizes[-1] > 700
    score = lx.score_lexicon(result.lexicon, reference, exclude=[w for w, _ in result.seeds])
    assert score.n == 760 and score.excluded == 40
    assert score.p_at_1 > 0.95
    # identity is meaningless for separately trained spaces: refinement cannot rescue it
    identity = lx.induce("xx", src_words, src, tgt_words, tgt, init="identity", refinements=1, max_rank=800)
    assert lx.score_lexicon(identity.init_lexicon, reference).p_at_1 < 0.1


def test_adversarial_init_returns_an_orthogonal_map():
    rng = np.random.default_rng(0)
    src = lx.normalize(rng.standard_normal((200, 16)))
    mapping = lx.adversarial_init(src, src, steps=20, batch_size=8)
    assert mapping.shape == (16, 16)
    np.testing.assert_allclose(mapping @ mapping.T, np.eye(16), atol=0.05)


def test_evaluate_counts_missing_entries_as_wrong_and_restricts_vocab():
    reference = lx.Lexicon("de")
    for en, de in [("dog", "hund"), ("cat", "katze"), ("house", "haus"), ("rare", "selten"), ("7", "7")]:
        reference.add(en, de)
    predicted = lx.Lexicon("de")
    predicted.add("dog", "hund")
    predicted.add("cat", "hund")
    predicted.add("cat", "katze", 2)
    predicted.add("7", "7")
    result = lx.score_lexicon(predicted, reference, exclude=["7"], target_vocab={"hund", "katze", "haus", "7"})
    assert (result.n, result.excluded) == (3, 1)  # `rare` is out of vocabulary, `7` is a seed
    assert result.p_at_1 == pytest.approx(1 / 3) and result.p_at_5 == pytest.approx(2 / 3)
    with pytest.raises(LinguaLiftError, match="no reference pairs"):
        lx.score_lexicon(predicted, reference, source_vocab=["zebra"])


def test_induce_rejects_empty_word_lists():
    with pytest.raises(LinguaLiftError, match="empty word list"):
        lx.induce("de", [], np.zeros((0, 4), np.float32), ["a"], np.ones((1, 4), np.float32))


# ---- CLI -----------------------------------------------------------------------------------------


def test_cli_induce_eval_show_with_vec_files(tmp_path, capsys):
    src_words, src, tgt_words, tgt, reference = synthetic_languages(n=400, dim=24)

    def vec(path, words, vectors):
        lines = [f"{len(words)} {vectors.shape[1]}"] + [f"{w} " + " ".join(f"{x:.6f}" for x in v) for w, v in zip(words, vectors)]
        write(path, "\n".join(lines) + "\n")

    vec(tmp_path / "en.vec", src_words, src)
    vec(tmp_path / "xx.vec", tgt_words, tgt)
    lx.write_tsv(reference, tmp_path / "ref" / "en-xx.tsv")
    out = tmp_path / "induced"
    code = main(["lexicon", "induce", "--langs", "xx", "--words", "400", "--vectors", f"vec:{tmp_path}/{{lang}}.vec",
                 "--init", "seeds", "--refinements", "2", "--reference", str(tmp_path / "ref" / "en-{lang}.tsv"),
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["languages"]["xx"]["eval"]["refined"]["p@1"] > 0.9
    assert "P@1 refined" in capsys.readouterr().out
    code = main(["lexicon", "eval", "--lexicon", str(out / "en-xx.tsv"), "--reference", str(tmp_path / "ref" / "en-xx.tsv"),
                 "--exclude", str(out / "en-xx.seeds.tsv")])
    assert code == 0 and re.search(r"P@1 (0\.9\d\d|1\.000)", capsys.readouterr().out)
    assert main(["lexicon", "show", str(out / "en-xx.tsv"), "wec"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("wec\t")


def test_cli_induce_reports_foreign_drops_apart_from_english_ones(tmp_path):
    src_words, src, tgt_words, tgt, _ = synthetic_languages(n=400, dim=24)
    tgt_words[-3:] = ["und", "nicht", "der"]  # German words in the target vocabulary: `--drop-foreign de` drops them
    for lang, words, vectors in (("en", src_words, src), ("xx", tgt_words, tgt)):
        lines = [f"{len(words)} {vectors.shape[1]}"] + [f"{w} " + " ".join(f"{x:.6f}" for x in v)
                                                         for w, v in zip(words, vectors)]
        write(tmp_path / f"{lang}.vec", "\n".join(lines) + "\n")
    out = tmp_path / "induced"
    assert main(["lexicon", "induce", "--langs", "xx", "--words", "400", "--vectors", f"vec:{tmp_path}/{{lang}}.vec",
                 "--init", "seeds", "--refinements", "1", "--reference", "none", "--drop-foreign", "de",
                 "--out", str(out)]) == 0
    entry = json.loads((out / "report.json").read_text())["languages"]["xx"]
    expected = int((~lx.foreign_mask(tgt_words, ["de"])).sum())
    assert expected >= 3 and entry["foreign_dropped"] == expected and entry["english_dropped"] == 0
    assert entry["words"] == [400, 400 - expected]


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["lexicon", "show", str(tmp_path / "missing.tsv")]) == 2
    assert main(["lexicon", "induce", "--langs", "de", "--words", "0", "--out", str(tmp_path)]) == 2
    assert main(["lexicon", "induce", "--langs", "de", "--vectors", "glove", "--out", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)


def test_restrict_a_lexicon_to_the_words_of_texts():
    full = lx.Lexicon("de", source="muse")
    for word, translation in (("apples", "Äpfel"), ("how", "wie"), ("pears", "Birnen")):
        full.add(word, translation)
    words = lx.words_of(["How many apples?", "5th apples x2"])
    assert words == ["how", "many", "apples", "apples"]
    kept = lx.restrict_lexicon(full, set(words), "restricted to the prompts")
    assert list(kept.entries) == ["apples", "how"] and kept.source == "muse (restricted to the prompts)"
    assert lx.coverage(kept, words) == 0.75 and lx.coverage(kept, []) == 0.0
