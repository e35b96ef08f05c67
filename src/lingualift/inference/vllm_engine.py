"""Generation through vLLM, behind the same `Generator` interface as the Hugging Face path.

LinguaLIFT / langbridge checkpoints: the encoder and alignment layer stay in torch, and each example's
LLM input is built by the model's own `LinguaLiftModel.pack` (prefix tokens, begin vector, projected
encoder states, end vector, suffix tokens), exactly as `BridgeGenerator` builds it; the valid positions
of each packed row go to vLLM as `prompt_embeds`. Plain causal LMs (the `sft` baseline, zero-shot LLMs,
presets) go as token prompts: the same ids `CausalLMCollator` gives the HF path.

The output text is decoded from vLLM's token ids with the *checkpoint's* tokenizer and cut with
`inference.trim_at_stop`, the HF path's exact post-processing, so the two backends can only differ
where the generated tokens differ. Teacher-forced scoring (`target_nll`) and the plain-LLM
`prompt_embeddings` are not generation: they run on an HF generator loaded on first use.

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
from typing import TYPE_CHECKING, Sequence

import torch

from lingualift.checkpoint import read_run_metadata
from lingualift.model import components
from lingualift.errors import LinguaLiftError
from lingualift.paths import cache_dir

if TYPE_CHECKING:
    from lingualift.inference.generators import TargetScore

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


def _hf_sampling_defaults(model_dir: str | None) -> dict:
    """What HF `generate` applies without being asked (model generation_config, else transformers' defaults:
    top_k=50 when sampling, no repetition penalty), so that vLLM samples from the same distribution."""
    from transformers import GenerationConfig

    config = None
    if model_dir and Path(model_dir, "generation_config.json").is_file():
        config = GenerationConfig.from_pretrained(model_dir)
    top_k = getattr(config, "top_k", None)
    return {"top_k": 50 if top_k is None else int(top_k),
            "repetition_penalty": float(getattr(config, "repetition_penalty", None) or 1.0),
            "min_p": float(getattr(config, "min_p", None) or 0.0)}


class VLLMGenerator:
    """A `Generator` whose decoding runs in a vLLM engine (`backend="vllm"` of `load_generator`).

    `lora` (LoRA stage-2 checkpoints): "merge" writes the merged LLM to a temporary plain checkpoint,
    "request" serves the base LLM with the adapter as a vLLM LoRA request.
    """

    backend = "vllm"

    def __init__(self, spec: str, *, prompt_template: str | None = None, device: str | None = None,
                 dtype: str | None = None, tensor_parallel_size: int = 1, lora: str = "merge",
                 seed: int = 0, engine_kwargs: dict | None = None):
        from lingualift.checkpoint import is_lingualift_checkpoint

        vllm = import_vllm()
        if lora not in LORA_MODES:
            raise LinguaLiftError(f"lora mode must be one of {', '.join(LORA_MODES)}, got {lora!r}")
        self.spec, self.device_arg = str(spec), device
        self.name = Path(self.spec).name or self.spec
        self._scratch = Path(tempfile.mkdtemp(prefix="vllm-llm-", dir=cache_dir("vllm", "scratch")))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._scratch, True)
        self._hf = None  # full HF generator for scoring, loaded on first use
        self.lora_request = None
        engine = dict(engine_kwargs or {})
        if is_lingualift_checkpoint(self.spec):
            llm_dir, tokenizer_dir = self._prepare_bridge(prompt_template, device, dtype, lora)
        else:
            llm_dir, tokenizer_dir = self._prepare_causal(prompt_template)
        self.prompt_template = self._torch_side_template
        self._template_spec = prompt_template  # the name (e.g. chat) for the HF scorer, not its resolved text
        from transformers import AutoConfig

        llm_config = AutoConfig.from_pretrained(str(llm_dir))
        _check_head_size(llm_config, llm_dir)
        self.dtype = _vllm_dtype(dtype, llm_config)
        self._sampling_defaults = _hf_sampling_defaults(llm_dir)
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
    def _prepare_bridge(self, prompt_template, device, dtype, lora) -> tuple[Path | str, Path]:
        """Torch side: encoder + alignment + input embeddings (the LLM's other weights are released)."""
        from lingualift.inference.generators import BridgeGenerator
        from lingualift.checkpoint import ADAPTER_DIR, LLM_DIR, LLM_TOKENIZER_DIR
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
            llm_dir = self._plain_dir(base)
            if adapter is not None:
                from peft import PeftConfig

                self._lora_rank = max(8, int(PeftConfig.from_pretrained(adapter).r))
                self.lora_request = _lora_request(adapter)
        _release_llm_body(model)
        self.bridge = True
        self.torch_side = BridgeGenerator(model, prompt_template=prompt_template, name=self.name, device=device)
        self.tokenizer = model.llm_tokenizer
        self._torch_side_template = self.torch_side.prompt_template
        # vLLM reads a config next to the tokenizer (it logs errors without one): copy the pair together.
        tokenizer_dir = self._scratch / "tokenizer"
        shutil.copytree(path / LLM_TOKENIZER_DIR, tokenizer_dir)
        model.llm.config.save_pretrained(tokenizer_dir)
        return llm_dir, tokenizer_dir

    def _prepare_causal(self, prompt_template) -> tuple[Path | str, Path | str]:
        """Token prompts: the tokenizer and collator of the HF path, no torch model."""
        from lingualift.data.collate import CausalLMCollator
        from lingualift.data.prompts import llm_affixes, resolve_template

        metadata = read_run_metadata(self.spec)
        llm_dir = self._plain_dir(self.spec)
        tokenizer = components.load_tokenizer(str(llm_dir), "--model")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.bridge = False
        self.tokenizer = tokenizer
        template = prompt_template or metadata.get("prompt_template")
        prefix, suffix = llm_affixes(tokenizer, template, metadata.get("llm_prefix", ""), metadata.get("llm_suffix", ""))
        self.collator = CausalLMCollator(tokenizer, llm_prefix=prefix, llm_suffix=suffix)
        self._torch_side_template = resolve_template(template)
        return llm_dir, llm_dir

    def _plain_dir(self, spec) -> Path | str:
        """A directory (or hub id) vLLM can load: presets resolve to their asset directory; in-memory presets
        (tiny random models) are written to the scratch folder together with their tokenizer."""
        spec = str(spec)
        if components.is_preset(spec):
            built = components.build_preset(spec, components.LLM, "--model")
            if not isinstance(built, tuple):
                return Path(built)
            model, tokenizer = built
            target = self._scratch / f"preset-{spec}"
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)
            return target
        return spec

    def rendered_prompt(self, question: str) -> str:
        if self.bridge:
            return self.torch_side.rendered_prompt(question)
        from lingualift.data.prompts import format_prompt

        return self.collator.prompt_text(format_prompt(self.prompt_template, question))

    # ------------------------------------------------------------------ inputs
    def prompts(self, questions: Sequence[str], batch_size: int = 16) -> list[dict]:
        """vLLM inputs: `prompt_embeds` (packed by the model) for LinguaLIFT, `prompt_token_ids` otherwise."""
        from lingualift.data.prompts import format_prompt

        if not self.bridge:
            return [{"prompt_token_ids": self.collator.prompt_ids(format_prompt(self.prompt_template, q or ""))}
                    for q in questions]
        side, inputs = self.torch_side, []
        with torch.inference_mode():
            for start in range(0, len(questions), batch_size):  # the HF path's chunks: same padding, same encoder input
                batch = side.prepare_batch(questions[start : start + batch_size], left_pad=True)
                packed = side.model.pack(**batch.model_inputs(), left_pad=True)
                for embeds, mask in zip(packed.inputs_embeds, packed.attention_mask.bool()):
                    inputs.append({"prompt_embeds": embeds[mask].cpu()})
        return inputs

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

    def generate(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=16, progress=False) -> list[str]:
        from lingualift.inference.generators import trim_at_stop

        if not questions:
            return []
        ids = self.generate_token_ids(questions, max_new_tokens=max_new_tokens, stop=stop, do_sample=do_sample,
                                      temperature=temperature, top_p=top_p, batch_size=batch_size, progress=progress)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [trim_at_stop(text, stop) for text in texts]

    def _scorer(self):
        if self._hf is None:
            from lingualift.inference.generators import load_generator

            logger.info("vLLM backend: loading the HF model for teacher-forced scoring")
            self._hf = load_generator(self.spec, prompt_template=self._template_spec, device=self.device_arg,
                                      dtype=self.dtype, backend="hf")
        return self._hf

    def target_nll(self, questions, targets, *, batch_size=8, end_of_sequence=True) -> list[TargetScore]:
        return self._scorer().target_nll(questions, targets, batch_size=batch_size, end_of_sequence=end_of_sequence)

    def prompt_embeddings(self, questions, *, batch_size=16) -> torch.Tensor:
        if self.bridge:
            return self.torch_side.prompt_embeddings(questions, batch_size=batch_size)
        return self._scorer().prompt_embeddings(questions, batch_size=batch_size)

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


def _release_llm_body(model) -> None:
    """Free every LLM weight but the input embedding (vLLM holds its own copy; `pack` only embeds tokens).
    The torch LLM must not be run afterwards."""
    keep = {id(p) for p in model.llm.get_input_embeddings().parameters()}
    for parameter in model.llm.parameters():
        if id(parameter) not in keep:
            parameter.data = torch.empty(0, dtype=parameter.dtype, device=parameter.device)
