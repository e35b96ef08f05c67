"""The demo page's flag checks (`lingualift demo`): each runs before Gradio is imported, a model is queued or the
server starts, so a mistake is one `error:` line instead of a state on the page or a traceback from the server."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from lingualift.checkpoint import (LINGUALIFT, STEP_CHECKPOINT, checkpoint_kind, is_hub_id, is_lingualift_checkpoint,
                                   resolve_model_spec)
from lingualift.data.prompts import resolve_template
from lingualift.errors import LinguaLiftError
from lingualift.model import components
from lingualift.pipeline.config import STAGES, Layout


def check_dtype(dtype: str | None) -> None:
    """A `--dtype` torch knows, named in the error."""
    try:
        components.as_dtype(dtype)
    except LinguaLiftError as exc:
        raise LinguaLiftError(f"--dtype {dtype}: {exc}") from None


def check_prompt_template(template: str | None) -> None:
    """A `--prompt-template` that resolves (a known name or text with {question}), named in the error."""
    if template is None:
        return
    try:
        resolve_template(template)
    except LinguaLiftError as exc:
        raise LinguaLiftError(f"--prompt-template: {exc}") from None


def check_address(host: str, port: int | None) -> None:
    """The page can be served at host:port: a port number, a host this machine has, a port nobody listens on.
    Otherwise Gradio fails after the models have started loading, with a traceback."""
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
    if not pipeline_dir.is_dir():
        raise LinguaLiftError(f"--pipeline-dir {pipeline_dir}: folder not found")
    layout = Layout(pipeline_dir)
    if models_from_it and not any(is_lingualift_checkpoint(layout.final(stage)) for stage in STAGES):
        finals = ", ".join(str(layout.final(stage).relative_to(pipeline_dir)) for stage in STAGES)
        raise LinguaLiftError(f"--pipeline-dir {pipeline_dir}: no trained checkpoint ({finals}); not a pipeline "
                              "run, or one that has not trained yet (pass --model SPEC to choose models)")
