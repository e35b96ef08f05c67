"""The Hugging Face backend: transformers' `generate` on a LinguaLIFT model or a plain causal LM.

`BridgeGenerator` (LinguaLIFT checkpoints, the langbridge baseline) and `CausalLMGenerator` (the `sft`
baseline, plain LLMs) apply the model's prompt template themselves; the other backends reuse them for
everything that stays in torch (packing soft prompts, teacher-forced scoring).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import torch

from lingualift.model import components
from lingualift.data.collate import Batch, BridgeBatch, BridgeCollator, CausalLMBatch, CausalLMCollator
from lingualift.data.instructions import PromptTarget
from lingualift.checkpoint import is_lingualift_checkpoint, read_run_metadata
from lingualift.inference.base import TargetScore, batches, trim_at_stop
from lingualift.model.modeling import LinguaLiftModel, target_window
from lingualift.data.prompts import format_prompt, llm_affixes, resolve_template

logger = logging.getLogger(__name__)


class _GeneratorBase:
    """Batching, decoding and teacher-forced scoring shared by the two model kinds."""

    backend = "hf"  # recorded in run.json: a run is never resumed by another backend

    def __init__(self, model, collator, tokenizer, prompt_template: str | None, name: str, device: str | None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.collator = collator
        self.tokenizer = tokenizer
        self.prompt_template = resolve_template(prompt_template)
        self.name = name

    @property
    def dtype(self) -> str:
        """The LLM's precision: part of a run's identity (bf16 and fp32 can answer differently)."""
        llm = self.model.llm if isinstance(self.model, LinguaLiftModel) else self.model
        return str(next(llm.parameters()).dtype).removeprefix("torch.")

    def examples(self, questions: Sequence[str | None], targets: Sequence[str] | None = None,
                 end_of_sequence: bool = True) -> list[PromptTarget]:
        """Questions (None: no question) with this generator's prompt template applied."""
        targets = targets if targets is not None else [None] * len(questions)
        return [PromptTarget(format_prompt(self.prompt_template, q or ""), t, end_of_sequence)
                for q, t in zip(questions, targets)]

    def prepare_batch(self, questions: Sequence[str | None], targets: Sequence[str] | None = None, *,
                      left_pad: bool = False, end_of_sequence: bool = True) -> Batch:
        """Templated, collated and on this generator's device; `left_pad` for generation (plain LLMs' rows;
        a LinguaLIFT model packs its segments itself)."""
        return self._collate(self.examples(questions, targets, end_of_sequence), left_pad).to(self.device)

    @torch.inference_mode()
    def generate(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=16, progress=False) -> list[str]:
        options = dict(max_new_tokens=max_new_tokens, do_sample=do_sample)
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        if stop:
            options["stop_strings"] = list(stop)
        outputs = []
        for chunk in batches(questions, batch_size, progress, "generate"):
            new_tokens = self.generate_tokens(self.prepare_batch(chunk, left_pad=True), **options)
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            outputs.extend(trim_at_stop(text, stop) for text in texts)
        return outputs

    @torch.inference_mode()
    def target_nll(self, questions, targets, *, batch_size=8, end_of_sequence=True) -> list[TargetScore]:
        results = []
        for start in range(0, len(questions), batch_size):
            batch = self.prepare_batch(questions[start : start + batch_size], targets[start : start + batch_size],
                                       end_of_sequence=end_of_sequence)
            logits, labels = self._logits_and_labels(batch)
            shifted_logits, shifted_labels = logits[:, :-1].float(), labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                shifted_logits.transpose(1, 2), shifted_labels, ignore_index=-100, reduction="none"
            )
            counted = shifted_labels != -100
            greedy = ((shifted_logits.argmax(-1) == shifted_labels) | ~counted).all(1)
            results.extend(map(TargetScore, nll.sum(1).tolist(), counted.sum(1).tolist(), greedy.tolist()))
        return results


class BridgeGenerator(_GeneratorBase):
    """A LinguaLIFT model (or the langbridge baseline): the encoder reads the prompt."""

    def __init__(self, model: LinguaLiftModel, *, prompt_template=None, name="lingualift", device=None):
        template = prompt_template or model.config.prompt_template
        config = model.config
        affixes = llm_affixes(model.llm_tokenizer, template, config.llm_prefix, config.llm_suffix)
        collator = BridgeCollator.for_model(model, llm_affixes=affixes)
        super().__init__(model, collator, model.llm_tokenizer, template, name, device)

    def rendered_prompt(self, question: str) -> str:
        """LLM affixes around a marker for the soft prompt, which holds what the encoder reads."""
        encoder_text = format_prompt(self.prompt_template, question)
        query = encoder_text if self.collator.llm_sees_query else ""
        return (f"{self.collator.llm_prefix}[soft prompt; the encoder reads: {encoder_text}]{query}"
                f"{self.collator.llm_suffix}")

    def _collate(self, examples, left_pad: bool) -> BridgeBatch:
        return self.collator(examples)

    def generate_tokens(self, batch: BridgeBatch, **options) -> torch.Tensor:
        """New token ids for a prepared batch (`options` go to `generate`)."""
        return self.model.generate(**batch.model_inputs(), **options)

    def _logits_and_labels(self, batch: BridgeBatch):
        output = self.model(**batch.model_inputs(), targets_only=True)
        return output.logits, output.labels

    @torch.inference_mode()
    def prompt_embeddings(self, questions, *, batch_size=16) -> torch.Tensor:
        """Mean of the soft-prompt vectors (alignment output over valid encoder positions)."""
        pooled = []
        for start in range(0, len(questions), batch_size):
            batch = self.prepare_batch(questions[start : start + batch_size])
            embeds, mask = self.model.soft_prompt(batch.encoder_input_ids, batch.encoder_attention_mask)
            weights = mask.unsqueeze(-1).to(embeds.dtype)
            pooled.append(((embeds * weights).sum(1) / weights.sum(1)).float().cpu())
        return torch.cat(pooled)


class CausalLMGenerator(_GeneratorBase):
    """A plain causal LM (the `sft` baseline, or any HF LLM zero-shot): it reads the templated prompt."""

    def __init__(self, model, tokenizer, *, prompt_template=None, name="llm", device=None, llm_prefix="",
                 llm_suffix=""):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        llm_prefix, llm_suffix = llm_affixes(tokenizer, prompt_template, llm_prefix, llm_suffix)
        collator = CausalLMCollator(tokenizer, llm_prefix=llm_prefix, llm_suffix=llm_suffix)
        super().__init__(model, collator, tokenizer, prompt_template, name, device)

    def rendered_prompt(self, question: str) -> str:
        return self.collator.prompt_text(format_prompt(self.prompt_template, question))

    def _collate(self, examples, left_pad: bool) -> CausalLMBatch:
        return self.collator(examples, left_pad=left_pad)

    def generate_tokens(self, batch: CausalLMBatch, **options) -> torch.Tensor:
        """New token ids for a prepared (left-padded) batch (`options` go to `generate`)."""
        options = dict(options, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        if "stop_strings" in options:
            options["tokenizer"] = self.tokenizer
        output = self.model.generate(**batch.model_inputs(), **options)
        return output[:, batch.input_ids.shape[1]:]

    def _logits_and_labels(self, batch: CausalLMBatch):
        """Only the target window goes through the LM head (151k-token vocabularies make the rest costly)."""
        labels, inputs = batch.labels, replace(batch, labels=None).model_inputs()
        window = target_window(labels)
        if window is None:
            return self.model(**inputs).logits, labels
        return self.model(**inputs, logits_to_keep=window).logits, labels[:, window]

    @torch.inference_mode()
    def prompt_embeddings(self, questions, *, batch_size=16) -> torch.Tensor:
        """Mean of the LLM's input embeddings of the templated prompt."""
        embed = self.model.get_input_embeddings()
        pooled = []
        for start in range(0, len(questions), batch_size):
            batch = self.prepare_batch(questions[start : start + batch_size])
            weights = batch.attention_mask.unsqueeze(-1).float()
            pooled.append(((embed(batch.input_ids).float() * weights).sum(1) / weights.sum(1)).cpu())
        return torch.cat(pooled)


def load_hf_generator(spec: str, *, name: str, prompt_template: str | None = None, device: str | None = None,
                      dtype: str | None = None):
    """A resolved spec (checkpoint directory, plain LLM directory / hub snapshot, preset) on transformers."""
    if is_lingualift_checkpoint(spec):
        model = LinguaLiftModel.from_pretrained(spec, dtype=dtype, merge_lora=True)
        return BridgeGenerator(model, prompt_template=prompt_template, name=name, device=device)
    metadata = read_run_metadata(spec)
    model, tokenizer = components.load_component(spec, components.LLM, dtype=dtype, where="--model")
    return CausalLMGenerator(
        model, tokenizer, prompt_template=prompt_template or metadata.get("prompt_template"), name=name,
        device=device, llm_prefix=metadata.get("llm_prefix", ""), llm_suffix=metadata.get("llm_suffix", ""),
    )
