"""Cheap diagnostics of cross-lingual transfer that need no generation.

1. Teacher-forced transfer: MGSM row i is GSM8K test row i translated, so the English worked solution
   of row i can be scored given the question in language X. With mean per-token NLL (nats),
   `gain_X = NLL(solution | no question) - NLL(solution | question in X)` is the information the model
   draws from an X question, and `transfer_X = gain_X / gain_en` says how much of the English benefit
   survives in X (1 = none lost). A mismatched question (row i+1 paired with solution i) is the control:
   its gain should be near zero or negative. Intervals: paired bootstrap over items.
2. Retrieval: MMWP is parallel across its 48 languages, so the pooled prompt representation the LLM
   receives (`Generator.prompt_embeddings`) of question i in X should be nearest (cosine) to question i
   in English. Accuracy is the mean of X→en and en→X top-1 retrieval.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from lingualift.data.gsm8k import english_solution
from lingualift.errors import LinguaLiftError
from lingualift.io import iter_jsonl
from lingualift.eval.report import markdown_table, order_by_tier, pct, tier_bar_chart, write_report
from lingualift.eval.tasks import MGSM_LANGUAGES, MMWP_LANGUAGES, data_file, get_task, load_examples, tier_of

if TYPE_CHECKING:
    from lingualift.inference.generators import TargetScore

logger = logging.getLogger(__name__)


def _gsm8k_solutions(data_dir, n: int, download: bool) -> list[str]:
    path = data_file(get_task("gsm8k"), "en", data_dir, download)
    solutions = [english_solution(str(r.get("answer", ""))) for _, r in zip(range(n), iter_jsonl(path))]
    if len(solutions) < n:
        raise LinguaLiftError(f"{path}: has {len(solutions)} rows, MGSM needs {n}")
    return solutions


def _per_token(scores: list[TargetScore]) -> tuple[np.ndarray, np.ndarray]:
    nll = np.array([s.nll for s in scores], dtype=float)
    tokens = np.array([s.tokens for s in scores], dtype=float)
    return nll, tokens


def transfer_diagnostic(
    generator,
    *,
    data_dir=None,
    langs: list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    n_bootstrap: int = 1000,
    seed: int = 0,
    download: bool = False,
    progress: bool = True,
) -> dict:
    """Per-language NLL of the English solution given the question in X / no question / a mismatched one."""
    langs = list(langs or MGSM_LANGUAGES)
    unknown = [l for l in langs if l not in MGSM_LANGUAGES]
    if unknown:
        raise LinguaLiftError(f"transfer diagnostic: MGSM has no language(s) {unknown}; it has {', '.join(MGSM_LANGUAGES)}")
    if "en" not in langs:
        langs = ["en", *langs]  # the reference of the transfer ratio
    questions = {l: [ex.question for ex in load_examples("mgsm", l, data_dir, limit, download)] for l in langs}
    n = min(len(q) for q in questions.values())
    solutions = _gsm8k_solutions(data_dir, n, download)
    none_nll, tokens = _per_token(generator.target_nll([None] * n, solutions, batch_size=batch_size))
    matched, mismatched = {}, {}
    for lang in tqdm(langs, desc="transfer", unit="lang", disable=not progress):
        qs = questions[lang][:n]
        matched[lang] = _per_token(generator.target_nll(qs, solutions, batch_size=batch_size))[0]
        shifted = qs[1:] + qs[:1]  # question i+1 with solution i
        mismatched[lang] = _per_token(generator.target_nll(shifted, solutions, batch_size=batch_size))[0]

    rng = np.random.default_rng(seed)
    samples = rng.integers(0, n, size=(n_bootstrap, n))
    boot_tokens = tokens[samples].sum(1)

    def mean_nll(values: np.ndarray) -> float:
        return float(values.sum() / tokens.sum())

    def boot_gain(values: np.ndarray) -> np.ndarray:
        return (none_nll[samples].sum(1) - values[samples].sum(1)) / boot_tokens

    en_boot = boot_gain(matched["en"])
    results = {"model": generator.name, "n_items": n, "nll_no_question": mean_nll(none_nll), "languages": {}}
    gain_en = mean_nll(none_nll) - mean_nll(matched["en"])
    for lang in langs:
        gain = mean_nll(none_nll) - mean_nll(matched[lang])
        ratio_boot = boot_gain(matched[lang]) / np.where(en_boot == 0, np.nan, en_boot)
        results["languages"][lang] = {
            "tier": tier_of(lang),
            "nll_question": mean_nll(matched[lang]),
            "nll_mismatched": mean_nll(mismatched[lang]),
            "gain": gain,
            "gain_mismatched": mean_nll(none_nll) - mean_nll(mismatched[lang]),
            "transfer_ratio": gain / gain_en if gain_en else None,
            "transfer_ratio_ci95": [float(x) for x in np.nanpercentile(ratio_boot, [2.5, 97.5])],
        }
        logger.info("%s: gain %.4f nats/token, transfer ratio %s", lang, gain, results["languages"][lang]["transfer_ratio"])
    if gain_en <= 0:
        logger.warning("the English question does not lower the solution's NLL (gain_en=%.4f); ratios are meaningless", gain_en)
    return results


def retrieval_accuracy(
    generator,
    *,
    data_dir=None,
    langs: list[str] | None = None,
    pivot: str = "en",
    limit: int | None = 200,
    batch_size: int = 16,
    download: bool = False,
    progress: bool = True,
) -> dict:
    """Top-1 retrieval of parallel MMWP questions between X and `pivot` by cosine of pooled prompt vectors."""
    import torch

    langs = [l for l in (langs or MMWP_LANGUAGES) if l != pivot]

    def embed(lang: str) -> torch.Tensor:
        questions = [ex.question for ex in load_examples("mmwp", lang, data_dir, limit, download)]
        return torch.nn.functional.normalize(generator.prompt_embeddings(questions, batch_size=batch_size).float(), dim=-1)

    reference = embed(pivot)
    results = {"model": generator.name, "pivot": pivot, "n_items": len(reference), "languages": {}}
    for lang in tqdm(langs, desc="retrieval", unit="lang", disable=not progress):
        vectors = embed(lang)
        if len(vectors) != len(reference):
            raise LinguaLiftError(f"mmwp {lang} has {len(vectors)} items but {pivot} has {len(reference)}; not parallel")
        similarity = vectors @ reference.T
        target = torch.arange(len(reference))
        forward = (similarity.argmax(1) == target).float().mean().item()
        backward = (similarity.argmax(0) == target).float().mean().item()
        results["languages"][lang] = {
            "tier": tier_of(lang), "to_pivot": forward, "from_pivot": backward, "accuracy": (forward + backward) / 2,
        }
    if results["languages"]:
        results["mean_accuracy"] = float(np.mean([v["accuracy"] for v in results["languages"].values()]))
    return results


def diagnose_markdown(report: dict) -> str:
    parts = [f"# Transfer diagnostics: {report.get('model', '')}\n"]
    transfer = report.get("transfer")
    if transfer:
        parts.append(
            f"Teacher-forced NLL (nats/token) of the English GSM8K solution over {transfer['n_items']} MGSM items; "
            f"no question: {transfer['nll_no_question']:.4f}. gain = NLL(no question) − NLL(question); "
            "transfer = gain / gain_en; mismatched = question of the next item (control).\n"
        )
        rows = [
            [v["tier"], l, f"{v['nll_question']:.4f}", f"{v['gain']:.4f}", f"{v['gain_mismatched']:.4f}",
             "–" if v["transfer_ratio"] is None else f"{v['transfer_ratio']:.3f}",
             "[{:.3f}, {:.3f}]".format(*v["transfer_ratio_ci95"])]
            for l, v in ((l, transfer["languages"][l]) for l in order_by_tier(list(transfer["languages"])))
        ]
        parts.append(markdown_table(["tier", "language", "NLL(question)", "gain", "gain (mismatched)",
                                     "transfer ratio", "95% CI"], rows))
    retrieval = report.get("retrieval")
    if retrieval:
        parts.append(
            f"\n## Retrieval (MMWP, {retrieval['n_items']} items, pivot {retrieval['pivot']})\n\n"
            f"Top-1 accuracy (%) of pooled prompt vectors; mean {pct(retrieval.get('mean_accuracy'))}.\n"
        )
        rows = [[v["tier"], l, pct(v["to_pivot"]), pct(v["from_pivot"]), pct(v["accuracy"])]
                for l, v in ((l, retrieval["languages"][l]) for l in order_by_tier(list(retrieval["languages"])))]
        parts.append(markdown_table(["tier", "language", "X→pivot", "pivot→X", "mean"], rows))
    return "\n".join(parts)


def write_diagnose_report(report: dict, out_dir: str | Path, stem: str = "diagnose") -> dict[str, Path]:
    """diagnose.json / .md / .png (transfer ratio and retrieval accuracy per language, by tier)."""

    def chart(path: Path) -> None:
        panels = []
        if report.get("transfer"):
            langs = report["transfer"]["languages"]
            panels.append({
                "title": "transfer ratio gain_X / gain_en (teacher-forced, MGSM)",
                "values": {l: v["transfer_ratio"] or 0.0 for l, v in langs.items()},
                "ci": {l: v["transfer_ratio_ci95"] for l, v in langs.items()},
                "reference": 1.0, "scale": 1.0, "ylabel": "transfer ratio",
            })
        if report.get("retrieval"):
            panels.append({
                "title": f"retrieval accuracy vs {report['retrieval']['pivot']} (MMWP)",
                "values": {l: v["accuracy"] for l, v in report["retrieval"]["languages"].items()},
            })
        if panels:
            tier_bar_chart(path, panels)

    return write_report(out_dir, stem, report, diagnose_markdown(report), chart)


def diagnose(
    generator,
    out_dir: str | Path,
    *,
    data_dir=None,
    transfer_langs: list[str] | None = None,
    retrieval_langs: list[str] | None = None,
    limit: int | None = None,
    retrieval_limit: int | None = 200,
    batch_size: int = 8,
    download: bool = False,
    progress: bool = True,
) -> dict:
    """Run both diagnostics (skip one by passing an empty language list) and write the report."""
    report = {"model": generator.name}
    if transfer_langs != []:
        report["transfer"] = transfer_diagnostic(generator, data_dir=data_dir, langs=transfer_langs, limit=limit,
                                                 batch_size=batch_size, download=download, progress=progress)
    if retrieval_langs != []:
        report["retrieval"] = retrieval_accuracy(generator, data_dir=data_dir, langs=retrieval_langs,
                                                 limit=retrieval_limit, batch_size=batch_size, download=download,
                                                 progress=progress)
    write_diagnose_report(report, out_dir)
    return report
