"""Evaluation tasks: a small registry of declarative units (data location, languages, prompt, extractor,
metric) and their loaders.

Data is read from a data directory whose layout matches each dataset's public release (see the data
section of the README), else from the download cache (`~/.cache/lingualift/data`, same layout), else
downloaded from the public home when allowed and checked against a pinned sha256
(`resources/checksums.json`; datasets we could not verify offline are marked and their hash is recorded
on first download). Resource tiers come from `resources/mmwp_tiers.tsv` (Common Crawl language shares).
"""

from __future__ import annotations

import csv
import json
import logging
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

from lingualift.data.gsm8k import final_answer
from lingualift.errors import LinguaLiftError
from lingualift.eval.extraction import (
    XCSQA_LABELS,
    XNLI_LABELS,
    extract_choice_label,
    extract_nli_label,
    extract_number,
    numbers_match,
    parse_gold_number,
)
from lingualift.io import atomic_write, file_sha256, iter_jsonl, read_json, write_json
from lingualift.paths import cache_dir, find_data_dir
from lingualift.schema import parse_languages

logger = logging.getLogger(__name__)

DEFAULT_STOP = ("\n\n### Instruction", "</s>", "<|im_end|>")

MMWP_LANGUAGES = tuple(
    "af ar be bg bn ca cs da de en es eu fi fr gu ha hi hr hu hy id is it ja kn ko lb mk ml mr nb ne nl pl "
    "pt ro ru sk sl sr sv sw ta te th uk vi zh".split()
)
MGSM_LANGUAGES = ("en", "es", "fr", "de", "ru", "zh", "ja", "th", "sw", "bn", "te")
MSVAMP_FILES = {
    "bn": "Bengali", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "ja": "Japanese", "ru": "Russian", "sw": "Swahili", "th": "Thai", "zh": "Chinese",
}  # fmt: skip
XCSQA_LANGUAGES = ("en", "zh", "de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "ar", "vi", "hi", "sw", "ur")
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")

_PINNED = {
    "mgsm": "https://raw.githubusercontent.com/google-research/url-nlp/452a21ad3dae5668c06ceeac21ff073e1e40f9be/{path}",
    "gsm8k": "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/"
    "grade_school_math/data/{name}",
    "mmwp": "https://raw.githubusercontent.com/AzureStarz/AlignSFT/0d639b4d9c6be73f3f81fda6a774bc93376e6d2a/"
    "baseline_evaluation/eval_data/m_asdiv_mawps/{name}",
    "msvamp": "https://raw.githubusercontent.com/microsoft/MathOctopus/4d385db696c420b212ccf861fcfab13c1499a576/"
    "step1_supervised_finetuning/data/msvamp/{name}",
}


@dataclass(frozen=True)
class Example:
    """One test item; `question` is what the generator receives (it applies its own template)."""

    id: str
    lang: str
    question: str
    gold: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """A declarative evaluation unit; `kind` selects the extractor and the metric."""

    name: str
    description: str
    languages: tuple[str, ...]
    kind: str  # "number" | "choice" | "nli"
    relpath: Callable[[str], str]  # language → file path inside the data directory (public layout)
    reader: Callable[[Path, str], list[Example]]
    url: Callable[[str], str]  # language → public download URL (a file, or a zip holding the layout)
    archive: bool = False  # the URL is a zip archive that extracts to the public layout
    stop: tuple[str, ...] = DEFAULT_STOP
    max_new_tokens: int = 512
    notes: str = ""

    def extract(self, output: str, example: Example | dict) -> str | None:
        """The canonical answer string extracted from a model output (None if nothing was found)."""
        lang = example.lang if isinstance(example, Example) else example["lang"]
        if self.kind == "number":
            value = extract_number(output)
            return None if value is None else format_number(value)
        if self.kind == "choice":
            choices = example.choices if isinstance(example, Example) else example.get("choices") or ()
            return extract_choice_label(output, XCSQA_LABELS[: len(choices) or 5], list(choices) or None)
        return extract_nli_label(output, lang)

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        if extracted is None:
            return False
        if self.kind == "number":
            return numbers_match(float(extracted), parse_gold_number(gold))
        return extracted == gold


def format_number(value: float) -> str:
    """Short canonical text for a number (18.0 → "18", 0.75 → "0.75")."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


# --- readers: one per public format ---------------------------------------------------------------


def _gold_number(raw: str, where: str) -> str:
    try:
        return format_number(parse_gold_number(raw))
    except ValueError:
        raise LinguaLiftError(f"{where}: answer {raw!r} is not a number; the gold answer must be numeric") from None


def _read_mgsm(path: Path, lang: str) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise LinguaLiftError(
                    f"{path}:{line_number}: expected 2 tab-separated fields (question, answer), got {len(row)}"
                )
            where = f"{path}:{line_number}: field 'answer'"
            examples.append(Example(f"{lang}-{len(examples)}", lang, row[0], _gold_number(row[1], where)))
    return examples


def _read_json_array(path: Path, lang: str) -> list[Example]:
    items = read_json(path)
    if not isinstance(items, list):
        raise LinguaLiftError(f"{path}: expected a JSON array of {{question, answer}} objects")
    examples = []
    for index, item in enumerate(items):
        for key in ("question", "answer"):
            if not isinstance(item, dict) or not isinstance(item.get(key), (str, int, float)):
                raise LinguaLiftError(f"{path}: item {index}: missing or invalid field {key!r}")
        where = f"{path}: item {index}: field 'answer'"
        examples.append(Example(f"{lang}-{index}", lang, item["question"], _gold_number(str(item["answer"]), where)))
    return examples


def _read_jsonl_fields(question_key: str, answer_key: str) -> Callable[[Path, str], list[Example]]:
    def read(path: Path, lang: str) -> list[Example]:
        examples = []
        for line_number, record in _iter_jsonl_numbered(path):
            for key in (question_key, answer_key):
                if not isinstance(record.get(key), (str, int, float)):
                    raise LinguaLiftError(f"{path}:{line_number}: missing or invalid field {key!r}")
            answer = str(record[answer_key])
            if answer_key == "answer":
                answer = final_answer(answer)  # GSM8K: a worked solution ending in "#### N"
            where = f"{path}:{line_number}: field {answer_key!r}"
            gold = _gold_number(answer, where)
            examples.append(Example(f"{lang}-{len(examples)}", lang, str(record[question_key]), gold))
        return examples

    return read


def _iter_jsonl_numbered(path: Path):
    """(line number, record) pairs; `iter_jsonl` skips blank lines, so count them here."""
    with open(path, "rb") as handle:
        numbers = [i for i, raw in enumerate(handle, start=1) if raw.strip()]
    return zip(numbers, iter_jsonl(path))


def _read_xcsqa(path: Path, lang: str) -> list[Example]:
    examples = []
    for line_number, record in _iter_jsonl_numbered(path):
        question = record.get("question")
        if not isinstance(question, dict) or not isinstance(question.get("stem"), str):
            raise LinguaLiftError(f"{path}:{line_number}: missing field 'question.stem'")
        choices = question.get("choices") or []
        labels = [c.get("label") for c in choices if isinstance(c, dict)]
        if labels != list(XCSQA_LABELS[: len(labels)]) or len(labels) < 2:
            raise LinguaLiftError(f"{path}:{line_number}: field 'question.choices' must be labelled A, B, C, …")
        gold = record.get("answerKey")
        if gold not in labels:
            raise LinguaLiftError(
                f"{path}:{line_number}: field 'answerKey' is {gold!r}, not one of {labels} "
                "(the X-CSQA test split has no public answers; use the dev split)"
            )
        texts = tuple(str(c.get("text", "")) for c in choices)
        options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts))
        prompt = f"{question['stem']}\n{options}\nAnswer with the letter of the correct option."
        examples.append(Example(str(record.get("id", f"{lang}-{len(examples)}")), lang, prompt, gold, texts))
    return examples


def _read_xnli(path: Path, lang: str) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) or []
        missing = {"language", "gold_label", "sentence1", "sentence2"} - set(header)
        if missing:
            raise LinguaLiftError(f"{path}:1: header lacks column(s) {sorted(missing)}; expected the XNLI-1.0 layout")
        col = {name: header.index(name) for name in header}
        for line_number, row in enumerate(reader, start=2):
            if not row or row[col["language"]] != lang:
                continue
            if len(row) < len(header):
                raise LinguaLiftError(f"{path}:{line_number}: expected {len(header)} tab-separated fields, got {len(row)}")
            gold = row[col["gold_label"]]
            if gold not in XNLI_LABELS:
                raise LinguaLiftError(f"{path}:{line_number}: field 'gold_label' is {gold!r}, not one of {XNLI_LABELS}")
            prompt = (
                f"Premise: {row[col['sentence1']]}\nHypothesis: {row[col['sentence2']]}\n"
                "Does the premise entail the hypothesis? Answer with one word: entailment, neutral or contradiction."
            )
            examples.append(Example(f"{lang}-{len(examples)}", lang, prompt, gold))
    return examples


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "mmwp", "MMWP: ASDiv+MAWPS word problems in 48 languages (parallel)", MMWP_LANGUAGES, "number",
            lambda lang: f"mmwp/test_{lang}.json", _read_json_array,
            lambda lang: _PINNED["mmwp"].format(name=f"test_{lang}.json"),
        ),
        Task(
            "mgsm", "MGSM: GSM8K test 0..249 translated into 10 languages", MGSM_LANGUAGES, "number",
            lambda lang: f"mgsm/mgsm_{lang}.tsv", _read_mgsm,
            lambda lang: _PINNED["mgsm"].format(path=f"mgsm/mgsm_{lang}.tsv"),
        ),
        Task(
            "msvamp", "MSVAMP: SVAMP in 10 languages (MathOctopus)", tuple(MSVAMP_FILES), "number",
            lambda lang: f"msvamp/test_{MSVAMP_FILES[lang]}.json", _read_jsonl_fields("m_query", "response"),
            lambda lang: _PINNED["msvamp"].format(name=f"test_{MSVAMP_FILES[lang]}.json"),
            notes="JSON Lines despite the .json name; no pinned checksum (not verified offline)",
        ),
        Task(
            "gsm8k", "GSM8K test (English)", ("en",), "number",
            lambda lang: "gsm8k/test.jsonl", _read_jsonl_fields("question", "answer"),
            lambda lang: _PINNED["gsm8k"].format(name="test.jsonl"),
        ),
        Task(
            "xcsqa", "X-CSQA dev split (test answers are hidden), 5-way multiple choice", XCSQA_LANGUAGES, "choice",
            lambda lang: f"X-CSR_datasets/X-CSQA/{'jap' if lang == 'ja' else lang}/dev.jsonl", _read_xcsqa,
            lambda lang: "https://inklab.usc.edu/XCSR/xcsr_datasets.zip", archive=True, max_new_tokens=256,
            notes="zip from inklab.usc.edu; no pinned checksum (not verified offline)",
        ),
        Task(
            "xnli", "XNLI-1.0 test, 3-way NLI", XNLI_LANGUAGES, "nli",
            lambda lang: "XNLI-1.0/xnli.test.tsv", _read_xnli,
            lambda lang: "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip", archive=True, max_new_tokens=256,
            notes="zip from dl.fbaipublicfiles.com; no pinned checksum (not verified offline)",
        ),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise LinguaLiftError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None


def parse_task_langs(tasks: str | list[str], langs: str | list[str] | None) -> list[tuple[Task, list[str]]]:
    """Resolve `--tasks a,b --langs x,y` into (task, languages) pairs; languages a task lacks are skipped."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    wanted = parse_languages(langs, "--langs", allow_all=False) if langs else None
    plan = []
    for name in (n.strip() for n in names if n.strip()):
        task = get_task(name)
        if wanted:
            unknown = [lang for lang in wanted if lang not in task.languages]
            if len(unknown) == len(wanted):
                raise LinguaLiftError(f"task {name} has none of the languages {wanted}; it has {', '.join(task.languages)}")
            if unknown:
                logger.info("%s: skipping languages it does not have: %s", name, ", ".join(unknown))
            plan.append((task, [lang for lang in wanted if lang in task.languages]))
        else:
            plan.append((task, list(task.languages)))
    if not plan:
        raise LinguaLiftError(f"--tasks: no task given; choose from {', '.join(TASKS)}")
    return plan


# --- locating and downloading data -------------------------------------------------------------------


@lru_cache(maxsize=1)
def _checksums() -> dict[str, str]:
    return json.loads(resources.files("lingualift").joinpath("resources/checksums.json").read_text("utf-8"))


DIGESTS = "digests.json"  # in the download cache: relpath -> sha256 recorded when the file was downloaded
MAX_DOWNLOAD_BYTES = 2 << 30  # a download, and an archive's extracted size, may not exceed 2 GiB


def _recorded_digests(root: Path) -> dict[str, str]:
    path = root / DIGESTS
    if not path.is_file():
        return {}
    recorded = read_json(path)
    if not isinstance(recorded, dict):
        raise LinguaLiftError(f"{path}: expected a JSON object of file -> sha256; delete it and the downloads")
    return recorded


def _record_digests(root: Path, digests: dict[str, str]) -> None:
    write_json(root / DIGESTS, {**_recorded_digests(root), **digests})


def verify_cached(root: Path, relpath: str) -> None:
    """Re-check a downloaded file on every use against the pinned sha256, else the one recorded at download.

    A cached file without a record (downloaded by an older version) is recorded now (trust on first use).
    """
    path = root / relpath
    actual = file_sha256(path)
    expected = _checksums().get(relpath) or _recorded_digests(root).get(relpath)
    if expected is None:
        logger.warning("%s: no recorded digest; recording sha256 %s now (trust on first use)", path, actual)
        _record_digests(root, {relpath: actual})
    elif actual != expected:
        raise LinguaLiftError(f"{path}: sha256 {actual} differs from the digest recorded at download ({expected}); "
                              "the cached file changed - delete it to download it again")


def _download(task: Task, lang: str, root: Path) -> None:
    """Fetch the public file (or archive) into `root` with the public layout, checking its sha256.

    Every file placed in the cache gets its digest recorded in `digests.json` (re-checked on each use);
    an archive never overwrites a file already in the cache, and sizes are capped (`MAX_DOWNLOAD_BYTES`).
    """
    url, relpath = task.url(lang), task.relpath(lang)
    target = root / (Path(url).name if task.archive else relpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    logger.info("downloading %s → %s", url, target)
    try:
        size = 0
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            while block := response.read(1 << 20):
                size += len(block)
                if size > MAX_DOWNLOAD_BYTES:
                    raise LinguaLiftError(f"{url}: larger than {MAX_DOWNLOAD_BYTES >> 20} MiB; refusing it, put "
                                          f"{relpath} under your data directory (--data-dir) by hand")
                handle.write(block)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise LinguaLiftError(
            f"cannot download {url} ({exc}); put {relpath} under your data directory (--data-dir) by hand"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    name = Path(url).name if task.archive else relpath
    expected = _checksums().get(name)
    actual = file_sha256(partial)
    if expected and actual != expected:
        partial.unlink()
        raise LinguaLiftError(f"checksum mismatch for {url}: sha256 {actual}, expected {expected}")
    if not expected:
        logger.warning("%s has no pinned checksum; recorded sha256 %s (trust on first use)", url, actual)
    partial.replace(target)
    if not task.archive:
        _record_digests(root, {relpath: actual})
        return
    recorded = {}
    try:
        with zipfile.ZipFile(target) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_DOWNLOAD_BYTES:
                raise LinguaLiftError(f"{target}: extracts to more than {MAX_DOWNLOAD_BYTES >> 20} MiB; refusing it")
            for member in members:
                destination = (root / member.filename).resolve()
                if root.resolve() not in destination.parents:
                    raise LinguaLiftError(f"{target}: member {member.filename!r} points outside the cache; refusing it")
                if destination.exists():  # never replace a file already in the cache (pinned or recorded)
                    continue
                with atomic_write(destination, "wb") as out, archive.open(member) as source:
                    while block := source.read(1 << 20):
                        out.write(block)
                recorded[destination.relative_to(root.resolve()).as_posix()] = file_sha256(destination)
    except zipfile.BadZipFile as exc:
        raise LinguaLiftError(f"{target}: not a zip archive ({exc}); delete it and retry") from None
    finally:
        if recorded:
            _record_digests(root, recorded)


def data_file(task: Task, lang: str, data_dir: str | Path | None = None, download: bool = False) -> Path:
    """Where `task`'s file for `lang` is: data directory, then download cache, then (if allowed) download."""
    if lang not in task.languages:
        raise LinguaLiftError(f"task {task.name} has no language {lang!r}; it has {', '.join(task.languages)}")
    relpath = task.relpath(lang)
    roots = [root for root in (find_data_dir(data_dir, required=False), cache_dir("data")) if root is not None]
    for root in roots:
        if (root / relpath).is_file():
            if root == cache_dir("data"):
                verify_cached(root, relpath)
            return root / relpath
    if download:
        _download(task, lang, cache_dir("data"))
        verify_cached(cache_dir("data"), relpath)
        return cache_dir("data") / relpath
    where = roots[0] if data_dir or len(roots) > 1 else "a data directory (--data-dir)"
    raise LinguaLiftError(
        f"{task.name} data for {lang} not found: put {relpath} from {task.url(lang)}"
        f"{' (unzipped)' if task.archive else ''} under {where}, "
        "or allow downloading (drop --offline)"
    )


def _first_bad_utf8(path: Path) -> str:
    """`path:line` of the first byte that is not UTF-8 (the readers decode in blocks)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return f"{path}:{line}"
    return str(path)


def load_examples(
    task: Task | str, lang: str, data_dir: str | Path | None = None, limit: int | None = None, download: bool = False
) -> list[Example]:
    """The first `limit` examples of `task` in `lang`, in file order."""
    task = get_task(task) if isinstance(task, str) else task
    path = data_file(task, lang, data_dir, download)
    try:
        examples = task.reader(path, lang)
    except UnicodeDecodeError:
        raise LinguaLiftError(f"{_first_bad_utf8(path)}: not valid UTF-8; re-encode the file as UTF-8") from None
    if not examples:
        raise LinguaLiftError(f"{path}: no {task.name} examples for language {lang}")
    return examples[:limit] if limit else examples


# --- resource tiers -----------------------------------------------------------------------------------

TIERS = ("high", "medium", "low")


@lru_cache(maxsize=1)
def tier_table() -> dict[str, dict]:
    """`lang → {iso639_3, cc_share_percent, tier, set}` from resources/mmwp_tiers.tsv (see its header)."""
    text = resources.files("lingualift").joinpath("resources/mmwp_tiers.tsv").read_text("utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    header, body = rows[0], rows[1:]
    table = {}
    for row in body:
        record = dict(zip(header, row))
        record["cc_share_percent"] = float(record["cc_share_percent"])
        table[record.pop("lang")] = record
    return table


def tier_of(lang: str) -> str:
    """The resource tier of a language ("unranked" for a language outside the table)."""
    entry = tier_table().get(lang)
    return entry["tier"] if entry else "unranked"
