"""Triton kernels for the GPU fast path of the torch backend (optional: ``--triton-masks``).

:func:`fused_mask_head` computes a PRE mask head, ``m = sigmoid(w2 . relu(W1 f + b1 [+ A e_t]) +
b2)``, in one pass over the features: each program takes a block of pixels of the NHWC feature
map, multiplies it with W1 on the tensor cores (the 1x1 convolution), and applies the bias,
ReLU, the hidden -> 1 reduction and the sigmoid in registers. The unfused head reads the features,
writes a [B, hidden, H, W] map, and reads and writes it again for the ReLU and once more for the
second convolution: at 1024 px about 0.98 GB per edit against 0.27 GB fused (an estimate; not
yet measured on a GPU).

Triton ships with PyTorch's CUDA wheels and is imported only when a kernel first runs. On a
machine without a GPU the kernel runs in Triton's interpreter when ``TRITON_INTERPRET=1`` is set
before Triton is imported (how the tests check it on the CPU).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from mcaclip.errors import ConfigError

MIN_DOT = 16  # tl.dot needs every block dimension to be at least 16
_KERNEL = None  # the jitted kernel, built by load() (outside any torch.compile trace)
_INTERPRET = False  # Triton's CPU interpreter was asked for when load() ran


def usable(feature: torch.Tensor) -> bool:
    """Whether :func:`fused_mask_head` can run on ``feature`` [B, C, H, W]: the kernel loaded
    (:func:`load`), FP16, NHWC-contiguous, on a CUDA GPU (or the interpreter)."""
    return (
        _KERNEL is not None
        and (feature.is_cuda or _INTERPRET)
        and feature.dim() == 4
        and feature.dtype == torch.float16  # FP32 would run its products in TF32
        and feature.is_contiguous(memory_format=torch.channels_last)
    )


def load():
    """Import Triton and build the kernel (once). Called when the switch is turned on, so that
    ``torch.compile`` later sees a ready kernel, not its construction."""
    global _KERNEL, _INTERPRET
    if _KERNEL is None:
        try:
            _KERNEL = _build()
        except ImportError:
            raise ConfigError(
                "--triton-masks needs Triton, which comes with PyTorch's CUDA wheels "
                "(pip install triton)"
            ) from None
        _INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
    return _KERNEL


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def mask_head(
        f_ptr,  # features, NHWC: pixel p's channels at p * C
        w1_ptr,  # [C, HIDDEN], the feature dtype
        bias_ptr,  # [rows of bias, HIDDEN] float32: b1 (+ the text term per sample)
        w2_ptr,  # [HIDDEN] float32
        b2_ptr,  # [1] float32
        out_ptr,  # [pixels], the feature dtype
        n_pixels,
        hw,  # pixels per sample
        C,
        bias_stride,  # HIDDEN with a per-sample bias, 0 with one bias for all
        HIDDEN: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        row_ok = rows < n_pixels
        hid = tl.arange(0, HIDDEN)
        acc = tl.zeros((BLOCK_P, HIDDEN), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            col_ok = cols < C
            f = tl.load(
                f_ptr + rows[:, None] * C + cols[None, :],
                mask=row_ok[:, None] & col_ok[None, :],
                other=0.0,
            )
            w = tl.load(
                w1_ptr + cols[:, None] * HIDDEN + hid[None, :], mask=col_ok[:, None], other=0.0
            )
            acc += tl.dot(f, w)
        sample = rows // hw
        bias = tl.load(
            bias_ptr + sample[:, None] * bias_stride + hid[None, :], mask=row_ok[:, None], other=0.0
        )
        h = tl.maximum(acc + bias, 0.0)
        w2 = tl.load(w2_ptr + hid)
        logit = tl.sum(h * w2[None, :], axis=1) + tl.load(b2_ptr)
        m = 1.0 / (1.0 + tl.exp(-logit))
        tl.store(out_ptr + rows, m.to(out_ptr.dtype.element_ty), mask=row_ok)

    return mask_head


def fused_mask_head(
    feature: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    text_term: torch.Tensor | None = None,
) -> torch.Tensor:
    """feature [B, C, H, W] (NHWC-contiguous, see :func:`usable`), conv1 weight [hidden, C, 1, 1]
    and bias [hidden], conv2 weight [1, hidden, 1, 1] and bias [1], optional per-sample hidden
    term [B, hidden] -> mask [B, 1, H, W] in the feature's dtype (accumulated in float32). A
    hidden width that is not a power of two >= 16 is padded with zero channels."""
    b, c, h, w = feature.shape
    hidden = w1.shape[0]
    weight = w1.reshape(hidden, c).t().to(feature.dtype)  # [C, hidden]
    bias = b1.float().reshape(1, hidden)
    if text_term is not None:
        bias = bias + text_term.float()  # [B, hidden]
    w2 = w2.float().reshape(1, hidden)
    # tl.dot wants a power of two >= 16: zero columns add relu(0) * 0 = 0 to the logit
    padded = max(MIN_DOT, 1 << (hidden - 1).bit_length())
    if padded != hidden:
        weight, bias, w2 = (F.pad(t, (0, padded - hidden)) for t in (weight, bias, w2))
    out = torch.empty((b, 1, h, w), dtype=feature.dtype, device=feature.device)
    n = b * h * w
    block_p = 128
    block_c = min(64, max(MIN_DOT, 1 << (c - 1).bit_length()))
    kernel = _KERNEL if _KERNEL is not None else load()
    kernel[(triton_cdiv(n, block_p),)](
        feature,
        weight.contiguous(),
        bias.contiguous(),
        w2.reshape(padded).contiguous(),
        b2.float().reshape(1),
        out,
        n,
        h * w,
        c,
        padded if text_term is not None else 0,
        HIDDEN=padded,
        BLOCK_P=block_p,
        BLOCK_C=block_c,
    )
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
