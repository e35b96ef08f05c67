"""Evaluate one model of the small experiment: MGSM (11 languages) and MMWP (the same 11 languages: high,
medium and low tiers) with bootstrap CIs, plus the teacher-forced transfer diagnostic (gain, mismatched
control and transfer ratio per language). Generation is pooled over languages (one length-sorted pass)."""

import argparse
import json
from pathlib import Path

import torch

from lingualift.eval.diagnose import transfer_diagnostic
from lingualift.eval.runner import GenerationSettings, evaluate
from lingualift.inference.generators import load_generator
from lingualift.io import write_json
from lingualift.inference.pooled import PooledGenerator
from lingualift.eval.report import write_eval_report
from lingualift.eval.tasks import MGSM_LANGUAGES, get_task, load_examples

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--name", required=True)
parser.add_argument("--data-dir", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--results", required=True)
parser.add_argument("--limit", type=int, default=4)
parser.add_argument("--max-new-tokens", type=int, default=64)
parser.add_argument("--diag-limit", type=int, default=10)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)

generator = load_generator(args.model)
generator.name = args.name
langs = list(MGSM_LANGUAGES)
pooled = PooledGenerator(generator)
questions = [ex.question for task in ("mgsm", "mmwp") for lang in langs
             for ex in load_examples(task, lang, args.data_dir, args.limit)]
pooled.prefetch(list(dict.fromkeys(questions)), max_new_tokens=args.max_new_tokens,
                stop=list(get_task("mgsm").stop), batch_size=16, progress=True)
results = None
for task in ("mgsm", "mmwp"):
    part = evaluate(pooled, [(get_task(task), langs)], args.out, data_dir=args.data_dir, limit=args.limit,
                    settings=GenerationSettings(max_new_tokens=args.max_new_tokens), progress=False)
    results = part if results is None else {**results, "tasks": {**results["tasks"], **part["tasks"]}}
write_eval_report(results, args.out)
diag = transfer_diagnostic(generator, data_dir=args.data_dir, langs=langs, limit=args.diag_limit, batch_size=8)
write_json(Path(args.out) / "transfer.json", diag)
results_dir = Path(args.results)
write_json(results_dir / f"eval_{args.name}.json", results)
write_json(results_dir / f"transfer_{args.name}.json", diag)
print(json.dumps({t: v["overall"] for t, v in results["tasks"].items()}))
