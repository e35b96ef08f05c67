"""`lingualift generate --model PATH "question" …`: answers from any model the harness can load."""

from __future__ import annotations

import sys


def configure(parser) -> None:
    parser.add_argument("questions", nargs="*", help="questions (default: one per line on stdin)")
    parser.add_argument("--model", required=True, help="checkpoint dir, hub id or preset")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--stop", action="append", default=None,
                        help="stop string (repeatable; '\\n' escapes are understood)")
    parser.add_argument("--prompt-template", help="override the model's prompt template")


def run(args) -> int:
    from lingualift.errors import LinguaLiftError
    from lingualift.inference.generators import load_generator

    from lingualift.commands.eval import check_positive, check_sampling, check_stop

    check_positive(args.max_new_tokens, "--max-new-tokens")
    check_positive(args.batch_size, "--batch-size")
    check_sampling(args.sample, args.temperature, args.top_p)
    stop = check_stop(args.stop)
    questions = args.questions or [line.strip() for line in sys.stdin if line.strip()]
    if not questions:
        raise LinguaLiftError("no questions given (pass them as arguments or one per line on stdin)")
    generator = load_generator(args.model, prompt_template=args.prompt_template)
    answers = generator.generate(questions, max_new_tokens=args.max_new_tokens, stop=list(stop) if stop else None,
                                 do_sample=args.sample, temperature=args.temperature, top_p=args.top_p,
                                 batch_size=args.batch_size, progress=len(questions) > args.batch_size)
    for question, answer in zip(questions, answers):
        print(f"### {question}\n{answer.strip()}\n")
    return 0
