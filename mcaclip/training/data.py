"""Training latents: e4e inversions from a file, or samples of the mapping network."""

from __future__ import annotations

from pathlib import Path

import torch

from mcaclip.errors import McaError, ShapeError
from mcaclip.nn.weights import safe_torch_load


class LatentSource:
    """W+ latents [n, L, D] for training; ``validation`` is a fixed held-out set.

    From a file (e4e's ``latents.pt`` [N, L, D]): the last ``val_size`` latents are held out.
    From the mapping network: "w" repeats one truncated w on every layer; "w+" maps an
    independent z for every layer (truncated), a harder, more varied training distribution.
    """

    def __init__(self, generator, path=None, space="w+", truncation=0.7, val_size=4):
        if space not in ("w", "w+"):
            raise McaError(f"--latent-space {space!r}: choose w or w+")
        self.generator, self.space, self.truncation = generator, space, truncation
        L, D = generator.n_latent, generator.style_dim
        self.data = None
        if path is not None:
            data = safe_torch_load(path)
            if isinstance(data, dict) and len(data) == 1:
                data = next(iter(data.values()))
            if not isinstance(data, torch.Tensor) or data.ndim != 3 or data.shape[1:] != (L, D):
                shape = list(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
                raise ShapeError(f"{path}: latents must be [N, {L}, {D}], got {shape}")
            if not torch.isfinite(data).all():
                raise McaError(f"{Path(path)}: latents hold NaN/Inf values; fix the file")
            if len(data) <= val_size:
                raise McaError(f"{path}: {len(data)} latents, need more than --val-size {val_size}")
            self.data = data.float()[:-val_size] if val_size else data.float()
            self.validation = data.float()[len(data) - val_size :]
        else:
            self.validation = self.sample(val_size, torch.Generator().manual_seed(12345))

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator) -> torch.Tensor:
        if self.data is not None:
            return self.data[torch.randint(len(self.data), (n,), generator=rng)]
        g = self.generator
        L, D = g.n_latent, g.style_dim
        device = g.latent_avg.device
        if self.space == "w":
            z = torch.randn(n, D, generator=rng).to(device)
            return g.broadcast(g.truncate(g.mapping(z), self.truncation)).clone()
        z = torch.randn(n * L, D, generator=rng).to(device)
        return g.truncate(g.mapping(z), self.truncation).reshape(n, L, D)
