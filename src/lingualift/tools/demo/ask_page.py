"""The "Ask" page: one question (any language) to every model of the pool, answers streamed side by side.

`ask` is plain Python (testable without a browser); `build_ask_tab` lays it out in Gradio. The models panel
polls the pool while models load, so it shows each model's real state without a click.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before Python 3.11
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from lingualift.errors import LinguaLiftError
from lingualift.eval.extraction import parse_gold_number
from lingualift.eval.tasks import Example, data_file, format_number, get_task, load_examples
from lingualift.inference.generators import trim_at_stop
from lingualift.tools.demo.common import first_line, logger, message, table
from lingualift.tools.demo.models import ModelPool

ASK_TASKS = ("mgsm", "mmwp", "msvamp")  # benchmarks offered in the "Ask" page (numeric answers)
STATUS_POLL_SECONDS = 1.0  # how often the models panel refreshes while a model is still loading
ADD_WAIT_SECONDS = 120  # a model added on the page: answer "loaded" / "failed" if it settles this soon
MAX_QUESTION_CHARS = 20_000  # benchmark questions are under 2,000; a pasted book is a mistake, not a question
PAGE_TOKEN_LIMIT = 1024  # the answer-length slider's top (raised to --max-new-tokens when that is larger)


@dataclass
class Answer:
    """One model's reply to one question: the row of the answers table."""

    model: str
    state: str  # "waiting" | "loading" | "generating" | "done" | "failed"
    output: str = ""
    extracted: str | None = None
    correct: bool | None = None  # None: no gold answer given
    seconds: float | None = None
    prompt: str = ""
    error: str = ""


def canonical_gold(gold: str | None) -> str | None:
    """The gold answer as the tasks store it ("18", "0.75"), or None when none was given."""
    gold = (gold or "").strip()
    if not gold:
        return None
    try:
        value = parse_gold_number(gold)
    except ValueError:
        raise LinguaLiftError(f"gold answer {gold!r} is not a number; leave it empty or type a number like 18 or 2.5") from None
    return format_number(value)


class _AnswerSoFar:
    """A transformers streamer (`put` / `end`) that queues the decoded answer after every new token: the first
    `put` (the prompt, empty for a soft prompt) is skipped, and the whole answer is decoded each time, so
    the text is exactly what `generate` returns (no word buffering, as `TextIteratorStreamer` does)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.token_ids.extend(value.reshape(-1).tolist())
        self._queue.put(self.text())

    def end(self) -> None:
        self._queue.put(None)

    def text(self) -> str:
        return self.tokenizer.decode(self.token_ids, skip_special_tokens=True)

    def __iter__(self) -> Iterator[str]:
        while (text := self._queue.get()) is not None:
            yield text


def stream_answer(generator, question: str, *, max_new_tokens: int, stop: list[str]) -> Iterator[str]:
    """The answer so far after each new token (greedy, the text `generate` gives). The HF generators expose
    their token loop (`prepare_batch` + `generate_tokens`), which takes a streamer; any other generator
    (vLLM, a test fake) answers in one piece."""
    if not (hasattr(generator, "prepare_batch") and hasattr(generator, "generate_tokens")):
        yield generator.generate([question], max_new_tokens=max_new_tokens, stop=stop, batch_size=1)[0]
        return
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _UntilCancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

    cancelled = threading.Event()  # set when the page stops reading (closed tab, error): generation stops too
    streamer = _AnswerSoFar(generator.tokenizer)
    batch = generator.prepare_batch([question], left_pad=True)
    options = {"max_new_tokens": max_new_tokens, "do_sample": False, "streamer": streamer,
               "stopping_criteria": StoppingCriteriaList([_UntilCancelled()])}
    if stop:
        options["stop_strings"] = list(stop)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                generator.generate_tokens(batch, **options)
        except BaseException as exc:  # handed to the page's thread below
            failure.append(exc)
            streamer.end()  # unblocks the reader

    worker = threading.Thread(target=run, name="lingualift-demo-generate", daemon=True)
    worker.start()
    try:
        for text in streamer:
            yield trim_at_stop(text.rstrip("\ufffd"), stop)  # a character cut mid-way waits for its next byte
    finally:
        cancelled.set()
        worker.join()
    if failure:
        raise failure[0]
    yield trim_at_stop(streamer.text(), stop)


def token_budget(value, limit: int = PAGE_TOKEN_LIMIT) -> int:
    """The answer length the page was sent (the slider, or any value through the API) as a whole number from
    1 to `limit`: a huge one would tie up the one generation slot for every user of the page."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or not 1 <= value <= limit):
        raise LinguaLiftError(f"max new tokens must be a whole number from 1 to {limit}, got {value!r}")
    return int(value)


def ask(pool: ModelPool, question: str, *, gold: str | None = None, task: str = "mgsm", lang: str = "xx",
        max_new_tokens: int = 256, token_limit: int = PAGE_TOKEN_LIMIT) -> Iterator[list[Answer]]:
    """Ask every model of the pool, one after another; yields the whole answer list after each step (and each
    new piece of an answer) so the page shows progress: waiting / loading / generating (text growing) / done."""
    question = (question or "").strip()
    if not question:
        raise LinguaLiftError("the question is empty: type a question (any language) or load a benchmark problem")
    if len(question) > MAX_QUESTION_CHARS:
        raise LinguaLiftError(f"the question is {len(question):,} characters long; the page takes at most "
                              f"{MAX_QUESTION_CHARS:,} (one question, not a document)")
    if not pool.labels:
        raise LinguaLiftError("no models loaded: start with --model SPEC or add one on the page")
    max_new_tokens = token_budget(max_new_tokens, token_limit)
    gold = canonical_gold(gold)
    task_def = get_task(task or "mgsm")
    example = Example("asked", lang or "xx", question, gold or "")
    answers = [Answer(label, "waiting") for label in pool.labels]
    yield answers
    for answer in answers:
        if not pool.ready(answer.model):
            answer.state = "loading"
            yield answers
        loaded = pool.get(answer.model)
        if loaded.error:
            answer.state, answer.error = "failed", f"failed to load: {loaded.error}"
            yield answers
            continue
        generator = loaded.generator
        answer.state, answer.prompt = "generating", generator.rendered_prompt(question)
        yield answers
        start = time.perf_counter()
        try:
            with pool.generate_lock:
                for answer.output in stream_answer(generator, question, max_new_tokens=max_new_tokens,
                                                   stop=list(task_def.stop)):
                    answer.seconds = time.perf_counter() - start
                    yield answers
        except Exception as exc:  # one broken model must not hide the others' answers
            logger.exception("generation with %s failed", answer.model)
            answer.state, answer.error = "failed", f"generation failed: {first_line(exc)}"
            yield answers
            continue
        answer.seconds = time.perf_counter() - start
        answer.extracted = task_def.extract(answer.output, example)
        answer.correct = task_def.is_correct(answer.extracted, gold) if gold is not None else None
        answer.state = "done"
        yield answers


ANSWER_HEADERS = ["model", "state", "extracted", "matches gold", "seconds", "answer"]


def answer_rows(answers: list[Answer]) -> list[list]:
    marks = {True: "✓ yes", False: "✗ no", None: "–"}
    rows = []
    for a in answers:
        state = {"waiting": "○ waiting", "loading": "… loading model", "generating": "… generating",
                 "done": "✓ done", "failed": "✗ failed"}[a.state]
        extracted = "–" if a.state != "done" else (a.extracted if a.extracted is not None else "(no number)")
        seconds = f"{a.seconds:.2f}" if a.seconds is not None else ""
        rows.append([a.model, state, extracted, marks[a.correct] if a.state == "done" else "", seconds,
                     a.error or a.output])
    return rows


def prompts_markdown(answers: list[Answer]) -> str:
    parts = [f"**{a.model}**\n\n```text\n{a.prompt}\n```" for a in answers if a.prompt]
    return "\n\n".join(parts) or "_No prompt yet: ask a question first._"


# --- benchmark problems ----------------------------------------------------------------------------------


def available_benchmarks(data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """The ASK_TASKS languages whose data file is present (data directory or download cache); no download."""
    found = {}
    for name in ASK_TASKS:
        task = get_task(name)
        langs = []
        for lang in task.languages:
            try:
                data_file(task, lang, data_dir, download=False)
            except LinguaLiftError:
                continue
            langs.append(lang)
        if langs:
            found[name] = langs
    return found


@lru_cache(maxsize=32)
def _examples(task: str, lang: str, data_dir: str | None) -> list[Example]:
    return load_examples(task, lang, data_dir)


def benchmark_problem(task: str, lang: str, index: int, data_dir: str | Path | None = None) -> tuple[Example, int]:
    """Problem number `index` of a benchmark language and how many it has."""
    if not task or not lang:
        raise LinguaLiftError("pick a benchmark and a language first")
    examples = _examples(task, lang, str(data_dir) if data_dir else None)
    index = 0 if index is None else index
    if (isinstance(index, bool) or not isinstance(index, (int, float)) or not math.isfinite(index)
            or index != int(index) or not 0 <= index < len(examples)):
        raise LinguaLiftError(f"{task}/{lang} has problems 0 to {len(examples) - 1}; got {index}")
    return examples[int(index)], len(examples)


# --- the page --------------------------------------------------------------------------------------------


def build_ask_tab(app, pool: ModelPool, *, data_dir: str | Path | None = None, max_new_tokens: int = 256) -> None:
    """The "Ask" tab's components and handlers, inside an open `gr.Blocks` (`app`)."""
    import gradio as gr

    benchmarks = available_benchmarks(data_dir)
    token_limit = max(PAGE_TOKEN_LIMIT, max_new_tokens)
    first_task = next(iter(benchmarks), None)
    with gr.Tab("Ask", id="ask"):
        with gr.Row(equal_height=True):
            question = gr.Textbox(label="Question (any language)", lines=3, scale=3, elem_id="question",
                                  placeholder="Juma ana machungwa 3 na ananunua 4 zaidi. Ana machungwa mangapi?")
            with gr.Column(scale=1, min_width=240):
                gold = gr.Textbox(label="Gold answer (optional)", elem_id="gold")
                ask_button = gr.Button("Ask", variant="primary", elem_id="ask-button")
        with gr.Accordion("Benchmark problem and settings", open=bool(benchmarks)):
            with gr.Row(equal_height=True):
                if benchmarks:
                    bench_task = gr.Dropdown(list(benchmarks), value=first_task, label="benchmark", min_width=120)
                    bench_lang = gr.Dropdown(benchmarks[first_task], value=benchmarks[first_task][0],
                                             label="language", min_width=120)
                    bench_index = gr.Number(0, precision=0, minimum=0, label="problem #", min_width=100)
                    load_problem = gr.Button("Load problem", min_width=120)
                else:
                    gr.Markdown("No MGSM / MMWP / MSVAMP data found: start with `--data-dir DIR` to pick "
                                "benchmark problems.")
                    bench_task = gr.State(None)
                    bench_lang = gr.State(None)
                tokens = gr.Slider(min(8, max_new_tokens), token_limit, value=max_new_tokens, step=8,
                                   label="max new tokens", scale=2)
        ask_status = gr.Markdown(elem_classes="ll-status", elem_id="ask-status")
        answers = gr.Dataframe(table([], ANSWER_HEADERS), label="Answers, side by side", interactive=False,
                               wrap=True, elem_id="answers", column_widths=["18%", "10%", "9%", "8%", "7%", "48%"])
        with gr.Accordion("Prompts the models received (template applied)", open=False):
            prompts = gr.Markdown(prompts_markdown([]))
        with gr.Accordion("Models", open=True):
            models_md = gr.Markdown(pool.status_markdown(), elem_classes="ll-status", elem_id="models")
            with gr.Row(equal_height=True):
                new_model = gr.Textbox(label="add a model", scale=4,
                                       placeholder="LinguaLIFT checkpoint folder, HF model folder or id, preset (tiny-llama)")
                add_button = gr.Button("Load", scale=1)
        # Polls the pool while a model loads and stops once all have loaded or failed; adding one restarts it.
        poll = gr.Timer(STATUS_POLL_SECONDS, active=not pool.settled())

    def do_ask(text, gold_text, n_tokens, task, lang):
        answers_list: list[Answer] = []
        try:
            for answers_list in ask(pool, text, gold=gold_text, task=task or "mgsm", lang=lang or "xx",
                                    max_new_tokens=n_tokens, token_limit=token_limit):
                busy = [a for a in answers_list if a.state in ("loading", "generating", "waiting")]
                status = (f"… {busy[0].state} `{busy[0].model}` ({len(answers_list) - len(busy) + 1}/"
                          f"{len(answers_list)})…" if busy else "")
                yield status, table(answer_rows(answers_list), ANSWER_HEADERS), prompts_markdown(answers_list), \
                    pool.status_markdown()
        except Exception as exc:
            yield message(exc), table(answer_rows(answers_list), ANSWER_HEADERS), \
                prompts_markdown(answers_list), pool.status_markdown()
            return
        done = sum(a.state == "done" for a in answers_list)
        failed = len(answers_list) - done
        yield (f"✓ {done} answer(s)" + (f"; ✗ {failed} model(s) failed (see the table)" if failed else ""),
               table(answer_rows(answers_list), ANSWER_HEADERS), prompts_markdown(answers_list),
               pool.status_markdown())

    ask_inputs = [question, gold, tokens, bench_task, bench_lang]
    ask_button.click(do_ask, ask_inputs, [ask_status, answers, prompts, models_md], api_name="ask")

    def do_add(spec):
        try:
            label = pool.add(spec)
        except Exception as exc:
            return message(exc), pool.status_markdown(), gr.update(), gr.Timer(active=not pool.settled())
        try:
            loaded = pool.get(label, timeout=ADD_WAIT_SECONDS)
        except FutureTimeout:
            return (f"… `{label}` is still loading; the models panel shows when it is ready", pool.status_markdown(),
                    "", gr.Timer(active=True))
        if loaded.error:
            return (f"⚠ `{label}` failed to load: {loaded.error}", pool.status_markdown(), gr.update(),
                    gr.Timer(active=not pool.settled()))
        return f"✓ `{label}` loaded", pool.status_markdown(), "", gr.Timer(active=not pool.settled())

    add_button.click(do_add, [new_model], [ask_status, models_md, new_model, poll], api_name="add_model")

    def do_poll():
        return pool.status_markdown(), gr.Timer(active=not pool.settled())

    # Reading the pool is cheap: not queued behind a running generation.
    poll.tick(do_poll, None, [models_md, poll], api_name="models", show_progress="hidden", concurrency_limit=None)
    app.load(do_poll, None, [models_md, poll], api_visibility="private", show_progress="hidden",
             concurrency_limit=None)

    if benchmarks:
        def do_langs(task):
            langs = benchmarks.get(task, [])
            return gr.update(choices=langs, value=langs[0] if langs else None)

        bench_task.change(do_langs, bench_task, bench_lang, api_visibility="private")

        def do_problem(task, lang, index):
            try:
                example, n = benchmark_problem(task, lang, index, data_dir)
            except Exception as exc:
                return gr.update(), gr.update(), message(exc)
            return example.question, example.gold, f"{task}/{lang} problem {int(index or 0)} of 0–{n - 1} loaded"

        load_problem.click(do_problem, [bench_task, bench_lang, bench_index], [question, gold, ask_status],
                           api_name="load_problem")
