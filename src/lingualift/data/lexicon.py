"""Bilingual lexicons: English word → ranked translations, per language.

Stage 1 code-switches English prompts with word translations, and the method promises to need no
parallel data, so this module both *reads* dictionaries (MUSE `en-XX.txt`, plain TSV) and *induces*
them the MUSE way (Conneau et al. 2018): frequency word lists per language, word vectors, an initial
mapping (identity, identical-string/numeral seeds, or adversarial), iterative Procrustes refinement,
CSLS retrieval. `evaluate` measures precision@k against a reference dictionary on pairs not used as
seeds, so an induced lexicon's quality is a number, not a hope.

Lexicon specs (configs and CLI): `muse:de` → `<data_dir>/muse/en-de.txt`; `induced:sw` → the lexicon
`scripts/lexicons.sh` induced into the cache (`<cache>/lexicons/induced/en-sw.tsv`); `freedict:swh` → the installed
FreeDict English–Swahili dictionaries (an evaluation reference); a path to a MUSE-style
`.txt` (whitespace separated, unranked) or a `.tsv` (`en<TAB>xx[<TAB>rank]`; translations may
contain spaces).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lingualift.checkpoint import path_fingerprint
from lingualift.errors import LinguaLiftError
from lingualift.io import atomic_write, iter_text_lines, require_file
from lingualift.paths import cache_dir, cache_root, find_data_dir

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# The Lexicon type, readers and writer
# --------------------------------------------------------------------------------------------------


@dataclass
class Lexicon:
    """English → `lang` translations. Each entry is a list of (translation, rank), best rank first.

    Unranked dictionaries (MUSE) give every translation rank 1: they are equally valid, and
    code-switching samples among the best-ranked ones.
    """

    lang: str
    entries: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    source: str = ""

    def add(self, word: str, translation: str, rank: int = 1) -> None:
        """Add one pair; duplicates are ignored (the first rank wins)."""
        current = self.entries.setdefault(word.lower(), [])
        if all(existing != translation for existing, _ in current):
            current.append((translation, rank))
            current.sort(key=lambda item: item[1])  # stable: file order within a rank

    def translations(self, word: str) -> list[str]:
        """All translations of `word` (case-insensitive lookup), best first; [] if unknown."""
        return [translation for translation, _ in self.entries.get(word.lower(), ())]

    def best(self, word: str) -> list[str]:
        """The translations sharing the best rank."""
        entry = self.entries.get(word.lower())
        if not entry:
            return []
        top = entry[0][1]
        return [translation for translation, rank in entry if rank == top]

    def pairs(self) -> Iterator[tuple[str, str, int]]:
        for word, entry in self.entries.items():
            for translation, rank in entry:
                yield word, translation, rank

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.entries

    def __len__(self) -> int:
        return len(self.entries)


# A word is a run of letters (\w minus digits and underscore) with optional inner apostrophes.
# Tokens touching digits ("5th", "x2") are not matched as words, so numbers are never touched.
WORD_PATTERN = re.compile(r"(?<![\w])[^\W\d_]+(?:['’][^\W\d_]+)*(?![\w])")


def words_of(texts: Iterable[str]) -> list[str]:
    """The lower-cased words of `texts` in order: what a lexicon is looked up with when code-switching."""
    return [match.group().lower() for text in texts for match in WORD_PATTERN.finditer(text)]


def restrict_lexicon(lexicon: Lexicon, words: Collection[str], note: str) -> Lexicon:
    """The entries of `lexicon` for `words` only (lower-cased): a small lexicon that still serves texts made of
    those words; `note` says why in the new lexicon's source."""
    kept = Lexicon(lexicon.lang, source=f"{lexicon.source} ({note})")
    for word, translation, rank in lexicon.pairs():
        if word in words:
            kept.add(word, translation, rank)
    return kept


def coverage(lexicon: Lexicon, words: Sequence[str]) -> float:
    """The fraction of `words` (tokens, repeats count) that `lexicon` has an entry for."""
    return sum(1 for word in words if word in lexicon) / max(len(words), 1)


def read_muse(path: str | Path, lang: str | None = None) -> Lexicon:
    """Read a MUSE dictionary: one `english translation` pair per line, split on any whitespace."""
    path = require_file(path, "MUSE dictionary")
    lexicon = Lexicon(lang or _lang_from_name(path), source=str(path))
    for number, line in iter_text_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise LinguaLiftError(
                f"{path}:{number}: expected 2 whitespace-separated words, got {len(parts)}; "
                "use a .tsv (en<TAB>xx<TAB>rank) for multi-word translations"
            )
        lexicon.add(parts[0], parts[1])
    return lexicon


def read_tsv(path: str | Path, lang: str | None = None) -> Lexicon:
    """Read `english<TAB>translation[<TAB>rank]` lines (`#` lines are comments); no rank = rank 1."""
    path = require_file(path, "lexicon TSV")
    lexicon = Lexicon(lang or _lang_from_name(path), source=str(path))
    for number, line in iter_text_lines(path):
        if line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split("\t")]
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise LinguaLiftError(f"{path}:{number}: expected `english<TAB>translation[<TAB>rank]`")
        rank = 1
        if len(parts) == 3:
            try:
                rank = int(parts[2])
            except ValueError:
                raise LinguaLiftError(f"{path}:{number}: rank must be an integer, got {parts[2]!r}") from None
        lexicon.add(parts[0], parts[1], rank)
    return lexicon


def write_tsv(lexicon: Lexicon, path: str | Path) -> Path:
    """Write the lexicon as `english<TAB>translation<TAB>rank`, so it can be read, diffed and edited."""
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(f"# lingualift lexicon en-{lexicon.lang}; source: {lexicon.source or 'unknown'}\n")
        for word, translation, rank in lexicon.pairs():
            handle.write(f"{word}\t{translation}\t{rank}\n")
    return path


_DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
FREEDICT_DIR = Path("/usr/share/dictd")


def _dictd_number(text: str, where: str) -> int:
    """A number in dictd's base-64 digits; `where` (`file:line`) names a corrupt one."""
    if not text or any(char not in _DICTD_DIGITS for char in text):
        raise LinguaLiftError(f"{where}: {text!r} is not a dictd base-64 number; the index is corrupt "
                              "(reinstall the dictionary)")
    value = 0
    for char in text:
        value = value * 64 + _DICTD_DIGITS.index(char)
    return value


def read_dictd(index: Path) -> Iterator[tuple[str, list[str]]]:
    """`(headword, translation lines)` of a dictd dictionary (`X.index` beside `X.dict.dz` or `X.dict`).

    The index holds `headword<TAB>offset<TAB>length` in dictd's base-64 digits; an entry's first line
    repeats the headword with pronunciation and part of speech, the lines after it are its senses.
    """
    import gzip
    import zlib

    index = require_file(index, "dictd index")
    stem = index.with_suffix("")
    packed, plain = stem.with_name(stem.name + ".dict.dz"), stem.with_name(stem.name + ".dict")
    if packed.is_file():
        try:
            data = gzip.decompress(packed.read_bytes())  # dictzip is gzip with a random-access table
        except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; a cut file an EOFError
            raise LinguaLiftError(f"{packed}: not a readable dictzip file ({str(error) or 'cut short'}); reinstall "
                                  "the dictionary") from None
    elif plain.is_file():
        data = plain.read_bytes()
    else:
        raise LinguaLiftError(f"{index}: no {packed.name} or {plain.name} beside it")
    source = packed if packed.is_file() else plain
    for number, line in iter_text_lines(index):
        where = f"{index}:{number}"
        parts = line.split("\t")
        if len(parts) != 3:
            raise LinguaLiftError(f"{where}: expected `headword<TAB>offset<TAB>length`")
        headword, offset, length = parts[0], _dictd_number(parts[1], where), _dictd_number(parts[2], where)
        if headword.startswith("00database") or headword.startswith("00-database"):
            continue
        if offset + length > len(data):
            raise LinguaLiftError(f"{where}: the entry ends at byte {offset + length}, past the end of {source.name} "
                                  f"({len(data)} bytes); the index does not belong to it (reinstall the dictionary)")
        try:
            body = data[offset : offset + length].decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise LinguaLiftError(f"{where}: the entry it points to in {source.name} is not valid UTF-8; the "
                                  "dictionary is corrupt (reinstall it)") from None
        yield headword, [line.strip() for line in body[1:] if line.strip()]


def _single_words(lines: Iterable[str]) -> list[str]:
    """The one-word senses of dictd entry lines: `fee, payment` → fee, payment; glosses with spaces and
    sense numbers (`1.`) are dropped (a word-level reference cannot score phrases)."""
    words = []
    for line in lines:
        for part in re.split(r"[,;]", line):
            word = part.strip().lower()
            if word and " " not in word and is_word(word):
                words.append(word)
    return words


def read_freedict(code: str, lang: str, directory: Path = FREEDICT_DIR) -> Lexicon:
    """English → `lang` pairs from the FreeDict dictionaries installed for ISO 639-3 `code`: `eng-CODE`
    as it is and `CODE-eng` reversed, merged (an evaluation reference, e.g. `freedict:swh` for Swahili,
    which MUSE lacks: Debian packages dict-freedict-eng-swh and dict-freedict-swh-eng)."""
    lexicon = Lexicon(lang, source=f"FreeDict {code} ({directory})")
    forward, backward = directory / f"freedict-eng-{code}.index", directory / f"freedict-{code}-eng.index"
    if not forward.is_file() and not backward.is_file():
        raise LinguaLiftError(f"no FreeDict eng-{code} or {code}-eng dictionary in {directory}: "
                              f"apt-get install dict-freedict-eng-{code} dict-freedict-{code}-eng")
    if forward.is_file():
        for headword, lines in read_dictd(forward):
            if " " not in headword.strip():
                for translation in _single_words(lines):
                    lexicon.add(headword.strip(), translation)
    if backward.is_file():
        for headword, lines in read_dictd(backward):
            if " " not in headword.strip() and is_word(headword.strip()):
                for english in _single_words(lines):
                    lexicon.add(english, headword.strip().lower())
    return lexicon


def _lang_from_name(path: Path) -> str:
    match = re.fullmatch(r"en-([A-Za-z_]+)(?:\..*)?", path.name)
    if not match:
        raise LinguaLiftError(f"{path}: cannot tell the language from the file name; name it en-XX.txt/.tsv")
    return match.group(1)


def induced_lexicon_dir() -> Path:
    """Where `scripts/lexicons.sh` puts the induced lexicons (spec `induced:XX` → `en-XX.tsv` there); not
    created: readers and pre-flight checks (`--dry-run`) only look, `lexicon induce --out` creates it."""
    return cache_root() / "lexicons" / "induced"


def induced_lexicon_path(lang: str) -> Path:
    return induced_lexicon_dir() / f"en-{lang}.tsv"


def load_lexicon(spec: str, lang: str | None = None, data_dir: str | Path | None = None) -> Lexicon:
    """Resolve a lexicon spec: `muse:XX`, `induced:XX`, `freedict:CODE` (ISO 639-3, needs `lang`), or a path
    to a MUSE `.txt` or a `.tsv`."""
    if spec.startswith("induced:"):
        code = spec.split(":", 1)[1]
        path = induced_lexicon_path(code)
        if not path.is_file():
            raise LinguaLiftError(f"lexicon {spec!r}: {path} not found; build the induced lexicons with "
                                  "`bash scripts/lexicons.sh` (see docs/lexicon-induction.md)")
        lexicon = read_tsv(path, lang or code)
    elif spec.startswith("freedict:"):
        if not lang:
            raise LinguaLiftError(f"lexicon {spec!r}: give the language code (FreeDict names languages in ISO 639-3)")
        path = FREEDICT_DIR
        lexicon = read_freedict(spec.split(":", 1)[1], lang)
    elif spec.startswith("muse:"):
        code = spec.split(":", 1)[1]
        path = find_data_dir(data_dir) / "muse" / f"en-{code}.txt"
        if not path.is_file():
            raise LinguaLiftError(f"lexicon {spec!r}: {path} not found (MUSE has no en-{code}; give a .tsv path)")
        lexicon = read_muse(path, lang or code)
    else:
        path = Path(spec)
        if not path.is_file():
            raise LinguaLiftError(f"lexicon {spec!r} not found: use muse:XX, induced:XX or a path to a .txt/.tsv file")
        lexicon = read_tsv(path, lang) if path.suffix == ".tsv" else read_muse(path, lang)
    if not lexicon.entries:
        raise LinguaLiftError(f"lexicon {spec!r} ({path}) is empty")
    return lexicon


# --------------------------------------------------------------------------------------------------
# Word lists and word vectors
# --------------------------------------------------------------------------------------------------

@functools.cache
def _token_pattern() -> re.Pattern:
    """Runs of word characters *and combining marks*: `\\w` alone splits `हैं` into `ह` (vowel signs are marks).

    Zero-width (non-)joiners, which Indic spelling puts inside words, join too (`is_word` then drops
    the rare token that keeps one). Built once: the mark class is every code point of category M.
    """
    marks = "".join(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("M"))
    return re.compile(f"[\\w{re.escape(marks)}\u200c\u200d]+")


def is_word(token: str) -> bool:
    """Letters (with combining marks, so Devanagari and Bengali count) or a plain numeral."""
    if not token:
        return False
    if is_numeral(token):
        return True
    return all(unicodedata.category(char)[0] in "LM" for char in token)


def is_numeral(token: str) -> bool:
    return bool(token) and all(unicodedata.decimal(char, None) is not None for char in token)


def word_list(lang: str, n: int, corpus: str | Path | None = None) -> list[str]:
    """The `n` most frequent words of `lang`: from a corpus / word-list file, else from `wordfreq`.

    A corpus is any UTF-8 text; a file with one word per line, most frequent first, is a corpus whose
    counts tie, so its order is kept. Tokens that are not words (symbols, emoji, `u00`) are dropped.
    """
    if corpus is not None:
        counts: collections.Counter[str] = collections.Counter()
        for _, line in iter_text_lines(require_file(corpus, f"{lang} corpus")):
            counts.update(token.lower() for token in _token_pattern().findall(line) if is_word(token))
        words = [word for word, _ in counts.most_common(n)]
        where = str(corpus)
    else:
        import wordfreq

        if lang not in wordfreq.available_languages():
            raise LinguaLiftError(f"wordfreq has no word list for {lang!r}; pass a corpus file for it")
        words = [word for word in wordfreq.top_n_list(lang, 2 * n) if is_word(word)][:n]
        where = "wordfreq"
    if not words:
        raise LinguaLiftError(f"empty word list for {lang!r} (from {where}); give a corpus with words in it")
    return words


def native_mask(words: Sequence[str], lang: str) -> np.ndarray:
    """True for words at least as frequent in `lang` as in English (by `wordfreq`), and numerals.

    Web word lists of other languages hold many English words (`dog`, `sale` in German); in one shared
    encoder space an English query retrieves them as its own "translation", useless for code-switching.
    """
    import wordfreq

    native, english = wordfreq.get_frequency_dict(lang), wordfreq.get_frequency_dict("en")
    return np.array([is_numeral(w) or native.get(w, 0.0) >= english.get(w, 0.0) for w in words], dtype=bool)


def foreign_mask(words: Sequence[str], others: Sequence[str], min_frequency: float = 1e-6) -> np.ndarray:
    """True for words that no language in `others` uses at `min_frequency` or more (wordfreq; 1e-6 is
    Zipf 3, once per million words), and numerals.

    For languages wordfreq lacks there is no native frequency to compare with (`native_mask`), and
    Latin-script dictionaries built from web text hold other languages' words (the Swahili hunspell
    list has `agua`, `hunde`, `sie`): in one shared encoder space such a word wins its English query.
    """
    import wordfreq

    tables = [wordfreq.get_frequency_dict(lang) for lang in others]
    return np.array([is_numeral(w) or all(table.get(w, 0.0) < min_frequency for table in tables) for w in words],
                    dtype=bool)


def read_vec(path: str | Path, max_words: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a fastText `.vec` file (header `count dim`, then `word v1 … vd`), most frequent first."""
    path = require_file(path, "word vector file")
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            header = handle.readline().split()
            dim = int(header[1])
            for number, line in enumerate(handle, start=2):
                if max_words is not None and len(words) >= max_words:
                    break
                parts = line.rstrip("\n").rsplit(" ", dim)
                if len(parts) != dim + 1:
                    raise LinguaLiftError(f"{path}:{number}: expected a word and {dim} numbers")
                if parts[0] in seen:
                    continue
                seen.add(parts[0])
                words.append(parts[0])
                rows.append(np.asarray(parts[1:], dtype=np.float32))
        except (IndexError, ValueError) as exc:
            raise LinguaLiftError(f"{path}: not a fastText .vec file ({exc})") from None
        except UnicodeDecodeError as exc:
            raise LinguaLiftError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    if not words:
        raise LinguaLiftError(f"{path}: no vectors")
    return words, np.stack(rows)


def encoder_word_vectors(
    words: Sequence[str],
    model,
    tokenizer,
    prefix: str = "",
    layer: int | str | None = None,
    batch_size: int = 256,
    max_length: int = 32,
) -> np.ndarray:
    """Embed each word alone with a (frozen) encoder: mean of its sub-word states, specials excluded.

    `prefix` (e5 expects `query: `) is fed to the encoder but not pooled; `layer` picks a hidden
    layer: an index into `hidden_states` (0 = embeddings), `"middle"`, or None for the last one
    (middle layers of multilingual encoders align words across languages better; see
    docs/lexicon-induction.md). Words are sorted by length so batches carry little padding.
    """
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    out: np.ndarray | None = None
    start_char = len(prefix)
    model.eval()
    if layer == "middle":
        layer = _block_count(model) // 2
    with torch.inference_mode(), _layers_up_to(model, layer):
        for begin in tqdm(range(0, len(order), batch_size), desc="embedding words", unit="batch"):
            index = order[begin : begin + batch_size]
            batch = tokenizer(
                [prefix + words[i] for i in index],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )
            offsets = batch.pop("offset_mapping")
            special = batch.pop("special_tokens_mask").bool()
            # A token is part of the word if it is not special and starts at or after the prefix.
            mask = batch["attention_mask"].bool() & ~special & (offsets[..., 1] > start_char)
            outputs = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                output_hidden_states=layer is not None,
            )
            if layer is None:
                states = outputs.last_hidden_state
            else:
                states = outputs.hidden_states[layer]
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            if out is None:
                out = np.zeros((len(words), pooled.shape[-1]), dtype=np.float32)
            out[index] = pooled.float().numpy()
    return out


@contextlib.contextmanager
def _layers_up_to(model, layer: int | None):
    """Run only the blocks needed for hidden state `layer` (the middle one halves the encoding cost).

    `hidden_states[k]` is the output of block k; one block beyond it is kept so that a final norm some
    models apply to their last output (Llama) never touches entry k.
    """
    import torch

    found = _block_list(model) if layer is not None else None
    if found is None:
        yield
        return
    parent, name, blocks = found
    setattr(parent, name, torch.nn.ModuleList(list(blocks)[: int(layer) + 1]))
    try:
        yield
    finally:
        setattr(parent, name, blocks)


def _block_count(model) -> int:
    return getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "num_layers", None) or 0


def _block_list(model):
    """`(parent, attribute, ModuleList)` of a model's transformer blocks (BERT `layer`, T5 `block`, …)."""
    import torch

    count = _block_count(model)
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == count:
                return module, name, child
    return None


# --------------------------------------------------------------------------------------------------
# Mapping: normalisation, Procrustes, CSLS, seeds, adversarial init, refinement
# --------------------------------------------------------------------------------------------------


def normalize(vectors: np.ndarray, center: bool = True) -> np.ndarray:
    """Unit length, mean-centred, unit length again (MUSE `renorm,center,renorm`).

    Centring matters for encoder states, which share a large common direction per language.
    """
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
    if center:
        vectors = vectors - vectors.mean(0, keepdims=True)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
    return vectors.astype(np.float32)


def procrustes(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """The orthogonal W minimising ||src·W − tgt|| (rows are paired vectors): W = U·Vᵀ of svd(srcᵀ·tgt)."""
    u, _, vt = np.linalg.svd(src.T.astype(np.float64) @ tgt.astype(np.float64))
    return (u @ vt).astype(np.float32)


def _topk_sim(queries: np.ndarray, keys: np.ndarray, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities (rows assumed unit length) of each query among keys, chunked."""
    import torch

    keys_t = torch.from_numpy(np.ascontiguousarray(keys))
    k = min(k, len(keys))
    values, indices = [], []
    for begin in range(0, len(queries), chunk):
        sims = torch.from_numpy(np.ascontiguousarray(queries[begin : begin + chunk])) @ keys_t.T
        top = sims.topk(k, dim=1)
        values.append(top.values.numpy())
        indices.append(top.indices.numpy())
    return np.concatenate(values), np.concatenate(indices)


def nn_retrieve(queries: np.ndarray, keys: np.ndarray, topn: int = 5) -> np.ndarray:
    """Plain nearest-neighbour retrieval: indices of the `topn` most similar keys per query."""
    return _topk_sim(queries, keys, topn)[1]


def csls_retrieve(
    queries: np.ndarray,
    keys: np.ndarray,
    k: int = 10,
    topn: int = 5,
    source: np.ndarray | None = None,
    chunk: int = 4096,
) -> np.ndarray:
    """CSLS retrieval: rank keys by 2·cos(q, y) − r(y), r(y) = mean cos of y to its k nearest sources.

    Hubs (keys close to everything) get a large r(y) and stop winning every query. The query-side
    penalty r(q) is constant per query, so it does not change the ranking. `source` is the whole
    mapped source vocabulary (default: the queries).
    """
    import torch

    source = queries if source is None else source
    key_penalty = torch.from_numpy(_topk_sim(keys, source, k, chunk)[0].mean(1))
    keys_t = torch.from_numpy(np.ascontiguousarray(keys))
    result = []
    for begin in range(0, len(queries), chunk):
        sims = torch.from_numpy(np.ascontiguousarray(queries[begin : begin + chunk])) @ keys_t.T
        result.append((2 * sims - key_penalty).topk(min(topn, len(keys)), dim=1).indices.numpy())
    return np.concatenate(result)


def seed_pairs(src_words: Sequence[str], tgt_words: Sequence[str]) -> list[tuple[int, int]]:
    """Initial dictionary without parallel data: identical strings and numerals (any digit script)."""
    def key(word: str) -> str:
        if is_numeral(word):
            return "".join(str(unicodedata.decimal(char)) for char in word)
        return word

    tgt_index: dict[str, int] = {}
    for j, word in enumerate(tgt_words):
        tgt_index.setdefault(key(word), j)
    return [(i, tgt_index[key(word)]) for i, word in enumerate(src_words) if key(word) in tgt_index]


def adversarial_init(
    src: np.ndarray, tgt: np.ndarray, steps: int = 3000, batch_size: int = 32, seed: int = 0
) -> np.ndarray:
    """MUSE's adversarial initial mapping: W fools a discriminator telling src·W from tgt.

    W is kept near-orthogonal with MUSE's update W ← (1+β)W − β(WWᵀ)W. Far fewer steps than MUSE's
    (CPU budget); Procrustes refinement does the rest.
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim = src.shape[1]
    src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt)
    mapping = nn.Linear(dim, dim, bias=False)
    nn.init.eye_(mapping.weight)
    discriminator = nn.Sequential(
        nn.Dropout(0.1), nn.Linear(dim, 2048), nn.LeakyReLU(0.2),
        nn.Linear(2048, 2048), nn.LeakyReLU(0.2), nn.Linear(2048, 1),
    )
    map_opt = torch.optim.SGD(mapping.parameters(), lr=0.1)
    dis_opt = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    loss_fn = nn.BCEWithLogitsLoss()
    smooth = 0.1
    labels = torch.cat([torch.full((batch_size,), 1 - smooth), torch.full((batch_size,), smooth)]).unsqueeze(1)
    # MUSE samples from the most frequent words only: they have the most reliable vectors.
    top_src, top_tgt = min(len(src), 15000), min(len(tgt), 15000)

    def batch() -> torch.Tensor:
        i = torch.randint(top_src, (batch_size,), generator=generator)
        j = torch.randint(top_tgt, (batch_size,), generator=generator)
        return torch.cat([mapping(src_t[i]), tgt_t[j]])

    for _ in tqdm(range(steps), desc="adversarial init", unit="step"):
        discriminator.train()
        dis_opt.zero_grad()
        loss_fn(discriminator(batch().detach()), labels).backward()
        dis_opt.step()
        discriminator.eval()
        map_opt.zero_grad()
        loss_fn(discriminator(batch()), 1 - labels).backward()
        map_opt.step()
        with torch.no_grad():
            weight = mapping.weight
            weight.copy_(1.001 * weight - 0.001 * weight @ weight.T @ weight)
    return mapping.weight.detach().T.contiguous().numpy()  # row convention: src @ W


def mutual_csls_pairs(src: np.ndarray, tgt: np.ndarray, max_rank: int = 15000, k: int = 10) -> list[tuple[int, int]]:
    """Dictionary for refinement: CSLS best matches in both directions among the most frequent words.

    One similarity matrix serves both directions' penalties and argmaxes (max_rank² floats: ~0.9 GB at
    15k), a quarter of the matrix products of two `csls_retrieve` calls.
    """
    import torch

    sims = torch.from_numpy(np.ascontiguousarray(src[:max_rank])) @ torch.from_numpy(np.ascontiguousarray(tgt[:max_rank])).T
    src_penalty = sims.topk(min(k, sims.shape[1]), dim=1).values.mean(1, keepdim=True)
    tgt_penalty = sims.topk(min(k, sims.shape[0]), dim=0).values.mean(0, keepdim=True)
    csls = sims.mul_(2).sub_(src_penalty).sub_(tgt_penalty)
    forward, backward = csls.argmax(1), csls.argmax(0)
    return [(i, int(j)) for i, j in enumerate(forward.tolist()) if backward[j] == i]


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class LexiconScore:
    """Precision@k of a lexicon against a reference, over `n` reference source words."""

    p_at_1: float
    p_at_5: float
    n: int
    excluded: int = 0

    def as_dict(self) -> dict:
        return {"p@1": self.p_at_1, "p@5": self.p_at_5, "n": self.n, "excluded_seeds": self.excluded}


def score_lexicon(
    predicted: Lexicon,
    reference: Lexicon,
    exclude: Iterable[str] = (),
    source_vocab: Iterable[str] | None = None,
    target_vocab: Iterable[str] | None = None,
) -> LexiconScore:
    """P@1 / P@5: a source word counts if one of its top-k predictions is a reference translation.

    Queries are the reference's source words minus `exclude` (seed words: scoring them would reward
    the seeds themselves). With vocabularies, only words the induction could have got right are
    queried: source in `source_vocab` and at least one reference translation in `target_vocab`.
    A query the lexicon has no entry for counts as wrong.
    """
    excluded = {word.lower() for word in exclude}
    src_vocab = None if source_vocab is None else set(source_vocab)
    tgt_vocab = None if target_vocab is None else set(target_vocab)
    hits1 = hits5 = n = skipped = 0
    for word, entry in reference.entries.items():
        gold = {translation for translation, _ in entry}
        if src_vocab is not None and word not in src_vocab:
            continue
        if tgt_vocab is not None and not gold & tgt_vocab:
            continue
        if word in excluded:
            skipped += 1
            continue
        guesses = predicted.translations(word)
        n += 1
        hits1 += bool(set(guesses[:1]) & gold)
        hits5 += bool(set(guesses[:5]) & gold)
    if n == 0:
        raise LinguaLiftError(
            f"no reference pairs to evaluate en-{predicted.lang} on (check the language and vocabularies)"
        )
    return LexiconScore(hits1 / n, hits5 / n, n, skipped)


# --------------------------------------------------------------------------------------------------
# Induction
# --------------------------------------------------------------------------------------------------


@dataclass
class Induction:
    """An induced lexicon with what is needed to evaluate it fairly and to inspect how it was made."""

    lexicon: Lexicon
    seeds: list[tuple[str, str]]
    src_words: list[str]
    tgt_words: list[str]
    init_lexicon: Lexicon  # after the initial mapping only, CSLS retrieval (the baseline)
    init_nn_lexicon: Lexicon  # the same with plain nearest-neighbour retrieval (what CSLS fixes)
    refinement_sizes: list[int]  # dictionary size used at each Procrustes step


def lexicon_from_mapping(
    lang: str, src_words: Sequence[str], tgt_words: Sequence[str], src_mapped: np.ndarray, tgt: np.ndarray,
    k: int = 10, topn: int = 5, retrieval: str = "csls", source: str = "",
) -> Lexicon:
    """Translate every source word: its `topn` best targets (rank 1…topn) by CSLS or plain NN."""
    if retrieval == "csls":
        indices = csls_retrieve(src_mapped, tgt, k=k, topn=topn)
    else:
        indices = nn_retrieve(src_mapped, tgt, topn=topn)
    lexicon = Lexicon(lang, source=source)
    for i, row in enumerate(indices):
        for rank, j in enumerate(row, start=1):
            lexicon.add(src_words[i], tgt_words[j], rank)
    return lexicon


def induce(
    lang: str,
    src_words: Sequence[str],
    src_vectors: np.ndarray,
    tgt_words: Sequence[str],
    tgt_vectors: np.ndarray,
    init: str = "identity",
    refinements: int = 5,
    k: int = 10,
    max_rank: int = 15000,
    center: bool = True,
    adversarial_steps: int = 3000,
    seed: int = 0,
    source: str = "",
) -> Induction:
    """Induce an en→`lang` lexicon from two monolingual vocabularies and their vectors.

    `init`: `identity` (vectors already share a space, e.g. one multilingual encoder), `seeds`
    (Procrustes on identical strings and numerals) or `adversarial`. Each refinement re-fits
    Procrustes on mutual CSLS neighbours plus the seeds.
    """
    if not len(src_words) or not len(tgt_words):
        raise LinguaLiftError(f"en-{lang}: empty word list; nothing to induce from")
    if init not in ("identity", "seeds", "adversarial"):
        raise LinguaLiftError(f"unknown init {init!r}; choose identity, seeds or adversarial")
    src, tgt = normalize(src_vectors, center), normalize(tgt_vectors, center)
    seeds = seed_pairs(src_words, tgt_words)
    logger.info("en-%s: %d source words, %d target words, %d seed pairs", lang, len(src), len(tgt), len(seeds))
    if init == "identity":
        if src.shape[1] != tgt.shape[1]:
            raise LinguaLiftError(f"en-{lang}: identity init needs equal dimensions ({src.shape[1]} vs {tgt.shape[1]})")
        mapping = np.eye(src.shape[1], dtype=np.float32)
    elif init == "seeds":
        if len(seeds) < 2:
            raise LinguaLiftError(f"en-{lang}: only {len(seeds)} identical-string/numeral seeds; use another init")
        mapping = procrustes(src[[i for i, _ in seeds]], tgt[[j for _, j in seeds]])
    else:
        mapping = adversarial_init(src, tgt, steps=adversarial_steps, seed=seed)
    init_lexicon = lexicon_from_mapping(lang, src_words, tgt_words, src @ mapping, tgt, k=k, source=f"{source} init={init}")
    init_nn_lexicon = lexicon_from_mapping(
        lang, src_words, tgt_words, src @ mapping, tgt, retrieval="nn", source=f"{source} init={init} nn"
    )
    sizes = []
    for step in range(refinements):
        pairs = set(mutual_csls_pairs(src @ mapping, tgt, max_rank=max_rank, k=k)) | set(seeds)
        sizes.append(len(pairs))
        rows = np.array(sorted(pairs))
        mapping = procrustes(src[rows[:, 0]], tgt[rows[:, 1]])
        logger.info("en-%s: refinement %d/%d on %d pairs", lang, step + 1, refinements, len(pairs))
    lexicon = lexicon_from_mapping(
        lang, src_words, tgt_words, src @ mapping, tgt, k=k,
        source=f"{source} init={init} refinements={refinements} csls k={k}",
    )
    return Induction(
        lexicon=lexicon,
        seeds=[(src_words[i], tgt_words[j]) for i, j in seeds],
        src_words=list(src_words),
        tgt_words=list(tgt_words),
        init_lexicon=init_lexicon,
        init_nn_lexicon=init_nn_lexicon,
        refinement_sizes=sizes,
    )


# --------------------------------------------------------------------------------------------------
# Vector sources (for the CLI and the pipeline)
# --------------------------------------------------------------------------------------------------


class VectorSource:
    """Word vectors for a language, from a spec.

    `encoder` / `encoder:SPEC` (default preset `default`): the model's multilingual encoder, word by
    word (cached under the lingualift cache, keyed by encoder, settings and words).
    `vec:PATTERN`: fastText `.vec` files, `{lang}` in PATTERN replaced by the language code; their
    own (frequency-ordered) vocabulary is the word list.
    """

    def __init__(
        self, spec: str = "encoder", prefix: str = "", layer: int | str | None = "middle", batch_size: int = 256
    ):
        self.spec = spec
        self.prefix, self.layer, self.batch_size = prefix, layer, batch_size
        if spec == "encoder" or spec.startswith("encoder:"):
            self.kind, self.target = "encoder", spec.partition(":")[2] or "default"
        elif spec.startswith("vec:"):
            self.kind, self.target = "vec", spec[4:]
        else:
            raise LinguaLiftError(f"unknown vector source {spec!r}; use encoder[:SPEC] or vec:PATH_WITH_{{lang}}")
        self._encoder = None

    @property
    def owns_vocabulary(self) -> bool:
        return self.kind == "vec"

    def vocabulary(self, lang: str, n: int) -> tuple[list[str], np.ndarray]:
        """For `vec:` sources: the first `n` words of the file that are words, with their vectors."""
        words, vectors = read_vec(self.target.format(lang=lang), max_words=2 * n)
        keep = [i for i, word in enumerate(words) if is_word(word)][:n]
        return [words[i] for i in keep], vectors[keep]

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        from lingualift.model.components import ENCODER, model_location

        # the encoder's content, not its name: a rebuilt asset or a changed folder embeds anew
        model = json.dumps(path_fingerprint(model_location(self.target, ENCODER)), sort_keys=True)
        key = hashlib.sha256(
            "\n".join([self.target, model, repr(self.layer), self.prefix, *words]).encode("utf-8")
        ).hexdigest()[:24]
        path = cache_dir("word-vectors") / f"{key}.npy"
        if path.is_file():
            logger.info("word vectors from cache %s", path)
            return np.load(path)
        if self._encoder is None:
            from lingualift.model.components import load_component

            self._encoder = load_component(self.target, "encoder", where="word vector source")
        vectors = encoder_word_vectors(words, *self._encoder, prefix=self.prefix, layer=self.layer,
                                       batch_size=self.batch_size)
        with atomic_write(path, "wb") as handle:
            np.save(handle, vectors)
        return vectors

    def words_and_vectors(self, lang: str, n: int, corpus: str | Path | None = None) -> tuple[list[str], np.ndarray]:
        if self.owns_vocabulary and corpus is None:
            return self.vocabulary(lang, n)
        words = word_list(lang, n, corpus)
        if self.kind == "vec":
            vocab, table = read_vec(self.target.format(lang=lang))
            index = {word: i for i, word in enumerate(vocab)}
            words = [word for word in words if word in index]
            if not words:
                raise LinguaLiftError(f"no word of the {lang} list has a vector in {self.target.format(lang=lang)}")
            return words, table[[index[word] for word in words]]
        return words, self.vectors(words)
