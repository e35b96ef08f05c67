"""`lingualift codeswitch`: English instruction JSONL + lexicons → code-switched stage-1 JSONL."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def configure(parser) -> None:
    parser.add_argument("--input", required=True, help="instruction JSONL: question/answer (GSM8K) or Alpaca instruction/input/output")
    parser.add_argument("--output", required=True, help="code-switched JSONL to write")
    parser.add_argument("--lexicons", required=True, help="LANG=SPEC list, e.g. de=muse:de,ru=lexicons/en-ru.tsv")
    from lingualift.data.codeswitch import MIXING, CodeSwitchSettings

    parser.add_argument("--ratio", type=float, default=CodeSwitchSettings.ratio,
                        help=f"fraction of replaceable prompt words to translate (default {CodeSwitchSettings.ratio})")
    parser.add_argument("--mixing", choices=MIXING, default=CodeSwitchSettings.mixing,
                        help=f"one language per example, or a language per word (default {CodeSwitchSettings.mixing})")
    parser.add_argument("--weights", help="LANG=WEIGHT list for sampling languages (default: equal)")
    parser.add_argument("--seed", type=int, default=CodeSwitchSettings.seed)
    parser.add_argument("--data-dir", help="data directory holding muse/ (for muse:XX specs)")


def run(args) -> int:
    from tqdm.auto import tqdm

    from lingualift.data.codeswitch import CodeSwitcher, CodeSwitchSettings, parse_mapping
    from lingualift.data.instructions import read_instructions
    from lingualift.io import require_file, write_jsonl

    settings = CodeSwitchSettings(
        lexicons=parse_mapping(args.lexicons, "--lexicons"),
        ratio=args.ratio,
        mixing=args.mixing,
        weights=parse_mapping(args.weights, "--weights", float) if args.weights else None,
        seed=args.seed,
    )
    settings.validate("lingualift codeswitch")
    _check_output_is_new(args.output, {"--input": args.input, **{f"--lexicons {lang}": spec
                                                                 for lang, spec in settings.lexicons.items()}})
    switcher = CodeSwitcher.from_settings(settings, args.data_dir)
    with open(require_file(args.input, "input JSONL"), "rb") as handle:
        total = sum(1 for line in handle if line.strip())
    if total == 0:
        from lingualift.errors import LinguaLiftError

        raise LinguaLiftError(f"{args.input}: no records (the file is empty); give a JSONL file of instructions")

    def records():
        for index, record in enumerate(tqdm(read_instructions(args.input), total=total, desc="code-switching",
                                            unit="ex")):
            yield switcher.switch(record, index)

    count = write_jsonl(args.output, records())
    logger.info("wrote %d code-switched examples to %s", count, args.output)
    print(switcher.stats.table(settings.ratio))
    return 0


def _check_output_is_new(output: str, inputs: dict[str, str]) -> None:
    """The output must not be a file we read: the atomic write would replace the input with its own rewrite."""
    import os
    from pathlib import Path

    from lingualift.errors import LinguaLiftError

    if not Path(output).is_file():
        return
    for flag, source in inputs.items():
        if Path(source).is_file() and os.path.samefile(output, source):
            raise LinguaLiftError(f"--output {output}: is the file given as {flag}; writing there would replace it "
                                  "with its code-switched copy; choose another output file")
