"""The evaluation runner: batched, resumable generation and scoring with bootstrap confidence intervals.

Layout of a run directory:
    run.json                          run identity: model name, resolved path and content fingerprint,
                                      prompt template and every generation setting (checked on resume)
    predictions/<task>/<lang>.jsonl   one record per example: id, prompt, output, extracted, gold, correct
    results.json / results.md / results.png   (report.write_eval_report)

Predictions are appended (and fsync'ed) chunk by chunk, so a killed run loses at most one batch; on
resume, finished examples are read back by id and skipped, and a truncated last line is dropped and
recomputed. At the end every language's file is rewritten atomically in the data's original order, so an
interrupted-and-resumed run ends with byte-identical files; records beyond a run's `limit` (from an earlier,
larger run) are kept after them, never thrown away. Batches pool the pending examples of all
languages, longest prompt first (full batches, less padding); batching never changes results, only speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lingualift.checkpoint import digest, locked_folder, path_fingerprint
from lingualift.errors import LinguaLiftError
from lingualift.io import check_output_dir, read_json, write_json, write_jsonl
from lingualift.eval.tasks import TIERS, Example, Task, get_task, load_examples, tier_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding options; `None` means the task's default (stop strings, max new tokens)."""

    max_new_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


def predictions_path(out_dir: str | Path, task: str, lang: str) -> Path:
    return Path(out_dir) / "predictions" / task / f"{lang}.jsonl"


_WHAT = {"model": "model name", "model_id": "model (path or checkpoint content)", "prompt_template": "prompt template",
         "generation": "generation settings"}


def run_identity(generator, settings: GenerationSettings, model_spec: str | os.PathLike | None = None) -> dict:
    """What a run directory's predictions depend on: the model (resolved path + content fingerprint of its
    files, not just its folder name: every trained checkpoint is called `final`), the prompt template, every
    field of the generation settings (new fields are covered without code changes), the backend and the
    precision the LLM decodes in."""
    from lingualift.model.components import LLM, model_location

    spec = model_spec if model_spec is not None else getattr(generator, "spec", generator.name)
    return {"model": generator.name, "model_id": path_fingerprint(model_location(spec, LLM)),
            "prompt_template": generator.rendered_prompt("{question}"),  # chat affixes included
            "generation": {**asdict(settings), "backend": generator.backend, "dtype": generator.dtype}}


def default_run_dir(identity: dict, root: str | os.PathLike = Path("runs") / "eval") -> Path:
    """`runs/eval/<model name>-<12 hex digits of the identity>`: two checkpoints never share a folder."""
    return Path(root) / f"{identity['model']}-{digest(identity)}"


def _check_run_config(out_dir: Path, config: dict) -> None:
    """Refuse to mix predictions made with a different model, template or decoding into one run."""
    path = out_dir / "run.json"
    if path.exists():
        previous = read_json(path)
        changed = sorted(key for key in config if not isinstance(previous, dict) or previous.get(key) != config[key])
        if changed:
            unknown = isinstance(previous, dict) and "dtype" not in previous.get("generation", {})
            raise LinguaLiftError(
                f"{path}: this run directory was made with a different {', '.join(_WHAT.get(k, k) for k in changed)}"
                f"{' (it predates recording the precision, which is therefore unknown)' if unknown else ''}; "
                "delete it or use a new --out directory (or drop --out: the default folder is unique per model and "
                "settings)"
            )
    else:
        write_json(path, config)


@contextlib.contextmanager
def claim_run_dir(out_dir: Path, identity: dict):
    """Own `out_dir` for one evaluation: an exclusive lock, then the run.json check, both atomic together.

    A second process evaluating into the same folder (same model or not) fails at once instead of mixing
    or duplicating records. If the folder was made here and nothing was predicted, it is removed again.
    """
    if not (out_dir / "run.json").exists():  # an evaluation run's own folder has it
        check_output_dir(out_dir, (), "evaluation run folder", writer="an evaluation run",
                         advice=", or drop --out (the default folder is unique per model and settings)")
    with locked_folder(out_dir, f"run directory {out_dir}", keep=lambda d: any(d.glob("predictions/*/*.jsonl"))):
        _check_run_config(out_dir, identity)
        yield


def read_done(path: Path, *, repair: bool = True, require: tuple[str, ...] = ()) -> dict[str, dict]:
    """Records already saved for one task/language, by id; a truncated last line (killed run) is dropped
    (and cut from the file when `repair`). Each field of `require` must be present (errors name the line)."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        logger.warning("%s: dropping a truncated last line (interrupted run); it will be recomputed", path)
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(keep)
    done = {}
    for line_number, line in enumerate(data[:keep].split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            done[record["id"]] = record
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
            raise LinguaLiftError(
                f"{path}:{line_number}: not a prediction record (JSON object with an 'id'); delete the file to recompute"
            ) from None
        missing = [key for key in require if key not in record]
        if missing:
            raise LinguaLiftError(f"{path}:{line_number}: prediction record lacks field {missing[0]!r}; "
                                  "re-run the evaluation to recompute it")
    return done


def make_record(task: Task, example: Example, prompt: str, output: str) -> dict:
    extracted = task.extract(output, example)
    record = {
        "id": example.id,
        "task": task.name,
        "lang": example.lang,
        "prompt": prompt,
        "output": output,
        "extracted": extracted,
        "gold": example.gold,
        "correct": task.is_correct(extracted, example.gold),
    }
    if example.choices:
        record["choices"] = list(example.choices)
    return record


def _generation_options(task: Task, settings: GenerationSettings) -> dict:
    return dict(
        max_new_tokens=settings.max_new_tokens or task.max_new_tokens,
        stop=list(settings.stop if settings.stop is not None else task.stop),
        do_sample=settings.do_sample,
        temperature=settings.temperature,
        top_p=settings.top_p,
    )


def generate_predictions(
    generator,
    work: list[tuple[Task, str, list[Example]]],
    out_dir: Path,
    settings: GenerationSettings = GenerationSettings(),
    batch_size: int = 16,
    progress: bool = True,
) -> dict[tuple[str, str], list[dict]]:
    """Generate (or reuse) the predictions of every (task, language, examples) slice in `work`.

    Pending questions of all slices that share decoding options are pooled and batched longest first: a few
    questions per language would leave the batch (HF) or the engine's scheduler (vLLM) half empty and wait on
    each language's longest answer. Each chunk's records are appended to their own language's file, so a kill
    loses at most one chunk; returns each slice's records in the data's order.
    """
    done: dict[tuple[str, str], dict[str, dict]] = {}
    groups: dict[str, list[tuple[Task, str, Example]]] = {}
    for task, lang, examples in work:
        path = predictions_path(out_dir, task.name, lang)
        done[task.name, lang] = records = read_done(path)
        for example in examples:
            record = records.get(example.id)
            if record is None:
                groups.setdefault(json.dumps(_generation_options(task, settings)), []).append((task, lang, example))
            elif record.get("gold") != example.gold:
                raise LinguaLiftError(
                    f"{path}: record {example.id!r} has gold {record.get('gold')!r} but the data says "
                    f"{example.gold!r}; the data changed - delete the file to recompute"
                )
            elif "prompt" in record and record["prompt"] != generator.rendered_prompt(example.question):
                raise LinguaLiftError(
                    f"{path}: record {example.id!r} was generated for another question than the data now holds; "
                    "the data changed - delete the file to recompute"
                )
    bar = tqdm(total=sum(map(len, groups.values())), desc="generate", unit="ex", disable=not progress or not groups)
    for key, pending in groups.items():
        options = json.loads(key)
        pending.sort(key=lambda item: -len(item[2].question))
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            outputs = generator.generate([ex.question for _, _, ex in chunk], **options, batch_size=batch_size)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"generator returned {len(outputs)} outputs for {len(chunk)} questions")
            lines: dict[Path, list[str]] = {}
            for (task, lang, example), output in zip(chunk, outputs):
                record = make_record(task, example, generator.rendered_prompt(example.question), output)
                done[task.name, lang][example.id] = record
                lines.setdefault(predictions_path(out_dir, task.name, lang), []).append(
                    json.dumps(record, ensure_ascii=False) + "\n")
            for path, new_lines in lines.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write("".join(new_lines))
                    handle.flush()
                    os.fsync(handle.fileno())
            bar.update(len(chunk))
    bar.close()
    results = {}
    for task, lang, examples in work:
        records = done[task.name, lang]
        results[task.name, lang] = [records[ex.id] for ex in examples]
        asked = {ex.id for ex in examples}
        # Data order, atomic; records beyond this run's limit (an earlier, larger run) are kept after them.
        write_jsonl(predictions_path(out_dir, task.name, lang),
                    results[task.name, lang] + [r for key, r in records.items() if key not in asked])
    return results


def evaluate(
    generator,
    plan: list[tuple[Task, list[str]]],
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    limit: int | None | dict[str, int | None] = None,
    batch_size: int = 16,
    settings: GenerationSettings = GenerationSettings(),
    download: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    model_spec: str | os.PathLike | None = None,
) -> dict:
    """Run every (task, languages) pair of `plan` and return the results dict (see `summarize`).

    `plan` comes from `tasks.parse_task_langs`; `limit` caps the examples per language, for all tasks or per
    task name; reports are written by `report.write_eval_report`. `model_spec` (the checkpoint path or hub id
    the generator was loaded from) identifies the model in run.json; see `run_identity`.
    """
    out_dir = Path(out_dir)
    identity = run_identity(generator, settings, model_spec)
    limits = limit if isinstance(limit, dict) else {task.name: limit for task, _ in plan}
    pairs = list({(task.name, lang): (task, lang) for task, langs in plan for lang in langs}.values())  # repeats once
    # Load everything first so that a missing or malformed file fails before anything is written.
    work = [(task, lang, load_examples(task, lang, data_dir, limits[task.name], download)) for task, lang in pairs]
    if not work:
        raise LinguaLiftError("nothing to evaluate: no task/language pairs (check --tasks and --langs)")
    with claim_run_dir(out_dir, identity):
        predictions = generate_predictions(generator, work, out_dir, settings, batch_size, progress)
    records: dict[str, dict[str, list[dict]]] = {}
    for (task_name, lang), done in predictions.items():
        accuracy = sum(r["correct"] for r in done) / len(done)
        logger.info("%s/%s: accuracy %.1f%% over %d examples", task_name, lang, 100 * accuracy, len(done))
        records.setdefault(task_name, {})[lang] = done
    return summarize(records, model=generator.name, n_bootstrap=n_bootstrap, seed=seed)


# --- scoring and statistics -----------------------------------------------------------------------------


def rescore(records: list[dict]) -> list[dict]:
    """Re-extract and re-score saved records with the current extractors (e.g. after a fix)."""
    rescored = []
    for record in records:
        task = get_task(record["task"])
        extracted = task.extract(record["output"], record)
        rescored.append({**record, "extracted": extracted, "correct": task.is_correct(extracted, record["gold"])})
    return rescored


SCORED_FIELDS = ("task", "output", "gold")


def load_run(out_dir: str | Path, *, repair: bool = True) -> dict[str, dict[str, list[dict]]]:
    """All saved predictions of a run directory: task → language → records."""
    files = sorted(Path(out_dir).glob("predictions/*/*.jsonl"))
    if not files:
        raise LinguaLiftError(f"{out_dir}: no predictions/<task>/<lang>.jsonl files; is this a run directory?")
    run: dict[str, dict[str, list[dict]]] = {}
    for path in files:
        run.setdefault(path.parent.name, {})[path.stem] = list(read_done(path, repair=repair).values())
    return run


def bootstrap_accuracies(correct: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean of a 0/1 vector (a binomial draw is the exact resampling law)."""
    n = len(correct)
    return rng.binomial(n, correct.mean(), size=n_bootstrap) / n


def percentile_interval(samples: np.ndarray) -> list[float]:
    """95% percentile interval of bootstrap replicates, rounded to 12 decimals: the replicates are averages of
    0/1 outcomes, and floating-point sums leave noise (-1e-18) that would print a bound of exactly 0 as -0.0."""
    low, high = np.percentile(samples, [2.5, 97.5])
    return [round(float(low), 12) + 0.0, round(float(high), 12) + 0.0]  # + 0.0 turns -0.0 into 0.0


def summarize(
    records: dict[str, dict[str, list[dict]]], *, model: str = "", n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """Accuracy per language, per resource tier and overall (macro averages over languages), each with a
    95% percentile-bootstrap interval; tier and overall intervals resample every language independently."""
    rng = np.random.default_rng(seed)
    results = {"model": model, "n_bootstrap": n_bootstrap, "tasks": {}}
    for task_name, by_lang in records.items():
        languages, draws = {}, {}
        for lang, recs in by_lang.items():
            correct = np.array([bool(r["correct"]) for r in recs], dtype=float)
            draws[lang] = bootstrap_accuracies(correct, n_bootstrap, rng)
            languages[lang] = {
                "n": len(recs),
                "correct": int(correct.sum()),
                "accuracy": float(correct.mean()),
                "ci95": percentile_interval(draws[lang]),
                "tier": tier_of(lang),
            }
        groups = {tier: [l for l in languages if languages[l]["tier"] == tier] for tier in (*TIERS, "unranked")}
        tiers = {}
        for tier, langs in groups.items():
            if langs:
                tiers[tier] = _macro(langs, languages, draws)
        results["tasks"][task_name] = {
            "languages": languages,
            "tiers": tiers,
            "overall": _macro(list(languages), languages, draws),
        }
    return results


def _macro(langs: list[str], languages: dict, draws: dict) -> dict:
    return {
        "languages": langs,
        "accuracy": float(np.mean([languages[l]["accuracy"] for l in langs])),
        "ci95": percentile_interval(np.mean([draws[l] for l in langs], axis=0)),
    }


def paired_differences(
    records_a: dict[str, dict[str, list[dict]]], records_b: dict[str, dict[str, list[dict]]], *,
    n_bootstrap: int = 1000, seed: int = 0,
) -> dict:
    """Accuracy of run A minus run B on the items both answered, per language, tier and overall.

    Paired: every bootstrap replicate resamples the shared item ids of a language once and scores both runs
    on that sample, so the interval reflects the difference, not two independent noises (much narrower when
    the runs agree on most items). Tier / overall values are macro averages over languages, as in `summarize`.
    """
    rng = np.random.default_rng(seed)
    out = {"n_bootstrap": n_bootstrap, "tasks": {}}
    for task_name in sorted(set(records_a) & set(records_b)):
        languages, draws = {}, {}
        for lang in sorted(set(records_a[task_name]) & set(records_b[task_name])):
            a = {r["id"]: bool(r["correct"]) for r in records_a[task_name][lang]}
            b = {r["id"]: bool(r["correct"]) for r in records_b[task_name][lang]}
            shared = sorted(set(a) & set(b))
            if not shared:
                continue
            delta = np.array([float(a[i]) - float(b[i]) for i in shared])
            samples = rng.integers(0, len(shared), size=(n_bootstrap, len(shared)))
            draws[lang] = delta[samples].mean(1)
            languages[lang] = {"n": len(shared), "difference": float(delta.mean()),
                               "ci95": percentile_interval(draws[lang]),
                               "a_only": int((delta > 0).sum()), "b_only": int((delta < 0).sum()),
                               "tier": tier_of(lang)}
        if not languages:
            continue
        tiers = {}
        for tier in (*TIERS, "unranked"):
            langs = [lang for lang in languages if languages[lang]["tier"] == tier]
            if langs:
                tiers[tier] = _macro_difference(langs, languages, draws)
        out["tasks"][task_name] = {"languages": languages, "tiers": tiers,
                                   "overall": _macro_difference(list(languages), languages, draws)}
    return out


def _macro_difference(langs: list[str], languages: dict, draws: dict) -> dict:
    return {"languages": langs, "difference": float(np.mean([languages[l]["difference"] for l in langs])),
            "ci95": percentile_interval(np.mean([draws[l] for l in langs], axis=0))}
