"""Small file helpers: atomic writes and line-checked JSON Lines reading.

Every artefact is written through `atomic_write` so that a killed run never leaves a half-written
file behind; readers report the exact file and line of a malformed record.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from lingualift.checkpoint import honour_umask
from lingualift.errors import LinguaLiftError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if "b" in mode:
        encoding = None
    try:
        honour_umask(tmp)  # mkstemp creates 0600; a shared run folder must stay readable
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # disk full etc.: name the file we wrote
            exc.filename = str(path)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise LinguaLiftError(f"{what} not found: {path} (check the path)")
    return path


def check_output_dir(path: str | os.PathLike, produces: Iterable[str], flag: str, *, writer: str = "this command",
                     advice: str = "") -> None:
    """An output folder must be new, empty or hold only what `writer` writes (`produces`: glob patterns);
    otherwise it would write its files among the user's own, replacing any of the same name. `flag` names the
    setting in the message, `advice` adds a way out."""
    path = Path(path)
    if not path.is_dir():
        return  # new (or a file in the way, which creating the folder reports)
    foreign = sorted(entry.name for entry in path.iterdir() if not entry.name.startswith(".")
                     and not any(fnmatch.fnmatch(entry.name, pattern) for pattern in produces))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise LinguaLiftError(f"{flag} {path}: holds files {writer} does not write ({shown}); choose a new or "
                              f"empty folder{advice}")


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the records of a JSON Lines file; blank lines are skipped, bad lines are named."""
    for _, record in iter_numbered_jsonl(path):
        yield record


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield (line number, stripped text) of the non-blank lines; bad UTF-8 names the file and line."""
    path = Path(path)
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte order mark is not part of the first record
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise LinguaLiftError(
                    f"{path}:{line_number}: not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8"
                ) from None
            if line:
                yield line_number, line


def iter_numbered_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Like `iter_jsonl`, with each record's line number (for error messages about its fields)."""
    path = require_file(path, "JSONL file")
    for line_number, line in iter_text_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LinguaLiftError(
                f"{path}:{line_number}: malformed JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from None
        except RecursionError:
            raise LinguaLiftError(f"{path}:{line_number}: JSON nested too deeply to read; "
                                  "each line must be one flat JSON object") from None
        if not isinstance(record, dict):
            raise LinguaLiftError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        yield line_number, record


def read_json(path: str | os.PathLike) -> Any:
    path = require_file(path, "JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LinguaLiftError(f"{path}: not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise LinguaLiftError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    except RecursionError:
        raise LinguaLiftError(f"{path}: JSON nested too deeply to read; restore or delete the file") from None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (data downloads, pipeline fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
