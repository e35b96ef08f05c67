"""What the pipeline remembers between runs: phase fingerprints in `pipeline_state.json`, and which folders it owns.

A phase's fingerprint hashes its own config section, the content of the data files it reads and the
fingerprints of the phases it depends on. A phase whose recorded fingerprint matches and whose outputs still
exist is reused; `decide` says so (and why not) for both a run and `--dry-run`.

Folders: the pipeline writes only into folders that are new, empty or carry its marker (`.lingualift-pipeline`,
also the fcntl lock that keeps a second pipeline out), and clears a phase folder atomically (`claim_folder`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from lingualift.errors import LinguaLiftError
from lingualift.checkpoint import digest
from lingualift.io import file_sha256, read_json, write_json

logger = logging.getLogger(__name__)

STATE_FILE = "pipeline_state.json"
FOLDER_MARKER = ".lingualift-pipeline"
# Bump when a phase's code changes what it produces: cached phases are then recomputed.
RECIPE = 1

UP_TO_DATE = "up to date"
NO_PREVIOUS_RUN = "no previous run"
CONFIG_CHANGED = "config changed"
OUTPUTS_MISSING = "outputs missing"
INTERRUPTED = "interrupted"
FORCED = "--force"


def fingerprint(phase: str, inputs: dict, upstream: dict[str, str]) -> str:
    """The fingerprint of `phase` from its inputs and the fingerprints of the phases it depends on."""
    return digest({"recipe": RECIPE, "phase": phase, "inputs": inputs, "upstream": upstream}, length=16)


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 of a data file (memoised by path, size and mtime within one process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(path)[:16]
    return _FILE_HASHES[key]


def load_state(path: Path) -> dict:
    """The recorded state, or an empty one when there is none or it is unreadable (every phase then reruns)."""
    if path.is_file():
        try:
            state = read_json(path)
            if isinstance(state, dict) and isinstance(state.get("phases"), dict):
                return state
        except LinguaLiftError:
            pass
        logger.warning("%s is unreadable; every phase will run again", path)
    return {"phases": {}}


def save_state(path: Path, state: dict) -> None:
    write_json(path, state)


def decide(record: dict, fingerprint: str, outputs: list[Path], force: bool) -> str:
    """Why a phase runs, or `UP_TO_DATE` when its recorded run can be reused."""
    if not record:
        return NO_PREVIOUS_RUN
    if record.get("fingerprint") != fingerprint:
        return CONFIG_CHANGED
    if record.get("status") != "done":
        return INTERRUPTED
    if not all(Path(p).exists() for p in outputs):
        return OUTPUTS_MISSING
    return FORCED if force else UP_TO_DATE


def check_owned(folder: Path, legacy_marker: str | None = None) -> None:
    """Refuse a folder that exists, is not empty and holds no pipeline marker (someone else's data)."""
    if folder.exists() and not folder.is_dir():
        raise LinguaLiftError(f"{folder}: exists and is not a folder; choose another --output-dir")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / FOLDER_MARKER).is_file() \
            and not (legacy_marker and (folder / legacy_marker).is_file()):
        raise LinguaLiftError(f"{folder}: exists and was not made by the pipeline; refusing to write into it "
                              "(choose another --output-dir)")


def claim_folder(folder: Path, clear: bool) -> None:
    """Make `folder` a phase folder: cleared if asked, but only when the pipeline created it (marker file),
    so a mistaken --output-dir never deletes someone's data.

    Clearing renames the whole folder aside (atomic) before deleting it, so a kill at any moment leaves
    the folder whole with its marker, absent, or empty - never a half-deleted folder without its marker
    that the next run would refuse. Leftovers of a killed clear are deleted on the next claim.
    """
    check_owned(folder)
    for leftover in folder.parent.glob(f".{folder.name}.trash-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if clear and folder.exists():
        trash = folder.with_name(f".{folder.name}.trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FOLDER_MARKER).touch()
