"""The lm-eval plugin and task YAMLs: shipped for every language, score like `lingualift eval`, and
lingualift never imports lm-eval unless asked."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest
import yaml
from conftest import require_module
from fakes import FakeGenerator

from lingualift.eval.tasks import TASKS

TASKS_DIR = resources.files("lingualift").joinpath("resources/lm_eval_tasks")


@pytest.mark.parametrize("name", ["mgsm", "mmwp", "msvamp"])
def test_task_yamls_cover_every_language(name):
    group = yaml.safe_load(TASKS_DIR.joinpath(f"lingualift_{name}.yaml").read_text("utf-8"))
    assert group["task"] == [f"lingualift_{name}_{lang}" for lang in TASKS[name].languages]
    for lang in TASKS[name].languages:
        config = yaml.safe_load(TASKS_DIR.joinpath(f"lingualift_{name}_{lang}.yaml").read_text("utf-8"))
        assert config["dataset_kwargs"] == {"task": name, "lang": lang}
        assert config["include"] == "_lingualift_math_template"


def test_lingualift_does_not_import_lm_eval():
    code = ("import sys, lingualift.cli, lingualift.eval.tasks, lingualift.eval.runner, lingualift.eval.report, "
            "lingualift.eval.diagnose; assert 'lm_eval' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_utils_load_and_score(tmp_path):
    require_module("datasets", "datasets (an lm-eval dependency)", "scripts/env.sh installs lm-eval")
    sys.path.insert(0, str(TASKS_DIR))
    try:
        import utils
    finally:
        sys.path.remove(str(TASKS_DIR))
    (tmp_path / "mgsm").mkdir()
    (tmp_path / "mgsm" / "mgsm_sw.tsv").write_text("Swali 1?\t18\nSwali 2?\t3\n", encoding="utf-8")
    dataset = utils.load_dataset(task="mgsm", lang="sw", data_dir=str(tmp_path), version=1.0)
    docs = list(dataset["test"])
    assert docs[0] == {"id": "sw-0", "task": "mgsm", "lang": "sw", "question": "Swali 1?", "answer": "18"}
    assert utils.process_results(docs[0], ["... so 9 * 2 = 18 dollars."]) == {"acc": 1.0}
    assert utils.process_results(docs[1], ["The answer is 4."]) == {"acc": 0.0}


def test_llamacpp_backend_ignores_lm_evals_device(monkeypatch):
    """lm-eval's --device (cuda on a GPU machine) is for torch backends; llama.cpp gets none and runs on the CPU."""
    require_module("lm_eval", "lm-eval", "pip install 'lingualift[lm-eval]'; scripts/env.sh installs it")
    import torch

    from lingualift.eval import lm_eval_plugin
    from lingualift.inference import generators as inference

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(inference, "load_generator", lambda *args, **kwargs: calls.append(kwargs) or FakeGenerator())
    lm_eval_plugin.LinguaLiftLM.create_from_arg_string("pretrained=tiny-llama,backend=llamacpp,precision=f16",
                                                       {"device": "cuda:0"})
    lm_eval_plugin.LinguaLiftLM.create_from_arg_string("pretrained=tiny-llama", {"device": "cuda:0"})
    assert [(c["backend"], c["device"], c.get("precision")) for c in calls] == [("llamacpp", None, "f16"),
                                                                              ("hf", "cuda:0", None)]


def test_model_class(monkeypatch):
    require_module("lm_eval", "lm-eval", "pip install 'lingualift[lm-eval]'; scripts/env.sh installs it")
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    from lingualift.eval import lm_eval_plugin
    from lingualift.inference import generators as inference

    fake = FakeGenerator()
    monkeypatch.setattr(inference, "load_generator", lambda *args, **kwargs: fake)
    assert get_model("lingualift") is lm_eval_plugin.LinguaLiftLM
    lm = lm_eval_plugin.LinguaLiftLM.create_from_arg_string("pretrained=tiny-llama,batch_size=2", {"device": "cuda"})

    def request(kind, args, index):
        return Instance(request_type=kind, doc={}, arguments=args, idx=index)

    outputs = lm.generate_until([
        request("generate_until", ("has 4 eggs", {"until": ["\n"], "max_gen_toks": 8}), 0),
        request("generate_until", ("has 9 eggs", {"until": "</s>", "do_sample": False}), 1),
        request("generate_until", ("has 1 egg", {"until": ["\n"], "max_gen_toks": 8}), 2),
    ])
    assert outputs == ["The answer is 5.", "The answer is 10.", "The answer is 2."]
    assert len(fake.calls) == 2  # grouped by generation settings
    scores = lm.loglikelihood([request("loglikelihood", ("a b", "a c"), 0),
                               request("loglikelihood", ("a b", "b a"), 1)])
    assert scores == [(-(4.0 - 1), False), (-(4.0 - 2), True)]  # the fake is greedy on a fully shared target
    assert lm.loglikelihood_rolling([request("loglikelihood_rolling", ("x y z",), 0)]) == [-6.0]
    assert fake.scored_end_of_sequence == [False, False]  # log P(continuation), not of continuation + eos


def test_entry_point_declared():
    from importlib.metadata import entry_points

    points = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    if "lingualift" not in points:
        pytest.skip("lingualift is not installed as a distribution here")
    assert points["lingualift"] == "lingualift.eval.lm_eval_plugin:LinguaLiftLM"


def test_simple_evaluate_through_the_plugin(tmp_path):
    """A real `lm_eval.simple_evaluate` run: the `lingualift` model (tiny-llama) on a task YAML, local data,
    offline. lm-eval's answers are the generator's own, and its accuracy is `lingualift eval`'s scoring."""
    lm_eval = require_module("lm_eval", "lm-eval", "pip install 'lingualift[lm-eval]'; scripts/env.sh installs it")
    from lm_eval.tasks import TaskManager

    from lingualift.eval import lm_eval_plugin
    from lingualift.eval.tasks import get_task
    from lingualift.inference.generators import load_generator

    rows = [("Juma ana machungwa 3 na ananunua 4 zaidi. Ana machungwa mangapi?", "7"),
            ("Amina ana kalamu 5 na anapoteza 2. Ana kalamu ngapi?", "3"),
            ("Kuna ndege 9 na 1 zinaruka. Ndege ngapi zimebaki?", "8")]
    (tmp_path / "mgsm").mkdir()
    (tmp_path / "mgsm" / "mgsm_sw.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in rows), encoding="utf-8")
    new_tokens = 8
    results = lm_eval.simple_evaluate(
        model="lingualift", model_args=f"pretrained=tiny-llama,device=cpu,batch_size={len(rows)}",
        tasks=["lingualift_mgsm_sw"], gen_kwargs={"max_gen_toks": new_tokens}, bootstrap_iters=0, log_samples=True,
        task_manager=TaskManager(include_path=lm_eval_plugin.TASKS_DIR, metadata={"data_dir": str(tmp_path)}))

    samples = sorted(results["samples"]["lingualift_mgsm_sw"], key=lambda s: s["doc_id"])
    assert [s["doc"]["question"] for s in samples] == [q for q, _ in rows]
    task = get_task("mgsm")
    until = samples[0]["arguments"][0][1]["until"]
    expected = load_generator("tiny-llama", device="cpu").generate([q for q, _ in rows], max_new_tokens=new_tokens,
                                                                   stop=until)
    assert [s["filtered_resps"][0] for s in samples] == expected and [s["target"] for s in samples] == [a for _, a in rows]
    correct = [task.is_correct(task.extract(text, {"lang": "sw"}), gold) for text, (_, gold) in zip(expected, rows)]
    assert results["results"]["lingualift_mgsm_sw"]["acc,none"] == pytest.approx(sum(correct) / len(rows))
