"""What both pages share: error messages for the page (never a stack trace) and table building."""

from __future__ import annotations

import logging

from lingualift.errors import LinguaLiftError

logger = logging.getLogger("lingualift.tools.demo")

MAX_ROWS = 500  # prediction / disagreement rows sent to the page at once (filters narrow the rest)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def message(exc: BaseException) -> str:
    """A user mistake as its own one-line message; anything else as a short note (details go to the log)."""
    if isinstance(exc, LinguaLiftError):
        return f"⚠ {exc}"
    logger.exception("unexpected error in the demo page")
    return f"⚠ unexpected error ({first_line(exc)}); details are in the console log"


def table(rows: list[list], headers: list[str]):
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)
