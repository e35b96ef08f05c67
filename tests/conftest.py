"""Shared fixtures: the real data directory (skipped when absent), offline defaults, and `require`: the
components a test needs (a browser, lm-eval, ...) skip the test when missing locally but fail it under CI,
whose scripts install them all (.ci/run), so that no real component goes untested there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(found, component: str, install: str):
    """`found` if truthy; else skip (fail under CI) saying which component is missing and how to install it."""
    if found:
        return found
    reason = f"{component} is not installed ({install})"
    if IN_CI:
        pytest.fail(f"{reason}; CI installs every component the tests need, so this is a set-up bug", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, component: str, install: str):
    """The imported module `name`, under the rules of `require`."""
    try:
        return __import__(name)
    except ImportError:
        return require(None, component, install)


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data` (real MGSM, GSM8K, MMWP, MUSE files); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
