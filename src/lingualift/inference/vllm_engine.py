"""Generation through vLLM, behind the same `Generator` interface as the Hugging Face path.

Prompt preparation, decoding of the output and scoring are `engine.EngineGenerator`'s (the HF path's):
a LinguaLIFT checkpoint's packed rows go to vLLM as `prompt_embeds`, a plain causal LM's ids as token prompts.

vLLM pins torch/transformers versions of its own; it lives in a separate environment made by
`scripts/vllm_env.sh` (see docs/performance.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Sequence

import torch

from lingualift.checkpoint import ADAPTER_DIR, LLM_DIR, LLM_TOKENIZER_DIR, is_lingualift_checkpoint
from lingualift.errors import LinguaLiftError
from lingualift.inference.engine import EngineGenerator, model_sampling_defaults, plain_llm_dir, release_llm_body
from lingualift.model import components
from lingualift.paths import cache_dir

logger = logging.getLogger(__name__)

INSTALL_HINT = ("the vLLM backend needs vLLM, which lives in its own environment: run `bash scripts/vllm_env.sh` "
                "and use $LINGUALIFT_VLLM_VENV/bin/lingualift (default .venv-vllm; on GPU: pip install "
                "'lingualift[vllm]')")
LORA_MODES = ("merge", "request")


def import_vllm():
    """Import vLLM or fail with one line saying how to install it."""
    configure_environment()
    try:
        import vllm
    except ImportError as exc:
        raise LinguaLiftError(f"{INSTALL_HINT} ({exc})") from None
    return vllm


def vllm_available() -> bool:
    try:
        import_vllm()
    except LinguaLiftError:
        return False
    return True


def _cpu_list() -> str:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}"
    return ",".join(map(str, cpus))


def configure_environment() -> None:
    """vLLM's CPU defaults do not suit a small machine: its OpenMP binding keeps a core for the engine (one
    thread on 2 cores), its KV cache is sized from a fraction of RAM, and it caches under the home folder.
    Explicit environment variables win."""
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir("vllm")))


class VLLMGenerator(EngineGenerator):
    """A `Generator` whose decoding runs in a vLLM engine (`backend="vllm"` of `load_generator`).

    `lora` (LoRA stage-2 checkpoints): "merge" writes the merged LLM to a temporary plain checkpoint,
    "request" serves the base LLM with the adapter as a vLLM LoRA request.
    """

    backend = "vllm"

    def __init__(self, spec: str, *, prompt_template: str | None = None, device: str | None = None,
                 dtype: str | None = None, tensor_parallel_size: int = 1, lora: str = "merge",
                 seed: int = 0, engine_kwargs: dict | None = None):
        vllm = import_vllm()
        if lora not in LORA_MODES:
            raise LinguaLiftError(f"lora mode must be one of {', '.join(LORA_MODES)}, got {lora!r}")
        super().__init__(spec, prompt_template=prompt_template, device=device)
        self._scratch = Path(tempfile.mkdtemp(prefix="vllm-llm-", dir=cache_dir("vllm", "scratch")))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._scratch, True)
        self.lora_request = None
        engine = dict(engine_kwargs or {})
        if is_lingualift_checkpoint(self.spec):
            llm_dir, tokenizer_dir = self._prepare_bridge(dtype, lora)
        else:
            llm_dir = tokenizer_dir = plain_llm_dir(self.spec, self._scratch)
            self._prepare_causal_side(components.load_tokenizer(str(llm_dir), "--model"))
        from transformers import AutoConfig

        llm_config = AutoConfig.from_pretrained(str(llm_dir))
        _check_head_size(llm_config, llm_dir)
        self.dtype = _vllm_dtype(dtype, llm_config)
        self._sampling_defaults = model_sampling_defaults(llm_dir)
        if self.lora_request is not None:
            engine.setdefault("enable_lora", True)
            engine.setdefault("max_lora_rank", self._lora_rank)
        logger.info("starting vLLM on %s (tokenizer %s, dtype %s, prompt %s)", llm_dir, tokenizer_dir,
                    self.dtype, "embeddings" if self.bridge else "tokens")
        self.engine = vllm.LLM(
            model=str(llm_dir), tokenizer=str(tokenizer_dir), dtype=self.dtype,
            enable_prompt_embeds=self.bridge, tensor_parallel_size=tensor_parallel_size, seed=seed,
            generation_config="vllm",  # decoding options come only from us, as in the HF path
            **engine,
        )
        self._vllm = vllm

    # ------------------------------------------------------------------ preparation
    def _prepare_bridge(self, dtype, lora) -> tuple[Path | str, Path]:
        """Torch side: encoder + alignment + input embeddings (the LLM's other weights are released)."""
        from lingualift.model.modeling import LinguaLiftModel

        path = Path(self.spec)
        adapter = path / ADAPTER_DIR if (path / ADAPTER_DIR).is_dir() else None
        model = LinguaLiftModel.from_pretrained(path, dtype=dtype, merge_lora=adapter is not None and lora == "merge")
        base = path / LLM_DIR if (path / LLM_DIR).is_dir() else model.config.llm
        if adapter is not None and lora == "merge":
            llm_dir = self._scratch / "merged"
            model.llm.save_pretrained(llm_dir)  # merge_and_unload gave a plain model
            logger.info("LoRA adapter merged into a temporary checkpoint %s", llm_dir)
        else:
            llm_dir = plain_llm_dir(base, self._scratch)
            if adapter is not None:
                from peft import PeftConfig

                self._lora_rank = max(8, int(PeftConfig.from_pretrained(adapter).r))
                self.lora_request = _lora_request(adapter)
        release_llm_body(model)
        self._prepare_bridge_side(model)
        # vLLM reads a config next to the tokenizer (it logs errors without one): copy the pair together.
        tokenizer_dir = self._scratch / "tokenizer"
        shutil.copytree(path / LLM_TOKENIZER_DIR, tokenizer_dir)
        model.llm.config.save_pretrained(tokenizer_dir)
        return llm_dir, tokenizer_dir

    # ------------------------------------------------------------------ inputs
    def prompts(self, questions: Sequence[str], batch_size: int = 16) -> list[dict]:
        """vLLM inputs: `prompt_embeds` (packed by the model) for LinguaLIFT, `prompt_token_ids` otherwise."""
        if not self.bridge:
            return [{"prompt_token_ids": ids} for ids in self.prompt_token_ids(questions)]
        return [{"prompt_embeds": rows.to(components.as_dtype(self.dtype) or torch.float32)}
                for rows in self.packed_prompts(questions, batch_size)]

    def sampling_params(self, *, max_new_tokens: int, stop: list[str] | None = None, do_sample: bool = False,
                        temperature: float = 1.0, top_p: float = 1.0, min_new_tokens: int = 0):
        defaults = self._sampling_defaults
        options = dict(max_tokens=max_new_tokens, min_tokens=min_new_tokens, stop=list(stop) if stop else None,
                       repetition_penalty=defaults["repetition_penalty"], skip_special_tokens=True)
        if do_sample:
            options.update(temperature=temperature, top_p=top_p, top_k=defaults["top_k"] or 0, min_p=defaults["min_p"])
        else:
            options.update(temperature=0.0)
        return self._vllm.SamplingParams(**options)

    # ------------------------------------------------------------------ Generator protocol
    def generate_token_ids(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0,
                           top_p=1.0, batch_size=16, progress=False, min_new_tokens=0) -> list[list[int]]:
        """New token ids per question; vLLM schedules all of them at once (continuous batching)."""
        params = self.sampling_params(max_new_tokens=max_new_tokens, stop=stop, do_sample=do_sample,
                                      temperature=temperature, top_p=top_p, min_new_tokens=min_new_tokens)
        prompts = self.prompts(questions, batch_size)
        outputs = self.engine.generate(prompts, params, use_tqdm=progress, lora_request=self.lora_request)
        return [list(output.outputs[0].token_ids) for output in outputs]

    @property
    def scorer_dtype(self) -> str:
        return self.dtype

    def close(self) -> None:
        """Stop the engine and delete temporary checkpoints (also done at garbage collection / exit)."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            shutdown = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
            self.engine = None
        self._finalizer()


def _check_head_size(llm_config, llm_dir) -> None:
    """vLLM's CPU attention kernels take only some head sizes; an unsupported one otherwise kills the engine
    mid-run with a long trace (e.g. the tiny presets: 16)."""
    if torch.cuda.is_available():
        return
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = CPUAttentionBackend.get_supported_head_sizes()
    except (ImportError, AttributeError):  # another vLLM layout: let the engine decide
        return
    config = getattr(llm_config, "text_config", None) or llm_config
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head not in supported:
        raise LinguaLiftError(f"{llm_dir}: head size {head} is not supported by vLLM's CPU attention "
                              f"({', '.join(map(str, supported))}); use --backend hf for this model")


def _lora_request(adapter: Path):
    from vllm.lora.request import LoRARequest

    return LoRARequest("lingualift", 1, str(adapter))


def _vllm_dtype(dtype, llm_config) -> str:
    """The dtype asked for, else the checkpoint's own, which is what the HF path loads. Never vLLM's `auto`: it
    runs an fp32 checkpoint in the platform's half type (bf16 on CPU), so the two backends would answer
    differently, and on a CPU without bf16 instructions every matmul takes an emulated path (the Qwen
    experiment's evaluation: over a minute per engine step)."""
    resolved = components.as_dtype(dtype)
    if resolved is None:
        stored = None
        for part in (getattr(llm_config, "text_config", None), llm_config):  # the LLM's own first, if nested
            stored = stored or getattr(part, "dtype", None) or getattr(part, "torch_dtype", None)
        resolved = getattr(torch, stored, None) if isinstance(stored, str) else stored
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    return names.get(resolved, "float32")
