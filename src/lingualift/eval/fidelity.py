"""Fidelity: does the question itself come through? The LLM restates it in English and we score the restatement.

The teacher-forced diagnostic (`eval/diagnose.py`) shows that a soft prompt carries a question's *content*; a
maths answer also needs its exact numbers. Here the LLM is asked, greedily and briefly, to restate the
question in English. For a LinguaLIFT model the question is only in the soft prompt (the encoder reads the
bare question; `llm_sees_query` is switched off) and the instruction is LLM text around it; a plain LLM
reads the question as text inside the same frame, which makes it the reference row. Two scores per item:

* **numbers**: the share of the question's numbers that the restatement states exactly (a multiset
  comparison after `extraction.numbers_in_text`: native digits mapped, `1,050` = `1050`); items whose
  question holds no number are left out of it, and `all numbers` is the share of items reproducing every one;
* **chrF** against the English question of the same row (MGSM and MMWP are parallel across languages by
  row), as sacrebleu computes sentence chrF: character n-grams up to 6, whitespace removed, beta 2, 0–100.

Both are reported per language and per resource tier (macro over languages) with 95% bootstrap intervals.
`measure_fidelity` returns the report and writes nothing, so a training loop can call it every few hundred
steps; `write_fidelity_report` writes fidelity.json / .md and the restatements (fidelity_items.jsonl).
"""

from __future__ import annotations

import logging
from collections import Counter
from copy import copy
from pathlib import Path

import numpy as np

from lingualift.data.collate import BridgeCollator, CausalLMCollator
from lingualift.data.prompts import chat_template_affixes
from lingualift.errors import LinguaLiftError
from lingualift.eval.extraction import numbers_in_text
from lingualift.eval.report import markdown_table, order_by_tier, tier_bar_chart, write_report
from lingualift.eval.runner import percentile_interval
from lingualift.eval.tasks import TIERS, load_examples, tier_of
from lingualift.inference.generators import BridgeGenerator, CausalLMGenerator
from lingualift.model.modeling import LinguaLiftModel
from lingualift.io import write_jsonl

logger = logging.getLogger(__name__)

FIDELITY_TASKS = ("mmwp", "mgsm")  # parallel across languages by row, so the English row is the reference
FIDELITY_FILES = ("fidelity.*", "fidelity_items.jsonl")  # what `write_fidelity_report` writes (default stem)
RESTATE_INSTRUCTION = ("Restate the question above in English, word for word, keeping every number exactly as "
                       "it is written. Write only the question; do not answer it.")
CHRF_CHAR_ORDER = 6
CHRF_BETA = 2.0
SCORES = ("numbers", "all_numbers", "chrf")


# --- scoring -----------------------------------------------------------------------------------------


def number_recall(question: str, restatement: str) -> float | None:
    """Share of the question's numbers (with multiplicity) the restatement states; None if it has none."""
    asked = Counter(numbers_in_text(question))
    if not asked:
        return None
    stated = Counter(numbers_in_text(restatement))
    return sum((asked & stated).values()) / sum(asked.values())


def _char_ngrams(text: str, order: int) -> Counter:
    return Counter(text[i : i + order] for i in range(len(text) - order + 1))


def chrf(hypothesis: str, reference: str, *, char_order: int = CHRF_CHAR_ORDER, beta: float = CHRF_BETA) -> float:
    """Sentence chrF (0–100) exactly as sacrebleu 2.x's `CHRF()` (word_order 0, whitespace removed, no
    lowercasing, no eps smoothing): per-order precisions and recalls averaged over the orders where both
    strings have n-grams, then combined into one F-beta."""
    hypothesis, reference = "".join(hypothesis.split()), "".join(reference.split())
    eps = 1e-16
    precision_sum = recall_sum = 0.0
    effective_order = 0
    for order in range(1, char_order + 1):
        hyp, ref = _char_ngrams(hypothesis, order), _char_ngrams(reference, order)
        n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
        matched = sum((hyp & ref).values())
        precision_sum += matched / n_hyp if n_hyp else eps
        recall_sum += matched / n_ref if n_ref else eps
        effective_order += bool(n_hyp and n_ref)
    if not effective_order:
        return 0.0
    precision, recall = precision_sum / effective_order, recall_sum / effective_order
    factor = beta**2
    if not precision + recall:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def score_restatement(question: str, restatement: str, english: str | None) -> dict:
    """The item's scores: `numbers` (None without numbers), `all_numbers`, `chrf` (None without an English row)."""
    recall = number_recall(question, restatement)
    return {
        "numbers": recall,
        "all_numbers": None if recall is None else float(recall == 1.0),
        "chrf": None if english is None else chrf(restatement, english),
    }


# --- generation --------------------------------------------------------------------------------------


PLAIN_FRAME_STOP = ("\n\n",)  # without a chat template nothing else ends the restatement


def _chat(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def restatement_frame(tokenizer, instruction: str = RESTATE_INSTRUCTION) -> tuple[str, str]:
    """LLM text before and after the question (or soft prompt): the chat template's user turn when the
    tokenizer has one, the question then the instruction inside it; else plain text ending in a cue."""
    if _chat(tokenizer):
        before, after = chat_template_affixes(tokenizer)
        return before, f"\n\n{instruction}{after}"
    return "", f"\n\n{instruction}\n\nThe question in English:"


def restating_generator(generator, instruction: str = RESTATE_INSTRUCTION):
    """A copy of `generator` that asks for a restatement: the same model, the question alone in its input
    (bare text to the encoder of a LinguaLIFT model, whose LLM then reads only the soft prompt)."""
    view = copy(generator)
    view.prompt_template = "{question}"
    if isinstance(generator, BridgeGenerator):
        model = generator.model
        before, after = restatement_frame(model.llm_tokenizer, instruction)
        view.collator = BridgeCollator.for_model(model, llm_affixes=(before, after), llm_sees_query=False)
    elif isinstance(generator, CausalLMGenerator):
        before, after = restatement_frame(generator.tokenizer, instruction)
        view.collator = CausalLMCollator(generator.tokenizer, llm_prefix=before, llm_suffix=after,
                                         max_length=generator.collator.max_length)
    else:
        raise LinguaLiftError(f"fidelity: {type(generator).__name__} is not supported; use the hf backend")
    return view


# --- the measure -------------------------------------------------------------------------------------


def _bootstrap_means(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    return values[rng.integers(0, len(values), size=(n_bootstrap, len(values)))].mean(1)


def _summaries(items: list[dict], langs: list[str], n_bootstrap: int, seed: int) -> tuple[dict, dict]:
    """Per-language means with intervals, and per-tier macro means whose intervals resample every language."""
    rng = np.random.default_rng(seed)
    languages, draws = {}, {}
    for lang in langs:
        rows = [item for item in items if item["lang"] == lang]
        entry = {"tier": tier_of(lang), "n": len(rows)}
        for score in SCORES:
            values = np.array([row[score] for row in rows if row[score] is not None], dtype=float)
            entry[f"{score}_n"] = len(values)
            if len(values):
                draws[lang, score] = _bootstrap_means(values, n_bootstrap, rng)
                entry[score], entry[f"{score}_ci95"] = float(values.mean()), percentile_interval(draws[lang, score])
            else:
                entry[score], entry[f"{score}_ci95"] = None, None
        languages[lang] = entry
    tiers = {}
    for tier in (*TIERS, "unranked"):
        members = [lang for lang in langs if languages[lang]["tier"] == tier]
        if not members:
            continue
        entry = {"languages": members}
        for score in SCORES:
            scored = [lang for lang in members if languages[lang][score] is not None]
            entry[score] = float(np.mean([languages[l][score] for l in scored])) if scored else None
            entry[f"{score}_ci95"] = (percentile_interval(np.mean([draws[l, score] for l in scored], axis=0))
                                      if scored else None)
        tiers[tier] = entry
    return languages, tiers


def measure_fidelity(
    generator,
    *,
    task: str = "mmwp",
    langs: list[str] | None = None,
    data_dir=None,
    limit: int | None = 16,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    instruction: str = RESTATE_INSTRUCTION,
    n_bootstrap: int = 1000,
    seed: int = 0,
    download: bool = False,
    progress: bool = True,
) -> dict:
    """Restate the first `limit` questions of each language greedily and score them (module doc); writes nothing.

    `generator` is a `Generator` (hf backend) or a `LinguaLiftModel` in the middle of training, which is scored
    on its own device and handed back with every submodule in the train / eval mode it came in. Returns `{"model", "task",
    "settings", "languages", "tiers", "items"}`; items keep each restatement.
    """
    if isinstance(generator, LinguaLiftModel):
        model = generator
        modes = [(module, module.training) for module in model.modules()]  # frozen parts stay in eval mode
        try:
            return measure_fidelity(BridgeGenerator(model, name="lingualift", device=str(model.device)), task=task,
                                    langs=langs, data_dir=data_dir, limit=limit, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, instruction=instruction, n_bootstrap=n_bootstrap,
                                    seed=seed, download=download, progress=progress)
        finally:
            for module, training in modes:
                module.training = training
    if task not in FIDELITY_TASKS:
        raise LinguaLiftError(f"fidelity: task {task!r} is not parallel by row; choose from {', '.join(FIDELITY_TASKS)}")
    langs = list(dict.fromkeys(langs or ["en"]))
    english = [example.question for example in load_examples(task, "en", data_dir, limit, download)]
    examples = []
    for lang in langs:
        rows = load_examples(task, lang, data_dir, limit, download)
        if len(rows) != len(english):
            raise LinguaLiftError(f"{task} {lang} has {len(rows)} questions where en has {len(english)}; "
                                  "the files are not parallel by row")
        examples += [(lang, row, reference) for row, reference in zip(rows, english)]
    # Shortest questions first: batches of similar length pad less; the order does not change greedy outputs.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][1].question))
    view = restating_generator(generator, instruction)
    stop = None if _chat(generator.tokenizer) else list(PLAIN_FRAME_STOP)
    outputs = view.generate([examples[i][1].question for i in order], max_new_tokens=max_new_tokens, stop=stop,
                            batch_size=batch_size, progress=progress)
    restatements = dict(zip(order, outputs))
    items = []
    for index, (lang, example, reference) in enumerate(examples):
        restatement = restatements[index].strip()
        items.append({
            "id": example.id, "lang": lang, "restatement": restatement,
            "question_numbers": numbers_in_text(example.question),
            "numbers_as_english": Counter(numbers_in_text(example.question)) == Counter(numbers_in_text(reference)),
            **score_restatement(example.question, restatement, reference),
        })
    languages, tiers = _summaries(items, langs, n_bootstrap, seed)
    for lang in langs:
        rows = [item for item in items if item["lang"] == lang]
        languages[lang]["numbers_as_english"] = float(np.mean([row["numbers_as_english"] for row in rows]))
    for lang, entry in languages.items():
        logger.info("fidelity %s: numbers %s, chrF %s (n=%d)", lang, entry["numbers"], entry["chrf"], entry["n"])
    return {
        "model": generator.name, "task": task,
        "settings": {"limit": limit, "max_new_tokens": max_new_tokens, "greedy": True, "instruction": instruction,
                     "soft_prompt_only": isinstance(generator, BridgeGenerator), "n_bootstrap": n_bootstrap,
                     "seed": seed, "chrf": {"char_order": CHRF_CHAR_ORDER, "word_order": 0, "beta": CHRF_BETA}},
        "languages": languages, "tiers": tiers, "items": items,
    }


def _score_cell(entry: dict, score: str, percent: bool) -> str:
    value, ci = entry.get(score), entry.get(f"{score}_ci95")
    if value is None:
        return "–"
    scale = 100 if percent else 1
    return f"{scale * value:.1f} [{scale * ci[0]:.1f}, {scale * ci[1]:.1f}]"


def fidelity_markdown(report: dict) -> str:
    settings = report["settings"]
    source = "the soft prompt alone" if settings["soft_prompt_only"] else "the question as text"
    parts = [
        f"# Fidelity: {report['model']}\n",
        f"{report['task'].upper()}, first {settings['limit']} questions per language, read through {source}; greedy "
        f"restatement in English, at most {settings['max_new_tokens']} new tokens. numbers = share of the "
        "question's numbers stated exactly (%; questions with numbers); all = questions with every number (%); "
        "chrF against the English question of the row (0–100). 95% bootstrap intervals; tiers are macro means.\n",
    ]
    rows = [[entry["tier"], lang, entry["n"], _score_cell(entry, "numbers", True),
             _score_cell(entry, "all_numbers", True), _score_cell(entry, "chrf", False),
             f"{100 * entry['numbers_as_english']:.0f}"]
            for lang, entry in ((l, report["languages"][l]) for l in order_by_tier(list(report["languages"])))]
    rows += [[f"**{tier}**", f"{len(entry['languages'])} languages", "", _score_cell(entry, "numbers", True),
              _score_cell(entry, "all_numbers", True), _score_cell(entry, "chrf", False), ""]
             for tier, entry in report["tiers"].items()]
    parts.append(markdown_table(["tier", "language", "n", "numbers %", "all numbers %", "chrF",
                                 "rows with the English row's numbers %"], rows, "llrrrrr"))
    return "\n".join(parts)


def write_fidelity_report(report: dict, out_dir: str | Path, stem: str = "fidelity") -> dict[str, Path]:
    """`<stem>.json` (scores, settings), `.md` (the table), `.png` (both scores by tier) and `<stem>_items.jsonl`
    (every restatement with its scores)."""

    def chart(path: Path) -> None:
        languages = report["languages"]
        panels = [{"title": f"{label} ({report['model']})", "ylabel": ylabel, "scale": scale,
                   "values": {l: v[score] for l, v in languages.items() if v[score] is not None},
                   "ci": {l: v[f"{score}_ci95"] for l, v in languages.items() if v[score] is not None}}
                  for score, label, ylabel, scale in (("numbers", "question numbers restated exactly", "%", 100.0),
                                                      ("chrf", "chrF against the English question", "chrF", 1.0))]
        panels = [panel for panel in panels if panel["values"]]
        if panels:
            tier_bar_chart(path, panels)

    paths = write_report(out_dir, stem, {key: value for key, value in report.items() if key != "items"},
                         fidelity_markdown(report), chart)
    paths["items"] = Path(out_dir) / f"{stem}_items.jsonl"
    write_jsonl(paths["items"], report["items"])
    return paths
