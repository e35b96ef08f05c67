"""`lingualift bench [--quick] [--paper-shapes]`: training and generation speed and memory (see lingualift.tools.bench).

The settings' flags come from `BenchSettings` (one schema: help, ranges and choices declared once).
"""

from __future__ import annotations

DEFAULT_OUTPUT = "runs/bench"


def configure(parser) -> None:
    from lingualift.schema import add_arguments
    from lingualift.tools.bench import BenchSettings

    add_arguments(parser, BenchSettings, skip=("width_divisor",))
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"directory for bench.json / bench.md ({DEFAULT_OUTPUT})")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (< 2 min on 2 CPU cores)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training benchmark")
    parser.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the generation benchmark")
    parser.add_argument("--allow-cpu", action="store_true", help="let --paper-shapes run on CPU (smoke test)")


def settings_from_args(args):
    from lingualift.errors import LinguaLiftError
    from lingualift.model.components import check_device
    from lingualift.schema import from_dict, overrides_from_args
    from lingualift.tools.bench import BenchSettings, check_paper_shapes_device

    given = overrides_from_args(args, BenchSettings)
    values = {**(BenchSettings.QUICK if args.quick else {}), **(BenchSettings.PAPER if given.get("paper_shapes") else {}),
              **given}
    settings = from_dict(BenchSettings, values, "").resolved()  # errors name the flag: `--batch-size: …`
    check_device(settings.device)
    check_paper_shapes_device(settings.device, settings.paper_shapes, args.allow_cpu, settings.layers)
    if settings.layers is not None and not settings.paper_shapes:
        raise LinguaLiftError("--layers only applies to --paper-shapes")
    backend_only = ("dtypes", "model", "items", "vllm_lora", "vllm_eager", "llamacpp_precisions")
    if not settings.backends and any(key in given for key in backend_only):
        raise LinguaLiftError("--dtypes, --model, --items, --vllm-lora, --vllm-eager and --llamacpp-precisions only "
                              "apply with --backend")
    from lingualift.inference import check_backend

    for backend in settings.backends:
        check_backend(backend)  # fail before any model is built
    return settings


def run(args) -> int:
    from lingualift.tools.bench import markdown, run_bench

    from lingualift.io import check_output_dir

    settings = settings_from_args(args)
    check_output_dir(args.output, ("bench.json", "bench.md"), "--output")
    report = run_bench(settings, args.output, train=args.train, evaluate=args.evaluate)
    print(markdown(report))
    print(f"wrote {args.output}/bench.json and {args.output}/bench.md")
    return 0
