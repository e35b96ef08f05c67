"""Generation pooled across tasks and languages: one length-sorted pass over every pending question.

Large batches use a CPU far better than a few questions per language, so a caller that evaluates many small
(task, language) slices first `prefetch`es all their questions, then hands the pooled generator to code that
asks slice by slice (e.g. `lingualift.eval.runner.evaluate`), which is served from the pool.
"""

from __future__ import annotations


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
