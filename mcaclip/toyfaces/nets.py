"""Small networks of the toy world: attribute probes, face parser and identity network.

They take images [B, 3, H, W] in [-1, 1] at any size (resized to 64 px inside) and have the
interfaces of the real networks they stand in for: the parser returns per-pixel class logits
(label 0 = background, like BiSeNet), the identity network unit embeddings (like ArcFace).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.toyfaces.attributes import CHOICES, LABELS

WORK_SIZE = 64


def _to_work_size(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] != WORK_SIZE:
        x = F.interpolate(x, size=WORK_SIZE, mode="bilinear", align_corners=False, antialias=True)
    return x


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 2, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class Encoder(nn.Sequential):
    """64 px -> [B, width * 4, 8, 8]."""

    def __init__(self, width: int = 32):
        super().__init__(_block(3, width), _block(width, width * 2), _block(width * 2, width * 4))


class AttributeProbe(nn.Module):
    """Predicts every attribute of a toy face: logits [B, sum of class counts]."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.encoder = Encoder(width)
        # position-aware head: which colour belongs to which part depends on where it is
        self.head = nn.Sequential(
            nn.Conv2d(width * 4, 32, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, sum(len(v) for v in CHOICES.values())),
        )
        self.sizes = [len(v) for v in CHOICES.values()]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(_to_work_size(images)))

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(logits, self.sizes, dim=1))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class index per attribute [B, n_attributes] (CHOICES order)."""
        return torch.stack([part.argmax(1) for part in self.split(self(images))], dim=1)


class ToyParser(nn.Module):
    """Segmentation into :data:`LABELS` (0 = background): logits [B, K, H, W] at input size."""

    def __init__(self, width: int = 24):
        super().__init__()
        k = len(LABELS)
        self.down1 = _block(3, width)  # 32
        self.down2 = _block(width, width * 2)  # 16
        self.up2 = nn.Sequential(
            nn.Conv2d(width * 3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.up1 = nn.Sequential(
            nn.Conv2d(width + 3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.out = nn.Conv2d(width, k, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        x0 = _to_work_size(images)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        y = F.interpolate(x2, scale_factor=2, mode="bilinear", align_corners=False)
        y = self.up2(torch.cat([y, x1], 1))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = self.out(self.up1(torch.cat([y, x0], 1)))
        if (h, w) != y.shape[-2:]:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y


class ToyIdentity(nn.Module):
    """Identity embedding (unit norm) [B, dim]: trained to tell the 12 identities apart."""

    def __init__(self, width: int = 32, dim: int = 64, classes: int = 12):
        super().__init__()
        self.encoder = Encoder(width)
        self.embed = nn.Linear(width * 4, dim)
        self.classes = nn.Parameter(torch.randn(classes, dim) * 0.1)  # cosine classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(self.encoder(_to_work_size(images)).mean((2, 3))), dim=-1)

    def logits(self, images: torch.Tensor, scale: float = 16.0) -> torch.Tensor:
        return scale * self(images) @ F.normalize(self.classes, dim=-1).t()
