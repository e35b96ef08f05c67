"""Code-switching English instructions with bilingual lexicons: the stage-1 training data.

Stage 1 teaches the alignment layer to map other languages into the LLM's space without parallel
sentences: the encoder reads an English prompt in which a fraction `ratio` of the replaceable words
(those with a lexicon entry) is swapped for translations, and the LLM still answers in English. Only
the *prompt* changes; numbers, symbols, punctuation, whitespace and the answer are kept verbatim,
capitalisation is carried over to the translation.

Each record keeps its word alignment, known by construction: `codeswitch.spans` lists `[start, end,
source_start, source_end]` per swapped word (character offsets in `question` and in `source_question`), which
the stage-1 lexical objective (`lingualift.train.objectives`) uses to pair a swapped word with the English one.

Every example draws from its own RNG seeded by (seed, example index), so output is reproducible and
independent of streaming or batching.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lingualift.errors import LinguaLiftError
from lingualift.data.lexicon import WORD_PATTERN, Lexicon, load_lexicon
from lingualift.schema import check, from_dict, option

logger = logging.getLogger(__name__)

MIXING = ("per_example", "mixed")


@dataclass
class CodeSwitchSettings:
    """The `data.codeswitch` block of a stage-1 config (also built from CLI flags and by the pipeline)."""

    lexicons: dict[str, str] = option(default_factory=dict,
                                      help="language → lexicon spec (muse:XX or a .txt/.tsv path); required, "
                                           "except in the pipeline, which uses its own lexicons")
    ratio: float = option(0.5, min=0, max=1, help="fraction of the replaceable prompt words to translate")
    mixing: str = option("per_example", choices=MIXING,
                         help="per_example: one language per example; mixed: a language per word")
    weights: dict[str, float] | None = option(None, min=0,
                                              help="language → sampling weight (the lexicon languages exactly)")
    seed: int = option(0, help="seed of the per-example random choices")

    @classmethod
    def from_dict(cls, d: dict, where: str) -> CodeSwitchSettings:
        """Strict: unknown keys, wrong types and bad values are errors naming `where` (`config.yaml: data.codeswitch`)."""
        if not isinstance(d, dict):
            raise LinguaLiftError(f"{where}: expected a mapping with lexicons, ratio, mixing, weights, seed")
        settings = from_dict(cls, d, where)
        settings.validate(where)
        return settings

    def validate(self, where: str) -> None:
        """Ranges (the schema) and the rules that tie fields together; raises naming `where`."""
        check(self, where)
        if not self.lexicons:
            raise LinguaLiftError(f"{where}: missing `lexicons`: map language codes to lexicon specs, "
                                  "e.g. lexicons: {de: 'muse:de'}")
        for lang, spec in self.lexicons.items():
            if not isinstance(spec, str) or not spec:
                raise LinguaLiftError(f"{where}: lexicons.{lang}: must be a spec string (muse:XX or a path)")
        if self.weights is not None:
            if set(self.weights) != set(self.lexicons):
                raise LinguaLiftError(
                    f"{where}: weights must name exactly the lexicon languages ({', '.join(sorted(self.lexicons))}), "
                    f"got {', '.join(sorted(map(str, self.weights)))}"
                )
            if not sum(self.weights.values()) > 0:
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
        pieces, cursor, length, spans = [], 0, 0, []
        for position, text in sorted(replacements.items()):
            span = words[position].span()
            kept = question[cursor : span[0]]
            pieces += [kept, text]
            length += len(kept)
            spans.append([length, length + len(text), *span])
            length += len(text)
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
            "codeswitch": {"langs": langs, "replaced": len(chosen), "replaceable": len(candidates), "spans": spans},
        }

    def _weight(self, lang: str) -> float:
        return self.weights[self.langs.index(lang)]


def codeswitch_summary(records: Iterable[dict]) -> dict:
    """What code-switched records (from `CodeSwitcher.switch`) hold: replacement counts and rate, examples
    per language and each language's first prompt (240 characters) as a sample."""
    replaced = replaceable = 0
    per_lang: dict[str, int] = {}
    samples: dict[str, str] = {}
    for record in records:
        info = record.get("codeswitch", {})
        replaced += info.get("replaced", 0)
        replaceable += info.get("replaceable", 0)
        for lang in info.get("langs", []):
            per_lang[lang] = per_lang.get(lang, 0) + 1
            samples.setdefault(lang, record["question"][:240])
    return {"replaced": replaced, "replaceable": replaceable, "replacement_rate": replaced / max(replaceable, 1),
            "examples_per_language": per_lang, "samples": samples}


def codeswitch_records(
    records: Iterable[dict], settings: CodeSwitchSettings, data_dir: str | Path | None = None
) -> Iterator[dict]:
    """Stream code-switched copies of `records` (each with `question` and `answer`)."""
    switcher = CodeSwitcher.from_settings(settings, data_dir)
    for index, record in enumerate(records):
        yield switcher.switch(record, index)
