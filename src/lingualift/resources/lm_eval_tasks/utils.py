"""Helpers for the lingualift lm-eval tasks: local data through lingualift.eval.tasks, scoring through
lingualift.eval.extraction (so lm-eval and `lingualift eval` agree on every example)."""


def load_dataset(task: str, lang: str, data_dir: str | None = None, **_unused):
    import datasets

    from lingualift.eval.tasks import load_examples

    examples = load_examples(task, lang, data_dir)
    rows = [{"id": ex.id, "task": task, "lang": ex.lang, "question": ex.question, "answer": ex.gold} for ex in examples]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_results(doc: dict, results: list[str]) -> dict:
    from lingualift.eval.tasks import get_task

    task = get_task(doc["task"])
    extracted = task.extract(results[0], doc)
    return {"acc": float(task.is_correct(extracted, doc["answer"]))}
