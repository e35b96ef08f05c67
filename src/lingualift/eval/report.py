"""Reports: results.json, a markdown table and a PNG bar chart (languages grouped and coloured by tier).

The helpers are generic so that the pipeline and `diagnose` reuse them: `markdown_table` for any rows,
`tier_bar_chart` for any per-language values with optional intervals, `write_report` for the usual
json + md + png triple. Every file goes through `lingualift.io.atomic_write`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from lingualift.io import atomic_write, write_json
from lingualift.eval.tasks import TIERS, tier_of, tier_table

logger = logging.getLogger(__name__)

TIER_COLOURS = {"high": "#1b9e77", "medium": "#d95f02", "low": "#7570b3", "unranked": "#999999"}
TIER_ORDER = (*TIERS, "unranked")


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def ci_text(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{pct(ci[0])}, {pct(ci[1])}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], align: str = "") -> str:
    """A GitHub-flavoured markdown table; cells are converted with str(); `align` "lrr…" right-aligns columns."""
    rules = ["---:" if side == "r" else "---" for side in align.ljust(len(headers), "l")]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def order_by_tier(langs: Sequence[str]) -> list[str]:
    """Languages grouped by tier (high → low), within a tier by Common Crawl share (largest first)."""
    shares = {lang: entry["cc_share_percent"] for lang, entry in tier_table().items()}
    return sorted(langs, key=lambda l: (TIER_ORDER.index(tier_of(l)), -shares.get(l, 0.0), l))


def tier_bar_chart(
    path: str | Path,
    panels: Sequence[dict],
    *,
    ylabel: str = "accuracy (%)",
    scale: float = 100.0,
) -> None:
    """One bar panel per entry of `panels` = {"title", "values": {lang: v}, "ci": {lang: [lo, hi]} (optional),
    "reference": float (optional dashed line), "scale"/"ylabel" (optional overrides)}; bars grouped and
    coloured by resource tier."""
    default_scale = scale
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    widths = [max(4.0, 0.28 * len(p["values"]) + 1.5) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(widths), 3.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        scale = panel.get("scale", default_scale)
        langs = order_by_tier(list(panel["values"]))
        values = [scale * panel["values"][l] for l in langs]
        colours = [TIER_COLOURS[tier_of(l)] for l in langs]
        errors = None
        if panel.get("ci"):
            errors = [
                [max(0.0, v - scale * panel["ci"][l][0]) for l, v in zip(langs, values)],
                [max(0.0, scale * panel["ci"][l][1] - v) for l, v in zip(langs, values)],
            ]
        ax.bar(range(len(langs)), values, color=colours, yerr=errors, capsize=2, error_kw={"linewidth": 0.8})
        if panel.get("reference") is not None:
            ax.axhline(scale * panel["reference"], color="black", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(langs)), langs, rotation=90 if len(langs) > 20 else 0, fontsize=8)
        ax.set_xlim(-0.6, len(langs) - 0.4)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(panel.get("ylabel", ylabel))
        if panel.get("ylabel", ylabel).startswith("accuracy"):
            ax.set_ylim(0, 100 if scale == 100.0 else 1.0)
        present = [t for t in TIER_ORDER if any(tier_of(l) == t for l in langs)]
        ax.legend(handles=[Patch(color=TIER_COLOURS[t], label=t) for t in present], fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def write_report(out_dir: str | Path, stem: str, data: dict, markdown: str, chart: Callable[[Path], None] | None):
    """Write `<stem>.json`, `<stem>.md` and (if `chart`) `<stem>.png` into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    write_json(paths["json"], data)
    with atomic_write(paths["md"]) as handle:
        handle.write(markdown)
    if chart is not None:
        paths["png"] = out_dir / f"{stem}.png"
        chart(paths["png"])
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


# --- evaluation results --------------------------------------------------------------------------------


LANGUAGE_HEADERS = ("tier", "language", "n", "accuracy", "95% CI")


def tier_cells(task: dict) -> list[str]:
    """A task's accuracy (%) per tier, in `TIER_ORDER`; – for a tier it has no language of."""
    return [pct(task["tiers"][t]["accuracy"]) if t in task["tiers"] else "–" for t in TIER_ORDER]


def language_rows(task: dict) -> list[list]:
    """One `LANGUAGE_HEADERS` row per language of a task's results, grouped by tier."""
    return [[tier_of(l), l, task["languages"][l]["n"], pct(task["languages"][l]["accuracy"]),
             ci_text(task["languages"][l]["ci95"])] for l in order_by_tier(list(task["languages"]))]


def eval_markdown(results: dict) -> str:
    """Summary table (overall and per tier for each task) followed by one per-language table per task."""
    parts = [f"# Evaluation: {results.get('model') or 'model'}\n",
             f"Accuracy in %, macro-averaged over languages; 95% bootstrap intervals ({results['n_bootstrap']} "
             "resamples). Tiers: Common Crawl language share (resources/mmwp_tiers.tsv).\n"]
    summary_rows = []
    for name, task in results["tasks"].items():
        summary_rows.append([name, f"{pct(task['overall']['accuracy'])} {ci_text(task['overall']['ci95'])}",
                             *tier_cells(task)])
    parts.append(markdown_table(["task", "overall", *TIER_ORDER], summary_rows))
    for name, task in results["tasks"].items():
        rows = language_rows(task)
        rows += [[f"**{t}**", f"{len(g['languages'])} langs", "", pct(g["accuracy"]), ci_text(g["ci95"])]
                 for t, g in task["tiers"].items()]
        rows.append(["**overall**", f"{len(task['languages'])} langs", "", pct(task["overall"]["accuracy"]),
                     ci_text(task["overall"]["ci95"])])
        parts.append(f"\n## {name}\n\n" + markdown_table(LANGUAGE_HEADERS, rows))
    return "\n".join(parts)


def write_eval_report(results: dict, out_dir: str | Path, stem: str = "results") -> dict[str, Path]:
    """results.json, results.md and results.png (one panel per task) for `evaluation.summarize` output."""

    def chart(path: Path) -> None:
        panels = [
            {
                "title": f"{name} ({results.get('model', '')}): overall {pct(task['overall']['accuracy'])}%",
                "values": {l: v["accuracy"] for l, v in task["languages"].items()},
                "ci": {l: v["ci95"] for l, v in task["languages"].items()},
                "reference": task["overall"]["accuracy"],
            }
            for name, task in results["tasks"].items()
        ]
        tier_bar_chart(path, panels)

    return write_report(out_dir, stem, results, eval_markdown(results), chart)
