"""Which llama.cpp precision may be the default: answers against HF fp32 on a fixed question set.

Evaluates one model greedily on the same 200 questions (MGSM + MMWP, 10 languages x 10 problems each)
with the HF backend in fp32 and with the llama.cpp backend in every precision, through `lingualift eval`
(resumable run folders under --out), then compares each precision with HF fp32 item by item: agreement of
the extracted answers, and the paired accuracy difference with a 95% bootstrap interval (items resampled
together for both runs). The rule (docs/performance.md): the default is the fastest precision with
agreement >= 97% and an interval containing zero.

    PYTHONPATH=src .venv/bin/python scripts/llamacpp_precision.py --model qwen2.5-coder-0.5b \
        --prompt-template chat --out runs/precision-qwen

`--reference RUN` compares with the predictions of an existing fp32 run of the same model and settings
instead of running HF fp32 (its run.json must say fp32; the items compared are those both runs have).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lingualift.io import write_json

LANGS = "bn,de,en,es,fr,ja,ru,sw,te,th"  # in both MGSM and MMWP; high, medium and low resource
TASKS = "mgsm,mmwp"
PRECISIONS = ("q8_0", "f16", "f32")  # fastest first: the first that passes the rule is the default


def evaluate(model: str, out: Path, backend: str, precision: str | None, args) -> float:
    """Run (or resume) one evaluation; returns its wall time in seconds."""
    command = [sys.executable, "-m", "lingualift", "eval", "--model", model, "--tasks", TASKS, "--langs", LANGS,
               "--limit", str(args.limit), "--max-new-tokens", str(args.max_new_tokens), "--offline", "--no-progress",
               "--out", str(out), "--backend", backend]
    if args.prompt_template:
        command += ["--prompt-template", args.prompt_template]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    command += ["--precision", precision] if precision else ["--dtype", "float32"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def records(run: Path) -> dict[tuple[str, str, str], dict]:
    """(task, language, item id) -> prediction record of a run folder."""
    out = {}
    for path in sorted((run / "predictions").glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            out[(path.parent.name, path.stem, str(record["id"]))] = record
    return out


def compare(reference: dict, other: dict, n_bootstrap: int = 10000, seed: int = 0) -> dict:
    shared = sorted(set(reference) & set(other))
    same = np.array([reference[k]["extracted"] == other[k]["extracted"] for k in shared])
    delta = np.array([float(other[k]["correct"]) - float(reference[k]["correct"]) for k in shared])
    draws = delta[np.random.default_rng(seed).integers(0, len(shared), size=(n_bootstrap, len(shared)))].mean(1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"items": len(shared), "agreement": float(same.mean()), "accuracy": float(np.mean(
        [other[k]["correct"] for k in shared])), "reference_accuracy": float(np.mean([reference[k]["correct"]
                                                                                     for k in shared])),
            "difference": float(delta.mean()), "ci95": [float(low), float(high)],
            "passes": bool(same.mean() >= 0.97 and low <= 0 <= high)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-template")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=10, help="problems per task and language (10: 200 questions)")
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--reference", help="an existing fp32 run folder to compare with (default: run HF fp32)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.reference:
        generation = json.loads((Path(args.reference) / "run.json").read_text(encoding="utf-8"))["generation"]
        if generation["dtype"] != "float32" or generation["do_sample"]:
            parser.error(f"--reference {args.reference}: not a greedy fp32 run ({generation})")
        seconds, reference_name = {}, f"{generation['backend']} float32 ({args.reference})"
        reference = records(Path(args.reference))
    else:
        seconds = {"hf float32": evaluate(args.model, out / "hf-fp32", "hf", None, args)}
        reference_name, reference = "hf float32", records(out / "hf-fp32")
    rows = {}
    for precision in args.precisions.split(","):
        seconds[f"llamacpp {precision}"] = evaluate(args.model, out / f"llamacpp-{precision}", "llamacpp",
                                                    precision, args)
        rows[precision] = {**compare(reference, records(out / f"llamacpp-{precision}")),
                           "seconds": seconds[f"llamacpp {precision}"]}
        print(precision, json.dumps(rows[precision]), flush=True)
    default = next((p for p in args.precisions.split(",") if rows[p]["passes"]), None)
    report = {"model": args.model, "reference": reference_name, "tasks": TASKS, "langs": LANGS, "limit": args.limit,
              "max_new_tokens": args.max_new_tokens, "seconds": seconds, "precisions": rows,
              "default": default}
    write_json(out / "precision.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
