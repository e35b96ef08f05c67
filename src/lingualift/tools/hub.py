"""Sharing a LinguaLIFT checkpoint on the Hugging Face Hub: a generated model card and the upload.

`model_card(path, results)` describes a checkpoint from what it carries (base models, each training stage and
its settings, the data, `lingualift eval` results when given); `push_checkpoint` checks that the checkpoint is
self-contained, stages it with its card beside the original (hard links) and uploads it with `HfApi`. Loading
by hub id is the checkpoint owner's (`checkpoint.resolve_model_spec`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lingualift.checkpoint import (
    ADAPTER_DIR,
    ALIGNMENT_FILE,
    ASSET_MARKER,
    CONFIG_FILE,
    ENCODER_DIR,
    ENCODER_TOKENIZER_DIR,
    FINAL_DIR,
    LINGUALIFT,
    LLM_DIR,
    LLM_TOKENIZER_DIR,
    LOG_FILE,
    STAGING,
    TRAIN_CONFIG_FILE,
    checkpoint_kind,
    is_hub_id,
    make_temp_dir,
    missing_parts,
    read_model_config,
    recover,
)
from lingualift.errors import LinguaLiftError


def _run_configs(path: Path) -> list[tuple[Path, dict]]:
    """The training configs behind a checkpoint, first stage first: `OUTPUT_DIR/train_config.yaml` next to
    `OUTPUT_DIR/final`, then the one of the checkpoint its `model.init_from` names, and so on."""
    from lingualift.schema import load_yaml

    found, seen, current = [], set(), path
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        file = current / TRAIN_CONFIG_FILE if current.name != FINAL_DIR else current.parent / TRAIN_CONFIG_FILE
        if not file.is_file():
            break
        try:
            config = load_yaml(file.read_text(encoding="utf-8"), str(file))
        except UnicodeDecodeError as exc:
            raise LinguaLiftError(f"{file}: not a readable training config ({exc.reason}); restore or delete it") \
                from None
        if not isinstance(config, dict):
            break
        found.insert(0, (file.parent, config))
        init_from = (config.get("model") or {}).get("init_from")
        current = Path(init_from) if init_from else None
    return found


def _base_model(spec, role: str) -> tuple[str, str | None]:
    """(what the card shows, hub id for `base_model` or None) for the encoder / LLM spec a run started from."""
    from lingualift.tools import assets

    if not spec:
        return "not recorded", None
    spec = str(spec)
    asset = {"encoder": assets.ENCODER, "llm": assets.LLM}[role] if spec == "default" else spec
    try:
        asset = json.loads((Path(spec) / ASSET_MARKER).read_text(encoding="utf-8")).get("asset", asset)
    except (OSError, ValueError, AttributeError):
        pass  # not a built asset folder
    if asset in assets.UPSTREAM:
        return assets.UPSTREAM[asset], assets.UPSTREAM[asset]
    if is_hub_id(spec):
        return spec, spec
    if Path(spec).exists():
        return f"a local model (`{Path(spec).name}`)", None
    return f"the lingualift preset `{spec}`", None


def _count_examples(config: dict) -> int | None:
    data = config.get("data") or {}
    train = Path(str(data.get("train", "")))
    if not train.is_file():
        return None
    with open(train, "rb") as handle:
        count = sum(1 for line in handle if line.strip())
    return min(count, data["max_examples"]) if data.get("max_examples") else count


def _last_step(run_dir: Path) -> int | None:
    try:
        lines = [line for line in (run_dir / LOG_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
        return int(json.loads(lines[-1])["step"]) if lines else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _trained_parts(config: dict) -> str:
    """What a stage trained: its policy's groups (or `model.trainable`), the LLM marked when tuned with LoRA."""
    from lingualift.train.stages import policy_for

    try:
        _, policy = policy_for(config.get("method"), config.get("stage"), TRAIN_CONFIG_FILE)
    except LinguaLiftError:
        return "–"
    lora = (config.get("training") or {}).get("tuning") == "lora"
    groups = (config.get("model") or {}).get("trainable") or policy.trainable
    return ", ".join(f"{group} (LoRA)" if group == "llm" and lora else group for group in groups)


def _shareable_config(config: dict) -> dict:
    """A training config without this machine's paths (output folder, data file locations, model folders)."""
    model = {k: v for k, v in (config.get("model") or {}).items() if k not in ("encoder", "llm", "init_from")}
    data = dict(config.get("data") or {})
    if data.get("train"):
        data["train"] = Path(str(data["train"])).name
    data.pop("data_dir", None)
    codeswitch = data.get("codeswitch")
    if isinstance(codeswitch, dict) and isinstance(codeswitch.get("lexicons"), dict):
        data["codeswitch"] = {**codeswitch, "lexicons": {lang: _file_name(spec)
                                                         for lang, spec in codeswitch["lexicons"].items()}}
    training = {k: v for k, v in (config.get("training") or {}).items()
                if k not in ("output_dir", "resume_from_checkpoint", "resume_override", "tensorboard")}
    return {"method": config.get("method"), "stage": config.get("stage"), "model": model, "data": data,
            "training": training}


def _file_name(spec) -> str:
    """A lexicon spec without this machine's folders: `/home/me/lex/en-de.tsv` → `en-de.tsv`; `muse:de` stays."""
    text = str(spec)
    return text if ":" in text and not Path(text).exists() else Path(text).name


def read_eval_results(path: str | os.PathLike) -> dict:
    """A `results.json` written by `lingualift eval` (checked: the card's table is built from it)."""
    from lingualift.io import read_json

    results = read_json(path)
    tasks = results.get("tasks") if isinstance(results, dict) else None
    if not isinstance(tasks, dict) or not tasks or not all(
            isinstance(task, dict) and isinstance(task.get("overall"), dict) for task in tasks.values()):
        raise LinguaLiftError(f"{path}: not a results.json of `lingualift eval` (no tasks with an overall accuracy); "
                              "pass the results.json from an eval run folder")
    return results


def _results_section(results: dict) -> tuple[str, list[str]]:
    """A per-task accuracy table (overall and per resource tier) and the languages evaluated."""
    from lingualift.eval.report import TIER_ORDER, ci_text, markdown_table, pct

    rows, languages = [], set()
    for name, task in results["tasks"].items():
        tiers = task.get("tiers") or {}
        langs = task.get("languages") or {}
        languages.update(langs)
        rows.append([name, len(langs), f"{pct(task['overall'].get('accuracy'))} {ci_text(task['overall'].get('ci95'))}",
                     *(pct(tiers[t]["accuracy"]) if t in tiers else "–" for t in TIER_ORDER)])
    table = markdown_table(["task", "languages", "overall", *TIER_ORDER], rows)
    text = ("## Evaluation\n\nAccuracy in % (`lingualift eval`), macro-averaged over languages, with 95% bootstrap "
            f"intervals; tiers group languages by resource level.\n\n{table}")
    return text, sorted(languages)


def model_card(path: str | os.PathLike, results: dict | str | os.PathLike | None = None, *,
               repo_id: str | None = None, license: str | None = None) -> str:
    """The README.md a shared checkpoint carries: HF metadata (base models, library, tags, languages) and what
    the model is: architecture, training stages and their settings (from the run's `train_config.yaml`),
    data, and evaluation results when a `lingualift eval` results.json is given."""
    import yaml
    from huggingface_hub import ModelCardData

    from lingualift.eval.report import markdown_table

    path = Path(path)
    config = read_model_config(path) or {}
    if isinstance(results, (str, os.PathLike)):
        results = read_eval_results(results)
    runs = _run_configs(path)
    first = runs[0][1].get("model", {}) if runs else {}
    bases = {role: _base_model(first.get(role) or config.get(role), role) for role in ("encoder", "llm")}
    stage_tags = dict.fromkeys(f"{run.get('method')}-{run.get('stage')}" for _, run in runs)
    evaluation, languages = _results_section(results) if results else ("", [])
    metadata = ModelCardData(
        library_name="lingualift", license=license, language=languages or None,
        base_model=[hub for _, hub in bases.values() if hub] or None,
        tags=["lingualift", "multilingual", "cross-lingual-transfer", *stage_tags],
    )
    name = repo_id or path.name
    llm_weights = "base LLM + LoRA adapter (`llm_adapter/`)" if (path / ADAPTER_DIR).is_dir() else "stored in `llm/`"
    lines = [f"---\n{metadata.to_yaml()}\n---\n", f"# {name}\n",
             "A LinguaLIFT model: a frozen multilingual encoder reads the prompt, "
             "a small trained language alignment layer turns its states into a soft prompt, and a decoder LLM "
             "answers.\n",
             "## Model\n",
             f"- encoder: {bases['encoder'][0]}",
             f"- LLM: {bases['llm'][0]}",
             f"- alignment layer: `{config.get('alignment')}`"
             + (f" {json.dumps(config['alignment_kwargs'])}" if config.get("alignment_kwargs") else ""),
             f"- the LLM also sees the query tokens: {bool(config.get('llm_sees_query'))}",
             f"- LLM weights: {llm_weights}\n"]
    if runs:
        lines += ["## Training\n"]
        rows = [[f"`{run.get('method')}`", f"`{run.get('stage')}`",
                 Path(str((run.get("data") or {}).get("train", ""))).name or "–",
                 _count_examples(run) or "not recorded", _last_step(run_dir) or "not recorded",
                 _trained_parts(run)] for run_dir, run in runs]
        lines += [markdown_table(["method", "stage", "train data", "examples", "steps", "trained"], rows),
                  "Configuration of the last stage (paths of the training machine removed):\n",
                  "```yaml\n" + yaml.safe_dump(_shareable_config(runs[-1][1]), sort_keys=False,
                                               allow_unicode=True) + "```\n"]
    else:
        lines += ["## Training\n", "No training config was found next to the checkpoint.\n"]
    if evaluation:
        lines.append(evaluation)
    reference = repo_id or "OWNER/NAME"
    lines += ["## Use\n", "With lingualift installed:\n", "```bash\n"
              f"lingualift generate --model {reference} \"Wie viele Beine haben 3 Hunde?\"\n"
              f"lingualift eval --model {reference} --tasks mgsm\n```\n",
              "```python\nfrom lingualift.model.modeling import LinguaLiftModel\n\n"
              f"model = LinguaLiftModel.from_pretrained(\"{reference}\")\n```\n"]
    return "\n".join(lines)


def _link_or_copy(source: str, target: str) -> None:
    """Hard links cost no space on the same file system; elsewhere the file is copied."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _check_safetensors(file: Path, what: str) -> None:
    """The header of a safetensors file parses (a truncated or foreign file fails here, not on the hub)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt"):
            pass
    except Exception as exc:  # safetensors' own error type for a damaged header
        raise LinguaLiftError(f"{file}: unreadable {what} ({str(exc).splitlines()[0][:120]}); the checkpoint is "
                              "damaged, train or copy it again") from None


def _check_weights(folder: Path, names: tuple[str, ...], what: str) -> None:
    present = [folder / name for name in names if (folder / name).is_file()]
    if not present:
        raise LinguaLiftError(f"{folder}: no {what} weights ({' or '.join(names[:2])}); the checkpoint is incomplete, "
                              "save it again")
    for file in present:
        if file.suffix == ".safetensors":
            _check_safetensors(file, f"{what} weights")


def check_shareable(path: str | os.PathLike) -> Path:
    """The checkpoint folder if it can be shared: a LinguaLIFT checkpoint whose parts are all there and readable
    (weights' headers, both tokenizers) or, for parts it refers to (stage 1, LoRA stage 2), resolvable here; such
    a checkpoint is shared as a self-contained copy. Reads no weights."""
    from lingualift.model import components

    path = Path(path)
    if not path.is_dir():
        raise LinguaLiftError(f"{path}: not a folder; give a LinguaLIFT checkpoint folder (e.g. a run's final/)")
    recover(path)
    kind = checkpoint_kind(path)
    if kind != LINGUALIFT:
        raise LinguaLiftError(f"{path}: not a LinguaLIFT checkpoint ({kind or 'no config.json'}); give a folder "
                              "written by LinguaLiftModel.save_pretrained (a run's final/)")
    config = read_model_config(path) or {}
    if not (path / ALIGNMENT_FILE).is_file():
        raise LinguaLiftError(f"{path}: no {ALIGNMENT_FILE}; the checkpoint is incomplete, save it again")
    _check_safetensors(path / ALIGNMENT_FILE, "alignment layer")
    for role, folder in (("encoder", ENCODER_DIR), ("llm", LLM_DIR)):
        spec = config.get(role)
        if (path / folder).is_dir():
            _check_weights(path / folder, _WEIGHT_FILES, role)
        elif isinstance(spec, str) and spec:
            if Path(spec).is_absolute() and not Path(spec).exists():
                raise LinguaLiftError(f"{path}: its {role} ({spec}) is neither stored in the checkpoint nor on this "
                                      "machine; push it from the machine it was trained on")
            components.check_spec(spec, role, f"{path / CONFIG_FILE}: {role}")
        else:
            raise LinguaLiftError(f"{path}: its {role} is neither stored in {folder}/ nor named in {CONFIG_FILE}; "
                                  "the checkpoint is incomplete, save it again")
    if (path / ADAPTER_DIR).is_dir():
        _check_weights(path / ADAPTER_DIR, _ADAPTER_WEIGHTS, "LoRA adapter")
    for folder in (ENCODER_TOKENIZER_DIR, LLM_TOKENIZER_DIR):
        if not (path / folder).is_dir():
            raise LinguaLiftError(f"{path}: no {folder}/; the checkpoint is incomplete, save it again")
        components.load_tokenizer(str(path / folder), f"{path / folder}")
    return path


def check_push(path: str | os.PathLike, repo_id: str, results: str | os.PathLike | None = None) -> Path:
    """Every check `push_checkpoint` makes before it uploads (`push --dry-run` runs exactly these): the checkpoint
    (`check_shareable`), the repository id, the results file, and that uploads are possible (HF_HUB_OFFLINE
    unset)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    path = check_shareable(path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise LinguaLiftError(f"{repo_id}: not a hub repo id ({str(exc).splitlines()[0]}); use OWNER/NAME") from None
    if results is not None:
        read_eval_results(results)
    if constants.is_offline_mode():
        raise LinguaLiftError(f"{repo_id}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to push")
    return path


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the hub client raises for a failed request: its HTTP errors (an OSError) and its transport's (no
    network, DNS, timeouts), whichever HTTP library this huggingface_hub version is built on."""
    from huggingface_hub.errors import HfHubHTTPError

    transport = tuple(base for base in HfHubHTTPError.__mro__ if base.__name__ == "HTTPError")
    return (OSError, ValueError, *transport)


def push_checkpoint(path: str | os.PathLike, repo_id: str, *, private: bool = False,
                    commit_message: str | None = None, results: str | os.PathLike | None = None,
                    license: str | None = None) -> str:
    """Upload a self-contained LinguaLIFT checkpoint with a generated model card; returns the repo URL.

    The checkpoint folder is left untouched: the upload is staged in a hidden sibling folder of hard links
    plus README.md (a killed push leaves only a staging folder that `recover` deletes)."""
    from huggingface_hub import HfApi

    path = check_push(path, repo_id, results)
    card = model_card(path, results, repo_id=repo_id, license=license)
    try:
        staging = make_temp_dir(path.parent, f".{path.name}.{STAGING}-{os.getpid()}-")
    except OSError:  # a read-only location: stage (by copying) in the temporary folder
        staging = Path(tempfile.mkdtemp(prefix="lingualift-push-"))
    try:
        if missing_parts(path):  # refers to frozen parts elsewhere: upload a self-contained copy
            from lingualift.model.modeling import LinguaLiftModel

            LinguaLiftModel.from_pretrained(path).save_pretrained(staging, include_frozen=True)
        else:
            shutil.copytree(path, staging, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".*"),
                            dirs_exist_ok=True)
        from lingualift.io import atomic_write

        with atomic_write(staging / "README.md") as handle:
            handle.write(card)
        api = HfApi(library_name="lingualift")
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=staging,
                              commit_message=commit_message or f"Upload LinguaLIFT checkpoint {path.name}")
        except _network_errors() as exc:  # HfHubHTTPError (auth, permissions), no network, no token
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LinguaLiftError(f"{repo_id}: upload failed ({reason[:160]}); log in with `hf auth login` (or set "
                                  "HF_TOKEN) and check the network and your rights on the repo") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(url)
