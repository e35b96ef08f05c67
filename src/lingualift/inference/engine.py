"""The shared base of backends whose decoding runs outside torch (vLLM, llama.cpp).

What stays in torch is the same for every such engine, and is exactly the HF path's: a LinguaLIFT /
langbridge checkpoint keeps its encoder and alignment layer in torch and each example's LLM input is built
by the model's own `LinguaLiftModel.pack` (prefix tokens, begin vector, projected encoder states, end
vector, suffix tokens, at contiguous positions); a plain causal LM (the `sft` baseline, zero-shot LLMs,
presets) gets the ids `CausalLMCollator` gives the HF path, chat template included. The engine returns new
token ids; they are decoded with the *checkpoint's* tokenizer and cut with `trim_at_stop`, the HF path's
post-processing, so two backends can only differ where the generated tokens differ. Teacher-forced scoring
(`target_nll`) and the plain-LLM `prompt_embeddings` are not generation: they run on an HF generator loaded
on first use. A new engine implements `generate_token_ids` (and its own preparation of the LLM weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from lingualift.checkpoint import read_run_metadata
from lingualift.data.collate import CausalLMCollator
from lingualift.data.prompts import format_prompt, llm_affixes, resolve_template
from lingualift.inference.base import TargetScore, trim_at_stop
from lingualift.inference.hf import BridgeGenerator, load_hf_generator
from lingualift.model import components

logger = logging.getLogger(__name__)


class EngineGenerator:
    """Prompt preparation, output post-processing and scoring for an external decoding engine.

    Subclasses call `_prepare_bridge_side(model)` or `_prepare_causal_side(tokenizer)` while loading, then
    implement `generate_token_ids(questions, ...) -> list[list[int]]` (greedy or sampled new ids per question).
    Its contract includes `min_new_tokens`: EOS is suppressed until a sequence has that many new tokens, as HF's
    `min_new_tokens` does; `tools/bench.py` sets it to `max_new_tokens` so every backend decodes the same number
    of tokens.
    """

    backend: str
    dtype: str

    def __init__(self, spec: str, *, prompt_template: str | None, device: str | None):
        self.spec, self.device_arg = str(spec), device
        self.name = Path(self.spec).name or self.spec
        self._template_spec = prompt_template  # the name (e.g. chat) for the HF scorer, not its resolved text
        self._hf = None  # full HF generator for scoring, loaded on first use
        self.bridge = False

    # ------------------------------------------------------------------ preparation
    def _prepare_bridge_side(self, model) -> None:
        """Torch side of a LinguaLIFT model: encoder + alignment + input embeddings (`pack`)."""
        self.bridge = True
        self.torch_side = BridgeGenerator(model, prompt_template=self._template_spec, name=self.name,
                                          device=self.device_arg)
        self.tokenizer = model.llm_tokenizer
        self.prompt_template = self.torch_side.prompt_template

    def _prepare_causal_side(self, tokenizer) -> None:
        """Token prompts: the tokenizer, template and collator of the HF path, no torch model."""
        metadata = read_run_metadata(self.spec)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.bridge = False
        self.tokenizer = tokenizer
        template = self._template_spec or metadata.get("prompt_template")
        prefix, suffix = llm_affixes(tokenizer, template, metadata.get("llm_prefix", ""), metadata.get("llm_suffix", ""))
        self.collator = CausalLMCollator(tokenizer, llm_prefix=prefix, llm_suffix=suffix)
        self.prompt_template = resolve_template(template)

    def rendered_prompt(self, question: str) -> str:
        if self.bridge:
            return self.torch_side.rendered_prompt(question)
        return self.collator.prompt_text(format_prompt(self.prompt_template, question))

    # ------------------------------------------------------------------ inputs
    def prompt_token_ids(self, questions: Sequence[str | None]) -> list[list[int]]:
        """A plain LLM's prompt ids, exactly as the HF path tokenizes them."""
        return [self.collator.prompt_ids(format_prompt(self.prompt_template, q or "")) for q in questions]

    @torch.inference_mode()
    def packed_prompts(self, questions: Sequence[str | None], batch_size: int = 16) -> list[torch.Tensor]:
        """A LinguaLIFT model's input rows `[length, hidden]` as `pack` builds them, valid positions only. Chunks
        of `batch_size` as on the HF path: same padding, same encoder input."""
        side, rows = self.torch_side, []
        for start in range(0, len(questions), batch_size):
            batch = side.prepare_batch(questions[start : start + batch_size], left_pad=True)
            packed = side.model.pack(**batch.model_inputs(), left_pad=True)
            rows.extend(embeds[mask].float().cpu() for embeds, mask in zip(packed.inputs_embeds,
                                                                            packed.attention_mask.bool()))
        return rows

    # ------------------------------------------------------------------ Generator protocol
    def generate_token_ids(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0,
                           top_p=1.0, batch_size=16, progress=False, min_new_tokens=0) -> list[list[int]]:
        raise NotImplementedError

    def generate(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=16, progress=False) -> list[str]:
        if not questions:
            return []
        ids = self.generate_token_ids(questions, max_new_tokens=max_new_tokens, stop=stop, do_sample=do_sample,
                                      temperature=temperature, top_p=top_p, batch_size=batch_size, progress=progress)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [trim_at_stop(text, stop) for text in texts]

    def _scorer(self):
        if self._hf is None:
            logger.info("%s backend: loading the HF model for teacher-forced scoring", self.backend)
            self._hf = load_hf_generator(self.spec, name=self.name, prompt_template=self._template_spec,
                                         device=self.device_arg, dtype=self.scorer_dtype)
        return self._hf

    @property
    def scorer_dtype(self) -> str | None:
        """The torch dtype the HF scorer loads the model in (None: the checkpoint's own)."""
        return None

    def target_nll(self, questions, targets, *, batch_size=8, end_of_sequence=True) -> list[TargetScore]:
        return self._scorer().target_nll(questions, targets, batch_size=batch_size, end_of_sequence=end_of_sequence)

    def prompt_embeddings(self, questions, *, batch_size=16) -> torch.Tensor:
        if self.bridge:
            return self.torch_side.prompt_embeddings(questions, batch_size=batch_size)
        return self._scorer().prompt_embeddings(questions, batch_size=batch_size)


def hf_sampling_defaults(config) -> dict:
    """What HF `generate` applies without being asked (the model's `GenerationConfig`, else transformers'
    defaults: top_k=50 when sampling, no repetition penalty), so that an engine samples from the same
    distribution."""
    top_k = getattr(config, "top_k", None)
    return {"top_k": 50 if top_k is None else int(top_k),
            "repetition_penalty": float(getattr(config, "repetition_penalty", None) or 1.0),
            "min_p": float(getattr(config, "min_p", None) or 0.0)}


def model_sampling_defaults(model_dir: Path | str) -> dict:
    """`hf_sampling_defaults` of a model folder's generation_config.json (transformers' defaults without one, or
    for a hub id)."""
    config = None
    if Path(model_dir, "generation_config.json").is_file():
        from transformers import GenerationConfig

        config = GenerationConfig.from_pretrained(model_dir)
    return hf_sampling_defaults(config)


def plain_llm_dir(spec: str, scratch: Path) -> Path | str:
    """A directory (or hub id) an engine can load: presets resolve to their asset directory; in-memory presets
    (tiny random models) are written to `scratch` together with their tokenizer."""
    spec = str(spec)
    if components.is_preset(spec):
        built = components.build_preset(spec, components.LLM, "--model")
        if not isinstance(built, tuple):
            return Path(built)
        model, tokenizer = built
        target = scratch / f"preset-{spec}"
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        return target
    return spec


def release_llm_body(model) -> None:
    """Free every LLM weight of a LinguaLIFT model but the input embedding (the engine holds its own copy; `pack`
    only embeds tokens). The torch LLM must not be run afterwards."""
    keep = {id(p) for p in model.llm.get_input_embeddings().parameters()}
    for parameter in model.llm.parameters():
        if id(parameter) not in keep:
            parameter.data = torch.empty(0, dtype=parameter.dtype, device=parameter.device)
