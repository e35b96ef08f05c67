"""The interactive page (`lingualift demo`): ask models a question in any language (`ask_page`); browse and
compare evaluation runs (`runs_page`); the models it offers and their background loading (`models`).

The logic is plain Python, testable without a browser; each page module lays its tab out in Gradio and turns
every `LinguaLiftError` into a message on the page instead of a stack trace. Gradio is imported only when a
page is built (it is the optional `[demo]` extra).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lingualift.tools.demo.ask_page import build_ask_tab
from lingualift.tools.demo.models import DEFAULT_PIPELINE_DIR, ModelEntry, ModelPool, default_models
from lingualift.tools.demo.runs_page import build_runs_tab

__all__ = ["DEFAULT_PIPELINE_DIR", "ModelEntry", "ModelPool", "build_app", "default_models", "launch"]

logger = logging.getLogger(__name__)

CSS = """
.ll-status p { margin: 0.2em 0; }
"""

INTRO = (
    "# LinguaLIFT demo\n"
    "Ask a question in any language and compare the models' answers, or browse and compare evaluation runs. "
    "Answers are scored with the harness's own extractor (`lingualift.eval.extraction`)."
)


def build_app(pool: ModelPool, *, runs_dir: str | Path | None = None, runs_root: str | Path | None = None,
              data_dir: str | Path | None = None, max_new_tokens: int = 256):
    """The page: an "Ask" tab (models side by side) and a "Runs" tab (one run; two runs compared). The runs
    tab browses inside `runs_root` (default: `runs_dir`, else the working directory) and lists `runs_dir`'s
    runs as the page opens."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    with gr.Blocks(title="LinguaLIFT demo", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        build_ask_tab(app, pool, data_dir=data_dir, max_new_tokens=max_new_tokens)
        build_runs_tab(app, runs_root=runs_root or runs_dir or Path.cwd(), initial=runs_dir)
    return app


def launch(app, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page locally (no share link, no analytics, no server-side rendering: works offline)."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "Consolas", "monospace"])
    app.queue(default_concurrency_limit=1)
    options = dict(server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False,
                   prevent_thread_lock=not block, show_error=False, quiet=not block, theme=theme, css=CSS,
                   footer_links=["api"])
    for attempt in range(3):
        try:
            return app.launch(**options)
        except ValueError as exc:
            # Gradio probes its own page with a 3 s timeout and gives up; on a saturated machine the
            # first page render can take longer than that, so try again before failing.
            if "localhost is not accessible" not in str(exc) or attempt == 2:
                raise
            logger.warning("the page did not answer Gradio's start-up probe in time; retrying")
            app.close()
