"""`lingualift score`: re-score saved predictions with the current extractors (e.g. after a fix)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def configure(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PRED.jsonl|RUN_DIR",
                        help="prediction files, or eval run directories (all their predictions; results are rewritten)")
    parser.add_argument("--dry-run", action="store_true", help="report changes without rewriting files")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from pathlib import Path

    from lingualift.commands.eval import check_positive
    from lingualift.errors import LinguaLiftError
    from lingualift.eval.runner import SCORED_FIELDS, load_run, read_done, rescore, summarize
    from lingualift.io import require_file, write_jsonl
    from lingualift.eval.report import eval_markdown, write_eval_report

    check_positive(args.bootstrap, "--bootstrap")
    repair = not args.dry_run  # a dry run never touches a file, not even to cut a truncated last line
    work = []
    for raw in args.paths:  # read and check everything before rewriting anything
        path = Path(raw)
        files = sorted(path.glob("predictions/*/*.jsonl")) if path.is_dir() else [require_file(path, "prediction file")]
        model = ""
        if path.is_dir():
            load_run(path, repair=False)  # fails with a clear message when this is not a run directory
            model = _run_model_name(path / "run.json")
        records = {file: list(read_done(file, repair=False, require=SCORED_FIELDS).values()) for file in files}
        rescored = {}
        for file, before in records.items():
            try:
                _check_gold(before)
                rescored[file] = rescore(before)
            except LinguaLiftError as exc:
                raise LinguaLiftError(f"{file}: {exc}") from None
        work.append((path, files, rescored, records, model))
    for path, files, rescored, records, model in work:
        for file in files:
            before, after = records[file], rescored[file]
            if repair:
                read_done(file)  # cut a truncated last line (killed run)
            changed = sum(a["extracted"] != b.get("extracted") or a["correct"] != b.get("correct")
                          for a, b in zip(after, before))
            accuracy = sum(r["correct"] for r in after) / max(1, len(after))
            print(f"{file}: {len(after)} examples, accuracy {100 * accuracy:.1f}%, {changed} changed")
            if not args.dry_run and changed:
                write_jsonl(file, after)
        if path.is_dir():
            results = summarize(load_run(path, repair=repair), model=model, n_bootstrap=args.bootstrap, seed=args.seed)
            if args.dry_run:
                print(eval_markdown(results))
            else:
                print(write_eval_report(results, path)["md"].read_text(encoding="utf-8"))
    return 0


def _run_model_name(path) -> str:
    """The model name a run's `run.json` records ("" without one); a damaged file is an error before any rewrite."""
    from lingualift.errors import LinguaLiftError
    from lingualift.io import read_json

    if not path.exists():
        return ""
    identity = read_json(path)
    if not isinstance(identity, dict) or not isinstance(identity.get("model", ""), str):
        raise LinguaLiftError(f"{path}: not a run identity (a JSON object with the model name); restore it or delete "
                              "it (it is rewritten by the next `lingualift eval` into this folder)")
    return identity.get("model", "")


def _check_gold(records: list[dict]) -> None:
    """A numeric task's gold answer must be a number: otherwise every answer would silently score as wrong."""
    from lingualift.errors import LinguaLiftError
    from lingualift.eval.extraction import parse_gold_number
    from lingualift.eval.tasks import get_task

    for record in records:
        if get_task(record["task"]).kind != "number":
            continue
        try:
            parse_gold_number(record["gold"])
        except (ValueError, TypeError):
            raise LinguaLiftError(f"record {record.get('id')!r}: gold answer {record['gold']!r} is not a number; "
                                  f"task {record['task']} scores numbers (fix the record or re-run the evaluation)") \
                from None
