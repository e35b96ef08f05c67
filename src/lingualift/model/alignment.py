"""Language alignment layers: encoder hidden states -> soft prompt in the LLM's embedding space.

Every layer maps `(hidden [B, n, d_enc], mask [B, n])` to `(embeds [B, m, d_llm], mask [B, m])`. The
returned sequence may contain padding anywhere (the model packs valid positions contiguously), so a
layer is free to add learned vectors, pool, or resample. Add a new type with `@register_alignment`.

`output_scale` multiplies the projected states: with it set to the LLM's embedding RMS (alignment kwarg
`output_scale: embedding_rms`, resolved when the model is built) the layer works in units of the LLM's
own embedding scale, so learning rates and initialisations carry over between LLMs whose embeddings
differ several-fold in size (SmolLM2 ~0.13 per dimension, Qwen2.5-0.5B ~0.017).
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


EMBEDDING_RMS = "embedding_rms"


def resolve_alignment_kwargs(kwargs: dict | None, llm) -> dict:
    """Replace `output_scale: embedding_rms` by the RMS of `llm`'s input embeddings (a number, saved in the config)."""
    kwargs = dict(kwargs or {})
    if kwargs.get("output_scale") == EMBEDDING_RMS:
        weight = llm.get_input_embeddings().weight.detach()
        kwargs["output_scale"] = float(f"{float(weight.float().pow(2).mean().sqrt()):.6g}")
    return kwargs


def build_alignment(name: str, encoder_dim: int, llm_dim: int, **kwargs) -> nn.Module:
    if name not in ALIGNMENT_LAYERS:
        raise LinguaLiftError(f"unknown alignment {name!r} (known: {', '.join(sorted(ALIGNMENT_LAYERS))})")
    return ALIGNMENT_LAYERS[name](encoder_dim, llm_dim, **kwargs)


class _BoundaryVectors(nn.Module):
    """Projected states framed by learned vectors (`begin` optional, `end` always), as in the paper."""

    def __init__(self, llm_dim: int, begin: bool, input_norm: bool, encoder_dim: int, init_std: float,
                 output_scale: float):
        super().__init__()
        if not isinstance(output_scale, (int, float)) or not output_scale > 0:
            raise LinguaLiftError(f"alignment output_scale must be a positive number or 'embedding_rms', got {output_scale!r}")
        self.output_scale = float(output_scale)
        self.begin = nn.Parameter(torch.randn(llm_dim) * init_std) if begin else None
        self.end = nn.Parameter(torch.randn(llm_dim) * init_std)
        # Optional LayerNorm on encoder states: encoders differ wildly in output scale.
        self.input_norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()

    def map_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """Encoder states -> LLM input embeddings, position by position (no boundary vectors)."""
        return self.project(self.input_norm(hidden)) * self.output_scale

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.map_states(hidden)
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

    def __init__(self, encoder_dim: int, llm_dim: int, input_norm: bool = False, init_std: float = 0.02,
                 output_scale: float = 1.0):
        super().__init__(llm_dim, begin=False, input_norm=input_norm, encoder_dim=encoder_dim, init_std=init_std,
                         output_scale=output_scale)
        self.proj = nn.Linear(encoder_dim, llm_dim)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


@register_alignment("mlp")
class MLPAlignment(_BoundaryVectors):
    """LinguaLIFT: Linear(d_enc, 2 d_enc) -> GELU -> Linear(2 d_enc, d_llm), plus begin and end vectors."""

    def __init__(self, encoder_dim: int, llm_dim: int, input_norm: bool = False, init_std: float = 0.02,
                 expansion: int = 2, output_scale: float = 1.0):
        super().__init__(llm_dim, begin=True, input_norm=input_norm, encoder_dim=encoder_dim, init_std=init_std,
                         output_scale=output_scale)
        self.mlp = nn.Sequential(
            nn.Linear(encoder_dim, expansion * encoder_dim), nn.GELU(), nn.Linear(expansion * encoder_dim, llm_dim)
        )

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)
