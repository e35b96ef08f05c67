"""The LinguaLIFT model: frozen multilingual encoder -> language alignment layer -> decoder LLM.

The LLM input for one example is the concatenation of *segments*

    [prefix tokens (bos, optional llm_prefix)] [alignment output: v_begin, Align(H), v_end]
    [suffix tokens (the LLM's own tokens of the query if `llm_sees_query`, optional llm_suffix)]
    [target tokens (response + eos; training only)]

Each segment is padded on its own, so padding sits *inside* the concatenation. `pack_segments` moves
every example's valid positions together (right-padded for training, left-padded for generation) and
derives attention mask, position ids and labels from the packed layout. That makes an example's loss,
logits and generated tokens independent of the batch it is in, for every alignment type; the paper's
code builds its mask one position short instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from lingualift.model import components
from lingualift.model.alignment import build_alignment, resolve_alignment_kwargs
from lingualift.checkpoint import (ADAPTER_DIR, ALIGNMENT_FILE, CONFIG_FILE, ENCODER_DIR, ENCODER_TOKENIZER_DIR,
                                   LINGUALIFT_MODEL_TYPE, LLM_DIR, LLM_TOKENIZER_DIR, hub_snapshot, is_hub_id, recover,
                                   replace_directory)
from lingualift.errors import LinguaLiftError
from lingualift.data.prompts import DEFAULT_TEMPLATE

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class LinguaLiftConfig(PretrainedConfig):
    """Everything needed to rebuild the composite model; component configs are kept as dicts."""

    model_type = LINGUALIFT_MODEL_TYPE

    def __init__(
        self,
        encoder: str | None = None,
        llm: str | None = None,
        encoder_config: dict | None = None,
        llm_config: dict | None = None,
        alignment: str = "mlp",
        alignment_kwargs: dict | None = None,
        llm_sees_query: bool = False,
        prompt_template: str = DEFAULT_TEMPLATE,
        llm_prefix: str = "",
        llm_suffix: str = "",
        encoder_max_length: int = 512,
        encoder_split_digits: bool = False,
        **kwargs,
    ):
        self.encoder = encoder
        self.llm = llm
        self.encoder_config = encoder_config
        self.llm_config = llm_config
        self.alignment = alignment
        self.alignment_kwargs = alignment_kwargs or {}
        self.llm_sees_query = llm_sees_query
        self.prompt_template = prompt_template
        self.llm_prefix = llm_prefix
        self.llm_suffix = llm_suffix
        self.encoder_max_length = encoder_max_length
        self.encoder_split_digits = encoder_split_digits  # one encoder position per digit (`split_digit_pieces`)
        super().__init__(**kwargs)


@dataclass
class Packed:
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    soft_mask: torch.Tensor  # True where a position holds an alignment-layer output


def pack_segments(
    segments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], left_pad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
    """Concatenate `(embeds [B,L,d], mask [B,L], extra [B,L,...] | None)` segments and pack valid positions.

    Returns packed embeds, attention mask, position ids, and each segment's `extra` tensors packed the
    same way (used for labels and the soft-prompt marker). Loop-free: one scatter per tensor.
    """
    embeds = torch.cat([seg[0] for seg in segments], dim=1)
    mask = torch.cat([seg[1] for seg in segments], dim=1).bool()
    batch = embeds.shape[0]
    lengths = mask.sum(dim=1)
    total = int(lengths.max())
    offset = (total - lengths) if left_pad else torch.zeros_like(lengths)
    rank = mask.long().cumsum(dim=1) - 1
    destination = torch.where(mask, rank + offset[:, None], torch.full_like(rank, total))  # slot `total` = discard

    def scatter(values: torch.Tensor, fill) -> torch.Tensor:
        shape = (batch, total + 1) + values.shape[2:]
        out = values.new_full(shape, fill)
        index = destination.view(batch, -1, *([1] * (values.dim() - 2))).expand_as(values)
        return out.scatter(1, index, values)[:, :total]

    packed_embeds = scatter(embeds, 0.0)
    positions = torch.arange(total, device=embeds.device)[None, :] - offset[:, None]
    attention_mask = ((positions >= 0) & (positions < lengths[:, None])).long()
    position_ids = positions.clamp(min=0)
    extras = []
    for index in range(len(segments[0]) - 2):
        parts = [seg[2 + index] for seg in segments]
        extras.append(scatter(torch.cat(parts, dim=1), 0))
    return packed_embeds, attention_mask, position_ids, extras


def target_window(labels: torch.Tensor) -> torch.Tensor | None:
    """Positions whose logits a teacher-forced loss needs: from just before the first label to the last.

    Logits at p predict the label at p + 1, so the window's last logit predicts nothing; the vocabulary
    projection of everything before it (soft prompt, prompt tokens) is skipped. None when nothing is labelled.
    """
    labelled = (labels != IGNORE_INDEX).any(0).nonzero()
    if not labelled.numel():
        return None
    return torch.arange(max(int(labelled[0]) - 1, 0), int(labelled[-1]) + 1, device=labels.device)


class LinguaLiftModel(PreTrainedModel):
    """Encoder + alignment layer + LLM as one `PreTrainedModel` (save, load and generate like any HF model)."""

    config_class = LinguaLiftConfig
    base_model_prefix = "lingualift"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: LinguaLiftConfig, encoder: PreTrainedModel | None = None,
                 llm: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else _from_config(config.encoder_config, components.ENCODER)
        self.llm = llm if llm is not None else _from_config(config.llm_config, components.LLM)
        self.alignment = build_alignment(
            config.alignment,
            components.hidden_size(self.encoder.config),
            self.llm.get_input_embeddings().embedding_dim,
            **config.alignment_kwargs,
        )
        # FSDP's transformer-based wrapping and device maps look here for the blocks not to split.
        self._no_split_modules = sorted(
            {name for part in (self.encoder, self.llm) for name in (getattr(part, "_no_split_modules", None) or [])}
        )
        self.encoder_tokenizer = None
        self.llm_tokenizer = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(
        cls,
        encoder: str | PreTrainedModel,
        llm: str | PreTrainedModel,
        alignment: str = "mlp",
        *,
        encoder_tokenizer=None,
        llm_tokenizer=None,
        dtype=None,
        alignment_kwargs: dict | None = None,
        seed: int | None = None,
        error_context: str | None = None,
        **config_kwargs,
    ) -> "LinguaLiftModel":
        """Build a fresh model from an encoder spec and an LLM spec (preset, path, hub id or module).

        `error_context` (e.g. "config.yaml: model") prefixes the field names in error messages.
        """
        prefix = f"{error_context}." if error_context else ""
        encoder_model, encoder_tokenizer = components.load_component(
            encoder, components.ENCODER, tokenizer=encoder_tokenizer, dtype=dtype, where=f"{prefix}encoder"
        )
        llm_model, llm_tokenizer = components.load_component(
            llm, components.LLM, tokenizer=llm_tokenizer, dtype=dtype, where=f"{prefix}llm"
        )
        positions = getattr(encoder_model.config, "max_position_embeddings", None)
        requested = config_kwargs.get("encoder_max_length")
        if positions and requested is not None and not 1 <= requested <= positions:
            raise LinguaLiftError(f"{prefix}encoder_max_length: {requested} is outside the encoder's 1..{positions} "
                                  f"positions; set it to at most {positions}")
        config = LinguaLiftConfig(
            encoder=_reference(encoder, encoder_model),
            llm=_reference(llm, llm_model),
            encoder_config=encoder_model.config.to_dict(),
            llm_config=llm_model.config.to_dict(),
            alignment=alignment,
            alignment_kwargs=resolve_alignment_kwargs(alignment_kwargs, llm_model),
            **config_kwargs,
        )
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = cls(config, encoder=encoder_model, llm=llm_model)
        model.alignment.to(dtype=next(llm_model.parameters()).dtype)
        model.set_tokenizers(encoder_tokenizer, llm_tokenizer)
        return model

    def set_tokenizers(self, encoder_tokenizer, llm_tokenizer) -> None:
        if llm_tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token
            llm_tokenizer.pad_token = llm_tokenizer.eos_token
        self.encoder_tokenizer = encoder_tokenizer
        self.llm_tokenizer = llm_tokenizer

    def _init_weights(self, module: nn.Module) -> None:
        """Fresh weights only ever come from the alignment layer's own initialisation."""

    # ------------------------------------------------------------------ forward
    @property
    def hidden_dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encoder's last hidden states; no autograd graph while the encoder is frozen."""
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def soft_prompt(self, encoder_input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor):
        """`(embeds [B, m, d_llm], mask [B, m])`: the alignment layer's output for a batch of prompts."""
        hidden = self.encode(encoder_input_ids, encoder_attention_mask)
        embeds, mask = self.alignment(hidden.to(self.alignment_dtype), encoder_attention_mask)
        return embeds.to(self.hidden_dtype), mask

    @property
    def alignment_dtype(self) -> torch.dtype:
        return next(self.alignment.parameters()).dtype

    def pack(
        self,
        encoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        prefix_ids: torch.Tensor,
        prefix_mask: torch.Tensor,
        suffix_ids: torch.Tensor,
        suffix_mask: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
        left_pad: bool = False,
    ) -> Packed:
        embed = self.llm.get_input_embeddings()
        soft, soft_mask = self.soft_prompt(encoder_input_ids, encoder_attention_mask)

        def token_segment(ids, mask, labelled: bool):
            labels = torch.where(mask.bool(), ids, IGNORE_INDEX) if labelled else torch.full_like(ids, IGNORE_INDEX)
            return embed(ids), mask, labels, torch.zeros_like(mask, dtype=torch.bool)

        segments = [
            token_segment(prefix_ids, prefix_mask, False),
            (soft, soft_mask, torch.full_like(soft_mask, IGNORE_INDEX, dtype=torch.long), soft_mask.bool()),
            token_segment(suffix_ids, suffix_mask, False),
        ]
        if target_ids is not None:
            segments.append(token_segment(target_ids, target_mask, True))
        embeds, attention_mask, position_ids, (labels, is_soft) = pack_segments(segments, left_pad=left_pad)
        labels = torch.where(attention_mask.bool(), labels, IGNORE_INDEX)
        return Packed(embeds, attention_mask, position_ids, labels if target_ids is not None else None,
                      is_soft.bool() & attention_mask.bool())

    def forward(
        self,
        encoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        prefix_ids: torch.Tensor,
        prefix_mask: torch.Tensor,
        suffix_ids: torch.Tensor,
        suffix_mask: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
        targets_only: bool = False,
        **llm_kwargs,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass; `loss` is next-token cross-entropy over target (response + eos) tokens.

        `targets_only=True` (training) runs the LM head only over the window of positions that predict a
        target token: the same loss without the vocabulary projection of the soft prompt and prefix;
        `logits` and `labels` then cover that window only.
        """
        packed = self.pack(encoder_input_ids, encoder_attention_mask, prefix_ids, prefix_mask, suffix_ids,
                           suffix_mask, target_ids, target_mask)
        labels = packed.labels
        if targets_only and labels is not None and (window := target_window(labels)) is not None:
            llm_kwargs["logits_to_keep"], labels = window, labels[:, window]
        output = self.llm(
            inputs_embeds=packed.inputs_embeds,
            attention_mask=packed.attention_mask,
            position_ids=packed.position_ids,
            labels=labels,
            use_cache=False,
            **llm_kwargs,
        )
        output["labels"] = labels
        return output

    @torch.no_grad()
    def generate(
        self,
        encoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        prefix_ids: torch.Tensor,
        prefix_mask: torch.Tensor,
        suffix_ids: torch.Tensor,
        suffix_mask: torch.Tensor,
        **generate_kwargs,
    ) -> torch.Tensor:
        """Batched, KV-cached generation; returns only the new token ids (the encoder runs once)."""
        packed = self.pack(encoder_input_ids, encoder_attention_mask, prefix_ids, prefix_mask, suffix_ids,
                           suffix_mask, left_pad=True)
        tokenizer = self.llm_tokenizer
        generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        generate_kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
        if generate_kwargs.get("stop_strings"):
            generate_kwargs.setdefault("tokenizer", tokenizer)
        return self.llm.generate(
            inputs_embeds=packed.inputs_embeds, attention_mask=packed.attention_mask, **generate_kwargs
        )

    # ------------------------------------------------------------------ freezing
    def parameter_groups(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "alignment": self.alignment, "llm": self.llm}

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, *, include_frozen: bool = True,
                        **_ignored) -> None:
        """Write a checkpoint atomically.

        `include_frozen=True` (default) writes a self-contained directory: config, alignment layer,
        encoder, LLM (or its LoRA adapter plus the base LLM), both tokenizers. `include_frozen=False`
        (stage 1, LoRA stage 2) writes the trained parts and refers to the frozen ones by the spec they
        were loaded from, so the checkpoint stays small.
        """
        from peft import PeftModel

        with replace_directory(save_directory) as staging:
            config = LinguaLiftConfig.from_dict(self.config.to_dict())
            state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.alignment.state_dict().items()}
            save_file(state, staging / ALIGNMENT_FILE)
            llm = self.llm
            if isinstance(llm, PeftModel):
                llm.save_pretrained(staging / ADAPTER_DIR)
                llm = llm.get_base_model()
            if include_frozen:
                self.encoder.save_pretrained(staging / ENCODER_DIR)
                llm.save_pretrained(staging / LLM_DIR)
                config.encoder, config.llm = None, None
            elif config.encoder is None or config.llm is None:
                raise LinguaLiftError("cannot save without frozen parts: the model has no encoder/LLM reference")
            self.encoder_tokenizer.save_pretrained(staging / ENCODER_TOKENIZER_DIR)
            self.llm_tokenizer.save_pretrained(staging / LLM_TOKENIZER_DIR)
            config.save_pretrained(staging)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, dtype=None, merge_lora: bool = False,
                        **_ignored) -> "LinguaLiftModel":
        """Load a checkpoint written by `save_pretrained` (self-contained or with references), or its hub id
        (`owner/name`, fetched once into the Hugging Face cache; a local folder of that name wins)."""
        path = hub_snapshot(path) if is_hub_id(path) else Path(path)
        recover(path)
        if not (path / CONFIG_FILE).is_file() or not (path / ALIGNMENT_FILE).is_file():
            raise LinguaLiftError(f"{path} is not a LinguaLIFT checkpoint ({CONFIG_FILE} and {ALIGNMENT_FILE} expected)")
        config = LinguaLiftConfig.from_pretrained(path)
        encoder_spec = path / ENCODER_DIR if (path / ENCODER_DIR).is_dir() else config.encoder
        llm_spec = path / LLM_DIR if (path / LLM_DIR).is_dir() else config.llm
        for role, spec in ((components.ENCODER, encoder_spec), (components.LLM, llm_spec)):
            if isinstance(spec, str) and Path(spec).is_absolute() and not Path(spec).exists():
                raise LinguaLiftError(f"{path / CONFIG_FILE}: the {role} is not stored in the checkpoint and {spec} "
                                      "is not on this machine; load it where it was trained, or share a "
                                      "self-contained one (save_pretrained with include_frozen=True)")
        encoder_tokenizer = components.load_tokenizer(str(path / ENCODER_TOKENIZER_DIR), f"{path}")
        llm_tokenizer = components.load_tokenizer(str(path / LLM_TOKENIZER_DIR), f"{path}")
        encoder, _ = components.load_component(encoder_spec, components.ENCODER, tokenizer=encoder_tokenizer,
                                               dtype=dtype, where=f"{path}/config.json: encoder")
        llm, _ = components.load_component(llm_spec, components.LLM, tokenizer=llm_tokenizer, dtype=dtype,
                                           where=f"{path}/config.json: llm")
        config.encoder = str(Path(encoder_spec).resolve()) if Path(str(encoder_spec)).is_dir() else encoder_spec
        config.llm = str(Path(llm_spec).resolve()) if Path(str(llm_spec)).is_dir() else llm_spec
        if (path / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            try:
                llm = PeftModel.from_pretrained(llm, path / ADAPTER_DIR, is_trainable=False)
            except (OSError, ValueError) as exc:  # a damaged adapter_config.json or adapter weights
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise LinguaLiftError(f"{path / ADAPTER_DIR}: unreadable LoRA adapter ({reason[:160]}); the checkpoint "
                                      "is damaged, train or copy it again") from None
            if merge_lora:
                llm = llm.merge_and_unload()
        model = cls(config, encoder=encoder, llm=llm)
        try:
            alignment_state = load_file(path / ALIGNMENT_FILE)
        except Exception as exc:  # safetensors raises its own error type for a truncated or corrupt file
            raise LinguaLiftError(f"{path / ALIGNMENT_FILE}: unreadable ({exc}); the checkpoint is damaged, "
                                  "train or copy it again") from None
        try:
            model.alignment.load_state_dict(alignment_state)
        except RuntimeError as exc:
            raise LinguaLiftError(f"{path / ALIGNMENT_FILE}: does not fit the alignment layer in config.json "
                                  f"({str(exc).splitlines()[0]})") from None
        model.alignment.to(dtype=model.hidden_dtype)
        model.set_tokenizers(encoder_tokenizer, llm_tokenizer)
        model.eval()
        return model


def _from_config(config_dict: dict | None, role: str) -> PreTrainedModel:
    if not config_dict:
        raise LinguaLiftError(f"LinguaLiftConfig has no {role}_config; build the model with from_components")
    config = AutoConfig.for_model(**config_dict)
    return components.model_class(config, role).from_config(config)


def _reference(spec, model: PreTrainedModel) -> str | None:
    """How a checkpoint refers to a frozen part it does not store: the spec it was loaded from."""
    if isinstance(spec, nn.Module):
        return getattr(model, "name_or_path", None) or None
    text = str(spec)
    return str(Path(text).resolve()) if Path(text).is_dir() else text

