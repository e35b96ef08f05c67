"""Resolve an encoder or LLM *spec* to a model and its tokenizer.

A spec is one of:
- a preset name (`register_preset`): `tiny-llama`, `tiny-qwen2`, `tiny-bert`, `tiny-t5` (small random
  models built from configs, for tests and smoke runs; registered here), `default` (multilingual-e5-small /
  SmolLM2-135M-Instruct, built from registry packages), `gemma-270m`, `qwen2.5-coder-0.5b` (declared by
  `lingualift.tools.assets`, registered on the first preset lookup);
- a local directory or a hub id (any encoder: T5/mT5/umT5 encoders, BERT/XLM-R/e5, or a decoder-only
  LM used through its last hidden state; any `AutoModelForCausalLM`) — there is no list of allowed names;
- an already-built `PreTrainedModel` (then pass its tokenizer too).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import pickle  # only for its exception: torch.load(weights_only=True) raises pickle.UnpicklingError itself
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTextEncoding,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES

from lingualift.errors import LinguaLiftError

logger = logging.getLogger(__name__)

ENCODER, LLM = "encoder", "llm"
TINY_SEED = 1234


def byte_tokenizer(add_eos: bool) -> PreTrainedTokenizerFast:
    """A 260-token byte-level tokenizer built in memory: no download, every script representable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):  # the alphabet comes back in random order
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if add_eos:  # encoder-style: <s> text </s>
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
        )
    else:  # decoder-style: <s> text
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=4096,
    )


def _tiny_config(model_type: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if model_type in ("llama", "qwen2"):
        return AutoConfig.for_model(
            model_type, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, **common,
        )
    if model_type == "bert":
        return AutoConfig.for_model(
            "bert", hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=4096, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **common,
        )
    if model_type == "t5":
        return AutoConfig.for_model(
            "t5", d_model=48, d_kv=12, d_ff=96, num_layers=2, num_heads=4, dropout_rate=0.0,
            decoder_start_token_id=0, **common,
        )
    raise ValueError(model_type)


def _build_tiny(model_type: str, role: str):
    tokenizer = byte_tokenizer(add_eos=role == ENCODER)
    config = _tiny_config(model_type, len(tokenizer))
    with torch.random.fork_rng(devices=[]):  # deterministic weights, caller's RNG untouched
        torch.manual_seed(TINY_SEED)
        model = model_class(config, role).from_config(config)
    model.name_or_path = f"tiny-{model_type}"
    return model, tokenizer


# name -> role -> builder. A builder returns either a local HF directory or (model, tokenizer).
_PRESETS: dict[str, dict[str, Callable]] = {}
# Modules that own presets, declared in their module-level `PRESETS` (name -> role -> builder). Their builders
# run pip (the asset-backed models), so this low layer imports them on the first preset lookup, never earlier.
PRESET_OWNERS = ("lingualift.tools.assets",)


def register_preset(name: str, **builders: Callable) -> None:
    """Make `name` a spec: `builders` maps a role (`encoder=`, `llm=`) to a function returning a local HF
    directory or `(model, tokenizer)`."""
    unknown = set(builders) - {ENCODER, LLM}
    if unknown or not builders:
        raise ValueError(f"preset {name!r}: roles must be among {ENCODER}, {LLM}; got {sorted(builders)}")
    _PRESETS[name] = dict(builders)


@functools.cache
def _register_owned_presets() -> None:
    for owner in PRESET_OWNERS:
        for name, builders in importlib.import_module(owner).PRESETS.items():
            register_preset(name, **builders)


def presets() -> Mapping[str, dict[str, Callable]]:
    """Every registered preset (name -> role -> builder), the asset-backed ones included; read-only."""
    _register_owned_presets()
    return MappingProxyType(_PRESETS)


@contextlib.contextmanager
def temporary_presets(**presets_by_name: dict[str, Callable]):
    """Presets that exist only inside the block (e.g. the benchmark's random paper-shaped models)."""
    clashes = set(presets_by_name) & set(presets())
    if clashes:
        raise ValueError(f"temporary presets would replace registered ones: {sorted(clashes)}")
    for name, builders in presets_by_name.items():
        register_preset(name, **builders)
    try:
        yield
    finally:
        for name in presets_by_name:
            _PRESETS.pop(name, None)


for _kind, _roles in {"llama": (ENCODER, LLM), "qwen2": (ENCODER, LLM), "bert": (ENCODER,), "t5": (ENCODER,)}.items():
    register_preset(f"tiny-{_kind}", **{role: functools.partial(_build_tiny, _kind, role) for role in _roles})


def model_class(config, role: str):
    """Causal LM for the LLM; for the encoder, the encoder-only class (never mT5's unused decoder)."""
    if role == LLM:
        return AutoModelForCausalLM
    if config.model_type in MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES:
        return AutoModelForTextEncoding
    return AutoModel


def _accepts(auto_class, config, argument: str) -> bool:
    """Whether the concrete model class an Auto class picks for `config` takes `argument` in __init__."""
    concrete = auto_class._model_mapping.get(type(config), None)
    return concrete is not None and argument in inspect.signature(concrete.__init__).parameters


def is_preset(spec) -> bool:
    return isinstance(spec, str) and spec in presets()


def model_location(spec, role: str):
    """What identifies model `spec` in `role` on disk, for a content fingerprint (`checkpoint.path_fingerprint`):
    an asset-backed preset's folder in the cache (built or not: a rebuilt asset is new content), any other
    spec as it is (a path, a hub id, or a tiny random preset, built from a config in code and so its name)."""
    if not is_preset(spec):
        return spec
    return getattr(presets()[spec].get(role), "folder", spec)


def build_preset(name: str, role: str, label: str):
    """Run preset `name`'s builder for `role`: a local HF directory or `(model, tokenizer)`."""
    builders = presets()[name]
    if role not in builders:
        raise LinguaLiftError(f"{label}: preset {name!r} has no {role} (it offers: {', '.join(builders)})")
    return builders[role]()


def load_component(
    spec: str | Path | nn.Module,
    role: str,
    *,
    tokenizer=None,
    dtype: torch.dtype | str | None = None,
    where: str | None = None,
):
    """Return `(model, tokenizer)` for an encoder or LLM spec; `where` names the config field in errors."""
    label = where or f"{role} spec"
    if isinstance(spec, nn.Module):
        if tokenizer is None:
            name = getattr(spec, "name_or_path", "")
            if not name:
                raise LinguaLiftError(f"{label}: a model object was given without its tokenizer; pass tokenizer=")
            tokenizer = load_tokenizer(name, label)
        return spec, tokenizer
    spec = str(spec)
    if is_preset(spec):
        built = build_preset(spec, role, label)
        if isinstance(built, tuple):
            model, built_tokenizer = built
            return _cast(model, dtype), tokenizer or built_tokenizer
        spec = str(built)
    config = _load_config(spec, label)
    kwargs = {"dtype": as_dtype(dtype)} if dtype is not None else {}
    auto_class = model_class(config, role)
    if role == ENCODER and _accepts(auto_class, config, "add_pooling_layer"):
        kwargs["add_pooling_layer"] = False  # only hidden states are used; e5-style checkpoints have no pooler
    try:
        model = auto_class.from_pretrained(spec, **kwargs)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met a pickle that names code, not tensors
        raise LinguaLiftError(f"{label}: {spec!r} holds pickle weights (.bin) that are not plain tensors; refused to "
                              "load them (unpickling could run code). Convert them to safetensors where they come "
                              "from, if you trust that source") from None
    except (OSError, ValueError) as exc:
        raise LinguaLiftError(f"{label}: cannot load {role} weights from {spec!r}: {_first_line(exc)}") from None
    return model, tokenizer or load_tokenizer(spec, label)


def check_spec(spec: str, role: str, where: str) -> None:
    """Whether `spec` names an `role` model, without loading weights or building an asset: a preset offering that
    role, or a local folder / hub id whose config loads (offline: from the cache). `where` names the setting."""
    if is_preset(spec):
        if role not in presets()[spec]:
            raise LinguaLiftError(f"{where}: preset {spec!r} has no {role} (it offers: {', '.join(presets()[spec])})")
        return
    _load_config(str(spec), where)


def _load_config(spec: str, label: str):
    try:
        return AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        names = ", ".join(presets())
        raise LinguaLiftError(
            f"{label}: {spec!r} is not a preset ({names}), a local model directory, or a hub id available "
            f"offline ({_first_line(exc)})"
        ) from None


def load_tokenizer(spec: str, label: str):
    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise LinguaLiftError(f"{label}: cannot load a tokenizer from {spec!r}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_device(device: str | None, flag: str = "--device") -> None:
    """A device this machine has: otherwise model loading fails deep inside torch with a traceback."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise LinguaLiftError(f"{flag} {device}: not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no visible CUDA device"
            raise LinguaLiftError(f"{flag} {device}: CUDA is not available here ({build}); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise LinguaLiftError(f"{flag} {device}: this machine has {count} CUDA device(s), cuda:0 to "
                                  f"cuda:{count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise LinguaLiftError(f"{flag} {device}: Apple MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise LinguaLiftError(f"{flag} {device}: unsupported device type {parsed.type!r}; use cpu or cuda")


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[dtype]
    except KeyError:
        raise LinguaLiftError(f"unknown dtype {dtype!r} (use fp32, bf16 or fp16)") from None


def _cast(model: PreTrainedModel, dtype) -> PreTrainedModel:
    dtype = as_dtype(dtype)
    return model.to(dtype) if dtype is not None else model


def hidden_size(config) -> int:
    """Width of a model's hidden states, across naming conventions (hidden_size, d_model, n_embd)."""
    config = getattr(config, "text_config", None) or config
    for name in ("hidden_size", "d_model", "n_embd"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise LinguaLiftError(f"cannot tell the hidden size of a {type(config).__name__}")
