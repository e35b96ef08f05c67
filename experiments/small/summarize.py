"""Summaries of the small experiment: `probe` (content gap curves), `main` (method comparison), `scale` (stage-1
learning curves on unseen items)."""

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lingualift.eval.report import TIER_ORDER, ci_text, markdown_table, order_by_tier, pct, tier_bar_chart

R = Path(os.environ.get("SUMMARY_RESULTS", "experiments/small/results"))
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


def _settings(args: dict) -> str:
    parts = [args["alignment"], f"lr {args['lr']:g}", f"batch {args['batch_size']}"]
    if args["warm_start"] != "none":
        parts.append(f"{args['warm_start']} warm start")
    if args["codeswitch_ratio"]:
        parts.append(f"code-switched {args['codeswitch_ratio']:g}")
    if args["target"] != "response":
        parts.append(f"target {args['target']}")
    if args["chat_template"]:
        parts.append("chat template")
    return ", ".join(parts)


def _gap(cell: dict) -> str:
    return f"{cell['gap']:.3f} [{cell['gap_ci95'][0]:.2f}, {cell['gap_ci95'][1]:.2f}]"


def scale() -> None:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted((R / "scale").glob("*.json"))}
    if not runs:
        return
    langs = runs[next(iter(runs))]["args"]["eval_langs"].split(",")
    fig, axes = plt.subplots(1, len(langs), figsize=(5 * len(langs), 3.8), sharey=True, squeeze=False)
    rows = []
    for name, run in runs.items():
        curve = run["curve"]
        seen = [r["examples_seen"] for r in curve]
        for ax, lang in zip(axes[0], langs):
            gaps = [r[lang]["gap"] for r in curve]
            line, = ax.plot(seen, gaps, marker="o", markersize=3, label=name)
            ax.fill_between(seen, [r[lang]["gap_ci95"][0] for r in curve], [r[lang]["gap_ci95"][1] for r in curve],
                            color=line.get_color(), alpha=0.12)
        last = curve[-1]
        others = [v["gap"] for l, v in run["final"].items() if l != "en"]
        rows.append([name, _settings(run["args"]), last["step"], last["examples_seen"], _gap(curve[0]["en"]),
                     _gap(last["en"]), *(_gap(last[l]) for l in langs[1:]), f"{min(others):.3f} – {max(others):.3f}",
                     f"{sum(others) / len(others):.3f}", f"{last['norms']['soft_prompt']:.2f}",
                     round(run["wall_seconds"] / 60)])
    reference = next((r["final_reference_llm_reads_question"] for r in runs.values()
                      if r.get("final_reference_llm_reads_question")), None)
    curve_reference = runs[next(iter(runs))]["reference_llm_reads_question"]
    for ax, lang in zip(axes[0], langs):
        ax.axhline(curve_reference[lang]["gap"], color="black", linestyle="--", linewidth=0.8,
                   label="SmolLM2 reading the question as text")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(f"MGSM {lang} (unseen): NLL(mismatched) - NLL(right)", fontsize=9)
        ax.set_xlabel("stage-1 training examples seen (each once)")
    axes[0][0].set_ylabel("nats / target token")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(R / "scale_curves.png", dpi=110)
    n_eval = runs[next(iter(runs))]["args"]["eval_items"]
    n_final = runs[next(iter(runs))]["args"]["final_items"]
    parts = ["# Stage-1 learning curves: question content on unseen items\n",
             f"gap = NLL(English solution | mismatched question) - NLL(... | right question), nats per target token, "
             f"teacher-forced, {n_eval} MGSM items (curves) / {n_final} items per language (final), paired bootstrap "
             "95% CI in brackets. Training data: GSM8K train rows, each seen once.\n",
             markdown_table(["run", "settings", "steps", "examples", "en gap @0", "en gap, last",
                             *(f"{l} gap, last" for l in langs[1:]), "final gap, 10 other languages",
                             "mean", "soft-prompt norm", "minutes"], rows)]
    final_langs = order_by_tier(list(runs[next(iter(runs))]["final"]))
    header = ["run", "steps", "items", *final_langs]
    table = [[name, run["args"]["steps"], run["args"]["final_items"], *(f"{run['final'][l]['gap']:.3f}" for l in final_langs)]
             for name, run in runs.items()]
    if reference:
        table.append(["SmolLM2 reading the question as text", "–", n_final,
                      *(f"{reference[l]['gap']:.3f}" for l in final_langs)])
    parts.append("\n## Final gap per MGSM language (the first N MGSM items; languages ordered by resource tier)\n\n"
                 + markdown_table(header, table))
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, run in runs.items():
        ax.plot(final_langs, [run["final"][l]["gap"] for l in final_langs], marker="o", linewidth=0.8, label=name)
    if reference:
        ax.plot(final_langs, [reference[l]["gap"] for l in final_langs], color="black", linestyle="--", marker="_",
                label="SmolLM2 reading the question as text")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("NLL(mismatched) - NLL(right), nats/token")
    ax.set_title("question content reaching the LLM, per MGSM language (high -> medium -> low resource)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(R / "scale_final.png", dpi=110)
    (R / "scale.md").write_text("\n".join(parts) + "\n")
    print("\n".join(parts))


if __name__ == "__main__":
    {"probe": probe, "main": main, "scale": scale}[sys.argv[1]]()
