"""`lingualift pipeline [CONFIG] [--set key=value …]`: the whole method end to end, with a report.

assets → lexicons → code-switched data → stage 1 → stage 2 → evaluation (MGSM, MMWP) → transfer
diagnostic → report (markdown + PNG). Finished phases are skipped on the next run (`--force` reruns them);
`--dry-run` shows the effective config and which phases would run, and why, without writing anything.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def configure(parser) -> None:
    parser.add_argument("config", nargs="?",
                        help="a pipeline YAML, or a packaged one by name: default (the default), tiny, qwen05b; "
                             "scale it up with --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stage1.training.max_steps=500 "
                             "--set evaluation.mgsm.limit=250 (repeatable)")
    parser.add_argument("--data-dir", help="data directory with gsm8k/, mgsm/, mmwp/, muse/ in their public layouts "
                                           "(default: $LINGUALIFT_DATA_DIR, ./data, ../shared/data)")
    parser.add_argument("--output-dir", help="where everything goes (default: the config's output_dir, "
                                             "outputs/pipeline)")
    parser.add_argument("--force", action="store_true", help="rerun every phase even if its outputs are up to date")
    parser.add_argument("--until", choices=("assets", "lexicons", "data", "stage1", "stage2", "evaluate", "diagnose",
                                            "report"), help="stop after this phase")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (phase logs remain)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the effective config and, per phase, whether it would run or be reused (and "
                             "why); write nothing, load no model")


def run(args) -> int:
    from lingualift.pipeline.phases import prepare_pipeline, run_pipeline

    if args.dry_run:
        pipeline = prepare_pipeline(args.config, args.overrides, data_dir=args.data_dir, output_dir=args.output_dir,
                                    force=args.force)
        _print_plan(pipeline, pipeline.plan(until=args.until))
        return 0
    pipeline = run_pipeline(args.config, args.overrides, data_dir=args.data_dir, output_dir=args.output_dir,
                            force=args.force, progress=not args.no_progress, until=args.until)
    state = pipeline.state
    ran = [name for name, status in pipeline.this_run.items() if status == "ran"]
    cached = [name for name, status in pipeline.this_run.items() if status == "cached"]
    print(f"data directory: {pipeline.data_dir} ({pipeline.data_dir_origin})")
    print(f"ran: {', '.join(ran) or 'nothing'}; up to date (skipped): {', '.join(cached) or 'nothing'}; "
          f"{state['last_run']['seconds']:.0f} s")
    for name in ("mgsm", "mmwp"):
        task = state["phases"].get("evaluate", {}).get("summary", {}).get("tasks", {}).get(name)
        if task:
            print(f"{name}: {100 * task['overall']['accuracy']:.1f}% over {task['n']} problems")
    report = pipeline.out / "report.md"
    if report.is_file():
        print(f"report: {report} (+ report.png, training.png)")
    return 0


def _print_plan(pipeline, plan: list[tuple[str, str]]) -> None:
    import yaml

    from lingualift.pipeline.cache import UP_TO_DATE

    print(f"# effective config ({pipeline.config.source}, after --set)")
    print(yaml.safe_dump(pipeline.config.to_dict(), sort_keys=False, allow_unicode=True), end="")
    print(f"# data directory: {pipeline.data_dir} ({pipeline.data_dir_origin})")
    print(f"# phases in {pipeline.out}:")
    width = max(len(name) for name, _ in plan)
    for name, reason in plan:
        print(f"#   {name:<{width}}  {'reuse' if reason == UP_TO_DATE else 'run  '}  {reason}")
