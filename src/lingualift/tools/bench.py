"""`lingualift bench`: training and generation speed and memory, against the bare models and the hardware.

Training: for every stage and baseline (`align`, `task-full`, `task-lora`, `langbridge`, `sft`) a real
`training.Trainer` is built from a config (freeze policy, LoRA, fused AdamW, accelerate) and one optimiser
step (`Trainer.optimizer_step`) is timed on a fixed batch. Each is paired with the *bare* step on the same
tokens: the encoder forward plus the LLM forward/backward on the already-packed input embeddings, with the
same optimiser, so `overhead = wrapper / bare - 1` is what the LinguaLIFT wrapper (packing, alignment
layer, loss; collation is timed apart) adds. Wrapper and bare steps alternate; step times are medians and
the overhead is the median of adjacent pairs' ratios, because a shared machine has slow bursts. `achieved`
is the model FLOPs of a step (analytic, see `step_flops`) per second over the machine's best measured dense
matmul rate.

Generation: `BridgeGenerator` decoding a fixed number of new tokens (`min_new_tokens`, so EOS never
shortens a row) at batch sizes 1, 8, 32; tokens/s and the ratio to batch 1.

`--paper-shapes` builds randomly initialised models of the paper's shapes (a Llama-2-7B LLM and an
mT5-xl encoder) directly on the GPU in bf16 and runs the same measurements with gradient checkpointing.
On CPU it refuses unless `--allow-cpu` (with `--layers`, a smoke test).

Tokens are LLM input positions (soft prompt, prefix, target), the sequence the LLM runs over.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
import dataclasses
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from lingualift.data.collate import Batch
from lingualift.model import components
from lingualift.errors import LinguaLiftError
from lingualift.eval.report import markdown_table
from lingualift.inference.base import BACKENDS, LLAMACPP_DEFAULT_PRECISION, LLAMACPP_PRECISIONS
from lingualift.io import atomic_write, write_json
from lingualift.schema import option

logger = logging.getLogger(__name__)

STAGES = {  # name -> (method, stage, tuning)
    "align": ("lingualift", "align", "full"),
    "task-full": ("lingualift", "task", "full"),
    "task-lora": ("lingualift", "task", "lora"),
    "langbridge": ("langbridge", "align", "full"),
    "sft": ("sft", "task", "full"),
}
FILLER = ("Maria kauft 3 Äpfel und 4 Birnen. 小明有五个苹果。 Combien de pommes reste-t-il ? "
          "Ramu ke paas 12 kele hain. ") * 30  # long, multilingual: truncation gives exact lengths
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


@dataclass
class BenchSettings:
    """What `lingualift bench` measures; its flags are generated from these fields (`lingualift.schema`)."""

    encoder: str = option("default", help="encoder spec (preset, dir, hub id)")
    llm: str = option("default", help="LLM spec (preset, dir, hub id)")
    stages: tuple[str, ...] = option(tuple(STAGES), choices=tuple(STAGES), help="training stages to time")
    batch_size: int = option(8, min=1, help="training batch size")
    encoder_length: int = option(128, min=1, help="encoder tokens per example (prompt)")
    target_length: int = option(128, min=1, help="target tokens per example")
    repeats: int = option(5, min=1, help="timed steps per stage (median reported)")
    eval_batch_sizes: tuple[int, ...] = option((1, 8, 32), min=1, help="generation batch sizes")
    new_tokens: int = option(64, min=1, help="generated tokens per row")
    eval_repeats: int = option(2, min=1, help="timed generation runs (median reported)")
    precision: str = option("fp32", choices=("fp32", "bf16"), help="training precision (paper shapes: bf16)")
    gradient_checkpointing: bool = option(False, help="recompute activations in training")
    device: str = option("auto", help="cpu, cuda, cuda:N, or auto: cuda when available")
    paper_shapes: bool = option(False, help="random Llama-2-7B + mT5-xl-encoder shapes in bf16 on a GPU (no download)")
    layers: int | None = option(None, min=1, help="--paper-shapes: shrink both models to N layers (CPU smoke test)")
    width_divisor: int = option(1, min=1, help="--paper-shapes: divide every width by this (tests only)")
    backends: tuple[str, ...] = option((), choices=BACKENDS, flag="--backend",
                                       help="compare generation backends side by side on the same prompts, e.g. "
                                            "hf,vllm,llamacpp (tokens/s, load time, memory, identical outputs); vllm "
                                            "needs scripts/vllm_env.sh, llamacpp scripts/llamacpp_env.sh")
    dtypes: tuple[str, ...] = option(("fp32",), choices=("fp32", "bf16", "fp16"),
                                     help="--backend: precisions to run the hf and vllm backends in")
    llamacpp_precisions: tuple[str, ...] = option((LLAMACPP_DEFAULT_PRECISION,), choices=LLAMACPP_PRECISIONS,
                                                  help="--backend llamacpp: GGUF precisions to run it in")
    model: str | None = option(None, help="--backend: checkpoint / LLM spec to compare (default: a LinguaLIFT model "
                                          "with a seeded random alignment layer over --encoder/--llm)")
    items: int = option(64, min=1, help="--backend: prompts (MGSM questions when the data is there)")
    vllm_lora: str = option("merge", choices=("merge", "request"), help="--backend vllm, LoRA checkpoints")
    vllm_eager: bool = option(False, help="--backend vllm: no torch.compile (faster engine start, slower decoding)")

    QUICK: ClassVar[dict] = dict(batch_size=2, encoder_length=32, target_length=32, repeats=2, new_tokens=32,
                                 eval_repeats=1)
    PAPER: ClassVar[dict] = dict(precision="bf16", gradient_checkpointing=True, batch_size=4, encoder_length=256,
                                 target_length=256, repeats=3, new_tokens=64)

    @classmethod
    def quick(cls, **overrides) -> BenchSettings:
        return cls(**{**cls.QUICK, **overrides})

    def resolved(self) -> BenchSettings:
        """The same settings with `device: auto` made concrete (cuda when available, else cpu)."""
        if self.device != "auto":
            return self
        return dataclasses.replace(self, device="cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------- measuring
class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPU; sampled process RSS on CPU (MiB)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = self.start_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
        else:
            self.start_mb = self.peak_mb = _rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, _rss_mb())
        return False


def _tree_rss_mb() -> float:
    """RSS of this process and all its descendants (vLLM runs its engine in child processes); shared pages
    are counted once per process, so this errs high."""
    total, todo, seen = 0.0, [os.getpid()], set()
    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * page
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:  # exited meanwhile, or not Linux
            if pid == os.getpid():
                return _rss_mb()
    return total


class TreeMemory(PeakMemory):
    """Peak RSS of the process tree on CPU (sampled every 20 ms); CUDA: as PeakMemory (allocator peak of this
    process only, so a vLLM engine's GPU memory is not in it)."""

    def __init__(self, device: torch.device):
        super().__init__(device)

    def __enter__(self):
        if self.device.type == "cuda":
            return super().__enter__()
        self.start_mb = self.peak_mb = _tree_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, _tree_rss_mb())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            return super().__exit__(*exc)
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _tree_rss_mb())
        return False


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: lifetime peak only
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(function, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    function()
    _sync(device)
    return time.perf_counter() - start


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """Dense matmul FLOP/s of this machine: square matrices, the given dtype, best of `repeats` (its capability,
    not its current load)."""
    # On a CPU without bf16 instructions a 1024-square bf16 product is emulated and takes seconds: 256 suffices there.
    size = 4096 if device.type == "cuda" else (256 if dtype != torch.float32 else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = [_timed(lambda: a @ b, device) for _ in range(repeats)]
    return 2 * size**3 / min(times)


def nominal_peak(device: torch.device) -> float | None:
    """Vendor dense bf16 peak for known GPUs (MFU denominator); None elsewhere."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def _linear_params(module: nn.Module | None, trainable_only: bool = False) -> int:
    if module is None:
        return 0
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear)
               and (m.weight.requires_grad or not trainable_only))


def _attention(config) -> tuple[int, int]:
    """(layers, attention width) of a transformer config."""
    layers = getattr(config, "num_hidden_layers", None) or config.num_layers
    heads = getattr(config, "num_attention_heads", None) or config.num_heads
    head_dim = (getattr(config, "head_dim", None) or getattr(config, "d_kv", None)
                or components.hidden_size(config) // heads)
    return int(layers), int(heads * head_dim)


def _forward_flops(model: nn.Module, batch: int, length: int) -> float:
    layers, width = _attention(model.config)
    return 2.0 * _linear_params(model) * batch * length + 4.0 * layers * width * batch * length**2


def step_flops(encoder, alignment, llm, batch: int, encoder_length: int, llm_length: int) -> float:
    """Model FLOPs of one training step (no recomputation counted, full attention squares, MFU-style).

    Forward 2·N·T (+ attention); the backward repeats the forward for activation gradients wherever a
    gradient flows (through the LLM whenever anything before or in it trains) and adds 2·N_trainable·T for
    weight gradients; a frozen encoder has no backward.
    """
    flops, grad_flows = 0.0, False
    if encoder is not None:
        flops += _forward_flops(encoder, batch, encoder_length)
        encoder_trains = any(p.requires_grad for p in encoder.parameters())
        if encoder_trains:
            flops += 2 * _forward_flops(encoder, batch, encoder_length)
        align_params = _linear_params(alignment)
        flops += 2.0 * align_params * batch * encoder_length
        if any(p.requires_grad for p in alignment.parameters()):
            flops += 2.0 * align_params * batch * encoder_length
            grad_flows = True
        grad_flows = grad_flows or encoder_trains
    llm_forward = _forward_flops(llm, batch, llm_length)
    flops += llm_forward
    if grad_flows or any(p.requires_grad for p in llm.parameters()):
        flops += llm_forward + 2.0 * _linear_params(llm, trainable_only=True) * batch * llm_length
    return flops


# ---------------------------------------------------------------------------------------------- training
def _train_config(settings: BenchSettings, name: str, workdir: Path):
    from lingualift.train.config import config_from_dict

    method, stage, tuning = STAGES[name]
    data = workdir / "train.jsonl"
    if not data.exists():
        with atomic_write(data) as handle:
            handle.write(json.dumps({"question": FILLER, "answer": FILLER}) + "\n")
    raw = {
        "method": method,
        "stage": stage,
        "model": {"encoder": settings.encoder, "llm": settings.llm, "encoder_max_length": settings.encoder_length,
                  "alignment": "linear" if method == "langbridge" else "mlp"},
        "data": {"train": str(data), "max_target_length": settings.target_length},
        "training": {"output_dir": str(workdir / name), "tuning": tuning, "batch_size": settings.batch_size,
                     "max_steps": 10**6, "precision": settings.precision, "tensorboard": False,
                     "gradient_checkpointing": settings.gradient_checkpointing},
    }
    if tuning == "lora":
        raw["training"]["lora"] = {"dropout": 0.0}
    return config_from_dict(raw, f"bench:{name}")


def _bare_step(trainer, batch: Batch, trainable: list) -> callable:
    """The same work without the wrapper: encoder forward, LLM forward/backward on the packed embeddings."""
    from lingualift.model.modeling import LinguaLiftModel

    model = trainer.unwrapped
    config = trainer.config.training
    if not isinstance(model, LinguaLiftModel):  # sft: the LLM is the whole model
        llm_inputs, encoder = batch.model_inputs(), None
    else:
        with torch.no_grad():
            packed = model.pack(**batch.model_inputs())
        soft_needs_grad = any(p.requires_grad for p in model.alignment.parameters())
        llm_inputs = {"inputs_embeds": packed.inputs_embeds.detach(), "attention_mask": packed.attention_mask,
                      "position_ids": packed.position_ids, "labels": packed.labels}
        encoder = model.encoder
        llm = model.llm
        encoder_inputs = {"input_ids": batch.encoder_input_ids, "attention_mask": batch.encoder_attention_mask}

    def step():
        with trainer.accelerator.autocast():
            if encoder is None:
                loss = trainer.model(**llm_inputs).loss
            else:
                with torch.no_grad():
                    encoder(**encoder_inputs)
                inputs = dict(llm_inputs)
                inputs["inputs_embeds"] = inputs["inputs_embeds"].clone().requires_grad_(soft_needs_grad)
                loss = llm(**inputs, use_cache=False).loss
            trainer.accelerator.backward(loss)
        loss.item()
        if config.max_grad_norm:
            trainer.accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    return step


def bench_training_stage(settings: BenchSettings, name: str, workdir: Path, rate: float,
                         peak: float | None) -> dict:
    from lingualift.data.collate import CausalLMCollator
    from lingualift.data.instructions import PromptTarget
    from lingualift.model.modeling import LinguaLiftModel
    from lingualift.train.loop import Trainer

    trainer = Trainer(_train_config(settings, name, workdir))
    model = trainer.unwrapped
    device = trainer.accelerator.device
    collator = trainer.target.collator
    if isinstance(collator, CausalLMCollator):
        collator.max_length = settings.encoder_length  # the sft LLM reads the prompt itself
    examples = [PromptTarget(FILLER, FILLER)] * settings.batch_size
    collate_s = _timed(functools.partial(collator, examples), torch.device("cpu"))
    batch = collator(examples).to(device)
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.model.train()
    trainer.keep_frozen_in_eval()
    bridge = isinstance(model, LinguaLiftModel)
    if bridge:
        with torch.no_grad():
            llm_length = model.pack(**batch.model_inputs()).inputs_embeds.shape[1]
        flops = step_flops(model.encoder, model.alignment, model.llm, settings.batch_size,
                           batch.encoder_input_ids.shape[1], llm_length)
    else:
        llm_length = batch.input_ids.shape[1]
        flops = step_flops(None, None, model, settings.batch_size, 0, llm_length)
    wrapper = functools.partial(trainer.optimizer_step, [batch], trainable)
    bare = _bare_step(trainer, batch, trainable)
    with PeakMemory(device) as memory:  # warm-up step: optimiser state, allocator, lazy initialisation
        wrapper()
    wrapper_times, bare_times = [], []
    for repeat in tqdm(range(settings.repeats), desc=f"train {name}", leave=False):
        pair = [(wrapper, wrapper_times), (bare, bare_times)]
        for function, times in pair[:: 1 if repeat % 2 else -1]:  # alternate the order: no position bias
            times.append(_timed(function, device))
    tokens = settings.batch_size * llm_length
    step_s, bare_s = statistics.median(wrapper_times), statistics.median(bare_times)
    result = {
        "stage": name,
        "trainable_params": sum(p.numel() for p in trainable),
        "batch_size": settings.batch_size,
        "encoder_tokens": int(batch.encoder_input_ids.numel()) if bridge else 0,
        "llm_tokens": tokens,
        "collate_s": collate_s,
        "step_s": step_s,
        "bare_s": bare_s,
        "step_times": wrapper_times,
        "bare_times": bare_times,
        "tokens_per_s": tokens / step_s,
        # Paired (adjacent) ratios: a slow burst hits both steps of a pair, so their ratio stays honest.
        "overhead": statistics.median(w / b for w, b in zip(wrapper_times, bare_times)) - 1,
        "model_flops": flops,
        "achieved": flops / step_s / rate,
        "mfu": flops / step_s / peak if peak else None,
        "peak_memory_mb": memory.peak_mb,
        "step_memory_mb": memory.peak_mb - memory.start_mb,
    }
    logger.info("train %s: %.3f s/step (bare %.3f s, overhead %+.1f%%), %.0f tokens/s, %.0f MiB peak", name,
                step_s, bare_s, 100 * result["overhead"], result["tokens_per_s"], memory.peak_mb)
    del trainer, model, batch, wrapper, bare
    _free(device)
    return result


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- generation
def bench_generation(settings: BenchSettings, model=None) -> list[dict]:
    """Generated tokens/s per batch size (greedy, KV cache, exactly `new_tokens` per row)."""
    from lingualift.inference.generators import BridgeGenerator
    from lingualift.model.modeling import LinguaLiftModel

    if model is None:
        model = LinguaLiftModel.from_components(settings.encoder, settings.llm, "mlp", seed=0,
                                                encoder_max_length=settings.encoder_length)
    generator = BridgeGenerator(model, device=settings.device)
    device = generator.device
    options = dict(max_new_tokens=settings.new_tokens, min_new_tokens=settings.new_tokens, do_sample=False)
    results = []
    for index, batch_size in enumerate(tqdm(settings.eval_batch_sizes, desc="generate", leave=False)):
        batch = generator.prepare_batch([FILLER] * batch_size, left_pad=True)

        def run(batch=batch):
            with torch.inference_mode():
                generator.tokenizer.batch_decode(generator.generate_tokens(batch, **options), skip_special_tokens=True)

        if index == 0:
            run()  # warm-up
        with PeakMemory(device) as memory:
            times = [_timed(run, device)]
        times += [_timed(run, device) for _ in range(settings.eval_repeats - 1)]
        seconds = statistics.median(times)
        tokens = batch_size * settings.new_tokens
        results.append({"batch_size": batch_size, "new_tokens": settings.new_tokens,
                        "prompt_encoder_tokens": int(batch.encoder_input_ids.shape[1]), "seconds": seconds,
                        "times": times, "tokens_per_s": tokens / seconds, "peak_memory_mb": memory.peak_mb})
        logger.info("generate batch %d: %.0f tokens/s, %.0f MiB peak", batch_size, tokens / seconds, memory.peak_mb)
    base = results[0]["tokens_per_s"]
    for row in results:
        row["speedup_vs_first"] = row["tokens_per_s"] / base
    return results


# ---------------------------------------------------------------------------------------------- backends
def bench_questions(count: int) -> list[str]:
    """`count` prompts of varied length: MGSM questions over its languages when the data is found, else slices
    of FILLER (so left padding and per-row lengths are exercised either way)."""
    from lingualift.eval.tasks import get_task, load_examples

    task = get_task("mgsm")
    questions: list[str] = []
    try:
        per_lang = -(-count // len(task.languages))
        for lang in task.languages:
            questions += [ex.question for ex in load_examples(task, lang, None, per_lang, download=False)]
    except LinguaLiftError:
        questions = []
    if len(questions) < count:
        questions = [FILLER[: 40 + (97 * index) % 400] for index in range(count)]
    return questions[:count]


def _token_ids(generator, questions: list[str], new_tokens: int, batch_size: int) -> list[list[int]]:
    """Greedy new token ids, exactly `new_tokens` per row (EOS suppressed on every backend alike)."""
    if getattr(generator, "backend", "hf") != "hf":
        return generator.generate_token_ids(questions, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                            batch_size=batch_size)
    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(questions), batch_size):
            batch = generator.prepare_batch(questions[start : start + batch_size], left_pad=True)
            rows += generator.generate_tokens(batch, **options).tolist()
    return rows


def _bench_model(settings: BenchSettings, workdir: Path) -> str:
    """The spec the backends load: `settings.model`, else a LinguaLIFT checkpoint with a random (seeded)
    alignment layer over `settings.encoder` / `settings.llm`, saved by reference (small)."""
    if settings.model:
        return settings.model
    from lingualift.model.modeling import LinguaLiftModel

    model = LinguaLiftModel.from_components(settings.encoder, settings.llm, "mlp", seed=0,
                                            encoder_max_length=settings.encoder_length)
    path = workdir / "bench-model"
    model.save_pretrained(path, include_frozen=False)
    del model
    gc.collect()
    return str(path)


def backend_load_arguments(settings: BenchSettings, backend: str, dtype: str) -> dict:
    """`load_generator`'s keyword arguments for one row of the comparison. llama.cpp runs on the CPU whatever
    `--device` says (its rows share the run with hf / vLLM rows on the GPU) and takes a precision, not a torch
    dtype."""
    if backend == "llamacpp":
        return {"backend": backend, "device": None, "dtype": None, "precision": dtype}
    arguments = {"backend": backend, "device": settings.device, "dtype": dtype}
    if backend == "vllm":
        arguments["lora"] = settings.vllm_lora
        if settings.vllm_eager:
            arguments["engine_kwargs"] = {"enforce_eager": True}
    return arguments


def bench_backends(settings: BenchSettings, workdir: Path) -> dict:
    """Every backend x dtype loaded side by side, generating the same prompts; timed runs interleave (the order
    rotates each repeat), tokens/s are medians, and each speed-up is the median of same-repeat ratios."""
    from lingualift.inference.generators import load_generator

    device = torch.device(settings.device)
    spec = _bench_model(settings, workdir)
    questions = bench_questions(settings.items)
    batch_size = len(questions)  # HF: one batch of all prompts (its best throughput); vLLM schedules them itself
    configs = [(backend, dtype) for backend in settings.backends
               for dtype in (settings.llamacpp_precisions if backend == "llamacpp" else settings.dtypes)]
    rows, generators, outputs = [], {}, {}
    for backend, dtype in configs:
        key = f"{backend} {dtype}"
        arguments = backend_load_arguments(settings, backend, dtype)
        with TreeMemory(torch.device(arguments["device"] or "cpu")) as memory:
            start = time.perf_counter()
            generator = load_generator(spec, **arguments)
            load_s = time.perf_counter() - start
            outputs[key] = _token_ids(generator, questions, settings.new_tokens, batch_size)  # warm-up, outputs
        generators[key] = generator
        rows.append({"backend": backend, "dtype": dtype, "load_s": load_s, "times": [],
                     "memory_mb": memory.peak_mb - memory.start_mb})
        logger.info("%s: loaded in %.1f s, +%.0f MiB", key, load_s, memory.peak_mb - memory.start_mb)
    keys = [f"{row['backend']} {row['dtype']}" for row in rows]
    for repeat in tqdm(range(settings.eval_repeats), desc="backends", leave=False):
        order = list(range(len(rows)))
        order = order[repeat % len(order):] + order[: repeat % len(order)]
        for index in order:
            rows[index]["times"].append(_timed(
                functools.partial(_token_ids, generators[keys[index]], questions, settings.new_tokens, batch_size),
                device))
    tokens = len(questions) * settings.new_tokens
    reference = keys[0]
    for row, key in zip(rows, keys):
        row["seconds"] = statistics.median(row["times"])
        row["tokens_per_s"] = tokens / row["seconds"]
        row["speedup"] = statistics.median(ref / own for ref, own in zip(rows[0]["times"], row["times"]))
        same_dtype = f"hf {row['dtype']}"
        for label, other in (("same_as_reference", reference), ("same_as_hf_same_dtype", same_dtype)):
            if other in outputs:
                row[label] = sum(a == b for a, b in zip(outputs[key], outputs[other]))
        row["first_difference"] = [next((i for i, (a, b) in enumerate(zip(mine, ref)) if a != b), None)
                                   for mine, ref in zip(outputs[key], outputs.get(same_dtype, outputs[key]))]
    for generator in generators.values():
        if hasattr(generator, "close"):
            generator.close()
    generators.clear()
    _free(device)
    return {"model": settings.model or f"random-alignment LinguaLIFT ({settings.encoder} -> {settings.llm})",
            "items": len(questions), "new_tokens": settings.new_tokens, "repeats": settings.eval_repeats,
            "reference": reference, "rows": rows}


# ---------------------------------------------------------------------------------------------- paper shapes
def paper_configs(layers: int | None = None, width_divisor: int = 1):
    """Configs of the paper's parts: a Llama-2-7B-shaped LLM and an mT5-xl-shaped encoder."""
    from transformers import AutoConfig

    d = width_divisor
    llm = AutoConfig.for_model(
        "llama", hidden_size=4096 // d, intermediate_size=11008 // d, num_hidden_layers=layers or 32,
        num_attention_heads=max(1, 32 // d), num_key_value_heads=max(1, 32 // d), vocab_size=32000,
        max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0,
        bos_token_id=1, eos_token_id=2,
    )
    encoder = AutoConfig.for_model(
        "mt5", d_model=2048 // d, d_kv=64, d_ff=5120 // d, num_layers=layers or 24, num_heads=max(1, 32 // d),
        vocab_size=250112, feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False,
        is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return encoder, llm


def count_paper_params(layers: int | None = None) -> dict[str, int]:
    """Parameter counts of the paper shapes, built on the meta device (no memory, no download)."""
    from transformers import AutoModelForCausalLM, MT5EncoderModel

    encoder_config, llm_config = paper_configs(layers)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(llm_config)
        encoder = MT5EncoderModel(encoder_config)
    return {"llm": sum(p.numel() for p in llm.parameters()), "encoder": sum(p.numel() for p in encoder.parameters())}


@contextlib.contextmanager
def paper_presets(settings: BenchSettings, device: torch.device):
    """Register `paper-llama2-7b` / `paper-mt5-xl` presets: random weights, built on `device` in bf16."""
    from transformers import AutoModelForCausalLM, MT5EncoderModel

    encoder_config, llm_config = paper_configs(settings.layers, settings.width_divisor)
    attention = "sdpa"
    if device.type == "cuda":
        with contextlib.suppress(ImportError):
            import flash_attn  # noqa: F401

            attention = "flash_attention_2"

    def build(role):
        tokenizer = components.byte_tokenizer(add_eos=role == components.ENCODER)
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if role == components.LLM:
                model = AutoModelForCausalLM.from_config(llm_config, dtype=torch.bfloat16,
                                                         attn_implementation=attention)
            else:
                model = MT5EncoderModel._from_config(encoder_config, dtype=torch.bfloat16)
        return model, tokenizer

    presets = {"paper-llama2-7b": {components.LLM: functools.partial(build, components.LLM)},
               "paper-mt5-xl": {components.ENCODER: functools.partial(build, components.ENCODER)}}
    with components.temporary_presets(**presets):
        yield "paper-mt5-xl", "paper-llama2-7b"


# ---------------------------------------------------------------------------------------------- driver
def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_bench(settings: BenchSettings, output_dir: str | os.PathLike | None = None, *, train: bool = True,
              evaluate: bool = True) -> dict:
    """Run the benchmark; writes `bench.json` and `bench.md` into `output_dir` when given."""
    settings = settings.resolved()
    device = torch.device(settings.device)
    dtype = torch.bfloat16 if settings.precision == "bf16" or settings.paper_shapes else torch.float32
    if device.type == "cpu":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rate = matmul_rate(device, dtype)
    peak = nominal_peak(device)
    logger.info("dense %s matmul: %.1f GFLOP/s", str(dtype).replace("torch.", ""), rate / 1e9)
    report = {"settings": asdict(settings), "machine": machine_info(device), "matmul_flops": rate,
              "nominal_peak_flops": peak, "training": [], "generation": [], "backends": None}
    presets = paper_presets(settings, device) if settings.paper_shapes else contextlib.nullcontext()
    with presets as names, tempfile.TemporaryDirectory(prefix="lingualift-bench-") as workdir:
        if names:
            settings.encoder, settings.llm = names
        if train:
            for name in tqdm(settings.stages, desc="training stages"):
                report["training"].append(bench_training_stage(settings, name, Path(workdir), rate, peak))
        if evaluate and settings.backends:
            report["backends"] = bench_backends(settings, Path(workdir))
        elif evaluate:
            model = None
            if settings.paper_shapes:
                from lingualift.model.modeling import LinguaLiftModel

                model = LinguaLiftModel.from_components(settings.encoder, settings.llm, "mlp", seed=0,
                                                        encoder_max_length=settings.encoder_length)
            report["generation"] = bench_generation(settings, model)
            del model
            _free(device)
    if output_dir is not None:
        output_dir = Path(output_dir)
        write_json(output_dir / "bench.json", report)
        with atomic_write(output_dir / "bench.md") as handle:
            handle.write(markdown(report))
        logger.info("wrote %s and %s", output_dir / "bench.json", output_dir / "bench.md")
    return report


def check_paper_shapes_device(device: str, paper_shapes: bool, allow_cpu: bool, layers: int | None) -> None:
    if not paper_shapes or device.startswith("cuda"):
        return
    if not allow_cpu:
        raise LinguaLiftError("--paper-shapes needs a GPU (no CUDA device here); for a CPU smoke test add "
                              "--allow-cpu --layers 1")
    if not layers:
        raise LinguaLiftError("--paper-shapes --allow-cpu needs --layers N (a full 7B model does not fit a CPU run)")


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
             f"({machine['torch_threads']} threads), device `{machine['device']}`"
             + (f" ({machine['gpu']})" if machine.get("gpu") else "") + "; dense matmul "
             f"{report['matmul_flops'] / 1e9:.1f} GFLOP/s.", ""]
    settings = report["settings"]
    if report["training"]:
        lines += [(f"Training (encoder `{settings['encoder']}`, LLM `{settings['llm']}`, "
                   f"batch {settings['batch_size']}, {settings['encoder_length']} encoder + "
                   f"{settings['target_length']} target tokens, {settings['precision']}, "
                   f"medians of {settings['repeats']}):"), ""]
        headers = ["stage", "trainable params", "LLM tokens/step", "step s", "bare step s", "overhead", "tokens/s",
                   "achieved of matmul", "MFU", "peak memory MiB", "collate ms"]
        rows = [[row["stage"], f"{row['trainable_params']:,}", row["llm_tokens"], f"{row['step_s']:.3f}",
                 f"{row['bare_s']:.3f}", f"{100 * row['overhead']:+.1f}%", f"{row['tokens_per_s']:.0f}",
                 f"{100 * row['achieved']:.1f}%", f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "–",
                 f"{row['peak_memory_mb']:.0f}", f"{1000 * row['collate_s']:.1f}"] for row in report["training"]]
        lines += markdown_table(headers, rows, "l" + "r" * 10).splitlines()
        lines.append("")
    if report["generation"]:
        lines += [(f"Generation (greedy, {settings['new_tokens']} new tokens per row, medians of "
                   f"{settings['eval_repeats']}):"), ""]
        rows = [[row["batch_size"], f"{row['tokens_per_s']:.1f}", f"{row['speedup_vs_first']:.2f}",
                 f"{row['seconds']:.2f}", f"{row['peak_memory_mb']:.0f}"] for row in report["generation"]]
        lines += markdown_table(["batch", "tokens/s", "× batch 1", "s per batch", "peak memory MiB"], rows,
                                "rrrrr").splitlines()
        lines.append("")
    if report.get("backends"):
        lines += backends_markdown(report["backends"])
    return "\n".join(lines)


def backends_markdown(section: dict) -> list[str]:
    n = section["items"]
    lines = [(f"Backends (model {section['model']}; {n} prompts x {section['new_tokens']} new tokens, greedy, "
              f"EOS suppressed; all loaded side by side, timed runs interleaved, medians of {section['repeats']}; "
              f"memory: added RSS of the process tree during load + first run):"), ""]
    headers = ["backend", "dtype", "tokens/s", f"x {section['reference']}", "load s", "memory MiB",
               f"same tokens as {section['reference']}", "same tokens as HF, same dtype"]
    rows = [[row["backend"], row["dtype"], f"{row['tokens_per_s']:.0f}", f"{row['speedup']:.2f}", f"{row['load_s']:.1f}",
             f"{row['memory_mb']:.0f}", *(f"{row[key]}/{n}" if key in row else "–"
                                          for key in ("same_as_reference", "same_as_hf_same_dtype"))]
            for row in section["rows"]]
    lines += markdown_table(headers, rows, "llrrrrrr").splitlines()
    lines.append("")
    return lines

