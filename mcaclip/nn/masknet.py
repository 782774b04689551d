"""Precision Region Editing mask heads: one small CORAL-style head per styled convolution.

Head l reads the *original* stream's feature map of layer l and predicts where that layer may
change: ``m_l = sigmoid(conv1x1(relu(conv1x1(f_l) [+ A_l e_t])))`` in [0, 1], [B, 1, H_l, W_l].
With ``cond_dim`` set, a linear map of the text embedding is added to the hidden activations, so
one mask net serves many prompts (multi-prompt editors); the paper's single-prompt form has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mcaclip.errors import ShapeError


class MaskHead(nn.Module):
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
        self.triton = False  # one fused pass on a GPU; set by triton_masks()
        self.triton_weights: tuple | None = None  # the kernel's copy, made by triton_masks()

    def forward(
        self, feature: torch.Tensor, cond: torch.Tensor | None = None, prompts: int = 1
    ) -> torch.Tensor:
        """feature [B, C, H, W] (cond [B * prompts, D]) -> mask [B * prompts, 1, H, W]; with
        ``prompts`` > 1 each feature sample serves that many consecutive masks."""
        if self.cond is not None and cond is None:
            raise ShapeError("this mask net is text-conditioned: pass the text embedding")
        if self.triton and self.triton_weights is not None:
            from mcaclip.nn import triton_kernels

            training = torch.is_grad_enabled() and self.conv1.weight.requires_grad
            if not training and triton_kernels.usable(feature):  # no autograd through it
                term = None if self.cond is None else self.cond(cond)
                return triton_kernels.fused_mask_head(feature, self.triton_weights, term, prompts)
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


def triton_masks(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every mask head in ``module`` to the fused Triton kernel where it can run
    (:func:`mcaclip.nn.triton_kernels.usable`: FP16 NHWC features on a GPU); elsewhere, and
    where gradients are wanted, the heads keep their PyTorch form. Call it after the module's
    last cast or move: the kernel reads a copy of the weights made here."""
    if on:
        from mcaclip.nn import triton_kernels

        triton_kernels.load()
    for m in module.modules():
        if isinstance(m, MaskHead):
            m.triton = on
            dtype = m.conv1.weight.dtype
            m.triton_weights = triton_kernels.prepare(m.conv1, m.conv2, dtype) if on else None
    return module
