"""The Triton kernels of the torch backend's GPU fast path, as PyTorch custom ops
(``--triton-masks``, ``--triton-epilogues``, ``--triton-convs``).

:func:`fused_mask_head` computes a PRE mask head, ``m = sigmoid(w2 . relu(W1 f + b1 [+ A e_t]) +
b2)``, in one pass over the features: each program takes a block of pixels of the NHWC feature
map, multiplies it with W1 on the tensor cores (the 1x1 convolution), and applies the bias,
ReLU, the hidden -> 1 reduction and the sigmoid in registers. The unfused head reads the features,
writes a [B, hidden, H, W] map, and reads and writes it again for the ReLU and once more for the
second convolution: at 1024 px about 0.98 GB per edit against 0.27 GB fused (an estimate; not
measured on a GPU).

:func:`layer_epilogue` does, for one styled conv of the two-stream masked synthesis, everything
between that conv and the next one in one pass over both streams' conv outputs: demodulation,
noise, bias, leaky ReLU and clamp of each stream, the mask head on the original's features, the
blend of the edited features with them, both streams' ToRGB and RGB skip (blended too), and the
next conv's input modulation. It writes only the next convs' (already modulated) inputs, the
mask and the 3-channel skips: the original's and the blended features are never stored
unmodulated (see :mod:`mcaclip.runtime.kernels.synthesis`). The kernel itself is in
:mod:`mcaclip.runtime.kernels._epilogue_kernel`; its launch configuration (blocks, warps,
stages, register cap) is chosen here (:func:`epilogue_blocks`, :func:`with_options`).

Both run as PyTorch custom ops (``mcaclip::mask_head``, ``mcaclip::layer_epilogue``) that
allocate their outputs, so torch.compile calls them as they are. Triton ships with PyTorch's
CUDA wheels and is imported only by :func:`load` (when a switch is turned on). On a machine
without a GPU the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
Triton is imported (how the tests check them on the CPU).
"""

from __future__ import annotations

import contextlib
import os

import torch

from mcaclip.errors import ConfigError

MIN_DOT = 16  # tl.dot needs every block dimension to be at least 16
MAX_CONV_CHANNELS = 64  # the conv in the epilogue kernel: output channels in one step
# the conv in the kernel: pixels per program (the rows of its products) at 32 and at 64
# channels, 8 warps; by ptxas, no spills on sm_80/86/89/90/120 (128 pixels at 64 channels
# spilled on sm_80/89, 32 pixels took fewer registers but read the weights 4x as often)
CONV_PIXELS = {32: 128, 64: 64}
CONV_WARPS = 8
# the layer epilogue with 8 warps, 8 elements a thread, no conv: at most 80 registers, three
# blocks (24 warps) an SM. Uncapped, ptxas took 106-108 at 512 px (64 channels) and at the
# ToRGB layers of the wider maps on an H100 (two blocks, occupancy 1/4: run 4 timed the
# kernel of then at 1.9-2.1x its issue bound at 1/4, 1.36-1.44x at 7/16 and 1/2); capped, it
# spills 0-8 bytes (0-16 with the float32 tails), by ptxas with Triton 3.5, 3.7 and 3.8 on
# sm_89/90/120, except at the 512 px launch with ToRGB (every channel in the block), 216-244
# bytes with Triton 3.7 (float32 tails): not capped
MAX_REGISTERS_8_WARPS = 80
_KERNEL = None  # the jitted mask-head kernel, built by load() (outside any torch.compile trace)
_EPILOGUE = None  # the jitted layer-epilogue kernel, built by load() too
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


def interpreting() -> bool:
    """Whether the kernels were loaded for Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return _INTERPRET


def refused(exc: BaseException) -> bool:
    """Whether a launch failed for this GPU's resources, refused before it ran (the context
    stays usable): Triton's OutOfResources when it loads the kernel (shared memory, threads),
    or the driver's "too many resources requested for launch" (registers). A kernel bug, or
    an illegal address that poisons the context, is not one."""
    from triton.runtime.errors import OutOfResources

    return isinstance(exc, OutOfResources) or "too many resources requested" in str(exc)


def load():
    """Import Triton and build the kernel (once). Called when the switch is turned on, so that
    ``torch.compile`` later sees a ready kernel, not its construction."""
    global _KERNEL, _EPILOGUE, _INTERPRET
    if _KERNEL is None:
        try:
            _KERNEL, _EPILOGUE = _build()
        except ImportError:
            raise ConfigError(
                "--triton-masks and --triton-epilogues need Triton, which comes with PyTorch's "
                "CUDA wheels (pip install triton)"
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

    return triton_mask_head, _build_epilogue()


def _build_epilogue():
    """The layer-epilogue kernel, from a module of its own: it calls helper kernels, which Triton
    finds among the module's globals (Triton is imported there, so only when loaded)."""
    from mcaclip.runtime.kernels import _epilogue_kernel

    return _epilogue_kernel.triton_layer_epilogue


def prepare(conv1: torch.nn.Conv2d, conv2: torch.nn.Conv2d, dtype: torch.dtype) -> tuple:
    """A mask head's weights as the kernel reads them, computed once
    (:func:`mcaclip.runtime.kernels.mask_head.triton_masks` calls it after the module's last
    cast): W1 transposed [C, hidden] in ``dtype``, b1, w2 [hidden] and b2 [1] in float32."""
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
    return _mask_head_op(feature, *weights, text_term, prompts)


# The kernels run as PyTorch custom ops that allocate their outputs and write nothing else:
# torch.compile treats them as opaque calls and needs no analysis of what the Triton code
# writes (Inductor's analysis of user kernels has failed on some Triton versions, and then
# copies every input or, in older versions, dropped the kernel).


@torch.library.custom_op("mcaclip::mask_head", mutates_args=())
def _mask_head_op(
    feature: torch.Tensor,
    w1t: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    text_term: torch.Tensor | None,
    prompts: int,
) -> torch.Tensor:
    out, grid, args, meta = _mask_head_launch(feature, w1t, b1, w2, b2, text_term, prompts)
    if _KERNEL is None:
        load()
    with _on_device(feature):
        _KERNEL[grid](*args, **meta)
    return out


def _mask_head_launch(feature, w1t, b1, w2, b2, text_term, prompts) -> tuple:
    """The custom op's output, allocated, and the (grid, arguments, constexprs and launch
    options) of the mask-head kernel's launch that writes it (also what
    :mod:`benchmarks.triton_aot` compiles for GPUs it does not have)."""
    out = _mask_head_out(feature, prompts)
    b, c, h, w = feature.shape
    hidden = b1.shape[0]
    n = out.numel()
    block_p = 128
    term = b1 if text_term is None else text_term.contiguous()
    args = (feature, w1t, b1, term, w2, b2, out, n, h * w, c, hidden, prompts)
    meta = {
        "HAS_TERM": text_term is not None,
        "HIDDEN": _dot_width(hidden),
        "BLOCK_P": block_p,
        "BLOCK_C": min(64, _dot_width(c)),
        # ptxas on H100 / RTX 40 (benchmarks/triton_aot.py): 44-78 registers, occupancy 0.5 to
        # 0.63; Triton's default (4 warps, 3 stages) was 60-123, 0.17 to 0.44, held back by
        # 40-60 kB of shared memory for three stages of the features
        "num_warps": 8,
        "num_stages": 2,
    }
    return out, (triton_cdiv(n, block_p),), args, meta


def _mask_head_out(feature: torch.Tensor, prompts: int) -> torch.Tensor:
    b, _, h, w = feature.shape
    return torch.empty((b * prompts, 1, h, w), dtype=feature.dtype, device=feature.device)


@_mask_head_op.register_fake
def _(feature, w1t, b1, w2, b2, text_term, prompts):
    return _mask_head_out(feature, prompts)


def _on_device(t: torch.Tensor):
    """A launch goes to the current CUDA device, which may not be the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def layer_epilogue(
    raw: torch.Tensor,
    batch: int,
    phases: bool,
    blur: tuple | None,
    d: torch.Tensor,
    bias: torch.Tensor,
    noise: torch.Tensor | None,
    head: tuple,
    term: torch.Tensor | None,
    s: torch.Tensor | None,
    rgb: tuple | None,
    prompts: int,
    conv_w: torch.Tensor | None = None,
    raw_original: torch.Tensor | None = None,
) -> tuple:
    """One styled conv's epilogue for both streams (module docstring), FP16 NHWC in and out.

    ``raw`` [B + B*P, C, H, W]: both streams' conv outputs before demodulation, the ``batch``
    = B original samples first, NHWC (``phases``: the sub-pixel conv's [N, 4C, H/2, W/2], read
    through the shuffle; ``blur`` = (FIR taps [L, L] FP16, correlation order, leading
    padding): the 2x2-phase conv's [N, 4C, H'+1, W'+1], shuffled and filtered in the kernel
    to [H, W] = [2H', 2W'], :attr:`ModulatedConv2d.phase_blur`); ``d`` [N, row] float32
    demodulation times the gain in each row's first C (``row`` >= C, the same for ``s`` and
    the ToRGB matrices: rows of padded tables);
    ``bias`` [C] float32 times the gain; ``noise`` [H, W] float32 noise times weight times
    gain, or None; ``head`` from :func:`prepare`, ``term`` [B*P,
    hidden] or None; ``s`` the next conv's styles [N, row] float32, None after the last conv;
    ``rgb``: None, or (ToRGB weights times styles [N, 3, row] float32, its bias [3], the
    previous skips [N, 3, H/2, W/2] float32 and their 2x up-sampling's FIR filter [L, L]
    float32 (correlation order, the up-sampling's gain in it) and leading padding, or None,
    None, 0 for the first ToRGB: the kernel up-samples the skips itself). The maps' pixel count
    must be a power of two (square maps of a power-of-two size).

    ``conv_w`` [9 Cin, C] FP16 (``phases``: [9 Cin, 4C]), the conv's weight K-major (row (3 ky +
    kx) Cin + i): the kernel computes the 3x3 conv itself (padding 1), ``raw`` being its input
    [N, Cin, H', W'] (NHWC, modulated) and no conv output ever stored; C <= 64 channels.
    ``raw_original``: with ``conv_w``, the original stream's conv output [B, C (``phases``:
    4C), H', W'] (NHWC) computed outside, read as without ``conv_w``: with several prompts per
    latent each prompt's program would otherwise compute the original's conv again; the
    kernel then computes the edited stream's only (its rows of ``raw``; the original's rows
    there are not read).

    Returns (the next conv's input [N, C, H, W] NHWC, both streams stacked as ``raw``, or None
    after the last conv; mask [B*P, 1, H, W]; new skips [N, 3, H, W] float32 or None).
    """
    rgb = rgb or (None,) * 4 + (0,)
    taps, pad0 = blur or (None, 0)
    row = d.shape[-1]
    for t in (d, s, rgb[0]):
        if t is not None and (t.shape[-1] != row or not t.is_contiguous()):
            raise ConfigError("layer epilogue: demodulation, styles and ToRGB rows differ")
    out = _epilogue_op(raw, batch, phases, taps, pad0, d, bias, noise, *head, term, s, *rgb,
                       prompts, conv_w, raw_original)  # fmt: skip
    return tuple(None if t.numel() == 0 else t for t in out)


def _epilogue_shape(raw, phases: bool, taps, conv_w=None) -> tuple[int, int, int]:
    """(channels, height, width) of the features the epilogue computes from ``raw``."""
    c, h, w = raw.shape[1:]
    if conv_w is not None:  # raw is the conv's input
        c = conv_w.shape[1]
    if phases:
        return c // 4, 2 * h, 2 * w
    if taps is not None:  # 2x2 phases [h, w] = [H + 1, W + 1], shuffled, padded and filtered
        return c // 4, 2 * h - 2, 2 * w - 2  # back to [2H, 2W] (ModulatedConv2d.phase_blur)
    return c, h, w


def _epilogue_out(raw, batch: int, phases: bool, taps, has_next: bool, has_rgb: bool,
                  conv_w=None):  # fmt: skip
    """The epilogue's outputs, allocated (an empty tensor for each one it does not write)."""
    n = raw.shape[0]
    c, h, w = _epilogue_shape(raw, phases, taps, conv_w)
    kw = {"dtype": raw.dtype, "device": raw.device}
    nhwc = torch.channels_last
    x = torch.empty((n, c, h, w) if has_next else (0, 0, 0, 0), memory_format=nhwc, **kw)
    mask = torch.empty((n - batch, 1, h, w), **kw)
    sk = torch.empty((n, 3, h, w) if has_rgb else 0, dtype=torch.float32, device=raw.device)
    return x, mask, sk


@torch.library.custom_op("mcaclip::layer_epilogue", mutates_args=())
def _epilogue_op(
    raw: torch.Tensor,
    batch: int,
    phases: bool,
    taps: torch.Tensor | None,
    pad0: int,
    d: torch.Tensor,
    bias: torch.Tensor,
    noise: torch.Tensor | None,
    w1t: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    term: torch.Tensor | None,
    s: torch.Tensor | None,
    rgb: torch.Tensor | None,
    rgb_b: torch.Tensor | None,
    up: torch.Tensor | None,
    up_taps: torch.Tensor | None,
    up_pad0: int,
    prompts: int,
    conv_w: torch.Tensor | None,
    raw_original: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, grid, args, meta = _epilogue_launch(
        raw, batch, phases, taps, pad0, d, bias, noise, w1t, b1, w2, b2, term, s, rgb, rgb_b,
        up, up_taps, up_pad0, prompts, conv_w, raw_original,
    )  # fmt: skip
    if _EPILOGUE is None:
        load()
    with _on_device(raw):
        _EPILOGUE[grid](*args, **meta)
    return out


def _epilogue_launch(raw, batch, phases, taps, pad0, d, bias, noise, w1t, b1, w2, b2, term, s,
                     rgb, rgb_b, up, up_taps, up_pad0, prompts, conv_w=None,
                     raw_original=None) -> tuple:  # fmt: skip
    """The custom op's outputs, allocated, and the (grid, arguments, constexprs and launch
    options) of the layer-epilogue kernel's launch that writes them (also what
    :mod:`benchmarks.triton_aot` compiles for GPUs it does not have). Each stacked tensor goes
    to the kernel as its two streams' parts (views: no copies)."""
    has_next, has_rgb = s is not None, rgb is not None
    conv = conv_w is not None
    out = _epilogue_out(raw, batch, phases, taps, has_next, has_rgb, conv_w)
    x, mask, sk = out
    c, h, w = _epilogue_shape(raw, phases, taps, conv_w)
    hw = h * w
    if taps is not None and not 0 <= pad0 <= taps.shape[0]:
        raise ConfigError(f"layer epilogue: blur padding {pad0} outside 0..{taps.shape[0]}")
    if up is not None and (up_taps is None or not 0 <= up_pad0 <= up_taps.shape[0]):
        raise ConfigError(f"layer epilogue: the skip's up-sampling filter or padding {up_pad0}")
    if d.shape[-1] < c:
        raise ConfigError(f"layer epilogue: rows of {d.shape[-1]} for {c} channels")
    cin = raw.shape[1]
    if conv and (taps is not None or conv_w.shape[0] != 9 * cin or c > MAX_CONV_CHANNELS):
        raise ConfigError(
            f"layer epilogue: a {tuple(conv_w.shape)} conv weight for {cin} input channels "
            f"(3x3, at most {MAX_CONV_CHANNELS} out, no blur)"
        )
    if max(raw[0].numel(), c * hw) >= 2**31:  # the kernel's 32-bit offsets within a sample
        raise ConfigError(f"layer epilogue: maps of {tuple(raw.shape[1:])} per sample")
    if raw_original is not None:
        want = (batch, 4 * c if phases else c, *raw.shape[2:])
        same = raw_original.dtype == raw.dtype and raw_original.device == raw.device
        if not conv or tuple(raw_original.shape) != want or not same:
            raise ConfigError(
                f"layer epilogue: the original's conv output {tuple(raw_original.shape)} "
                f"{raw_original.dtype}, expected {want} {raw.dtype} with the conv in the kernel"
            )
        raw_original = raw_original.contiguous(memory_format=torch.channels_last)
    block_p, block_c, warps, stages = epilogue_blocks(c, hw, taps is not None, conv, phases,
                                                      raw_original is not None,
                                                      has_rgb)  # fmt: skip
    raw = raw.contiguous(memory_format=torch.channels_last)  # as cuDNN gives it (else a copy)
    spare = b1  # what an unused pointer argument points at (never read)

    def arg(t: torch.Tensor | None) -> torch.Tensor:
        return spare if t is None else t.contiguous()

    def parts(t: torch.Tensor | None) -> tuple:  # (original's, edited's) rows of a stacked one
        return (spare, spare) if t is None or t.numel() == 0 else (t[:batch], t[batch:])

    raw_o, raw_e = parts(raw)
    args = (
        raw_o if raw_original is None else raw_original,
        raw_e,
        *parts(arg(d)),
        arg(bias),
        arg(noise),
        w1t,
        b1,
        arg(term),
        w2,
        b2,
        *parts(None if s is None else arg(s)),
        *parts(x),
        mask,
        *parts(None if rgb is None else arg(rgb)),
        arg(rgb_b),
        *parts(None if up is None else arg(up)),
        arg(up_taps),
        arg(taps),
        arg(conv_w),
        *parts(sk),
        hw,
        w,
        c,
        b1.shape[0],
        prompts,
        d.shape[-1],
        raw.shape[2],
        raw.shape[3],
        cin if conv else 0,
    )
    meta = {
        "HAS_NOISE": noise is not None,
        "HAS_TERM": term is not None,
        "HAS_NEXT": has_next,
        "HAS_RGB": has_rgb,
        "HAS_SKIP": up is not None,
        "PHASES": phases,
        "PHASE_BLUR": taps is not None,
        "TAPS": 1 if taps is None else taps.shape[0],
        "PAD0": pad0,
        "UP_TAPS": 1 if up_taps is None else up_taps.shape[0],
        "UP_PAD0": up_pad0,
        "CLAMP": raw.dtype == torch.float16,
        "HIDDEN": _dot_width(b1.shape[0]),
        "CONV": conv,
        "CONV_O": conv and raw_original is None,
        "BLOCK_K": min(64, _dot_width(cin)),
        "num_warps": warps,
        "num_stages": stages,
    }
    meta = with_options(meta, c, BLOCK_P=block_p, BLOCK_C=block_c)
    return out, ((raw.shape[0] - batch) * hw // block_p,), args, meta


def with_options(meta: dict, channels: int, **options) -> dict:
    """The layer epilogue's constexprs and launch options ``meta`` with ``options`` (blocks,
    warps, stages) in their place, and ONE_STEP, which follows from the channel block: with
    the in-kernel blur and every one of the ``channels`` in one step, the second pass reuses
    the first's features of the original stream instead of gathering its taps again (not
    without the blur: there the second read is one load from cache, and keeping the features
    costs 2-8 registers and, at 64 channels, 8 bytes of spills on an H100, by ptxas). The conv
    in the kernel (CONV) needs every channel in one step: a narrower block is refused. And
    FULL_C: the block holds the channels exactly, which the kernel then takes as a constant;
    and with 8 warps on at most 32 x 64 elements (8 a thread), no conv in the kernel, ptxas's
    register cap (``maxnreg``) that keeps three blocks an SM (:data:`MAX_REGISTERS_8_WARPS`);
    not with the in-kernel blur, whose 3x3 taps spilled 4-32 bytes under it at the small maps
    (all five targets) and 4 at 512 px (A100), and without it take 56-90 registers, no spills
    (occupancy 1/4 on an A100 at the small maps, 3/8 or more elsewhere), by ptxas.
    And RGB_TILE: the RGB skips as one [pixels, 4] tile, 72-96 fewer instructions than channel
    by channel on an H100 (by ptxas: 888 instead of 960 at 1024 px), except at 8 warps with
    every channel in the block (the 512 px ToRGB layer), where it took 104 registers instead of
    80 (occupancy 1/4 instead of 3/8) uncapped and spilled capped. And RELOAD_MASK, at the
    4-warp ToRGB launches with every channel in the block (the 1024 px one): the blends read the
    mask back from memory in the features' layout, instead of the features and ToRGB's
    products going to the mask's through shared memory: 776 instead of 888 instructions on an
    H100, registers within 2 on the five architectures. At the 512 px ToRGB launch it saved
    7 % but took an A100 from 80 to 88 registers (occupancy 3/8 to 1/4), and at the smaller
    maps' (several channel blocks) 8 % with 12 bytes of spills on an RTX 50: not there."""
    meta = {**meta, **options}
    one = bool(meta["PHASE_BLUR"] or meta["CONV"]) and channels <= meta["BLOCK_C"]
    if meta["CONV"] and not one:
        raise ConfigError(f"layer epilogue: the conv in the kernel needs all {channels} "
                          f"channels in one step, not {meta['BLOCK_C']}")  # fmt: skip
    meta["ONE_STEP"] = one
    meta["FULL_C"] = channels == meta["BLOCK_C"]
    meta.pop("maxnreg", None)
    small = meta["num_warps"] == 8 and meta["BLOCK_P"] * meta["BLOCK_C"] <= 2048
    wide_rgb = meta["FULL_C"] and meta["HAS_RGB"] and meta["num_warps"] == 8
    if small and not meta["CONV"] and not wide_rgb and not meta["PHASE_BLUR"]:
        meta["maxnreg"] = MAX_REGISTERS_8_WARPS
    meta["RGB_TILE"] = not wide_rgb
    meta["RELOAD_MASK"] = meta["HAS_RGB"] and meta["FULL_C"] and meta["num_warps"] == 4
    return meta


def epilogue_pixels(hw: int, phase_blur: bool, conv: bool = False, phases: bool = False) -> int:
    """The pixels a layer-epilogue block's pixels are cut from: the map's ``hw``, or with the
    in-kernel blur (or the sub-pixel conv, ``phases``, computed in the kernel, ``conv``) one
    parity class of it, ``hw / 4`` (every block divides it)."""
    return hw // 4 if phase_blur or (conv and phases) else hw


def launch_pixels(meta: dict, hw: int) -> int:
    """:func:`epilogue_pixels` of a launch with constexprs ``meta`` on maps of ``hw`` pixels."""
    return epilogue_pixels(hw, meta["PHASE_BLUR"], meta["CONV"], meta["PHASES"])


def epilogue_blocks(c: int, hw: int, phase_blur: bool, conv: bool = False,
                    phases: bool = False, edited_conv_only: bool = False, rgb: bool = True,
                    ) -> tuple[int, int, int, int]:  # fmt: skip
    """(pixels per program, channels per step, warps, pipeline stages) of the layer epilogue on
    ``c`` channels and ``hw`` pixels per map (:func:`epilogue_pixels`).

    Chosen from ptxas's reports for H100, RTX 40/30/50 and A100 (``python -m
    benchmarks.triton_aot``, no GPU needed): 32 pixels and 64 channels (fewer where the map has
    fewer) with 8 warps (4 at 32 channels: 8 elements, 16 bytes, per thread and load) take
    64-128 registers without spills, occupancy 1/4 or more, on every layer of ffhq-1024, where
    64 x 64 with 4 warps and 3 stages took 142-240 registers (occupancy 1/8 on an H100) and,
    with the in-kernel blur, 255 registers, 1.5 kB of spills per thread and 292 kB of shared
    memory, more than an H100 gives a block. Two pipeline stages (three buy little in a loop of
    plain loads and cost shared memory), one with the blur's gathered taps (loads of their own),
    three where the kernel computes the edited stream's conv only (see the code).

    Timed on an H100 and an H200 (the GPU check's ``epilogue_tuning``, 1024 px layers only),
    these were the fastest options tried except at the 32-channel launches without ToRGB, where
    128 pixels, 4 warps, 3 stages were 1.26x (H100) and 1.30x (H200) faster in place, at
    168-174 registers (occupancy 1/8), and 1.14x with the blur (H200), at 255 registers and
    spills; they spill 4-8 bytes on an RTX 50, by ptxas: not taken, 0.04 ms of a 2.4 ms edit
    for a choice per GPU architecture. The kernel is bound by the instructions it issues (see
    :mod:`benchmarks.triton_aot`), so those launches (32 channels, no ToRGB or blur: ``rgb``
    False) take 64 pixels with 4 warps, chosen by instruction counts, not timed: 1.48x fewer
    instructions per pixel than at 32 pixels (952 a program against 704, with float32 tails);
    with the FP16 tails 632 instructions, 68 registers, occupancy 7/16 on an H100, no spills on
    the five architectures. With ToRGB they stay at 32 pixels (with RELOAD_MASK: 776
    instructions, 62 registers, 1/2); 64 pixels are 1120 instructions, 78 registers, 3/8 (0.56
    instead of 0.78 ms of issue at batch 8), which the GPU check's tuning times. The 2x2 phases'
    1024 px launch (the blur's 3x3 taps summed in FP16, no ToRGB) takes 64 pixels too, not
    timed: both streams' taps summed in one loop, 792 instructions a program (0.40 ms of issue
    at batch 8; 0.71 at 32 pixels with a loop per stream), 76 registers (3/8) on an H100, 80-82
    (3/8-1/2) on the A100 and RTX cards, no spills, by ptxas."""
    block_c = min(64, _dot_width(c))
    pixels = epilogue_pixels(hw, phase_blur, conv, phases)
    # Triton's CPU interpreter runs each program as a series of numpy calls: there, 4096
    # elements a block make tests 3-5x faster (results do not depend on the blocks:
    # tests/bench/test_triton_tuning.py runs this kernel with every candidate block on one input)
    if _INTERPRET:
        block_p = min(pixels, 4096 // block_c)
    elif conv:
        block_p = min(pixels, CONV_PIXELS.get(block_c, 128))
    else:
        block_p = min(pixels, 64 if block_c == 32 and not rgb else 32)  # (blur or not)
    if pixels % block_p or block_p < MIN_DOT:
        raise ConfigError(f"layer epilogue: {hw} pixels per map do not make blocks of {block_p}")
    if conv:  # the edited stream's conv only (several prompts per latent): with 2 stages
        # ptxas spilled 4-44 bytes on an RTX 50 (sm_120) in three of the four 1024 and 512 px
        # launches, with 3 none on any of the five (more shared memory: 31-61 kB on an H100)
        return block_p, block_c, CONV_WARPS, 3 if edited_conv_only else 2
    warps = 8 if block_c >= 64 else 4
    return block_p, block_c, warps, 1 if phase_blur else 2


@_epilogue_op.register_fake
def _(raw, batch, phases, taps, pad0, d, bias, noise, w1t, b1, w2, b2, term, s, rgb, rgb_b, up,
      up_taps, up_pad0, prompts, conv_w, raw_original):  # fmt: skip
    return _epilogue_out(raw, batch, phases, taps, s is not None, rgb is not None, conv_w)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
