"""Stage-1 throughput on this machine: example-passes per CPU hour of each objective (issue 28, item 2).

Builds the real `Trainer` of a stage-1 config (Qwen2.5-Coder-0.5B + e5-small, fp32, CPU) and times its own
optimiser steps on its own batches (`Trainer.optimizer_step`, the loop's code path), rounds interleaved so a
busy moment of the shared machine hits every variant alike. The lexical warm start is switched off here: it is
a one-time cost of a run (~3 min), not a per-step one.

    PYTHONPATH=src python experiments/qwen05b/stage1_throughput.py --data-dir ../shared/data --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lingualift.io import atomic_write, write_json
from lingualift.schema import read_yaml
from lingualift.train.config import config_from_dict
from lingualift.train.loop import Trainer

HERE = Path(__file__).parent
LANGUAGES = ("de", "es", "fr", "ru", "zh", "ja", "th", "bn")  # stage 1's MUSE lexicons (experiments/small/prepare_data.py)
# name -> (config, overrides, what it is)
VARIANTS = {
    "lm_response": ("lingualift_align", [], "the current stage 1: LLM pass, GSM8K solution targets (64 tokens), "
                                           "batch 4"),
    "lm_source": ("lingualift_align_mixed", ["training.objective=lm"],
                  "LLM pass, short targets: restate the English question (data.target source, <= 96 tokens), batch 4"),
    "lexical": ("lingualift_align_lexical", ["training.lexical_cache=false"],
                "lexical objective: encoder + alignment layer, batch 64"),
    # The cache is built once per run: one encoder pass over the data (here the first 640 rows, to start quickly).
    "lexical_cached": ("lingualift_align_lexical", ["training.lexical_cache=true", "data.max_examples=640"],
                       "lexical objective, encoder states cached: alignment layer only, batch 64"),
}


def build(name: str, data_dir: str, workdir: Path) -> Trainer:
    config_name, overrides, _ = VARIANTS[name]
    overrides = overrides + ["model.warm_start=null", f"training.output_dir={workdir / name}",
                             "training.max_steps=100000", "training.save_every=null"]
    path = HERE / "configs" / f"{config_name}.yaml"
    raw = read_yaml(path, overrides)
    if raw["data"]["train"].startswith("runs/"):  # the old config's file: GSM8K's first 800 rows, code-switched
        raw["data"].update(train=str(Path(data_dir) / "gsm8k" / "train.jsonl"), max_examples=800,
                           codeswitch={"lexicons": {lang: f"muse:{lang}" for lang in LANGUAGES}, "ratio": 0.5})
    return Trainer(config_from_dict(raw, str(path), data_dir=data_dir))


def timed_steps(trainer: Trainer, steps: int) -> list[float]:
    """Seconds per optimiser step (collation included), on the trainer's next `steps` batches."""
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.model.train()
    trainer.keep_frozen_in_eval()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        objective, earlier = trainer.schedule.at(trainer.step)
        trainer.optimizer_step([trainer._micro_batch(objective, earlier)], trainable, objective)
        times.append(time.perf_counter() - started)
        trainer.step += 1
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="lm_response,lm_source,lexical", help="which of VARIANTS to time")
    parser.add_argument("--steps", default="lm_response=3,lm_source=3,lexical=8,lexical_cached=8",
                        help="timed steps per round")
    parser.add_argument("--out", default=str(HERE / "results" / "stage1_throughput"))
    parser.add_argument("--workdir", default="runs/qwen05b/throughput")
    args = parser.parse_args()
    steps = {key: int(value) for key, value in (item.split("=") for item in args.steps.split(","))}
    torch.manual_seed(0)
    variants = args.variants.split(",")
    trainers = {name: build(name, args.data_dir, Path(args.workdir)) for name in variants}
    for name, trainer in trainers.items():  # warm-up step: optimiser state, allocator, lazy initialisation
        timed_steps(trainer, 1)
    times: dict[str, list[float]] = {name: [] for name in variants}
    load = []
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name in order:
            load.append(os.getloadavg()[0])
            times[name] += timed_steps(trainers[name], steps[name])
            print(f"round {round_index + 1} {name}: {statistics.median(times[name]):.2f} s/step so far", flush=True)
    results = {}
    for name, trainer in trainers.items():
        objective = trainer.schedule.primary
        median = statistics.median(times[name])
        results[name] = {"what": VARIANTS[name][2], "batch_size": objective.batch_size, "step_s_median": median,
                         "step_s": times[name], "example_passes_per_hour": 3600 * objective.batch_size / median}
    base_name = "lm_response" if "lm_response" in results else variants[0]
    base = results[base_name]["example_passes_per_hour"]
    for name, result in results.items():
        result[f"speed_vs_{base_name}"] = result["example_passes_per_hour"] / base
    if {"lexical", "lm_source"} <= set(results):  # lingualift_align_mixed.yaml: lm_every - 1 lexical, one lm step
        mixed = trainers["lm_source"].config.training.lm_every
        lexical, lm = results["lexical"], results["lm_source"]
        cycle_s = (mixed - 1) * lexical["step_s_median"] + lm["step_s_median"]
        cycle_passes = (mixed - 1) * lexical["batch_size"] + lm["batch_size"]
        results[f"mixed_lm_every_{mixed}"] = {
            "what": f"derived: {mixed - 1} lexical steps + 1 lm_source step",
            "example_passes_per_hour": 3600 * cycle_passes / cycle_s,
            f"speed_vs_{base_name}": 3600 * cycle_passes / cycle_s / base,
        }
    summary = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "note": "shared machine (other engineers' jobs ran alongside); 1-minute load average sampled "
                       "before each timed block", "load_average": load, "rounds": args.rounds, "results": results}
    write_json(Path(args.out).with_suffix(".json"), summary)
    lines = [f"| variant | batch | s / step (median) | example-passes / hour | × {base_name} |",
             "|---|---:|---:|---:|---:|"]
    for name, result in results.items():
        step = f"{result['step_s_median']:.2f}" if "step_s_median" in result else "–"
        lines.append(f"| {name}: {result['what']} | {result.get('batch_size', '–')} | {step} | "
                     f"{result['example_passes_per_hour']:,.0f} | {result[f'speed_vs_{base_name}']:.1f} |")
    with atomic_write(Path(args.out).with_suffix(".md")) as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"load_average": load}))


if __name__ == "__main__":
    main()
