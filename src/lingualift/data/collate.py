"""Collation: examples -> a `Batch` of padded tensors, one collator per model kind.

The encoder always reads the templated prompt; the LLM gets the soft prompt, then (optionally) its own
tokens of the same prompt, then the target. The `sft` baseline feeds the templated prompt to the LLM.

A batch's fields are named like the arguments of the model it feeds (`LinguaLiftModel.forward` / `pack` /
`generate`, or a causal LM's `forward` / `generate`), so every caller hands it over as
`model(**batch.model_inputs())`; `tests/test_data.py` checks the names against the models' signatures.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from functools import lru_cache
from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch

from lingualift.data.instructions import PromptTarget
from lingualift.errors import LinguaLiftError


@dataclass(frozen=True)
class Batch(ABC):
    """Collated tensors of one kind of model; fields left `None` (no targets at inference) are not passed on."""

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for the model's forward / pack / generate."""
        return {field.name: getattr(self, field.name) for field in fields(self) if getattr(self, field.name) is not None}

    def to(self, device: torch.device | str) -> Batch:
        return replace(self, **{name: tensor.to(device) for name, tensor in self.model_inputs().items()})

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """Valid (unpadded) input tokens, for the training log's tokens/s."""


@dataclass(frozen=True)
class BridgeBatch(Batch):
    """A LinguaLIFT model's segments: encoder prompt, LLM prefix, LLM suffix and (training) target."""

    encoder_input_ids: torch.Tensor
    encoder_attention_mask: torch.Tensor
    prefix_ids: torch.Tensor
    prefix_mask: torch.Tensor
    suffix_ids: torch.Tensor
    suffix_mask: torch.Tensor
    target_ids: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        """Encoder tokens plus the LLM's prefix, suffix and target tokens (soft-prompt positions not counted)."""
        masks = [self.encoder_attention_mask, self.prefix_mask, self.suffix_mask]
        if self.target_mask is not None:
            masks.append(self.target_mask)
        return int(sum(mask.sum() for mask in masks))


@dataclass(frozen=True)
class CausalLMBatch(Batch):
    """A plain causal LM's input: templated prompt (+ target) tokens; `labels` only on the target."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def leading_special_ids(tokenizer) -> list[int]:
    """The ids a tokenizer puts before plain text (e.g. Llama's bos); empty for tokenizers that add none."""
    with_special = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    if plain and plain[0] in with_special:
        return with_special[: with_special.index(plain[0])]
    return []


def pad_ids(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(ids, attention mask)`, right-padded with `pad_id` to the longest sequence."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask


_DIGIT_OR_RUN = re.compile(r"\d|\D+")  # \d: every script's decimal digits (Bengali ৫, Thai ๕, …)


@lru_cache(maxsize=8)
def _vocabulary_and_continuation(tokenizer) -> tuple[dict[str, int], str]:
    """The piece -> id map and the continuation prefix (`##`), once per tokenizer: a fast tokenizer builds a new
    250k-entry dict on every `get_vocab()`, and the collator splits digits for every example."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return tokenizer.get_vocab(), getattr(model, "continuing_subword_prefix", None) or ""


def _split_digit_parts(tokenizer, ids: Sequence[int]) -> list[list[tuple[str | None, list[int]]]]:
    """Per id, its parts as `(part text, ids)`: one part `(piece, [id])` for a piece with fewer than two digits,
    else one part per digit and per run of other characters (`split_digit_pieces`)."""
    vocabulary, continuation = _vocabulary_and_continuation(tokenizer)
    out: list[list[tuple[str | None, list[int]]]] = []
    for token_id, piece in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        if piece is None or sum(char.isdecimal() for char in piece) < 2:
            out.append([(piece, [token_id])])
            continue
        parts = _DIGIT_OR_RUN.findall(piece)
        if not parts[0].isdecimal():  # the word-start marker or leading text goes with the first digit
            parts[:2] = [parts[0] + parts[1]]
        split: list[tuple[str | None, list[int]]] = []
        for index, part in enumerate(parts):
            candidates = [part] if index == 0 else [continuation + part, part]
            known = next((vocabulary[c] for c in candidates if c in vocabulary), None)
            if known is not None:
                split.append((part, [known]))
            else:  # each piece of the part's own tokenisation is a part, so only the digit's piece spans the digit
                text = part.removeprefix(continuation) if continuation else part
                pieces = tokenizer.tokenize(text.lstrip("\u2581"))
                split.extend((piece, [piece_id]) for piece, piece_id in zip(pieces, tokenizer.convert_tokens_to_ids(pieces)))
        out.append(split)
    return out


def split_digit_pieces(tokenizer, ids: Sequence[int]) -> list[int]:
    """Re-tokenise every piece holding several digits into one piece per digit: one encoder position per digit.

    Multilingual encoders' vocabularies merge digits (e5-small: `▁1,0` + `50`, `▁১২` + `৫`, `▁12` + `50`), while
    LLMs such as Qwen and Llama read one token per digit, so a merged piece makes one soft-prompt position stand
    for several LLM tokens. The first digit keeps the piece's word-start marker (`▁1`), the others become
    continuation pieces (`0`; `##0` in WordPiece vocabularies), other characters stay as one piece; a part the
    vocabulary lacks is tokenised on its own, which can never merge digits. Pieces are read as text, so a
    byte-level vocabulary's non-ASCII digits are not seen.
    """
    return [token_id for parts in _split_digit_parts(tokenizer, ids) for _, part_ids in parts for token_id in part_ids]


def _holds_digit(part: str | None) -> bool:
    return part is not None and any(char.isdecimal() for char in part)


def _part_spans(text: str, begin: int, end: int, parts: Sequence[str | None]) -> list[tuple[int, int]]:
    """The characters of `text[begin:end]` each part of a piece stands for: a part holding a digit that digit
    alone (so it pairs with the LLM's token of the digit, also when text such as `$` or `/` shares its piece), a
    run of other characters what lies between the digits. A piece whose digits do not match its characters one
    for one (a normaliser rewrote them) keeps its span whole."""
    digits = [position for position in range(begin, end) if text[position].isdecimal()]
    if len(digits) != sum(_holds_digit(part) for part in parts):
        return [(begin, end)] * len(parts)
    spans, cursor, next_digit = [], begin, iter(digits)
    for part in parts:
        if _holds_digit(part):
            digit = next(next_digit)
            spans.append((digit, digit + 1))
            cursor = digit + 1
        else:
            stop = next((position for position in digits if position >= cursor), end)
            spans.append((cursor, stop))
            cursor = stop
    return spans


def encoder_tokens(tokenizer, text: str, *, max_length: int, split_digits: bool = False,
                   with_offsets: bool = False) -> tuple[list[int], list[tuple[int, int]] | None]:
    """What the encoder reads of `text`: the one place that decides it (`BridgeCollator.encoder_ids`, the lexical
    warm start and the lexical objective all read prompts through it). Its tokenizer's ids (digits split with
    `split_digits`, `split_digit_pieces`), at most `max_length`, keeping the closing special token (`</s>`,
    `[SEP]`) when the text is cut; with `with_offsets` (fast tokenizers only) also each id's character span in
    `text` ((0, 0) for special tokens), else None. With `split_digits` a position holding a digit spans that
    digit alone, so each digit pairs with the LLM's token of the same digit (`_part_spans`).
    """
    if not split_digits:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=with_offsets)
        return encoded.input_ids, [tuple(span) for span in encoded.offset_mapping] if with_offsets else None
    encoded = tokenizer(text, return_offsets_mapping=with_offsets)
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for index, parts in enumerate(_split_digit_parts(tokenizer, encoded.input_ids)):
        if with_offsets:
            begin, end = encoded.offset_mapping[index]
            texts = [part for part, _ in parts]
            part_spans = _part_spans(text, begin, end, texts) if any(map(_holds_digit, texts)) else [(begin, end)]
        for position, (_, part_ids) in enumerate(parts):
            ids.extend(part_ids)
            if with_offsets:
                spans.extend([part_spans[position]] * len(part_ids))
    if len(ids) > max_length:
        closing = 1 if ids[-1] in tokenizer.all_special_ids else 0
        ids = ids[: max_length - closing] + ids[len(ids) - closing :]
        spans = spans[: max_length - closing] + spans[len(spans) - closing :]
    return ids, spans if with_offsets else None


class _TargetTokens:
    def __init__(self, llm_tokenizer, max_target_length: int):
        self.llm_tokenizer = llm_tokenizer
        self.max_target_length = max_target_length
        self.pad_id = llm_tokenizer.pad_token_id if llm_tokenizer.pad_token_id is not None else 0

    def target_ids(self, text: str, end_of_sequence: bool = True) -> list[int]:
        """The target's tokens and, if asked, end-of-sequence. A target of `max_target_length`
        tokens or more keeps its first `max_target_length`, without end-of-sequence, which would teach the
        model to stop mid-answer (stage 1 cuts most GSM8K solutions short)."""
        ids = self.llm_tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) >= self.max_target_length or not end_of_sequence:
            return ids[: self.max_target_length]
        if self.llm_tokenizer.eos_token_id is None:
            raise LinguaLiftError(f"{self.llm_tokenizer.name_or_path}: the LLM tokenizer has no end-of-sequence "
                                  "token, which targets end with; set `eos_token` in its tokenizer_config.json")
        return ids + [self.llm_tokenizer.eos_token_id]


class BridgeCollator(_TargetTokens):
    """Tokenise examples into the model's segments: encoder prompt, LLM prefix, LLM suffix, target."""

    def __init__(self, encoder_tokenizer, llm_tokenizer, *, llm_sees_query: bool = False, llm_prefix: str = "",
                 llm_suffix: str = "", encoder_max_length: int = 512, max_target_length: int = 512,
                 encoder_split_digits: bool = False):
        super().__init__(llm_tokenizer, max_target_length)
        self.encoder_tokenizer = encoder_tokenizer
        self.llm_sees_query = llm_sees_query
        self.encoder_max_length = encoder_max_length
        self.encoder_split_digits = encoder_split_digits
        self.llm_prefix, self.llm_suffix = llm_prefix, llm_suffix
        self.prefix = leading_special_ids(llm_tokenizer) + self._text_ids(llm_prefix)
        self.suffix = self._text_ids(llm_suffix)

    @classmethod
    def for_model(cls, model, max_target_length: int = 512, llm_affixes: tuple[str, str] | None = None,
                  llm_sees_query: bool | None = None) -> "BridgeCollator":
        """The collator a checkpoint was trained with; `llm_affixes` replaces its LLM text around the soft prompt,
        `llm_sees_query` whether the LLM also reads the query (the fidelity measure switches it off)."""
        config = model.config
        prefix, suffix = llm_affixes or (config.llm_prefix, config.llm_suffix)
        return cls(model.encoder_tokenizer, model.llm_tokenizer,
                   llm_sees_query=config.llm_sees_query if llm_sees_query is None else llm_sees_query,
                   llm_prefix=prefix, llm_suffix=suffix, encoder_max_length=config.encoder_max_length,
                   max_target_length=max_target_length,
                   encoder_split_digits=getattr(config, "encoder_split_digits", False))

    def _text_ids(self, text: str) -> list[int]:
        return self.llm_tokenizer(text, add_special_tokens=False).input_ids if text else []

    def encoder_ids(self, prompt: str) -> list[int]:
        """What the encoder reads (`encoder_tokens`): digits split if asked, at most `encoder_max_length`."""
        return encoder_tokens(self.encoder_tokenizer, prompt, max_length=self.encoder_max_length,
                              split_digits=self.encoder_split_digits)[0]

    def __call__(self, examples: Sequence[PromptTarget]) -> BridgeBatch:
        encoded = [self.encoder_ids(example.prompt) for example in examples]
        encoder_input_ids, encoder_attention_mask = pad_ids(encoded, self.encoder_tokenizer.pad_token_id or 0)
        prefix_ids, prefix_mask = pad_ids([self.prefix] * len(examples), self.pad_id)
        suffixes = [
            (self._text_ids(example.prompt) if self.llm_sees_query else []) + self.suffix for example in examples
        ]
        suffix_ids, suffix_mask = pad_ids(suffixes, self.pad_id)
        target_ids = target_mask = None
        if all(example.target is not None for example in examples):
            targets = [self.target_ids(example.target, example.end_of_sequence) for example in examples]
            target_ids, target_mask = pad_ids(targets, self.pad_id)
        return BridgeBatch(encoder_input_ids, encoder_attention_mask, prefix_ids, prefix_mask, suffix_ids,
                           suffix_mask, target_ids, target_mask)


class CausalLMCollator(_TargetTokens):
    """The `sft` baseline and plain LLMs: the LLM reads the templated prompt as its own tokens."""

    def __init__(self, llm_tokenizer, *, llm_prefix: str = "", llm_suffix: str = "", max_length: int = 1024,
                 max_target_length: int = 512):
        super().__init__(llm_tokenizer, max_target_length)
        self.prefix = leading_special_ids(llm_tokenizer)
        self.llm_prefix, self.llm_suffix = llm_prefix, llm_suffix
        self.max_length = max_length

    def prompt_text(self, prompt: str) -> str:
        """The text the LLM reads for a templated prompt (before any leading special ids)."""
        return f"{self.llm_prefix}{prompt}{self.llm_suffix}"

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.prefix + self.llm_tokenizer(self.prompt_text(prompt), add_special_tokens=False).input_ids[-self.max_length:]

    def __call__(self, examples: Sequence[PromptTarget], left_pad: bool = False) -> CausalLMBatch:
        prompts = [self.prompt_ids(example.prompt) for example in examples]
        with_targets = all(example.target is not None for example in examples)
        targets = ([self.target_ids(example.target, example.end_of_sequence) for example in examples] if with_targets
                   else [[]] * len(prompts))
        sequences = [p + t for p, t in zip(prompts, targets)]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, (prompt, target) in enumerate(zip(prompts, targets)):
            start = width - len(prompt) - len(target) if left_pad else 0
            input_ids[row, start : start + len(prompt) + len(target)] = torch.tensor(prompt + target)
            attention_mask[row, start : start + len(prompt) + len(target)] = 1
            if target:
                labels[row, start + len(prompt) : start + len(prompt) + len(target)] = torch.tensor(target)
        return CausalLMBatch(input_ids, attention_mask, labels if with_targets else None)
