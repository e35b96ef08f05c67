"""Training data shared by every method of the small experiment (GSM8K train, never GSM8K test).

english.jsonl: the first N GSM8K train rows, solutions cleaned ("The answer is: N", no <<calc>> marks).
codeswitched.jsonl: the same rows with prompt words replaced from MUSE dictionaries (ratio 0.5, one
language per example among de es fr ru zh ja th bn by default; `--langs` and `--induced` add the
languages MUSE lacks, from lexicons induced without parallel data by scripts/lexicons.sh).
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
parser.add_argument("--langs", default=",".join(LANGS),
                    help="code-switching languages (default: the eight of the committed runs)")
parser.add_argument("--induced", default="",
                    help="those of --langs read from induced lexicons (scripts/lexicons.sh), e.g. sw,te,ne,mr,kn")
parser.add_argument("--name", default="codeswitched.jsonl", help="file name of the code-switched data")
args = parser.parse_args()
langs = [l for l in args.langs.split(",") if l]
induced = {l for l in args.induced.split(",") if l}
out = Path(args.out)
english = [{"question": r["question"], "answer": english_solution(r["answer"])}
           for r in read_instructions(Path(args.data_dir) / "gsm8k" / "train.jsonl", limit=args.examples)]
write_jsonl(out / "english.jsonl", english)
settings = CodeSwitchSettings(lexicons={l: f"induced:{l}" if l in induced else f"muse:{l}" for l in langs},
                              ratio=args.ratio, seed=0)
count = write_jsonl(out / args.name, codeswitch_records(english, settings, args.data_dir))
print(f"wrote {len(english)} English and {count} code-switched examples to {out}")
