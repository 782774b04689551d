"""ArcFace IR-SE50 (TreB1eN's ``Backbone(50, 0.6, 'ir_se')``), the identity network R.

Parameter names follow ``model_ir_se50.pth`` so it loads with strict key checking. Widths and
block counts are arguments so that tests can build a small random stand-in of the same shape of
code; any module mapping [B, 3, 112, 112] in [-1, 1] to unit vectors can stand in for R.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.nn.weights import load_state_strict, safe_torch_load

IRSE50_UNITS = (3, 4, 14, 3)
IRSE50_WIDTHS = (64, 128, 256, 512)


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16 if depth >= 64 else max(depth // 4, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE(nn.Module):
    """IR-SE backbone: [B, 3, 112, 112] -> L2-normalised embedding [B, 512]."""

    def __init__(
        self,
        units: Sequence[int] = IRSE50_UNITS,  # bottlenecks per stage (IR-SE50: 3, 4, 14, 3)
        widths: Sequence[int] = IRSE50_WIDTHS,  # channels per stage
        embed_dim: int = 512,  # embedding width
    ):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        blocks, in_channel = [], widths[0]
        for n, depth in zip(units, widths):
            blocks.append(BottleneckIRSE(in_channel, depth, 2))
            blocks += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
            in_channel = depth
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(widths[-1]),
            nn.Dropout(0.6),
            nn.Flatten(),
            nn.Linear(widths[-1] * 7 * 7, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IR-SE takes 112x112 faces, got {tuple(x.shape[-2:])}")
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=-1)

    @classmethod
    def from_file(cls, path: str | Path) -> IRSE:
        """TreB1eN's ``model_ir_se50.pth`` (a plain state dict), frozen, in eval mode."""
        net = cls()
        load_state_strict(net, safe_torch_load(path), f"ArcFace weights {path}")
        return net.eval().requires_grad_(False)


def small_irse() -> IRSE:
    """A random stand-in of the same code for tests on tiny presets (about 60 k parameters)."""
    return IRSE(units=(1, 1, 1, 1), widths=(8, 16, 16, 32), embed_dim=64)
