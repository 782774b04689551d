"""``--triton-masks``: each PRE mask head as one fused Triton kernel
(:func:`mcaclip.runtime.kernels.triton_ops.fused_mask_head`), installed as the head's
``fused`` form.

:func:`triton_masks` gives every :class:`~mcaclip.nn.masknet.MaskHead` of a module a
:class:`FusedMaskHead`: the kernel's copy of the head's weights and the call that runs it where
it can (FP16 NHWC features on a GPU, or Triton's interpreter; no gradients wanted); elsewhere
the call returns None and the head runs its PyTorch form.
"""

from __future__ import annotations

import torch
from torch import nn

from mcaclip.nn.masknet import MaskHead
from mcaclip.runtime.kernels import triton_ops


class FusedMaskHead:
    """A :class:`~mcaclip.nn.masknet.MaskHead`'s ``fused`` form: ``(head, feature [B, C, H, W],
    cond [B * prompts, D] or None, prompts) -> mask [B * prompts, 1, H, W]`` in one kernel,
    each feature sample read once for its ``prompts`` masks; None where the kernel cannot run
    (:func:`mcaclip.runtime.kernels.triton_ops.usable`) or gradients are wanted (no autograd
    through it)."""

    def __init__(self, weights: tuple):
        self.weights = weights  # the head's weights as the kernel reads them (triton_ops.prepare)

    def __call__(self, head: MaskHead, feature: torch.Tensor, cond, prompts: int):
        if torch.is_grad_enabled() and head.conv1.weight.requires_grad:
            return None
        if not triton_ops.usable(feature):
            return None
        term = None if head.cond is None else head.cond(cond)
        return triton_ops.fused_mask_head(feature, self.weights, term, prompts)


def triton_masks(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every mask head in ``module`` to the fused Triton kernel where it can run
    (:func:`mcaclip.runtime.kernels.triton_ops.usable`: FP16 NHWC features on a GPU);
    elsewhere, and where gradients are wanted, the heads keep their PyTorch form. ``on=False``
    removes the fused form. Call it after the module's last cast or move: the kernel reads a
    copy of the weights made here."""
    if on:
        triton_ops.load()
    for m in module.modules():
        if isinstance(m, MaskHead):
            m.fused = None
            if on:
                m.fused = FusedMaskHead(triton_ops.prepare(m.conv1, m.conv2, m.conv1.weight.dtype))
    return module
