"""Generation through llama.cpp (`--backend llamacpp`), behind the same `Generator` interface as the HF path.

The CPU runtime made for these models: integer dot products on quantised weights, one batched decode per
step for every sequence. What stays in torch and how outputs are decoded and trimmed is
`engine.EngineGenerator`'s (the HF path's): a LinguaLIFT checkpoint's rows from the model's own `pack`
(prefix tokens, soft prompt, suffix tokens at contiguous positions) go in through `llama_batch.embd`; a
plain LLM's prompt ids (chat template as the HF path renders it) go in as tokens.

The LLM is converted to GGUF once per model and precision with llama.cpp's own `convert_hf_to_gguf.py`
(from the llama-cpp-python sdist that scripts/llamacpp_env.sh unpacks), after merging a stage-2 LoRA
adapter, and cached under `~/.cache/lingualift/llamacpp/gguf` keyed by the content of what it is made from
(`gguf_sources`): the LLM (stored in the checkpoint or referenced by it) and the LoRA adapter merged into it,
so every stage-1 checkpoint of one LLM shares one file and an LLM changed in place is converted again. The
precision is explicit and part of a run's identity (`dtype`): `f32`, `f16` or `q8_0`. Tokenization is never llama.cpp's: ids
come from the checkpoint's HF tokenizer, so the GGUF's vocabulary only has to have the right size.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lingualift.checkpoint import (ADAPTER_DIR, LLM_DIR, digest, hub_snapshot, is_hub_id, is_lingualift_checkpoint,
                                   path_fingerprint, referenced_parts, replace_directory)
from lingualift.errors import LinguaLiftError
from lingualift.inference.base import (LLAMACPP_BUILD_STAMP, LLAMACPP_DEFAULT_PRECISION, LLAMACPP_PRECISIONS,
                                       check_backend)
from lingualift.inference.engine import (EngineGenerator, hf_sampling_defaults, model_sampling_defaults, plain_llm_dir,
                                         release_llm_body)
from lingualift.model import components
from lingualift.paths import cache_dir

logger = logging.getLogger(__name__)

PRECISIONS, DEFAULT_PRECISION = LLAMACPP_PRECISIONS, LLAMACPP_DEFAULT_PRECISION


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise LinguaLiftError(f"unknown llama.cpp precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def _import_llama_cpp():
    check_backend("llamacpp")
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(logger.isEnabledFor(logging.DEBUG))  # llama.cpp logs every load to stderr otherwise
    return llama_cpp


# ---------------------------------------------------------------------------------------------- conversion
def converter_source() -> Path:
    """llama.cpp's source tree from the llama-cpp-python sdist: $LINGUALIFT_LLAMACPP_SOURCE, else where
    scripts/llamacpp_env.sh unpacked it (its build stamp's third line), else lingualift's cache."""
    import llama_cpp

    explicit = os.environ.get("LINGUALIFT_LLAMACPP_SOURCE")
    stamp = Path(sys.prefix) / LLAMACPP_BUILD_STAMP
    recorded = stamp.read_text(encoding="utf-8").splitlines()[2:3] if stamp.is_file() else []
    if explicit or recorded:
        root = Path(explicit or recorded[0])
    else:
        root = cache_dir("llamacpp", "src") / f"llama_cpp_python-{llama_cpp.__version__}"
    llama_dir = root / "vendor" / "llama.cpp"
    if not (llama_dir / "convert_hf_to_gguf.py").is_file():
        raise LinguaLiftError(f"llama.cpp's converter is missing ({llama_dir / 'convert_hf_to_gguf.py'}): run "
                              "`bash scripts/llamacpp_env.sh`")
    return llama_dir


# Runs llama.cpp's converter with its own gguf-py first on the path. lingualift tokenizes with the HF tokenizer,
# so the GGUF's vocabulary only has to load: a BPE pre-tokenizer the converter does not know (tiny test
# tokenizers, new models) is written as "default", and a BPE vocabulary without merges (a byte-level test
# tokenizer) gets one placeholder merge, without which llama.cpp refuses the file.
_CONVERT = """
import runpy, sys
llama_dir = sys.argv[1]
sys.path[:0] = [llama_dir, llama_dir + "/gguf-py"]
import gguf
from conversion import base
known = base.TextModel.get_vocab_base_pre
def tolerant(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        return "default"
base.TextModel.get_vocab_base_pre = tolerant
load_vocab = gguf.SpecialVocab._load
def load_with_merges(self, path):
    load_vocab(self, path)
    if self.load_merges and not self.merges:
        self.merges = ["\u0120 \u0120"]
gguf.SpecialVocab._load = load_with_merges
sys.argv = [llama_dir + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


GGUF_FILE = "model.gguf"  # inside each cache entry's folder


def convert_to_gguf(hf_dir: Path, out: Path, precision: str, where: str) -> Path:
    """`hf_dir` (a transformers causal-LM folder) -> `out` in `precision`, written whole or not at all.

    The converter writes into a staging folder that becomes `out`'s folder (`checkpoint.replace_directory`), so a
    failed or interrupted conversion leaves nothing, and one whose process was killed is swept by the next
    conversion of the same model."""
    llama_dir = converter_source()
    logger.info("converting %s to GGUF %s (once; cached in %s)", where, precision, out.parent)
    with replace_directory(out.parent) as staging:
        command = [sys.executable, "-c", _CONVERT, str(llama_dir), str(hf_dir), "--outfile", str(staging / out.name),
                   "--outtype", precision]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_LOCAL_GGUF": "1"})
        if result.returncode != 0 or not (staging / out.name).is_file():
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
            raise LinguaLiftError(f"{where}: llama.cpp's converter cannot take this model ({reason}); "
                                  "use --backend hf")
    return out


def _content_identity(fingerprint: dict) -> dict:
    """A `path_fingerprint` without where the files lie: the same weights copied elsewhere are the same model."""
    identity = {key: value for key, value in fingerprint.items() if key not in ("path", "refers_to")}
    for role, part in fingerprint.get("refers_to", {}).items():
        identity[role] = _content_identity(part)
    return identity


def gguf_sources(spec: str | Path) -> dict:
    """The content identity of what the GGUF of `spec` is made from. A LinguaLIFT checkpoint: its LLM (the `llm/`
    folder it stores, else the LLM it refers to; never its encoder or alignment layer) and its LoRA adapter
    (merged into that LLM) if it has one. A plain LLM folder: itself."""
    if not is_lingualift_checkpoint(spec):
        return {"llm": _content_identity(path_fingerprint(spec))}
    path = Path(spec)
    llm = path / LLM_DIR if (path / LLM_DIR).is_dir() else referenced_parts(path)["llm"]
    sources = {"llm": _content_identity(path_fingerprint(llm))}
    if (path / ADAPTER_DIR).is_dir():
        sources["adapter"] = _content_identity(path_fingerprint(path / ADAPTER_DIR))
    return sources


def cached_gguf(spec: str | Path, precision: str) -> Path:
    """Where the GGUF of `spec` in `precision` is cached (it exists once converted)."""
    label = "lingualift" if is_lingualift_checkpoint(spec) else "llm"
    return cache_dir("llamacpp", "gguf") / f"{label}-{digest(gguf_sources(spec), 16)}-{precision}" / GGUF_FILE


# ---------------------------------------------------------------------------------------------- sampling
def _choose_tokens(logits: np.ndarray, history: list[list[int]], *, do_sample: bool, temperature: float,
                   top_p: float, defaults: dict, rng: np.random.Generator) -> np.ndarray:
    """The next token of each row, with the logits processors HF `generate` applies in its order: repetition
    penalty (if the model's generation config sets one), then temperature, top-k, top-p, min-p when sampling."""
    penalty = defaults["repetition_penalty"]
    if penalty != 1.0:
        for row, seen in zip(logits, history):
            if seen:
                ids = np.unique(np.asarray(seen))
                row[ids] = np.where(row[ids] < 0, row[ids] * penalty, row[ids] / penalty)
    if not do_sample:
        return logits.argmax(axis=1)
    scores = logits / max(temperature, 1e-6)
    top_k = defaults["top_k"]
    if top_k and top_k < scores.shape[1]:
        kth = np.partition(scores, -top_k, axis=1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(probs, axis=1)  # ascending, as HF's TopPLogitsWarper
        sorted_probs = np.take_along_axis(probs, order, axis=1)
        drop_sorted = np.cumsum(sorted_probs, axis=1) <= 1 - top_p
        drop_sorted[:, -1] = False  # keep at least one token
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=1)
        probs = np.where(drop, 0.0, probs)
    if defaults["min_p"] > 0:
        probs = np.where(probs < defaults["min_p"] * probs.max(axis=1, keepdims=True), 0.0, probs)
    probs /= probs.sum(axis=1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row in probs])


class _Stops:
    """Stop strings checked on the tail of each sequence's text (HF's `stop_strings`: generation halts once the
    text contains one; `trim_at_stop` cuts it off afterwards on every backend alike)."""

    def __init__(self, tokenizer, stop: Sequence[str] | None):
        self.tokenizer, self.stop = tokenizer, [s for s in stop or () if s]
        self.window = 2 * max((len(s) for s in self.stop), default=0) + 4  # tokens that can hold a stop string

    def hit(self, tokens: list[int]) -> bool:
        if not self.stop:
            return False
        text = self.tokenizer.decode(tokens[-self.window :], skip_special_tokens=True)
        return any(s in text for s in self.stop)


# ---------------------------------------------------------------------------------------------- generator
class LlamaCppGenerator(EngineGenerator):
    """A `Generator` whose decoding runs in llama.cpp (`backend="llamacpp"` of `load_generator`).

    `precision`: f32, f16 or q8_0 (the LLM converted from the checkpoint once, cached).
    `threads`: decoding threads (default: every CPU this process may use). `seed`: sampling.
    """

    backend = "llamacpp"

    def __init__(self, spec: str, *, prompt_template: str | None = None, device: str | None = None,
                 dtype: str | None = None, precision: str = DEFAULT_PRECISION, threads: int | None = None,
                 seed: int = 0):
        check_precision(precision)
        if device not in (None, "cpu"):
            raise LinguaLiftError(f"the llamacpp backend runs on the CPU; got --device {device}")
        if dtype is not None:
            raise LinguaLiftError(f"the llamacpp backend takes --precision ({', '.join(PRECISIONS)}), not --dtype")
        self._llama = _import_llama_cpp()
        super().__init__(spec, prompt_template=prompt_template, device="cpu")
        self.dtype = precision  # run identity: a run is never resumed in another precision
        self.threads = threads or len(os.sched_getaffinity(0))
        self._rng = np.random.default_rng(seed)
        with tempfile.TemporaryDirectory(prefix="llamacpp-", dir=cache_dir("llamacpp")) as scratch:
            gguf = self._prepare(Path(scratch), precision)
        self.gguf_path = gguf
        self._load(gguf)

    # ------------------------------------------------------------------ preparation
    def _prepare(self, scratch: Path, precision: str) -> Path:
        """Torch side as `EngineGenerator` wants it, and the GGUF file of the LLM in `precision`."""
        if is_lingualift_checkpoint(self.spec):
            from lingualift.model.modeling import LinguaLiftModel

            model = LinguaLiftModel.from_pretrained(self.spec, merge_lora=True)  # stage 2: LoRA merged once
            target = cached_gguf(self.spec, precision)  # after loading: a checkpoint without its LLM fails there
            self._defaults = hf_sampling_defaults(model.llm.generation_config)
            if not target.is_file():
                merged = scratch / "llm"
                model.llm.save_pretrained(merged)
                model.llm_tokenizer.save_pretrained(merged)
                convert_to_gguf(merged, target, precision, self.spec)
            release_llm_body(model)
            self._prepare_bridge_side(model)
            return target
        llm_dir = plain_llm_dir(self.spec, scratch)
        if not Path(llm_dir).exists() and is_hub_id(llm_dir):
            llm_dir = hub_snapshot(str(llm_dir))  # the converter reads a local folder
        tokenizer = components.load_tokenizer(str(llm_dir), "--model")
        self._prepare_causal_side(tokenizer)
        self._defaults = model_sampling_defaults(llm_dir)
        target = cached_gguf(llm_dir, precision)
        if not target.is_file():
            if not Path(llm_dir, "config.json").is_file():
                raise LinguaLiftError(f"{self.spec}: not a local transformers model folder; llama.cpp converts "
                                      "a folder with config.json and weights")
            convert_to_gguf(Path(llm_dir), target, precision, self.spec)
        return target

    def _load(self, gguf: Path) -> None:
        llama = self._llama
        llama.llama_backend_init()
        params = llama.llama_model_default_params()
        params.use_mmap = True
        model = llama.llama_model_load_from_file(str(gguf).encode(), params)
        if not model:
            raise LinguaLiftError(f"{gguf}: llama.cpp could not load this GGUF file (delete it to convert again)")
        self._model = model
        self._vocab = llama.llama_model_get_vocab(model)
        self.n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        self.n_embd = llama.llama_model_n_embd(model)
        self.max_positions = llama.llama_model_n_ctx_train(model)
        self._ctx = None
        self._ctx_shape = (0, 0)
        self.eos_token_id = self.tokenizer.eos_token_id

    def _context(self, sequences: int, positions: int):
        """A context holding `sequences` KV streams of `positions` cells each (reused while large enough)."""
        llama = self._llama
        held_sequences, held_positions = self._ctx_shape
        if self._ctx is not None and held_sequences >= sequences and held_positions >= positions:
            llama.llama_memory_clear(llama.llama_get_memory(self._ctx), True)
            return self._ctx
        self._free_context()
        sequences, positions = max(sequences, held_sequences), max(positions, held_positions)
        positions = -(-positions // 256) * 256  # llama.cpp pads each stream to 256 cells
        params = llama.llama_context_default_params()
        params.n_ctx = sequences * positions
        params.n_seq_max = sequences
        params.n_batch = params.n_ubatch = max(512, sequences)
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = False  # one stream per sequence: attention reads only that sequence's cells
        params.no_perf = True
        ctx = llama.llama_init_from_model(self._model, params)
        if not ctx:
            raise LinguaLiftError(f"llama.cpp could not allocate {sequences} x {positions} KV cells; lower --batch-size")
        self._ctx, self._ctx_shape = ctx, (sequences, positions)
        self._n_batch = params.n_batch
        return ctx

    # ------------------------------------------------------------------ decoding
    def generate_token_ids(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0,
                           top_p=1.0, batch_size=64, progress=False, min_new_tokens=0) -> list[list[int]]:
        """New token ids per question: chunks of `batch_size` sequences, each decoded together (one llama.cpp
        decode per step for every unfinished sequence)."""
        if batch_size > 256:
            raise LinguaLiftError(f"the llamacpp backend decodes at most 256 sequences together; got {batch_size}")
        outputs: list[list[int]] = []
        bar = tqdm(total=len(questions), desc="generate", disable=not progress, unit="ex")
        for start in range(0, len(questions), batch_size):
            chunk = list(questions[start : start + batch_size])
            if self.bridge:
                prompts = self.packed_prompts(chunk, batch_size=min(batch_size, 16))
            else:
                prompts = self.prompt_token_ids(chunk)
            outputs.extend(self._decode(prompts, max_new_tokens=max_new_tokens, stop=stop, do_sample=do_sample,
                                        temperature=temperature, top_p=top_p, min_new_tokens=min_new_tokens))
            bar.update(len(chunk))
        bar.close()
        return outputs

    def _decode(self, prompts: list, *, max_new_tokens: int, stop, do_sample: bool, temperature: float,
                top_p: float, min_new_tokens: int = 0) -> list[list[int]]:
        """Decode one chunk together: `prompts` are id lists (tokens in) or `[length, hidden]` tensors
        (embeddings in)."""
        llama = self._llama
        embeddings = bool(prompts) and isinstance(prompts[0], torch.Tensor)
        lengths = [len(p) for p in prompts]
        needed = max(lengths) + max_new_tokens
        if needed > self.max_positions:
            logger.warning("prompt + %d new tokens (%d positions) exceed the model's %d", max_new_tokens, needed,
                           self.max_positions)
        ctx = self._context(len(prompts), needed)
        logits = self._prefill(ctx, prompts, embeddings)
        # What a repetition penalty sees, as in HF: the prompt's ids, none for a prompt given as embeddings.
        history = [[] if embeddings else list(map(int, p)) for p in prompts]
        generated: list[list[int]] = [[] for _ in prompts]
        active = list(range(len(prompts)))
        stops = _Stops(self.tokenizer, stop)
        batch = llama.llama_batch_init(max(len(prompts), 1), 0, 1)
        try:
            for step in range(max_new_tokens):
                if step < min_new_tokens and self.eos_token_id is not None:
                    logits[:, self.eos_token_id] = -np.inf
                chosen = _choose_tokens(logits, [history[i] for i in active], do_sample=do_sample,
                                        temperature=temperature, top_p=top_p, defaults=self._defaults, rng=self._rng)
                still = []
                for index, token in zip(active, chosen.tolist()):
                    if token == self.eos_token_id:
                        continue
                    generated[index].append(token)
                    history[index].append(token)
                    if not stops.hit(generated[index]):
                        still.append(index)
                active = still
                if not active or step == max_new_tokens - 1:
                    break
                for row, index in enumerate(active):
                    batch.token[row] = generated[index][-1]
                    batch.pos[row] = lengths[index] + len(generated[index]) - 1
                    batch.n_seq_id[row] = 1
                    batch.seq_id[row][0] = index
                    batch.logits[row] = 1
                batch.n_tokens = len(active)
                self._run(ctx, batch)
                logits = self._logits(ctx, len(active))
        finally:
            llama.llama_batch_free(batch)
        return generated

    def _prefill(self, ctx, prompts: list, embeddings: bool) -> np.ndarray:
        """Feed every prompt (ids as tokens, packed rows as embeddings; sequence i at positions 0..len-1) in
        batches of up to n_batch positions; returns the logits after each prompt's last position."""
        llama = self._llama
        capacity = self._n_batch
        batch = llama.llama_batch_init(capacity, self.n_embd if embeddings else 0, 1)
        last_logits = np.empty((len(prompts), self.n_vocab), dtype=np.float32)
        try:
            pending: list[tuple[int, int]] = []  # (prompt, batch row) whose logits this batch yields
            filled = 0
            embd = (np.ctypeslib.as_array(batch.embd, shape=(capacity, self.n_embd)) if embeddings else None)
            for index, prompt in enumerate(prompts):
                rows = prompt.float().numpy() if embeddings else np.asarray(prompt, dtype=np.int32)
                for position in range(len(rows)):
                    if filled == capacity:
                        self._flush(ctx, batch, filled, pending, last_logits)
                        pending, filled = [], 0
                    if embeddings:
                        embd[filled] = rows[position]
                    else:
                        batch.token[filled] = int(rows[position])
                    batch.pos[filled] = position
                    batch.n_seq_id[filled] = 1
                    batch.seq_id[filled][0] = index
                    is_last = position == len(rows) - 1
                    batch.logits[filled] = int(is_last)
                    if is_last:
                        pending.append((index, filled))
                    filled += 1
            if filled:
                self._flush(ctx, batch, filled, pending, last_logits)
        finally:
            llama.llama_batch_free(batch)
        return last_logits

    def _flush(self, ctx, batch, filled: int, pending: list[tuple[int, int]], last_logits: np.ndarray) -> None:
        batch.n_tokens = filled
        self._run(ctx, batch)
        if pending:
            rows = self._logits(ctx, len(pending))
            for output_row, (index, _) in enumerate(pending):
                last_logits[index] = rows[output_row]

    def _run(self, ctx, batch) -> None:
        status = self._llama.llama_decode(ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (KV cache full or an invalid batch)")

    def _logits(self, ctx, rows: int) -> np.ndarray:
        """The logits of the last decode's output rows, in batch order (a copy: llama.cpp reuses the buffer)."""
        pointer = self._llama.llama_get_logits(ctx)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab)).copy()

    # ------------------------------------------------------------------ lifetime
    def _free_context(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._llama.llama_free(self._ctx)
            self._ctx = None

    def close(self) -> None:
        """Free the context and the model (also done at garbage collection)."""
        self._free_context()
        if getattr(self, "_model", None) is not None:
            self._llama.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        if getattr(self, "_llama", None) is not None:
            self.close()
