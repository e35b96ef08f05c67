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
