"""Can the soft prompt carry question content at all? Overfit a handful of examples and track the
teacher-forced NLL of the target given the right question vs a mismatched one (the next item's question).

    python experiments/small/probe.py --name source_lr3e-3 --target source --lr 3e-3 --steps 30

Trains the alignment layer only (encoder and LLM frozen: stage 1), full-batch on `--n-train` GSM8K train
items; every `--eval-every` steps scores the training items and `--n-heldout` other GSM8K train items.
gap = NLL(mismatched) - NLL(right), nats per target token: > 0 means the soft prompt tells the LLM which
question it is reading. Reference: SmolLM2 reading the question itself as text (same targets).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lingualift.data.instructions import PromptTarget, read_instructions
from lingualift.data.gsm8k import english_solution
from lingualift.inference.generators import CausalLMGenerator
from stage1 import build_stage1, truncate_targets


def per_token(scores):
    return sum(s.nll for s in scores) / max(sum(s.tokens for s in scores), 1)


def scores(generator, questions, targets, batch_size=8):
    shifted = questions[1:] + questions[:1]
    right = per_token(generator.target_nll(questions, targets, batch_size=batch_size))
    wrong = per_token(generator.target_nll(shifted, targets, batch_size=batch_size))
    none = per_token(generator.target_nll([None] * len(questions), targets, batch_size=batch_size))
    return {"right": right, "mismatched": wrong, "none": none, "gap": wrong - right, "gain": none - right}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--target", choices=("response", "source"), default="response")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-heldout", type=int, default=8)
    parser.add_argument("--alignment", default="mlp")
    parser.add_argument("--no-input-norm", action="store_true")
    parser.add_argument("--chat-template", action="store_true")
    parser.add_argument("--max-target-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="../shared/data/gsm8k/train.jsonl")
    parser.add_argument("--out", default="experiments/small/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    records = list(read_instructions(args.data, limit=1000 + args.n_heldout))
    def item(r):
        target = english_solution(r["answer"]) if args.target == "response" else r["question"]
        return r["question"], target
    train = [item(r) for r in records[: args.n_train]]
    heldout = [item(r) for r in records[1000 : 1000 + args.n_heldout]]

    model, collator, generator = build_stage1(args)

    def truncated(pairs):
        return truncate_targets(model.llm_tokenizer, [t for _, t in pairs], args.max_target_length)

    reference = {}
    llm_reader = CausalLMGenerator(model.llm, model.llm_tokenizer, prompt_template="plain", name="smollm2", device="cpu",
                                   llm_prefix=model.config.llm_prefix, llm_suffix=model.config.llm_suffix)
    for split, pairs in (("train", train), ("heldout", heldout)):
        reference[split] = scores(llm_reader, [q for q, _ in pairs], truncated(pairs))
    print("reference (LLM reads the question):", json.dumps(reference), flush=True)

    optimizer = torch.optim.AdamW([p for p in model.alignment.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=0.0)
    batch = collator([PromptTarget(q, t) for q, t in train])
    curve = []
    started = time.perf_counter()

    def evaluate(step, loss):
        model.eval()
        with torch.no_grad():
            row = {"step": step, "loss": loss, "seconds": round(time.perf_counter() - started, 1)}
            for split, pairs in (("train", train), ("heldout", heldout)):
                row[split] = scores(generator, [q for q, _ in pairs], [t for _, t in pairs])
        curve.append(row)
        print(json.dumps(row), flush=True)

    evaluate(0, None)
    for step in range(1, args.steps + 1):
        model.alignment.train()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.alignment.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step, loss.item())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args), "reference_llm_reads_question": reference, "curve": curve}
    (out / f"probe_{args.name}.json").write_text(json.dumps(result, indent=2))
    print("wrote", out / f"probe_{args.name}.json")


if __name__ == "__main__":
    main()
