"""`encoder_split_digits`: one encoder position per digit, whatever the encoder's tokenizer merges; off by default;
the lexical warm start and objective pair each digit with the LLM's token of that digit."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config, tiny_model
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from lingualift.data.collate import BridgeCollator, encoder_tokens, split_digit_pieces
from lingualift.errors import LinguaLiftError
from lingualift.model.modeling import LinguaLiftConfig, LinguaLiftModel
from lingualift.model.warmstart import paired_encoder_batch, token_pairs
from lingualift.train.config import config_from_dict
from lingualift.train.loop import Trainer
from lingualift.train.objectives import IGNORE, LexicalAlignment, LexicalCollator, LexicalExample, lexical_examples

BENGALI = "০১২৩৪৫৬৭৮৯"


def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style (XLM-R / e5) vocabulary that merges digits like e5-small: `▁1,0` `50`, `▁১২` `৫`."""
    merged = ["▁1,0", "50", "▁39", "▁65", "▁১২", "▁12", "▁ml", "▁and", "▁taka", "▁$12", "▁$1", ":45"]
    singles = ["▁", ",", ".", "$", ":"] + [p + d for d in "0123456789" + BENGALI for p in ("", "▁")]
    pieces = ["<s>", "<pad>", "</s>", "<unk>"] + merged + singles
    tokenizer = Tokenizer(models.Unigram([(piece, -1.0) for piece in pieces], unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                             special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style vocabulary: `1050` is `10` `##50`; continuation digits are `##0` … `##9`."""
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "10", "##50", "ml"] + list("0123456789") + [f"##{d}" for d in "0123456789"]
    tokenizer = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", unk_token="[UNK]")


def digits_per_position(tokenizer, ids) -> list[int]:
    return [sum(char.isdecimal() for char in piece) for piece in tokenizer.convert_ids_to_tokens(ids)]


def test_the_test_vocabulary_merges_digits_like_e5():
    tokenizer = unigram_tokenizer()
    assert tokenizer.tokenize("1,050 ml and 65 ml") == ["▁1,0", "50", "▁ml", "▁and", "▁65", "▁ml"]
    assert tokenizer.tokenize("১২৫ taka") == ["▁১২", "৫", "▁taka"]


@pytest.mark.parametrize("text, pieces", [
    ("1,050 ml and 65 ml", ["<s>", "▁1", ",", "0", "5", "0", "▁ml", "▁and", "▁6", "5", "▁ml", "</s>"]),
    ("১২৫ taka", ["<s>", "▁১", "২", "৫", "▁taka", "</s>"]),
    ("39 and 7", ["<s>", "▁3", "9", "▁and", "▁7", "</s>"]),
])
def test_split_digit_pieces_gives_one_position_per_digit(text, pieces):
    tokenizer = unigram_tokenizer()
    ids = split_digit_pieces(tokenizer, tokenizer(text).input_ids)
    assert tokenizer.convert_ids_to_tokens(ids) == pieces
    assert max(digits_per_position(tokenizer, ids)) == 1
    assert sum(digits_per_position(tokenizer, ids)) == sum(char.isdecimal() for char in text)


def test_split_digit_pieces_uses_wordpiece_continuations():
    tokenizer = wordpiece_tokenizer()
    ids = split_digit_pieces(tokenizer, tokenizer("1050 ml").input_ids)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "1", "##0", "##5", "##0", "ml", "[SEP]"]


def test_the_collator_splits_digits_only_when_asked():
    encoder, llm = unigram_tokenizer(), wordpiece_tokenizer()
    text = "1,050 ml and 65 ml"
    default = BridgeCollator(encoder, llm)
    assert default.encoder_ids(text) == encoder(text).input_ids  # unchanged by default
    split = BridgeCollator(encoder, llm, encoder_split_digits=True)
    assert max(digits_per_position(encoder, split.encoder_ids(text))) == 1
    short = BridgeCollator(encoder, llm, encoder_split_digits=True, encoder_max_length=4)
    assert encoder.convert_ids_to_tokens(short.encoder_ids(text)) == ["<s>", "▁1", ",", "</s>"]  # cut, closed


def test_the_option_is_off_by_default_and_travels_with_the_checkpoint(tmp_path):
    assert LinguaLiftConfig().encoder_split_digits is False
    assert config_from_dict(tiny_config(tmp_path)).model.encoder_split_digits is False
    model = LinguaLiftModel.from_components("tiny-bert", "tiny-llama", "mlp", seed=0, encoder_split_digits=True)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = LinguaLiftModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.encoder_split_digits is True
    assert BridgeCollator.for_model(loaded).encoder_split_digits is True


def test_the_train_config_option_reaches_the_model(tmp_path):
    from lingualift.train.stages import policy_for
    from lingualift.train.targets import training_target

    config = config_from_dict(tiny_config(tmp_path, model={"encoder": "tiny-bert", "llm": "tiny-llama",
                                                           "alignment": "mlp", "encoder_split_digits": True}))
    target, model = training_target(config, *policy_for(config.method, config.stage, "config"))
    assert model.config.encoder_split_digits is True and target.collator.encoder_split_digits is True


@pytest.mark.assets
def test_e5_small_reads_one_position_per_digit():
    from lingualift.model import components
    from lingualift.tools import assets

    if not assets.provenance(assets.ENCODER):
        pytest.skip("multilingual-e5-small not built (run `lingualift assets`)")
    tokenizer = components.load_tokenizer(str(assets.default_encoder_dir()), "e5")
    collator = BridgeCollator(tokenizer, tokenizer, encoder_split_digits=True)
    for text in ("39 balloons into 7 groups", "1,050 ml and 65 ml", "১২৫ টাকা", "๑๒๕๐ บาท 1250", "४५६ रुपये"):
        assert tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids) != tokenizer.convert_ids_to_tokens(
            collator.encoder_ids(text))  # e5 merges digits in every one of these
        ids = collator.encoder_ids(text)
        assert max(digits_per_position(tokenizer, ids)) == 1
        assert sum(digits_per_position(tokenizer, ids)) == sum(char.isdecimal() for char in text)
        assert tokenizer.unk_token_id not in ids


# The lexical warm start and the lexical objective read the encoder side as the collator does (`encoder_tokens`),
# so with the option on every digit is its own encoder position and pairs with the LLM token of that digit.

NUMBERS = "1,050 ml and 65 ml"


def test_split_digit_pieces_keep_their_own_digits_characters():
    tokenizer = unigram_tokenizer()
    ids, spans = encoder_tokens(tokenizer, NUMBERS, max_length=64, split_digits=True, with_offsets=True)
    assert ids == BridgeCollator(tokenizer, tokenizer, encoder_split_digits=True).encoder_ids(NUMBERS)
    assert list(zip(tokenizer.convert_ids_to_tokens(ids), spans)) == [
        ("<s>", (0, 0)), ("▁1", (0, 1)), (",", (1, 2)), ("0", (2, 3)), ("5", (3, 4)), ("0", (4, 5)),
        ("▁ml", (5, 8)), ("▁and", (8, 12)), ("▁6", (13, 14)), ("5", (14, 15)), ("▁ml", (15, 18)), ("</s>", (0, 0))]
    ids, spans = encoder_tokens(tokenizer, "১২৫ taka", max_length=64, split_digits=True, with_offsets=True)
    assert spans == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 8), (0, 0)]
    ids, spans = encoder_tokens(tokenizer, NUMBERS, max_length=4, split_digits=True, with_offsets=True)
    assert spans == [(0, 0), (0, 1), (1, 2), (0, 0)]  # cut like the ids, closing token kept
    ids, spans = encoder_tokens(tokenizer, "$12 and $1", max_length=64, split_digits=True, with_offsets=True)
    assert list(zip(tokenizer.convert_ids_to_tokens(ids), spans)) == [  # `$` shares its digit's piece: the digit's span
        ("<s>", (0, 0)), ("▁$1", (1, 2)), ("2", (2, 3)), ("▁and", (3, 7)), ("▁$1", (9, 10)), ("</s>", (0, 0))]
    off = tokenizer(NUMBERS, return_offsets_mapping=True)
    assert encoder_tokens(tokenizer, NUMBERS, max_length=64, with_offsets=True) == (
        off.input_ids, [tuple(span) for span in off.offset_mapping])


def _digit_pairs(encoder, llm, ids, paired, text) -> tuple[list[str], list[str]]:
    """(the LLM tokens the encoder's digit positions pair with, the LLM tokens of the text's digits)."""
    pieces = encoder.convert_ids_to_tokens(ids)
    at_digits = [llm.convert_ids_to_tokens(token) for piece, token in zip(pieces, paired)
                 if any(char.isdecimal() for char in piece)]
    llm_ids = llm(text, add_special_tokens=False).input_ids
    return at_digits, [piece for piece in llm.convert_ids_to_tokens(llm_ids) if piece.isdecimal()]


def _paired_digit_tokens(llm, paired) -> list[str]:
    """Every LLM digit token some encoder position pairs with, in order (a digit paired twice shows twice)."""
    return [piece for piece in llm.convert_ids_to_tokens([token for token in paired if token >= 0])
            if piece.isdecimal()]


def test_every_digit_pairs_with_its_own_llm_digit_token():
    encoder, llm = unigram_tokenizer(), tiny_model().llm_tokenizer  # the tiny LLM reads one token per digit
    ids, _, paired = paired_encoder_batch(encoder, llm, [NUMBERS], max_length=64, split_digits=True)
    at_digits, digits = _digit_pairs(encoder, llm, ids[0].tolist(), paired[0].tolist(), NUMBERS)
    assert at_digits == digits == ["1", "0", "5", "0", "6", "5"]
    assert _paired_digit_tokens(llm, paired[0].tolist()) == digits  # and no other position pairs with a digit
    ids, _, paired = paired_encoder_batch(encoder, llm, [NUMBERS, "$12 and 39"], max_length=64, split_digits=True)
    at_digits, digits = _digit_pairs(encoder, llm, ids[1].tolist(), paired[1].tolist(), "$12 and 39")
    assert at_digits == digits == ["1", "2", "3", "9"]
    # ":45" split into ":4" "5", ":4" missing from the vocabulary and tokenised alone: only its "4" pairs with 4.
    ids, _, paired = paired_encoder_batch(encoder, llm, ["10:45"], max_length=64, split_digits=True)
    assert _paired_digit_tokens(llm, paired[0].tolist()) == ["1", "0", "4", "5"]
    ids, _, paired = paired_encoder_batch(encoder, llm, [NUMBERS, "$12 and 39"], max_length=64)
    at_digits, _ = _digit_pairs(encoder, llm, ids[0].tolist(), paired[0].tolist(), NUMBERS)
    assert at_digits == ["1", "5", "6"]  # off: a merged piece pairs with its first character only, as before
    at_digits, _ = _digit_pairs(encoder, llm, ids[1].tolist(), paired[1].tolist(), "$12 and 39")
    assert at_digits == ["$", "3"]


def test_digits_after_a_swapped_word_pair_with_the_english_digits():
    # "Hund" (0-4) replaced "dog" (0-3): the switched text is one character ahead of the English source.
    encoder, llm = unigram_tokenizer(), tiny_model().llm_tokenizer
    example = LexicalExample("Hund 1,050 ml", "dog 1,050 ml", ((0, 4, 0, 3),))
    batch = LexicalCollator(encoder, llm, 64, encoder_split_digits=True)([example])
    at_digits, digits = _digit_pairs(encoder, llm, batch.encoder_input_ids[0].tolist(),
                                     batch.llm_token_ids[0].tolist(), example.source_prompt)
    assert at_digits == digits == ["1", "0", "5", "0"]


def _digit_model(split: bool):
    model = tiny_model()
    model.encoder_tokenizer = unigram_tokenizer()  # merges digits like e5; its ids fit the tiny encoder
    model.config.encoder_split_digits = split
    model.encoder.requires_grad_(False)  # frozen, as in stage 1 (the lexical cache requires it)
    return model


def test_the_warm_start_fits_every_digit_when_split():
    llm = tiny_model().llm_tokenizer
    digit_ids = llm("1050 65", add_special_tokens=False).input_ids
    digit_ids = [token for token in digit_ids if llm.convert_ids_to_tokens(token).isdecimal()]
    pairs = {split: token_pairs(_digit_model(split), [NUMBERS]) for split in (False, True)}
    assert len(pairs[False][0]) == 6 and len(pairs[True][0]) == 10  # 3 more digits of 1,050 and 1 of 65
    embedding = _digit_model(True).llm.get_input_embeddings().weight
    split_targets = pairs[True][1]
    # ▁1 , 0 5 0 ▁ml ▁and ▁6 5 ▁ml: the digit positions 0, 2, 3, 4, 7, 8 are fitted to the digits' embeddings.
    assert torch.equal(split_targets[[0, 2, 3, 4, 7, 8]], embedding[digit_ids])


def test_the_lexical_cache_reads_digits_as_the_model_does():
    records = [{"question": NUMBERS, "answer": "x"}, {"question": "39 and 7", "answer": "x"}]
    for split, expected in ((False, 6 + 3), (True, 10 + 4)):
        objective = LexicalAlignment(_digit_model(split), records, "plain", 2, "test", cache=True)
        cached = torch.cat([example.llm_token_ids for example in objective.examples])
        assert len(cached) == expected
        uncached = LexicalAlignment(_digit_model(split), records, "plain", 2, "test").collate(
            lexical_examples(records, "plain", "test")).llm_token_ids
        assert torch.equal(cached, uncached[uncached != IGNORE])


def test_a_run_cached_without_split_digits_is_not_resumed_with_them(tmp_path):
    config = tiny_config(tmp_path, stage="align")
    config["training"].update(objective="lexical", lexical_cache=True, lexical_batch_size=2, max_steps=2,
                              save_every=1, output_dir=str(tmp_path / "run"))
    Trainer(config_from_dict(config)).train()
    config["model"]["encoder_split_digits"] = True
    config["training"].update(max_steps=3, resume_from_checkpoint="latest")
    with pytest.raises(LinguaLiftError, match="encoder_split_digits"):
        Trainer(config_from_dict(config)).train()
