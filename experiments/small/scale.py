"""Stage-1 learning curves at scale: does question content reach the LLM on *unseen* items?

    python experiments/small/scale.py --name linear_lr1e-3 --alignment linear --lr 1e-3 --steps 300

Trains the alignment layer only (stage 1: encoder and LLM frozen) for one pass over distinct GSM8K train
rows (never repeated, so any held-out gap is generalisation, not memorisation) and every `--eval-every`
steps scores MGSM items (GSM8K test, never trained on) in `--eval-langs`: the teacher-forced NLL of the
English solution given the right question, a mismatched one (the next item's) and none.
gap = NLL(mismatched) - NLL(right) in nats per target token.

Knobs the issue asks about: batch size, learning rate, alignment layer, target, target length, code-switched
prompts (`--codeswitch-ratio`), the soft prompt inside the chat template, and `--warm-start lexical`
(`lingualift.model.warmstart`: before any LM step, fit the alignment layer so each encoder state maps onto the
LLM's input embedding of the token at the same character offset, on English GSM8K questions not used for
training or evaluation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from lingualift.data.codeswitch import CodeSwitcher, CodeSwitchSettings
from lingualift.data.instructions import PromptTarget, read_instructions
from lingualift.data.gsm8k import english_solution
from lingualift.eval.diagnose import MGSM_LANGUAGES, _gsm8k_solutions
from lingualift.inference.generators import CausalLMGenerator
from lingualift.io import write_json
from lingualift.eval.tasks import load_examples
from lingualift.model.warmstart import lexical_warm_start
from stage1 import build_stage1, truncate_targets

CODESWITCH_LANGS = ["de", "es", "fr", "ru", "zh", "ja", "th", "bn"]
WARM_START_ROWS = range(7000, 7473)  # GSM8K train rows used only to fit the lexical warm start


def gap_scores(generator, questions, targets, batch_size=16, n_bootstrap=1000) -> dict:
    """Per-token NLLs (right / mismatched / no question), the gap and gain, and a paired-bootstrap 95% CI of the gap."""
    shifted = questions[1:] + questions[:1]
    nll = {}
    for condition, prompts in (("right", questions), ("mismatched", shifted), ("none", [None] * len(questions))):
        scores = generator.target_nll(prompts, targets, batch_size=batch_size)
        nll[condition] = np.array([s.nll for s in scores])
        tokens = np.array([s.tokens for s in scores])
    samples = np.random.default_rng(0).integers(0, len(questions), size=(n_bootstrap, len(questions)))
    boot_gap = (nll["mismatched"][samples].sum(1) - nll["right"][samples].sum(1)) / tokens[samples].sum(1)
    row = {condition: float(values.sum() / tokens.sum()) for condition, values in nll.items()}
    return {**row, "gap": row["mismatched"] - row["right"], "gain": row["none"] - row["right"],
            "gap_ci95": [float(x) for x in np.percentile(boot_gap, [2.5, 97.5])]}


def norms(model, collator, questions) -> dict:
    """Mean L2 norm of soft-prompt vectors vs the LLM's input embeddings of the same questions."""
    with torch.no_grad():
        batch = collator([PromptTarget(q, None) for q in questions])
        soft, mask = model.soft_prompt(batch["encoder_input_ids"], batch["encoder_attention_mask"])
        ids = model.llm_tokenizer(questions, add_special_tokens=False).input_ids
        embedded = model.llm.get_input_embeddings()(torch.tensor([i for row in ids for i in row]))
    return {"soft_prompt": float(soft[mask.bool()].norm(dim=-1).mean()),
            "llm_embeddings": float(embedded.norm(dim=-1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--llm", default="default", help="LLM preset or directory (the encoder is always e5-small)")
    parser.add_argument("--alignment", default="mlp", choices=("mlp", "linear"))
    parser.add_argument("--output-scale", default=None,
                        help="alignment output_scale: a number or 'embedding_rms' (default: none, i.e. 1)")
    parser.add_argument("--no-input-norm", action="store_true")
    parser.add_argument("--warm-start", choices=("none", "lexical"), default="none")
    parser.add_argument("--warm-start-lr", type=float, default=1e-3)
    parser.add_argument("--warm-start-steps", type=int, default=300)
    parser.add_argument("--target", choices=("response", "source", "both"), default="response")
    parser.add_argument("--max-target-length", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-items", type=int, default=24)
    parser.add_argument("--eval-langs", default="en,de")
    parser.add_argument("--final-items", type=int, default=32, help="MGSM items per language for the final evaluation")
    parser.add_argument("--final-langs", default=",".join(MGSM_LANGUAGES),
                        help="languages of the final evaluation (default: all MGSM languages)")
    parser.add_argument("--final-reference", action="store_true", help="also score the text-reading LLM per language")
    parser.add_argument("--codeswitch-ratio", type=float, default=0.0, help="0 = plain English prompts")
    parser.add_argument("--chat-template", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="experiments/small/results/scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data_dir = Path(args.data_dir)

    model, collator, generator = build_stage1(args)

    langs = args.eval_langs.split(",")
    n_items = max(args.eval_items, args.final_items)
    mgsm = {l: [ex.question for ex in load_examples("mgsm", l, data_dir, n_items, False)] for l in MGSM_LANGUAGES}
    tok = model.llm_tokenizer
    truncated = truncate_targets(tok, _gsm8k_solutions(data_dir, n_items, False), args.max_target_length)
    eval_questions = {l: mgsm[l][: args.eval_items] for l in langs}
    reader = CausalLMGenerator(model.llm, tok, prompt_template="plain", name=args.llm, device="cpu",
                               llm_prefix=model.config.llm_prefix, llm_suffix=model.config.llm_suffix)
    # The text-reading reference depends only on the LLM, its affixes and the items: computed once, then cached.
    key = hashlib.sha256(json.dumps([args.llm, model.config.llm_prefix, model.config.llm_suffix, langs,
                                     args.eval_items, args.max_target_length]).encode()).hexdigest()[:16]
    cache = Path("runs") / "scale_reference" / f"{key}.json"
    if cache.is_file():
        reference = json.loads(cache.read_text(encoding="utf-8"))
    else:
        reference = {l: gap_scores(reader, eval_questions[l], truncated[: args.eval_items]) for l in langs}
        write_json(cache, reference)
    print("reference (LLM reads the question):", json.dumps({l: round(r["gap"], 3) for l, r in reference.items()}),
          flush=True)

    records = list(read_instructions(data_dir / "gsm8k" / "train.jsonl", limit=WARM_START_ROWS.stop))
    warm_start = None
    if args.warm_start == "lexical":
        warm_start = lexical_warm_start(model, [records[i]["question"] for i in WARM_START_ROWS],
                                        steps=args.warm_start_steps, learning_rate=args.warm_start_lr)
        print("warm start:", json.dumps(warm_start), flush=True)
    n_train = args.steps * args.batch_size
    if n_train > WARM_START_ROWS.start:
        parser.error(f"--steps x --batch-size = {n_train} > {WARM_START_ROWS.start} distinct training rows")
    switcher = None
    if args.codeswitch_ratio > 0:
        settings = CodeSwitchSettings(lexicons={l: f"muse:{l}" for l in CODESWITCH_LANGS},
                                      ratio=args.codeswitch_ratio, seed=0)
        switcher = CodeSwitcher.from_settings(settings, data_dir)

    def example(index: int) -> PromptTarget:
        record = {"question": records[index]["question"], "answer": english_solution(records[index]["answer"])}
        prompt = switcher.switch(record, index)["question"] if switcher else record["question"]
        target = {"response": record["answer"], "source": record["question"],
                  "both": record["question"] + "\n" + record["answer"]}[args.target]
        return PromptTarget(prompt, target)

    optimizer = torch.optim.AdamW([p for p in model.alignment.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=0.0)
    curve, started, train_seconds = [], time.perf_counter(), 0.0

    def evaluate(step: int, loss: float | None) -> None:
        model.eval()
        with torch.no_grad():
            row = {"step": step, "examples_seen": step * args.batch_size, "loss": loss,
                   "train_seconds": round(train_seconds, 1), "norms": norms(model, collator, eval_questions["en"][:8])}
            row.update({l: gap_scores(generator, eval_questions[l], truncated[: args.eval_items]) for l in langs})
        curve.append(row)
        print(json.dumps({"step": step, "loss": loss, "train_s": row["train_seconds"],
                          **{f"gap_{l}": round(row[l]["gap"], 4) for l in langs}}), flush=True)

    evaluate(0, None)
    running = []
    for step in tqdm(range(1, args.steps + 1), desc=args.name, mininterval=30):
        tick = time.perf_counter()
        model.alignment.train()
        batch = collator([example((step - 1) * args.batch_size + i) for i in range(args.batch_size)])
        loss = model(**batch, targets_only=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.alignment.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - tick
        running.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step, sum(running) / len(running))
            running = []
    model.eval()
    with torch.no_grad():  # every MGSM language, more items: the numbers the write-up quotes per language
        final_langs = args.final_langs.split(",")
        final = {l: gap_scores(generator, mgsm[l][: args.final_items], truncated[: args.final_items])
                 for l in final_langs}
        final_reference = {l: gap_scores(reader, mgsm[l][: args.final_items], truncated[: args.final_items])
                           for l in final_langs} if args.final_reference else None
    print("final gaps:", json.dumps({l: round(r["gap"], 4) for l, r in final.items()}), flush=True)
    weights = Path("runs") / Path(args.out).parent.parent.name / "scale" / f"{args.name}.alignment.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.alignment.state_dict().items()}, str(weights))
    result = {"args": vars(args), "warm_start": warm_start, "reference_llm_reads_question": reference,
              "curve": curve, "final": final, "final_reference_llm_reads_question": final_reference,
              "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json(Path(args.out) / f"{args.name}.json", result)
    print("wrote", Path(args.out) / f"{args.name}.json")


if __name__ == "__main__":
    main()
