"""GPU check (issue 15): the paper's shapes on one GPU, measured in one prepared, time-boxed run.

Run it through `scripts/gpu_check.sh` (sets PYTHONPATH=src, unbuffered output and a hard time limit):

    OUT=/path/to/results bash scripts/gpu_check.sh            # on a GPU machine (one H200): < 8 min
    bash scripts/gpu_check.sh /tmp/gpu-check --cpu-dry-run      # on a CPU: every sub-check, tiny shapes

Sub-checks (each in its own process, with its own time box, so one that fails, hangs or runs out of
memory is recorded and the others still run; the whole run has a hard overall budget):

- `env`: versions, GPU, and whether lingualift's import-time dependencies are present (pyyaml, tqdm).
- `stage1`, `stage2-lora`, `stage2-full`: `lingualift.tools.bench` training steps at the paper's shapes
  (random Llama-2-7B-shaped LLM, mT5-xl-shaped encoder, bf16, gradient checkpointing): tokens/s, MFU,
  peak memory. Target: stage-2 MFU >= 40% (LoRA or full).
- `eval`: bf16 generation (`lingualift.tools.bench.bench_generation`) at batch 1 and 32: tokens/s, peak memory.
  Target: within 24 GiB.
- `invariance`: an example's greedy tokens alone vs inside a left-padded batch (bf16, SDPA), with an fp32
  control on the same weights. Target: identical.
- `fsdp`: one process through `configs/accelerate/fsdp.yaml` (`accelerate launch`): an uninterrupted
  stage-2 run, a repeat of it (determinism control), and a run interrupted after its step checkpoint and
  resumed in a fresh process; the trained tensors must end equal. On a CPU accelerate ignores FSDP
  plugins, so there this is a plain one-process run, and the result says so.

Results: `gpu_check.json` and `gpu_check.md` (the summary table) in the output folder, rewritten after
every sub-check; each sub-check's own JSON in `checks/` and its full output in `logs/`. No weights travel:
every model is built from a config with random weights.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
T0 = float(os.environ.get("GPU_CHECK_T0") or time.time())
TARGET_MFU = 0.40
TARGET_EVAL_GIB = 24.0
REQUIRED = ("torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers", "sentencepiece")
IMPORTED_BY_LINGUALIFT = {"yaml": "pyyaml (lingualift.train.config, lingualift.train.loop import it at module level)",
                          "tqdm": "tqdm (lingualift.tools.bench, lingualift.train.loop, lingualift.inference.generators)",
                          "numpy": "numpy (lingualift.eval.runner; torch / transformers need it too)"}


def say(message: str) -> None:
    """A progress line: wall clock and seconds since the check started."""
    print(f"[gpu_check {time.strftime('%H:%M:%S')} +{time.time() - T0:4.0f}s] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- settings
@dataclasses.dataclass
class Settings:
    device: str = "cuda"
    dry_run: bool = False
    layers: int | None = None  # None: the paper's 32 LLM / 24 encoder layers
    width_divisor: int = 1
    batch_size: int = 8
    encoder_length: int = 256
    target_length: int = 256
    repeats: int = 3
    eval_batch_sizes: tuple[int, ...] = (1, 32)
    new_tokens: int = 64
    eval_repeats: int = 2
    invariance_prompts: int = 8
    invariance_new_tokens: int = 32
    invariance_fp32_control: bool = True
    fsdp_layers: int = 2
    fsdp_width_divisor: int = 2
    fsdp_batch_size: int = 2
    fsdp_length: int = 64
    fsdp_steps: int = 4
    fsdp_save_at: int = 2

    @classmethod
    def cpu_dry_run(cls) -> Settings:
        return cls(device="cpu", dry_run=True, layers=1, width_divisor=64, batch_size=2, encoder_length=16,
                   target_length=16, repeats=1, eval_batch_sizes=(1, 32), new_tokens=4, eval_repeats=1,
                   invariance_prompts=4, invariance_new_tokens=8, fsdp_layers=1, fsdp_width_divisor=64,
                   fsdp_batch_size=2, fsdp_length=16, fsdp_steps=4, fsdp_save_at=2)


DRY_RUN_VOCAB = 512  # the presets' byte tokenizer has 260 tokens


@contextlib.contextmanager
def dry_run_patches(settings: Settings):
    """CPU dry run only: bf16 matmuls on a CPU without avx512_bf16 / AMX run ~50x slower than fp32 (measured on
    the development VM: 1.0-1.3 vs 43-63 GFLOP/s at 256^2-512^2, one thread; `bench.matmul_rate`'s twelve
    1024^2 bf16 products alone took 74 s), so (1) the paper presets' vocabularies (32000 / 250112) shrink to 512, and
    (2) `bench.matmul_rate` (the denominator of `achieved`) measures fp32. Shapes stay tiny; the code paths are
    the GPU ones. Never applied on a GPU run. Yields the list of changes; restores `bench` on exit."""
    if not settings.dry_run or _cuda(settings):
        yield []
        return
    import torch

    from lingualift.tools import bench

    paper_configs, matmul_rate = bench.paper_configs, bench.matmul_rate

    def small_vocab_configs(layers=None, width_divisor=1):
        encoder, llm = paper_configs(layers, width_divisor)
        encoder.vocab_size = llm.vocab_size = DRY_RUN_VOCAB
        return encoder, llm

    bench.paper_configs = small_vocab_configs
    bench.matmul_rate = lambda device, dtype, repeats=10: matmul_rate(device, torch.float32, repeats=3)
    try:
        yield [f"dry run: vocabularies shrunk to {DRY_RUN_VOCAB}", "dry run: matmul rate measured in fp32"]
    finally:
        bench.paper_configs, bench.matmul_rate = paper_configs, matmul_rate


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    cap_s: float  # time box on the GPU (the dry run scales it)
    min_s: float  # below this much time left, the check is skipped (and reserved for it)
    what: str


CHECKS = (
    Check("env", 45, 10, "versions, GPU, lingualift imports"),
    Check("stage1", 80, 30, "stage 1 (alignment layer only), paper shapes"),
    Check("stage2-lora", 80, 30, "stage 2 LoRA, paper shapes"),
    Check("stage2-full", 95, 30, "stage 2 full fine-tuning, paper shapes"),
    Check("eval", 75, 30, "bf16 generation at batch 1 and 32, paper shapes"),
    Check("invariance", 75, 30, "greedy tokens alone vs in a padded batch (bf16 SDPA, fp32 control)"),
    Check("fsdp", 130, 45, "one-process FSDP (configs/accelerate/fsdp.yaml): train, save, resume = uninterrupted"),
)
STAGE_OF = {"stage1": "align", "stage2-lora": "task-lora", "stage2-full": "task-full"}


def _bench_settings(settings: Settings, **overrides):
    from lingualift.tools.bench import BenchSettings

    values = dict(device=settings.device, paper_shapes=True, layers=settings.layers,
                  width_divisor=settings.width_divisor, precision="bf16", gradient_checkpointing=True,
                  batch_size=settings.batch_size, encoder_length=settings.encoder_length,
                  target_length=settings.target_length, repeats=settings.repeats,
                  eval_batch_sizes=settings.eval_batch_sizes, new_tokens=settings.new_tokens,
                  eval_repeats=settings.eval_repeats)
    values.update(overrides)
    return BenchSettings(**values)


def _cuda(settings: Settings) -> bool:
    return settings.device.startswith("cuda")


# ---------------------------------------------------------------------------------------------- sub-checks
def check_env(settings: Settings, out: Path) -> dict:
    import importlib
    import importlib.metadata
    import importlib.util
    import platform
    import shutil
    import tempfile

    result = {"python": platform.python_version(), "versions": {}, "missing": [], "notes": []}
    for name in REQUIRED:
        try:
            result["versions"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            result["missing"].append(name)
    for module, why in IMPORTED_BY_LINGUALIFT.items():
        if importlib.util.find_spec(module) is None:
            result["missing"].append(module)
            result["notes"].append(f"MISSING {why}: bring its wheel (pip install --no-index ./wheels/*.whl)")
    result["flash_attn"] = importlib.util.find_spec("flash_attn") is not None
    import torch

    result["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        result.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=properties.total_memory / 2**30,
                      capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                      cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    elif _cuda(settings):
        result["notes"].append("no CUDA device visible: every GPU sub-check will fail")
    result["disk_free_gib"] = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    for module in ("lingualift.tools.bench", "lingualift.train.loop", "lingualift.inference.generators"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # reported, not raised: the summary names what is broken
            result["notes"].append(f"import {module} failed: {type(exc).__name__}: {exc}")
    if torch.cuda.is_available():
        from lingualift.tools.bench import nominal_peak

        result["nominal_peak_tflops"] = (nominal_peak(torch.device("cuda")) or 0) / 1e12 or None
        if result["nominal_peak_tflops"] is None:
            result["notes"].append("unknown GPU for lingualift.tools.bench.PEAK_BF16_FLOPS: MFU will be missing")
    result["ok"] = not result["missing"] and not any("failed" in note for note in result["notes"]) and (
        result["cuda_available"] or not _cuda(settings))
    return result


def check_train(settings: Settings, out: Path, name: str) -> dict:
    from lingualift.tools import bench

    stage = STAGE_OF[name]
    bench_settings = _bench_settings(settings, stages=(stage,))
    say(f"{name}: bench stage {stage}, batch {bench_settings.batch_size} x ({bench_settings.encoder_length} "
        f"encoder + {bench_settings.target_length} target tokens), layers {settings.layers or 'paper'}")
    report = bench.run_bench(bench_settings, out / "bench" / name, train=True, evaluate=False)
    row = report["training"][0]
    result = {key: row[key] for key in ("stage", "trainable_params", "batch_size", "encoder_tokens", "llm_tokens",
                                        "step_s", "bare_s", "overhead", "tokens_per_s", "model_flops", "achieved",
                                        "mfu", "peak_memory_mb", "step_memory_mb", "step_times")}
    result.update(matmul_tflops=report["matmul_flops"] / 1e12,
                  nominal_peak_tflops=(report["nominal_peak_flops"] or 0) / 1e12 or None,
                  machine=report["machine"])
    if name != "stage1":
        result["target"] = f"MFU >= {TARGET_MFU:.0%} (LoRA or full)"
    return result


def _paper_model(settings: Settings, encoder_length: int):
    import torch

    from lingualift.tools import bench
    from lingualift.model.modeling import LinguaLiftModel

    bench_settings = _bench_settings(settings)
    with bench.paper_presets(bench_settings, torch.device(settings.device)) as (encoder, llm):
        model = LinguaLiftModel.from_components(encoder, llm, "mlp", seed=0, encoder_max_length=encoder_length)
    return model, bench_settings


def check_eval(settings: Settings, out: Path) -> dict:
    """bf16 generation through `bench_generation`, one batch size at a time (each warmed up, each with its
    own allocator peak). The prompt is truncated to `encoder_length` like the training rows."""
    import torch

    from lingualift.tools import bench

    cuda = _cuda(settings)
    model, bench_settings = _paper_model(settings, settings.encoder_length)
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    result = {"weights_mb": weights_mb, "new_tokens": settings.new_tokens, "rows": [],
              "attention": model.llm.config._attn_implementation,
              "target": f"peak memory <= {TARGET_EVAL_GIB:.0f} GiB"}
    for batch_size in settings.eval_batch_sizes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        row = bench.bench_generation(dataclasses.replace(bench_settings, eval_batch_sizes=(batch_size,)), model)[0]
        row.pop("speedup_vs_first", None)
        if cuda:
            row["peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        result["rows"].append(row)
        say(f"eval: batch {batch_size}: {row['tokens_per_s']:.1f} tokens/s, peak {row['peak_memory_mb']:.0f} MiB")
        _write_partial(out, "eval", result)
    first = result["rows"][0]["tokens_per_s"]
    for row in result["rows"]:
        row["x_batch_1"] = row["tokens_per_s"] / first
    if cuda:
        peak = max(row.get("peak_reserved_mb", row["peak_memory_mb"]) for row in result["rows"])
        result["peak_gib"] = peak / 1024
        result["met"] = result["peak_gib"] <= TARGET_EVAL_GIB
    return result


def _invariance_prompts(count: int) -> list[str]:
    from lingualift.tools.bench import FILLER

    # Different lengths (so a batch pads them differently) and different starting points.
    return [FILLER[7 * i : 7 * i + 20 + (180 * i) // max(1, count - 1)] for i in range(count)]


def _greedy(model, generator, questions: list[str], new_tokens: int):
    import torch

    batch = generator.prepare_batch(questions, left_pad=True)
    with torch.inference_mode():
        output = model.generate(**batch.model_inputs(), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                do_sample=False, output_logits=True, return_dict_in_generate=True)
    return output.sequences.cpu(), [step.float().cpu() for step in output.logits]


def _compare_alone_batched(model, generator, questions: list[str], new_tokens: int) -> dict:
    """Greedy tokens of each prompt alone vs in one left-padded batch of all of them."""
    import torch

    batch_tokens, batch_logits = _greedy(model, generator, questions, new_tokens)
    examples, identical = [], 0
    for index, question in enumerate(questions):
        alone_tokens, alone_logits = _greedy(model, generator, [question], new_tokens)
        alone, batched = alone_tokens[0].tolist(), batch_tokens[index].tolist()
        differ = next((t for t, (a, b) in enumerate(zip(alone, batched)) if a != b), None)
        step0 = (alone_logits[0][0] - batch_logits[0][index]).abs().max().item()
        example = {"prompt_chars": len(question), "identical": differ is None, "first_difference": differ,
                   "max_abs_logit_diff_step0": step0}
        if differ is not None:  # same context up to here: how close was the alone run's top-2?
            top = torch.topk(alone_logits[differ][0], 2).values
            example["alone_top2_margin_at_difference"] = (top[0] - top[1]).item()
        identical += differ is None
        examples.append(example)
    return {"identical": identical, "examples": len(questions), "new_tokens": new_tokens,
            "max_abs_logit_diff_step0": max(e["max_abs_logit_diff_step0"] for e in examples),
            "per_example": examples}


def check_invariance(settings: Settings, out: Path) -> dict:
    import torch

    from lingualift.inference.generators import BridgeGenerator

    model, _ = _paper_model(settings, settings.encoder_length)
    attention = model.llm.config._attn_implementation
    result = {"attention_built": attention, "target": "greedy tokens identical alone and in a batch"}
    if attention != "sdpa":  # flash_attn installed: the presets pick it; this check is about SDPA
        model.llm.set_attn_implementation("sdpa")
    result["attention"] = model.llm.config._attn_implementation
    generator = BridgeGenerator(model, device=settings.device)
    questions = _invariance_prompts(settings.invariance_prompts)
    result["bf16"] = _compare_alone_batched(model, generator, questions, settings.invariance_new_tokens)
    say(f"invariance: bf16 {result['bf16']['identical']}/{result['bf16']['examples']} identical, "
        f"max |logit diff| at step 0 {result['bf16']['max_abs_logit_diff_step0']:.3g}")
    result["met"] = result["bf16"]["identical"] == result["bf16"]["examples"]
    _write_partial(out, "invariance", result)
    if settings.invariance_fp32_control:
        model.float()
        with _no_tf32():
            result["fp32_control"] = _compare_alone_batched(model, generator, questions,
                                                            settings.invariance_new_tokens)
        say(f"invariance: fp32 control {result['fp32_control']['identical']}/{result['fp32_control']['examples']} "
            f"identical, max |logit diff| at step 0 {result['fp32_control']['max_abs_logit_diff_step0']:.3g}")
    return result


class _no_tf32:
    """fp32 control without TF32 matmuls (which would round like bf16-ish inputs)."""

    def __enter__(self):
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
        return False


# ------------------------------------------------------------------------------------- fsdp: orchestration
FSDP_RUNS = ("uninterrupted", "repeat", "interrupted")


def check_fsdp(settings: Settings, out: Path, deadline: float) -> dict:
    """Two `accelerate launch` processes with the shipped FSDP config (one process each):
    1. uninterrupted run, its repeat (determinism control), and a run stopped right after its step checkpoint;
    2. the stopped run resumed from `latest` in a fresh process.
    Then the trained tensors (dumped at the end of training, before the final save) are compared."""
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="lingualift-gpu-check-fsdp-"))
    result = {"workdir": str(workdir), "config": str(FSDP_CONFIG.relative_to(REPO)), "launches": [],
              "target": "resumed run ends equal to the uninterrupted one"}
    try:
        _write_fsdp_data(workdir / "train.jsonl", settings.fsdp_batch_size * settings.fsdp_steps * 2)
        for part in ("first", "resume"):
            launch = _launch_fsdp_worker(settings, workdir, out, part, deadline)
            result["launches"].append(launch)
            _write_partial(out, "fsdp", result)
            if launch["rc"] != 0:
                raise RuntimeError(f"launch {part} exited with {launch['rc']}: {launch['error']}")
        workers = [json.loads((workdir / f"worker-{part}.json").read_text()) for part in ("first", "resume")]
        result["workers"] = workers
        first = workers[0]
        result["distributed_type"] = first["distributed_type"]
        result["fsdp_active"] = first["distributed_type"] == "FSDP"
        if not result["fsdp_active"]:
            result["note"] = (f"FSDP NOT active (distributed_type {first['distributed_type']}): accelerate ignores "
                              "FSDP plugins without a GPU, so this was a plain one-process run of the same code path")
        result["compare"] = {
            "resumed_vs_uninterrupted": _compare_dumps(workdir / "uninterrupted", workdir / "interrupted"),
            "repeat_vs_uninterrupted": _compare_dumps(workdir / "uninterrupted", workdir / "repeat"),
        }
        result["losses"] = {run: _losses(workdir / run) for run in FSDP_RUNS}
        result["final_save"] = {run: info.get("final_save") for w in workers for run, info in w["runs"].items()
                                if "final_save" in info}
        result["met"] = result["compare"]["resumed_vs_uninterrupted"]["bitwise_equal"]
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)  # GBs of checkpoints on a GPU; nothing here comes back
    return result


def _write_fsdp_data(path: Path, count: int) -> None:
    from lingualift.tools.bench import FILLER
    from lingualift.io import write_jsonl

    write_jsonl(path, ({"question": FILLER[11 * i : 11 * i + 60 + 9 * i],
                        "answer": FILLER[200 + 13 * i : 260 + 17 * i]} for i in range(count)))


def _launch_fsdp_worker(settings: Settings, workdir: Path, out: Path, part: str, deadline: float) -> dict:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
               "--num_processes", "1", "--num_machines", "1", "--main_process_port", str(29500 + os.getpid() % 1000),
               str(Path(__file__).resolve()), "--fsdp-worker", part, "--workdir", str(workdir),
               "--settings", json.dumps(dataclasses.asdict(settings)), "--deadline", str(deadline - 5)]
    say(f"fsdp: accelerate launch --config_file {FSDP_CONFIG.relative_to(REPO)} --num_processes 1 ... ({part})")
    log = out / "logs" / f"fsdp-launch-{part}.log"  # comes back with the results (the workdir does not)
    started = time.time()
    rc = _run_logged(command, log, max(1.0, deadline - time.time()))
    text = log.read_text(errors="replace")
    launch = {"part": part, "rc": rc, "seconds": time.time() - started, "error": _last_error(text) if rc else None,
              "log": str(log.relative_to(out))}
    say(f"fsdp: launch {part} finished: rc {rc} in {launch['seconds']:.0f} s")
    return launch


def _compare_dumps(left: Path, right: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(left / "trained.safetensors"), load_file(right / "trained.safetensors")
    if a.keys() != b.keys():
        return {"bitwise_equal": False, "error": f"different tensors: {sorted(a.keys() ^ b.keys())[:5]}"}
    unequal = [name for name in a if not torch.equal(a[name], b[name])]
    diff = max(((a[n].double() - b[n].double()).abs().max().item() for n in a), default=0.0)
    return {"bitwise_equal": not unequal, "tensors": len(a), "unequal_tensors": len(unequal),
            "max_abs_diff": diff, "parameters": sum(t.numel() for t in a.values())}


def _losses(run_dir: Path) -> list[float]:
    log = run_dir / "train_log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["loss"] for line in log.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------- fsdp: the worker
def fsdp_worker(part: str, workdir: Path, settings: Settings) -> int:
    """Runs under `accelerate launch`; registers the paper-shape presets in this process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    with dry_run_patches(settings):
        return _fsdp_runs(part, workdir, settings)


def _fsdp_runs(part: str, workdir: Path, settings: Settings) -> int:
    import torch

    from lingualift.tools import bench
    from lingualift.train.config import config_from_dict
    from lingualift.train.loop import Trainer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bench_settings = _bench_settings(settings, layers=settings.fsdp_layers, width_divisor=settings.fsdp_width_divisor)
    report = {"part": part, "runs": {}, "env": {k: os.environ.get(k) for k in
                                                ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "FSDP_STATE_DICT_TYPE",
                                                 "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_MIXED_PRECISION")}}

    class _Stop(Exception):
        pass

    class CheckTrainer(Trainer):
        stop_at: int | None = None
        run: str = ""

        def save_checkpoint(self):
            super().save_checkpoint()
            if self.stop_at is not None and self.step >= self.stop_at:
                raise _Stop

        def save_final(self):
            _dump_trainable(self, workdir / self.run / "trained.safetensors")
            info = report["runs"][self.run]
            try:
                path = super().save_final()
                info["final_save"] = {"ok": True, "files": sorted(str(p.relative_to(path)) for p in path.rglob("*")
                                                                   if p.is_file())[:20]}
            except Exception as exc:  # recorded: the check goes on to compare the dumped tensors
                info["final_save"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
                traceback.print_exc()
            return workdir / self.run / "final"

    def config(run: str, resume: bool):
        raw = {"method": "lingualift", "stage": "task",
               "model": {"encoder": "paper-mt5-xl", "llm": "paper-llama2-7b",
                         "encoder_max_length": settings.fsdp_length},
               "data": {"train": str(workdir / "train.jsonl"), "max_target_length": settings.fsdp_length},
               "training": {"output_dir": str(workdir / run), "tuning": "full", "precision": "bf16",
                            "batch_size": settings.fsdp_batch_size, "max_steps": settings.fsdp_steps,
                            "gradient_checkpointing": True, "log_every": 1, "tensorboard": False,
                            "save_every": settings.fsdp_save_at if run == "interrupted" else None,
                            "resume_from_checkpoint": "latest" if resume else None}}
        return config_from_dict(raw, f"gpu-check:fsdp:{run}")

    runs = (("uninterrupted", False), ("repeat", False), ("interrupted", False)) if part == "first" else \
        (("interrupted", True),)
    try:
        with bench.paper_presets(bench_settings, device):
            _fsdp_loop(runs, report, CheckTrainer, config, settings, _Stop)
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        raise
    finally:
        if int(os.environ.get("RANK", "0")) == 0:
            from lingualift.io import write_json

            write_json(workdir / f"worker-{part}.json", report)
    return 0


def _fsdp_loop(runs, report: dict, trainer_class, config, settings: Settings, stop) -> None:
    for run, resume in runs:
        started = time.time()
        say(f"fsdp worker ({report['part']}): run {run}{' (resume from latest)' if resume else ''}")
        info = report["runs"].setdefault(run, {})
        trainer = trainer_class(config(run, resume))
        trainer.run = run
        trainer.stop_at = settings.fsdp_save_at if (run == "interrupted" and not resume) else None
        parameter = next(p for p in trainer.model.parameters() if p.requires_grad)
        report["distributed_type"] = str(trainer.accelerator.distributed_type).split(".")[-1]
        report["num_processes"] = trainer.accelerator.num_processes
        info.update(parameter_class=type(parameter).__name__, parameter_dtype=str(parameter.dtype),
                    trainable_params=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))
        plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
        if plugin is not None:
            report["fsdp_plugin"] = {"version": getattr(plugin, "fsdp_version", None),
                                     "state_dict_type": str(getattr(plugin, "state_dict_type", None)),
                                     "reshard_after_forward": str(getattr(plugin, "reshard_after_forward", None))}
        try:
            trainer.train()
            info["stopped_at"] = None
        except stop:
            info["stopped_at"] = trainer.step
            say(f"fsdp worker: run {run} stopped after its checkpoint at step {trainer.step} (simulated crash)")
        info["steps"] = trainer.step
        info["seconds"] = time.time() - started
        del trainer, parameter
        _free()


def _dump_trainable(trainer, path: Path) -> None:
    """The trained tensors, gathered (FSDP2 DTensors: `full_tensor`), in their own dtype, bit for bit."""
    from safetensors.torch import save_file

    tensors = {}
    for name, parameter in trainer.model.named_parameters():
        if parameter.requires_grad:
            full = parameter.full_tensor() if hasattr(parameter, "full_tensor") else parameter
            tensors[name] = full.detach().cpu().contiguous().clone()
    if trainer.accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path))


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- child process
def _write_partial(out: Path, name: str, result: dict) -> None:
    from lingualift.io import write_json

    write_json(out / "checks" / f"{name}.partial.json", result)


def _watchdog(deadline: float) -> None:
    """Leave at the deadline whatever happens (a hung kernel, a stuck collective): the driver moves on."""
    def run():
        time.sleep(max(0.0, deadline - time.time()))
        say("deadline reached: exiting this sub-check (time box)")
        os._exit(124)

    threading.Thread(target=run, daemon=True).start()


def child(name: str, out: Path, settings: Settings, deadline: float, watchdog: bool = True) -> int:
    """Run one sub-check and write `checks/<name>.json`; 0 when it ran (whatever it found), 1 on an error."""
    if watchdog:
        _watchdog(deadline)
    from lingualift.io import write_json

    started = time.time()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    patches = []
    try:
        with (contextlib.nullcontext([]) if name == "env" else dry_run_patches(settings)) as patches:
            if name == "env":
                result = check_env(settings, out)
            elif name in STAGE_OF:
                result = check_train(settings, out, name)
            elif name == "eval":
                result = check_eval(settings, out)
            elif name == "invariance":
                result = check_invariance(settings, out)
            elif name == "fsdp":
                result = check_fsdp(settings, out, deadline)
            else:
                raise ValueError(name)
        status = "ok"
    except Exception as exc:  # every failure (CUDA OOM included) is this check's result, not the run's end
        traceback.print_exc()
        partial = out / "checks" / f"{name}.partial.json"  # what the check had measured before it failed
        result = json.loads(partial.read_text()) if partial.is_file() else {}
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if settings.device.startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                result["peak_memory_mb_at_error"] = torch.cuda.max_memory_allocated() / 2**20
        status = "error"
    result["status"], result["seconds"] = status, time.time() - started
    if status == "ok" and patches:
        result["dry_run_patches"] = patches
    write_json(out / "checks" / f"{name}.json", result)
    return 0 if status == "ok" else 1


# ---------------------------------------------------------------------------------------------- driver
def _run_logged(command: list[str], log: Path, timeout: float, env: dict | None = None) -> int:
    """Run in its own session, output to `log`; echo its progress lines; kill its process group on timeout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=env, start_new_session=True, text=True, errors="replace", bufsize=1)
        _CURRENT.append(process)

        def pump():
            for line in process.stdout:
                handle.write(line)
                handle.flush()
                if line.startswith("[gpu_check"):
                    print(line, end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            reader.join(5)
            handle.write(f"\n[gpu_check] killed after its time box of {timeout:.0f} s\n")
            return 124
        finally:
            _CURRENT.remove(process)
        reader.join(5)
        return process.returncode


_CURRENT: list[subprocess.Popen] = []


def _kill(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (torchrun forwards it to its workers), then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_error(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ("Error" in line or "Exception" in line or "error:" in line) and not line.startswith("File "):
            return line[:400]
    return lines[-1][:400] if lines else None


def summarise(results: dict, settings: Settings, meta: dict) -> dict:
    rows = []
    best_stage2 = [results[n].get("mfu") for n in ("stage2-lora", "stage2-full")
                   if results.get(n, {}).get("status") == "ok" and results[n].get("mfu") is not None]
    for check in CHECKS:
        result = results.get(check.name, {"status": "not run"})
        status = result.get("status", "?")
        metrics, verdict = "", "–"
        if status == "ok":
            try:
                metrics, verdict = _describe(check.name, result, settings, best_stage2)
            except (KeyError, TypeError, ValueError) as exc:  # never lose the summary over one odd result
                metrics, verdict = f"(cannot summarise: {type(exc).__name__}: {exc}; see checks/{check.name}.json)", "?"
        elif result.get("error"):
            metrics = result["error"]
        rows.append({"check": check.name, "status": status, "seconds": result.get("seconds"), "result": metrics,
                     "target": _target(check.name), "verdict": verdict})
    return {"meta": meta, "settings": dataclasses.asdict(settings), "rows": rows, "checks": results}


def _target(name: str) -> str:
    return {"stage2-lora": f"MFU ≥ {TARGET_MFU:.0%} (LoRA or full)", "stage2-full": f"MFU ≥ {TARGET_MFU:.0%} (LoRA or full)",
            "eval": f"≤ {TARGET_EVAL_GIB:.0f} GiB", "invariance": "identical", "fsdp": "resumed = uninterrupted"}.get(name, "")


def _describe(name: str, r: dict, settings: Settings, best_stage2: list) -> tuple[str, str]:
    cuda = _cuda(settings)
    if name == "env":
        text = f"torch {r['versions'].get('torch')}, transformers {r['versions'].get('transformers')}, " \
               f"accelerate {r['versions'].get('accelerate')}, peft {r['versions'].get('peft')}; " + \
               (f"{r['gpu']} ({r['gpu_memory_gib']:.0f} GiB)" if r.get("gpu") else "no GPU") + \
               f"; flash_attn {'yes' if r['flash_attn'] else 'no'}" + \
               (f"; MISSING {', '.join(r['missing'])}" if r["missing"] else "; pyyaml, tqdm present")
        return text, "ok" if r["ok"] else "problem: " + "; ".join(r["notes"])[:200]
    if name in STAGE_OF:
        mfu = f"MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else \
            f"MFU n/a (no GPU peak; {100 * r['achieved']:.0f}% of measured matmul)"
        text = (f"{r['tokens_per_s']:.0f} tokens/s, {r['step_s']:.3f} s/step ({r['llm_tokens']} LLM tokens), {mfu}, "
                f"peak {r['peak_memory_mb'] / 1024:.2f} GiB, {r['trainable_params']:,} trainable")
        if name == "stage1":
            return text, "–"
        if not cuda or not best_stage2:
            return text, "n/a (CPU)" if not cuda else "n/a"
        return text, "met" if max(best_stage2) >= TARGET_MFU else f"missed (best {100 * max(best_stage2):.1f}%)"
    if name == "eval":
        parts = [f"batch {row['batch_size']}: {row['tokens_per_s']:.1f} tokens/s, peak {row['peak_memory_mb'] / 1024:.2f} GiB"
                 + (f" ({row['peak_reserved_mb'] / 1024:.2f} reserved)" if "peak_reserved_mb" in row else "")
                 for row in r["rows"]]
        verdict = ("met" if r["met"] else "missed") if cuda and "met" in r else "n/a (CPU)"
        weights = f"{r['weights_mb'] / 1024:.2f} GiB" if r["weights_mb"] >= 100 else f"{r['weights_mb']:.1f} MiB"
        return "; ".join(parts) + f"; weights {weights}", verdict
    if name == "invariance":
        bf16 = r["bf16"]
        text = (f"bf16 {r['attention']}: {bf16['identical']}/{bf16['examples']} identical "
                f"({bf16['new_tokens']} tokens), max |Δlogit| step 0 {bf16['max_abs_logit_diff_step0']:.3g}")
        if "fp32_control" in r:
            control = r["fp32_control"]
            text += (f"; fp32 control {control['identical']}/{control['examples']}, "
                     f"max |Δlogit| {control['max_abs_logit_diff_step0']:.3g}")
        return text, "met" if r["met"] else "missed"
    if name == "fsdp":
        resumed, repeat = r["compare"]["resumed_vs_uninterrupted"], r["compare"]["repeat_vs_uninterrupted"]
        saves = r.get("final_save", {})
        active = "FSDP" if r["fsdp_active"] else f"NOT FSDP ({r['distributed_type']}" + \
            (", CPU: accelerate ignores the FSDP plugin)" if not cuda else ")")
        text = (f"{active}, "
                f"{settings.fsdp_steps} steps, stop+resume at {settings.fsdp_save_at}: resumed vs uninterrupted "
                f"{'bitwise equal' if resumed['bitwise_equal'] else 'max |Δ| %.3g' % resumed.get('max_abs_diff', float('nan'))}"
                f" ({resumed.get('tensors', 0)} tensors); repeat vs uninterrupted "
                f"{'bitwise equal' if repeat['bitwise_equal'] else 'max |Δ| %.3g' % repeat.get('max_abs_diff', float('nan'))}"
                f"; final save {'ok' if all(s and s['ok'] for s in saves.values()) else 'FAILED'}")
        return text, ("met" if r["met"] else "missed") + ("" if r["fsdp_active"] else " (without FSDP)")
    return "", "–"


def markdown(summary: dict) -> str:
    meta = summary["meta"]
    lines = [f"# GPU check (issue 15){' — CPU DRY RUN (tiny shapes; no GPU numbers)' if summary['settings']['dry_run'] else ''}",
             "", f"Started {meta['started']}, {meta['elapsed_s']:.0f} s of a {meta['budget_s']:.0f} s budget; "
             f"machine: {meta.get('machine', '?')}.", "",
             f"Shapes: layers {summary['settings']['layers'] or 'paper (LLM 32, encoder 24)'}, width divisor "
             f"{summary['settings']['width_divisor']}, training batch {summary['settings']['batch_size']} × "
             f"({summary['settings']['encoder_length']} encoder + {summary['settings']['target_length']} target) "
             "tokens, bf16, gradient checkpointing.", "",
             "| check | status | s | result | target | verdict |", "|---|---|---:|---|---|---|"]
    for row in summary["rows"]:
        seconds = f"{row['seconds']:.0f}" if row["seconds"] is not None else ""
        result = str(row["result"]).replace("|", "\\|")
        lines.append(f"| {row['check']} | {row['status']} | {seconds} | {result} | {row['target']} | {row['verdict']} |")
    fsdp = summary["checks"].get("fsdp", {})
    if fsdp.get("note"):
        lines += ["", f"Note (fsdp): {fsdp['note']}."]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu or 'unknown CPU'}, {os.cpu_count()} CPUs"


def driver(args) -> int:
    out = Path(args.out).resolve()
    settings = Settings.cpu_dry_run() if args.cpu_dry_run else Settings()
    for key in ("layers", "width_divisor", "batch_size", "encoder_length", "target_length", "repeats", "new_tokens"):
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
    budget = args.budget or (1200.0 if args.cpu_dry_run else 420.0)
    scale = args.time_scale or (6.0 if args.cpu_dry_run else 1.0)
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - {c.name for c in CHECKS}
    if unknown:
        print(f"error: --only: unknown check(s) {', '.join(sorted(unknown))} "
              f"(known: {', '.join(c.name for c in CHECKS)})", file=sys.stderr)
        return 2
    checks = [c for c in CHECKS if only is None or c.name in only]
    deadline = T0 + budget
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0)), "budget_s": budget,
            "machine": _machine(), "argv": sys.argv[1:], "out": str(out)}
    results: dict = {}
    say(f"{'CPU DRY RUN: tiny shapes, ' if settings.dry_run else ''}{len(checks)} sub-checks, budget {budget:.0f} s, "
        f"results in {out}")

    def finish(signum=None, frame=None):
        for process in list(_CURRENT):
            _kill(process)
        if signum is not None:
            for check in checks:
                results.setdefault(check.name, {"status": "killed", "error": "SIGTERM (the overall hard limit) stopped the run"})
        _write_summary(out, results, settings, meta)
        if signum is not None:
            say("stopped by SIGTERM (the overall hard limit); partial summary written")
            sys.exit(124)

    previous_handler = signal.signal(signal.SIGTERM, finish)
    env = dict(os.environ, GPU_CHECK_T0=str(T0), PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    for index, check in enumerate(checks):
        reserve = sum(later.min_s for later in checks[index + 1:])  # keep the minimum for every later check
        box = min(check.cap_s * scale, deadline - time.time() - reserve)
        if box < check.min_s:
            results[check.name] = {"status": "skipped", "error": f"only {max(0, box):.0f} s left in the budget"}
            say(f"{check.name}: skipped (budget)")
            _write_summary(out, results, settings, meta)
            continue
        say(f"{check.name}: start ({check.what}; time box {box:.0f} s)")
        started = time.time()
        command = [sys.executable, str(Path(__file__).resolve()), str(out), "--child", check.name,
                   "--settings", json.dumps(dataclasses.asdict(settings)), "--deadline", str(started + box - 3)]
        log = out / "logs" / f"{check.name}.log"
        rc = _run_logged(command, log, box, env=env)
        result_file = out / "checks" / f"{check.name}.json"
        partial = out / "checks" / f"{check.name}.partial.json"
        if result_file.is_file() and rc in (0, 1):
            result = json.loads(result_file.read_text())
        else:
            result = json.loads(partial.read_text()) if partial.is_file() else {}
            text = log.read_text(errors="replace") if log.is_file() else ""
            timed_out = rc in (124, -9, 137) or "time box" in text[-300:]
            result.update(status="timeout" if timed_out else "error", seconds=time.time() - started,
                          error=(f"exceeded its time box of {box:.0f} s" if timed_out else
                                 f"exit {rc}: {_last_error(text)}"))
        results[check.name] = result
        line = f"{check.name}: {result['status']} in {time.time() - started:.0f} s"
        if result.get("error"):
            line += f" — {result['error'][:300]}"
        say(line)
        _write_summary(out, results, settings, meta)
    signal.signal(signal.SIGTERM, previous_handler)
    meta["elapsed_s"] = time.time() - T0
    summary = _write_summary(out, results, settings, meta)
    print()
    print(markdown(summary))
    say(f"done in {time.time() - T0:.0f} s; wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


def _write_summary(out: Path, results: dict, settings: Settings, meta: dict) -> dict:
    meta["elapsed_s"] = time.time() - T0
    summary = summarise(results, settings, meta)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.json", json.dumps(summary, indent=2, default=str) + "\n"),
                       ("gpu_check.md", markdown(summary))):
        tmp = out / f".{name}.tmp"  # stdlib only here: the driver must work even where lingualift cannot import
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return summary


def _settings_from_json(text: str) -> Settings:
    values = json.loads(text)
    values["eval_batch_sizes"] = tuple(values["eval_batch_sizes"])
    return Settings(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    parser.add_argument("--cpu-dry-run", action="store_true", default=os.environ.get("GPU_CHECK_CPU_DRY_RUN") == "1",
                        help="tiny shapes on the CPU: every sub-check end to end (also GPU_CHECK_CPU_DRY_RUN=1)")
    parser.add_argument("--budget", type=float, help="overall seconds (GPU 420; dry run 1200: a shared 2-core CPU is slow)")
    parser.add_argument("--time-scale", type=float, help="multiply every sub-check's time box (dry run: 6)")
    parser.add_argument("--only", help="comma-separated sub-checks: " + ",".join(c.name for c in CHECKS))
    parser.add_argument("--layers", type=int, help="shrink both models to N layers (default: the paper's)")
    parser.add_argument("--width-divisor", type=int, help="divide every width (dry run: 16)")
    parser.add_argument("--batch-size", type=int, help="training batch (GPU default 8)")
    parser.add_argument("--encoder-length", type=int)
    parser.add_argument("--target-length", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--fsdp-worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fsdp_worker:
        _watchdog(args.deadline)
        return fsdp_worker(args.fsdp_worker, Path(args.workdir), _settings_from_json(args.settings))
    if args.child:
        return child(args.child, Path(args.out), _settings_from_json(args.settings), args.deadline)
    if not args.out:
        print("error: give the results folder as the first argument or in $OUT", file=sys.stderr)
        return 2
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
