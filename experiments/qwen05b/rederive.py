"""An independent reviewer's re-derivation of the Qwen experiment's headline numbers from the committed raw
predictions.

Why this exists: `results/summary.json` and `results/differences_vs_<baseline>.json` are written by
`summarize.py main` with the library's own answer extraction (`lingualift.eval.extraction`), scoring and
statistics (`lingualift.eval.runner.summarize` / `paired_differences`). A reader should not have to trust that
code to believe a table. This script imports nothing from `lingualift`: it reads the committed predictions
(`results/runs/<method>/predictions/<task>/<lang>.jsonl`), the dataset files and the tier table as plain files,
and re-derives, with its own code,

1. the gold answer of every record, from the dataset file (MMWP `mmwp/test_XX.json`, a JSON array of
   {question, answer}; MGSM `mgsm/mgsm_XX.tsv`, `question<TAB>answer`); record id `XX-i` is problem i;
2. the model's numeric answer, re-extracted from the raw `output` with the rule below, and `correct`
   (re-extracted answer == gold, numerically, |a - b| <= 1e-6);
3. for one method, task and tier: per-language accuracy on the first n problems (n from summary.json), the
   tier accuracy as the project defines it (the MACRO mean of the languages' accuracies; the micro share of
   problems is printed alongside) with a 95% percentile-bootstrap interval, and the paired difference against
   a baseline method on the shared items with its interval.

Two bootstraps are reported for every interval:
* "independent": this script's own scheme - each language's items resampled with replacement (index
  resampling, `--n-bootstrap` replicates, default 10,000, seed `--seed`), tier = mean over languages of the
  per-language replicate means; paired: one index sample per replicate scores both methods. Compared with the
  published bounds within max(`--ci-tol` points (default 0.5), 3 Monte-Carlo standard errors of a percentile
  bound from 1,000 replicates + one step of the replicates' value grid, about 1 / (languages x items)): the
  published intervals use 1,000 replicates of a discrete statistic and are noisy themselves.
* "replay": the library's documented RNG scheme re-implemented here (numpy default_rng(0), 1,000 replicates;
  summarize: one Binomial(n, accuracy) draw vector per language, in summary.json's task/language order;
  paired_differences: integer index draws per language, tasks and languages sorted, items in sorted-id
  order). It should reproduce the published bounds exactly; a mismatch means the published interval did not
  come from these records (or the scheme changed).

Answer-extraction rule (mirrors the rule `lingualift/eval/extraction.py` documents; written independently):
  a. every Unicode decimal digit (category Nd: Bengali, Devanagari, Thai, Arabic-Indic, full-width, ...) ->
     ASCII; Arabic decimal/thousands separators, full-width comma/stop/solidus, minus sign, en dash -> ASCII.
     Superscripts and circled digits (`cm²`, `5²`, `①`) are NOT digits (the library read them as digits until
     this script found it, 2026-12-07: `25 cm²` gave 2; the committed `extracted` of mmwp en-38 of some runs
     still shows it, with no effect on `correct`);
  b. the text is cut at the first prompt-echo / end-of-turn marker (`### Instruction`, `\\nQuestion:`, `\\nQ:`,
     `\\n### Input`, `<|im_end|>`, `</s>`); `\\frac{a}{b}` -> `a/b`; dates (2024-01-02, 1/2/2024) and clock times
     (10:30, 9:15 pm) are blanked; a list marker (`2. `, `3) `) at the start of a line is dropped;
  c. a number is `1,234,567.8` / `1.234.567,8` / `1.234,5` / `1 234` (no-break or thin-space groups) / `3.5` /
     `3,5` (a comma followed by exactly 1-2 digits is a decimal comma; by 3 digits, a thousands group) / `.5` /
     `12`, optionally `a / b` (a fraction, evaluated); a leading `-` is a sign only when the character before it
     is not a letter, digit or closing bracket and it does not follow "digit space" (so `16-3`, `5 - 3` are not
     negatives);
  d. priority: the last number inside the last `\\boxed{...}`; else the first number on the line of the last
     answer cue ("the answer is", "final answer", "answer:", "####" and the MGSM exemplars' cues in es fr de ru
     zh ja th sw bn te; if the cue ends its line, the next non-empty line), taking the number after the last `=`
     on that line when there is one; else the last number in the text.

Run (from the repository root; only the standard library and numpy; reads files, trains and evaluates nothing):

    python experiments/qwen05b/rederive.py --method mindmerger_s1 --task mmwp --tier low --baseline chat_zeroshot
    python experiments/qwen05b/rederive.py --method chat_zeroshot --task mmwp --tier low --baseline zeroshot \\
        --data-dir ../shared/data

It prints a markdown report. Exit status 0 when every accuracy (per language, tier, paired difference) matches
the published one exactly, both from the records' own `correct` flags and from this script's re-scoring; 1
otherwise (interval checks and record findings are printed but do not set the status); 2 on a usage or input
error (a method, task, tier or file that is not there).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import unicodedata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TIER_TABLE = HERE.parent.parent / "src" / "lingualift" / "resources" / "mmwp_tiers.tsv"
EQUAL_TOLERANCE = 1e-6  # "numerically equal" for answers and golds
EXAMPLES_SHOWN = 5
PUBLISHED_REPLICATES = 1000  # summarize / paired_differences default n_bootstrap

# --- answer extraction (see the module docstring, rule a-d) ----------------------------------------------

_ECHO_MARKERS = ("### Instruction", "\nQuestion:", "\nQ:", "\n### Input", "<|im_end|>", "</s>")
_CUES = re.compile(
    r"the (?:final )?answer is|final answer|answer\s*:|####|la respuesta es|la réponse est|"
    r"die antwort (?:lautet|ist)|ответ\s*(?:—|-|:|равен)|答案是|答えは|คำตอบคือ|jibu ni|উত্তর হল|సమాధానం",
    re.IGNORECASE,
)
_SEPARATORS = {"\u066b": ".", "\u066c": ",", "\uff0c": ",", "\uff0e": ".", "\uff0d": "-", "\u2212": "-",
               "\u2013": "-", "\uff0f": "/", "\u2044": "/", "\uff04": "$"}
_GROUP_SPACE = "\u00a0\u202f\u2009"
_DATE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^([ \t]*)\d{1,2}[.)][ \t]+(?=\S)", re.MULTILINE)
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
_BODY = (r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?|\d{1,3}(?:\.\d{3})+,\d+"
         rf"|\d{{1,3}}(?:[{_GROUP_SPACE}]\d{{3}})+(?:[.,]\d+)?|\d+\.\d+|(?<!\d,)\d+,\d{{1,2}}(?![\d,])|\.\d+|\d+")
_NUMBER = re.compile(rf"(?<!\d)(?<!\d\.)(?P<num>{_BODY})(?:\s*/\s*(?P<den>{_BODY}))?(?!\d)")


def to_ascii(text: str) -> str:
    """Rule a: native digits and number punctuation to ASCII."""
    out = []
    for char in text:
        if char.isdigit() and not "0" <= char <= "9" and unicodedata.decimal(char, None) is not None:
            out.append(str(unicodedata.decimal(char)))
        else:
            out.append(_SEPARATORS.get(char, char))
    return "".join(out)


def _value(token: str) -> float | None:
    """Rule c: one number body to a float, deciding what `,` `.` and group spaces mean."""
    token = re.sub(f"[{_GROUP_SPACE}]", "", token)
    if "," in token and "." in token:  # the later one is the decimal separator
        token = (token.replace(".", "").replace(",", ".") if token.rfind(",") > token.rfind(".")
                 else token.replace(",", ""))
    elif "," in token:
        head, _, tail = token.rpartition(",")
        token = token.replace(",", "") if len(tail) == 3 or token.count(",") > 1 else f"{head}.{tail}"
    elif token.count(".") > 1:
        token = token.replace(".", "")
    try:
        return float(token)
    except ValueError:
        return None


def _is_sign(text: str, start: int) -> bool:
    """Rule c: is the character before position `start` a minus sign of this number?"""
    if start < 1 or text[start - 1] != "-":
        return False
    before = text[start - 2] if start >= 2 else ""
    if before and (before.isalnum() or before == "_" or before in ")]}"):
        return False
    return not (before == " " and start >= 3 and (text[start - 3].isdigit() or text[start - 3] in ")]"))


def numbers(text: str) -> list[float]:
    """All numbers of a prepared text, in order, fractions evaluated."""
    found = []
    for match in _NUMBER.finditer(text):
        value = _value(match.group("num"))
        if value is None:
            continue
        if match.group("den") is not None:
            den = _value(match.group("den"))
            if not den:
                continue
            value /= den
        found.append(-value if _is_sign(text, match.start()) else value)
    return found


def _last_boxed(text: str) -> str | None:
    for opening in reversed([m.end() for m in re.finditer(r"\\boxed\s*\{", text)]):
        depth = 1
        for index in range(opening, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                return text[opening:index]
    return None


def extract(output: str) -> float | None:
    """The numeric answer of a raw model output (rule a-d), None when it states no number."""
    text = to_ascii(output)
    cuts = [text.find(marker) for marker in _ECHO_MARKERS if marker in text]
    text = text[: min(cuts)] if cuts else text
    text = _LATEX_FRACTION.sub(lambda m: f" {m.group(1)}/{m.group(2)} ", text)
    text = _CLOCK.sub(" ", _DATE.sub(" ", text))
    text = _LIST_MARKER.sub(r"\1", text)
    boxed = _last_boxed(text)
    if boxed is not None and numbers(boxed):
        return numbers(boxed)[-1]
    for cue in reversed(list(_CUES.finditer(text))):
        lines = text[cue.end():].split("\n")
        line = lines[0]
        if not line.strip(" :*") and len(lines) > 1:
            line = next((candidate for candidate in lines[1:] if candidate.strip()), "")
        if "=" in line and numbers(line[line.rfind("=") + 1:]):
            return numbers(line[line.rfind("=") + 1:])[0]
        if numbers(line):
            return numbers(line)[0]
    found = numbers(text)
    return found[-1] if found else None


def gold_value(raw: str) -> float:
    """A dataset answer ("5 ", "45.0", "2,125") as a number: exactly one number, group commas removed."""
    text = to_ascii(str(raw)).strip()
    if not re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d*\.?\d+", text):
        raise ValueError(f"gold answer {raw!r} is not one plain number")
    return float(text.replace(",", ""))


def same_number(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isfinite(a) and abs(a - b) <= EQUAL_TOLERANCE


def same_extraction(a: float | None, b: float | None) -> bool:
    """Do two extractions agree (both none, both the same infinity - a 400-digit answer - or numerically equal)?"""
    if a is None or b is None:
        return a is None and b is None
    return a == b or same_number(a, b)


def as_number(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- inputs ----------------------------------------------------------------------------------------------


def read_tiers(path: Path = TIER_TABLE) -> dict[str, str]:
    """lang -> tier from the tier table (tab-separated, `#` comments, a header naming `lang` and `tier`)."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    header = rows[0]
    return {row[header.index("lang")]: row[header.index("tier")] for row in rows[1:]}


def read_gold(task: str, lang: str, data_dir: Path) -> list[str]:
    """The dataset's answers for one language, in file order (raw strings)."""
    if task == "mmwp":
        return [str(item["answer"]) for item in json.loads((data_dir / "mmwp" / f"test_{lang}.json").read_text("utf-8"))]
    if task == "mgsm":
        answers = []
        for line in (data_dir / "mgsm" / f"mgsm_{lang}.tsv").read_text("utf-8-sig").split("\n"):
            line = line.rstrip("\r")
            if line.strip():
                fields = line.split("\t")
                if len(fields) != 2:
                    raise ValueError(f"mgsm_{lang}.tsv: a line with {len(fields)} tab-separated fields")
                answers.append(fields[1])
        return answers
    raise ValueError(f"task {task!r}: this script reads only mmwp and mgsm")


def read_records(method: str, task: str, lang: str) -> list[dict]:
    path = RESULTS / "runs" / method / "predictions" / task / f"{lang}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


class Findings:
    """Discrepancies found while reading the records, with the first few ids of each kind."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.kinds.setdefault(kind, [])
        if len(self.kinds[kind]) < EXAMPLES_SHOWN:
            self.kinds[kind].append(example)


def check_language(method: str, task: str, lang: str, n: int, data_dir: Path, findings: Findings,
                   stats: dict) -> list[dict]:
    """The first n records of a language, each with `flag` (its own `correct`) and `mine` (re-scored here)."""
    records = read_records(method, task, lang)
    golds = read_gold(task, lang, data_dir)
    seen = set()
    for index, record in enumerate(records):
        rid = str(record.get("id"))
        where = f"{method}/{task}/{rid}"
        if rid in seen:
            findings.add("duplicate id in a predictions file (the library keeps the last copy)", where)
        seen.add(rid)
        if rid != f"{lang}-{index}":
            findings.add("record out of data order (id is not <lang>-<line index>)", f"{where} at line {index + 1}")
    if len(records) < n:
        findings.add("fewer records than the published n", f"{method}/{task}/{lang}: {len(records)} < {n}")
    kept = []
    for record in records[:n]:
        rid = str(record["id"])
        where = f"{method}/{task}/{rid}"
        index = int(rid.rsplit("-", 1)[1])
        if not 0 <= index < len(golds):
            raise ValueError(f"{where}: the dataset file has only {len(golds)} problems")
        dataset_gold = gold_value(golds[index])
        if not same_number(as_number(record.get("gold")), dataset_gold):
            findings.add("record gold differs from the dataset", f"{where}: record {record.get('gold')!r}, "
                         f"dataset {golds[index]!r}")
        mine = extract(record["output"])
        theirs = as_number(record.get("extracted"))
        stats["records"] += 1
        if not same_extraction(mine, theirs):
            findings.add("re-extraction differs from the record's `extracted`",
                         f"{where}: record {record.get('extracted')!r}, here {mine!r}, gold {golds[index].strip()!r}")
        else:
            stats["extraction_agrees"] += 1
        correct_here = same_number(mine, dataset_gold)
        flag_from_extracted = same_number(theirs, as_number(record.get("gold")))
        if bool(record.get("correct")) != flag_from_extracted:
            findings.add("record `correct` flag disagrees with its own `extracted` vs `gold`",
                         f"{where}: extracted {record.get('extracted')!r}, gold {record.get('gold')!r}, "
                         f"correct {record.get('correct')!r}")
        if bool(record.get("correct")) != correct_here:
            findings.add("record `correct` differs from the re-scoring here",
                         f"{where}: record {record.get('correct')!r}, here {correct_here!r}")
        plain = numbers(to_ascii(record["output"]))  # sensitivity: the last number, no other rule
        kept.append({"id": rid, "flag": bool(record.get("correct")), "mine": correct_here,
                     "last": same_number(plain[-1] if plain else None, dataset_gold)})
    return kept


# --- statistics ------------------------------------------------------------------------------------------


def interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def independent_tier(per_lang: dict[str, np.ndarray], n_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """Index-resampling bootstrap of the macro mean, each language resampled on its own: the 95% bounds, the
    Monte-Carlo standard error a 1,000-replicate percentile bound has around them (normal approximation:
    sqrt(0.025 * 0.975 / 1000) / pdf(1.96) bootstrap standard deviations; the published intervals' own noise)
    and the spacing of the replicates' values (a mean of k languages' n-item means moves in steps of about
    1 / (k n), so two honest percentile bounds can sit one step apart)."""
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), size=(n_bootstrap, len(values)))].mean(1)
             for values in per_lang.values()]
    replicates = np.mean(means, axis=0)
    pdf = math.exp(-1.959964 ** 2 / 2) / math.sqrt(2 * math.pi)
    monte_carlo = math.sqrt(0.025 * 0.975 / PUBLISHED_REPLICATES) / pdf * float(replicates.std())
    step = float(np.mean([1 / len(values) for values in per_lang.values()])) / len(per_lang)  # one atom apart
    return (*interval(replicates), monte_carlo, step)


def independent_paired(per_lang: dict[str, np.ndarray], n_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """`per_lang` holds a - b per shared item (in -1, 0, 1): one index sample scores both methods."""
    return independent_tier(per_lang, n_bootstrap, seed)


def close(ours: tuple, low: float, high: float, tol_points: float) -> tuple[bool, float]:
    """Are independent bounds within max(tol_points, 3 Monte-Carlo SE + one step of the replicates' grid) of
    the published ones? Returns (ok, the tolerance used)."""
    tolerance = max(tol_points / 100, 3 * ours[2] + ours[3])
    return max(abs(ours[0] - low), abs(ours[1] - high)) <= tolerance + 1e-12, tolerance


def replay_summarize(order: list[tuple[str, str]], flags: dict[tuple[str, str], np.ndarray],
                     tier_langs: list[str], task: str) -> tuple[float, float]:
    """The library's scheme: default_rng(0); per (task, language) in summary order Binomial(n, acc) x 1000."""
    rng = np.random.default_rng(0)
    draws = {}
    for key in order:
        values = flags[key]
        draws[key] = rng.binomial(len(values), values.mean(), size=1000) / len(values)
    return interval(np.mean([draws[(task, lang)] for lang in tier_langs], axis=0))


def replay_paired(deltas: dict[tuple[str, str], np.ndarray], tier_langs: list[str], task: str) -> tuple[float, float]:
    """The library's paired scheme: default_rng(0); tasks and languages sorted; items in sorted-id order."""
    rng = np.random.default_rng(0)
    draws = {}
    for key in sorted(deltas):
        values = deltas[key]
        draws[key] = values[rng.integers(0, len(values), size=(1000, len(values)))].mean(1)
    return interval(np.mean([draws[(task, lang)] for lang in tier_langs], axis=0))


# --- report ----------------------------------------------------------------------------------------------


def pct(value: float, signed: bool = False) -> str:
    value = round(value, 12) + 0.0  # no "-0.0" from a bound that is 0 up to rounding noise
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--task", required=True, choices=("mmwp", "mgsm"))
    parser.add_argument("--tier", required=True, choices=("high", "medium", "low", "overall"))
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="dataset folder (mmwp/, mgsm/); default ../shared/data from here or from the repository root")
    parser.add_argument("--n-bootstrap", type=int, default=10_000, help="replicates of the independent bootstrap")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the independent bootstrap")
    parser.add_argument("--ci-tol", type=float, default=0.5,
                        help="points an independent bound may differ from the published one (at least; the allowance "
                             "grows to 3 Monte-Carlo standard errors of a 1,000-replicate bound + one grid step)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        candidates = [Path("../shared/data"), HERE.parent.parent / ".." / "shared" / "data"]
        args.data_dir = next((path for path in candidates if path.is_dir()), candidates[0])

    summary = json.loads((RESULTS / "summary.json").read_text("utf-8"))
    diff_path = RESULTS / f"differences_vs_{args.baseline}.json"
    problems = [f"method {m!r} is not in summary.json" for m in (args.method, args.baseline) if m not in summary]
    problems += [f"{m!r} has no {args.task} in summary.json" for m in (args.method, args.baseline)
                 if m in summary and args.task not in summary[m]]
    if not diff_path.is_file():
        problems.append(f"{diff_path} does not exist")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    differences = json.loads(diff_path.read_text("utf-8"))
    if args.method not in differences:
        print(f"error: {diff_path.name} has no entry for {args.method!r} (a baseline is compared only with the "
              f"baselines before it)", file=sys.stderr)
        return 2
    tiers = read_tiers()
    aggregate_keys = ("high", "medium", "low", "overall", "unranked")

    def plan(method: str) -> dict[str, dict[str, int]]:  # task -> lang -> n, in summary.json's order
        return {task: {lang: entry["n"] for lang, entry in block.items() if lang not in aggregate_keys}
                for task, block in summary[method].items()}

    plans = {m: plan(m) for m in (args.method, args.baseline)}
    findings, stats = Findings(), {"records": 0, "extraction_agrees": 0}
    scored: dict[str, dict[tuple[str, str], list[dict]]] = {m: {} for m in plans}
    for method, by_task in plans.items():  # every language of every task: the replay needs them all
        for task, langs in by_task.items():
            for lang, n in langs.items():
                scored[method][(task, lang)] = check_language(method, task, lang, n, args.data_dir, findings, stats)

    published = summary[args.method][args.task]
    langs = [lang for lang in plans[args.method][args.task]
             if args.tier == "overall" or tiers.get(lang, "unranked") == args.tier]
    if not langs:
        print(f"error: {args.method} has no {args.task} language in tier {args.tier}", file=sys.stderr)
        return 2
    mismatches = []

    def verdict(ok: bool, what: str) -> str:
        if not ok:
            mismatches.append(what)
        return "yes" if ok else "**NO**"

    def ci_verdict(result: tuple[bool, float]) -> str:
        ok, tolerance = result
        return f"yes (within ±{100 * tolerance:.2f})" if ok else f"**no** (beyond ±{100 * tolerance:.2f})"

    # Per-language accuracy.
    rows = []
    for lang in langs:
        recs = scored[args.method][(args.task, lang)]
        flag_acc = sum(r["flag"] for r in recs) / len(recs)
        mine_acc = sum(r["mine"] for r in recs) / len(recs)
        pub = published[lang]
        rows.append([lang, tiers.get(lang, "unranked"), pub["n"], pct(pub["accuracy"]),
                     f"{sum(r['flag'] for r in recs)}/{len(recs)} = {pct(flag_acc)}",
                     f"{sum(r['mine'] for r in recs)}/{len(recs)} = {pct(mine_acc)}",
                     verdict(abs(flag_acc - pub["accuracy"]) < 1e-12 and abs(mine_acc - pub["accuracy"]) < 1e-12
                             and len(recs) == pub["n"], f"accuracy {lang}")])
    out = [f"# Re-derivation: `{args.method}`, {args.task}, tier `{args.tier}`, paired vs `{args.baseline}`", "",
           f"Records read: {stats['records']} (both methods, every {'/'.join(sorted({t for p in plans.values() for t in p}))} "
           f"language in summary.json, first n each); data dir `{args.data_dir}`.", "",
           "## Per-language accuracy (first n problems)", "",
           table(["lang", "tier", "n", "published %", "from records' `correct`", "re-scored here", "match"], rows)]

    # Tier accuracy (macro) and its interval.
    flag_vectors = {key: np.array([r["flag"] for r in recs], dtype=float) for key, recs in scored[args.method].items()}
    mine_vectors = {lang: np.array([r["mine"] for r in scored[args.method][(args.task, lang)]], dtype=float)
                    for lang in langs}
    flag_macro = float(np.mean([flag_vectors[(args.task, lang)].mean() for lang in langs]))
    mine_macro = float(np.mean([mine_vectors[lang].mean() for lang in langs]))
    hits = sum(int(mine_vectors[lang].sum()) for lang in langs)
    total = sum(len(mine_vectors[lang]) for lang in langs)
    pub_tier = published[args.tier]
    independent = independent_tier(mine_vectors, args.n_bootstrap, args.seed)
    replay = replay_summarize(list(flag_vectors), flag_vectors, langs, args.task)
    rows = [["accuracy (macro over languages)", pct(pub_tier["accuracy"]),
             f"{pct(flag_macro)} (records' flags) / {pct(mine_macro)} (re-scored)",
             verdict(abs(flag_macro - pub_tier["accuracy"]) < 1e-12 and abs(mine_macro - pub_tier["accuracy"]) < 1e-12,
                     f"tier accuracy {args.tier}")],
            ["accuracy (micro, for reference)", "-", f"{hits}/{total} = {pct(hits / total)}", "-"],
            ["accuracy, sensitivity: plain last number of the raw output (not the claimed rule)", "-",
             pct(float(np.mean([np.mean([r["last"] for r in scored[args.method][(args.task, lang)]]) for lang in langs]))),
             "-"],
            ["languages", pub_tier["n"], len(langs), verdict(pub_tier["n"] == len(langs), "tier language count")],
            [f"95% CI, independent ({args.n_bootstrap} index resamples)", f"[{pct(pub_tier['ci_low'])}, {pct(pub_tier['ci_high'])}]",
             f"[{pct(independent[0])}, {pct(independent[1])}]",
             ci_verdict(close(independent, pub_tier["ci_low"], pub_tier["ci_high"], args.ci_tol))],
            ["95% CI, replay of the library's RNG scheme", f"[{pct(pub_tier['ci_low'])}, {pct(pub_tier['ci_high'])}]",
             f"[{pct(replay[0])}, {pct(replay[1])}]",
             "yes (exact)" if max(abs(replay[0] - pub_tier["ci_low"]), abs(replay[1] - pub_tier["ci_high"])) < 1e-9
             else "no"]]
    out += ["", f"## Tier `{args.tier}` ({', '.join(langs)})", "",
            table(["quantity", "published", "re-derived", "match"], rows)]

    # Paired difference against the baseline, on the shared items of each language.
    pub_diff_task = differences[args.method]["tasks"].get(args.task)
    pub_diff = (pub_diff_task or {}).get("overall" if args.tier == "overall" else "tiers", {})
    pub_diff = pub_diff if args.tier == "overall" else pub_diff.get(args.tier)
    deltas_flag, deltas_mine, rows = {}, {}, []
    for key in scored[args.method]:
        if key not in scored[args.baseline]:
            continue
        a = {r["id"]: r for r in scored[args.method][key]}
        b = {r["id"]: r for r in scored[args.baseline][key]}
        shared = sorted(set(a) & set(b))  # sorted as strings, as the library sorts them (matters for the replay)
        if shared:
            deltas_flag[key] = np.array([float(a[i]["flag"]) - float(b[i]["flag"]) for i in shared])
            deltas_mine[key] = np.array([float(a[i]["mine"]) - float(b[i]["mine"]) for i in shared])
    diff_langs = [lang for lang in langs if (args.task, lang) in deltas_mine]
    for lang in diff_langs:
        flag_d, mine_d = deltas_flag[(args.task, lang)], deltas_mine[(args.task, lang)]
        pub_l = (pub_diff_task or {}).get("languages", {}).get(lang, {})
        ok = (pub_l.get("n") == len(mine_d) and abs(flag_d.mean() - pub_l.get("difference", math.nan)) < 1e-12
              and abs(mine_d.mean() - pub_l.get("difference", math.nan)) < 1e-12
              and (pub_l.get("a_only"), pub_l.get("b_only")) == (int((mine_d > 0).sum()), int((mine_d < 0).sum())))
        rows.append([lang, len(mine_d), pct(pub_l["difference"], True) if pub_l else "-",
                     f"{pct(flag_d.mean(), True)} / {pct(mine_d.mean(), True)}",
                     f"{int((mine_d > 0).sum())} / {int((mine_d < 0).sum())}",
                     f"{pub_l.get('a_only', '-')} / {pub_l.get('b_only', '-')}",
                     verdict(ok, f"difference {lang}")])
    out += ["", f"## Paired difference `{args.method}` - `{args.baseline}`, points", "",
            table(["lang", "shared items", "published", "re-derived (flags / re-scored)",
                   "only method / only baseline right (here)", "(published)", "match"], rows)]
    if pub_diff is None or not diff_langs:
        out += ["", f"**No published paired difference for tier {args.tier}.**"]
        mismatches.append("paired difference missing")
    else:
        flag_macro_d = float(np.mean([deltas_flag[(args.task, lang)].mean() for lang in diff_langs]))
        mine_macro_d = float(np.mean([deltas_mine[(args.task, lang)].mean() for lang in diff_langs]))
        independent_d = independent_paired({lang: deltas_mine[(args.task, lang)] for lang in diff_langs},
                                           args.n_bootstrap, args.seed + 1)
        replay_d = replay_paired(deltas_flag, diff_langs, args.task)
        pub_ci = pub_diff["ci95"]
        rows = [["difference (macro)", pct(pub_diff["difference"], True),
                 f"{pct(flag_macro_d, True)} (flags) / {pct(mine_macro_d, True)} (re-scored)",
                 verdict(abs(flag_macro_d - pub_diff["difference"]) < 1e-12
                         and abs(mine_macro_d - pub_diff["difference"]) < 1e-12, f"tier difference {args.tier}")],
                ["languages", len(pub_diff["languages"]), len(diff_langs),
                 verdict(sorted(pub_diff["languages"]) == sorted(diff_langs), "difference language set")],
                [f"95% CI, independent ({args.n_bootstrap} paired index resamples)",
                 f"[{pct(pub_ci[0], True)}, {pct(pub_ci[1], True)}]",
                 f"[{pct(independent_d[0], True)}, {pct(independent_d[1], True)}]",
                 ci_verdict(close(independent_d, pub_ci[0], pub_ci[1], args.ci_tol))],
                ["95% CI, replay of the library's RNG scheme", f"[{pct(pub_ci[0], True)}, {pct(pub_ci[1], True)}]",
                 f"[{pct(replay_d[0], True)}, {pct(replay_d[1], True)}]",
                 "yes (exact)" if max(abs(replay_d[0] - pub_ci[0]), abs(replay_d[1] - pub_ci[1])) < 1e-9 else "no"]]
        out += ["", table(["quantity", "published", "re-derived", "match"], rows)]

    # Record-level checks.
    agree = stats["extraction_agrees"]
    out += ["", "## Record checks (both methods, all languages of the task(s) in summary.json, first n records)", "",
            f"- re-extraction agrees with the record's `extracted`: {agree}/{stats['records']} "
            f"({100 * agree / max(stats['records'], 1):.2f}%)"]
    if not findings.counts:
        out.append("- no discrepancy: golds match the dataset, ids are in data order, flags match the re-scoring")
    for kind, count in findings.counts.items():
        out.append(f"- {kind}: {count}; first: " + "; ".join(f"`{example}`" for example in findings.kinds[kind]))
    out += ["", f"**Result: {'every accuracy matches' if not mismatches else 'MISMATCH: ' + ', '.join(mismatches)}.**"]
    print("\n".join(out))
    return 1 if mismatches else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError, IndexError, json.JSONDecodeError) as error:  # a missing or malformed input
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
