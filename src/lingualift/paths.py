"""Where data and caches live.

Data: `--data-dir`, else `$LINGUALIFT_DATA_DIR`, else the first of `./data`, `../shared/data` that
exists. Cache (converted weights, downloads): `$LINGUALIFT_CACHE`, else `~/.cache/lingualift`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from lingualift.errors import LinguaLiftError

_DATA_CANDIDATES = ("data", "../shared/data")


def cache_root() -> Path:
    """The cache folder, not created (readers of an optional cache file need not create it)."""
    return Path(os.environ.get("LINGUALIFT_CACHE") or Path.home() / ".cache" / "lingualift")


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
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


def locate_data_dir(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory, resolved, and where it came from (--data-dir, $LINGUALIFT_DATA_DIR or a default
    location): a run prints and reports both, so a wrong data folder is seen at once."""
    path = find_data_dir(explicit)
    if explicit:
        origin = "--data-dir"
    elif os.environ.get("LINGUALIFT_DATA_DIR"):
        origin = "$LINGUALIFT_DATA_DIR"
    else:
        origin = f"default location {path}"
    return path.resolve(), origin


def packaged_configs(folder: str = "") -> list[str]:
    """Names of the configs that ship inside the package under `configs/<folder>` (e.g. `tiny/align`)."""
    root = Path(__file__).parent / "configs"
    return sorted(str(p.relative_to(root / folder).with_suffix("")) for p in (root / folder).rglob("*.yaml"))


def resolve_config(spec: str | os.PathLike, folder: str = "") -> Path:
    """A YAML path, or the name of a config shipped in the package (`tiny/align`; for the pipeline, `tiny`).

    A path that exists wins, so a local `tiny/align.yaml` shadows the packaged one; a name works from any folder
    and in a non-editable install.
    """
    path = Path(spec)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise LinguaLiftError(f"config file not found: {path}")
    packaged = Path(__file__).parent / "configs" / folder / f"{spec}.yaml"
    if packaged.is_file():
        return packaged
    known = [name for name in packaged_configs(folder) if folder or not name.startswith("pipeline/")]
    close = difflib.get_close_matches(str(spec), known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise LinguaLiftError(f"config not found: {spec} is neither a YAML file nor a packaged config; {hint}"
                          f"packaged: {', '.join(known)}")
