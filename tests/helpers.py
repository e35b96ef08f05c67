"""Builders shared by the core tests: tiny models with input-sensitive outputs, small data files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lingualift.model.modeling import LinguaLiftModel

QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many?",
    "What is 12 times 7?",
    "A train goes 60 km in 1 hour. How far in 3 hours?",
    "Sara had 10 sweets and ate 2.",
    "If x = 5, what is 2x + 1?",
    "Count the legs of 4 dogs.",
]
ANSWERS = ["3 + 4 = 7. #### 7", "12 * 7 = 84. #### 84", "60 * 3 = 180. #### 180", "10 - 2 = 8. #### 8",
           "2 * 5 + 1 = 11. #### 11", "4 * 4 = 16. #### 16"]


def sharpen(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Re-draw weights with a large std so a random tiny model's outputs depend on its input."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def tiny_model(alignment: str = "mlp", llm_sees_query: bool = False, encoder: str = "tiny-bert",
               llm: str = "tiny-llama") -> LinguaLiftModel:
    model = LinguaLiftModel.from_components(encoder, llm, alignment, seed=0, llm_sees_query=llm_sees_query,
                                            prompt_template="plain")
    sharpen(model.llm, seed=1, std=0.15)
    sharpen(model.alignment, seed=2, std=0.5)
    return model.eval()


def write_instructions(path: Path, repeat: int = 2) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(repeat):
            for question, answer in zip(QUESTIONS, ANSWERS):
                handle.write(json.dumps({"question": question, "answer": answer}) + "\n")
    return path


def tiny_config(tmp_path: Path, method: str = "lingualift", stage: str | None = "align", **sections) -> dict:
    """A config dict for a fast run on tiny models; `sections` update model/data/training."""
    data = tmp_path / "train.jsonl"
    if not data.exists():
        write_instructions(data)
    config = {
        "method": method,
        "stage": stage,
        "model": {"encoder": "tiny-bert", "llm": "tiny-llama", "alignment": "mlp"},
        "data": {"train": str(data), "prompt_template": "plain", "max_target_length": 32},
        "training": {"output_dir": str(tmp_path / f"{method}-{stage}"), "batch_size": 4, "max_steps": 2,
                     "log_every": 1, "tensorboard": False},
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


def tiny_causal_lm(kind: str = "llama", seed: int = 1, head_dim: int | None = None):
    """A tiny random causal LM with the `tiny-<kind>` preset's shapes, sharpened so its greedy output depends on
    the prompt; `head_dim` gives it 2 heads of that size (vLLM's CPU kernels take only some head sizes)."""
    from lingualift.model import components

    tokenizer = components.byte_tokenizer(add_eos=False)
    config = components._tiny_config(kind, len(tokenizer))
    if head_dim is not None:
        config.num_attention_heads, config.num_key_value_heads, config.head_dim = 2, 1, head_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = components.AutoModelForCausalLM.from_config(config)
    sharpen(model, seed=seed, std=0.15)
    return model.eval(), tokenizer


def save_tiny_llm(path: Path, kind: str = "llama", seed: int = 1, head_dim: int | None = None) -> Path:
    """`tiny_causal_lm` saved as a transformers folder (what the engine backends convert or load)."""
    model, tokenizer = tiny_causal_lm(kind, seed, head_dim)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bridge_checkpoint(path: Path, lora: bool = False, head_dim: int | None = None) -> Path:
    """A LinguaLIFT checkpoint tiny-bert -> tiny llama (saved next to it as a plain HF folder). Self-contained;
    or, with `lora`, laid out like a LoRA stage-2 run: an adapter with non-zero B matrices (merged outputs differ
    from the base model's) plus references to the frozen parts."""
    base = save_tiny_llm(path.parent / f"{path.name}-base-llm", head_dim=head_dim)
    model = LinguaLiftModel.from_components("tiny-bert", str(base), "mlp", seed=0, prompt_template="plain")
    sharpen(model.alignment, seed=2, std=0.5)
    if lora:
        from peft import LoraConfig, get_peft_model

        model.llm = get_peft_model(model.llm, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        with torch.no_grad():
            generator = torch.Generator().manual_seed(3)
            for name, parameter in model.llm.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(path, include_frozen=not lora)
    return path


def check_stops_and_near_greedy_sampling(hf, fast, questions: list[str], new_tokens: int) -> list[str]:
    """A fast backend against HF: stop strings the outputs really contain cut both alike, and sampling with
    top_p ~ 0 (one token kept) equals HF's greedy output: the sampling path, deterministically. Returns HF's
    greedy outputs."""
    free = hf.generate(questions, max_new_tokens=new_tokens, batch_size=4)
    assert len(set(free)) > 1  # the outputs depend on the prompt, so equality means something
    longest = sorted(free, key=len)[-2:]
    stop = [longest[0][2:4], longest[1][5:7]]
    expected = hf.generate(questions, max_new_tokens=new_tokens, stop=stop, batch_size=4)
    assert any(len(e) < len(f) for e, f in zip(expected, free))  # some output was cut
    assert fast.generate(questions, max_new_tokens=new_tokens, stop=stop, batch_size=4) == expected
    sampled = fast.generate(questions, max_new_tokens=new_tokens, do_sample=True, temperature=0.7, top_p=1e-9)
    assert sampled == free
    return free
