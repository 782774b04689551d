"""The two-stream masked synthesis with one Triton kernel per styled conv (``--triton-epilogues``).

:class:`~mcaclip.nn.editor.MaskedSynthesis` computes, at every styled conv, the conv of each
stream, each stream's tail (demodulation, noise, bias, leaky ReLU, clamp), the mask head on the
original's features, the blend, and at every other conv both streams' ToRGB and the blended RGB
skip; the next conv then scales its input by its styles. Compiled, that is still several
passes over the feature maps between two convolutions: the mask head's convolutions are kernels
of their own, and the original's features are written both as they are (for the mask head, the
blend and ToRGB) and modulated (for the next conv). Here the convs are PyTorch's (cuDNN) and
everything between two of them is :func:`mcaclip.nn.triton_kernels.layer_epilogue`: it reads the
two conv outputs and writes the next convs' inputs already modulated, the mask and the two
3-channel skips; nothing else goes through memory. Up-sampling convs hand it their raw
phases: the sub-pixel form's, read through the pixel shuffle, or the 2x2 phase form's
(``phase_conv``), shuffled and blurred in the kernel; the previous RGB skips it up-samples
itself (2x2 of the FIR's 16 taps per pixel), where PyTorch would write and read them back.

Same function as the PyTorch form up to rounding (the kernel works in float32 where the FP16
PyTorch form rounds each step to FP16). Inference on FP16 NHWC features only, with the mask net
(not masks passed in) and constant or no noise; where :func:`usable` says no, the caller takes
the PyTorch form.
"""

from __future__ import annotations

import math

import torch

from mcaclip.nn import triton_kernels

GAIN = math.sqrt(2.0)  # the leaky ReLU's gain, folded into the tail's terms (it is positive)


def prepare(masked) -> None:
    """Load the kernels and keep the mask heads' weights as the kernel reads them (call after
    the module's last cast or move, like :func:`mcaclip.nn.masknet.triton_masks`)."""
    triton_kernels.load()
    heads = masked.masknet.heads
    dtype = heads[0].conv1.weight.dtype
    masked.epilogue_heads = [triton_kernels.prepare(h.conv1, h.conv2, dtype) for h in heads]


def usable(masked, w_edit: torch.Tensor, cond, noise: list, masks) -> bool:
    """Whether :func:`run` can take this call: weights prepared, the mask net's masks (with
    the text embedding a conditioned one needs), FP16 inputs on a GPU (or Triton's
    interpreter), power-of-two maps, constant or no noise, no gradients wanted. Elsewhere the
    PyTorch form runs (and says what is wrong, if anything is)."""
    synth = masked.synthesis
    size = synth.config.size
    return (
        masked.epilogue_heads is not None
        and masks is None
        and masked.masknet is not None
        and (cond is not None or not masked.masknet.conditioned)
        and size & (size - 1) == 0
        and synth.input.input.dtype == torch.float16
        and (w_edit.is_cuda or triton_kernels.interpreting())
        and all(n is None or n.shape[0] == 1 for n in noise)
        and not (torch.is_grad_enabled() and synth.input.input.requires_grad)
    )


def run(masked, w, w_edit, cond, noise, prompts):
    """The masked synthesis (see :meth:`MaskedSynthesis.forward`) with one kernel per styled
    conv; returns (image, masks, original) as MaskedOutput's fields."""
    synth = masked.synthesis
    heads = masked.masknet.heads
    steps = synth.steps()
    convs = [(module, layer) for kind, module, layer in steps if kind == "conv"]
    to_rgb = {layer: module for kind, module, layer in steps if kind == "rgb"}
    styles = [
        (module.conv.modulation(w[:, layer]), module.conv.modulation(w_edit[:, layer]))
        for module, layer in convs
    ]
    s_o, s_e = styles[0]
    x_o = synth.input(w) * s_o.to(torch.float16)[:, :, None, None]
    x_e = synth.input(w_edit) * s_e.to(torch.float16)[:, :, None, None]
    skip_o = skip_e = None
    masks: list[torch.Tensor] = []
    for j, (module, layer) in enumerate(convs):
        conv = module.conv
        s_o, s_e = styles[j]
        raw_o, d_o = conv.convolve(x_o, s_o, shuffle=False)
        raw_e, d_e = conv.convolve(x_e, s_e, shuffle=False)
        s_next = styles[j + 1] if j + 1 < len(convs) else (None, None)
        noise_l = noise[layer]
        if noise_l is not None:
            noise_l = noise_l[0, 0].float() * (module.noise.weight.float() * GAIN)
        head = heads[layer]
        term = None if head.cond is None else head.cond(cond)
        rgb = None
        if layer in to_rgb:
            rgb = _to_rgb(to_rgb[layer], w[:, layer + 1], w_edit[:, layer + 1], skip_o, skip_e)
        blur = None
        if conv.use_phase_conv:  # the FIR filter in correlation order, and its leading padding
            blur = (torch.flip(conv.blur.kernel, [0, 1]).float(), conv.blur.pad[0])
        x_o, x_e, mask, new_o, new_e = triton_kernels.layer_epilogue(
            raw_o,
            raw_e,
            conv.use_phases,
            blur,
            d_o * GAIN,
            d_e * GAIN,
            module.activate.bias.float() * GAIN,
            noise_l,
            masked.epilogue_heads[layer],
            term,
            None if s_next[0] is None else s_next[0].float(),
            None if s_next[1] is None else s_next[1].float(),
            rgb,
            prompts,
        )
        masks.append(mask)
        if rgb is not None:
            skip_o, skip_e = new_o, new_e
    return skip_e, masks, skip_o


def _to_rgb(module, style_o, style_e, skip_o, skip_e) -> tuple:
    """A ToRGB's per-sample [N, 3, C] matrices (weight times styles) for both streams, its bias,
    the previous skips and their up-sampling's FIR filter (correlation order) and leading
    padding, which the kernel applies (None, None, None, 0 before the first ToRGB)."""
    conv = module.conv
    weight = conv._weights()[0][:, :, 0, 0].float()  # [3, C]
    mats = [weight[None] * conv.modulation(s).float()[:, None, :] for s in (style_o, style_e)]
    bias = module.bias.reshape(3).float()
    if skip_o is None:
        return mats[0], mats[1], bias, None, None, None, 0
    up = module.upsample  # 2x, as every ToRGB's (the kernel up-samples by 2)
    taps = torch.flip(up.kernel, [0, 1]).float()
    return mats[0], mats[1], bias, skip_o, skip_e, taps, up.pad[0]
