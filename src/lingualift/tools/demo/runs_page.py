"""The "Runs" page: browse one evaluation run (its accuracy table, chart and predictions) and compare two
runs item by item with paired bootstrap intervals.

Run views read `results.json` as written by `lingualift eval` / `score` (never re-computed here) and the
prediction files read-only: a run that is still being written shows what it has, and a half-written last
line is skipped rather than truncated (`evaluation.read_done` would truncate it). The page searches only
inside its runs root (`--runs`): a typed folder is resolved (`..` and symlinks included) and refused when it
leads out, and the search below it is bounded in depth and in the number of runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from lingualift.errors import LinguaLiftError
from lingualift.eval.report import ci_text, order_by_tier, pct
from lingualift.eval.runner import paired_differences
from lingualift.eval.tasks import TIERS, tier_of
from lingualift.io import read_json
from lingualift.tools.demo.common import MAX_ROWS, first_line, message, table

STATUSES = ("all", "correct", "wrong", "no answer")
MAX_SEARCH_DEPTH = 4  # folder levels searched below the opened folder (runs/eval/<model>/<config> fits)
MAX_RUNS = 200  # the search stops after this many runs
MAX_PREDICTION_BYTES = 256 * 2**20  # one prediction file (a full MGSM language is under 1 MiB)


# --- evaluation runs -------------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_folder(root: str | Path, folder: str | Path | None) -> Path:
    """`folder` (relative to `root`, or absolute; empty: the root itself) resolved, and refused unless it
    lies inside the root."""
    root = Path(root).expanduser().resolve()
    raw = str(folder or "").strip()
    path = (root / Path(raw).expanduser()).resolve() if raw else root
    if not _inside(path, root):
        raise LinguaLiftError(f"{raw}: outside the runs folder {root}; this page only browses runs inside it "
                              "(start it with --runs DIR to browse another one)")
    if not path.is_dir():
        raise LinguaLiftError(f"runs folder not found: {raw or root}")
    return path


def _is_run(path: Path, root: Path) -> bool:
    predictions = path / "predictions"
    if predictions.is_dir():
        return _inside(predictions.resolve(), root)
    return (path / "run.json").is_file() and (path / "results.json").is_file()


def find_runs(root: str | Path, folder: str | Path | None = None) -> dict[str, Path]:
    """Evaluation run folders in `folder` (itself included) down to MAX_SEARCH_DEPTH levels, at most MAX_RUNS
    of them, by their path relative to it; `folder` must lie inside `root` (see `resolve_folder`)."""
    root_path = Path(root).expanduser().resolve()
    start = resolve_folder(root_path, folder)
    runs = {}
    for current, dirs, _ in os.walk(start):  # symlinked folders are not entered
        path = Path(current)
        depth = len(path.relative_to(start).parts)
        dirs.sort()
        if depth >= MAX_SEARCH_DEPTH:
            dirs.clear()
        if _is_run(path, root_path):
            label = path.relative_to(start).as_posix()
            runs[start.name if label == "." else label] = path
            dirs[:] = [d for d in dirs if d != "predictions"]
            if len(runs) >= MAX_RUNS:
                break
    if not runs:
        raise LinguaLiftError(
            f"{start}: no evaluation runs in this folder or {MAX_SEARCH_DEPTH} levels below it (a run is a folder "
            "with predictions/<task>/<lang>.jsonl, written by `lingualift eval --out DIR`)"
        )
    return dict(sorted(runs.items()))


_NUMBER = (int, float)
RECORD_FIELDS = {  # a prediction record's fields (as `lingualift eval` writes them) and the types the page reads
    "id": (str, int), "output": (str,), "gold": (str, *_NUMBER), "correct": (bool,),
    "extracted": (str, *_NUMBER, type(None)), "prompt": (str,), "task": (str,), "lang": (str,),
}
REQUIRED_FIELDS = ("id", "output", "gold", "correct")


def _record_problem(record) -> str | None:
    """Why a parsed line is not a prediction record the page can show (None: it is one)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a prediction record (an object)"
    missing = [key for key in REQUIRED_FIELDS if key not in record]
    if missing:
        return f"prediction record lacks {', '.join(missing)}"
    for key, types in RECORD_FIELDS.items():
        if key in record and not isinstance(record[key], types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            return f"prediction record field {key!r} is {json.dumps(record[key])[:40]}, not a {wanted}"
    return None


def read_records(path: Path) -> tuple[list[dict], bool]:
    """The records of one prediction file, read-only; also whether a half-written last line was skipped.

    Not `io.iter_jsonl`: a run in progress ends with a half-written line, which is skipped here, not an error."""
    size = path.stat().st_size
    if size > MAX_PREDICTION_BYTES:
        raise LinguaLiftError(f"{path}: {size / 2**20:,.0f} MiB, more than the page reads from one prediction file "
                              f"({MAX_PREDICTION_BYTES // 2**20} MiB); not a `lingualift eval` prediction file?")
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    records = []
    for line_number, line in enumerate(data[:keep].split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise LinguaLiftError(f"{path}:{line_number}: not a JSON prediction record; this run is corrupt "
                                  "(delete the file and re-run `lingualift eval` to recompute it)") from None
        problem = _record_problem(record)
        if problem:
            raise LinguaLiftError(f"{path}:{line_number}: {problem}; this run is corrupt (delete the file and "
                                  "re-run `lingualift eval` to recompute it)")
        records.append(record)
    return records, keep < len(data)


def _is_number(value) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _is_interval(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)


def _is_summary(entry, *keys: str) -> bool:
    """An accuracy summary the tables can format: a number `accuracy`, a two-number `ci95`, and `keys`."""
    return (isinstance(entry, dict) and _is_number(entry.get("accuracy")) and _is_interval(entry.get("ci95"))
            and all(key in entry for key in keys))


def _check_results(results, path: Path) -> dict:
    """Fail with one line (not a KeyError or TypeError deep in the page) when results.json is not `summarize`'s
    output: every number the tables format is checked here."""
    problem = None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        problem = "has no 'tasks' object"
    else:
        for name, task in results["tasks"].items():
            if not isinstance(task, dict) or not all(isinstance(task.get(k), dict) for k in ("languages", "tiers")):
                problem = f"task {name!r} lacks languages / tiers / overall"
            elif not _is_summary(task.get("overall")):
                problem = f"task {name!r}: overall lacks a numeric accuracy / ci95"
            else:
                bad_tier = next((tier for tier, group in task["tiers"].items() if not _is_summary(group)), None)
                bad_lang = next((lang for lang, entry in task["languages"].items()
                                 if not _is_summary(entry, "n") or not isinstance(entry["n"], int)), None)
                if bad_tier is not None:
                    problem = f"{name}/{bad_tier} (tier) lacks a numeric accuracy / ci95"
                elif bad_lang is not None:
                    problem = f"{name}/{bad_lang} lacks n / accuracy / ci95 (numbers)"
            if problem:
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


def _shown_note(shown: int, total: int) -> str:
    more = f"; the first {MAX_ROWS} are listed, filter to narrow" if shown > MAX_ROWS else ""
    return f"{shown} of {total} predictions match the filters{more}"


def _chart_image(view: RunView) -> tuple[object | None, list[str]]:
    """The run's results.png as an RGB image, or none and a notice when the file is not a readable image (the
    tables do not depend on it)."""
    if view.chart is None:
        return None, []
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(view.chart) as img:
            return img.convert("RGB"), []
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        return None, [f"`{view.chart}` is not a readable image ({first_line(exc)}); the chart is left out "
                      f"(`lingualift score {view.path}` redraws it)."]


def build_runs_tab(app, *, runs_root: str | Path, initial: str | Path | None = None) -> None:
    """The "Runs" tab inside an open `gr.Blocks` (`app`): folders are searched inside `runs_root` only;
    `initial` (a folder inside it) is listed as the page opens."""
    import gradio as gr

    root = Path(runs_root).expanduser().resolve()
    with gr.Tab("Runs", id="runs"):
        with gr.Row():
            runs_box = gr.Textbox(str(initial or ""), label=f"Runs folder inside {root} (empty: all of it)", scale=4,
                                  placeholder="eval (a folder written by `lingualift eval`)")
            open_button = gr.Button("Open", scale=1)
        runs_status = gr.Markdown(elem_classes="ll-status")
        runs_state = gr.State({})
        with gr.Tab("One run"):
            run_pick = gr.Dropdown([], label="run")
            run_info = gr.Markdown(elem_classes="ll-status")
            with gr.Row():
                accuracy = gr.Dataframe(table([], ACCURACY_HEADERS), label="Accuracy (from results.json)",
                                        interactive=False, scale=3)
                chart = gr.Image(label="results.png", type="pil", format="png", interactive=False, scale=2)
            with gr.Row():
                f_task = gr.Dropdown(["all"], value="all", label="task")
                f_lang = gr.Dropdown(["all"], value="all", label="language")
                f_tier = gr.Dropdown(["all", *TIERS, "unranked"], value="all", label="tier")
                f_status = gr.Radio(list(STATUSES), value="all", label="answer")
            predictions_info = gr.Markdown()
            predictions = gr.Dataframe(table([], PREDICTION_HEADERS), label="Predictions", interactive=False,
                                       wrap=True, max_height=600)
        with gr.Tab("Compare two runs"):
            with gr.Row():
                pick_a = gr.Dropdown([], label="run A")
                pick_b = gr.Dropdown([], label="run B")
                compare_button = gr.Button("Compare", variant="primary")
            compare_info = gr.Markdown(elem_classes="ll-status")
            difference = gr.Dataframe(table([], COMPARE_HEADERS), label="B − A per language (paired bootstrap 95% CI)",
                                      interactive=False)
            disagree = gr.Dataframe(table([], DISAGREE_HEADERS), label="Items where they disagree",
                                    interactive=False, wrap=True, max_height=600)

    def do_open(folder):
        try:
            runs = find_runs(root, folder)
        except Exception as exc:
            empty = gr.update(choices=[], value=None)
            return message(exc), {}, empty, empty, empty
        labels = list(runs)
        state = {label: str(path) for label, path in runs.items()}
        where = f"`{folder}`" if str(folder or "").strip() else f"`{root}`"
        capped = f" (the search stops at {MAX_RUNS}: open a subfolder for the others)" if len(labels) >= MAX_RUNS else ""
        return (f"{len(labels)} run(s) in {where}{capped}", state, gr.update(choices=labels, value=labels[0]),
                gr.update(choices=labels, value=labels[0]),
                gr.update(choices=labels, value=labels[1] if len(labels) > 1 else labels[0]))

    open_outputs = [runs_status, runs_state, run_pick, pick_a, pick_b]
    open_button.click(do_open, [runs_box], open_outputs, api_name="open_runs")
    runs_box.submit(do_open, [runs_box], open_outputs, api_visibility="private")
    if initial is not None:
        app.load(do_open, [runs_box], open_outputs, api_visibility="private")

    def view_of(state, label) -> RunView:
        if not label or label not in (state or {}):
            raise LinguaLiftError("pick a run first (open a runs folder above)")
        return open_run(state[label])

    def do_show(state, label):
        try:
            view = view_of(state, label)
            rows = accuracy_rows(view.results) if view.results else []
            image, chart_notice = _chart_image(view)
        except Exception as exc:
            return (message(exc), table([], ACCURACY_HEADERS), None, gr.update(choices=["all"], value="all"),
                    gr.update(choices=["all"], value="all"), "", table([], PREDICTION_HEADERS))
        info = [f"**{label}**: model `{view.run_config.get('model', '?')}`, {len(view.records)} predictions",
                *[f"⚠ {n}" for n in [*view.notices, *chart_notice]]]
        tasks = ["all", *sorted({r["task"] for r in view.records})]
        langs = ["all", *order_by_tier(sorted({r["lang"] for r in view.records}))]
        return ("\n\n".join(info), table(rows, ACCURACY_HEADERS), image, gr.update(choices=tasks, value="all"),
                gr.update(choices=langs, value="all"), _shown_note(len(view.records), len(view.records)),
                table(prediction_rows(view.records), PREDICTION_HEADERS))

    run_pick.change(do_show, [runs_state, run_pick],
                    [run_info, accuracy, chart, f_task, f_lang, predictions_info, predictions], api_name="show_run")

    def do_filter(state, label, task, lang, tier, status):
        try:
            view = view_of(state, label)
            shown = filter_records(view.records, task=task, lang=lang, tier=tier, status=status)
        except Exception as exc:
            return message(exc), table([], PREDICTION_HEADERS)
        return _shown_note(len(shown), len(view.records)), table(prediction_rows(shown), PREDICTION_HEADERS)

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
            return message(exc), table([], COMPARE_HEADERS), table([], DISAGREE_HEADERS)
        info = [f"A = **{label_a}**, B = **{label_b}**; {len(result.disagreements)} shared item(s) answered "
                "differently" + (f" (first {MAX_ROWS} shown)" if len(result.disagreements) > MAX_ROWS else ""),
                *[f"Note: {n}" for n in result.notices]]
        return ("\n\n".join(info), table(result.rows, COMPARE_HEADERS),
                table(result.disagreements[:MAX_ROWS], DISAGREE_HEADERS))

    compare_button.click(do_compare, [runs_state, pick_a, pick_b], [compare_info, difference, disagree],
                         api_name="compare")
