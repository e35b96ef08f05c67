"""`lingualift eval`: generate, extract and score on MMWP / MGSM / MSVAMP / GSM8K / X-CSQA / XNLI (resumable)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

HF_BATCH_SIZE, VLLM_BATCH_SIZE, LLAMACPP_BATCH_SIZE = 16, 256, 64
DEFAULT_BATCH_SIZES = {"hf": HF_BATCH_SIZE, "vllm": VLLM_BATCH_SIZE, "llamacpp": LLAMACPP_BATCH_SIZE}


def add_backend_arguments(parser) -> None:
    """`--backend` and the engine options (eval, bench)."""
    from lingualift.inference.base import BACKENDS, LLAMACPP_DEFAULT_PRECISION, LLAMACPP_PRECISIONS

    parser.add_argument("--backend", choices=BACKENDS, default="hf",
                        help="hf: transformers generate (default); vllm: a vLLM engine, installed in its own "
                             "environment by scripts/vllm_env.sh; llamacpp: llama.cpp on the CPU, built by "
                             "scripts/llamacpp_env.sh (docs/performance.md)")
    parser.add_argument("--precision", help=f"llamacpp: the LLM weights' precision in GGUF: "
                        f"{', '.join(LLAMACPP_PRECISIONS)} (default {LLAMACPP_DEFAULT_PRECISION}; converted once per "
                        "checkpoint and cached)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs to shard the LLM over")
    parser.add_argument("--vllm-lora", choices=("merge", "request"), default="merge",
                        help="vllm, LoRA stage-2 checkpoints: merge into a temporary plain checkpoint (default) "
                             "or serve the adapter as a LoRA request")


def backend_options(args) -> dict:
    """load_generator keyword arguments for the chosen backend."""
    from lingualift.errors import LinguaLiftError
    from lingualift.inference.base import LLAMACPP_PRECISIONS

    if args.precision is not None and args.backend != "llamacpp":
        raise LinguaLiftError("--precision only applies to --backend llamacpp (use --dtype for hf and vllm)")
    if args.precision is not None and args.precision not in LLAMACPP_PRECISIONS:
        raise LinguaLiftError(f"--precision: unknown llama.cpp precision {args.precision!r}; choose from "
                              f"{', '.join(LLAMACPP_PRECISIONS)}")
    if args.backend == "llamacpp":
        return {"precision": args.precision} if args.precision else {}
    if args.backend != "vllm":
        return {}
    check_positive(args.tensor_parallel_size, "--tensor-parallel-size")
    return {"tensor_parallel_size": args.tensor_parallel_size, "lora": args.vllm_lora}


def add_model_arguments(parser, batch_size: int = 16, prompt_template: bool = True) -> None:
    """Options shared by `eval`, `diagnose` and `fidelity` to build a generator with `inference.load_generator`;
    `prompt_template=False` where the command frames the question itself."""
    parser.add_argument("--model", required=True,
                        help="LinguaLIFT checkpoint dir (either stage), baseline / plain HF causal-LM dir, hub id or preset")
    if prompt_template:
        parser.add_argument("--prompt-template", help="template name (paper, alpaca, plain) or text with {question}; "
                            "default: the checkpoint's own, else paper")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: the model's)")
    parser.add_argument("--data-dir", help="data directory with the public layouts (default: $LINGUALIFT_DATA_DIR, ./data, ../shared/data)")
    parser.add_argument("--offline", action="store_true", help="never download missing data; fail with what to fetch")
    if batch_size is None:  # eval: the default depends on the backend
        parser.add_argument("--batch-size", type=int, help=f"examples per forward pass / per saved chunk, pooled across languages (default "
                            f"{HF_BATCH_SIZE}; {VLLM_BATCH_SIZE} with --backend vllm, {LLAMACPP_BATCH_SIZE} with llamacpp, which "
                            "decode a chunk at once)")
    else:
        parser.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"examples per forward pass (default {batch_size})")
    parser.add_argument("--limit", type=int, help="first N examples per language")


def configure(parser) -> None:
    from lingualift.eval.tasks import TASKS

    add_model_arguments(parser, batch_size=None)
    add_backend_arguments(parser)
    parser.add_argument("--tasks", default="mgsm", help=f"comma-separated tasks: {','.join(TASKS)} (default mgsm)")
    parser.add_argument("--langs", help="comma-separated languages (default: each task's own)")
    parser.add_argument("--out", help="run directory (default runs/eval/<model name>-<fingerprint of the model's "
                        "path, content and generation settings>); re-running resumes it")
    parser.add_argument("--max-new-tokens", type=int, help="default: per task (512 math, 256 multiple choice)")
    parser.add_argument("--stop", action="append",
                        help="stop string (repeatable; replaces the task defaults; '\\n' escapes are understood)")
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_positive(value: int | None, flag: str) -> None:
    from lingualift.errors import LinguaLiftError

    if value is not None and value < 1:
        raise LinguaLiftError(f"{flag} must be a positive integer, got {value}")


def check_sampling(do_sample: bool, temperature: float, top_p: float) -> None:
    import math

    from lingualift.errors import LinguaLiftError

    if not math.isfinite(temperature) or temperature <= 0:
        raise LinguaLiftError(f"--temperature must be a positive number, got {temperature}")
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise LinguaLiftError(f"--top-p must be in (0, 1], got {top_p}")


def check_stop(stop: list[str] | None, flag: str = "--stop") -> tuple[str, ...] | None:
    """Stop strings with `\\n`-style escapes decoded; an empty one would end every answer after its first token."""
    from lingualift.errors import LinguaLiftError

    if not stop:
        return None
    decoded = tuple(text.encode().decode("unicode_escape") for text in stop)
    if "" in decoded:
        raise LinguaLiftError(f"{flag}: an empty stop string ends every answer at once; give non-empty text "
                              "(e.g. --stop '\\n\\n') or leave --stop out for the task defaults")
    return decoded


def run(args) -> int:
    from pathlib import Path

    from lingualift.eval.runner import GenerationSettings, default_run_dir, evaluate, run_identity
    from lingualift.inference.generators import load_generator
    from lingualift.eval.report import write_eval_report
    from lingualift.eval.tasks import load_examples, parse_task_langs
    from lingualift.model.components import check_device

    from lingualift.inference import check_backend

    options = backend_options(args)
    check_backend(args.backend)  # an environment without the engine fails before data and models are touched
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH_SIZES[args.backend]
    for value, flag in ((args.limit, "--limit"), (args.batch_size, "--batch-size"),
                        (args.max_new_tokens, "--max-new-tokens"), (args.bootstrap, "--bootstrap")):
        check_positive(value, flag)
    check_sampling(args.do_sample, args.temperature, args.top_p)
    check_device(args.device)
    plan = parse_task_langs(args.tasks, args.langs)
    stop = check_stop(args.stop)
    settings = GenerationSettings(args.max_new_tokens, stop, args.do_sample, args.temperature, args.top_p)
    for task, langs in plan:  # fail on missing or malformed data before loading the model
        for lang in langs:
            load_examples(task, lang, args.data_dir, args.limit, download=not args.offline)
    generator = load_generator(args.model, prompt_template=args.prompt_template, device=args.device, dtype=args.dtype,
                               backend=args.backend, **options)
    out_dir = Path(args.out) if args.out else default_run_dir(run_identity(generator, settings, args.model))
    logger.info("run directory: %s", out_dir)
    results = evaluate(generator, plan, out_dir, data_dir=args.data_dir, limit=args.limit, batch_size=args.batch_size,
                       settings=settings, download=not args.offline, n_bootstrap=args.bootstrap, seed=args.seed,
                       progress=not args.no_progress, model_spec=args.model)
    paths = write_eval_report(results, out_dir)
    print(paths["md"].read_text(encoding="utf-8"))
    return 0
