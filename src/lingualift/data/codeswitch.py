"""Code-switching English instructions with bilingual lexicons: the stage-1 training data.

Stage 1 teaches the alignment layer to map other languages into the LLM's space without parallel
sentences: the encoder reads an English prompt in which a fraction `ratio` of the replaceable words
(those with a lexicon entry) is swapped for translations, and the LLM still answers in English. Only
the *prompt* changes; numbers, symbols, punctuation, whitespace and the answer are kept verbatim,
capitalisation is carried over to the translation.

Every example draws from its own RNG seeded by (seed, example index), so output is reproducible and
independent of streaming or batching.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from lingualift.errors import LinguaLiftError
from lingualift.data.lexicon import Lexicon, load_lexicon

logger = logging.getLogger(__name__)

MIXING = ("per_example", "mixed")
# A word is a run of letters (\w minus digits and underscore) with optional inner apostrophes.
# Tokens touching digits ("5th", "x2") are not matched as words, so numbers are never touched.
WORD_PATTERN = re.compile(r"(?<![\w])[^\W\d_]+(?:['’][^\W\d_]+)*(?![\w])")


@dataclass
class CodeSwitchSettings:
    """The `data.codeswitch` block of a stage-1 config (also built from CLI flags)."""

    lexicons: dict[str, str]
    ratio: float = 0.5
    mixing: str = "per_example"
    weights: dict[str, float] | None = None
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict, where: str) -> CodeSwitchSettings:
        """Strict: unknown or missing keys are errors naming `where` (e.g. `config.yaml: data.codeswitch`)."""
        if not isinstance(d, dict):
            raise LinguaLiftError(f"{where}: expected a mapping with lexicons, ratio, mixing, weights, seed")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise LinguaLiftError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        if "lexicons" not in d:
            raise LinguaLiftError(f"{where}: missing `lexicons` (e.g. lexicons: {{de: 'muse:de'}})")
        settings = cls(**d)
        settings.validate(where)
        return settings

    def validate(self, where: str) -> None:
        """Raise a `LinguaLiftError` naming `where` for the first bad value."""
        if not isinstance(self.lexicons, dict) or not self.lexicons:
            raise LinguaLiftError(f"{where}: `lexicons` must map language codes to lexicon specs, e.g. {{de: 'muse:de'}}")
        for lang, spec in self.lexicons.items():
            if not isinstance(spec, str) or not spec:
                raise LinguaLiftError(f"{where}: lexicon for {lang!r} must be a spec string (muse:XX or a path)")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0 <= self.ratio <= 1:
            raise LinguaLiftError(f"{where}: ratio must be a number in [0, 1], got {self.ratio!r}")
        if self.mixing not in MIXING:
            raise LinguaLiftError(f"{where}: mixing must be one of {', '.join(MIXING)}, got {self.mixing!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise LinguaLiftError(f"{where}: seed must be an integer, got {self.seed!r}")
        if self.weights is not None:
            if not isinstance(self.weights, dict):
                raise LinguaLiftError(f"{where}: weights must map languages to numbers")
            if set(self.weights) != set(self.lexicons):
                raise LinguaLiftError(
                    f"{where}: weights must name exactly the lexicon languages ({', '.join(sorted(self.lexicons))}), "
                    f"got {', '.join(sorted(map(str, self.weights)))}"
                )
            values = list(self.weights.values())
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values) or not sum(values) > 0:
                raise LinguaLiftError(f"{where}: weights must be non-negative numbers with a positive sum")


def parse_mapping(text: str, what: str, convert=str) -> dict:
    """Parse the CLI form `de=muse:de,ru=path.tsv` into a dict."""
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LinguaLiftError(f"{what}: expected LANG=VALUE[,LANG=VALUE…], got {item!r}")
        try:
            result[key.strip()] = convert(value.strip())
        except ValueError:
            raise LinguaLiftError(f"{what}: bad value {value.strip()!r} for {key.strip()!r}") from None
    if not result:
        raise LinguaLiftError(f"{what}: empty")
    return result


def match_case(original: str, translation: str) -> str:
    """Carry capitalisation over: `The` → `Die`, `USA` → `США`; lowercase stays as the lexicon has it."""
    if len(original) > 1 and original.isupper():
        return translation.upper()
    if original[0].isupper():
        return translation[:1].upper() + translation[1:]
    return translation


@dataclass
class LanguageStats:
    examples: int = 0
    replaced: int = 0
    covered: int = 0  # word tokens with an entry in this language's lexicon


@dataclass
class CodeSwitchStats:
    """Running counts for the summary: replacement rate and lexicon coverage per language."""

    examples: int = 0
    words: int = 0
    replaceable: int = 0
    replaced: int = 0
    per_lang: dict[str, LanguageStats] = field(default_factory=dict)

    def table(self, ratio: float) -> str:
        rate = self.replaced / max(self.replaceable, 1)
        lines = [
            (
                f"{self.examples} examples, {self.words} prompt words, {self.replaceable} replaceable, "
                f"{self.replaced} replaced: rate {rate:.3f} of replaceable (requested {ratio}), "
                f"{self.replaced / max(self.words, 1):.3f} of all words"
            ),
            f"{'lang':<6}{'examples':>10}{'replaced':>10}{'coverage':>10}",
        ]
        for lang, stats in self.per_lang.items():
            coverage = stats.covered / max(self.words, 1)
            lines.append(f"{lang:<6}{stats.examples:>10}{stats.replaced:>10}{coverage:>10.3f}")
        return "\n".join(lines)


class CodeSwitcher:
    """Applies settings with loaded lexicons to records one at a time, keeping statistics."""

    def __init__(self, settings: CodeSwitchSettings, lexicons: dict[str, Lexicon]):
        settings.validate("codeswitch settings")
        missing = sorted(set(settings.lexicons) - set(lexicons))
        if missing:
            raise LinguaLiftError(f"no lexicon loaded for requested language(s) {', '.join(missing)}")
        self.settings = settings
        self.lexicons = lexicons
        self.langs = list(settings.lexicons)
        weights = settings.weights or {lang: 1.0 for lang in self.langs}
        self.weights = [float(weights[lang]) for lang in self.langs]
        self.active = [lang for lang, weight in zip(self.langs, self.weights) if weight > 0]
        self.stats = CodeSwitchStats(per_lang={lang: LanguageStats() for lang in self.langs})

    @classmethod
    def from_settings(cls, settings: CodeSwitchSettings, data_dir: str | Path | None = None) -> CodeSwitcher:
        settings.validate("codeswitch settings")
        lexicons = {lang: load_lexicon(spec, lang, data_dir) for lang, spec in settings.lexicons.items()}
        for lang, lexicon in lexicons.items():
            logger.info("lexicon en-%s: %d English words (%s)", lang, len(lexicon), lexicon.source)
        return cls(settings, lexicons)

    def switch(self, record: dict, index: int) -> dict:
        """Code-switch one record (its `question` only); `index` seeds its RNG."""
        question = record["question"]
        if not isinstance(question, str):
            raise LinguaLiftError(f"record {index + 1}: `question` must be a string")
        rng = random.Random(f"{self.settings.seed}:{index}")
        words = list(WORD_PATTERN.finditer(question))
        # Per example: one language for the whole prompt; mixed: a language per replaced word.
        example_langs = self.active
        if self.settings.mixing == "per_example":
            example_langs = [rng.choices(self.langs, self.weights)[0]]
        candidates = []  # (position in words, languages with an entry)
        for position, match in enumerate(words):
            have = [lang for lang in self.langs if match.group() in self.lexicons[lang]]
            for lang in have:
                self.stats.per_lang[lang].covered += 1
            usable = [lang for lang in have if lang in example_langs]
            if usable:
                candidates.append((position, usable))
        # Stochastic rounding makes the expected count exactly ratio × replaceable, even for short prompts.
        exact = self.settings.ratio * len(candidates)
        count = math.floor(exact) + (rng.random() < exact - math.floor(exact))
        chosen = sorted(rng.sample(candidates, count))
        replacements = {}
        used: list[str] = []
        for position, usable in chosen:
            lang = usable[0] if len(usable) == 1 else rng.choices(usable, [self._weight(l) for l in usable])[0]
            original = words[position].group()
            translation = rng.choice(self.lexicons[lang].best(original))
            replacements[position] = match_case(original, translation)
            self.stats.per_lang[lang].replaced += 1
            if lang not in used:
                used.append(lang)
        pieces, cursor = [], 0
        for position, text in sorted(replacements.items()):
            span = words[position].span()
            pieces += [question[cursor : span[0]], text]
            cursor = span[1]
        pieces.append(question[cursor:])
        langs = used if self.settings.mixing == "mixed" else example_langs
        for lang in langs:
            self.stats.per_lang[lang].examples += 1
        self.stats.examples += 1
        self.stats.words += len(words)
        self.stats.replaceable += len(candidates)
        self.stats.replaced += len(chosen)
        out = {key: value for key, value in record.items() if key not in ("question", "answer")}
        return {
            "question": "".join(pieces),
            "source_question": question,
            "answer": record["answer"],
            **out,
            "codeswitch": {"langs": langs, "replaced": len(chosen), "replaceable": len(candidates)},
        }

    def _weight(self, lang: str) -> float:
        return self.weights[self.langs.index(lang)]


def codeswitch_records(
    records: Iterable[dict], settings: CodeSwitchSettings, data_dir: str | Path | None = None
) -> Iterator[dict]:
    """Stream code-switched copies of `records` (each with `question` and `answer`)."""
    switcher = CodeSwitcher.from_settings(settings, data_dir)
    for index, record in enumerate(records):
        yield switcher.switch(record, index)
