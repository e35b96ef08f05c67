"""The pipeline report: report.md / report.json / report.png and training.png in the output folder.

It leads with what a run of this size can show, then one section per phase. Tables and charts come from
`lingualift.eval.report`; the evaluation and diagnostic details stay in eval/results.md and diagnose/diagnose.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import yaml

from lingualift import __version__
from lingualift.eval.report import (LANGUAGE_HEADERS, TIER_ORDER, ci_text, language_rows, markdown_table,
                                    order_by_tier, pct, tier_bar_chart, tier_cells, write_report)
from lingualift.io import atomic_write, read_json
from lingualift.pipeline.config import PHASES, PipelineConfig


def write_pipeline_report(out: Path, config: PipelineConfig, state: dict, this_run: dict[str, str], *,
                          data_dir: Path, data_dir_origin: str) -> dict[str, Path]:
    """Write the report of the run recorded in `state`; `this_run` says which phases ran now or were reused."""
    settings = config.to_dict()
    phases = state["phases"]
    evaluation = _read_if_present(out / "eval" / "results.json") or {"tasks": {}}
    diagnosis = _read_if_present(out / "diagnose" / "diagnose.json") or {}
    reference = _read_if_present(out / "diagnose" / "reference_llm.json")
    seconds = {name: phases.get(name, {}).get("seconds") for name in PHASES}
    total = sum(v for v in seconds.values() if v)

    transfer = diagnosis.get("transfer")
    parts = [
        "# LinguaLIFT pipeline report\n",
        f"lingualift {__version__}; written {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
        f"config `{config.source}` (effective config below and in `config.yaml`).\n",
        f"- data directory: `{data_dir}` ({data_dir_origin})",
        f"- models: encoder `{config.models.encoder}`, LLM `{config.models.llm}`",
        f"- output directory: `{out}`\n",
        *_headline(transfer, reference, evaluation, config),
        "## Phases and timings\n",
        "Seconds: wall-clock time of the run that computed each phase (a reused phase keeps its time; the "
        "report's own time is recorded in `pipeline_state.json`).\n",
    ]
    rows = [[name, "ran" if this_run.get(name, "ran") == "ran" else "reused (up to date)", _fmt(seconds[name], 1)]
            for name in PHASES]
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
        parts.append(f"Lexicons (MUSE, or induced without parallel data) restricted to the "
                     f"{lex['prompt_vocabulary']} distinct words of the stage-1 "
                     f"prompts. Code-switching: ratio {config.data.codeswitch.ratio}, mixing "
                     f"{config.data.codeswitch.mixing}; {data.get('replaced', 0)} of "
                     f"{data.get('replaceable', 0)} replaceable words replaced "
                     f"({pct(data.get('replacement_rate'))}%).\n")
        rows = [[l, v.get("source", "muse"), v.get("full_words", v.get("muse_words")), v["kept_words"],
                 pct(v["prompt_token_coverage"]), data.get("examples_per_language", {}).get(l, 0)]
                for l, v in lex["languages"].items()]
        parts.append(markdown_table(["lang", "lexicon", "words", "used", "prompt coverage %", "stage-1 examples"],
                                    rows))
        samples = data.get("samples", {})
        if samples:
            parts.append("\nSamples (first 240 characters):\n")
            parts += [f"- `{l}`: {s.replace(chr(10), ' ')}" for l, s in list(samples.items())[:4]]

    parts.append("\n## Training\n")
    rows = []
    for stage in ("stage1", "stage2"):
        s = phases.get(stage, {}).get("summary", {})
        if s:
            rows.append([stage, s["config"]["stage"], s.get("tuning") if stage == "stage2" else "alignment layer",
                         s.get("steps"), s.get("batch_size"), s["config"]["training"].get("learning_rate"),
                         _fmt(s.get("first_loss")), _fmt(s.get("last_loss")), _fmt(seconds.get(stage), 1)])
    parts.append(markdown_table(["phase", "stage", "tuning", "steps", "batch", "lr", "first loss", "last loss",
                                 "seconds"], rows))
    parts.append("\nLoss curves: `training.png`.\n")

    if evaluation.get("tasks"):
        parts += _evaluation_section(evaluation, config)
    if transfer:
        parts += _transfer_section(transfer, reference)
    if diagnosis.get("retrieval"):
        parts.append(f"\nRetrieval of parallel MMWP questions by pooled soft prompt (top-1, mean over languages): "
                     f"{pct(diagnosis['retrieval'].get('mean_accuracy'))}%. Details: `diagnose/diagnose.md`.\n")

    parts.append("\n## Effective configuration\n\n```yaml\n"
                 + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True) + "```\n")
    report_data = {"version": __version__, "config": settings, "data_dir": str(data_dir),
                   "data_dir_origin": data_dir_origin, "seconds": seconds, "total_seconds": total,
                   "phases": {n: p.get("summary") for n, p in phases.items()},
                   "evaluation": evaluation, "diagnose": diagnosis, "reference_llm": reference}
    paths = write_report(out, "report", report_data, "\n".join(parts),
                         lambda path: tier_bar_chart(path, _chart_panels(evaluation, transfer)))
    paths["training_png"] = out / "training.png"
    _training_chart(paths["training_png"], {s: phases.get(s, {}).get("summary", {}).get("loss_curve", [])
                                            for s in ("stage1", "stage2")})
    return paths


def _read_if_present(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def _headline(transfer: dict | None, reference: dict | None, evaluation: dict, config: PipelineConfig) -> list[str]:
    """What this run can show at its scale, first: question content through the soft prompt per language, next
    to the LLM reading the question itself; then the accuracy sample in context."""
    lines = ["## What this run shows\n"]
    if transfer:
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
            f"{config.evaluation.mgsm.limit} MGSM / {config.evaluation.mmwp.limit} MMWP problems per "
            f"language, up to {config.evaluation.max_new_tokens} new tokens — of an LLM that may not solve these "
            "problems even in English: it checks that the whole chain runs, not whether the method works. The measured "
            "comparison of methods is `experiments/qwen05b/` (Qwen2.5-Coder-0.5B-Instruct; "
            "`lingualift pipeline qwen05b` runs this pipeline on it).\n")
    return lines


def _evaluation_section(evaluation: dict, config: PipelineConfig) -> list[str]:
    parts = ["\n## Evaluation\n",
             f"Greedy decoding, up to {config.evaluation.max_new_tokens} new tokens; the answer is the "
             f"last number in the output. Accuracy in %, macro-averaged over languages, 95% bootstrap "
             f"intervals. Only the first {config.evaluation.mgsm.limit} MGSM and "
             f"{config.evaluation.mmwp.limit} MMWP problems per language: intervals are wide and "
             "single-language numbers are anecdotes.\n"]
    rows = [[name, len(task["languages"]), sum(v["n"] for v in task["languages"].values()),
             f"{pct(task['overall']['accuracy'])} {ci_text(task['overall']['ci95'])}", *tier_cells(task)]
            for name, task in evaluation["tasks"].items()]
    parts.append(markdown_table(["task", "languages", "problems", "overall", *TIER_ORDER], rows))
    for name, task in evaluation["tasks"].items():
        parts.append(f"\n### {name} per language\n\n" + markdown_table(LANGUAGE_HEADERS, language_rows(task)))
    return parts


def _transfer_section(transfer: dict, reference: dict | None) -> list[str]:
    """The diagnostic's gains next to the mismatched control (and the plain LLM's gain, if measured)."""
    parts = ["\n## Transfer diagnostic\n",
             f"Teacher-forced NLL (nats/token) of GSM8K's English worked solution given the MGSM question in each "
             f"language, over {transfer['n_items']} items. gain = NLL(no question) − NLL(question) "
             f"(NLL without question: {transfer['nll_no_question']:.4f}); transfer ratio = gain_X / gain_en; the "
             "mismatched control pairs each solution with the next item's question and should gain ~0. "
             + _content_warning(transfer) + "\n"]
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
    return parts


def _chart_panels(evaluation: dict, transfer: dict | None) -> list[dict]:
    """report.png: accuracy per language for each task, then the diagnostic's gain and content gap."""
    panels = [{"title": f"{name}: accuracy per language (overall {pct(task['overall']['accuracy'])}%)",
               "values": {l: v["accuracy"] for l, v in task["languages"].items()},
               "ci": {l: v["ci95"] for l, v in task["languages"].items()},
               "reference": task["overall"]["accuracy"]}
              for name, task in evaluation.get("tasks", {}).items()]
    if transfer:
        langs = transfer["languages"]
        panels.append({"title": "teacher-forced gain (nats/token) with the right question; dashed = English",
                       "values": {l: v["gain"] for l, v in langs.items()},
                       "reference": langs.get("en", {}).get("gain"), "scale": 1.0, "ylabel": "gain"})
        panels.append({"title": "question content: NLL(mismatched question) - NLL(right question), nats/token",
                       "values": {l: v["gain"] - v["gain_mismatched"] for l, v in langs.items()},
                       "reference": 0.0, "scale": 1.0, "ylabel": "content gap"})
    return panels or [{"title": "no evaluation results", "values": {"en": 0.0}}]


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


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
