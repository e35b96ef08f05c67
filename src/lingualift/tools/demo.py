"""The interactive page (`lingualift demo`): ask models a question in any language; browse and compare eval runs.

The logic (a background model pool, asking, benchmark problems, run views, the paired comparison of two
runs) is plain Python so that it is testable without a browser; `build_app` lays it out as one Gradio
page and turns every `LinguaLiftError` into a message on the page instead of a stack trace. Gradio is
imported only there (it is the optional `[demo]` extra).

Run views read `results.json` as written by `lingualift eval` / `score` (never re-computed here) and the
prediction files read-only: a run that is still being written shows what it has, and a half-written last
line is skipped rather than truncated (`evaluation.read_done` would truncate it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before Python 3.11
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lingualift.errors import LinguaLiftError
from lingualift.eval.runner import paired_differences
from lingualift.eval.extraction import parse_gold_number
from lingualift.io import read_json
from lingualift.eval.report import ci_text, order_by_tier, pct
from lingualift.eval.tasks import TIERS, Example, data_file, get_task, load_examples, tier_of

logger = logging.getLogger(__name__)

ASK_TASKS = ("mgsm", "mmwp", "msvamp")  # benchmarks offered in the "Ask" part (numeric answers)
STATUSES = ("all", "correct", "wrong", "no answer")
MAX_ROWS = 500  # prediction / disagreement rows sent to the page at once (filters narrow the rest)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- models ----------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """One `--model` spec: its generator once loaded, or the one-line reason it failed."""

    spec: str
    generator: object | None = None
    error: str | None = None
    seconds: float = 0.0


class ModelPool:
    """Loads models one after another in a background thread, so the page is up (and says "loading")
    long before a large model is ready; a model that fails to load keeps its error for the page."""

    def __init__(self, specs=(), *, loader: Callable | None = None, **load_options):
        if loader is None:
            from lingualift.inference.generators import load_generator as loader
        self._loader = loader
        self._options = load_options
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingualift-demo-load")
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self.generate_lock = threading.Lock()  # one generation at a time: the models share the CPUs / GPU
        for spec in specs:
            self.add(spec)

    def add(self, spec: str) -> str:
        spec = (spec or "").strip()
        if not spec:
            raise LinguaLiftError("no model given: type a checkpoint folder, a Hugging Face id or a preset (tiny-llama, default)")
        with self._lock:
            if spec not in self._futures:
                self._futures[spec] = self._executor.submit(self._load, spec)
        return spec

    def _load(self, spec: str) -> LoadedModel:
        start = time.perf_counter()
        try:
            generator = self._loader(spec, **self._options)
        except LinguaLiftError as exc:
            logger.warning("model %s failed to load: %s", spec, exc)
            return LoadedModel(spec, error=str(exc), seconds=time.perf_counter() - start)
        except Exception as exc:  # a broken checkpoint must not take the page down
            logger.exception("model %s failed to load", spec)
            return LoadedModel(spec, error=_first_line(exc), seconds=time.perf_counter() - start)
        logger.info("model %s loaded in %.1f s", spec, time.perf_counter() - start)
        return LoadedModel(spec, generator=generator, seconds=time.perf_counter() - start)

    @property
    def specs(self) -> list[str]:
        with self._lock:
            return list(self._futures)

    def ready(self, spec: str) -> bool:
        return self._futures[spec].done()

    def get(self, spec: str, timeout: float | None = None) -> LoadedModel:
        return self._futures[spec].result(timeout)

    def status_markdown(self) -> str:
        if not self.specs:
            return "No models yet: add one below."
        lines = []
        for spec in self.specs:
            if not self.ready(spec):
                lines.append(f"- … `{spec}`: loading…")
                continue
            model = self.get(spec)
            if model.error:
                lines.append(f"- ✗ `{spec}`: failed to load: {model.error}")
            else:
                lines.append(f"- ✓ `{spec}`: ready ({type(model.generator).__name__}, loaded in {model.seconds:.1f} s)")
        return "\n".join(lines)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- asking ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One model's reply to one question: the row of the answers table."""

    model: str
    state: str  # "waiting" | "loading" | "generating" | "done" | "failed"
    output: str = ""
    extracted: str | None = None
    correct: bool | None = None  # None: no gold answer given
    seconds: float | None = None
    prompt: str = ""
    error: str = ""


def canonical_gold(gold: str | None) -> str | None:
    """The gold answer as the tasks store it ("18", "0.75"), or None when none was given."""
    gold = (gold or "").strip()
    if not gold:
        return None
    try:
        value = parse_gold_number(gold)
    except ValueError:
        raise LinguaLiftError(f"gold answer {gold!r} is not a number; leave it empty or type a number like 18 or 2.5") from None
    from lingualift.eval.tasks import format_number

    return format_number(value)


def ask(pool: ModelPool, question: str, *, gold: str | None = None, task: str = "mgsm", lang: str = "xx",
        max_new_tokens: int = 256) -> Iterator[list[Answer]]:
    """Ask every model of the pool, one after another; yields the whole answer list after each step so
    the page can show progress (waiting / loading / generating / done) while it runs."""
    question = (question or "").strip()
    if not question:
        raise LinguaLiftError("the question is empty: type a question (any language) or load a benchmark problem")
    if not pool.specs:
        raise LinguaLiftError("no models loaded: start with --model SPEC or add one on the page")
    if max_new_tokens is None or int(max_new_tokens) < 1:
        raise LinguaLiftError(f"max new tokens must be a positive integer, got {max_new_tokens}")
    gold = canonical_gold(gold)
    task_def = get_task(task or "mgsm")
    example = Example("asked", lang or "xx", question, gold or "")
    answers = [Answer(spec, "waiting") for spec in pool.specs]
    yield answers
    for answer in answers:
        if not pool.ready(answer.model):
            answer.state = "loading"
            yield answers
        loaded = pool.get(answer.model)
        if loaded.error:
            answer.state, answer.error = "failed", f"failed to load: {loaded.error}"
            yield answers
            continue
        generator = loaded.generator
        answer.state, answer.prompt = "generating", generator.rendered_prompt(question)
        yield answers
        start = time.perf_counter()
        try:
            with pool.generate_lock:
                answer.output = generator.generate([question], max_new_tokens=int(max_new_tokens),
                                                   stop=list(task_def.stop), batch_size=1)[0]
        except Exception as exc:  # one broken model must not hide the others' answers
            logger.exception("generation with %s failed", answer.model)
            answer.state, answer.error = "failed", f"generation failed: {_first_line(exc)}"
            yield answers
            continue
        answer.seconds = time.perf_counter() - start
        answer.extracted = task_def.extract(answer.output, example)
        answer.correct = task_def.is_correct(answer.extracted, gold) if gold is not None else None
        answer.state = "done"
        yield answers


ANSWER_HEADERS = ["model", "state", "extracted", "matches gold", "seconds", "answer"]


def answer_rows(answers: list[Answer]) -> list[list]:
    marks = {True: "✓ yes", False: "✗ no", None: "–"}
    rows = []
    for a in answers:
        state = {"waiting": "○ waiting", "loading": "… loading model", "generating": "… generating",
                 "done": "✓ done", "failed": "✗ failed"}[a.state]
        extracted = "–" if a.state != "done" else (a.extracted if a.extracted is not None else "(no number)")
        seconds = f"{a.seconds:.2f}" if a.seconds is not None else ""
        rows.append([a.model, state, extracted, marks[a.correct] if a.state == "done" else "", seconds,
                     a.error or a.output])
    return rows


def prompts_markdown(answers: list[Answer]) -> str:
    parts = [f"**{a.model}**\n\n```text\n{a.prompt}\n```" for a in answers if a.prompt]
    return "\n\n".join(parts) or "_No prompt yet: ask a question first._"


# --- benchmark problems ----------------------------------------------------------------------------------


def available_benchmarks(data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """The ASK_TASKS languages whose data file is present (data directory or download cache); no download."""
    found = {}
    for name in ASK_TASKS:
        task = get_task(name)
        langs = []
        for lang in task.languages:
            try:
                data_file(task, lang, data_dir, download=False)
            except LinguaLiftError:
                continue
            langs.append(lang)
        if langs:
            found[name] = langs
    return found


@lru_cache(maxsize=32)
def _examples(task: str, lang: str, data_dir: str | None) -> list[Example]:
    return load_examples(task, lang, data_dir)


def benchmark_problem(task: str, lang: str, index: int, data_dir: str | Path | None = None) -> tuple[Example, int]:
    """Problem number `index` of a benchmark language and how many it has."""
    if not task or not lang:
        raise LinguaLiftError("pick a benchmark and a language first")
    examples = _examples(task, lang, str(data_dir) if data_dir else None)
    index = int(index or 0)
    if not 0 <= index < len(examples):
        raise LinguaLiftError(f"{task}/{lang} has problems 0 to {len(examples) - 1}; got {index}")
    return examples[index], len(examples)


# --- evaluation runs -------------------------------------------------------------------------------------


def find_runs(root: str | Path) -> dict[str, Path]:
    """Evaluation run folders under `root` (itself included), by their path relative to it."""
    raw = str(root or "").strip()
    if not raw:
        raise LinguaLiftError("no runs folder given: type the folder that holds your `lingualift eval` outputs (e.g. runs/eval)")
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise LinguaLiftError(f"runs folder not found: {root}")
    candidates = {root} | {p.parent for p in root.rglob("run.json")} | {p.parent for p in root.rglob("predictions")}
    runs = {}
    for path in sorted(candidates):
        if (path / "predictions").is_dir() or ((path / "run.json").is_file() and (path / "results.json").is_file()):
            label = path.relative_to(root).as_posix()
            runs[root.name if label == "." else label] = path
    if not runs:
        raise LinguaLiftError(
            f"{root}: no evaluation runs in this folder (a run is a folder with predictions/<task>/<lang>.jsonl, "
            "written by `lingualift eval --out DIR`)"
        )
    return runs


def read_records(path: Path) -> tuple[list[dict], bool]:
    """The records of one prediction file, read-only; also whether a half-written last line was skipped."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    records = []
    for line_number, line in enumerate(data[:keep].split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LinguaLiftError(f"{path}:{line_number}: not a JSON prediction record; this run is corrupt "
                                  "(delete the file and re-run `lingualift eval` to recompute it)") from None
        missing = [k for k in ("id", "output", "gold", "correct") if not isinstance(record, dict) or k not in record]
        if missing:
            raise LinguaLiftError(f"{path}:{line_number}: prediction record lacks {', '.join(missing)}; this run is corrupt")
        records.append(record)
    return records, keep < len(data)


def _check_results(results, path: Path) -> dict:
    """Fail with one line (not a KeyError deep in the page) when results.json is not `summarize`'s output."""
    problem = None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        problem = "has no 'tasks' object"
    else:
        for name, task in results["tasks"].items():
            if not isinstance(task, dict) or not all(isinstance(task.get(k), dict) for k in ("languages", "tiers", "overall")):
                problem = f"task {name!r} lacks languages / tiers / overall"
                break
            for lang, entry in task["languages"].items():
                if not isinstance(entry, dict) or not {"n", "accuracy", "ci95"} <= set(entry):
                    problem = f"{name}/{lang} lacks n / accuracy / ci95"
                    break
    if problem:
        raise LinguaLiftError(f"{path}: {problem}; not a `lingualift eval` results file "
                              f"(`lingualift score {path.parent}` rewrites it from the predictions)")
    return results


@dataclass
class RunView:
    """One run as the page shows it: results.json as written, every record (with its tier), notices."""

    path: Path
    results: dict | None
    records: list[dict]
    notices: list[str] = field(default_factory=list)
    run_config: dict = field(default_factory=dict)

    @property
    def chart(self) -> Path | None:
        png = self.path / "results.png"
        return png if png.is_file() else None


def open_run(path: str | Path) -> RunView:
    path = Path(path)
    if not path.is_dir():
        raise LinguaLiftError(f"run folder not found: {path}")
    return _open_run(path, _signature(path))


def _signature(path: Path) -> tuple:
    """What a cached view depends on: every file's size and mtime (a running eval invalidates it)."""
    files = [path / "results.json", path / "run.json", *sorted(path.glob("predictions/*/*.jsonl"))]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())


@lru_cache(maxsize=8)
def _open_run(path: Path, signature: tuple) -> RunView:
    notices = []
    results = None
    if (path / "results.json").is_file():
        results = _check_results(read_json(path / "results.json"), path / "results.json")
    else:
        notices.append(f"`{path}` has no results.json yet (unfinished run?); `lingualift score {path}` writes it.")
    run_config = read_json(path / "run.json") if (path / "run.json").is_file() else {}
    run_config = run_config if isinstance(run_config, dict) else {}
    records = []
    for file in sorted(path.glob("predictions/*/*.jsonl")):
        file_records, partial = read_records(file)
        if partial:
            notices.append(f"`{file}` ends with a half-written line (a run in progress?); it is skipped.")
        task, lang = file.parent.name, file.stem
        for record in file_records:
            records.append({**record, "task": record.get("task", task), "lang": record.get("lang", lang),
                            "tier": tier_of(record.get("lang", lang)),
                            "question": _question_of(record.get("prompt", ""), run_config.get("prompt_template"))})
    if results is None and not records:
        raise LinguaLiftError(f"{path}: neither results.json nor predictions/<task>/<lang>.jsonl; not an evaluation run")
    return RunView(path, results, records, notices, run_config)


ACCURACY_HEADERS = ["task", "level", "name", "tier", "n", "correct", "accuracy %", "95% CI"]


def accuracy_rows(results: dict) -> list[list]:
    """results.json as table rows (same numbers, formatted like results.md): overall, tiers, languages."""
    rows = []
    for name, task in results["tasks"].items():
        overall = task["overall"]
        rows.append([name, "overall", f"{len(task['languages'])} languages", "", "", "",
                     pct(overall["accuracy"]), ci_text(overall["ci95"])])
        for tier, group in task["tiers"].items():
            rows.append([name, "tier", tier, tier, "", "", pct(group["accuracy"]), ci_text(group["ci95"])])
        for lang in order_by_tier(list(task["languages"])):
            entry = task["languages"][lang]
            rows.append([name, "language", lang, entry.get("tier", tier_of(lang)), entry["n"], entry.get("correct", ""),
                         pct(entry["accuracy"]), ci_text(entry["ci95"])])
    return rows


def record_status(record: dict) -> str:
    if record.get("extracted") is None:
        return "no answer"
    return "correct" if record.get("correct") else "wrong"


def filter_records(records: list[dict], *, task: str = "all", lang: str = "all", tier: str = "all",
                   status: str = "all") -> list[dict]:
    if status not in STATUSES:
        raise LinguaLiftError(f"unknown answer status {status!r}; choose from {', '.join(STATUSES)}")
    return [r for r in records
            if task in ("all", None, "", r["task"]) and lang in ("all", None, "", r["lang"])
            and tier in ("all", None, "", r["tier"]) and status in ("all", None, "", record_status(r))]


PREDICTION_HEADERS = ["task", "lang", "tier", "id", "gold", "extracted", "status", "question", "output"]


def prediction_rows(records: list[dict]) -> list[list]:
    return [[r["task"], r["lang"], r["tier"], r["id"], r["gold"],
             "" if r.get("extracted") is None else r["extracted"], record_status(r),
             r["question"], r["output"]] for r in records[:MAX_ROWS]]


def _question_of(prompt: str, template: str | None) -> str:
    """The question inside a saved prompt (the run's template stripped), else the whole prompt."""
    if not isinstance(template, str) or "{question}" not in template:
        return prompt
    before, after = template.split("{question}", 1)
    if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
        return prompt[len(before) : len(prompt) - len(after)]
    return prompt


# --- comparing two runs ----------------------------------------------------------------------------------


COMPARE_HEADERS = ["task", "level", "name", "tier", "shared items", "A %", "B %", "B − A (points)", "95% CI",
                   "only A right", "only B right"]
DISAGREE_HEADERS = ["task", "lang", "id", "gold", "A extracted", "B extracted", "right", "A output", "B output"]


@dataclass
class Comparison:
    rows: list[list]
    disagreements: list[list]
    notices: list[str]


def compare_runs(a: RunView, b: RunView, *, n_bootstrap: int = 1000, seed: int = 0) -> Comparison:
    """Per-language accuracy difference (B − A) over the items both runs answered, with 95% paired
    bootstrap intervals, a macro row per task (languages resampled independently, as in `summarize`), and
    every shared item where their extracted answers differ."""
    def index(view: RunView) -> dict:
        return {(r["task"], r["lang"], r["id"]): r for r in view.records}

    left, right = index(a), index(b)
    shared = [key for key in left if key in right]
    notices = []
    mismatched = [k for k in shared if str(left[k]["gold"]) != str(right[k]["gold"])]
    if mismatched:
        notices.append(f"{len(mismatched)} shared item(s) have different gold answers in the two runs (different "
                       f"data?) and are left out, e.g. {'/'.join(mismatched[0])}.")
        shared = [k for k in shared if k not in set(mismatched)]
    if not shared:
        raise LinguaLiftError("the two runs share no items (same task, language and id); compare runs of the same benchmark")
    only = len(left) + len(right) - 2 * len(shared) - 2 * len(mismatched)
    if only:
        notices.append(f"{only} item(s) are in one run only and are left out of the comparison.")
    runs: tuple[dict, dict] = ({}, {})
    for key in shared:
        runs[0].setdefault(key[0], {}).setdefault(key[1], []).append(left[key])
        runs[1].setdefault(key[0], {}).setdefault(key[1], []).append(right[key])
    stats = paired_differences(runs[1], runs[0], n_bootstrap=n_bootstrap, seed=seed)  # B − A

    def accuracy(records: list[dict]) -> float:
        return float(np.mean([bool(r["correct"]) for r in records]))

    rows, disagreements = [], []
    for task, block in stats["tasks"].items():
        lang_rows, means = [], []
        for lang in order_by_tier(list(block["languages"])):
            value = block["languages"][lang]
            mean_a, mean_b = accuracy(runs[0][task][lang]), accuracy(runs[1][task][lang])
            means.append((mean_a, mean_b))
            lang_rows.append([task, "language", lang, value["tier"], value["n"], pct(mean_a), pct(mean_b),
                              _points(value["difference"]), _ci_points(value["ci95"]), value["b_only"],
                              value["a_only"]])
            for ra, rb in zip(runs[0][task][lang], runs[1][task][lang]):
                if ra.get("extracted") != rb.get("extracted") or bool(ra["correct"]) != bool(rb["correct"]):
                    right_side = {(True, False): "A", (False, True): "B", (True, True): "both", (False, False): "neither"}
                    disagreements.append([task, lang, ra["id"], ra["gold"], _shown(ra.get("extracted")),
                                          _shown(rb.get("extracted")), right_side[bool(ra["correct"]), bool(rb["correct"])],
                                          ra["output"], rb["output"]])
        overall = block["overall"]
        mean_a, mean_b = np.mean(means, axis=0)
        rows.append([task, "macro", f"{len(lang_rows)} languages", "", sum(row[4] for row in lang_rows), pct(mean_a),
                     pct(mean_b), _points(overall["difference"]), _ci_points(overall["ci95"]),
                     sum(r[9] for r in lang_rows), sum(r[10] for r in lang_rows)])
        rows.extend(lang_rows)
    order = {"A": 0, "B": 0, "neither": 1, "both": 2}
    disagreements.sort(key=lambda row: order[row[6]])
    return Comparison(rows, disagreements, notices)


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _ci_points(interval) -> str:
    low, high = interval
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def _shown(extracted) -> str:
    return "(none)" if extracted is None else str(extracted)


# --- the page --------------------------------------------------------------------------------------------

CSS = """
.ll-status p { margin: 0.2em 0; }
"""

INTRO = (
    "# LinguaLIFT demo\n"
    "Ask a question in any language and compare the models' answers, or browse and compare evaluation runs. "
    "Answers are scored with the harness's own extractor (`lingualift.eval.extraction`)."
)


def _message(exc: BaseException) -> str:
    if isinstance(exc, LinguaLiftError):
        return f"⚠ {exc}"
    logger.exception("unexpected error in the demo page")
    return f"⚠ unexpected error ({_first_line(exc)}); details are in the console log"


def _table(rows: list[list], headers: list[str]):
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


def build_app(pool: ModelPool, *, runs_dir: str | Path | None = None, data_dir: str | Path | None = None,
              max_new_tokens: int = 256):
    """The page: an "Ask" tab (models side by side) and a "Runs" tab (one run; two runs compared)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    benchmarks = available_benchmarks(data_dir)
    first_task = next(iter(benchmarks), None)

    with gr.Blocks(title="LinguaLIFT demo", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Tab("Ask", id="ask"):
            with gr.Row(equal_height=True):
                question = gr.Textbox(label="Question (any language)", lines=3, scale=3, elem_id="question",
                                      placeholder="Juma ana machungwa 3 na ananunua 4 zaidi. Ana machungwa mangapi?")
                with gr.Column(scale=1, min_width=240):
                    gold = gr.Textbox(label="Gold answer (optional)", elem_id="gold")
                    ask_button = gr.Button("Ask", variant="primary", elem_id="ask-button")
            with gr.Accordion("Benchmark problem and settings", open=bool(benchmarks)):
                with gr.Row(equal_height=True):
                    if benchmarks:
                        bench_task = gr.Dropdown(list(benchmarks), value=first_task, label="benchmark", min_width=120)
                        bench_lang = gr.Dropdown(benchmarks[first_task], value=benchmarks[first_task][0],
                                                 label="language", min_width=120)
                        bench_index = gr.Number(0, precision=0, minimum=0, label="problem #", min_width=100)
                        load_problem = gr.Button("Load problem", min_width=120)
                    else:
                        gr.Markdown("No MGSM / MMWP / MSVAMP data found: start with `--data-dir DIR` to pick "
                                    "benchmark problems.")
                        bench_task = gr.State(None)
                        bench_lang = gr.State(None)
                    tokens = gr.Slider(8, 1024, value=max_new_tokens, step=8, label="max new tokens", scale=2)
            ask_status = gr.Markdown(elem_classes="ll-status", elem_id="ask-status")
            answers = gr.Dataframe(_table([], ANSWER_HEADERS), label="Answers, side by side", interactive=False,
                                   wrap=True, elem_id="answers", column_widths=["14%", "11%", "10%", "9%", "8%", "48%"])
            with gr.Accordion("Prompts the models received (template applied)", open=False):
                prompts = gr.Markdown(prompts_markdown([]))
            with gr.Accordion("Models", open=True):
                models_md = gr.Markdown(pool.status_markdown(), elem_classes="ll-status", elem_id="models")
                with gr.Row(equal_height=True):
                    new_model = gr.Textbox(label="add a model", scale=4,
                                           placeholder="LinguaLIFT checkpoint folder, HF model folder or id, preset (tiny-llama)")
                    add_button = gr.Button("Load", scale=1)
                    refresh = gr.Button("Refresh status", scale=1)

        with gr.Tab("Runs", id="runs"):
            with gr.Row():
                runs_box = gr.Textbox(str(runs_dir or ""), label="Runs folder", scale=4,
                                      placeholder="runs/eval (folders written by `lingualift eval`)")
                open_button = gr.Button("Open", scale=1)
            runs_status = gr.Markdown(elem_classes="ll-status")
            runs_state = gr.State({})
            with gr.Tab("One run"):
                run_pick = gr.Dropdown([], label="run")
                run_info = gr.Markdown(elem_classes="ll-status")
                with gr.Row():
                    accuracy = gr.Dataframe(_table([], ACCURACY_HEADERS), label="Accuracy (from results.json)",
                                            interactive=False, scale=3)
                    chart = gr.Image(label="results.png", type="pil", format="png", interactive=False, scale=2)
                with gr.Row():
                    f_task = gr.Dropdown(["all"], value="all", label="task")
                    f_lang = gr.Dropdown(["all"], value="all", label="language")
                    f_tier = gr.Dropdown(["all", *TIERS, "unranked"], value="all", label="tier")
                    f_status = gr.Radio(list(STATUSES), value="all", label="answer")
                predictions_info = gr.Markdown()
                predictions = gr.Dataframe(_table([], PREDICTION_HEADERS), label="Predictions", interactive=False,
                                           wrap=True, max_height=600)
            with gr.Tab("Compare two runs"):
                with gr.Row():
                    pick_a = gr.Dropdown([], label="run A")
                    pick_b = gr.Dropdown([], label="run B")
                    compare_button = gr.Button("Compare", variant="primary")
                compare_info = gr.Markdown(elem_classes="ll-status")
                difference = gr.Dataframe(_table([], COMPARE_HEADERS), label="B − A per language (paired bootstrap 95% CI)",
                                          interactive=False)
                disagree = gr.Dataframe(_table([], DISAGREE_HEADERS), label="Items where they disagree",
                                        interactive=False, wrap=True, max_height=600)

        # --- Ask handlers ---
        def do_ask(text, gold_text, n_tokens, task, lang):
            answers_list: list[Answer] = []
            try:
                for answers_list in ask(pool, text, gold=gold_text, task=task or "mgsm", lang=lang or "xx",
                                        max_new_tokens=n_tokens):
                    busy = [a for a in answers_list if a.state in ("loading", "generating", "waiting")]
                    status = (f"… {busy[0].state} `{busy[0].model}` ({len(answers_list) - len(busy) + 1}/"
                              f"{len(answers_list)})…" if busy else "")
                    yield status, _table(answer_rows(answers_list), ANSWER_HEADERS), prompts_markdown(answers_list), \
                        pool.status_markdown()
            except Exception as exc:
                yield _message(exc), _table(answer_rows(answers_list), ANSWER_HEADERS), \
                    prompts_markdown(answers_list), pool.status_markdown()
                return
            done = sum(a.state == "done" for a in answers_list)
            failed = len(answers_list) - done
            yield (f"✓ {done} answer(s)" + (f"; ✗ {failed} model(s) failed (see the table)" if failed else ""),
                   _table(answer_rows(answers_list), ANSWER_HEADERS), prompts_markdown(answers_list),
                   pool.status_markdown())

        ask_inputs = [question, gold, tokens, bench_task, bench_lang]
        ask_outputs = [ask_status, answers, prompts, models_md]
        ask_button.click(do_ask, ask_inputs, ask_outputs, api_name="ask")

        def do_add(spec):
            try:
                spec = pool.add(spec)
            except Exception as exc:
                return _message(exc), pool.status_markdown(), gr.update()
            try:
                loaded = pool.get(spec, timeout=120)  # tiny models: seconds; a large one keeps loading
            except FutureTimeout:
                return f"… `{spec}` is still loading; it answers once ready", pool.status_markdown(), ""
            if loaded.error:
                return f"⚠ `{spec}` failed to load: {loaded.error}", pool.status_markdown(), gr.update()
            return f"✓ `{spec}` loaded", pool.status_markdown(), ""

        add_button.click(do_add, [new_model], [ask_status, models_md, new_model], api_name="add_model")
        refresh.click(pool.status_markdown, None, models_md, api_name="models")

        if benchmarks:
            def do_langs(task):
                langs = benchmarks.get(task, [])
                return gr.update(choices=langs, value=langs[0] if langs else None)

            bench_task.change(do_langs, bench_task, bench_lang, api_visibility="private")

            def do_problem(task, lang, index):
                try:
                    example, n = benchmark_problem(task, lang, index, data_dir)
                except Exception as exc:
                    return gr.update(), gr.update(), _message(exc)
                return example.question, example.gold, f"{task}/{lang} problem {int(index or 0)} of 0–{n - 1} loaded"

            load_problem.click(do_problem, [bench_task, bench_lang, bench_index], [question, gold, ask_status],
                               api_name="load_problem")

        # --- Runs handlers ---
        def do_open(folder):
            try:
                runs = find_runs(folder)
            except Exception as exc:
                empty = gr.update(choices=[], value=None)
                return _message(exc), {}, empty, empty, empty
            labels = list(runs)
            state = {label: str(path) for label, path in runs.items()}
            return (f"{len(labels)} run(s) in `{folder}`", state, gr.update(choices=labels, value=labels[0]),
                    gr.update(choices=labels, value=labels[0]),
                    gr.update(choices=labels, value=labels[1] if len(labels) > 1 else labels[0]))

        open_button.click(do_open, [runs_box], [runs_status, runs_state, run_pick, pick_a, pick_b], api_name="open_runs")
        runs_box.submit(do_open, [runs_box], [runs_status, runs_state, run_pick, pick_a, pick_b],
                        api_visibility="private")

        def view_of(state, label) -> RunView:
            if not label or label not in (state or {}):
                raise LinguaLiftError("pick a run first (open a runs folder above)")
            return open_run(state[label])

        def do_show(state, label):
            try:
                view = view_of(state, label)
            except Exception as exc:
                return (_message(exc), _table([], ACCURACY_HEADERS), None, gr.update(choices=["all"], value="all"),
                        gr.update(choices=["all"], value="all"), "", _table([], PREDICTION_HEADERS))
            info = [f"**{label}**: model `{view.run_config.get('model', '?')}`, {len(view.records)} predictions",
                    *[f"⚠ {n}" for n in view.notices]]
            rows = accuracy_rows(view.results) if view.results else []
            image = None
            if view.chart:
                from PIL import Image

                with Image.open(view.chart) as img:
                    image = img.convert("RGB")
            tasks = ["all", *sorted({r["task"] for r in view.records})]
            langs = ["all", *order_by_tier(sorted({r["lang"] for r in view.records}))]
            shown = view.records
            return ("\n\n".join(info), _table(rows, ACCURACY_HEADERS), image, gr.update(choices=tasks, value="all"),
                    gr.update(choices=langs, value="all"), _shown_note(len(shown), len(view.records)),
                    _table(prediction_rows(shown), PREDICTION_HEADERS))

        run_pick.change(do_show, [runs_state, run_pick],
                        [run_info, accuracy, chart, f_task, f_lang, predictions_info, predictions],
                        api_name="show_run")

        def do_filter(state, label, task, lang, tier, status):
            try:
                view = view_of(state, label)
                shown = filter_records(view.records, task=task, lang=lang, tier=tier, status=status)
            except Exception as exc:
                return _message(exc), _table([], PREDICTION_HEADERS)
            return _shown_note(len(shown), len(view.records)), _table(prediction_rows(shown), PREDICTION_HEADERS)

        filter_inputs = [runs_state, run_pick, f_task, f_lang, f_tier, f_status]
        for i, control in enumerate((f_task, f_lang, f_tier, f_status)):
            control.change(do_filter, filter_inputs, [predictions_info, predictions],
                           api_name="filter_predictions" if i == 0 else None,
                           api_visibility="public" if i == 0 else "private")

        def do_compare(state, label_a, label_b):
            try:
                if label_a == label_b:
                    raise LinguaLiftError("pick two different runs to compare")
                result = compare_runs(view_of(state, label_a), view_of(state, label_b))
            except Exception as exc:
                return _message(exc), _table([], COMPARE_HEADERS), _table([], DISAGREE_HEADERS)
            info = [f"A = **{label_a}**, B = **{label_b}**; {len(result.disagreements)} shared item(s) answered "
                    "differently" + (f" (first {MAX_ROWS} shown)" if len(result.disagreements) > MAX_ROWS else ""),
                    *[f"Note: {n}" for n in result.notices]]
            return ("\n\n".join(info), _table(result.rows, COMPARE_HEADERS),
                    _table(result.disagreements[:MAX_ROWS], DISAGREE_HEADERS))

        compare_button.click(do_compare, [runs_state, pick_a, pick_b], [compare_info, difference, disagree],
                             api_name="compare")

        if runs_dir:
            app.load(do_open, [runs_box], [runs_status, runs_state, run_pick, pick_a, pick_b],
                     api_visibility="private")
    return app


def _shown_note(shown: int, total: int) -> str:
    more = f"; the first {MAX_ROWS} are listed, filter to narrow" if shown > MAX_ROWS else ""
    return f"{shown} of {total} predictions match the filters{more}"


def launch(app, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page locally (no share link, no analytics, no server-side rendering: works offline)."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "Consolas", "monospace"])
    app.queue(default_concurrency_limit=1)
    options = dict(server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False,
                   prevent_thread_lock=not block, show_error=False, quiet=not block, theme=theme, css=CSS,
                   footer_links=["api"])
    for attempt in range(3):
        try:
            return app.launch(**options)
        except ValueError as exc:
            # Gradio probes its own page with a 3 s timeout and gives up; on a saturated machine the
            # first page render can take longer than that, so try again before failing.
            if "localhost is not accessible" not in str(exc) or attempt == 2:
                raise
            logger.warning("the page did not answer Gradio's start-up probe in time; retrying")
            app.close()
