"""Evaluate one model of the small experiment: MGSM (11 languages) and MMWP (the same 11 languages: high,
medium and low tiers) with bootstrap CIs, plus the teacher-forced transfer diagnostic (gain, mismatched
control and transfer ratio per language). `evaluate` pools the generation over both tasks and all languages."""

import argparse
import json
from pathlib import Path

import torch

from lingualift.eval.diagnose import transfer_diagnostic
from lingualift.eval.runner import GenerationSettings, evaluate
from lingualift.inference.generators import load_generator
from lingualift.io import write_json
from lingualift.eval.report import write_eval_report
from lingualift.eval.tasks import MGSM_LANGUAGES, get_task

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
results = evaluate(generator, [(get_task(task), langs) for task in ("mgsm", "mmwp")], args.out, data_dir=args.data_dir,
                   limit=args.limit, settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
write_eval_report(results, args.out)
diag = transfer_diagnostic(generator, data_dir=args.data_dir, langs=langs, limit=args.diag_limit, batch_size=8)
write_json(Path(args.out) / "transfer.json", diag)
results_dir = Path(args.results)
write_json(results_dir / f"eval_{args.name}.json", results)
write_json(results_dir / f"transfer_{args.name}.json", diag)
print(json.dumps({t: v["overall"] for t, v in results["tasks"].items()}))
