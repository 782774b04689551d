"""Precision Region Editing mask heads: one small CORAL-style head per styled convolution.

Head l reads the *original* stream's feature map of layer l and predicts where that layer may
change: ``m_l = sigmoid(conv1x1(relu(conv1x1(f_l) [+ A_l e_t])))`` in [0, 1], [B, 1, H_l, W_l].
With ``cond_dim`` set, a linear map of the text embedding is added to the hidden activations, so
one mask net serves many prompts (multi-prompt editors); the paper's single-prompt form has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mcaclip.errors import ShapeError


class MaskHead(nn.Module):
    """One layer's mask head, [B, C, H, W] features -> [B, 1, H, W] mask.

    ``fused``: another implementation of the same head (an inference runtime's kernel),
    ``fused(self, feature, cond, prompts)`` with the arguments of :meth:`forward`, returning
    the mask or None where it cannot take the call (this module's PyTorch form then runs).
    None (the default): always this form.
    """

    def __init__(
        self,
        channels: int,  # channels of the feature map it reads
        hidden: int = 32,  # hidden channels
        cond_dim: int | None = None,  # width of the text embedding; None: unconditioned
        init: float = 0.0,  # initial mask value in (0, 1); 0: PyTorch's default init (~0.5)
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, 1, 1)
        self.cond = nn.Linear(cond_dim, hidden) if cond_dim else None
        if init:  # every pixel starts at ``init``; small output weights leave room to learn
            with torch.no_grad():
                self.conv2.weight.mul_(0.1)
                self.conv2.bias.fill_(math.log(init / (1 - init)))
        self.fused: Callable | None = None  # see the class docstring; set by a runtime

    def forward(
        self, feature: torch.Tensor, cond: torch.Tensor | None = None, prompts: int = 1
    ) -> torch.Tensor:
        """feature [B, C, H, W] (cond [B * prompts, D]) -> mask [B * prompts, 1, H, W]; with
        ``prompts`` > 1 each feature sample serves that many consecutive masks."""
        if self.cond is not None and cond is None:
            raise ShapeError("this mask net is text-conditioned: pass the text embedding")
        if self.fused is not None:
            mask = self.fused(self, feature, cond, prompts)
            if mask is not None:
                return mask
        if prompts > 1:
            feature = feature.repeat_interleave(prompts, dim=0)
        h = self.conv1(feature)
        if self.cond is not None:
            h = h + self.cond(cond).to(h.dtype)[:, :, None, None]
        return torch.sigmoid(self.conv2(torch.relu(h)))


class MaskNet(nn.Module):
    def __init__(
        self,
        layer_channels: Sequence[int],  # channels of each styled conv's output, in order
        hidden: int = 32,  # hidden channels of every head
        cond_dim: int | None = None,  # width of the text embedding; None: unconditioned
        init: float = 0.0,  # initial mask value in (0, 1); 0: PyTorch's default init
    ):
        super().__init__()
        self.heads = nn.ModuleList(MaskHead(c, hidden, cond_dim, init) for c in layer_channels)

    @property
    def conditioned(self) -> bool:
        return self.heads[0].cond is not None

    def forward(
        self, features: Sequence[torch.Tensor], cond: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Per-layer features [B, C_l, H_l, W_l] -> per-layer masks [B, 1, H_l, W_l]."""
        if len(features) != len(self.heads):
            raise ShapeError(
                f"mask net expects {len(self.heads)} feature maps, got {len(features)}"
            )
        return [head(f, cond) for head, f in zip(self.heads, features)]
