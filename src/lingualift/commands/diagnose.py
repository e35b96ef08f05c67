"""`lingualift diagnose`: teacher-forced transfer ratio (MGSM × GSM8K) and soft-prompt retrieval (MMWP)."""

from __future__ import annotations


def configure(parser) -> None:
    from lingualift.commands.eval import add_model_arguments

    add_model_arguments(parser, batch_size=8)
    parser.add_argument("--langs", help="MGSM languages for the transfer diagnostic (default: all 11; 'none' skips it)")
    parser.add_argument("--retrieval-langs", help="MMWP languages for retrieval (default: all 48; 'none' skips it)")
    parser.add_argument("--retrieval-limit", type=int, default=200, help="MMWP items per language (default 200)")
    parser.add_argument("--out", help="output directory (default runs/diagnose/<model name>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    from pathlib import Path

    from lingualift.commands.eval import check_positive
    from lingualift.errors import LinguaLiftError
    from lingualift.eval.diagnose import diagnose, diagnose_markdown
    from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES
    from lingualift.inference.generators import load_generator
    from lingualift.io import check_output_dir
    from lingualift.model.components import check_device
    from lingualift.schema import parse_languages

    for value, flag in ((args.limit, "--limit"), (args.batch_size, "--batch-size"),
                        (args.retrieval_limit, "--retrieval-limit")):
        check_positive(value, flag)
    check_device(args.device)
    transfer_langs, retrieval_langs = (
        None if value is None else parse_languages(value, flag, known, allow_none=True)
        for value, flag, known in ((args.langs, "--langs", MGSM_LANGUAGES),
                                   (args.retrieval_langs, "--retrieval-langs", MMWP_LANGUAGES)))
    if transfer_langs == [] and retrieval_langs == []:
        raise LinguaLiftError("--langs none and --retrieval-langs none leave nothing to measure; give languages to "
                              "at least one of them")
    if args.out:
        check_output_dir(args.out, ("diagnose.*",), "--out")
    generator = load_generator(args.model, prompt_template=args.prompt_template, device=args.device, dtype=args.dtype)
    out_dir = Path(args.out or Path("runs") / "diagnose" / generator.name)
    report = diagnose(generator, out_dir, data_dir=args.data_dir, transfer_langs=transfer_langs,
                      retrieval_langs=retrieval_langs, limit=args.limit,
                      retrieval_limit=args.retrieval_limit, batch_size=args.batch_size, download=not args.offline,
                      progress=not args.no_progress)
    print(diagnose_markdown(report))
    return 0
