"""Training data shared by every method of the small experiment (GSM8K train, never GSM8K test).

english.jsonl: the first N GSM8K train rows, solutions cleaned ("The answer is: N", no <<calc>> marks).
codeswitched.jsonl: the same rows with prompt words replaced from MUSE dictionaries (ratio 0.5, one
language per example among de es fr ru zh ja th bn; sw and te have no MUSE dictionary).
"""

import argparse
from pathlib import Path

from lingualift.data.codeswitch import CodeSwitchSettings, codeswitch_records
from lingualift.data.instructions import read_instructions
from lingualift.data.gsm8k import english_solution
from lingualift.io import write_jsonl

LANGS = ["de", "es", "fr", "ru", "zh", "ja", "th", "bn"]

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--examples", type=int, default=400)
parser.add_argument("--ratio", type=float, default=0.5)
args = parser.parse_args()
out = Path(args.out)
english = [{"question": r["question"], "answer": english_solution(r["answer"])}
           for r in read_instructions(Path(args.data_dir) / "gsm8k" / "train.jsonl", limit=args.examples)]
write_jsonl(out / "english.jsonl", english)
settings = CodeSwitchSettings(lexicons={l: f"muse:{l}" for l in LANGS}, ratio=args.ratio, seed=0)
count = write_jsonl(out / "codeswitched.jsonl", codeswitch_records(english, settings, args.data_dir))
print(f"wrote {len(english)} English and {count} code-switched examples to {out}")
