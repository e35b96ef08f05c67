"""Summaries of the Qwen experiment (see README.md): probe tables, the zero-shot template choice, and the main
comparison (`results/summary.json`, paired differences, truncation rates, chart).

    python experiments/qwen05b/summarize.py probe | templates | best-template | main | keep
    python experiments/qwen05b/summarize.py retire METHOD MODEL
"""

from __future__ import annotations

import json
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lingualift.checkpoint import path_fingerprint  # noqa: E402
from lingualift.eval.extraction import find_numbers, normalize_digits  # noqa: E402
from lingualift.eval.runner import load_run, paired_differences, summarize  # noqa: E402
from lingualift.eval.tasks import get_task, load_examples, tier_of  # noqa: E402
from lingualift.io import atomic_write, iter_jsonl, write_json, write_jsonl  # noqa: E402
from lingualift.eval.report import markdown_table  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RUNS = Path("runs/qwen05b/eval")
# Every method is compared (paired) with the LLM alone in either template and with (b), the same English data
# without a bridge: the baseline a bridge has to beat. A baseline is compared with the ones before it.
BASELINES = ("zeroshot", "chat_zeroshot", "sft")
METHODS = {  # name in results/ -> what it is (the letters)
    "zeroshot": "(a) Qwen zero-shot, reads the question",
    "chat_zeroshot": "(a) in Qwen's chat template, the one the trained methods use (a control, not a method)",
    "sft": "(b) Qwen + English LoRA SFT, reads the question",
    "langbridge": "(c) LangBridge (linear bridge, English data, one stage)",
    "lingualift_s1": "(d) LinguaLIFT, stage 1 only",
    "lingualift": "(d) LinguaLIFT, stage 1 + stage 2 (LoRA)",
    "mindmerger_s1": "(e) LinguaLIFT + llm_sees_query (MindMerger-style), stage 1 only",
    "mindmerger": "(e) LinguaLIFT + llm_sees_query (MindMerger-style), stage 1 + stage 2 (LoRA)",
    "lingualift_s1_digits": "(d') LinguaLIFT stage 1, lexical objective over code-switched text into 20 languages "
                            "(99,840 example-passes), one encoder position per digit; soft prompt only",
    "mindmerger_s1_digits": "(e') (d')'s alignment + llm_sees_query, 200 augmentation example-passes through the LLM",
}
# Round 2 (issue 28): each new recipe paired with the round-1 method it replaces, on the problems both answered.
SUCCESSORS = {"lingualift_s1_digits": "lingualift_s1", "mindmerger_s1_digits": "mindmerger_s1"}


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def probe() -> None:
    rows = []
    for path in sorted((RESULTS / "probe").glob("*.json")):
        run = _load(path)
        reference = run.get("reference_llm_reads_question") or {}
        ws = run.get("warm_start") or {}
        rows.append([path.stem, run["args"].get("steps"), run["args"].get("lr"), run["args"].get("output_scale") or 1,
                     f"{ws.get('nearest_is_paired_token', float('nan')):.3f}" if ws else "-",
                     *(_gap(run, l) for l in ("en", "de", "zh", "th", "bn", "te", "sw")),
                     " ".join(f"{l} {reference[l]['gap']:+.2f}" for l in sorted(reference))])
    table = markdown_table(["run", "steps", "lr", "output scale", "warm-start nearest = paired",
                            "gap en", "de", "zh", "th", "bn", "te", "sw", "reference (Qwen reads the text, 24 items)"],
                           rows)
    _write_text(RESULTS / "probe_summary.md", "Content gap (nats/token, mismatched - right question) after each run, "
                 "16-24 MGSM items per language (see each JSON's args); – = not measured.\n\n" + table + "\n")
    print(table)


def _gap(run: dict, lang: str) -> str:
    """The run's final gap in `lang` (after its last step), from the final table when it was scored there with
    at least as many items as the curve, else from the curve's last point; "–" when not measured."""
    final, last = run["final"].get(lang), run["curve"][-1].get(lang)
    use = final if final and run["args"]["final_items"] >= run["args"]["eval_items"] else last
    return f"{use['gap']:+.3f}" if use else "–"


def best_template() -> None:
    """The zero-shot template with the higher mean MGSM accuracy (chat when the check has not run)."""
    scores = {}
    for template in ("paper", "chat"):
        run = _load(RESULTS / f"eval_zeroshot_{template}.json")
        if run:
            scores[template] = run["tasks"]["mgsm"]["overall"]["accuracy"]
    print(max(scores, key=scores.get) if len(scores) == 2 else "chat")


def templates() -> None:
    """Part 2: zero-shot Qwen with the paper template vs its chat template, per language, with the paired
    difference (chat - paper) and how often an output used the whole token budget."""
    from transformers import AutoTokenizer

    from lingualift.tools.assets import qwen_05b_dir

    tokenizer = AutoTokenizer.from_pretrained(qwen_05b_dir())
    runs = {t: load_run(RUNS / f"zeroshot_{t}") for t in ("paper", "chat")}
    budget = json.loads((RUNS / "zeroshot_paper" / "run.json").read_text())["generation"]["max_new_tokens"]
    overall = {t: _load(RESULTS / f"eval_zeroshot_{t}.json")["tasks"]["mgsm"]["overall"]["accuracy"] for t in runs}
    difference = paired_differences(runs["chat"], runs["paper"])["tasks"]["mgsm"]
    rows = []
    for lang in difference["languages"]:
        accuracy = {t: sum(r["correct"] for r in runs[t]["mgsm"][lang]) / len(runs[t]["mgsm"][lang]) for t in runs}
        cut = {t: truncation_rate(runs[t]["mgsm"][lang], budget, tokenizer) for t in runs}
        d = difference["languages"][lang]
        rows.append([lang, len(runs["paper"]["mgsm"][lang]), f"{100 * accuracy['paper']:.1f}",
                     f"{100 * accuracy['chat']:.1f}", f"{100 * d['difference']:+.1f} [{100 * d['ci95'][0]:+.1f}, "
                     f"{100 * d['ci95'][1]:+.1f}]", f"{100 * cut['paper']:.0f}% / {100 * cut['chat']:.0f}%"])
    d = difference["overall"]
    rows.append(["**overall**", "", f"{100 * overall['paper']:.1f}", f"{100 * overall['chat']:.1f}",
                 f"{100 * d['difference']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]", ""])
    table = markdown_table(["language", "n", "paper %", "chat %", "chat - paper (paired 95% CI)",
                            f"outputs at the {budget}-token budget (paper / chat)"], rows)
    _write_text(RESULTS / "templates_summary.md", "Zero-shot Qwen2.5-Coder-0.5B-Instruct on MGSM (first 8 problems per "
                 "language, greedy, vLLM backend): the paper's Alpaca prompt vs the model's chat template.\n\n"
                 + table + "\n")
    print(table)


def truncation_rate(records: list[dict], max_new_tokens: int, tokenizer) -> float:
    """Share of outputs that used the whole token budget (the answer may be cut off)."""
    lengths = [len(ids) for ids in tokenizer([r["output"] for r in records], add_special_tokens=False).input_ids]
    return sum(length >= max_new_tokens - 1 for length in lengths) / max(len(lengths), 1)


@lru_cache(maxsize=None)
def _questions(task: str, lang: str) -> dict[str, str]:
    """Question text by id, read once for all methods."""
    return {example.id: example.question for example in load_examples(task, lang)}


def numbers_reproduced(task: str, lang: str, records: list[dict]) -> float | None:
    """Mean share of a question's numbers that its answer repeats (native digits read as ASCII): whether the
    numbers reached the LLM at all, which a soft prompt can fail at while it carries the question's gist. None
    when no question has a number. Reads the questions from the data directory (predictions keep none)."""
    questions = _questions(task, lang)
    shares = []
    for record in records:
        asked = set(find_numbers(normalize_digits(questions[record["id"]])))
        if asked:
            shares.append(len(asked & set(find_numbers(normalize_digits(record["output"])))) / len(asked))
    return sum(shares) / len(shares) if shares else None


def accuracy_on_other_questions(task: str, records: list[dict]) -> float | None:
    """Mean accuracy of each answer scored against the other problems' gold answers in its language: what the same
    answers would score if they had nothing to do with their question. A model that answers "The answer is 10."
    to anything scores this much, not zero, so an accuracy is only evidence of reading the question above it.
    None below two problems."""
    scorer = get_task(task)
    if len(records) < 2:
        return None
    hits = sum(scorer.is_correct(answer["extracted"], other["gold"])
               for i, answer in enumerate(records) for j, other in enumerate(records) if i != j)
    return hits / (len(records) * (len(records) - 1))


def _interval_entry(accuracy: float, ci95: list[float], n: int) -> dict:
    return {"accuracy": accuracy, "ci_low": ci95[0], "ci_high": ci95[1], "n": n}


def main_summary() -> None:
    """`summary.json` ({method: {task: {tier or language: {accuracy, ci_low, ci_high, n}}}}; tiers and `overall`
    count languages, languages count problems), `methods.json` (what each method is, its scope, token budget,
    truncation rate per task and the question numbers its answers repeat per language), paired differences to
    each baseline, `summary.md` and the chart.

    Each method's numbers are recomputed from its saved predictions with the library's own statistics
    (`summarize`, `paired_differences`): per pair the first n problems, n the largest of its focus and rest runs
    (MMWP English + low tier: 40; elsewhere 16), so the two evaluation calls merge into one table.
    """
    from transformers import AutoTokenizer

    from lingualift.tools.assets import qwen_05b_dir

    tokenizer = AutoTokenizer.from_pretrained(qwen_05b_dir())
    summary, methods, runs = {}, {}, {}
    for name, label in METHODS.items():
        scopes = [scope for scope in ("focus", "rest") if (RESULTS / f"eval_{name}_{scope}.json").is_file()]
        plan: dict[str, dict[str, int]] = {}
        for scope in scopes:
            for task, block in _load(RESULTS / f"eval_{name}_{scope}.json")["tasks"].items():
                for lang, entry in block["languages"].items():
                    plan.setdefault(task, {})[lang] = max(entry["n"], plan.get(task, {}).get(lang, 0))
        if not plan:
            continue
        saved = load_run(RUNS / name)  # each file in data order: its first n records are the first n problems
        runs[name] = {task: {lang: saved[task][lang][:n] for lang, n in langs.items()} for task, langs in plan.items()}
        results = summarize(runs[name], model=name)
        summary[name] = {}
        for task, block in results["tasks"].items():
            entries = {tier: _interval_entry(v["accuracy"], v["ci95"], len(v["languages"]))
                       for tier, v in block["tiers"].items()}
            overall = block["overall"]
            entries["overall"] = _interval_entry(overall["accuracy"], overall["ci95"], len(overall["languages"]))
            for lang, v in block["languages"].items():
                entries[lang] = _interval_entry(v["accuracy"], v["ci95"], v["n"])
            summary[name][task] = entries
        budget = _load(RUNS / name / "run.json")["generation"]["max_new_tokens"]
        methods[name] = {"label": label, "scope": " + ".join(scopes), "max_new_tokens": budget,
                         "truncation_rate": {task: truncation_rate([r for recs in by_lang.values() for r in recs],
                                                                   budget, tokenizer)
                                             for task, by_lang in runs[name].items()},
                         "numbers_reproduced": {task: {lang: numbers_reproduced(task, lang, records)
                                                       for lang, records in by_lang.items()}
                                                for task, by_lang in runs[name].items()},
                         "accuracy_on_other_questions": {task: {lang: accuracy_on_other_questions(task, records)
                                                                for lang, records in by_lang.items()}
                                                         for task, by_lang in runs[name].items()}}
    write_json(RESULTS / "summary.json", summary)
    write_json(RESULTS / "methods.json", methods)
    differences = {}  # baseline -> method -> paired differences
    for index, baseline in enumerate(BASELINES):
        if baseline in runs:
            differences[baseline] = {name: paired_differences(run, runs[baseline])
                                     for name, run in runs.items() if name not in BASELINES[:index + 1]}
            write_json(RESULTS / f"differences_vs_{baseline}.json", differences[baseline])
    successors = {new: paired_differences(runs[new], runs[old]) for new, old in SUCCESSORS.items()
                  if new in runs and old in runs}
    write_json(RESULTS / "differences_round2.json", successors)
    _write_text(RESULTS / "summary.md", summary_table(summary, methods, differences) + successor_table(successors))
    chart(summary, methods)
    print(json.dumps({name: {task: {t: round(v[t]["accuracy"], 3) for t in ("high", "medium", "low", "overall") if t in v}
                             for task, v in block.items()}
                      for name, block in summary.items()}, indent=1))


def _points(difference: dict) -> str:
    """A paired difference as signed points with its 95% interval: `+2.5 [+0.7, +5.0]`."""
    low, high = difference["ci95"]
    return f"{100 * difference['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def successor_table(successors: dict) -> str:
    """Round 2 against round 1: each new recipe minus the method it replaces, per task and tier (paired)."""
    rows = []
    for new, diff in successors.items():
        for task, block in diff["tasks"].items():
            for tier, entry in [*block["tiers"].items(), ("overall", block["overall"])]:
                n = sum(block["languages"][lang]["n"] for lang in entry["languages"])
                rows.append([new, SUCCESSORS[new], task, tier, n, _points(entry)])
    if not rows:
        return ""
    return ("\nRound 2 against round 1 (`differences_round2.json`): the new recipe minus the method it replaces, "
            "on the problems both answered (round 1: 40 per language), paired 95% CI.\n\n"
            + markdown_table(["recipe", "replaces", "task", "tier", "problems", "points (paired 95% CI)"], rows,
                             align="llllrr"))


def summary_table(summary: dict, methods: dict, differences: dict) -> str:
    """Per method, task and tier: accuracy with its 95% interval, and the paired differences to each baseline."""
    def pct(value: float) -> str:
        return f"{100 * value:.1f}"

    def versus(baseline: str, name: str, task: str, tier: str) -> str:
        task_diff = differences.get(baseline, {}).get(name, {}).get("tasks", {}).get(task, {})
        diff = task_diff.get("overall") if tier == "overall" else task_diff.get("tiers", {}).get(tier)
        return _points(diff) if diff else "-"

    def tier_mean(name: str, key: str, task: str, tier: str) -> str:  # macro mean of a per-language measure
        values = [value for lang, value in methods[name][key][task].items()
                  if value is not None and tier in ("overall", tier_of(lang))]
        return pct(sum(values) / len(values)) if values else "-"

    rows = []
    for name, block in summary.items():
        for task in ("mgsm", "mmwp"):
            for tier in ("high", "medium", "low", "overall"):
                entry = block.get(task, {}).get(tier)
                if entry is None:
                    continue
                rows.append([name, task, tier, entry["n"], f"{pct(entry['accuracy'])} [{pct(entry['ci_low'])}, "
                             f"{pct(entry['ci_high'])}]", *(versus(b, name, task, tier) for b in BASELINES),
                             pct(methods[name]["truncation_rate"][task]),
                             tier_mean(name, "numbers_reproduced", task, tier),
                             tier_mean(name, "accuracy_on_other_questions", task, tier)])
    table = markdown_table(["method", "task", "tier", "languages", "accuracy % [95% CI]",
                            *(f"vs {b}, points (paired 95% CI)" for b in BASELINES),
                            "truncated %", "question numbers in the answer %", "answers scored on other questions %"],
                           rows, align="lll" + "r" * (5 + len(BASELINES)))
    return ("Qwen experiment, main comparison (generated by `summarize.py main` from the saved predictions; tier = "
            "macro average over its languages; MMWP English and low tier: 40 problems per language (round 2's "
            "`*_digits` recipes: 80), elsewhere 16; "
            "`focus` = MMWP English + low tier only so far; question numbers in the answer: the mean share of a "
            "question's numbers its answer repeats, which shows whether the numbers reached the LLM at all; answers "
            "scored on other questions: each answer scored against the other problems' gold answers in its "
            "language, the accuracy of answers that ignore their question; an accuracy near it is guessing).\n\n"
            + "\n".join(f"- `{name}` ({meta['scope']}): {meta['label']}" for name, meta in methods.items())
            + "\n\n" + table)


def chart(summary: dict, methods: dict) -> None:
    """Accuracy per tier, a bar per method; a method keeps its colour and slot in both panels."""
    tiers = ("high", "medium", "low")
    names = list(summary)
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    legend = {}  # method -> (a bar, its label), for one legend over both panels
    for axis, task in zip(axes, ("mgsm", "mmwp")):
        counts = [max((summary[n][task].get(t, {}).get("n", 0) for n in names if task in summary[n]), default=0)
                  for t in tiers]
        for index, name in enumerate(names):
            if task not in summary[name]:
                continue
            # A tier not evaluated yet, or on fewer of its languages than the others (the focus set's English
            # alone in "high"), is left empty (NaN): never drawn as 0%, never a one-language bar among averages.
            cells = [summary[name][task].get(t, {}) for t in tiers]
            cells = [cell if cell.get("n") == count else {} for cell, count in zip(cells, counts)]
            values = [cell.get("accuracy", float("nan")) * 100 for cell in cells]
            lows = [cell.get("ci_low", float("nan")) * 100 for cell in cells]
            highs = [cell.get("ci_high", float("nan")) * 100 for cell in cells]
            xs = [i + (index - (len(names) - 1) / 2) * width for i in range(len(tiers))]
            label = name if "rest" in methods[name]["scope"] else f"{name} (low tier only; its English: summary.md)"
            bars = axis.bar(xs, values, width, color=plt.cm.tab10(index % 10),
                            yerr=[[v - lo for v, lo in zip(values, lows)], [hi - v for v, hi in zip(values, highs)]],
                            capsize=2)
            legend[name] = (bars, label)
        axis.set_xticks(range(len(tiers)), [f"{t}\n({c} language{'s' if c > 1 else ''})" if c else f"{t}\n(not evaluated yet)"
                                            for t, c in zip(tiers, counts)])
        axis.set_title(f"{task.upper()} accuracy by resource tier (95% CI)")
        axis.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    ordered = [legend[name] for name in names if name in legend]
    axes[1].legend([bars for bars, _ in ordered], [label for _, label in ordered], fontsize=8)
    fig.tight_layout()
    path = RESULTS / "summary.png"
    fig.savefig(path.with_suffix(".tmp.png"), dpi=110)
    path.with_suffix(".tmp.png").replace(path)


def keep() -> None:
    """Copy every method's evaluation into results/runs/<name>/, from which a fresh clone restores it: run.json and
    the predictions without their `prompt` field (the MMWP question text is the benchmark's, not ours to
    republish; ids, outputs, extracted and gold answers are all the statistics and a resumed evaluation read)."""
    for name in METHODS:
        source = RUNS / name
        if not (source / "run.json").is_file():
            continue
        target = RESULTS / "runs" / name
        _write_text(target / "run.json", (source / "run.json").read_text(encoding="utf-8"))
        for path in sorted((source / "predictions").rglob("*.jsonl")):
            records = ({key: value for key, value in record.items() if key != "prompt"} for record in iter_jsonl(path))
            write_jsonl(target / path.relative_to(source), records)


def retire(method: str, model: str) -> None:
    """Set aside a method's kept results when they came from another checkpoint than MODEL.

    Checkpoints are not committed, so a new machine trains them again, and across machines retraining need not
    be bit-exact (measured: the same config's loss agreed to ~2e-5, not exactly): greedy answers may then
    differ. Results from the old checkpoint move to results/superseded_retrained/<method>/ (and its run
    folder is deleted), so that the method is evaluated again, focus set included, rather than mixing two
    checkpoints' answers in one table."""
    kept = RESULTS / "runs" / method / "run.json"
    if not kept.is_file() or _load(kept)["model_id"] == path_fingerprint(model):
        return
    target = RESULTS / "superseded_retrained" / method
    shutil.rmtree(target, ignore_errors=True)  # an earlier retraining's leftovers (git history keeps them)
    target.mkdir(parents=True)
    names = [f"eval_{method}_{scope}.{kind}" for scope in ("focus", "rest") for kind in ("json", "log")]
    names += [f"diagnose_{method}.{kind}" for kind in ("json", "md", "log")]
    for path in [RESULTS / "runs" / method, *(RESULTS / name for name in names)]:
        if path.exists():
            path.replace(target / path.name)
    shutil.rmtree(RUNS / method, ignore_errors=True)
    print(f"{method}: {model} is not the checkpoint its kept results came from; they moved to {target}")


if __name__ == "__main__":
    commands = {"probe": probe, "templates": templates, "best-template": best_template, "main": main_summary,
                "keep": keep, "retire": retire}
    command = commands.get(sys.argv[1]) if len(sys.argv) > 1 else None
    arity = 2 if command is retire else 0
    if command is None or len(sys.argv) != 2 + arity:
        print(f"error: usage: summarize.py {' | '.join(n for n in commands if n != 'retire')} | retire METHOD MODEL",
              file=sys.stderr)
        sys.exit(2)
    command(*sys.argv[2:])
