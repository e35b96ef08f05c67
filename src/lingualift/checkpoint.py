"""Directories written as a whole: one staged, atomically swapped writer; locks; content fingerprints.

`replace_directory(target)` yields an empty hidden staging folder next to `target`; when the block
succeeds the old `target` (if any) is renamed aside, the staging folder is renamed to `target` and the
old one is deleted. A kill at any point leaves either the complete old or the complete new directory:
the only window without `target` (between the two renames) is repaired by `recover(target)`, which
every writer and loader calls first: it renames the complete old directory back and deletes stale
staging folders of dead processes. Every folder and file honours the umask (no forced 0600 / 0700).

`exclusive_lock(path, what)` takes a non-blocking `fcntl` lock or fails with a clear message, and
`path_fingerprint(spec)` identifies a model directory by its content (see docs/EVALUATION.md).

This module is also the one place that knows the checkpoint formats: the file and folder names of a
LinguaLIFT checkpoint, of a plain-LLM (sft) run and of a step checkpoint, `checkpoint_kind(path)` (what a
directory is), and the step-checkpoint helpers the training loop calls (list, latest, rotate, read).
Checkpoints travel the Hugging Face way: `resolve_model_spec` / `hub_snapshot` turn a hub id into its
folder in the HF cache (offline once downloaded); `tools/hub.py` uploads one with its model card.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from lingualift.errors import LinguaLiftError

STAGING, OLD = "staging", "old"

# --------------------------------------------------------------------------- format names
CONFIG_FILE = "config.json"
LINGUALIFT_MODEL_TYPE = "lingualift"  # `model_type` in a LinguaLIFT checkpoint's config.json
ALIGNMENT_FILE = "alignment.safetensors"
ENCODER_DIR, LLM_DIR, ADAPTER_DIR = "encoder", "llm", "llm_adapter"
ENCODER_TOKENIZER_DIR, LLM_TOKENIZER_DIR = "encoder_tokenizer", "llm_tokenizer"
ADAPTER_CONFIG = "adapter_config.json"  # peft's marker of a LoRA adapter folder
RUN_METADATA = "lingualift.json"  # written next to plain-LLM checkpoints (sft): prompt template etc.
ASSET_MARKER = "lingualift-asset.json"  # provenance of an embedded default model (tools.assets)
# A training run folder: OUTPUT_DIR/{train_config.yaml, train_log.jsonl, final/, checkpoints/step-N/}.
TRAIN_CONFIG_FILE, LOG_FILE, FINAL_DIR = "train_config.yaml", "train_log.jsonl", "final"
CHECKPOINTS_DIR, STEP_PREFIX = "checkpoints", "step-"
TRAINABLE_FILE, STATE_FILE, TRAINER_STATE_FILE = "trainable.safetensors", "state.pt", "trainer_state.json"

LINGUALIFT, LORA_ADAPTER, HF_MODEL, STEP_CHECKPOINT = "lingualift", "lora-adapter", "hf-model", "step-checkpoint"


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
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        failed_write = _failed_write(exc, target)
        if failed_write is not None:
            raise failed_write from exc
        raise


_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def _failed_write(exc: BaseException, target: Path) -> OSError | None:
    """safetensors reports a failed write (disk full, quota, read-only) as its own `SafetensorError`, with the OS
    error only in the text; as an `OSError` about `target` it becomes one `error:` line like any other."""
    if type(exc).__name__ != "SafetensorError":
        return None
    match = _OS_ERROR_CODE.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1) or match.group(2))
    return OSError(code, os.strerror(code), str(target))


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


@contextlib.contextmanager
def locked_folder(path: str | os.PathLike, what: str, *, keep: Callable[[Path], bool]) -> Iterator[Path]:
    """Create the folder `path` (and its missing parents) and hold `exclusive_lock` on it meanwhile. If the body
    fails and `keep(path)` says nothing worth keeping was written, the folders made here are removed again: a
    refused or failed run leaves nothing behind."""
    path = Path(path)
    first_new = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    path.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(path, what):
            yield path
    except BaseException:
        if first_new is not None and not keep(path):
            shutil.rmtree(first_new, ignore_errors=True)
        raise

# --------------------------------------------------------------------------- fingerprints

_CACHED_FROM = 4 << 20  # files at least this big: their sha256 is remembered by (path, size, mtime, ctime, inode)
_CACHE_ENTRIES = 4096  # most recently hashed large files kept in the cache
FINGERPRINT_CACHE = "file-sha256.json"
_SETTLED_SECONDS = 2.0  # a file changed this recently is not remembered: a rewrite within one clock tick keeps
# its mtime and ctime (the "racy git" problem), so only files quiet for longer are trusted by their stat
_MAX_REFERENCE_DEPTH = 8  # a checkpoint naming a checkpoint naming ...: deeper chains are a loop or a mistake


def _stat_key(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes may have: size, mtime, ctime (not settable by users) and inode."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class _Sha256Cache:
    """sha256 of large files, reused while their `_stat_key` is unchanged (a 1 GB LLM is read once, not per run).

    Kept in the lingualift cache as JSON; a missing, damaged or read-only cache only costs re-hashing, and a lost
    update between two processes likewise."""

    def __init__(self):
        from lingualift.paths import cache_root

        self.path = cache_root() / FINGERPRINT_CACHE
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            entries = {}
        self.entries = entries if isinstance(entries, dict) else {}
        self.changed = False

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        if stat.st_size < _CACHED_FROM:
            return _sha256(file)
        key, state = str(file.resolve()), _stat_key(stat)
        entry = self.entries.pop(key, None)
        if isinstance(entry, list) and entry[:-1] == state:
            self.entries[key] = entry  # re-inserted: most recently used last
            return entry[-1]
        value = _sha256(file)
        settled = max(stat.st_mtime, stat.st_ctime) < time.time() - _SETTLED_SECONDS
        if settled and _stat_key(file.stat()) == state:  # unchanged while it was read
            self.entries[key] = [*state, value]
            self.changed = True
        return value

    def save(self) -> None:
        if not self.changed:
            return
        from lingualift.io import write_json

        kept = dict(list(self.entries.items())[-_CACHE_ENTRIES:])
        with contextlib.suppress(OSError):
            write_json(self.path, kept)  # atomic: a reader sees the old or the new cache


def _sha256(file: Path) -> str:
    from lingualift.io import file_sha256

    return file_sha256(file)


def _read_json_dict(file: Path) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def referenced_parts(path: str | os.PathLike) -> dict[str, str]:
    """The models a checkpoint folder uses without storing them, by role: a stage-1 (or LoRA stage-2) LinguaLIFT
    checkpoint's frozen encoder / LLM (`config.json`), a LoRA adapter's base model (`adapter_config.json`)."""
    path = Path(str(path))
    if not path.is_dir():
        return {}
    config = read_model_config(path)
    if config is not None and config.get("model_type") == LINGUALIFT_MODEL_TYPE:
        return {role: str(config[role]) for role, folder in (("encoder", ENCODER_DIR), ("llm", LLM_DIR))
                if config.get(role) and not (path / folder).is_dir()}
    base = _read_json_dict(path / ADAPTER_CONFIG).get("base_model_name_or_path")
    return {"base": str(base)} if base else {}


def path_fingerprint(spec: str | os.PathLike) -> dict:
    """What identifies a model: its resolved path, a digest of its files' content, and the same for every part it
    refers to (or just the spec when it is not a path: a preset name).

    Every file is hashed whole (sha256); files of 4 MiB and more are hashed once and then remembered by their
    size, mtime, ctime and inode, so a repeat costs a `stat` per file. A stage-1 checkpoint's frozen encoder and
    LLM and a LoRA adapter's base are fingerprinted the same way (`refers_to`): overwriting the LLM a checkpoint
    points at makes it a different model. A hub id is fingerprinted by its cached snapshot, so a new revision
    pushed under the same id is a different model.
    """
    cache = _Sha256Cache()
    try:
        return _fingerprint(spec, cache, depth=0)
    finally:
        cache.save()


def _fingerprint(spec, cache: _Sha256Cache, depth: int) -> dict:
    path = Path(str(spec))
    if not path.exists() and is_hub_id(spec):
        with contextlib.suppress(LinguaLiftError):
            path = hub_snapshot(str(spec))
    if not path.exists():
        return {"spec": str(spec)}
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(path).as_posix() if file != path else file.name
        if any(part.startswith(".") for part in Path(relative).parts):
            continue  # locks, staging folders
        digest.update(f"{relative}\0{cache.sha256(file)}\0".encode())
    fingerprint = {"path": str(path.resolve()), "content": digest.hexdigest()[:16]}
    references = referenced_parts(path)
    if references and depth >= _MAX_REFERENCE_DEPTH:
        raise LinguaLiftError(f"{path}: refers to other checkpoints more than {_MAX_REFERENCE_DEPTH} levels deep "
                              f"(a loop?); check {CONFIG_FILE} / {ADAPTER_CONFIG}")
    if references:
        fingerprint["refers_to"] = {role: _fingerprint(reference, cache, depth + 1)
                                    for role, reference in references.items()}
    return fingerprint


def digest(obj, length: int = 12) -> str:
    """A short stable digest of a JSON-able object (run identities, pipeline fingerprints)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# --------------------------------------------------------------------------- what a directory is


def read_model_config(path: Path) -> dict | None:
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """What a directory holds: `LINGUALIFT`, `LORA_ADAPTER`, `STEP_CHECKPOINT`, `HF_MODEL`, or None.

    Loaders branch on this instead of probing file names themselves."""
    path = Path(str(path))
    if not path.is_dir():
        return None
    config = read_model_config(path)
    if config is not None and config.get("model_type") == LINGUALIFT_MODEL_TYPE:
        return LINGUALIFT
    if (path / ADAPTER_CONFIG).is_file():
        return LORA_ADAPTER
    if (path / TRAINER_STATE_FILE).is_file():
        return STEP_CHECKPOINT
    return HF_MODEL if config is not None else None


def is_lingualift_checkpoint(path: str | os.PathLike) -> bool:
    return checkpoint_kind(path) == LINGUALIFT


def missing_parts(path: str | os.PathLike) -> list[str]:
    """What a LinguaLIFT checkpoint lacks to be self-contained (stage 1 and LoRA runs refer to frozen parts)."""
    needed = (CONFIG_FILE, ALIGNMENT_FILE, ENCODER_DIR, LLM_DIR, ENCODER_TOKENIZER_DIR, LLM_TOKENIZER_DIR)
    return [name for name in needed if not (Path(path) / name).exists()]


def read_run_metadata(path: str | os.PathLike) -> dict:
    """The prompt settings saved next to a plain-LLM checkpoint (sft); {} for any other model."""
    from lingualift.io import read_json

    file = Path(str(path)) / RUN_METADATA
    if not file.is_file():
        return {}
    metadata = read_json(file)
    if not isinstance(metadata, dict):
        raise LinguaLiftError(f"{file}: expected a JSON object of prompt settings; restore or delete it")
    return metadata


# --------------------------------------------------------------------------- step checkpoints


def step_checkpoint_dir(output_dir: str | os.PathLike, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR / f"{STEP_PREFIX}{step}"


def step_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """A run's step checkpoints, oldest first (staging folders and foreign names ignored)."""
    steps = [p for p in (Path(output_dir) / CHECKPOINTS_DIR).glob(f"{STEP_PREFIX}*")
             if p.name[len(STEP_PREFIX):].isdigit()]
    return sorted(steps, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def latest_step_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    steps = step_checkpoints(output_dir)
    return steps[-1] if steps else None


def has_step_checkpoints(output_dir: str | os.PathLike) -> bool:
    return latest_step_checkpoint(output_dir) is not None


def rotate_step_checkpoints(output_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    for old in step_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def write_step_state(staging: Path, trainable: dict, state: dict) -> None:
    """The trained tensors (safetensors) and the optimizer / scheduler / RNG state of one step checkpoint."""
    import torch
    from safetensors.torch import save_file

    save_file(trainable, staging / TRAINABLE_FILE)
    torch.save(state, staging / STATE_FILE)


def write_trainer_state(staging: Path, step: int, total_steps: int, identity: dict) -> None:
    """Written last: its presence marks a step checkpoint (`checkpoint_kind`) and what it may resume."""
    from lingualift.io import write_json

    write_json(staging / TRAINER_STATE_FILE, {"step": step, "total_steps": total_steps, "identity": identity})


def read_trainer_state(path: Path, where: str) -> dict:
    """A step checkpoint's `trainer_state.json`; `where` names the config field that pointed here."""
    from lingualift.io import read_json

    if not (path / TRAINER_STATE_FILE).is_file():
        raise LinguaLiftError(f"{where}: {path} is not a training checkpoint (no {TRAINER_STATE_FILE})")
    state = read_json(path / TRAINER_STATE_FILE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise LinguaLiftError(f"{path / TRAINER_STATE_FILE}: no integer 'step'; not a training checkpoint")
    return state


def load_trainable(path: Path) -> dict:
    """A step checkpoint's trained tensors."""
    from safetensors.torch import load_file

    try:
        return load_file(path / TRAINABLE_FILE)
    except Exception as exc:  # safetensors' own error type: truncated or corrupt file
        raise LinguaLiftError(f"{path / TRAINABLE_FILE}: unreadable ({exc}); delete this checkpoint "
                              "to resume from an earlier one") from None


def first_non_finite(tensors: dict) -> str | None:
    """The name of the first tensor holding NaN or inf (None if all are finite)."""
    import torch

    return next((name for name, tensor in tensors.items()
                 if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)


def last_finite_step_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest step checkpoint whose trained tensors are readable and finite (what a diverged run can resume)."""
    for path in reversed(step_checkpoints(output_dir)):
        try:
            if first_non_finite(load_trainable(path)) is None:
                return path
        except LinguaLiftError:
            continue  # unreadable: not one to resume from either
    return None


def load_training_state(path: Path) -> dict:
    """A step checkpoint's optimizer / scheduler / RNG state, unpickled with `weights_only=True`.

    A checkpoint folder may come from anywhere; a full unpickler would run whatever code the file names.
    """
    import torch

    file = path / STATE_FILE
    try:
        saved = torch.load(file, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise LinguaLiftError(f"{file}: missing; the checkpoint is incomplete, delete it") from None
    except Exception as exc:  # UnpicklingError for forbidden globals, RuntimeError / EOFError for damage
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LinguaLiftError(f"{file}: not a plain training state, refused to load it ({reason[:160]}); "
                              "delete this checkpoint folder and resume from another") from None
    if not isinstance(saved, dict) or not {"optimizer", "scheduler", "rng"} <= set(saved):
        raise LinguaLiftError(f"{file}: expected optimizer, scheduler and rng entries; delete this checkpoint folder")
    return saved


# --------------------------------------------------------------------------- hub ids


def is_hub_id(spec) -> bool:
    """`owner/name` that is not a local path: a local folder of that name always wins."""
    if not isinstance(spec, str) or spec.count("/") != 1 or Path(spec).exists():
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _hub_unavailable(repo_id: str, exc: Exception) -> LinguaLiftError:
    from huggingface_hub import constants

    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if constants.is_offline_mode():
        fix = "download it once with network access (HF_HUB_OFFLINE unset) or give a local path"
    else:
        fix = "check the id and the network (`hf auth login` for a private repo) or give a local path"
    return LinguaLiftError(f"{repo_id}: not a local folder, and not in the Hugging Face cache or reachable on the "
                           f"hub ({reason[:160]}); {fix}")


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of a hub checkpoint: downloaded once, then served from the HF cache (offline too)."""
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=constants.is_offline_mode(),
                                      library_name="lingualift"))
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled
        raise _hub_unavailable(repo_id, exc) from None


def _names_a_folder(spec: str | os.PathLike) -> bool:
    """Whether a missing `spec` is a folder to `recover`, not a preset or hub id: a path with a separator, or a
    bare name whose renamed-aside copy lies beside it (a loader never touches sidecars of a preset's name)."""
    text = os.fspath(spec)
    return isinstance(spec, os.PathLike) or any(sep in text for sep in (os.sep, os.altsep) if sep) \
        or bool(_sidecars(Path(text), OLD))


def resolve_model_spec(spec):
    """What a loader opens: the hub id of a LinguaLIFT checkpoint becomes its local snapshot folder.

    Any other spec (local path, preset, hub id of a plain HF model, which transformers fetches itself) is
    returned as given; only the hub config.json is read to tell them apart. A local folder that a killed writer
    left renamed aside (`recover`) is restored first.
    """
    if isinstance(spec, (str, os.PathLike)) and not Path(spec).exists() and _names_a_folder(spec):
        recover(spec)  # a folder caught between the two renames of a killed `replace_directory` comes back
    if not is_hub_id(spec):
        return spec
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        config_file = hf_hub_download(spec, CONFIG_FILE, local_files_only=constants.is_offline_mode(),
                                      library_name="lingualift")
    except RemoteEntryNotFoundError:
        return spec  # a repo without config.json (adapter, GGUF …): not ours, the model loader decides
    except (OSError, ValueError) as exc:  # not cached while offline, unknown repo, no network
        raise _hub_unavailable(spec, exc) from None
    config = read_model_config(Path(config_file).parent)
    if config is None or config.get("model_type") != LINGUALIFT_MODEL_TYPE:
        return spec
    return hub_snapshot(spec)
