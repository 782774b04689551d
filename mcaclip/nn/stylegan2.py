"""StyleGAN2 generator, parameter-compatible with rosinality/stylegan2-pytorch.

Module and parameter names follow rosinality's ``Generator`` so its ``g_ema`` state dict loads
with strict key checking (after moving ``style.*`` under ``mapping.`` and the rest under
``synthesis.``, :mod:`mcaclip.nn.rosinality`); :meth:`Generator.from_checkpoint` reads their
``.pt`` files and our ``.safetensors`` (:mod:`mcaclip.nn.weights`). The operators are written
for export rather than for training speed:

* modulated convolution in the dynamic-batch form: scale the input activations by the style,
  convolve with the shared weight, multiply the output by the demodulation coefficients. It is
  the same function as rosinality's grouped convolution (``groups=batch``), but no shape in the
  graph depends on the batch size, so ONNX/TensorRT graphs keep a dynamic batch axis;
* up-sampling and blur as zero-insertion + depthwise ``conv2d``: plain ops every exporter knows.

Inference switches change how, not what, is computed (same function up to rounding):
:func:`fold_blur` (one transposed conv per up-sampling conv and its blur), :func:`subpixel`
(that folded conv as a plain conv with four output phases and a pixel shuffle),
:func:`phase_conv` (the up-sampling conv, not folded, as a 2x2 conv with four output phases and a
pixel shuffle, then the blur, or what is left of it after its (1, 1) factor, which the 2x2
phases take: the least multiply-adds of the forward-conv forms),
:func:`fuse_tails` (fewer full-resolution element-wise passes, for uncompiled runs; ToRGB as a
per-sample matrix product), :func:`stencil_blur` (FIR filters as element-wise sums that
``torch.compile`` can fuse) and :func:`freeze_weights` (the weights each conv runs with computed
once instead of on every call). Exported graphs use none of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.config import GeneratorConfig, Preset, load_preset
from mcaclip.errors import CheckpointError, ConfigError, ShapeError
from mcaclip.nn.rosinality import infer_rosinality_config, rosinality_to_ours
from mcaclip.nn.weights import load_state_strict, read_module_file, safe_torch_load, save_module

log = logging.getLogger(__name__)

NOISE_MODES = ("const", "none", "random")
FP16_CLAMP = 256.0  # stylegan2-ada's conv_clamp for FP16 layers


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Bias + leaky ReLU (slope 0.2) + gain sqrt(2), StyleGAN2's ``fused_lrelu``."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.view(shape)
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


def make_kernel(k: Sequence[int]) -> torch.Tensor:
    kernel = torch.tensor(k, dtype=torch.float32)
    kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    pad=(0, 0),
    taps: Sequence[float] | None = None,
) -> torch.Tensor:
    """Zero-insertion up-sampling by ``up``, zero padding ``pad`` on every side, FIR filter.

    Same semantics as NVIDIA's ``upfirdn2d`` for non-negative padding (a true convolution, so
    the kernel is flipped), built from reshape, pad and a depthwise conv2d. With ``taps`` (the
    1-D factor of a separable ``kernel``, flipped) the filter is a sum of shifted slices
    instead: slow in eager mode, but element-wise, so ``torch.compile`` fuses it with its
    neighbours (a convolution is always a kernel of its own).
    """
    _, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(-1, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(-1, channels, height * up, width * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    if taps is not None:
        h, w = x.shape[2] - len(taps) + 1, x.shape[3] - len(taps) + 1
        x = sum(t * x[:, :, j : j + h, :] for j, t in enumerate(taps))
        return sum(t * x[:, :, :, j : j + w] for j, t in enumerate(taps))
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).expand(channels, 1, kh, kw)
    return F.conv2d(x, weight, groups=channels)


class PixelNorm(nn.Module):
    """Normalise each vector to unit root-mean-square over the feature (last) axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # 1e-8 underflows in FP16: a zero vector would give NaN
        return (x32 * torch.rsqrt(torch.mean(x32 * x32, dim=-1, keepdim=True) + 1e-8)).to(x.dtype)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights stored at N(0, 1/lr_mul^2))."""

    def __init__(
        self,
        in_dim: int,  # input features
        out_dim: int,  # output features
        bias_init: float = 0.0,  # initial bias value (1 for style modulation)
        lr_mul: float = 1.0,  # learning-rate multiplier; 0.01 for mapping networks
        activation: bool = False,  # True: fused leaky ReLU with gain sqrt(2)
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation
        self.frozen = False  # weight and bias scaled once (freeze), not on every call

    def freeze(self) -> None:
        """Scale the weight and the bias once (inference: later parameter changes are not
        seen; freeze again): two kernels fewer per call, the same numbers."""
        self.register_buffer("frozen_weight", (self.weight * self.scale).detach(), False)
        self.register_buffer("frozen_bias", (self.bias * self.lr_mul).detach(), False)
        self.frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            weight, bias = self.frozen_weight, self.frozen_bias
        else:
            weight, bias = self.weight * self.scale, self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, weight)
            return F.leaky_relu(out + bias, 0.2) * math.sqrt(2.0)
        return F.linear(x, weight, bias)


def box_quotient(blur_kernel: Sequence[int]) -> tuple[float, ...] | None:
    """The 1-D FIR kernel q with ``blur_kernel`` = q convolved with (1, 1), or None where (1, 1)
    does not divide it (its alternating sum is not zero). Every symmetric kernel of even length
    has that factor: StyleGAN2's (1, 3, 3, 1) is (1, 2, 1) after (1, 1)."""
    q = [float(blur_kernel[0])]
    for k in blur_kernel[1:-1]:
        q.append(float(k) - q[-1])
    return tuple(q) if q[-1] == float(blur_kernel[-1]) else None


def separable_taps(blur_kernel: Sequence[int], gain: float) -> tuple[float, ...]:
    """The flipped 1-D factor of ``make_kernel(blur_kernel) * gain**2``."""
    total = float(sum(blur_kernel))
    return tuple(gain * float(k) / total for k in reversed(blur_kernel))


class Upsample(nn.Module):
    """2x FIR up-sampling of the RGB skip connection."""

    def __init__(self, blur_kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(blur_kernel) * factor**2)
        p = len(blur_kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.taps = separable_taps(blur_kernel, factor)
        self.stencil = False  # set by stencil_blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.taps if self.stencil else None
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, taps=taps)


class Blur(nn.Module):
    def __init__(self, blur_kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1,
                 persistent: bool = True):  # fmt: skip
        super().__init__()
        kernel = make_kernel(blur_kernel) * upsample_factor**2
        self.register_buffer("kernel", kernel, persistent=persistent)
        self.pad = pad
        self.taps = separable_taps(blur_kernel, upsample_factor)
        self.stencil = False  # set by stencil_blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, taps=self.taps if self.stencil else None)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution in the dynamic-batch form (see module docstring)."""

    def __init__(
        self,
        in_channel: int,  # input feature channels
        out_channel: int,  # output feature channels
        kernel_size: int,  # 3 for styled convs, 1 for ToRGB
        style_dim: int,  # width of the style vector w_i
        demodulate: bool = True,  # False for ToRGB
        upsample: bool = False,  # 2x up-sampling by transposed conv + blur
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel, self.out_channel = in_channel, out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.fold_blur = False  # see upsample_weight; set by fold_blur()
        self.subpixel = False  # see phase_weight; set by subpixel(), used with fold_blur
        self.phase_conv = False  # see phase_conv_weight; set by phase_conv(), without fold_blur
        self.fused_tails = False  # ToRGB as a matrix product; set by fuse_tails()
        self.frozen: tuple | None = None  # the switches the frozen weights were made for
        self.demodulate = demodulate
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(
            torch.randn(1, out_channel, in_channel, kernel_size, kernel_size)
        )
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.phases_fit = False  # the folded kernel splits into 3x3 phases (see use_phases)
        self.phase_conv_fits = False  # the 2x2 phase form applies (see use_phase_conv)
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
            pad0, pad1 = self.blur.pad
            if pad0 != pad1:
                raise ValueError(f"blur kernel {blur_kernel}: asymmetric padding {self.blur.pad}")
            # the blur is folded into the transposed conv (see upsample_weight): a full
            # convolution of the two kernels, cropped by what the blur's padding leaves out
            self.crop = len(blur_kernel) - 1 - pad0
            self.phases_fit = self.crop == 2 and kernel_size == 3 and len(blur_kernel) == 4
            # the 2x2 phases have one tap per axis more than the 3x3 transposed conv needs:
            # where the blur has a (1, 1) factor (box_quotient: StyleGAN2's (1, 3, 3, 1) is
            # (1, 1) then (1, 2, 1)) that factor fills it, and the filter after the conv is the
            # rest, 3x3 taps instead of 4x4; elsewhere that tap is zero, its row and column past
            # the transposed conv's output stand in for one of the blur's trailing padding rows
            # (so it needs one), and the filter is the blur. Not in the state dict (derived).
            self.phase_conv_fits = kernel_size == 3 and pad1 >= 1
            rest = box_quotient(blur_kernel) if pad0 >= 1 else None
            self.phase_box = rest is not None
            self.phase_blur = (
                Blur(rest, pad=(pad0 - 1, pad1 - 1), persistent=False)  # x the box's 4: 2**2
                if rest is not None
                else Blur(blur_kernel, pad=(pad0, pad1 - 1), upsample_factor=2, persistent=False)
            )

    def upsample_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """[out, in, k, k] -> the [in, out, k + 3, k + 3] transposed-conv kernel that up-samples
        and blurs in one pass: transposed conv then FIR filter = transposed conv with the two
        kernels convolved (both linear). Saves a depthwise pass over every up-sampled feature
        map (a fifth of a 1024 px edit's GPU time in FP16); exact up to rounding. It costs 4x
        the multiply-adds of the up-sampling convs (a transposed 6x6 kernel), which tensor
        cores absorb and CPUs do not: only the GPU fast path folds."""
        w = weight.transpose(0, 1)  # [in, out, k, k]
        k = self.blur.kernel.to(w.dtype)
        full = F.conv_transpose2d(w.reshape(-1, 1, *w.shape[2:]), k[None, None])
        return full.reshape(*w.shape[:2], *full.shape[2:])

    @staticmethod
    def phase_weight(folded: torch.Tensor) -> torch.Tensor:
        """The folded [in, out, 6, 6] stride-2 transposed-conv kernel (crop 2) -> [4*out, in,
        3, 3]: a plain 3x3 conv (padding 1) on the low-resolution input whose output channel
        (2*ry + rx)*out + o holds output pixels (2m + ry, 2n + rx) of channel o
        (:func:`pixel_shuffle2` puts them in place). Output pixel 2m + r of the transposed conv
        sums input m - t times kernel tap 2t + r + 2 for t in -1..1, i.e. input m + u - 1 times
        tap 4 + r - 2u: the taps r, r + 2, r + 4 flipped. Same multiply-adds as the transposed
        conv, but a forward convolution with 4x the output channels, which GPUs run at a far
        higher rate than the indexed transposed (dgrad) kernels at 32-128 channels."""
        phases = [folded[:, :, ry::2, rx::2].flip(2, 3) for ry in (0, 1) for rx in (0, 1)]
        stacked = torch.stack(phases)  # [4, in, out, 3, 3]
        return stacked.permute(0, 2, 1, 3, 4).reshape(-1, folded.shape[0], 3, 3)

    def box_weight(self, transposed: torch.Tensor) -> torch.Tensor:
        """The [in, out, 3, 3] stride-2 transposed-conv kernel -> the [in, out, 4, 4] one that
        also applies the blur's (1, 1) x (1, 1) factor (where :attr:`phase_box`; a full
        convolution, as :meth:`upsample_weight` folds the whole blur), else unchanged."""
        if not self.phase_box:
            return transposed
        box = transposed.new_ones(1, 1, 2, 2)
        full = F.conv_transpose2d(transposed.reshape(-1, 1, 3, 3), box)
        return full.reshape(*transposed.shape[:2], 4, 4)

    @staticmethod
    def phase_conv_weight(transposed: torch.Tensor) -> torch.Tensor:
        """The [in, out, k, k] stride-2 transposed-conv kernel (k = 3, or 4 with the blur's
        (1, 1) factor folded in, :meth:`box_weight`) -> [4*out, in, 2, 2]: a plain 2x2 conv
        (padding 1) on the low-resolution input whose output channel (2*ry + rx)*out + o holds
        pixels (2a + ry, 2b + rx) of channel o of the transposed conv's [2H + k - 2, 2W + k - 2]
        output (k = 3: plus one zero row and column after it). Output pixel 2a + r sums input
        a + u - 1 times tap r + 2 - 2u for u in 0..1 (at k = 3, tap 3 does not exist: a zero
        tap). 16 taps per four output pixels, every one of them doing work at k = 4 (9 at k =
        3), where the folded phases (:meth:`phase_weight`) have 36; the rest of the blur
        (:attr:`phase_blur`: 3x3 taps after the (1, 1) factor, 4x4 without) then runs as its
        own FIR filter (fused into the tail under torch.compile, or in the Triton epilogue)."""
        cin, cout, k = *transposed.shape[:2], transposed.shape[-1]
        taps = transposed.transpose(0, 1)  # [out, in, k, k]
        zero = taps.new_zeros(cout, cin)
        phases = []
        for ry in (0, 1):
            for rx in (0, 1):
                rows = []
                for u in (0, 1):
                    ky = ry + 2 - 2 * u
                    cols = []
                    for v in (0, 1):
                        kx = rx + 2 - 2 * v
                        cols.append(taps[:, :, ky, kx] if ky < k and kx < k else zero)
                    rows.append(torch.stack(cols, -1))
                phases.append(torch.stack(rows, -2))  # [out, in, 2, 2]
        return torch.cat(phases)

    def conv_weight(self) -> torch.Tensor:
        """The weight this conv runs with, in the parameters' dtype: the scaled [out, in, k, k]
        kernel; for an up-sampling conv the [in, out, k, k] transposed-conv kernel, folded with
        the blur (:meth:`upsample_weight`) under ``fold_blur``, as four phases
        (:meth:`phase_weight`) under ``subpixel`` too; without the fold, as four 2x2 phases
        (:meth:`phase_conv_weight`) under ``phase_conv``."""
        weight = self.weight[0] * self.scale
        if not self.upsample:
            return weight
        if not self.fold_blur:
            transposed = weight.transpose(0, 1).contiguous()
            if self.use_phase_conv:
                return self.phase_conv_weight(self.box_weight(transposed))
            return transposed
        folded = self.upsample_weight(weight)
        return self.phase_weight(folded) if self.use_phases else folded

    @property
    def use_phases(self) -> bool:
        """Sub-pixel form: folded 6x6 kernels with crop 2 only (the (1, 3, 3, 1) blur)."""
        return self.subpixel and self.fold_blur and self.phases_fit

    @property
    def use_phase_conv(self) -> bool:
        """2x2 phase form: up-sampling convs with the blur not folded (a 3x3 kernel, a blur
        with trailing padding: rosinality's and NVIDIA's generators)."""
        return self.phase_conv and not self.fold_blur and self.phase_conv_fits

    @property
    def form(self) -> tuple[bool, bool, bool]:
        """What the conv weight depends on besides the parameters (see :meth:`freeze`)."""
        return self.fold_blur, self.use_phases, self.use_phase_conv

    def demod_weight(self) -> torch.Tensor:
        """[in, out] FP32 sums of squared scaled taps: demodulation is rsqrt(s^2 @ this)."""
        return (self.weight[0] * self.scale).float().square().sum([2, 3]).t()

    def freeze(self, channels_last: bool = False) -> None:
        """Compute the conv weight and the demodulation sums once (inference: later parameter
        changes are not seen; freeze again). ``channels_last``: store the kernel in NHWC order,
        as cuDNN reads it for NHWC activations (else it is re-laid-out on every call)."""
        weight = self.conv_weight().detach()
        if channels_last and weight.shape[-1] > 1:
            weight = weight.contiguous(memory_format=torch.channels_last)
        sq = self.demod_weight().detach() if self.demodulate else None
        self.register_buffer("frozen_weight", weight, persistent=False)
        self.register_buffer("frozen_sq", sq, persistent=False)
        self.frozen = self.form

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(conv weight, FP32 demodulation sums or None): frozen where made for these switches
        (the sums back in FP32 if the module was cast after freezing)."""
        if self.frozen is not None and self.frozen == self.form:
            sq = self.frozen_sq
            return self.frozen_weight, None if sq is None else sq.float()
        return self.conv_weight(), self.demod_weight() if self.demodulate else None

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x [B, in, H, W], style [B, style_dim] -> [B, out, H', W']."""
        out, dcoef = self.modulated(x, style)
        return out if dcoef is None else out * dcoef.to(out.dtype)[:, :, None, None]

    def modulated(
        self, x: torch.Tensor, style: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution before demodulation, and the FP32 demodulation coefficients
        [B, out] (None without demodulation): ``forward`` is their product."""
        s = self.modulation(style)  # [B, in]
        weight, sq = self._weights()
        weight = weight.to(x.dtype)
        if self.fused_tails and self.kernel_size == 1 and not self.upsample and not self.demodulate:
            # ToRGB: a per-sample [out, in] matrix times the [in, H*W] features reads them once;
            # scaling the features first (below) writes and reads a modulated copy. Same sum.
            b, _, h, w = x.shape
            mat = weight[None, :, :, 0, 0] * s.to(x.dtype)[:, None, :]  # [B, out, in]
            return torch.matmul(mat, x.flatten(2)).view(b, self.out_channel, h, w), None
        return self.convolve(x * s.to(x.dtype)[:, :, None, None], s)

    def convolve(
        self, x: torch.Tensor, s: torch.Tensor, shuffle: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`modulated` from the input already scaled by the styles ``s`` [B, in] (the
        modulation's output): the convolution before demodulation, and the demodulation
        coefficients. ``shuffle=False``: the sub-pixel form's four output phases [B, 4*out, H,
        W] as the conv gives them (see :func:`pixel_shuffle2`), and the 2x2 phase form's [B,
        4*out, H + 1, W + 1] before its shuffle and blur, for a kernel that reads them in place
        (:mod:`mcaclip.runtime.kernels.synthesis`)."""
        weight, sq = self._weights()
        out = self.raw_conv(x, shuffle, weight)
        if sq is None:
            return out, None
        # sum_{i,k} (w[o,i,k] s[b,i])^2 = (s^2 @ sum_k w^2 .T)[b, o]
        # in FP32 (a [B, out] matrix, cheap): 1e-8 underflows in FP16
        return out, torch.rsqrt(s.float().square() @ sq + 1e-8)

    def raw_conv(
        self, x: torch.Tensor, shuffle: bool = True, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The convolution of :meth:`convolve` alone, with ``weight`` (default: the module's,
        :meth:`_weights`), without the demodulation coefficients."""
        weight = (self._weights()[0] if weight is None else weight).to(x.dtype)
        if self.use_phases:
            out = F.conv2d(x, weight, padding=1)
            out = pixel_shuffle2(out) if shuffle else out
        elif self.upsample and self.fold_blur:
            out = F.conv_transpose2d(x, weight, stride=2, padding=self.crop)
        elif self.use_phase_conv:  # [B, out, 2H + 2, 2W + 2] (without phase_box: last row and
            out = F.conv2d(x, weight, padding=1)  # column zero), then the rest of the blur
            if shuffle:
                out = self.phase_blur(pixel_shuffle2(out))
        elif self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out


def pixel_shuffle2(x: torch.Tensor) -> torch.Tensor:
    """[B, 4C, H, W] with channel (2*ry + rx)*C + o -> [B, C, 2H, 2W], pixel (2m + ry, 2n + rx)
    of channel o; one copy that keeps the memory format (NHWC stays NHWC, moving whole
    C-vectors)."""
    b, c4, h, w = x.shape
    c = c4 // 4
    phases = x.view(b, 2, 2, c, h, w)  # a view in either memory format
    if x.stride(1) == 1:  # NHWC: build [B, H, 2, W, 2, C] in order
        out = phases.permute(0, 4, 1, 5, 2, 3).reshape(b, 2 * h, 2 * w, c)
        return out.permute(0, 3, 1, 2)
    return phases.permute(0, 3, 4, 1, 5, 2).reshape(b, c, 2 * h, 2 * w)


def set_switch(module: nn.Module, attr: str, on: bool) -> nn.Module:
    """Set the inference switch ``attr`` on every submodule of ``module`` that has it (the
    modules that honour a switch set it to False in ``__init__``)."""
    for m in module.modules():
        if hasattr(m, attr):
            setattr(m, attr, on)
    return module


def fold_blur(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every up-sampling modulated conv in ``module`` to the folded blur (GPU)."""
    return set_switch(module, "fold_blur", on)  # convs without up-sampling ignore it


def subpixel(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every folded up-sampling conv in ``module`` to its sub-pixel form: a plain conv
    with four output phases and a pixel shuffle (:meth:`ModulatedConv2d.phase_weight`). Only
    with :func:`fold_blur`."""
    return set_switch(module, "subpixel", on)


def phase_conv(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every up-sampling modulated conv in ``module`` whose blur is not folded to its
    2x2 phase form: a plain conv with four output phases, a pixel shuffle, then the blur
    (:meth:`ModulatedConv2d.phase_conv_weight`). A forward conv with 4/9 of the folded phases'
    multiply-adds (16 instead of 36 taps per four output pixels); with StyleGAN2's (1, 3, 3, 1)
    blur the conv takes its (1, 1) factor (:meth:`ModulatedConv2d.box_weight`) and the filter
    after it is (1, 2, 1): 3x3 taps instead of 4x4. The filter is one more pass in eager mode,
    fused into the styled conv's tail under ``torch.compile`` (with :func:`stencil_blur`) and
    into the Triton layer epilogue (:mod:`mcaclip.runtime.kernels.synthesis`)."""
    return set_switch(module, "phase_conv", on)


def freeze_weights(module: nn.Module, channels_last: bool = False) -> nn.Module:
    """Compute every modulated conv's weight (scaled; folded, in phases, as switched) and its
    demodulation sums once, instead of on every call, and every equalized-lr linear layer's
    scaled weight and bias: for inference copies whose parameters do
    not change (call it after the other switches and casts; a conv whose switches change
    afterwards goes back to computing them). Up-sampling convs otherwise fold their kernels on
    every call (a GPU kernel each), NHWC runs re-lay-out every kernel, and every linear layer
    of the mapper, the mapping network and the style affines scales its weight and bias (two
    kernels each)."""
    for m in module.modules():
        if isinstance(m, ModulatedConv2d):
            m.freeze(channels_last)
        elif isinstance(m, EqualLinear):
            m.freeze()
    return module


def stencil_blur(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every FIR filter in ``module`` to shifted slices (for ``torch.compile``)."""
    return set_switch(module, "stencil", on)


def fuse_tails(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every styled conv, ToRGB and mask blend in ``module`` to the fused tails
    (inference).

    A styled conv's tail (demodulate, add noise, add bias, leaky ReLU, gain, FP16 clamp) is up
    to six passes over its output; fused it is three: one ``addcmul`` into the conv's output
    (the gain folded into the coefficients: leaky ReLU commutes with positive scales), an
    in-place leaky ReLU and, in FP16, an in-place clamp (one more pass with per-sample noise;
    constant noise costs a [1, C, H, W] term, not a pass). The mask blend is one ``lerp``
    instead of three passes, and ToRGB one per-sample matrix product that reads the features
    once instead of a modulated copy and a convolution. Eager GPU runs are bound by these
    passes at high resolution; ``torch.compile`` fuses the plain form by itself. In-place:
    inference only (autograd refuses it)."""
    return set_switch(module, "fused_tails", on)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)
        self.fused_tails = False  # set by fuse_tails()

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        if self.fused_tails:
            return self._fused(x, style, noise)
        out = self.activate(self.noise(self.conv(x, style), noise))
        if out.dtype == torch.float16:  # NVIDIA's conv_clamp: keeps FP16 activations finite
            out = out.clamp(-FP16_CLAMP, FP16_CLAMP)
        return out

    def _fused(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None):
        """lrelu(d*conv + nw*noise + b) * g == lrelu(conv*(d*g) + (nw*noise + b)*g), g > 0."""
        out, dcoef = self.conv.modulated(x, style)
        gain = math.sqrt(2.0)
        bias = self.activate.bias.view(1, -1, 1, 1)
        if noise is not None and noise.shape[0] == 1:  # constant noise: a [1, C, H, W] term
            base = (self.noise.weight * noise.to(bias.dtype) + bias) * gain
        else:
            base = bias * gain
        if out.stride(1) == 1:  # NHWC output: read the [1, C, H, W] term in the same order
            base = base.contiguous(memory_format=torch.channels_last)
        scale = (dcoef * gain).to(out.dtype)[:, :, None, None]
        torch.addcmul(base.to(out.dtype), out, scale, out=out)
        if noise is not None and noise.shape[0] != 1:  # per-sample noise [B, 1, H, W]
            out.add_((noise * (self.noise.weight * gain)).to(out.dtype))
        out = F.leaky_relu_(out, 0.2)
        return out.clamp_(-FP16_CLAMP, FP16_CLAMP) if out.dtype == torch.float16 else out


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        # the RGB skip accumulates in FP32 whatever the feature precision (as NVIDIA does)
        out = (self.conv(x, style) + self.bias).float()
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class MappingNetwork(nn.Module):
    """z [B, D] -> w [B, D]: PixelNorm + n_mlp equalized-lr layers (rosinality's ``style``)."""

    def __init__(self, style_dim: int, n_mlp: int, lr_mlp: float):
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(n_mlp):
            layers.append(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True))
        self.style = nn.Sequential(*layers)
        self.style_dim = style_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ShapeError(f"z must be [B, {self.style_dim}], got {list(z.shape)}")
        return self.style(z)


class SynthesisNetwork(nn.Module):
    """W+ latent [B, n_latent, D] -> image [B, 3, size, size] in [-1, 1] (not clamped).

    Styled conv ``l`` (0..num_layers-1) reads ``w[:, l]``; the ToRGB after conv ``l`` reads
    ``w[:, l + 1]``. :meth:`steps` lists that order, so that
    :class:`~mcaclip.nn.editor.MaskedSynthesis` can run two streams in lockstep.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        blur = config.blur_kernel
        dim = config.style_dim
        ch = config.channels_at
        self.input = ConstantInputParam(ch(4))
        self.conv1 = StyledConv(ch(4), ch(4), dim, blur_kernel=blur)
        self.to_rgb1 = ToRGB(ch(4), dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = ch(4)
        for i in range(3, config.log_size + 1):
            out_channel = ch(2**i)
            self.convs.append(StyledConv(in_channel, out_channel, dim, True, blur))
            self.convs.append(StyledConv(out_channel, out_channel, dim, False, blur))
            self.to_rgbs.append(ToRGB(out_channel, dim, upsample=True, blur_kernel=blur))
            in_channel = out_channel
        self.noises = nn.Module()
        for layer, res in enumerate(config.layer_resolutions()):
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, res, res))

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def make_noise(
        self, batch: int, noise_mode: str, generator: torch.Generator | None = None
    ) -> list[torch.Tensor | None]:
        """Per-layer noise for ``noise_mode`` ("const" buffers, "none", or fresh "random")."""
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.config.num_layers)]
        if noise_mode == "none":
            return [None] * self.config.num_layers
        if noise_mode == "random":
            device = self.input.input.device
            return [
                torch.randn(batch, 1, r, r, device=device, generator=generator)
                for r in self.config.layer_resolutions()
            ]
        raise ValueError(f"noise_mode={noise_mode!r}: choose one of {NOISE_MODES}")

    def check_latent(self, w: torch.Tensor) -> None:
        L, D = self.config.n_latent, self.config.style_dim
        if w.ndim != 3 or w.shape[1] != L or w.shape[2] != D:
            raise ShapeError(f"W+ latent must be [B, {L}, {D}], got {list(w.shape)}")

    def steps(self) -> list[tuple[str, nn.Module, int]]:
        """The synthesis order: ("conv", StyledConv, l) reads w[:, l] and noise l;
        ("rgb", ToRGB, l) follows conv l and reads w[:, l + 1]."""
        steps: list[tuple[str, nn.Module, int]] = [
            ("conv", self.conv1, 0),
            ("rgb", self.to_rgb1, 0),
        ]
        for j, to_rgb in enumerate(self.to_rgbs):
            steps += [
                ("conv", self.convs[2 * j], 2 * j + 1),
                ("conv", self.convs[2 * j + 1], 2 * j + 2),
                ("rgb", to_rgb, 2 * j + 2),
            ]
        return steps

    def forward(
        self,
        w: torch.Tensor,
        noise_mode: str = "const",
        noise: Sequence[torch.Tensor | None] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """w [B, L, D] -> image [B, 3, H, W]; appends each styled conv output to ``features``."""
        self.check_latent(w)
        if noise is None:
            noise = self.make_noise(w.shape[0], noise_mode)
        x, skip = self.input(w), None
        for kind, module, layer in self.steps():
            if kind == "conv":
                x = module(x, w[:, layer], noise[layer])
                if features is not None:
                    features.append(x)
            else:
                skip = module(x, w[:, layer + 1], skip)
        return skip


class ConstantInputParam(nn.Module):
    """The learned 4x4 input, expanded to the batch of the latent."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.input.expand(w.shape[0], -1, -1, -1).to(w.dtype)


class Generator(nn.Module):
    """Mapping network + synthesis network + the average latent used for truncation.

    ``G.mapping(z) -> w [B, D]``; ``G.synthesis(w_plus, noise_mode="const") -> [B, 3, H, W]``.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config.style_dim, config.n_mlp, config.lr_mlp)
        self.synthesis = SynthesisNetwork(config)
        self.register_buffer("latent_avg", torch.zeros(config.style_dim))

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, D] -> W+ [B, n_latent, D]."""
        return w.unsqueeze(1).expand(-1, self.n_latent, -1)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation trick towards ``latent_avg`` (psi=1: no truncation)."""
        return self.latent_avg + psi * (w - self.latent_avg)

    def forward(
        self, z: torch.Tensor, truncation: float = 1.0, noise_mode: str = "const"
    ) -> torch.Tensor:
        """z [B, D] -> image [B, 3, H, W]."""
        w = self.truncate(self.mapping(z), truncation)
        return self.synthesis(self.broadcast(w), noise_mode=noise_mode)

    @torch.no_grad()
    def estimate_latent_avg(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of the mapping network over ``n`` seeded z samples (what rosinality computes)."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=gen).to(self.latent_avg.device)
        return self.mapping(z).mean(0)

    @classmethod
    def from_checkpoint(cls, path, preset=None) -> Generator:
        """Load a rosinality ``.pt`` (``g_ema``, ``latent_avg``) or our ``.safetensors``.

        ``preset`` (a name, a :class:`~mcaclip.config.Preset` or a
        :class:`~mcaclip.config.GeneratorConfig`) fixes the architecture; without it the
        architecture is read from the checkpoint. Keys are checked strictly.
        """
        path = Path(path)
        wanted = _generator_config(preset)
        if path.suffix == ".safetensors":
            cfg_dict, tensors = read_module_file(path, "generator")
            try:
                config = GeneratorConfig(
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()}
                )
            except (TypeError, ConfigError) as exc:
                raise CheckpointError(f"{path}: bad generator config ({exc})") from None
            state, latent_avg = tensors, None
        else:
            ckpt = safe_torch_load(path)
            if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
                raise CheckpointError(
                    f"{path}: expected a rosinality checkpoint, a dict with 'g_ema' "
                    "(and 'latent_avg')"
                )
            lr_mlp = wanted.lr_mlp if wanted is not None else 0.01
            config = infer_rosinality_config(ckpt["g_ema"], lr_mlp)
            state = rosinality_to_ours(ckpt["g_ema"])
            latent_avg = ckpt.get("latent_avg")
        if wanted is not None:
            _check_same_architecture(config, wanted, path)
            if path.suffix != ".safetensors":  # ours record their config; rosinality's do not
                config = wanted
        G = cls(config)
        if "latent_avg" not in state:
            state = dict(state, latent_avg=G.latent_avg)
        load_state_strict(G, state, str(path))
        if latent_avg is not None:
            G.latent_avg.copy_(latent_avg.reshape(-1))
        elif path.suffix != ".safetensors":
            log.warning("%s has no latent_avg: estimating it from 4096 mapped samples", path)
            G.latent_avg.copy_(G.estimate_latent_avg())
        return G.eval().requires_grad_(False)

    def save(self, path) -> None:
        """Write ``path`` (.safetensors) and its config ``path.with_suffix('.json')``."""
        save_module(self, path, kind="generator", config=self.config)


def _generator_config(preset) -> GeneratorConfig | None:
    """The architecture ``preset`` fixes: None, a GeneratorConfig, a Preset or a preset name."""
    if preset is None or isinstance(preset, GeneratorConfig):
        return preset
    if isinstance(preset, Preset):
        return preset.generator
    return load_preset(preset).generator


def _check_same_architecture(found: GeneratorConfig, wanted: GeneratorConfig, path) -> None:
    diffs = []
    for name in ("size", "style_dim", "n_mlp"):
        if getattr(found, name) != getattr(wanted, name):
            diffs.append(
                f"{name} {getattr(found, name)} (file) vs {getattr(wanted, name)} (preset)"
            )
    res = [2**i for i in range(2, found.log_size + 1)]
    if not diffs and [found.channels_at(r) for r in res] != [wanted.channels_at(r) for r in res]:
        diffs.append("channel widths differ")
    if diffs:
        raise CheckpointError(f"{path}: does not match the preset: {'; '.join(diffs)}")
