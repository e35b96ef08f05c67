"""Directories written as a whole: one staged, atomically swapped writer; locks; content fingerprints.

`replace_directory(target)` yields an empty hidden staging folder next to `target`; when the block
succeeds the old `target` (if any) is renamed aside, the staging folder is renamed to `target` and the
old one is deleted. A kill at any point leaves either the complete old or the complete new directory:
the only window without `target` (between the two renames) is repaired by `recover(target)`, which
every writer and loader calls first: it renames the complete old directory back and deletes stale
staging folders of dead processes. Every folder and file honours the umask (no forced 0600 / 0700).

`exclusive_lock(path, what)` takes a non-blocking `fcntl` lock or fails with a clear message, and
`path_fingerprint(spec)` identifies a model directory by its content (see docs/EVALUATION.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lingualift.errors import LinguaLiftError

STAGING, OLD = "staging", "old"


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike, directory: bool = False) -> None:
    """`mkstemp` / `mkdtemp` create 0600 / 0700; give the path the mode a plain open / mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """`tempfile.mkdtemp` in `parent` with the umask's permissions."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    honour_umask(path, directory=True)
    return path


def _sidecars(target: Path, kind: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.{kind}-*"))


def _owner_alive(path: Path) -> bool:
    """Sidecar names carry the writer's pid: `.NAME.KIND-PID-RANDOM`."""
    try:
        pid = int(path.name.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(target: str | os.PathLike) -> None:
    """Repair what a killed `replace_directory` left: restore a lost `target`, delete stale staging folders."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    olds = [p for p in _sidecars(target, OLD) if not _owner_alive(p)]
    try:
        if olds and not target.exists():
            os.rename(olds.pop(), target)  # the kill fell between the two renames: keep the complete old one
        for stale in olds + [p for p in _sidecars(target, STAGING) if not _owner_alive(p)]:
            shutil.rmtree(stale, ignore_errors=True)
        legacy = target.with_name(f".{target.name}.tmp")  # staging name of earlier versions
        if legacy.is_dir():
            shutil.rmtree(legacy, ignore_errors=True)
    except OSError:
        pass  # a read-only location: nothing to repair there, loading reports what is missing


@contextlib.contextmanager
def replace_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success it atomically becomes `target` (the old one is removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = make_temp_dir(target.parent, f".{target.name}.{STAGING}-{os.getpid()}-")
    try:
        yield staging
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{OLD}-{os.getpid()}-{staging.name.rsplit('-', 1)[-1]}")
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive `fcntl` lock on `path` or fail at once naming `what`.

    `path` may be a folder (locked through a read-only descriptor: nothing is written into it) or a file
    (created if needed)."""
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LinguaLiftError(f"{what}: another lingualift process is using it (lock on {path} is held); "
                                  "wait for it to finish or choose another folder") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- fingerprints

_WHOLE_FILE_LIMIT = 64 << 20  # files up to this size are hashed whole; larger ones by size, head and tail
_SAMPLE = 1 << 20


def _file_digest(path: Path, digest) -> None:
    size = path.stat().st_size
    digest.update(f"{size}\0".encode())
    with open(path, "rb") as handle:
        if size <= _WHOLE_FILE_LIMIT:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(handle.read(_SAMPLE))
            handle.seek(size // 2)
            digest.update(handle.read(_SAMPLE))
            handle.seek(size - _SAMPLE)
            digest.update(handle.read(_SAMPLE))


def path_fingerprint(spec: str | os.PathLike) -> dict:
    """What identifies a model: its resolved path and a digest of its files (or the spec if not a path).

    Small files (configs, tokenizers, alignment layers, adapters) are hashed whole; weight files larger
    than 64 MiB by their size and three 1 MiB samples, so a 7B checkpoint is fingerprinted in
    milliseconds. A stage-1 checkpoint names the frozen parts it refers to in its config.json, so
    that reference is covered too.
    """
    path = Path(str(spec))
    if not path.exists():
        return {"spec": str(spec)}
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(path).as_posix() if file != path else file.name
        if any(part.startswith(".") for part in Path(relative).parts):
            continue  # locks, staging folders
        digest.update(relative.encode() + b"\0")
        _file_digest(file, digest)
    return {"path": str(path.resolve()), "content": digest.hexdigest()[:16]}


def digest(obj) -> str:
    """A short stable digest of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
