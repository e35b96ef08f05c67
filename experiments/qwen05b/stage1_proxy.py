"""A cheap teacher-forced proxy of stage-1 fidelity: does the soft prompt let Qwen restate the question?

For MGSM item i in language X, the soft prompt of the question in X is followed (as in stage 1 with
`data.target: source`) by the English MGSM question i, teacher-forced. Per language it reports the NLL of the
English question (nats/token) with the right item's soft prompt and with the next item's (mismatched: the
control), their gap, and the share of the English question's digit tokens that are Qwen's top-1 prediction
(`digits top-1`): with one token per digit, this is how many of the question's digits the soft prompt
carries when every earlier token is given. A proxy until the generated-restatement fidelity measure (issue 28,
item 1) is merged; forward passes only, a minute or two per model on two cores.

    PYTHONPATH=src python experiments/qwen05b/stage1_proxy.py MODEL [MODEL …] --data-dir ../shared/data \
        --langs en,de,th,bn,sw,te --limit 24 --out experiments/qwen05b/results/stage1_proxy
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from lingualift.data.collate import BridgeCollator
from lingualift.data.instructions import PromptTarget
from lingualift.data.prompts import format_prompt
from lingualift.eval.tasks import load_examples
from lingualift.io import atomic_write, read_json, write_json
from lingualift.model.modeling import LinguaLiftModel

TARGET_TOKENS = 128


def item_scores(model, collator, prompts: list[str], targets: list[str]) -> list[dict]:
    """Per item: summed NLL, target tokens, digit tokens and digit tokens predicted top-1."""
    examples = [PromptTarget(prompt, target, end_of_sequence=False) for prompt, target in zip(prompts, targets)]
    batch = collator(examples)
    with torch.no_grad():
        output = model(**batch.model_inputs(), targets_only=True)
    logits, labels = output.logits[:, :-1], output["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100,
                                            reduction="none")
    top1 = logits.argmax(-1) == labels
    digits = torch.tensor([[token >= 0 and collator.llm_tokenizer.decode([token]).strip().isdigit()
                            for token in row] for row in labels.tolist()])
    valid = labels != -100
    return [{"nll": float(nll[row][valid[row]].sum()), "tokens": int(valid[row].sum()),
             "digits": int((digits[row] & valid[row]).sum()), "digits_top1": int((digits[row] & top1[row]).sum())}
            for row in range(len(prompts))]


def evaluate(path: str, langs: list[str], data_dir: str, limit: int, batch_size: int) -> dict:
    model = LinguaLiftModel.from_pretrained(path).eval()
    collator = BridgeCollator.for_model(model, max_target_length=TARGET_TOKENS)
    english = [example.question for example in load_examples("mgsm", "en", data_dir, limit)]
    results = {}
    for lang in langs:
        questions = [example.question for example in load_examples("mgsm", lang, data_dir, limit)]
        prompts = [format_prompt(model.config.prompt_template, question) for question in questions]
        right, mismatched = [], []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            right += item_scores(model, collator, prompts[chunk], english[chunk])
            shifted = [english[(i + 1) % len(english)] for i in range(len(english))][chunk]
            mismatched += item_scores(model, collator, prompts[chunk], shifted)
        nll = sum(s["nll"] for s in right) / sum(s["tokens"] for s in right)
        nll_mismatched = sum(s["nll"] for s in mismatched) / sum(s["tokens"] for s in mismatched)
        results[lang] = {"items": len(right), "nll": nll, "nll_mismatched": nll_mismatched,
                         "gap": nll_mismatched - nll,
                         "digits_top1": sum(s["digits_top1"] for s in right) / max(sum(s["digits"] for s in right), 1),
                         "digits_top1_mismatched": sum(s["digits_top1"] for s in mismatched)
                         / max(sum(s["digits"] for s in mismatched), 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="stage-1 checkpoints (final or exported step)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--langs", default="en,de,th,bn,sw,te")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True, help="output path without suffix (.json and .md are written)")
    args = parser.parse_args()
    langs = args.langs.split(",")
    out = Path(args.out)
    summary = read_json(out.with_suffix(".json")) if out.with_suffix(".json").is_file() else {}  # adds models
    for path in args.models:
        summary[path] = evaluate(path, langs, args.data_dir, args.limit, args.batch_size)
        write_json(out.with_suffix(".json"), summary)
        print(path, {lang: round(r["gap"], 3) for lang, r in summary[path].items()}, flush=True)
    lines = ["| model | " + " | ".join(f"{lang} gap / digits top-1" for lang in langs) + " | mean gap |",
             "|---|" + "---:|" * (len(langs) + 1)]
    for path, results in summary.items():
        cells = [f"{results[lang]['gap']:.2f} / {100 * results[lang]['digits_top1']:.0f}%" if lang in results else "–"
                 for lang in langs]
        mean = statistics.mean(results[lang]["gap"] for lang in langs if lang in results)
        lines.append(f"| {path} | " + " | ".join(cells) + f" | {mean:.2f} |")
    with atomic_write(out.with_suffix(".md")) as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
