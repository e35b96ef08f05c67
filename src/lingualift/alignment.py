"""Language alignment layers: encoder hidden states -> soft prompt in the LLM's embedding space.

Every layer maps `(hidden [B, n, d_enc], mask [B, n])` to `(embeds [B, m, d_llm], mask [B, m])`. The
returned sequence may contain padding anywhere (the model packs valid positions contiguously), so a
layer is free to add learned vectors, pool, or resample. Add a new type with `@register_alignment`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lingualift.errors import LinguaLiftError

ALIGNMENT_LAYERS: dict[str, type[nn.Module]] = {}


def register_alignment(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def register(cls: type[nn.Module]) -> type[nn.Module]:
        ALIGNMENT_LAYERS[name] = cls
        return cls

    return register


def build_alignment(name: str, encoder_dim: int, llm_dim: int, **kwargs) -> nn.Module:
    if name not in ALIGNMENT_LAYERS:
        raise LinguaLiftError(f"unknown alignment {name!r} (known: {', '.join(sorted(ALIGNMENT_LAYERS))})")
    return ALIGNMENT_LAYERS[name](encoder_dim, llm_dim, **kwargs)


class _BoundaryVectors(nn.Module):
    """Projected states framed by learned vectors (`begin` optional, `end` always), as in the paper."""

    def __init__(self, llm_dim: int, begin: bool, input_norm: bool, encoder_dim: int, init_std: float):
        super().__init__()
        self.begin = nn.Parameter(torch.randn(llm_dim) * init_std) if begin else None
        self.end = nn.Parameter(torch.randn(llm_dim) * init_std)
        # Optional LayerNorm on encoder states: encoders differ wildly in output scale.
        self.input_norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.project(self.input_norm(hidden))
        batch = projected.shape[0]
        pieces, masks = [projected], [mask]
        ones = mask.new_ones(batch, 1)
        if self.begin is not None:
            pieces.insert(0, self.begin.to(projected.dtype).expand(batch, 1, -1))
            masks.insert(0, ones)
        pieces.append(self.end.to(projected.dtype).expand(batch, 1, -1))
        masks.append(ones)
        return torch.cat(pieces, dim=1), torch.cat(masks, dim=1)


@register_alignment("linear")
class LinearAlignment(_BoundaryVectors):
    """LangBridge: one linear map plus a learned end vector."""

    def __init__(self, encoder_dim: int, llm_dim: int, input_norm: bool = False, init_std: float = 0.02):
        super().__init__(llm_dim, begin=False, input_norm=input_norm, encoder_dim=encoder_dim, init_std=init_std)
        self.proj = nn.Linear(encoder_dim, llm_dim)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


@register_alignment("mlp")
class MLPAlignment(_BoundaryVectors):
    """LinguaLIFT: Linear(d_enc, 2 d_enc) -> GELU -> Linear(2 d_enc, d_llm), plus begin and end vectors."""

    def __init__(self, encoder_dim: int, llm_dim: int, input_norm: bool = False, init_std: float = 0.02,
                 expansion: int = 2):
        super().__init__(llm_dim, begin=True, input_norm=input_norm, encoder_dim=encoder_dim, init_std=init_std)
        self.mlp = nn.Sequential(
            nn.Linear(encoder_dim, expansion * encoder_dim), nn.GELU(), nn.Linear(expansion * encoder_dim, llm_dim)
        )

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)
