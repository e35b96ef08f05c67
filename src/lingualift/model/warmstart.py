"""Lexical warm start of the alignment layer: make the soft prompt *readable* before stage 1 begins.

A freshly initialised alignment layer emits vectors the LLM has never seen, and the stage-1 LM loss has to
discover a readable mapping through the whole frozen LLM. On CPU-sized budgets it does not (measured in
`experiments/small/README.md`): the soft prompt learns the answer format but no question content.

The warm start gives it that mapping directly. For English texts, each encoder token state is paired with
the LLM's input embedding of the token covering the same character; the alignment layer is fitted to the
pairs by mean-squared error (no LLM forward or backward pass, so it takes seconds). The soft prompt then
starts as an approximate copy of the question's own token embeddings, at the LLM's embedding scale, and
because the encoder is multilingual, a question in another language lands near the English tokens too.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence

import torch

from lingualift.data.collate import encoder_tokens, pad_ids
from lingualift.errors import LinguaLiftError

logger = logging.getLogger(__name__)


def require_fast_tokenizers(model) -> None:
    """Pairing tokens needs character offsets, which only fast tokenizers give."""
    for role, tokenizer in (("encoder", model.encoder_tokenizer), ("llm", model.llm_tokenizer)):
        if not getattr(tokenizer, "is_fast", False):
            raise LinguaLiftError(f"pairing encoder and LLM tokens needs character offsets: the {role} tokenizer "
                                  "is not a fast tokenizer")


def paired_llm_tokens(text: str, encoder_offsets: Sequence[tuple[int, int]], source_text: str,
                      llm_ids: Sequence[int], llm_offsets: Sequence[tuple[int, int]],
                      spans: Sequence[Sequence[int]] = ()) -> list[int]:
    """For each encoder token of `text`, the LLM token of `source_text` it should map onto (-1: none).

    `source_text` is `text` with the words of `spans` (`[start, end, source_start, source_end]`, sorted,
    character offsets) put back: for a code-switched question, the English original. An encoder token
    outside every span pairs with the LLM token covering its first non-space character (at the same place in
    `source_text`). The `n` encoder tokens starting inside a swapped word pair, in order, with the `m` LLM
    tokens of the English word it replaced: the `k`-th with the `(k·m // n)`-th. `llm_ids` / `llm_offsets` are
    the LLM tokenizer's tokens of `source_text`; special tokens (empty offsets) pair with nothing.
    """
    covering: dict[int, int] = {}
    for token, (begin, end) in zip(llm_ids, llm_offsets):
        for char in range(begin, end):
            covering.setdefault(char, token)
    starts = [span[0] for span in spans]
    word_tokens = [[token for token, (begin, end) in zip(llm_ids, llm_offsets)
                    if begin < source_end and end > source_start]
                   for _, _, source_start, source_end in spans]
    in_word: dict[int, list[int]] = {}  # span index -> its encoder positions
    paired = [-1] * len(encoder_offsets)
    for position, (begin, end) in enumerate(encoder_offsets):
        if end <= begin:
            continue
        while begin < end - 1 and text[begin].isspace():
            begin += 1
        index = bisect.bisect_right(starts, begin) - 1
        if index >= 0 and begin < spans[index][1]:
            in_word.setdefault(index, []).append(position)
            continue
        shift = spans[index][3] - spans[index][1] if index >= 0 else 0  # where `begin` lies in source_text
        paired[position] = covering.get(begin + shift, -1)
    for index, positions in in_word.items():
        tokens = word_tokens[index]
        if tokens:
            for k, position in enumerate(positions):
                paired[position] = tokens[k * len(tokens) // len(positions)]
    return paired


def paired_encoder_batch(encoder_tokenizer, llm_tokenizer, texts: Sequence[str], *, max_length: int,
                         split_digits: bool = False, source_texts: Sequence[str] | None = None,
                         spans: Sequence[Sequence[Sequence[int]]] | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(encoder ids, attention mask, paired LLM token per position (-1: none))` of `texts`, padded.

    The encoder reads each text as the model does (`encoder_tokens`: with `split_digits` one position per
    digit, each with its own digit's characters, so every digit pairs with the LLM token of that digit); the
    positions pair with the LLM tokens of `source_texts` (default: the texts themselves) by `paired_llm_tokens`.
    """
    source_texts = texts if source_texts is None else source_texts
    read = [encoder_tokens(encoder_tokenizer, text, max_length=max_length, split_digits=split_digits,
                           with_offsets=True) for text in texts]
    input_ids, attention_mask = pad_ids([ids for ids, _ in read], encoder_tokenizer.pad_token_id or 0)
    llm = llm_tokenizer(list(source_texts), return_offsets_mapping=True, add_special_tokens=False)
    paired = torch.full_like(input_ids, -1)
    for row, (text, (_, offsets)) in enumerate(zip(texts, read)):
        tokens = paired_llm_tokens(text, offsets, source_texts[row], llm.input_ids[row], llm.offset_mapping[row],
                                   spans[row] if spans is not None else ())
        paired[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return input_ids, attention_mask, paired


def token_pairs(model, texts: Sequence[str], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """`(encoder states [N, d_enc], LLM input embeddings [N, d_llm])` of tokens at the same character offset.

    Each encoder token is paired with the LLM token covering its first non-space character; special tokens
    and encoder tokens with no covering LLM token are skipped. The encoder reads the texts as the model does
    (`model.encoder_split_digits`: one position per digit, each paired with its own digit's LLM token).
    """
    require_fast_tokenizers(model)
    embedding = model.llm.get_input_embeddings().weight
    device = embedding.device
    states, targets = [], []
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask, paired = paired_encoder_batch(
            model.encoder_tokenizer, model.llm_tokenizer, list(texts[start : start + batch_size]),
            max_length=model.config.encoder_max_length,
            split_digits=model.config.encoder_split_digits)
        with torch.no_grad():
            hidden = model.encode(input_ids.to(device), attention_mask.to(device))
        found = paired >= 0
        states.append(hidden[found.to(device)])
        targets.append(paired[found])
    if not sum(len(rows) for rows in targets):
        raise LinguaLiftError("warm start: no encoder token could be paired with an LLM token (empty texts?)")
    return torch.cat(states), embedding[torch.cat(targets).to(device)].detach()


def lexical_warm_start(model, texts: Sequence[str], *, steps: int = 300, learning_rate: float = 1e-3,
                       batch_size: int = 4096, seed: int = 0) -> dict:
    """Fit `model.alignment` (all but its begin/end vectors) so encoder states map onto LLM token embeddings.

    Returns the fit's statistics: number of token pairs, final MSE, and how often the nearest LLM embedding
    (dot product) of a mapped state is its paired token.
    """
    alignment = model.alignment
    states, targets = token_pairs(model, texts)
    states, targets = states.to(model.alignment_dtype), targets.to(model.alignment_dtype)
    boundary = {id(p) for p in (alignment.begin, alignment.end) if p is not None}
    parameters = [p for p in alignment.parameters() if id(p) not in boundary]
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)

    def mapped(rows):
        return alignment.map_states(states[rows])

    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(0, len(states), (min(batch_size, len(states)),), generator=generator)
            loss = torch.nn.functional.mse_loss(mapped(rows), targets[rows])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        everything = torch.arange(len(states))
        predicted = mapped(everything)
        vocabulary = model.llm.get_input_embeddings().weight.to(predicted.dtype)
        hits = sum(int((vocabulary[(chunk @ vocabulary.T).argmax(-1)] == paired).all(-1).sum())
                   for chunk, paired in zip(predicted.split(4096), targets.split(4096)))
        stats = {
            "token_pairs": len(states),
            "mse": float(torch.nn.functional.mse_loss(predicted, targets)),
            "nearest_is_paired_token": hits / len(states),
        }
    logger.info("lexical warm start on %d texts: %s", len(texts), stats)
    return stats
