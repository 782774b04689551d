"""Latent mapper M: t_w [B, L, D] -> delta w [B, L, D], StyleCLIP's levels mapper.

Each level group (coarse: layers [0, 4), medium: [4, 8), fine: [8, L) at the default bounds)
has its own MLP; a disabled group outputs zeros, so its layers are never edited.
"""

from __future__ import annotations

import torch
from torch import nn

from mcaclip.config import LEVEL_NAMES
from mcaclip.errors import ShapeError
from mcaclip.nn.stylegan2 import EqualLinear, PixelNorm


class LatentMLP(nn.Sequential):
    """PixelNorm + ``n_layers`` equalized-lr linear layers, each with fused leaky ReLU.

    PixelNorm normalises each vector over its features. (StyleCLIP and CF-CLIP apply it on
    dim 1 of a [B, layers, D] tensor, i.e. across layers; we normalise what the layer reads.)
    """

    def __init__(self, in_dim: int, out_dim: int, n_layers: int = 4, lr_mul: float = 0.01):
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(n_layers):
            layers.append(
                EqualLinear(in_dim if i == 0 else out_dim, out_dim, lr_mul=lr_mul, activation=True)
            )
        super().__init__(*layers)


def level_groups(n_latent: int, bounds: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """{"coarse": (0, b0), "medium": (b0, b1), "fine": (b1, L)} clipped to L, empty ones dropped."""
    edges = [0, min(bounds[0], n_latent), min(bounds[1], n_latent), n_latent]
    return {
        name: (edges[i], edges[i + 1])
        for i, name in enumerate(LEVEL_NAMES)
        if edges[i + 1] > edges[i]
    }


class LevelsMapper(nn.Module):
    def __init__(
        self,
        n_latent: int,  # L, number of W+ vectors
        style_dim: int,  # D
        levels: tuple[str, ...] = LEVEL_NAMES,  # groups that get a mapper; others stay unedited
        level_bounds: tuple[int, int] = (4, 8),  # first layer of medium, first layer of fine
        n_layers: int = 4,  # linear layers per group
        lr_mul: float = 0.01,  # learning-rate multiplier of every layer
    ):
        super().__init__()
        self.n_latent, self.style_dim = n_latent, style_dim
        self.groups = level_groups(n_latent, level_bounds)
        self.mappers = nn.ModuleDict(
            {
                name: LatentMLP(style_dim, style_dim, n_layers, lr_mul)
                for name in self.groups
                if name in levels
            }
        )

    def forward(self, t_w: torch.Tensor) -> torch.Tensor:
        """t_w [B, L, D] -> delta w [B, L, D]."""
        if t_w.ndim != 3 or t_w.shape[1] != self.n_latent or t_w.shape[2] != self.style_dim:
            raise ShapeError(
                f"mapper input must be [B, {self.n_latent}, {self.style_dim}], "
                f"got {list(t_w.shape)}"
            )
        parts = []
        for name, (start, stop) in self.groups.items():
            x = t_w[:, start:stop]
            parts.append(self.mappers[name](x) if name in self.mappers else torch.zeros_like(x))
        return torch.cat(parts, dim=1)
