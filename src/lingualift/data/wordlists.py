"""Frequency-ranked word lists for languages `wordfreq` lacks, from Debian spell-checking dictionaries.

Lexicon induction wants each language's *most frequent* words: frequent words have the best vectors
and are the ones code-switching meets. `wordfreq` has no Swahili, Telugu, Kannada, Marathi or Nepali,
and nothing here may come from the evaluation questions. Debian ships hunspell / aspell dictionaries
for them (named and versioned, installed by `scripts/lexicons.sh`), but a spell-checker's word list
is alphabetical: it says *which* strings are words of the language, not how common they are.

The ranking comes from the encoder's own tokenizer. multilingual-e5-small uses XLM-R's sentencepiece
unigram model, trained on CC-100 text in 100 languages; each piece has a log-probability, and the sum
over the pieces of a word's best segmentation is the unigram model's log-probability of the word
(one segmentation, so a lower bound). Common words are single pieces with high scores, rare words
split into many pieces; ranking the dictionary's words by it orders them roughly by corpus frequency.
The dictionary decides the language (all of Hindi, Marathi and Nepali are Devanagari: a script filter
alone cannot tell them apart), the tokenizer the order.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lingualift.errors import LinguaLiftError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpellDictionary:
    """A Debian spell-checking dictionary: which checker reads it, its name there, the package and licence."""

    kind: str  # "hunspell" (.dic/.aff under /usr/share/hunspell) or "aspell" (read with the aspell binary)
    name: str
    package: str
    licence: str


# Languages the evaluation needs and MUSE lacks (sw te ne mr kn), and sister languages with a MUSE
# dictionary (bn hi ta) on which the same word-list recipe can be scored. Licences from each
# package's debian/copyright.
SPELL_DICTIONARIES: dict[str, SpellDictionary] = {
    "sw": SpellDictionary("hunspell", "sw_TZ", "hunspell-sw", "LGPL-2.1+"),
    "te": SpellDictionary("hunspell", "te_IN", "hunspell-te", "GPL-2+"),
    "ne": SpellDictionary("hunspell", "ne_NP", "hunspell-ne", "LGPL-2.1"),
    "mr": SpellDictionary("aspell", "mr", "aspell-mr", "GPL-2+"),
    "kn": SpellDictionary("aspell", "kn", "aspell-kn", "GPL-3+"),
    "bn": SpellDictionary("hunspell", "bn_BD", "hunspell-bn", "GPL-2"),
    "hi": SpellDictionary("aspell", "hi", "aspell-hi", "GPL-2"),
    "ta": SpellDictionary("aspell", "ta", "aspell-ta", "GPL-2+"),
}

HUNSPELL_DIR = Path("/usr/share/hunspell")


def spell_dictionary(lang: str) -> SpellDictionary:
    if lang not in SPELL_DICTIONARIES:
        raise LinguaLiftError(
            f"no spell-checking dictionary is known for {lang!r}; known: {', '.join(sorted(SPELL_DICTIONARIES))}"
        )
    return SPELL_DICTIONARIES[lang]


def _install_hint(entry: SpellDictionary) -> str:
    return f"install it with `apt-get install {entry.package}` (or run scripts/lexicons.sh)"


def read_hunspell_dic(dic: Path, aff: Path | None = None) -> list[str]:
    """The entries of a hunspell `.dic` file in file order, without affix flags or morphology fields.

    The encoding is the affix file's `SET` line (Swahili's is ISO8859-1); the first line is a count.
    Affixes are not expanded: the stems and the full forms the dictionary lists are the candidates.
    """
    encoding = "utf-8"
    if aff is not None and aff.is_file():
        for line in aff.read_bytes().decode("latin-1").splitlines():
            match = re.match(r"SET\s+(\S+)", line)
            if match:
                encoding = match.group(1)
                break
    try:
        lines = dic.read_bytes().decode(encoding).splitlines()
    except (LookupError, UnicodeDecodeError) as exc:
        raise LinguaLiftError(f"{dic}: cannot decode as {encoding} ({exc})") from None
    words = []
    for line in lines[1:]:
        # `word/FLAGS morph:fields`: a slash escaped as `\/` belongs to the word.
        word = re.split(r"(?<!\\)/|\s", line.strip(), maxsplit=1)[0].replace("\\/", "/")
        if word:
            words.append(word)
    return words


def parse_aspell_expand(text: str) -> list[str]:
    """Words of `aspell dump master | aspell expand` output: each line is a stem's forms, space separated."""
    return [word for line in text.splitlines() for word in line.split()]


def dictionary_words(lang: str, hunspell_dir: Path | None = None) -> list[str]:
    """All words of `lang`'s spell-checking dictionary, in its own order (not by frequency)."""
    entry = spell_dictionary(lang)
    if entry.kind == "hunspell":
        hunspell_dir = hunspell_dir or HUNSPELL_DIR
        dic = hunspell_dir / f"{entry.name}.dic"
        if not dic.is_file():
            raise LinguaLiftError(f"{dic} not found: {_install_hint(entry)}")
        return read_hunspell_dic(dic, hunspell_dir / f"{entry.name}.aff")
    aspell = shutil.which("aspell")
    if aspell is None:
        raise LinguaLiftError(f"the aspell program is needed for the {lang} word list: {_install_hint(entry)}")
    dump = subprocess.run([aspell, f"--lang={entry.name}", "dump", "master"], capture_output=True)
    if dump.returncode != 0:
        raise LinguaLiftError(f"aspell has no {entry.name} dictionary: {_install_hint(entry)} "
                              f"({dump.stderr.decode('utf-8', 'replace').strip()})")
    expand = subprocess.run([aspell, f"--lang={entry.name}", "expand"], input=dump.stdout, capture_output=True)
    if expand.returncode != 0:
        raise LinguaLiftError(f"aspell expand failed for {entry.name}: {expand.stderr.decode('utf-8', 'replace')}")
    return parse_aspell_expand(expand.stdout.decode("utf-8"))


def package_version(package: str) -> str:
    """The installed Debian version of `package`, or "unknown" where dpkg cannot tell."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return "unknown"
    result = subprocess.run([dpkg, "-W", "-f=${Version}", package], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


class UnigramScorer:
    """Log-probability of a word under a sentencepiece unigram tokenizer: the sum of its pieces' scores."""

    def __init__(self, tokenizer):
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)  # transformers fast tokenizer or tokenizers'
        model = json.loads(backend.to_str())["model"]
        if model.get("type") != "Unigram":
            raise LinguaLiftError(
                f"ranking words needs a sentencepiece unigram tokenizer (XLM-R, e5), got {model.get('type')}"
            )
        self.backend = backend
        self.scores = [float(score) for _, score in model["vocab"]]
        self.unk_id = model.get("unk_id")

    def __call__(self, words: Sequence[str]) -> list[float]:
        """One score per word; a word holding an unknown piece scores −inf (the model cannot spell it)."""
        encodings = self.backend.encode_batch(list(words), add_special_tokens=False)
        return [
            float("-inf") if self.unk_id in encoding.ids else sum(self.scores[i] for i in encoding.ids)
            for encoding in encodings
        ]


def rank_words(words: Iterable[str], scorer: UnigramScorer, n: int) -> list[str]:
    """The `n` best-scored distinct lower-cased words that are words (`lexicon.is_word`); ties keep input order."""
    from lingualift.data.lexicon import is_word

    distinct = list(dict.fromkeys(word.lower() for word in words if is_word(word)))
    scores = scorer(distinct)
    order = sorted(range(len(distinct)), key=lambda i: -scores[i])
    return [distinct[i] for i in order if scores[i] > float("-inf")][:n]


def build_word_list(lang: str, n: int, tokenizer, hunspell_dir: Path | None = None) -> tuple[list[str], dict]:
    """`lang`'s `n` most probable dictionary words and a record of where they came from."""
    entry = spell_dictionary(lang)
    candidates = dictionary_words(lang, hunspell_dir)
    words = rank_words(candidates, UnigramScorer(tokenizer), n)
    if not words:
        raise LinguaLiftError(f"the {lang} dictionary ({entry.package}) has no word the tokenizer can spell")
    provenance = {
        **asdict(entry),
        "version": package_version(entry.package),
        "dictionary_entries": len(candidates),
        "words": len(words),
        "ranking": "sum of sentencepiece unigram log-probabilities of the word's pieces (encoder tokenizer)",
    }
    logger.info("%s: %d of %d dictionary entries kept (%s %s)", lang, len(words), len(candidates), entry.package,
                provenance["version"])
    return words, provenance
