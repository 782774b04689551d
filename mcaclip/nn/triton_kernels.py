"""Triton kernels for the GPU fast path of the torch backend (optional: ``--triton-masks``).

:func:`fused_mask_head` computes a PRE mask head, ``m = sigmoid(w2 . relu(W1 f + b1 [+ A e_t]) +
b2)``, in one pass over the features: each program takes a block of pixels of the NHWC feature
map, multiplies it with W1 on the tensor cores (the 1x1 convolution), and applies the bias,
ReLU, the hidden -> 1 reduction and the sigmoid in registers. The unfused head reads the features,
writes a [B, hidden, H, W] map, and reads and writes it again for the ReLU and once more for the
second convolution: at 1024 px about 0.98 GB per edit against 0.27 GB fused (an estimate; not
yet measured on a GPU).

Triton ships with PyTorch's CUDA wheels and is imported only by :func:`load` (when the switch
is turned on). On a
machine without a GPU the kernel runs in Triton's interpreter when ``TRITON_INTERPRET=1`` is set
before Triton is imported (how the tests check it on the CPU).
"""

from __future__ import annotations

import contextlib
import os

import torch

from mcaclip.errors import ConfigError

MIN_DOT = 16  # tl.dot needs every block dimension to be at least 16
_KERNEL = None  # the jitted kernel, built by load() (outside any torch.compile trace)
_INTERPRET = False  # Triton's CPU interpreter was asked for when load() ran


def _dot_width(n: int) -> int:
    """``n`` rounded up to a power of two of at least 16 (what ``tl.dot`` takes)."""
    return max(MIN_DOT, 1 << (n - 1).bit_length())


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
    def triton_mask_head(
        f_ptr,  # features [B, C, H, W], NHWC: pixel p's channels at p * C
        w1_ptr,  # [C, hidden], the feature dtype (conv1's weight, transposed)
        b1_ptr,  # [hidden] float32
        term_ptr,  # [B * prompts, hidden]: the text term per output sample (with HAS_TERM)
        w2_ptr,  # [hidden] float32
        b2_ptr,  # [1] float32
        out_ptr,  # [B * prompts * H * W], the feature dtype
        n_out,
        hw,  # pixels per sample
        C,
        hidden,
        prompts,  # output samples per feature sample (latent-major)
        HAS_TERM: tl.constexpr,
        HIDDEN: tl.constexpr,  # hidden rounded up to a power of two >= 16 (masked beyond)
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        # int64 offsets: a batch of big maps passes 2**31 elements
        rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        row_ok = rows < n_out
        sample = rows // hw
        src = (sample // prompts) * hw + rows % hw  # the feature pixel this output reads
        hid = tl.arange(0, HIDDEN)
        hid_ok = hid < hidden
        acc = tl.zeros((BLOCK_P, HIDDEN), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            col_ok = cols < C
            f = tl.load(
                f_ptr + src[:, None] * C + cols[None, :],
                mask=row_ok[:, None] & col_ok[None, :],
                other=0.0,
            )
            w = tl.load(
                w1_ptr + cols[:, None] * hidden + hid[None, :],
                mask=col_ok[:, None] & hid_ok[None, :],
                other=0.0,
            )
            acc += tl.dot(f, w)
        h = acc + tl.load(b1_ptr + hid, mask=hid_ok, other=0.0)[None, :]
        if HAS_TERM:
            term = tl.load(
                term_ptr + sample[:, None] * hidden + hid[None, :],
                mask=row_ok[:, None] & hid_ok[None, :],
                other=0.0,
            )
            h += term.to(tl.float32)
        h = tl.maximum(h, 0.0)
        w2 = tl.load(w2_ptr + hid, mask=hid_ok, other=0.0)  # zero beyond hidden
        logit = tl.sum(h * w2[None, :], axis=1) + tl.load(b2_ptr)
        m = 1.0 / (1.0 + tl.exp(-logit))
        tl.store(out_ptr + rows, m.to(out_ptr.dtype.element_ty), mask=row_ok)

    return triton_mask_head


def prepare(conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d, dtype: torch.dtype) -> tuple:
    """A mask head's weights as the kernel reads them, computed once (:func:`triton_masks`
    calls it after the module's last cast): W1 transposed [C, hidden] in ``dtype``, b1, w2
    [hidden] and b2 [1] in float32."""
    hidden, c = conv1.weight.shape[:2]
    with torch.no_grad():
        return (
            conv1.weight.detach().reshape(hidden, c).t().contiguous().to(dtype),
            conv1.bias.detach().float().contiguous(),
            conv2.weight.detach().reshape(hidden).float().contiguous(),
            conv2.bias.detach().float().reshape(1).contiguous(),
        )


def fused_mask_head(
    feature: torch.Tensor,
    weights: tuple,
    text_term: torch.Tensor | None = None,
    prompts: int = 1,
) -> torch.Tensor:
    """feature [B, C, H, W] (see :func:`usable`), the weights from :func:`prepare`, an
    optional text term [B * prompts, hidden] -> mask [B * prompts, 1, H, W] in the feature's
    dtype (accumulated in float32); output sample ``i`` reads feature sample ``i // prompts``
    (latent-major), so the features are not repeated per prompt."""
    w1t, b1, w2, b2 = weights
    b, c, h, w = feature.shape
    hidden = b1.shape[0]
    out = torch.empty((b * prompts, 1, h, w), dtype=feature.dtype, device=feature.device)
    n = out.numel()
    block_p = 128
    block_c = min(64, _dot_width(c))
    term = b1 if text_term is None else text_term.contiguous()
    kernel = _KERNEL if _KERNEL is not None else load()
    guard = (
        torch.cuda.device(feature.device)
        if feature.is_cuda and not torch.compiler.is_compiling()
        else contextlib.nullcontext()
    )
    with guard:  # a launch goes to the current device, which may not be the feature's
        kernel[(triton_cdiv(n, block_p),)](
            feature,
            w1t,
            b1,
            term,
            w2,
            b2,
            out,
            n,
            h * w,
            c,
            hidden,
            prompts,
            HAS_TERM=text_term is not None,
            HIDDEN=_dot_width(hidden),
            BLOCK_P=block_p,
            BLOCK_C=block_c,
        )
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
