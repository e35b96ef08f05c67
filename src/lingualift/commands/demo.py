"""`lingualift demo`: a local page to ask models in any language and to browse / compare evaluation runs."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def configure(parser) -> None:
    parser.add_argument("--model", action="append", metavar="SPEC",
                        help="LinguaLIFT checkpoint dir, baseline / plain HF causal-LM dir, hub id or preset "
                        "(repeatable; default: the LLM alone and the checkpoints of the last pipeline run in "
                        "--pipeline-dir, else the embedded default LLM with its chat template)")
    parser.add_argument("--pipeline-dir", metavar="DIR",
                        help="the pipeline run whose models and evaluation the page opens with (default: "
                        "outputs/pipeline, where `bash scripts/main.sh` writes)")
    parser.add_argument("--runs", metavar="DIR", help="folder of evaluation runs to browse; the page searches "
                        "only inside it (default: --pipeline-dir if it exists, else the working directory)")
    parser.add_argument("--data-dir", help="data directory with the public layouts, for benchmark problems "
                        "(default: $LINGUALIFT_DATA_DIR, ./data, ../shared/data)")
    parser.add_argument("--prompt-template", help="override every model's prompt template (name or text with {question})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="initial answer length limit (default 256)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="port (default: the first free one from 7860)")


def run(args) -> int:
    from pathlib import Path

    from lingualift.commands.eval import check_positive
    from lingualift.errors import LinguaLiftError
    from lingualift.model.components import check_device
    from lingualift.paths import find_data_dir
    from lingualift.tools.demo.checks import (check_address, check_dtype, check_model, check_pipeline_dir,
                                              check_prompt_template)
    from lingualift.tools.demo.models import DEFAULT_PIPELINE_DIR

    # Every flag is checked before Gradio is imported, a model is queued or the server starts.
    check_positive(args.max_new_tokens, "--max-new-tokens")
    check_device(args.device)
    check_dtype(args.dtype)
    check_prompt_template(args.prompt_template)
    check_address(args.host, args.port)
    if args.runs and not Path(args.runs).is_dir():
        raise LinguaLiftError(f"--runs {args.runs}: folder not found")
    for spec in args.model or ():
        check_model(spec)
    pipeline_dir = Path(args.pipeline_dir or DEFAULT_PIPELINE_DIR)
    if args.pipeline_dir is not None:
        check_pipeline_dir(pipeline_dir, models_from_it=not args.model)
    data_dir = find_data_dir(args.data_dir, required=False)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise LinguaLiftError("the demo page needs Gradio: pip install 'lingualift[demo]'") from None
    from lingualift.tools.demo import ModelPool, build_app, default_models, launch

    models = args.model or default_models(pipeline_dir)
    runs = args.runs or (pipeline_dir if pipeline_dir.is_dir() else None)
    pool = ModelPool(models, prompt_template=args.prompt_template, device=args.device, dtype=args.dtype)
    try:
        app = build_app(pool, runs_dir=runs, data_dir=data_dir, max_new_tokens=args.max_new_tokens)
        logger.info("models load in the background; the page shows their state: %s",
                    ", ".join(pool.labels))
        try:
            launch(app, host=args.host, port=args.port, block=True)
        except OSError as exc:  # taken between the check and the start, or no free port from 7860 on
            where = f"--port {args.port}" if args.port is not None else f"--host {args.host}"
            raise LinguaLiftError(f"{where}: the page cannot be served there ({exc}); pick another "
                                  "--port") from None
    finally:
        pool.close()
    return 0
