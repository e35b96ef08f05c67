"""Where data and caches live.

Data: `--data-dir`, else `$LINGUALIFT_DATA_DIR`, else the first of `./data`, `../shared/data` that
exists. Cache (converted weights, downloads): `$LINGUALIFT_CACHE`, else `~/.cache/lingualift`.
"""

from __future__ import annotations

import os
from pathlib import Path

from lingualift.errors import LinguaLiftError

_DATA_CANDIDATES = ("data", "../shared/data")


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("LINGUALIFT_CACHE") or Path.home() / ".cache" / "lingualift")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_data_dir(explicit: str | os.PathLike | None = None, required: bool = True) -> Path | None:
    """Resolve the data directory (layout: see the data section of the README)."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise LinguaLiftError(f"data directory not found: {path} (pass --data-dir DIR with the public layout)")
        return path
    env = os.environ.get("LINGUALIFT_DATA_DIR")
    if env:
        if not Path(env).is_dir():
            raise LinguaLiftError(f"LINGUALIFT_DATA_DIR={env} is not a directory")
        return Path(env)
    for candidate in _DATA_CANDIDATES:
        if Path(candidate).is_dir():
            return Path(candidate)
    if required:
        raise LinguaLiftError(
            "no data directory: pass --data-dir DIR or set LINGUALIFT_DATA_DIR "
            "(a folder with mgsm/, gsm8k/, mmwp/, muse/ in their public layout; see README 'Data')"
        )
    return None
