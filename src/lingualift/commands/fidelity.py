"""`lingualift fidelity`: the LLM restates each question in English through the soft prompt alone; numbers and chrF."""

from __future__ import annotations


def configure(parser) -> None:
    from lingualift.commands.eval import add_model_arguments
    from lingualift.eval.fidelity import FIDELITY_TASKS

    add_model_arguments(parser, batch_size=16, prompt_template=False)  # the restatement frame is the prompt
    parser.set_defaults(limit=16)
    parser.add_argument("--task", default="mmwp", choices=FIDELITY_TASKS,
                        help="parallel benchmark whose English row is the chrF reference (default mmwp)")
    parser.add_argument("--langs", default="en", help="comma-separated languages (default en)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="restatement length cap (default 96)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/fidelity/<model name>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    from pathlib import Path

    from lingualift.commands.eval import check_positive
    from lingualift.eval.fidelity import FIDELITY_FILES, fidelity_markdown, measure_fidelity, write_fidelity_report
    from lingualift.eval.tasks import get_task
    from lingualift.inference.generators import load_generator
    from lingualift.io import check_output_dir
    from lingualift.model.components import check_device
    from lingualift.schema import parse_languages

    for value, flag in ((args.limit, "--limit"), (args.batch_size, "--batch-size"),
                        (args.max_new_tokens, "--max-new-tokens"), (args.bootstrap, "--bootstrap")):
        check_positive(value, flag)
    check_device(args.device)
    langs = parse_languages(args.langs, "--langs", get_task(args.task).languages)
    if args.out:
        check_output_dir(args.out, FIDELITY_FILES, "--out")
    generator = load_generator(args.model, device=args.device, dtype=args.dtype)
    out_dir = Path(args.out or Path("runs") / "fidelity" / generator.name)
    check_output_dir(out_dir, FIDELITY_FILES, "--out")
    report = measure_fidelity(generator, task=args.task, langs=langs, data_dir=args.data_dir, limit=args.limit,
                              max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              n_bootstrap=args.bootstrap, seed=args.seed, download=not args.offline,
                              progress=not args.no_progress)
    write_fidelity_report(report, out_dir)
    print(fidelity_markdown(report))
    return 0
