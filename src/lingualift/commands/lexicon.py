"""`lingualift lexicon wordlist|induce|eval|show`: bilingual lexicons without parallel data, and their quality."""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    wordlist = sub.add_parser("wordlist", help="frequency-ranked word lists from Debian spell-checking dictionaries "
                              "(for languages wordfreq lacks: sw te ne mr kn)")
    wordlist.add_argument("--langs", required=True, help="comma-separated languages, e.g. sw,te,ne,mr,kn")
    wordlist.add_argument("--words", type=int, default=20000, help="words kept per language (default 20000)")
    wordlist.add_argument("--encoder", default="default",
                          help="encoder whose sentencepiece unigram tokenizer ranks the words (default: default)")
    wordlist.add_argument("--out", required=True, help="folder for XX.txt (one word a line, most probable first) "
                          "and wordlists.json (source, licence, version of each list)")

    induce = sub.add_parser("induce", help="induce en→XX lexicons (MUSE recipe: seeds, Procrustes, CSLS)")
    induce.add_argument("--langs", required=True, help="comma-separated target languages, e.g. de,es,fr,ru,zh,ar")
    induce.add_argument("--words", type=int, default=20000, help="vocabulary size per language (default 20000)")
    induce.add_argument("--vectors", default="encoder:default",
                        help="encoder[:SPEC] (the model's multilingual encoder; default encoder:default) "
                        "or vec:PATTERN (fastText .vec files, {lang} is replaced)")
    induce.add_argument("--prefix", default="", help="text put before each word for the encoder, not pooled (e5: 'query: ')")
    induce.add_argument("--layer", type=_layer, default="middle",
                        help="encoder hidden layer to pool: an index (0 = embeddings), middle (default) or last")
    induce.add_argument("--batch-size", type=int, default=512)
    induce.add_argument("--corpus", help="LANG=PATH list of corpora / word lists (default: wordfreq); en included")
    induce.add_argument("--init", choices=("identity", "seeds", "adversarial"), default="identity",
                        help="initial mapping (identity suits one shared encoder space; seeds/adversarial suit "
                        "separately trained vectors)")
    induce.add_argument("--refinements", type=int, default=5, help="Procrustes refinement steps (default 5)")
    induce.add_argument("--knn", type=int, default=10, help="CSLS neighbourhood size k (default 10)")
    induce.add_argument("--keep-english", action="store_true",
                        help="keep target-list words that are more frequent in English (wordfreq) than in the language")
    induce.add_argument("--drop-foreign", metavar="LANGS",
                        help="comma-separated wordfreq languages: drop target words any of them uses once per million "
                        "words or more (for Latin-script lists of languages wordfreq lacks, e.g. sw)")
    induce.add_argument("--no-center", action="store_true", help="do not mean-centre vectors before mapping")
    induce.add_argument("--reference", default="muse:{lang}",
                        help="reference dictionary for P@k ({lang} replaced; default muse:{lang}), 'none' to skip, "
                        "or LANG=SPEC[,LANG=SPEC…] to score only those languages (e.g. sw=freedict:swh)")
    induce.add_argument("--out", required=True, help="folder for en-XX.tsv, en-XX.seeds.tsv and report.json")
    induce.add_argument("--data-dir", help="data directory holding muse/")

    evaluate = sub.add_parser("eval", help="precision@1/@5 of a lexicon against a reference dictionary")
    evaluate.add_argument("--lexicon", required=True, help="lexicon spec (muse:XX or .txt/.tsv path)")
    evaluate.add_argument("--reference", default="muse:{lang}", help="reference spec (default muse:{lang})")
    evaluate.add_argument("--lang", help="language code (default: from the lexicon file name)")
    evaluate.add_argument("--exclude", help="seed TSV whose English words are not scored (from `induce`)")
    evaluate.add_argument("--words", type=int,
                          help="score only words in both wordfreq top-N lists (reproduces `induce`'s numbers)")
    evaluate.add_argument("--keep-english", action="store_true",
                          help="with --words: as `induce --keep-english`, keep English-dominant target words")
    evaluate.add_argument("--data-dir", help="data directory holding muse/")

    show = sub.add_parser("show", help="print a lexicon's size and the translations of some words")
    show.add_argument("lexicon", help="lexicon spec (muse:XX or .txt/.tsv path)")
    show.add_argument("words", nargs="*", help="English words to look up (default: the first 10 entries)")
    show.add_argument("--lang", help="language code (default: from the spec)")
    show.add_argument("--data-dir", help="data directory holding muse/")


def _layer(text: str) -> int | str | None:
    if text in ("middle", "last"):
        return None if text == "last" else text
    return int(text)


def run(args) -> int:
    return {"wordlist": _wordlist, "induce": _induce, "eval": _eval, "show": _show}[args.action](args)


def _wordlist(args) -> int:
    from lingualift.data.wordlists import build_word_list, spell_dictionary
    from lingualift.errors import LinguaLiftError
    from lingualift.io import atomic_write, check_output_dir, write_json
    from lingualift.model.components import build_preset, is_preset, load_tokenizer
    from lingualift.schema import parse_languages

    if args.words < 1:
        raise LinguaLiftError(f"--words must be positive, got {args.words}")
    langs = parse_languages(args.langs, "--langs", allow_all=False)
    check_output_dir(args.out, ("wordlists.json", "[a-z][a-z].txt", "[a-z][a-z][a-z].txt"), "--out")
    for lang in langs:  # an unknown language fails before the tokenizer loads
        spell_dictionary(lang)
    encoder = args.encoder
    if is_preset(encoder):
        built = build_preset(encoder, "encoder", "--encoder")
        tokenizer = built[1] if isinstance(built, tuple) else load_tokenizer(str(built), "--encoder")
    else:
        tokenizer = load_tokenizer(encoder, "--encoder")
    out = Path(args.out)
    built_lists = {lang: build_word_list(lang, args.words, tokenizer) for lang in langs}
    provenance = {}
    for lang, (words, record) in built_lists.items():
        with atomic_write(out / f"{lang}.txt") as handle:
            handle.write("".join(f"{word}\n" for word in words))
        provenance[lang] = {**record, "encoder": encoder}
        print(f"{lang}: {len(words)} words from {record['package']} {record['version']} ({record['licence']}), "
              f"{record['dictionary_entries']} dictionary entries")
    write_json(out / "wordlists.json", provenance)
    print(f"word lists and wordlists.json in {out}")
    return 0


def _induce(args) -> int:
    import wordfreq

    from lingualift.data import lexicon as lx
    from lingualift.data.codeswitch import parse_mapping
    from lingualift.errors import LinguaLiftError
    from lingualift.io import check_output_dir, write_json
    from lingualift.schema import parse_languages

    if args.words < 1:
        raise LinguaLiftError(f"--words must be positive, got {args.words}")
    langs = parse_languages(args.langs, "--langs", allow_all=False)
    check_output_dir(args.out, ("en-*.tsv", "report.json"), "--out")
    foreign = parse_languages(args.drop_foreign, "--drop-foreign", allow_all=False) if args.drop_foreign else []
    unknown = [lang for lang in foreign if lang not in wordfreq.available_languages()]
    if unknown:
        raise LinguaLiftError(f"--drop-foreign: wordfreq has no {', '.join(unknown)}")
    corpora = parse_mapping(args.corpus, "--corpus") if args.corpus else {}
    source = lx.VectorSource(args.vectors, prefix=args.prefix, layer=args.layer, batch_size=args.batch_size)
    # Fail on a missing reference before minutes of embedding.
    if args.reference == "none":
        reference_specs = {}
    elif "=" in args.reference:
        reference_specs = parse_mapping(args.reference, "--reference")
        unknown = sorted(set(reference_specs) - set(langs))
        if unknown:
            raise LinguaLiftError(f"--reference names {', '.join(unknown)}, which --langs does not")
    else:
        reference_specs = {lang: args.reference.format(lang=lang) for lang in langs}
    references = {lang: lx.load_lexicon(spec, lang, args.data_dir) for lang, spec in reference_specs.items()}
    out = Path(args.out)
    started = time.perf_counter()
    src_words, src_vectors = source.words_and_vectors("en", args.words, corpora.get("en"))
    report = {"settings": vars(args),
              "languages": {}, "embed_en_s": round(time.perf_counter() - started, 1)}
    rows = []
    for lang in langs:
        begin = time.perf_counter()
        tgt_words, tgt_vectors = source.words_and_vectors(lang, args.words, corpora.get(lang))
        english_dropped = foreign_dropped = 0
        if not args.keep_english and lang in wordfreq.available_languages():
            keep = lx.native_mask(tgt_words, lang)
            english_dropped = int((~keep).sum())
            tgt_words, tgt_vectors = [w for w, k in zip(tgt_words, keep) if k], tgt_vectors[keep]
            logger.info("en-%s: dropped %d target words more frequent in English", lang, english_dropped)
        if foreign:
            keep = lx.foreign_mask(tgt_words, foreign)
            foreign_dropped = int((~keep).sum())
            tgt_words, tgt_vectors = [w for w, k in zip(tgt_words, keep) if k], tgt_vectors[keep]
            logger.info("en-%s: dropped %d target words frequent in %s", lang, foreign_dropped, ",".join(foreign))
        embedded = time.perf_counter()
        result = lx.induce(lang, src_words, src_vectors, tgt_words, tgt_vectors, init=args.init,
                           refinements=args.refinements, k=args.knn, center=not args.no_center, source=args.vectors)
        finished = time.perf_counter()
        lx.write_tsv(result.lexicon, out / f"en-{lang}.tsv")
        seeds = lx.Lexicon(lang, source="identical strings and numerals")
        for word, translation in result.seeds:
            seeds.add(word, translation)
        lx.write_tsv(seeds, out / f"en-{lang}.seeds.tsv")
        entry = {"words": [len(src_words), len(tgt_words)], "english_dropped": english_dropped,
                 "foreign_dropped": foreign_dropped, "seeds": len(result.seeds),
                 "refinement_pairs": result.refinement_sizes, "embed_s": round(embedded - begin, 1),
                 "induce_s": round(finished - embedded, 1)}
        if lang in references:
            scores = {}
            lexicons = {"init_nn": result.init_nn_lexicon, "init": result.init_lexicon, "refined": result.lexicon}
            for name, lexicon in lexicons.items():
                scores[name] = lx.score_lexicon(lexicon, references[lang], exclude=seeds.entries,
                                           source_vocab=src_words, target_vocab=tgt_words).as_dict()
            entry["eval"] = scores
            rows.append((lang, len(result.seeds), scores["refined"]["n"], scores["init_nn"]["p@1"],
                         scores["init"]["p@1"], scores["refined"]["p@1"], scores["refined"]["p@5"]))
        report["languages"][lang] = entry
        logger.info("en-%s: %s", lang, entry)
    report["total_s"] = round(time.perf_counter() - started, 1)
    write_json(out / "report.json", report)
    if rows:
        header = ["lang", "seeds", "eval n", f"P@1 {args.init} NN", f"P@1 {args.init} CSLS", "P@1 refined", "P@5 refined"]
        print("  ".join(f"{name:>{max(len(name), 6)}}" for name in header))
        for row in rows:
            cells = [row[0], str(row[1]), str(row[2])] + [f"{value:.3f}" for value in row[3:]]
            print("  ".join(f"{cell:>{max(len(name), 6)}}" for cell, name in zip(cells, header)))
    print(f"lexicons, seeds and report.json in {out} ({report['total_s']} s)")
    return 0


def _eval(args) -> int:
    from lingualift.data import lexicon as lx

    predicted = lx.load_lexicon(args.lexicon, args.lang, args.data_dir)
    lang = args.lang or predicted.lang
    reference = lx.load_lexicon(args.reference.format(lang=lang), lang, args.data_dir)
    exclude = lx.load_lexicon(args.exclude, lang).entries if args.exclude else ()
    vocab = {}
    if args.words:
        target = lx.word_list(lang, args.words)
        if not args.keep_english:
            target = [word for word, keep in zip(target, lx.native_mask(target, lang)) if keep]
        vocab = {"source_vocab": lx.word_list("en", args.words), "target_vocab": target}
    result = lx.score_lexicon(predicted, reference, exclude=exclude, **vocab)
    print(f"en-{lang}: P@1 {result.p_at_1:.3f}  P@5 {result.p_at_5:.3f}  over {result.n} reference words "
          f"({result.excluded} seed words excluded)")
    return 0


def _show(args) -> int:
    from lingualift.data.lexicon import load_lexicon

    lexicon = load_lexicon(args.lexicon, args.lang, args.data_dir)
    print(f"en-{lexicon.lang}: {len(lexicon)} English words, {sum(1 for _ in lexicon.pairs())} pairs ({lexicon.source})")
    for word in args.words or list(lexicon.entries)[:10]:
        print(f"{word}\t{', '.join(lexicon.translations(word)) or '-'}")
    return 0
