"""The two-stream masked synthesis with one Triton kernel per styled conv (``--triton-epilogues``),
installed on :class:`~mcaclip.nn.editor.MaskedSynthesis` as its ``fast_path`` by
:func:`triton_epilogues`.

The PyTorch form computes, at every styled conv, the conv of each stream, each stream's tail
(demodulation, noise, bias, leaky ReLU, clamp), the mask head on the original's features, the
blend, and at every other conv both streams' ToRGB and the blended RGB skip; the next conv then
scales its input by its styles. Compiled, that is still several passes over the feature maps
between two convolutions: the mask head's convolutions are kernels of their own, and the
original's features are written both as they are (for the mask head, the blend and ToRGB) and
modulated (for the next conv). Here the convs are PyTorch's (cuDNN) and everything between two
of them is :func:`mcaclip.runtime.kernels.triton_ops.layer_epilogue`: it reads the two conv
outputs and writes the next convs' inputs already modulated, the mask and the two 3-channel
skips; nothing else goes through memory. Up-sampling convs hand it their raw phases: the sub-pixel
form's, read through the pixel shuffle, or the 2x2 phase form's (``phase_conv``), shuffled and
blurred in the kernel (3x3 taps summed in FP16, what is left of StyleGAN2's blur after the conv
took its (1, 1) factor); the previous RGB skips it up-samples itself (2x2 of the FIR's 16 taps
per pixel), where PyTorch would write and read them back.

Between the big kernels little else runs: both streams go through each conv as one batch
([B original | B*P edited], the kernel writes the next input that way), and the small products
every layer needs (styles, demodulation, ToRGB matrices, the mask heads' text terms) are made
for all layers at once from padded tables (:class:`Plan`), which the kernel reads row by row.
A 1024 px call is 45 kernels: 17 convs, 17 epilogues, 11 small ones, where the PyTorch form
makes 617, 566 of them small (``python -m benchmarks.synthesis_ops``; run 4's H200 profile put
those small ones at about 3.3 ms of a 20 ms batch-8 call).

With ``convs`` the kernel also computes the convs of the big maps (:func:`fits_kernel`), so
that their outputs never go through memory; ``convs="auto"`` keeps that only at the layers
where it was faster on this GPU: :func:`mcaclip.runtime.kernels.tuning.tune` times each layer
both ways at the first call of each batch shape (as cuDNN's benchmark mode times its
algorithms) and :meth:`Plan.in_kernel` gives the choice to every later call.

Same function as the PyTorch form up to rounding (the kernel computes the tails and the blend
in FP16 as the PyTorch form does, the mask head's and ToRGB's sums and the skips in float32,
without the PyTorch form's roundings between steps). Inference on FP16 NHWC features only,
with the mask net (not masks passed in) and constant or no noise; where :func:`usable` says
no, the fast path returns None and the module runs its PyTorch form.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from mcaclip.nn.editor import MaskedSynthesis
from mcaclip.runtime.kernels import triton_ops

GAIN = math.sqrt(2.0)  # the leaky ReLU's gain, folded into the tail's terms (it is positive)
EPS = 1e-8  # under the demodulation's square root, as ModulatedConv2d.convolve adds it


@dataclasses.dataclass
class Plan:
    """What every call of :func:`run` needs from the module, computed once by :func:`prepare`
    (float32, on the module's device). The small per-layer products (every styled conv's and
    ToRGB's styles, demodulation coefficients, ToRGB matrices and text terms) are rows of
    padded tables, so that a call makes each kind for all layers in one batched product where
    the layer-by-layer form made 566 small kernels for a 1024 px batch-8 call (counted)."""

    heads: list  # per styled conv: the mask head as the kernel reads it (triton_ops.prepare)
    latents: torch.Tensor  # [K] the latent each style reads: every conv's, then every ToRGB's
    affine: torch.Tensor  # [K, D, row] the style affines (equalized scale in), zero-padded
    affine_bias: torch.Tensor  # [K, 1, row]
    demod: torch.Tensor  # [J, row, row] sums of squared taps over the gain squared (padded)
    rgb_weight: torch.Tensor  # [R, 1, 3, row] every ToRGB's weight
    bias: list  # per styled conv: its activation's bias times the gain [C]
    noise_gain: list  # per styled conv: its noise weight times the gain [1]
    noise: list  # per styled conv: (its constant noise buffer, that times the gain [H, W])
    blur: list  # per styled conv: (FIR taps in correlation order, leading padding) or None
    rgb_of: dict  # styled conv's layer -> the index of the ToRGB after it (where one is)
    rgb_bias: list  # per ToRGB [3]
    rgb_up: list  # per ToRGB: (its skip up-sampling's FIR taps, leading padding) or None
    cond_weight: torch.Tensor | None  # [J, D_text, hidden] the heads' text terms' weights
    cond_bias: torch.Tensor | None  # [J, 1, hidden]
    conv_w: list  # per styled conv: its weight K-major [9 in, out] FP16 where the kernel
    #               may compute the conv itself (convs True or "auto", :func:`fits_kernel`;
    #               the edited stream's only with several prompts per latent), else None
    auto: bool = False  # convs="auto": which of those the kernel computes, tuning.tune times
    chosen: dict = dataclasses.field(default_factory=dict)  # (B, P) -> per conv: in kernel
    timings: dict = dataclasses.field(default_factory=dict)  # (B, P) -> what tune measured
    override: tuple | None = None  # while tune times one form: per conv, in the kernel
    clock: Callable | None = None  # while tune times: called at each conv's start, and after

    @property
    def fits(self) -> tuple:
        """Per styled conv, whether the kernel may compute it (a weight is here)."""
        return tuple(w is not None for w in self.conv_w)

    def in_kernel(self, batch: int, prompts: int) -> tuple:
        """Per styled conv, whether the kernel computes it at this batch: every conv with a
        weight here, or, with ``auto``, those :func:`~mcaclip.runtime.kernels.tuning.tune`
        found faster that way at this
        batch (none before it has timed it: cuDNN, the form timed most)."""
        if self.override is not None:
            return self.override
        if not self.auto:
            return self.fits
        return self.chosen.get((batch, prompts), (False,) * len(self.conv_w))


def fits_kernel(conv) -> bool:
    """Whether the epilogue kernel can compute this ModulatedConv2d itself: a 3x3 conv at the
    same size or the sub-pixel up-sampling conv (its four phases), at most
    ``triton_ops.MAX_CONV_CHANNELS`` output channels (all in one step), and at least 16
    input channels (the products' K)."""
    return (
        conv.kernel_size == 3
        and (not conv.upsample or conv.use_phases)
        and conv.out_channel <= triton_ops.MAX_CONV_CHANNELS
        and conv.in_channel >= triton_ops.MIN_DOT
    )


def triton_epilogues(module: nn.Module, on: bool = True, convs: bool | str = False) -> nn.Module:
    """Run every MaskedSynthesis with a mask net in ``module`` with one Triton kernel between
    two styled convs where it can (FP16 NHWC inference on a GPU): its ``fast_path`` becomes an
    :class:`EpilogueFastPath`; elsewhere the PyTorch form runs. ``convs``: the kernel computes
    the convs of the big maps too (:func:`fits_kernel`); ``"auto"``: at the layers where
    :func:`mcaclip.runtime.kernels.tuning.tune` found that faster (cuDNN until it has timed a
    batch shape). ``on=False`` removes the fast path. Call it after the module's last cast or
    move: the kernel reads tables made here (:func:`prepare`)."""
    for m in module.modules():
        if isinstance(m, MaskedSynthesis) and m.masknet is not None:
            m.fast_path = EpilogueFastPath(prepare(m, convs)) if on else None
    return module


def epilogue_plans(module: nn.Module) -> list[Plan]:
    """The plans of the epilogue fast paths installed in ``module`` (:func:`triton_epilogues`),
    in module order."""
    return [
        m.fast_path.plan
        for m in module.modules()
        if isinstance(m, MaskedSynthesis) and isinstance(m.fast_path, EpilogueFastPath)
    ]


class EpilogueFastPath:
    """A :class:`~mcaclip.nn.editor.MaskedSynthesis`'s ``fast_path`` with the epilogue kernel:
    ``(masked, w, w_edit, cond, noise, masks, prompts) -> (image, masks, original)`` by
    :func:`run` where :func:`usable` says the call can take it, else None (the module's PyTorch
    form runs)."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __call__(self, masked, w, w_edit, cond, noise, masks, prompts):
        if not usable(masked, w_edit, cond, noise, masks):
            return None
        return run(masked, self.plan, w, w_edit, cond, noise, prompts)


def prepare(masked, convs: bool | str = False) -> Plan:
    """Load the kernels and compute the :class:`Plan` of MaskedSynthesis ``masked`` (after its
    last cast or move; later weight changes are not seen). ``convs``: the kernel also computes
    the convs that :func:`fits_kernel` (the big maps'); ``"auto"``: those of them that
    :func:`mcaclip.runtime.kernels.tuning.tune` finds faster in the kernel than in cuDNN."""
    if convs not in (False, True, "auto"):
        raise ValueError(f"convs={convs!r}: False, True or 'auto'")
    triton_ops.load()
    plan = _plan(masked, bool(convs))
    plan.auto = convs == "auto"
    return plan


def _plan(masked, convs_in_kernel: bool) -> Plan:
    synth = masked.synthesis
    heads = masked.masknet.heads
    steps = synth.steps()
    convs = [(module, layer) for kind, module, layer in steps if kind == "conv"]
    rgbs = [(module, layer) for kind, module, layer in steps if kind == "rgb"]
    mods = [m.conv for m, _ in convs] + [m.conv for m, _ in rgbs]
    row = max(max(c.in_channel, c.out_channel) for c in mods)
    device = synth.input.input.device
    f32 = {"dtype": torch.float32, "device": device}
    latents = [layer for _, layer in convs] + [layer + 1 for _, layer in rgbs]
    dim = mods[0].modulation.weight.shape[1]
    affine = torch.zeros(len(mods), dim, row, **f32)
    affine_bias = torch.zeros(len(mods), 1, row, **f32)
    demod = torch.zeros(len(convs), row, row, **f32)
    rgb_weight = torch.zeros(len(rgbs), 1, 3, row, **f32)
    with torch.no_grad():
        for k, conv in enumerate(mods):
            lin = conv.modulation
            affine[k, :, : conv.in_channel] = (lin.weight.float() * lin.scale).t()
            affine_bias[k, 0, : conv.in_channel] = lin.bias.float() * lin.lr_mul
        for j, (module, _) in enumerate(convs):
            sq = module.conv._weights()[1]  # [in, out] float32
            demod[j, : sq.shape[0], : sq.shape[1]] = sq / GAIN**2
        for r, (module, _) in enumerate(rgbs):
            weight = module.conv._weights()[0][:, :, 0, 0].float()  # [3, C]
            rgb_weight[r, 0, :, : weight.shape[1]] = weight
        cond_weight = cond_bias = None
        if heads[0].cond is not None:
            cond_weight = torch.stack([h.cond.weight.float().t() for h in heads])
            cond_bias = torch.stack([h.cond.bias.float()[None] for h in heads])
        gains = [(m.noise.weight.float() * GAIN).reshape(1) for m, _ in convs]

        def k_major(conv) -> torch.Tensor | None:  # [out, in, 3, 3] -> [9 in, out]
            if not (convs_in_kernel and fits_kernel(conv)):
                return None
            weight = conv._weights()[0]
            return weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).half().contiguous()

        def fir(module, half: bool = False) -> tuple:  # taps in correlation order (float32;
            # FP16 for the phases' blur, which the kernel sums in FP16), leading padding
            taps = torch.flip(module.kernel, [0, 1])
            return (taps.half() if half else taps.float()).contiguous(), module.pad[0]

        return Plan(
            heads=[triton_ops.prepare(h.conv1, h.conv2, h.conv1.weight.dtype) for h in heads],
            latents=torch.tensor(latents, device=device),
            affine=affine,
            affine_bias=affine_bias,
            demod=demod,
            rgb_weight=rgb_weight,
            bias=[(m.activate.bias.float() * GAIN).contiguous() for m, _ in convs],
            noise_gain=gains,
            noise=[
                (n, (n[0, 0].float() * g).half())
                for n, g in zip(synth.make_noise(1, "const"), gains)
            ],
            blur=[
                fir(m.conv.phase_blur, True) if m.conv.use_phase_conv else None for m, _ in convs
            ],
            rgb_of={layer: r for r, (_, layer) in enumerate(rgbs)},  # ("rgb", m, l) follows conv l
            rgb_bias=[m.bias.reshape(3).float().contiguous() for m, _ in rgbs],
            rgb_up=[fir(m.upsample) if hasattr(m, "upsample") else None for m, _ in rgbs],
            cond_weight=cond_weight,
            cond_bias=cond_bias,
            conv_w=[k_major(m.conv) for m, _ in convs],
        )


def usable(masked, w_edit: torch.Tensor, cond, noise: list, masks) -> bool:
    """Whether :func:`run` can take this call: the mask net's masks (with
    the text embedding a conditioned one needs), FP16 inputs on a GPU (or Triton's
    interpreter), power-of-two maps, constant or no noise, no gradients wanted. Elsewhere the
    PyTorch form runs (and says what is wrong, if anything is)."""
    synth = masked.synthesis
    size = synth.config.size
    return (
        masks is None
        and masked.masknet is not None
        and (cond is not None or not masked.masknet.conditioned)
        and size & (size - 1) == 0
        and synth.input.input.dtype == torch.float16
        and (w_edit.is_cuda or triton_ops.interpreting())
        and all(n is None or n.shape[0] == 1 for n in noise)
        and not (torch.is_grad_enabled() and synth.input.input.requires_grad)
    )


def run(masked, plan: Plan, w, w_edit, cond, noise, prompts):
    """The masked synthesis of ``masked`` (see :meth:`MaskedSynthesis.forward`) with one kernel
    per styled conv, the tables of ``plan`` (:func:`prepare`), both streams stacked ([B
    original | B*P edited]) through every conv; returns (image, masks, original) as
    MaskedOutput's fields."""
    synth = masked.synthesis
    batch = w.shape[0]
    convs = [(module, layer) for kind, module, layer in synth.steps() if kind == "conv"]
    n_conv = len(convs)
    in_kernel = plan.in_kernel(batch, prompts)
    clock = plan.clock  # set only while tuning.tune() times this call (eager, never traced)
    if clock is not None:
        clock.key = (batch, prompts)
    # every style of both streams in one batched product: [K, N, row]
    ws = torch.cat([w, w_edit]).float()[:, plan.latents].transpose(0, 1)
    styles = torch.baddbmm(plan.affine_bias, ws, plan.affine)
    conv_styles = styles[:n_conv]
    demod = torch.rsqrt(torch.bmm(conv_styles.square(), plan.demod) + EPS / GAIN**2)  # x gain
    rgb_mats = plan.rgb_weight * styles[n_conv:, :, None, :]  # [R, N, 3, row]
    terms = None
    if plan.cond_weight is not None:
        text = cond.float()[None].expand(n_conv, -1, -1)
        terms = torch.baddbmm(plan.cond_bias, text, plan.cond_weight)  # [J, B*P, hidden]
    const = synth.input.input  # [1, C, 4, 4]: the first conv's input, modulated per sample
    x = const * styles[0, :, : const.shape[1], None, None].to(const.dtype)
    skip = None
    masks: list[torch.Tensor] = []
    for j, (module, layer) in enumerate(convs):
        if clock is not None:
            clock(j)
        conv = module.conv
        conv_w = plan.conv_w[j] if in_kernel[j] else None  # the kernel convolves x, or cuDNN
        raw = x if conv_w is not None else conv.raw_conv(x, shuffle=False)
        # with several prompts per latent, the original's conv once here, not in each prompt's
        # program (the kernel convolves the edited rows only)
        raw_o = (
            conv.raw_conv(x[:batch], shuffle=False) if conv_w is not None and prompts > 1 else None
        )
        noise_l = noise[layer]
        if noise_l is not None:  # the module's own constant noise: times the gain already
            buffer, scaled = plan.noise[j]
            noise_l = scaled if noise_l is buffer else (noise_l[0, 0] * plan.noise_gain[j]).half()
        rgb = None
        r = plan.rgb_of.get(layer)
        if r is not None:
            up = plan.rgb_up[r]
            rgb = (rgb_mats[r], plan.rgb_bias[r], skip, *(up if skip is not None else (None, 0)))
        x, mask, new_skip = triton_ops.layer_epilogue(
            raw,
            batch,
            conv.use_phases,
            plan.blur[j],
            demod[j],
            plan.bias[j],
            noise_l,
            plan.heads[layer],
            None if terms is None else terms[j],
            conv_styles[j + 1] if j + 1 < n_conv else None,
            rgb,
            prompts,
            conv_w,
            raw_o,
        )
        masks.append(mask)
        if rgb is not None:
            skip = new_skip
    if clock is not None:
        clock(n_conv)
    return skip[batch:], masks, skip[:batch]
