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

    from lingualift.commands.eval import check_device, check_positive
    from lingualift.errors import LinguaLiftError
    from lingualift.paths import find_data_dir
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


def check_dtype(dtype: str | None) -> None:
    from lingualift.errors import LinguaLiftError
    from lingualift.model.components import as_dtype

    try:
        as_dtype(dtype)
    except LinguaLiftError as exc:
        raise LinguaLiftError(f"--dtype {dtype}: {exc}") from None


def check_prompt_template(template: str | None) -> None:
    from lingualift.data.prompts import resolve_template
    from lingualift.errors import LinguaLiftError

    if template is None:
        return
    try:
        resolve_template(template)
    except LinguaLiftError as exc:
        raise LinguaLiftError(f"--prompt-template: {exc}") from None


def check_address(host: str, port: int | None) -> None:
    """The page can be served at host:port: a port number, a host this machine has, a port nobody listens on.
    Otherwise Gradio fails after the models have started loading, with a traceback."""
    import errno
    import socket

    from lingualift.errors import LinguaLiftError

    if port is not None and not 1 <= port <= 65535:
        raise LinguaLiftError(f"--port {port}: not a TCP port; use 1 to 65535 (or leave it out: the first free "
                              "one from 7860)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise LinguaLiftError(f"--host {host!r}: not an address or a name this machine can resolve ({reason}); "
                              "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LinguaLiftError(f"--port {port}: already in use on {host} (another demo page?); pick another "
                                      "port, or leave --port out for the first free one from 7860") from None
            if exc.errno == errno.EACCES:
                raise LinguaLiftError(f"--port {port}: ports below 1024 need administrator rights; use a port from "
                                      "1024 on (default: the first free one from 7860)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise LinguaLiftError(f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine "
                                      "only) or 0.0.0.0 (every interface)") from None
            raise LinguaLiftError(f"--host {host} --port {port}: cannot serve there ({exc.strerror})") from None


def check_model(spec: str) -> None:
    """A `--model` names a model (its config only is read; weights load later, in the background): a typo or a
    folder of something else fails here, like in `generate` and `eval`, instead of as a state on the page."""
    from pathlib import Path

    from lingualift.checkpoint import LINGUALIFT, STEP_CHECKPOINT, checkpoint_kind, is_hub_id, resolve_model_spec
    from lingualift.errors import LinguaLiftError
    from lingualift.model import components

    if not spec.strip():
        raise LinguaLiftError("--model: empty; give a checkpoint folder, a Hugging Face id or a preset")
    if not Path(spec).exists() and not components.is_preset(spec) and not is_hub_id(spec):
        raise LinguaLiftError(f"--model {spec}: no such folder, and not a preset ({', '.join(components.presets())}) "
                              "or a Hugging Face id (owner/name)")
    resolved = resolve_model_spec(spec)
    path = Path(str(resolved))
    if path.is_file():
        raise LinguaLiftError(f"--model {spec}: a file, not a model folder (give the folder that holds config.json)")
    kind = checkpoint_kind(path)
    if kind == LINGUALIFT:
        return
    if kind == STEP_CHECKPOINT:
        raise LinguaLiftError(f"--model {spec}: a training step checkpoint (for resuming), not a model; give the "
                              "run's final folder")
    components.check_spec(str(resolved), components.LLM, f"--model {spec}")


def check_pipeline_dir(pipeline_dir, *, models_from_it: bool) -> None:
    """A `--pipeline-dir` the user names is a folder; with no `--model`, one holding a trained checkpoint (the
    page's models come from it: silently offering the default LLM instead would hide the mistake)."""
    from lingualift.checkpoint import is_lingualift_checkpoint
    from lingualift.errors import LinguaLiftError
    from lingualift.pipeline.config import STAGES, Layout

    if not pipeline_dir.is_dir():
        raise LinguaLiftError(f"--pipeline-dir {pipeline_dir}: folder not found")
    layout = Layout(pipeline_dir)
    if models_from_it and not any(is_lingualift_checkpoint(layout.final(stage)) for stage in STAGES):
        finals = ", ".join(str(layout.final(stage).relative_to(pipeline_dir)) for stage in STAGES)
        raise LinguaLiftError(f"--pipeline-dir {pipeline_dir}: no trained checkpoint ({finals}); not a pipeline "
                              "run, or one that has not trained yet (pass --model SPEC to choose models)")
