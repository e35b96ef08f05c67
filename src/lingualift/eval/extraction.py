"""Answer extraction from free-form model outputs.

Several public harnesses scored 0 on MGSM because of parsing alone, so this module is deliberately
explicit about every rule (docs/METHOD.md, "Inference and evaluation"):

* Numbers: native digits of any Unicode script are mapped to ASCII first; `1,234.5`, `1.234,5`,
  `1 234` (non-breaking/thin-space groups), decimal commas (`3,5`), negatives, fractions (`3/4`,
  `\\frac{3}{4}`), currency and units around the number. Dates and clock times are masked so they are
  never mistaken for the answer; list markers (`2. `) and a hyphen between two numbers (ranges,
  `16-3`) are not read as negatives.
* Priority: the last `\\boxed{…}`, else the first number after the last answer cue (`The answer is`,
  `####`, `Answer:` and the MGSM exemplars' cues in other languages), else the last number.
* Multiple choice: the first valid option label (X-CSQA: A–E), or a label word (XNLI: English or the
  prompt language's word, as in lm-eval's XNLI templates).
"""

from __future__ import annotations

import math
import re
import unicodedata

NUMERIC_TOLERANCE = 1e-3

# Markers that mean the model started a new turn / echoed the prompt: everything after is ignored.
ECHO_MARKERS = ("### Instruction", "\nQuestion:", "\nQ:", "\n### Input", "<|im_end|>", "</s>")

# "The answer is" in the MGSM exemplar languages (their CoT exemplars end with these phrases).
ANSWER_CUES = (
    r"the (?:final )?answer is",
    r"final answer",
    r"answer\s*:",
    r"####",
    r"la respuesta es",
    r"la réponse est",
    r"die antwort (?:lautet|ist)",
    r"ответ\s*(?:—|-|:|равен)",
    r"答案是",
    r"答えは",
    r"คำตอบคือ",
    r"jibu ni",
    r"উত্তর হল",
    r"సమాధానం",
)
_CUE_RE = re.compile("|".join(f"(?:{cue})" for cue in ANSWER_CUES), re.IGNORECASE)

# Separator characters that some scripts / fonts use in numbers, mapped to their ASCII role.
_PUNCT_MAP = str.maketrans(
    {
        "\u066b": ".",  # ARABIC DECIMAL SEPARATOR
        "\u066c": ",",  # ARABIC THOUSANDS SEPARATOR
        "\uff0c": ",",  # FULLWIDTH COMMA
        "\uff0e": ".",  # FULLWIDTH FULL STOP
        "\uff0d": "-",  # FULLWIDTH HYPHEN-MINUS
        "\u2212": "-",  # MINUS SIGN
        "\u2013": "-",  # EN DASH (often used as a minus)
        "\uff0f": "/",  # FULLWIDTH SOLIDUS
        "\u2044": "/",  # FRACTION SLASH
        "\uff04": "$",
    }
)
_GROUP_SPACES = "\u00a0\u202f\u2009"  # no-break, narrow no-break and thin space: digit-group separators

_DATE_RE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
_TIME_RE = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?", re.IGNORECASE)
_LIST_MARKER_RE = re.compile(r"^([ \t]*)\d{1,2}[.)][ \t]+(?=\S)", re.MULTILINE)
_FRAC_LATEX_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")

_NUMBER_BODY = (
    r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,234,567.89
    r"|\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?"  # 1.234.567,89
    r"|\d{1,3}(?:\.\d{3})+,\d+"  # 1.234,5
    rf"|\d{{1,3}}(?:[{_GROUP_SPACES}]\d{{3}})+(?:[.,]\d+)?"  # 1 234 567
    r"|\d+\.\d+"  # 3.5
    r"|(?<!\d,)\d+,\d{1,2}(?![\d,])"  # 3,5 (a decimal comma never has exactly three digits after it)
    r"|\.\d+"  # .5
    r"|\d+"
)
# A minus counts only when not glued to a preceding digit, letter or closing bracket (ranges, `16-3`).
_NUMBER_RE = re.compile(
    rf"(?P<sign>(?<![\w)\]}}])(?<![\d)] )-)?(?<!\d)(?<!\d\.)(?P<num>{_NUMBER_BODY})"
    rf"(?:\s*/\s*(?P<den>{_NUMBER_BODY}))?(?![\d])"
)
_BOXED_RE = re.compile(r"\\boxed\s*\{")


def normalize_digits(text: str) -> str:
    """Map the decimal digits of every Unicode script (Bengali ৫, Thai ๕, Devanagari ५, full-width ５ …) to ASCII.

    Only decimal digits: a superscript or circled digit is a unit's exponent or a list mark ("25 cm²" is 25,
    not 252 or 2), so it stays as it is and is not read as part of a number."""
    out = []
    for char in text:
        if char.isdecimal() and not ("0" <= char <= "9"):
            value = unicodedata.decimal(char, None)
            out.append(str(value) if value is not None else char)
        else:
            out.append(char)
    return "".join(out).translate(_PUNCT_MAP)


def _to_float(token: str) -> float | None:
    """Parse one matched number body, deciding which of `,` / `.` / spaces are group separators."""
    token = re.sub(f"[{_GROUP_SPACES}]", "", token)
    if "," in token and "." in token:
        # Whichever comes last is the decimal separator.
        if token.rfind(",") > token.rfind("."):
            token = token.replace(".", "").replace(",", ".")
        else:
            token = token.replace(",", "")
    elif "," in token:
        groups = token.split(",")
        if len(groups) == 2 and len(groups[1]) != 3:
            token = token.replace(",", ".")  # decimal comma
        else:
            token = token.replace(",", "")
    elif token.count(".") > 1:
        token = token.replace(".", "")  # 1.234.567
    try:
        return float(token)
    except ValueError:
        return None


def _prepare(text: str) -> str:
    """Normalise digits, cut prompt echoes and mask dates, times and list markers."""
    text = normalize_digits(text)
    for marker in ECHO_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    text = _FRAC_LATEX_RE.sub(lambda m: f" {m.group(1)}/{m.group(2)} ", text)
    text = _DATE_RE.sub(" ", text)
    text = _TIME_RE.sub(" ", text)
    return _LIST_MARKER_RE.sub(r"\1", text)


def find_numbers(text: str) -> list[float]:
    """All numbers in already prepared text, in order (fractions evaluated)."""
    values = []
    for match in _NUMBER_RE.finditer(text):
        value = _to_float(match.group("num"))
        if value is None:
            continue
        if match.group("den") is not None:
            den = _to_float(match.group("den"))
            if not den:
                continue
            value /= den
        if match.group("sign"):
            value = -value
        values.append(value)
    return values


def numbers_in_text(text: str) -> list[float]:
    """Every number a text states, in order, read as `find_numbers` reads answers: native digits mapped to
    ASCII (Bengali ১২৫, Thai ๑๒๕, Devanagari १२५, Arabic-Indic ١٢٥ …), digit groups joined (`1,050` = `1050`),
    decimal commas understood. Used to compare a question's numbers with those of a restatement."""
    return find_numbers(normalize_digits(text))


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` with balanced braces."""
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
    return None


def _number_after_cue(tail: str) -> float | None:
    """The number a cue announces: on the cue's line (or the next line if the cue ends its line)."""
    lines = tail.split("\n")
    line = lines[0] if lines[0].strip(" :*") or len(lines) == 1 else next((l for l in lines[1:] if l.strip()), "")
    if "=" in line:  # "The answer is 16 - 3 - 4 = 9": the result follows the last "="
        after = find_numbers(line[line.rfind("=") + 1 :])
        if after:
            return after[0]
    numbers = find_numbers(line)
    return numbers[0] if numbers else None


def extract_number(output: str) -> float | None:
    """The model's numeric answer, or None when the output holds no number."""
    text = _prepare(output)
    boxed = _last_boxed(text)
    if boxed is not None:
        numbers = find_numbers(_FRAC_LATEX_RE.sub(lambda m: f"{m.group(1)}/{m.group(2)}", boxed))
        if numbers:
            return numbers[-1]
    for cue in reversed(list(_CUE_RE.finditer(text))):
        value = _number_after_cue(text[cue.end() :])
        if value is not None:
            return value
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def parse_gold_number(gold: str | float | int) -> float:
    """Gold answers are strings like `"5 "`, `"45.0"`, `"1,000"` or numbers; raises ValueError if not numeric."""
    if isinstance(gold, (int, float)):
        return float(gold)
    numbers = find_numbers(normalize_digits(str(gold).strip()))
    if len(numbers) != 1:
        raise ValueError(f"gold answer {gold!r} is not one number")
    return numbers[0]


def numbers_match(predicted: float | None, gold: float, tolerance: float = NUMERIC_TOLERANCE) -> bool:
    return predicted is not None and math.isfinite(predicted) and abs(predicted - gold) <= tolerance


# --- multiple choice ---------------------------------------------------------------------------------

XCSQA_LABELS = ("A", "B", "C", "D", "E")
XNLI_LABELS = ("entailment", "neutral", "contradiction")

# English label words and synonyms, then per-language label words (lm-eval's XNLI templates:
# "Yes / Also / No" translated), so an answer in the prompt language is understood too.
XNLI_WORDS = {
    "entailment": ("entailment", "entails", "entailed", "entail", "yes", "true"),
    "neutral": ("neutral", "neither", "undetermined", "unknown", "maybe", "also"),
    "contradiction": ("contradiction", "contradicts", "contradictory", "contradict", "no", "false"),
}
XNLI_NATIVE_WORDS = {
    "ar": ("نعم", "لذا", "رقم"),
    "bg": ("да", "така", "не"),
    "de": ("Ja", "Auch", "Nein"),
    "el": ("Ναί", "Έτσι", "όχι"),
    "en": ("Yes", "Also", "No"),
    "es": ("Sí", "Asi que", "No"),
    "fr": ("Oui", "Aussi", "Non"),
    "hi": ("हाँ", "इसलिए", "नहीं"),
    "ru": ("Да", "Так", "Нет"),
    "sw": ("Ndiyo", "Hivyo", "Hapana"),
    "th": ("ใช่", "ดังนั้น", "ไม่"),
    "tr": ("Evet", "Böylece", "Hayır"),
    "ur": ("جی ہاں", "اس لئے", "نہیں"),
    "vi": ("Vâng", "Vì vậy", "Không"),
    "zh": ("是的", "所以", "不是的"),
}


def extract_choice_label(output: str, labels: tuple[str, ...] = XCSQA_LABELS, choices: list[str] | None = None) -> str | None:
    """First valid option letter in the output (`(B)`, `B.`, `Answer: B`, a bare `B`), else a choice text."""
    text = output.split("### Instruction", 1)[0]
    letters = "".join(labels)
    patterns = (
        rf"(?:answer|option|choice)(?: is)?\s*:?\s*\(?([{letters}])\b",
        rf"\(([{letters}])\)",
        rf"(?<![\w'])([{letters}])(?:[.):]|$)",
        rf"(?<![\w'])([{letters}])(?![\w'])",
    )
    for index, pattern in enumerate(patterns):
        # A bare capital "A" is usually an article; accept it only as the whole answer.
        flags = re.IGNORECASE if index == 0 else 0
        for match in re.finditer(pattern, text, flags):
            label = match.group(1).upper()
            if index == 3 and label == "A" and text.strip() not in ("A", "A."):
                continue
            return label
    if choices:
        lowered = text.lower()
        hits = [(lowered.find(c.lower()), label) for c, label in zip(choices, labels) if c and c.lower() in lowered]
        if hits:
            return min(hits)[1]
    return None


def extract_nli_label(output: str, lang: str = "en") -> str | None:
    """First XNLI label named in the output, in English or in the prompt language's label words."""
    text = output.split("### Instruction", 1)[0]
    words: list[tuple[str, str]] = [(w, label) for label, ws in XNLI_WORDS.items() for w in ws]
    words += [(w, label) for w, label in zip(XNLI_NATIVE_WORDS.get(lang, ()), XNLI_LABELS)]
    # Longer words first so "不是的" wins over "是的" and "contradiction" over "no".
    words.sort(key=lambda pair: -len(pair[0]))
    best: tuple[int, int, str] | None = None
    for word, label in words:
        boundary = r"\b" if word.isascii() else ""
        match = re.search(rf"{boundary}{re.escape(word)}{boundary}", text, re.IGNORECASE)
        if match and (best is None or (match.start(), -len(word)) < best[:2]):
            best = (match.start(), -len(word), label)
    return best[2] if best else None
