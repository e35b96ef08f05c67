"""`lingualift bench [--quick] [--paper-shapes]`: training and generation speed and memory (see lingualift.tools.bench)."""

from __future__ import annotations

DEFAULT_OUTPUT = "runs/bench"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def configure(parser) -> None:
    parser.add_argument("--encoder", default="default", help="encoder spec (preset, dir, hub id); default: default")
    parser.add_argument("--llm", default="default", help="LLM spec (preset, dir, hub id); default: default")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"directory for bench.json / bench.md ({DEFAULT_OUTPUT})")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (< 2 min on 2 CPU cores)")
    parser.add_argument("--stages", help="comma-separated subset of align,task-full,task-lora,langbridge,sft")
    parser.add_argument("--batch-size", type=int, help="training batch size")
    parser.add_argument("--encoder-length", type=int, help="encoder tokens per example (prompt)")
    parser.add_argument("--target-length", type=int, help="target tokens per example")
    parser.add_argument("--repeats", type=int, help="timed steps per stage (median reported)")
    parser.add_argument("--eval-batch-sizes", type=_ints, help="generation batch sizes, e.g. 1,8,32")
    parser.add_argument("--new-tokens", type=int, help="generated tokens per row")
    parser.add_argument("--eval-repeats", type=int, help="timed generation runs (median reported; default 2)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="training precision (paper shapes: bf16)")
    parser.add_argument("--gradient-checkpointing", action="store_true", default=None)
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training benchmark")
    parser.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the generation benchmark")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--paper-shapes", action="store_true",
                        help="random Llama-2-7B + mT5-xl-encoder shapes in bf16 on a GPU (no download)")
    parser.add_argument("--allow-cpu", action="store_true", help="let --paper-shapes run on CPU (smoke test)")
    parser.add_argument("--layers", type=int, help="--paper-shapes: shrink both models to N layers")
    parser.add_argument("--backend", type=_names,
                        help="compare generation backends side by side on the same prompts, e.g. hf,vllm "
                             "(tokens/s, load time, memory, identical outputs); vllm needs scripts/vllm_env.sh")
    parser.add_argument("--dtypes", type=_names, help="--backend: precisions to run each backend in (default fp32), "
                        "e.g. fp32,bf16")
    parser.add_argument("--model", help="--backend: checkpoint / LLM spec to compare (default: a LinguaLIFT model "
                        "with a seeded random alignment layer over --encoder/--llm)")
    parser.add_argument("--items", type=int, help="--backend: number of prompts (default 64)")
    parser.add_argument("--vllm-lora", choices=("merge", "request"), help="--backend vllm, LoRA checkpoints")
    parser.add_argument("--vllm-eager", action="store_true", default=None,
                        help="--backend vllm: no torch.compile (faster engine start)")


def settings_from_args(args):
    import torch

    from lingualift.tools.bench import STAGES, BenchSettings, check_device
    from lingualift.errors import LinguaLiftError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device, args.paper_shapes, args.allow_cpu, args.layers)
    if args.layers is not None and not args.paper_shapes:
        raise LinguaLiftError("--layers only applies to --paper-shapes")
    values = {"device": device, "encoder": args.encoder, "llm": args.llm}
    if args.paper_shapes:
        values.update(precision="bf16", gradient_checkpointing=True, paper_shapes=True, layers=args.layers,
                      batch_size=4, encoder_length=256, target_length=256, repeats=3, new_tokens=64)
    if args.stages:
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise LinguaLiftError(f"--stages: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
        values["stages"] = stages
    if args.backend:
        from lingualift.inference.generators import BACKENDS

        for names, flag, known in ((args.backend, "--backend", BACKENDS), (args.dtypes or (), "--dtypes",
                                                                           ("fp32", "bf16", "fp16"))):
            unknown = [name for name in names if name not in known]
            if unknown:
                raise LinguaLiftError(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
        if "vllm" in args.backend:
            from lingualift.inference.vllm_engine import import_vllm

            import_vllm()  # fail before any model is built
        values["backends"] = args.backend
    elif args.dtypes or args.model or args.items or args.vllm_lora or args.vllm_eager:
        raise LinguaLiftError("--dtypes, --model, --items, --vllm-lora and --vllm-eager only apply with --backend")
    for key in ("batch_size", "encoder_length", "target_length", "repeats", "eval_batch_sizes", "new_tokens",
                "precision", "gradient_checkpointing", "dtypes", "model", "items", "vllm_lora", "eval_repeats",
                "vllm_eager"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    for key in ("batch_size", "encoder_length", "target_length", "repeats", "new_tokens", "items", "eval_repeats"):
        if key in values and values[key] < 1:
            raise LinguaLiftError(f"--{key.replace('_', '-')} must be at least 1, got {values[key]}")
    return BenchSettings.quick(**values) if args.quick else BenchSettings(**values)


def run(args) -> int:
    from lingualift.tools.bench import markdown, run_bench

    settings = settings_from_args(args)
    report = run_bench(settings, args.output, train=args.train, evaluate=args.evaluate)
    print(markdown(report))
    print(f"wrote {args.output}/bench.json and {args.output}/bench.md")
    return 0
