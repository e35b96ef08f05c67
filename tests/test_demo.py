"""The demo page, driven through `gradio_client` like a browser would: asking gives one answer per model,
the runs view shows results.json's own numbers, two runs compare item by item, and bad input gives a
message on the page (never a stack trace), the runs browser stays inside its root, and the page offers the last
pipeline run's models. Two tests drive headless Chromium (Debian `chromium`; required under CI): asking with
streamed answers, and a models panel that follows the loading without a click."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo page needs the [demo] extra (gradio)")
gradio_client = pytest.importorskip("gradio_client", reason="the demo tests need gradio_client ([demo] extra)")

from conftest import require  # noqa: E402
from fakes import FakeGenerator  # noqa: E402

from lingualift.cli import main  # noqa: E402
from lingualift.tools.demo import ModelEntry, ModelPool, build_app, default_models, launch  # noqa: E402
from lingualift.tools.demo.ask_page import ask  # noqa: E402
from lingualift.eval.runner import evaluate  # noqa: E402
from lingualift.inference.generators import load_generator  # noqa: E402
from lingualift.eval.report import ci_text, pct, write_eval_report  # noqa: E402
from lingualift.eval.tasks import get_task, parse_task_langs  # noqa: E402

LANGS = ("en", "sw")
QUESTIONS = {"en": "Tom has {n} apples and buys 4 more. How many apples?",
             "sw": "Juma ana machungwa {n} na ananunua 4 zaidi. Ana machungwa mangapi?"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loader(spec, **options):
    """`fake` answers "The answer is <first number + 1>" (deterministic scoring); anything else is real."""
    return FakeGenerator() if spec == "fake" else load_generator(spec, **options)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Fixture MGSM data, four runs (tiny-llama via the CLI, the fake via `evaluate`, two corrupt ones) and
    the page serving them on a free local port."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LINGUALIFT_CACHE", str(root / "cache"))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        data = root / "data"
        (data / "mgsm").mkdir(parents=True)
        for lang in LANGS:
            rows = [f"{QUESTIONS[lang].format(n=i)}\t{i + 4 + (i % 2)}" for i in range(6)]
            (data / "mgsm" / f"mgsm_{lang}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        runs = root / "runs"
        assert main(["eval", "--model", "tiny-llama", "--tasks", "mgsm", "--langs", ",".join(LANGS), "--limit", "6",
                     "--max-new-tokens", "4", "--batch-size", "6", "--data-dir", str(data), "--offline",
                     "--out", str(runs / "tiny"), "--no-progress", "--device", "cpu", "--bootstrap", "200"]) == 0
        results = evaluate(FakeGenerator(), parse_task_langs("mgsm", ",".join(LANGS)), runs / "fake", data_dir=data,
                           progress=False, n_bootstrap=200)
        write_eval_report(results, runs / "fake")
        shutil.copytree(runs / "fake", runs / "broken-results")
        (runs / "broken-results" / "results.json").write_text('{"tasks": {"mgsm": ', encoding="utf-8")
        shutil.copytree(runs / "fake", runs / "broken-lines")
        with open(runs / "broken-lines" / "predictions" / "mgsm" / "sw.jsonl", "a", encoding="utf-8") as handle:
            handle.write("this is not json\n")
        (root / "empty").mkdir()

        pool = ModelPool(["tiny-llama", "fake", "no-such-model-xyz"], loader=_loader, device="cpu")
        app = build_app(pool, runs_dir=runs, runs_root=root, data_dir=data, max_new_tokens=8)
        port = _free_port()
        launch(app, host="127.0.0.1", port=port, block=False)
        try:
            yield {"root": root, "runs": runs, "data": data, "url": f"http://127.0.0.1:{port}/", "pool": pool}
        finally:
            app.close()
            pool.close()


@pytest.fixture
def client(site):
    """A fresh session (its own run selection) on the shared page."""
    return gradio_client.Client(site["url"], verbose=False, download_files=False)


def _rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def _ask(client, question, gold="", task="mgsm", lang="en"):
    status, answers, prompts, models = client.predict(question, gold, 8, task, lang, api_name="/ask")
    return status, {row["model"]: row for row in _rows(answers)}, prompts, models


def test_ask_gives_one_answer_per_model(client):
    status, answers, prompts, models = _ask(client, "Sara has 6 sweets and gets 1 more. How many?", gold="7")
    assert list(answers) == ["tiny-llama", "fake", "no-such-model-xyz"]
    fake = answers["fake"]
    assert fake["state"] == "✓ done" and fake["answer"] == "The answer is 7."
    assert fake["extracted"] == "7" and fake["matches gold"] == "✓ yes" and float(fake["seconds"]) >= 0
    tiny = answers["tiny-llama"]
    assert tiny["state"] == "✓ done"
    task = get_task("mgsm")
    extracted = task.extract(tiny["answer"], {"lang": "en"})
    assert tiny["extracted"] == (extracted if extracted is not None else "(no number)")
    assert tiny["matches gold"] == ("✓ yes" if task.is_correct(extracted, "7") else "✗ no")
    broken = answers["no-such-model-xyz"]
    assert broken["state"] == "✗ failed" and "failed to load" in broken["answer"]
    assert "no-such-model-xyz" in broken["answer"] and "Traceback" not in broken["answer"]
    assert "2 answer(s)" in status and "1 model(s) failed" in status
    # the template-applied prompt each model received (tiny-llama: the paper template; the fake: its own)
    assert "### Instruction:\nSara has 6 sweets" in prompts and "Q: Sara has 6 sweets" in prompts
    assert "✗ `no-such-model-xyz`: failed to load" in models and "✓ `tiny-llama`: ready" in models


def test_benchmark_problem_and_wrong_answer(client, site):
    question, gold, status = client.predict("mgsm", "sw", 3, api_name="/load_problem")
    assert question == QUESTIONS["sw"].format(n=3) and gold == "8" and "problem 3" in status
    _, answers, _, _ = _ask(client, question, gold=gold, lang="sw")
    assert answers["fake"]["extracted"] == "4" and answers["fake"]["matches gold"] == "✗ no"
    _, _, status = client.predict("mgsm", "sw", 99, api_name="/load_problem")
    assert status.startswith("⚠") and "problems 0 to 5" in status


def test_bad_ask_input_gives_messages(client):
    for question, gold, fragment in (("   ", "", "question is empty"), ("What is 2 + 2?", "four", "not a number")):
        status, answers, _, _ = _ask(client, question, gold=gold)
        assert status.startswith("⚠") and fragment in status and "Traceback" not in status
        assert answers == {}
    message, models, *_ = client.predict("another-missing-model", api_name="/add_model")
    assert message.startswith("⚠") and "another-missing-model" in message and "failed to load" in message
    assert "✗ `another-missing-model`" in models
    message, *_ = client.predict("", api_name="/add_model")
    assert "no model given" in message


def _open(client, folder):
    status, run_choices, _, _ = client.predict(str(folder), api_name="/open_runs")
    return status, run_choices


def test_runs_view_shows_results_json(client, site):
    status, _ = _open(client, site["runs"])
    assert status.startswith("4 run(s)")
    for name in ("tiny", "fake"):
        info, table, chart, _, _, shown, predictions = client.predict(name, api_name="/show_run")
        results = json.loads((site["runs"] / name / "results.json").read_text(encoding="utf-8"))
        rows = _rows(table)
        mgsm = results["tasks"]["mgsm"]
        by_name = {(row["level"], row["name"]): row for row in rows}
        overall = by_name["overall", f"{len(LANGS)} languages"]
        assert (overall["accuracy %"], overall["95% CI"]) == (pct(mgsm["overall"]["accuracy"]),
                                                              ci_text(mgsm["overall"]["ci95"]))
        for lang, entry in mgsm["languages"].items():
            row = by_name["language", lang]
            assert (row["accuracy %"], row["95% CI"], int(row["n"]), int(row["correct"])) == (
                pct(entry["accuracy"]), ci_text(entry["ci95"]), entry["n"], entry["correct"])
        for tier, group in mgsm["tiers"].items():
            assert by_name["tier", tier]["accuracy %"] == pct(group["accuracy"])
        assert chart is not None and "12 predictions" in info
        assert shown.startswith("12 of 12") and len(predictions["data"]) == 12
    # filters: the fake answers n + 1, gold is n + 4 (+1 for odd n): always wrong, never "no answer"
    shown, predictions = client.predict("fake", "mgsm", "sw", "all", "wrong", api_name="/filter_predictions")
    rows = _rows(predictions)
    assert len(rows) == 6 and {(r["lang"], r["status"]) for r in rows} == {("sw", "wrong")}
    assert rows[0]["gold"] == "4" and rows[0]["extracted"] == "1" and rows[0]["output"] == "The answer is 1."
    assert rows[0]["question"] == QUESTIONS["sw"].format(n=0)  # the run's template stripped from the prompt
    shown, predictions = client.predict("fake", "mgsm", "all", "all", "correct", api_name="/filter_predictions")
    assert predictions["data"] == [] and shown.startswith("0 of 12")


def test_compare_two_runs(client, site):
    _open(client, site["runs"])
    info, difference, disagree = client.predict("tiny", "fake", api_name="/compare")
    rows = {(row["level"], row["name"]): row for row in _rows(difference)}
    records = {}
    for name in ("tiny", "fake"):
        for lang in LANGS:
            path = site["runs"] / name / "predictions" / "mgsm" / f"{lang}.jsonl"
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                records.setdefault(name, {})[lang, record["id"]] = record
    for lang in LANGS:
        accuracy = {name: sum(r["correct"] for (l, _), r in records[name].items() if l == lang) / 6
                    for name in records}
        row = rows["language", lang]
        assert row["A %"] == pct(accuracy["tiny"]) and row["B %"] == pct(accuracy["fake"])
        assert row["B − A (points)"] == f"{100 * (accuracy['fake'] - accuracy['tiny']):+.1f}"
        low, high = (float(x) for x in row["95% CI"].strip("[]").split(","))
        assert low <= float(row["B − A (points)"]) <= high and int(row["shared items"]) == 6
    assert ("macro", f"{len(LANGS)} languages") in rows
    differing = [key for key, a in records["tiny"].items() if a["extracted"] != records["fake"][key]["extracted"]]
    assert len(disagree["data"]) == len(differing) and f"{len(differing)} shared item(s)" in info


def test_bad_runs_give_messages(client, site):
    for folder, fragment in ((site["root"] / "empty", "no evaluation runs"), (site["root"] / "nope", "not found")):
        status, choices = _open(client, folder)
        assert status.startswith("⚠") and fragment in status, status
    _open(client, site["runs"])
    for run, fragment in (("broken-results", "results.json:1: malformed JSON"),
                          ("broken-lines", "sw.jsonl:7: not a JSON prediction record")):
        info, table, *_ = client.predict(run, api_name="/show_run")
        assert info.startswith("⚠") and fragment in info and "Traceback" not in info, info
        assert table["data"] == []
    info, _, _ = client.predict("fake", "fake", api_name="/compare")
    assert "two different runs" in info
    info, _, _ = client.predict("fake", "broken-lines", api_name="/compare")
    assert "sw.jsonl:7" in info


def test_runs_browser_stays_inside_its_root(client, site, tmp_path):
    """Typed folders resolve against the page's root (`--runs`): `..`, absolute paths and symlinks that lead out
    are refused (even to a folder holding runs), and the search below a folder is bounded in depth."""
    outside = tmp_path / "elsewhere"
    shutil.copytree(site["runs"] / "fake", outside / "secret-run")
    link = site["root"] / "link-out"
    link.symlink_to(outside, target_is_directory=True)
    try:
        for folder in ("..", "runs/../..", str(outside), "link-out", "/"):
            status, choices = _open(client, folder)
            assert status.startswith("⚠") and "outside the runs folder" in status, (folder, status)
            assert "secret-run" not in json.dumps(choices)
        status, _ = _open(client, "")  # the root itself: its runs, not what a symlink in it points to
        assert status.startswith("4 run(s)"), status
        deep = site["root"] / "deep" / "a" / "b" / "c" / "d"
        shutil.copytree(site["runs"] / "fake", deep / "too-deep")
        shutil.copytree(site["runs"] / "fake", site["root"] / "deep" / "a" / "b" / "found")
        status, choices = _open(client, "deep")
        assert status.startswith("1 run(s)") and "a/b/found" in json.dumps(choices), status
    finally:
        link.unlink()
        shutil.rmtree(site["root"] / "deep", ignore_errors=True)


def test_damaged_runs_give_messages_naming_the_file(client, site):
    """Prediction lines that parse but are not records (wrong types, a list, nesting too deep), results.json
    numbers that are not numbers, an oversized prediction file and a chart that is not an image: each is a
    message on the page naming the file (and line), never an unexpected error; a bad chart leaves the tables."""
    damaged = site["root"] / "damaged"
    lines = {"wrong-type": '{"id": [1], "output": "x", "gold": "1", "correct": true}',
             "a-list": "[1, 2]", "too-deep": "[" * 100_000 + "]" * 100_000}
    try:
        for name, line in lines.items():
            shutil.copytree(site["runs"] / "fake", damaged / name)
            with open(damaged / name / "predictions" / "mgsm" / "sw.jsonl", "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        shutil.copytree(site["runs"] / "fake", damaged / "bad-numbers")
        results_file = damaged / "bad-numbers" / "results.json"
        results = json.loads(results_file.read_text(encoding="utf-8"))
        results["tasks"]["mgsm"]["languages"]["sw"]["accuracy"] = "high"
        results_file.write_text(json.dumps(results), encoding="utf-8")
        shutil.copytree(site["runs"] / "fake", damaged / "bad-chart")
        (damaged / "bad-chart" / "results.png").write_bytes(b"not a png")
        shutil.copytree(site["runs"] / "fake", damaged / "huge")
        with open(damaged / "huge" / "predictions" / "mgsm" / "sw.jsonl", "r+b") as handle:
            handle.truncate(300 * 2**20)  # sparse: no disk used
        status, _ = _open(client, "damaged")
        assert status.startswith("6 run(s)"), status
        for run, fragment in (("wrong-type", "sw.jsonl:7: prediction record field 'id' is [1]"),
                              ("a-list", "sw.jsonl:7: a JSON list, not a prediction record"),
                              ("too-deep", "sw.jsonl:7: not a JSON prediction record"),
                              ("bad-numbers", "results.json: mgsm/sw lacks n / accuracy / ci95"),
                              ("huge", "sw.jsonl: 300 MiB, more than the page reads")):
            info, table, *_ = client.predict(run, api_name="/show_run")
            assert info.startswith("⚠") and fragment in info and "unexpected" not in info, (run, info)
            assert table["data"] == []
        info, table, chart, *_ = client.predict("bad-chart", api_name="/show_run")
        assert "results.png` is not a readable image" in info and chart is None
        assert table["data"] and "12 predictions" in info
    finally:
        shutil.rmtree(damaged, ignore_errors=True)


def test_page_bounds_what_it_is_sent(site):
    """Values only the API (or a modified page) can send: an answer length beyond the slider, a problem number
    that is not a whole number, a question the size of a document."""
    from lingualift.tools.demo.ask_page import MAX_QUESTION_CHARS, benchmark_problem

    pool = site["pool"]
    for tokens in (0, 10**9, 2.5, float("nan"), "many"):
        with pytest.raises(Exception, match="whole number from 1 to 1024"):
            next(ask(pool, "2 + 2?", max_new_tokens=tokens))
    with pytest.raises(Exception, match=f"at most {MAX_QUESTION_CHARS:,}"):
        next(ask(pool, "x" * (MAX_QUESTION_CHARS + 1)))
    assert benchmark_problem("mgsm", "sw", 5.0, site["data"])[0].question == QUESTIONS["sw"].format(n=5)
    for index in (2.5, -1, 6, float("inf")):
        with pytest.raises(Exception, match="has problems 0 to 5"):
            benchmark_problem("mgsm", "sw", index, site["data"])


def test_pipeline_dir_flag_is_checked_before_the_page_starts(tmp_path):
    """An explicit --pipeline-dir must hold a trained checkpoint when the page's models come from it; with
    --model it only supplies the runs."""
    from lingualift.tools.demo.checks import check_pipeline_dir
    from lingualift.errors import LinguaLiftError

    out = tmp_path / "pipeline"
    (out / "runs" / "stage1").mkdir(parents=True)
    with pytest.raises(LinguaLiftError, match="no trained checkpoint"):
        check_pipeline_dir(out, models_from_it=True)
    check_pipeline_dir(out, models_from_it=False)
    _fake_checkpoint(out / "runs" / "stage1" / "final", "plain")
    check_pipeline_dir(out, models_from_it=True)


def test_cli_user_mistakes_exit_2(tmp_path, capsys):
    assert main(["demo", "--runs", str(tmp_path / "nope")]) == 2
    assert main(["demo", "--max-new-tokens", "0"]) == 2
    assert "--runs" in capsys.readouterr().err


def _fake_checkpoint(folder: Path, template: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "lingualift", "prompt_template": template}))
    return folder


def test_default_models_come_from_the_last_pipeline_run(tmp_path):
    """No --model: the LLM alone (its chat template when it has one, else the bridge's) and each stage's final
    checkpoint (its own trained template); without checkpoints, the embedded default LLM with its chat template."""
    fallback = [ModelEntry("default LLM alone (chat template)", "default", "chat")]
    assert default_models(tmp_path / "no-such-folder") == fallback
    out = tmp_path / "pipeline"
    (out / "runs" / "stage1").mkdir(parents=True)  # a run that stopped before its first checkpoint
    assert default_models(out) == fallback

    stage1 = _fake_checkpoint(out / "runs" / "stage1" / "final", "plain")
    stage2 = _fake_checkpoint(out / "runs" / "stage2" / "final", "paper")
    (out / "config.yaml").write_text("models: {encoder: default, llm: default}\n")
    assert default_models(out) == [
        ModelEntry("LLM alone: default (chat template)", "default", "chat"),
        ModelEntry(f"stage 1 (alignment layer trained): {stage1} (plain template)", str(stage1)),
        ModelEntry(f"stage 2 (trained bridge): {stage2} (paper template)", str(stage2)),
    ]
    base_llm = tmp_path / "base-llm"
    base_llm.mkdir()
    (base_llm / "tokenizer_config.json").write_text("{}")
    (out / "config.yaml").write_text(f"models: {{encoder: default, llm: {base_llm}}}\n")
    assert default_models(out)[0] == ModelEntry("LLM alone: base-llm (paper template)", str(base_llm), "paper")
    (base_llm / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert default_models(out)[0].prompt_template == "chat"
    (base_llm / "chat_template.jinja").unlink()
    (base_llm / "tokenizer_config.json").write_text("{oops")  # damaged: the LLM's load fails on the page
    assert default_models(out)[0].prompt_template == "paper"
    (out / "config.yaml").write_text("models: [default]\n")  # not a mapping: the default LLM
    assert default_models(out)[0].spec == "default"


def test_answers_stream_token_by_token():
    """The page's answer grows one token at a time and ends as exactly what `generate` gives."""
    pool = ModelPool(["tiny-llama"], device="cpu")
    try:
        steps = [[a.output for a in answers if a.state == "generating"]
                 for answers in ask(pool, "Juma ana machungwa 3.", max_new_tokens=10)]
        final = pool.get("tiny-llama").generator.generate(["Juma ana machungwa 3."], max_new_tokens=10,
                                                           stop=list(get_task("mgsm").stop))[0]
    finally:
        pool.close()
    partial = [texts[0] for texts in steps if texts]
    assert len(partial) >= 11  # the empty start, then one per new token: this tiny model hits no stop in 10 tokens
    assert all(later.startswith(earlier) for earlier, later in zip(partial, partial[1:]))
    assert partial[-1] == final


# --- a real browser --------------------------------------------------------------------------------------


class DevTools:
    """Chromium's DevTools protocol over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-separated JSON):
    no websocket library and no port to find."""

    def __init__(self, binary: str, profile: Path, width: int, height: int):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire_fds():
            high_in, high_out = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-pipe",
                 "about:blank"]
        self.process = subprocess.Popen([binary, *flags], preexec_fn=wire_fds, pass_fds=(3, 4),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.session = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        page = self.evaluate("document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"the page never showed {what} within {timeout} s; it shows:\n{page[-2000:]}")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


def _chromium() -> str:
    return require(shutil.which("chromium") or shutil.which("chromium-browser"), "Chromium",
                   "Debian: apt-get install -y chromium; .ci/run installs it")


PAGE_TIMEOUT = 300  # s: a healthy machine answers in seconds; a loaded 2-core one can starve the page for minutes


def test_browser_asks_a_question(site, tmp_path):
    """Headless Chromium types a question, clicks Ask and waits for every model's row; the screenshot goes to
    tmp_path (and to $LINGUALIFT_DEMO_SCREENSHOT if set: that is how docs/demo.png is made)."""
    browser = DevTools(_chromium(), tmp_path / "profile", 1280, 1000)
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=site["url"])
        browser.wait_for("!!document.querySelector('#question textarea')", PAGE_TIMEOUT, "the question box")
        browser.evaluate("document.querySelector('#question textarea').focus()")
        browser.send("Input.insertText", text=QUESTIONS["sw"].format(n=3))
        browser.evaluate("document.querySelector('#gold input, #gold textarea').focus()")
        browser.send("Input.insertText", text="7")
        status = "document.querySelector('#ask-status').innerText"
        browser.evaluate("document.querySelector('#ask-button').click()")
        browser.wait_for(f"{status}.trim() !== ''", PAGE_TIMEOUT, "a progress state after clicking Ask")
        status = browser.wait_for(f"{status}.includes('answer(s)') ? {status} : ''", PAGE_TIMEOUT, "the answers")
        assert "2 answer(s)" in status
        table = browser.evaluate("document.querySelector('#answers').innerText")
        assert "The answer is 4." in table and "no-such-model-xyz" in table and "failed to load" in table
        time.sleep(0.5)  # let the table settle before the picture
        png = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    assert png.startswith(b"\x89PNG")
    (tmp_path / "demo.png").write_bytes(png)
    if os.environ.get("LINGUALIFT_DEMO_SCREENSHOT"):
        Path(os.environ["LINGUALIFT_DEMO_SCREENSHOT"]).write_bytes(png)


def test_browser_models_panel_follows_loading_without_a_click(tmp_path):
    """A model still loading when the page opens shows as loading, then as ready once it has loaded: the panel
    follows the pool by itself (the page has no refresh button)."""
    loaded = threading.Event()

    def slow_loader(spec, **options):
        assert loaded.wait(PAGE_TIMEOUT), "the test never released the slow model"
        return FakeGenerator()

    pool = ModelPool(["slow-model"], loader=slow_loader)
    app = build_app(pool, runs_root=tmp_path)
    port = _free_port()
    launch(app, host="127.0.0.1", port=port, block=False)
    browser = DevTools(_chromium(), tmp_path / "profile", 1280, 800)
    panel = "(document.querySelector('#models') || {innerText: ''}).innerText"
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
        browser.wait_for(f"{panel}.includes('slow-model`: loading') || {panel}.includes('slow-model: loading')",
                         PAGE_TIMEOUT, "the slow model loading")
        assert "Refresh" not in browser.evaluate("document.body.innerText")
        loaded.set()
        text = browser.wait_for(f"{panel}.includes('ready') ? {panel} : ''", PAGE_TIMEOUT, "the model ready")
        assert "✓" in text and "slow-model" in text and "FakeGenerator" in text
    finally:
        loaded.set()
        browser.close()
        app.close()
        pool.close()
