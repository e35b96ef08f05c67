"""Fidelity against example-passes for one stage-1 run (issue 28, item 2): more passes that do not raise fidelity
are not progress.

Reads `lingualift fidelity` reports of a run's exported step checkpoints and its final model, and the run's
`train_log.jsonl` for the example-passes each step had seen; writes
`results/fidelity/<name>_curve.{json,md,png}` (English and the low-tier mean: share of numbers, chrF).

    PYTHONPATH=src python experiments/qwen05b/fidelity_curve.py runs/qwen05b/lingualift_align_lexical_digits_2k \
        --reports step78=runs/qwen05b/fidelity/lexical_digits_2k_step78,... --name lexical_digits_2k
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lingualift.eval.report import markdown_table  # noqa: E402
from lingualift.io import atomic_write, iter_jsonl, read_json, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fidelity"


def example_passes(run: Path, label: str) -> int:
    """`final` is the last logged step; `stepN` is scaled from the first logged step at or after N (the log keeps
    every `log_every`-th step): exact for `lexical` and `lm`, whose steps all take one batch size."""
    log = list(iter_jsonl(run / "train_log.jsonl"))
    if label == "final":
        return log[-1]["example_passes"]
    step = int(label.removeprefix("step"))
    row = next(row for row in log if row["step"] >= step)
    return round(row["example_passes"] * step / row["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the stage-1 run's training.output_dir")
    parser.add_argument("--reports", required=True, help="comma-separated LABEL=FOLDER (label stepN or final)")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    points = []
    for item in args.reports.split(","):
        label, folder = item.split("=", 1)
        report = read_json(Path(folder) / "fidelity.json")
        tiers = report["tiers"]
        points.append({"label": label, "example_passes": example_passes(args.run, label),
                       "en_numbers": tiers["high"]["numbers"], "en_numbers_ci95": tiers["high"]["numbers_ci95"],
                       "en_chrf": tiers["high"]["chrf"], "low_numbers": tiers["low"]["numbers"],
                       "low_numbers_ci95": tiers["low"]["numbers_ci95"], "low_chrf": tiers["low"]["chrf"],
                       "low_languages": tiers["low"]["languages"], "n_per_language": report["languages"]["en"]["n"]})
    points.sort(key=lambda point: point["example_passes"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.name}_curve.json", {"run": str(args.run), "points": points})

    def ci(values) -> str:
        return f"[{100 * values[0]:.1f}, {100 * values[1]:.1f}]"

    rows = [[p["label"], f"{p['example_passes']:,}", f"{100 * p['en_numbers']:.1f} {ci(p['en_numbers_ci95'])}",
             f"{p['en_chrf']:.1f}", f"{100 * p['low_numbers']:.1f} {ci(p['low_numbers_ci95'])}", f"{p['low_chrf']:.1f}"]
            for p in points]
    table = markdown_table(["checkpoint", "example-passes", "en numbers %", "en chrF",
                            f"low tier ({', '.join(points[0]['low_languages'])}) numbers %", "low tier chrF"], rows)
    with atomic_write(RESULTS / f"{args.name}_curve.md") as handle:
        handle.write(f"# Fidelity against example-passes: {args.run.name}\n\nMMWP, first {points[0]['n_per_language']} "
                     "questions per language, restated through the soft prompt alone (`lingualift fidelity`); 95% "
                     f"bootstrap intervals. Written by `experiments/qwen05b/fidelity_curve.py`.\n\n{table}\n")

    figure, (numbers, chrf) = plt.subplots(1, 2, figsize=(10, 4))
    passes = [p["example_passes"] for p in points]
    for key, label in (("en", "English"), ("low", "low tier (mean)")):
        numbers.plot(passes, [100 * p[f"{key}_numbers"] for p in points], marker="o", label=label)
        chrf.plot(passes, [p[f"{key}_chrf"] for p in points], marker="o", label=label)
    for axis, title in ((numbers, "question numbers restated (%)"), (chrf, "chrF to the English question")):
        axis.set_xscale("log")
        axis.set_xlabel("stage-1 example-passes")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Fidelity through the soft prompt: {args.run.name}")
    figure.tight_layout()
    with atomic_write(RESULTS / f"{args.name}_curve.png", "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)


if __name__ == "__main__":
    main()
