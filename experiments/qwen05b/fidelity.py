"""Issue 28, items 1 and 4: the fidelity measure on Qwen2.5-Coder-0.5B-Instruct and the warm-started bridge.

Rows (each `lingualift.eval.fidelity.measure_fidelity`, MMWP, the same questions):
  reference          Qwen reads the question as text (chat template)
  warmstart          e5-small -> mlp (input_norm, output_scale embedding_rms) -> Qwen, lexical warm start on
                     512 English GSM8K training questions, step 0 (no LM training), soft prompt alone
  warmstart_digits   the same weights, the encoder reading one position per digit (`encoder_split_digits`)

Full reports (restatements included: MMWP's text is not ours to republish) go to runs/qwen05b/fidelity/<row>/;
the scores (fidelity.json / .md) are copied to experiments/qwen05b/results/fidelity/<row>.{json,md}, and
summary.md compares the rows, with paired bootstrap differences for the digit option.

    PYTHONPATH=src python experiments/qwen05b/fidelity.py [--rows reference,warmstart,warmstart_digits]
        [--langs en,bn,te,sw] [--limit 16] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from lingualift.eval.extraction import numbers_in_text
from lingualift.eval.fidelity import measure_fidelity, write_fidelity_report
from lingualift.eval.report import markdown_table
from lingualift.eval.runner import percentile_interval
from lingualift.io import iter_jsonl, read_json, write_json
from lingualift.paths import find_data_dir

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "fidelity"
RUNS = Path("runs") / "qwen05b" / "fidelity"
ROWS = ("reference", "warmstart", "warmstart_digits")
ENCODER, LLM = "multilingual-e5-small", "qwen2.5-coder-0.5b"
WARM_START_TEXTS = 512


_WARM_STARTED: dict = {}  # the warm-started model, built once for both bridge rows


def bridge(split_digits: bool):
    from lingualift.inference.generators import BridgeGenerator
    from lingualift.model.modeling import LinguaLiftModel
    from lingualift.model.warmstart import lexical_warm_start

    if not _WARM_STARTED:
        model = LinguaLiftModel.from_components(
            ENCODER, LLM, "mlp", alignment_kwargs={"input_norm": True, "output_scale": "embedding_rms"}, seed=0,
            prompt_template="chat", encoder_max_length=192)
        train = find_data_dir(None) / "gsm8k" / "train.jsonl"
        texts = [row["question"] for _, row in zip(range(WARM_START_TEXTS), iter_jsonl(train))]
        _WARM_STARTED.update(model=model, stats=lexical_warm_start(model, texts, seed=0))
    model = _WARM_STARTED["model"]
    model.config.encoder_split_digits = split_digits
    name = "warmstart_digits" if split_digits else "warmstart"
    return BridgeGenerator(model, prompt_template="chat", name=name), _WARM_STARTED["stats"]


def measure(row: str, args) -> None:
    started = time.time()
    if row == "reference":
        from lingualift.inference.generators import load_generator

        generator, extra = load_generator(LLM, prompt_template="chat"), {}
    else:
        generator, stats = bridge(row == "warmstart_digits")
        extra = {"warm_start": stats, "warm_start_texts": f"first {WARM_START_TEXTS} GSM8K train questions"}
    report = measure_fidelity(generator, task="mmwp", langs=args.langs, limit=args.limit,
                              max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    report["row"], report["seconds"] = row, round(time.time() - started, 1)
    report.update(extra)
    paths = write_fidelity_report(report, RUNS / row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for kind in ("json", "md"):
        shutil.copyfile(paths[kind], RESULTS / f"{row}.{kind}")


def paired(items_a: list[dict], items_b: list[dict], score: str, seed: int = 0) -> dict:
    """Mean of A − B over the items both score, with a paired 95% bootstrap interval."""
    b = {item["id"]: item[score] for item in items_b if item[score] is not None}
    delta = np.array([item[score] - b[item["id"]] for item in items_a if item[score] is not None and item["id"] in b])
    draws = delta[np.random.default_rng(seed).integers(0, len(delta), size=(1000, len(delta)))].mean(1)
    return {"n": len(delta), "difference": float(delta.mean()), "ci95": percentile_interval(draws)}


def summary() -> None:
    reports = {row: read_json(RESULTS / f"{row}.json") for row in ROWS if (RESULTS / f"{row}.json").is_file()}
    langs = list(next(iter(reports.values()))["languages"])
    lines = ["# Fidelity on MMWP: Qwen2.5-Coder-0.5B-Instruct reading the text vs the warm-started bridge\n",
             "numbers = share of the question's numbers restated exactly (%), chrF against the English question "
             "(0–100); 95% bootstrap intervals. Written by `experiments/qwen05b/fidelity.py`.\n"]
    rows = []
    for row, report in reports.items():
        for lang in langs:
            entry = report["languages"][lang]
            rows.append([row, lang, entry["n"], f"{100 * entry['numbers']:.1f} [{100 * entry['numbers_ci95'][0]:.1f}, "
                         f"{100 * entry['numbers_ci95'][1]:.1f}]", f"{100 * entry['all_numbers']:.1f}",
                         f"{entry['chrf']:.1f} [{entry['chrf_ci95'][0]:.1f}, {entry['chrf_ci95'][1]:.1f}]"])
        for tier, entry in report["tiers"].items():
            rows.append([row, f"**{tier}**", "", f"{100 * entry['numbers']:.1f}", f"{100 * entry['all_numbers']:.1f}",
                         f"{entry['chrf']:.1f}"])
    lines.append(markdown_table(["row", "language", "n", "numbers %", "all numbers %", "chrF"], rows, "llrrrr"))
    if {"warmstart", "warmstart_digits"} <= set(reports):
        items = {row: list(iter_jsonl(RUNS / row / "fidelity_items.jsonl")) for row in ("warmstart", "warmstart_digits")}
        diff_rows, differences = [], {}
        for lang in langs:
            a = [i for i in items["warmstart_digits"] if i["lang"] == lang]
            b = [i for i in items["warmstart"] if i["lang"] == lang]
            differences[lang] = {score: paired(a, b, score) for score in ("numbers", "chrf")}
            n, c = differences[lang]["numbers"], differences[lang]["chrf"]
            diff_rows.append([lang, n["n"], f"{100 * n['difference']:+.1f} [{100 * n['ci95'][0]:+.1f}, {100 * n['ci95'][1]:+.1f}]",
                              f"{c['difference']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"])
        lines.append("\n## One encoder position per digit: warmstart_digits − warmstart (paired 95% bootstrap)\n")
        lines.append(markdown_table(["language", "n", "numbers (points)", "chrF"], diff_rows, "lrrr"))
        write_json(RESULTS / "digits_difference.json", differences)
    (RESULTS / "summary.md").write_text("\n".join(lines), encoding="utf-8")


def parallel_check() -> None:
    """Are MGSM and MMWP parallel by row? Per language: the share of rows with the English row's gold answer and
    with the English row's numbers (as `numbers_in_text` reads them) -> results/fidelity/parallel_check.{json,md}."""
    from collections import Counter

    from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES, load_examples

    checks, rows = {}, []
    for task, langs in (("mgsm", MGSM_LANGUAGES), ("mmwp", MMWP_LANGUAGES)):
        english = load_examples(task, "en")
        for lang in langs:
            examples = load_examples(task, lang)
            if len(examples) != len(english):
                raise SystemExit(f"{task} {lang}: {len(examples)} rows, en {len(english)}")
            gold = float(np.mean([a.gold == b.gold for a, b in zip(examples, english)]))
            numbers = float(np.mean([Counter(numbers_in_text(a.question)) == Counter(numbers_in_text(b.question))
                                     for a, b in zip(examples, english)]))
            checks.setdefault(task, {})[lang] = {"rows": len(examples), "same_gold": gold, "same_numbers": numbers}
            rows.append([task, lang, len(examples), f"{100 * gold:.1f}", f"{100 * numbers:.1f}"])
    write_json(RESULTS / "parallel_check.json", checks)
    table = markdown_table(["task", "language", "rows", "gold answer = English row's %",
                            "numbers = English row's %"], rows, "llrrr")
    (RESULTS / "parallel_check.md").write_text(
        "# MGSM and MMWP are parallel by row\n\nWritten by `experiments/qwen05b/fidelity.py --parallel-check`.\n\n"
        + table, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--langs", default="en,bn,te,sw")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--parallel-check", action="store_true", help="only check that the files are parallel by row")
    args = parser.parse_args()
    args.langs = args.langs.split(",")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parallel_check:
        parallel_check()
        return 0
    if not args.summary_only:
        for row in args.rows.split(","):
            measure(row, args)
    summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
