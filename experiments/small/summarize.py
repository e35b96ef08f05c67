"""Summaries of the small experiment: `probe` (content gap curves) and `main` (method comparison)."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lingualift.report import TIER_ORDER, ci_text, markdown_table, order_by_tier, pct, tier_bar_chart

R = Path("experiments/small/results")
METHODS = ["zeroshot", "sft", "langbridge", "lingualift"]


def probe() -> None:
    runs = {p.stem[len("probe_"):]: json.loads(p.read_text()) for p in sorted(R.glob("probe_*.json"))}
    if not runs:
        return
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for name, run in runs.items():
        first, last = run["curve"][0], run["curve"][-1]
        ref = run["reference_llm_reads_question"]
        rows.append([name, run["args"]["target"], run["args"]["lr"], last["step"],
                     f"{first['train']['gap']:.3f}", f"{last['train']['gap']:.3f}", f"{last['heldout']['gap']:.3f}",
                     f"{last['train']['right']:.3f}", f"{ref['train']['gap']:.3f}", f"{ref['heldout']['gap']:.3f}"])
        for ax, split in zip(axes, ("train", "heldout")):
            line, = ax.plot([r["step"] for r in run["curve"]], [r[split]["gap"] for r in run["curve"]], marker="o",
                            label=name)
            ax.axhline(ref[split]["gap"], color=line.get_color(), linestyle="--", linewidth=0.8)
    for ax, split in zip(axes, ("train", "heldout")):
        ax.set_title(f"{split} items: NLL(mismatched) - NLL(right)")
        ax.set_xlabel("stage-1 step (full batch of 8 items)")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0].set_ylabel("nats / target token")
    axes[1].legend(fontsize=7)
    fig.suptitle("soft-prompt content gap (dashed: SmolLM2 reading the question as text)", fontsize=9)
    fig.tight_layout()
    fig.savefig(R / "probe_curves.png", dpi=110)
    table = markdown_table(["run", "target", "lr", "steps", "train gap @0", "train gap", "held-out gap",
                            "train NLL(right)", "LLM-reads-text train gap", "LLM-reads-text held-out gap"], rows)
    (R / "probe.md").write_text("# Probe: does the soft prompt carry question content?\n\n"
                                "gap = NLL(target | mismatched question) - NLL(target | right question), nats per "
                                "target token, teacher-forced.\n\n" + table)
    print(table)


def main() -> None:
    evals = {m: json.loads((R / f"eval_{m}.json").read_text()) for m in METHODS if (R / f"eval_{m}.json").is_file()}
    diags = {m: json.loads((R / f"transfer_{m}.json").read_text()) for m in METHODS
             if (R / f"transfer_{m}.json").is_file()}
    parts = ["# Small experiment: method comparison\n"]
    rows = []
    for m, ev in evals.items():
        for task, t in ev["tasks"].items():
            n = sum(v["n"] for v in t["languages"].values())
            rows.append([m, task, n, f"{pct(t['overall']['accuracy'])} {ci_text(t['overall']['ci95'])}"]
                        + [f"{pct(t['tiers'][k]['accuracy'])} {ci_text(t['tiers'][k]['ci95'])}" if k in t["tiers"]
                           else "–" for k in TIER_ORDER[:3]])
    parts.append("## Accuracy (%, 95% bootstrap CI)\n\n" + markdown_table(
        ["method", "task", "problems", "overall", "high", "medium", "low"], rows))
    if diags:
        langs = order_by_tier(list(next(iter(diags.values()))["languages"]))
        header = ["language", "tier"] + [f"{m} gain / mism. / ratio [CI]" for m in diags]
        rows = []
        for l in langs:
            row = [l, next(iter(diags.values()))["languages"][l]["tier"]]
            for m, d in diags.items():
                v = d["languages"][l]
                ratio = "–" if v["transfer_ratio"] is None else f"{v['transfer_ratio']:.2f}"
                row.append(f"{v['gain']:.3f} / {v['gain_mismatched']:.3f} / {ratio} "
                           f"[{v['transfer_ratio_ci95'][0]:.2f}, {v['transfer_ratio_ci95'][1]:.2f}]")
            rows.append(row)
        n_items = next(iter(diags.values()))["n_items"]
        parts.append(f"\n## Transfer diagnostic ({n_items} MGSM items per language)\n\n"
                     "gain = NLL(solution | no question) - NLL(solution | question in X), nats/token; mism. = the "
                     "same with the next item's question (control); ratio = gain_X / gain_en.\n\n"
                     + markdown_table(header, rows))
        tier_bar_chart(R / "main_gain.png", [
            {"title": f"{m}: teacher-forced gain per language (dashed: en)", "scale": 1.0, "ylabel": "nats/token",
             "values": {l: v["gain"] for l, v in d["languages"].items()},
             "reference": d["languages"]["en"]["gain"]} for m, d in diags.items()])
    (R / "main.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    {"probe": probe, "main": main}[sys.argv[1]]()
