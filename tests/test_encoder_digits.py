"""`encoder_split_digits`: one encoder position per digit, whatever the encoder's tokenizer merges; off by default."""

from __future__ import annotations

import pytest
from helpers import tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from lingualift.data.collate import BridgeCollator, split_digit_pieces
from lingualift.model.modeling import LinguaLiftConfig, LinguaLiftModel
from lingualift.train.config import config_from_dict

BENGALI = "০১২৩৪৫৬৭৮৯"


def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style (XLM-R / e5) vocabulary that merges digits like e5-small: `▁1,0` `50`, `▁১২` `৫`."""
    merged = ["▁1,0", "50", "▁39", "▁65", "▁১২", "▁12", "▁ml", "▁and", "▁taka"]
    singles = ["▁", ",", "."] + [p + d for d in "0123456789" + BENGALI for p in ("", "▁")]
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
