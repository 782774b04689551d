"""BiSeNet face parser (zllrunning/face-parsing.PyTorch), 19 classes, label 0 = background.

Parameter names follow ``79999_iter.pth``. Unlike the reference code, constructing it downloads
nothing: the ResNet-18 context path starts random and the weights come from the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.nn.weights import load_state_strict, safe_torch_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan)
        self.downsample = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chan, out_chan, 1, stride, bias=False), nn.BatchNorm2d(out_chan)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _layer(in_chan: int, out_chan: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_chan, out_chan, stride), BasicBlock(out_chan, out_chan, 1))


class Resnet18(nn.Module):
    def __init__(self, w: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(w, w, 1)
        self.layer2 = _layer(w, 2 * w, 2)
        self.layer3 = _layer(2 * w, 4 * w, 2)
        self.layer4 = _layer(4 * w, 8 * w, 2)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self, w: int = 64):
        super().__init__()
        c = 2 * w
        self.resnet = Resnet18(w)
        self.arm16 = AttentionRefinement(4 * w, c)
        self.arm32 = AttentionRefinement(8 * w, c)
        self.conv_head32 = ConvBNReLU(c, c)
        self.conv_head16 = ConvBNReLU(c, c)
        self.conv_avg = ConvBNReLU(8 * w, c, 1, 1, 0)

    def forward(self, x: torch.Tensor):
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        feat32 = self.arm32(feat32) + F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32, feat16.shape[2:], mode="nearest"))
        feat16 = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusion(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_chan: int, mid_chan: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] -> class logits [B, n_classes, H, W]."""

    def __init__(
        self,
        n_classes: int = 19,  # CelebAMask-HQ classes; 0 is background
        width: int = 64,  # ResNet-18 base width (64 in 79999_iter.pth)
        input_size: int | None = 512,  # resize to this before parsing (None: as given)
    ):
        super().__init__()
        self.input_size = input_size
        self.cp = ContextPath(width)
        self.ffm = FeatureFusion(4 * width, 4 * width)
        self.conv_out = BiSeNetOutput(4 * width, 4 * width, n_classes)
        self.conv_out16 = BiSeNetOutput(2 * width, width, n_classes)
        self.conv_out32 = BiSeNetOutput(2 * width, width, n_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[2:]
        x = (images.clamp(-1, 1) + 1) / 2
        if self.input_size is not None and (h, w) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        feat8, feat_cp8, _ = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, feat_cp8))
        return F.interpolate(logits, (h, w), mode="bilinear", align_corners=True)

    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """Labels [B, H, W] (int64)."""
        return self.forward(images).argmax(1)

    @classmethod
    def from_file(cls, path: str | Path) -> BiSeNet:
        """zllrunning's ``79999_iter.pth``, frozen, in eval mode."""
        net = cls()
        load_state_strict(net, safe_torch_load(path), f"face-parser weights {path}")
        return net.eval().requires_grad_(False)


def small_bisenet() -> BiSeNet:
    """A random stand-in of the same code for tests on tiny presets."""
    return BiSeNet(width=8, input_size=None)
