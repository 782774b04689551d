"""PyTorch backend: the bundle's networks rebuilt from ``torch/`` with ``mcaclip.nn``.

With its GPU fast path (:mod:`mcaclip.runtime.kernels`), the only runtime code that imports the
networks (see DESIGN.md). It runs the very modules the ONNX graphs were exported from
(:mod:`mcaclip.nn.graphs`), so feeds and outputs match.

On a CUDA GPU it is also a fast path:

* ``precision="fp16"``: the generator side (masked generator, mask net, mapping) runs in half
  precision with FP32 inputs and outputs; the networks keep PixelNorm, demodulation and the RGB
  skip in FP32 and clamp FP16 activations at +-256. Fusion and mapper (a few MFLOP) stay FP32.
* ``fold_blur`` (default with FP16 on a GPU, unless the 2x2 phase form is: see ``phase_conv``):
  each up-sampling conv and its FIR blur run as one transposed conv
  (:func:`mcaclip.nn.stylegan2.fold_blur`).
* ``subpixel`` (default with the folded blur for FP16 on a GPU): each folded up-sampling conv as
  a plain 3x3 conv with four output phases and a pixel shuffle
  (:func:`mcaclip.nn.stylegan2.subpixel`): cuDNN ran the folded 6x6 kernels as transposed-conv
  (dgrad) kernels at 193 TFLOP/s on an H100 at 64 -> 32 channels, and the phases as a forward
  conv at 623 TFLOP/s; uncompiled, the shuffle's copy takes back most of that (same end to
  end).
* ``phase_conv`` (instead of ``fold_blur``; default where the Triton epilogues are, unless
  ``fold_blur``, ``subpixel`` or ``triton_convs`` is given, and **chosen by counts, not timed as a
  whole**: run 4's cuDNN timings of its convs and ptxas's of its epilogues, below; the GPU check
  times it against the sub-pixel form, ``--no-phase-conv``): each up-sampling conv as a plain 2x2
  conv with four output phases and a pixel shuffle, then the FIR blur
  (:func:`mcaclip.nn.stylegan2.phase_conv`): the forward-conv rate of the sub-pixel form at 16
  instead of 36 taps per four output pixels (the folded 6x6 kernel has 36 per four; the transposed
  3x3 conv 9; with StyleGAN2's blur all 16 do work: the conv takes the blur's (1, 1) factor, and the
  filter after it is the (1, 2, 1) rest, 3x3 taps instead of 4x4). The blur is a pass of its own in
  eager mode and fused into the tail under ``compile``. The sub-pixel form runs 1.9x the
  multiply-adds of the transposed convs in a 1024 px synthesis, this one 1.24x. On an H200 its convs
  take 5.6 instead of 8.2 ms per batch-8 call at 1024 px (run 4; with the Triton epilogues see
  ``triton_epilogues``); compiled, with ``triton_masks``, 2.40 ms per edit on an H100, as fast as
  the compiled default (2.39). Not the CPU default: 0.86x / 0.88x the speed of the CPU default
  (transposed convs, fused tails) at batch 1 / 4, measured without the blur's (1, 1) factor in the
  conv (7 of its 16 taps zero, at their full price, and 4x4 taps after it).
* ``channels_last`` (FP16 only; default with the folded blur or the 2x2 phases): NHWC
  activations for cuDNN's tensor cores.
* ``fuse_tails`` (default on the CPU and for FP16 on a GPU without ``compile`` or the Triton
  epilogues): each styled conv's element-wise tail in three passes instead of up to six, each
  mask blend in one instead of three, ToRGB as a matrix product
  (:func:`mcaclip.nn.stylegan2.fuse_tails`). Measured 1.24x / 1.32x at batch 1 / 4 on a 256 px
  CPU masked generator (``benchmarks/switches_cpu.py``), 1.03x / 1.38x at batch 1 / 8 for a
  1024 px FP16 edit on an H100. ``compile`` fuses the plain form itself.
* ``stack_streams`` (default for FP16 on a GPU without ``compile`` or the Triton epilogues;
  within the noise on the CPU: 0.94x-1.07x over two runs): the original and edited streams as
  one batch through every styled conv and ToRGB, half the kernels at twice the batch
  (:func:`mcaclip.nn.editor.stack_streams`); 1.22x / 1.05x at batch 1 / 8 on an H100 on top
  of the fused tails. Off under ``compile``, where its one measurement (7.6 instead of 2.6 ms
  per edit at batch 8, torch 2.11) had graph breaks at the in-place blends, which the blends
  no longer cause (:func:`mcaclip.nn.editor._lerp_into`); not measured without them.
* ``cudnn_benchmark`` (off): let cuDNN time its algorithms for each new shape (the first call
  per shape is slower; CUDA graphs capture the winner) instead of its heuristics; it changed
  nothing measurable on an H100.
* ``triton_masks`` (off; FP16 NHWC on a GPU; only without ``triton_epilogues``, which do the
  mask heads themselves): each PRE mask head as one Triton kernel
  (:mod:`mcaclip.runtime.kernels.mask_head`) instead of two convolutions, a ReLU pass and a
  sigmoid pass over a [B, 32, H, W] hidden map; estimated 0.24 ms less per 1024 px edit. Run on an
  H100 (the ``gpu`` tests; 54.1 dB against FP32, as the default), not timed alone.
* ``triton_epilogues`` (default on a GPU of compute capability 8.0+ with Triton installed, in FP16
  NHWC with the 2x2 phase or the sub-pixel convs, unless ``fuse_tails``, ``stack_streams`` or
  ``triton_masks``, which it replaces, is asked for; elsewhere off): everything between two styled
  convs of the masked generator (both streams' tails, the mask head, the blend, ToRGB and the
  blended RGB skip, the next conv's input modulation) as one Triton kernel that reads the two conv
  outputs and writes only the next convs' inputs, the mask and the skips
  (:mod:`mcaclip.runtime.kernels.synthesis`); by our count it takes the memory traffic between two
  convs of a 1024 px edit from about 18 feature maps to 8. It reads the sub-pixel phases in place,
  and with ``phase_conv`` it shuffles and blurs the 2x2 phases itself (no blurred copy in memory).
  It replaces the fused tails and the stacked streams (both off by default with it). Checked against
  PyTorch in Triton's CPU interpreter and, on an H100, by the ``gpu`` tests and at 1024 px (55.1 dB
  against FP32, the closest of all forms). Batch 8, ms per 1024 px edit on the device: 2.64 instead
  of 5.54 (H100) and 2.58 instead of 5.05 (H200) with CUDA graphs, 2.39 instead of 2.61 compiled
  (H100); batch 1 not timed. With ``phase_conv`` the kernel's blur sums 3x3 taps in FP16, which by
  ptxas (not timed) puts the epilogues at 2.8 instead of 2.5 ms of issue per batch-8 call (sm_90),
  against 2.5 ms less in cuDNN's convs (5.6 instead of 8.2 ms, run 4's H200): about 2 ms less per
  call (0.25 ms per edit) if the kernel runs at 1.4-1.6x its issue time, as in run 4, hence the
  default (a blur of 4x4 float32 taps per element measured 3.34 ms per edit on an H200, slower than
  the sub-pixel form). The GPU check's bench times both (``--no-phase-conv``: the sub-pixel form
  with the epilogues).
* ``triton_convs`` (off; implies ``triton_epilogues``): the epilogue kernel also computes the
  3x3 and sub-pixel convs of at most 64 output channels (the 512 and 1024 px layers of
  ffhq-1024) as an implicit GEMM on the tensor cores (with one prompt per latent both streams
  in one loop, each weight tile read once for the two), from the modulated input the previous
  epilogue wrote, so that those convs' outputs never go through memory (at batch 8, 1.07 GB
  per 1024 px layer written and read back otherwise); it also keeps them in FP32 (59 instead
  of 55.5 dB against FP32 on the tiny preset, in the interpreter). With several prompts per
  latent, cuDNN computes the original stream's conv once (in FP16, as without the switch:
  the originals then differ from one prompt's by rounding) and the kernel the edited
  stream's. Compiles without spills on sm_80/86/89/90/120 by ptxas; **not timed on a GPU**
  (the GPU check's bench and compile variants time it). ``triton_convs="auto"``
  (``--triton-convs-auto``): only at the layers where that was faster on this GPU, timed per
  layer both ways at the first call of each batch shape (:class:`ConvTuner`,
  :func:`mcaclip.runtime.kernels.tuning.tune`; ``conv_tuning`` has the times and the choice).
* ``cuda_graphs``: each graph (and the whole edit) is captured once per input shape and replayed
  (:class:`mcaclip.runtime.kernels.cuda_graphs.CudaGraphed`), which removes the launch
  overhead of the ~300 kernels of a 1024 px edit.
* ``compile``: ``torch.compile`` of the masked generator (fuses the element-wise tails); its
  FIR filters become sums of shifted slices (:func:`mcaclip.nn.stylegan2.stencil_blur`), which
  the compiler fuses too, where a depthwise convolution would stay a kernel of its own.
  ``compile="max-autotune"`` also lets Inductor time Triton templates against cuDNN for each
  conv, with the element-wise tail fused into a template where one wins (minutes of tuning per
  shape; not measured on a GPU).

The weights each conv runs with (scaled, folded, in phases, NHWC) are computed once per
module (:func:`mcaclip.nn.stylegan2.freeze_weights`), not on every call.

``TorchEditor.edit`` runs fusion -> mapper -> masked generator on device tensors: one host to
device copy of the latents and one copy of the results back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mcaclip.runtime.backends.base import BackendError, DeviceEditor, DeviceRunner
from mcaclip.runtime.kernels.cuda_graphs import CudaGraphed

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16")
HALF_GRAPHS = ("mapping", "masknet", "masked_generator")  # the generator side
# the compile argument -> the configuration (None: not compiled)
COMPILE_MODES = {False: None, None: None, True: "default", "default": "default",
                 "max-autotune": "max-autotune"}  # fmt: skip


class TorchRunner(DeviceRunner):
    def __init__(
        self,
        name: str,
        module: Callable,
        inputs: list[str],
        outputs: list[str],
        device: str = "cpu",
    ):
        self.name = name
        self.module = module
        self.input_names, self.output_names = inputs, outputs
        self.device = torch.device(device)

    def infer_device(self, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Device tensors in, device tensors out (no host copies)."""
        with torch.inference_mode():
            out = self.module(*args)
        return out if isinstance(out, tuple) else (out,)


class TorchEditor(DeviceEditor):
    """Loads ``BUNDLE/torch/editor.safetensors`` once; hands out one runner per graph and runs
    whole edits on the device (:meth:`edit`)."""

    def __init__(
        self,
        root: Path,
        random_weights: bool,
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graphs: bool = False,
        compile: bool | str = False,
        channels_last: bool | None = None,
        fold_blur: bool | None = None,
        fuse_tails: bool | None = None,
        stack_streams: bool | None = None,
        subpixel: bool | None = None,
        phase_conv: bool | None = None,
        cudnn_benchmark: bool | None = None,
        triton_masks: bool | None = None,
        triton_epilogues: bool | None = None,
        triton_convs: bool | str | None = None,
    ):
        from mcaclip.nn.editor import MCAEditor

        if triton_convs not in (None, False, True, "auto"):
            raise BackendError(f"triton_convs={triton_convs!r}: use None, False, True or 'auto'")
        # the flag typed (refusals, warnings and TritonGuard's line name it)
        self.convs_flag = convs_flag = (
            "--triton-convs-auto" if triton_convs == "auto" else "--triton-convs"
        )
        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r}: choose fp32 or fp16")
        if compile not in COMPILE_MODES:
            raise BackendError(f"compile={compile!r}: use False, True, 'default' or 'max-autotune'")
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise BackendError(f"device {device!r}: use cpu, cuda or cuda:N") from None
        gpu_only = [
            flag
            for flag, on in (
                ("--precision fp16", precision == "fp16"),
                ("CUDA graphs", cuda_graphs),
                ("--compile-autotune" if compile == "max-autotune" else "--compile", compile),
                ("--cudnn-benchmark", cudnn_benchmark),
                ("--triton-masks", triton_masks),
                ("--triton-epilogues", triton_epilogues),
                (convs_flag, triton_convs),
            )
            if on
        ]
        if self.device.type != "cuda" and gpu_only:
            raise BackendError(
                f"{' and '.join(gpu_only)} on the torch backend need a CUDA GPU; use --device "
                "cuda on a GPU machine, or --precision fp32 --no-cuda-graphs on CPU"
            )
        if channels_last and precision != "fp16":
            raise BackendError(
                "--nhwc lays out the FP16 graphs: add --precision fp16 (on a GPU), or drop --nhwc"
            )
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(
                "--device cuda: PyTorch sees no CUDA GPU here (check nvidia-smi and that the "
                "installed torch is a CUDA build)"
            )
        path = root / "torch" / "editor.safetensors"
        if not path.is_file():
            raise BackendError(f"{path}: missing; this bundle has no PyTorch weights, rebuild it")
        self.editor = MCAEditor.load(path, random_weights=random_weights).to(self.device).eval()
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.compile = COMPILE_MODES[compile]  # None, "default" or "max-autotune"
        # Defaults are what the GPU check measured faster on an H100 (FP16, batch 1 and 8,
        # benchmarks/results/gpu_check*.json; the 2x2 phase convs with the Triton epilogues: chosen
        # by counts, see the module docstring) or, on the CPU, benchmarks/switches_cpu.py; any
        # switch can be forced either way. Folding the blur into the up-sampling convs removes a
        # depthwise FIR pass; NHWC is 1.6x slower with the separate blur and faster with the folded
        # one; the sub-pixel form runs the folded convs 3.2x faster (same end to end without
        # compile); fused tails 1.38x at batch 8 (compile fuses the plain form itself); stacked
        # streams 1.22x at batch 1; cuDNN's algorithm timing changed nothing.
        fast = self.device.type == "cuda" and precision == "fp16"
        if phase_conv and fold_blur:
            raise BackendError(
                "--phase-conv is a form of the unfolded up-sampling conv (the blur runs after "
                "it): drop --fold-blur"
            )
        # the Triton epilogues' default needs FP16 NHWC on a GPU they compile for, masks, and
        # none of the switches they replace; with them, the 2x2 phase convs
        epilogue_default = (
            fast
            and channels_last is not False
            and self.editor.use_masks
            and not (fuse_tails or stack_streams or triton_masks)
            and _triton_compiles_for(self.device)
        )
        if phase_conv is None:
            phase_conv = _phase_conv_default(
                epilogue_default, fold_blur, subpixel, triton_epilogues, triton_convs
            )
        self.phase_conv = bool(phase_conv)
        self.fold_blur = fast and not self.phase_conv if fold_blur is None else fold_blur
        if channels_last is None:
            channels_last = (self.fold_blur or self.phase_conv) and precision == "fp16"
        self.channels_last = channels_last
        if subpixel and not self.fold_blur:
            raise BackendError(
                "--subpixel is a form of the folded blur: add --fold-blur (the default only "
                "for fp16 on a GPU), or drop --subpixel"
            )
        self.subpixel = fast and self.fold_blur if subpixel is None else subpixel
        # the Triton epilogues (they replace the tails, the blends and the stacking): on by
        # default, 2.1x faster per 1024 px edit at batch 8 on an H100 and on an H200, compiled
        # or not, in the sub-pixel form (FP16 NHWC), on a GPU they compile for (compute
        # capability 8.0 or newer) with Triton there; not where a switch they replace is asked
        # for (it would run for nothing). In the 2x2 phase form by default since its blur got
        # cheap (see phase_conv in the module docstring: chosen by counts, not timed yet)
        implied = bool(triton_convs) and triton_epilogues is None
        if implied:  # the convs run in that kernel
            triton_epilogues = True
        if triton_epilogues is None:
            triton_epilogues = (
                epilogue_default and bool(channels_last) and (self.subpixel or self.phase_conv)
            )
        epilogues = bool(triton_epilogues) and self.editor.use_masks
        if fuse_tails is None:
            fuse_tails = self.device.type == "cpu" or (fast and not compile and not epilogues)
        self.fuse_tails = fuse_tails
        # an editor without masks runs one synthesis stream: nothing to stack
        if stack_streams and not self.editor.use_masks:
            log.warning("--stack-streams: this bundle's editor has no masks (one stream); ignored")
        if stack_streams is None:  # under compile: not measured since a fix (module docstring)
            stack_streams = fast and not compile and not epilogues
        self.stack_streams = stack_streams and self.editor.use_masks
        self.cudnn_benchmark = bool(cudnn_benchmark)
        for flag, on in (  # a refusal or warning names the flag typed, not one it implies
            ("--triton-masks", triton_masks),
            ("--triton-epilogues", triton_epilogues and not implied),
            (convs_flag, triton_convs),
        ):
            if on and not (precision == "fp16" and self.channels_last):
                raise BackendError(
                    f"{flag} runs on FP16 NHWC features: use --precision fp16 with --nhwc (the "
                    "default with the folded blur)"
                )
            if on and not self.editor.use_masks:
                log.warning("%s: this bundle's editor has no masks; ignored", flag)
        self.triton_masks = bool(triton_masks) and self.editor.use_masks
        self.triton_epilogues = epilogues
        if triton_convs and not triton_epilogues:
            raise BackendError(
                f"{convs_flag} computes convs in the Triton epilogue kernel: drop "
                "--no-triton-epilogues"
            )
        # False, True (every conv that fits in the kernel) or "auto" (where it was faster)
        self.triton_convs = triton_convs if triton_convs and epilogues else False
        self._modules: dict[str, Callable] = {}
        # --triton-convs-auto: the batch signatures timed and what was chosen, shared by
        # every module this editor builds (the graphed one and the stages': the same network)
        self._tuned: set[tuple] = set()
        self._conv_chosen: dict = {}
        self._conv_timings: dict = {}

    @property
    def mode(self) -> str:
        """A short name of the configuration, e.g. ``cuda-fp16-cudagraphs``."""
        parts = [self.device.type, self.precision]
        for on, word in (
            (self.channels_last, "nhwc"),
            (self.fold_blur, "foldblur"),
            (self.subpixel, "subpixel"),
            (self.phase_conv, "phaseconv"),
            (self.cudnn_benchmark, "cudnnbench"),
            (self.fuse_tails, "fused"),
            (self.stack_streams, "stacked"),
            (self.triton_masks, "tritonmask"),
            (self.triton_epilogues, "tritonepi"),
            (self.triton_convs, "tritonconvauto" if self.triton_convs == "auto" else "tritonconv"),
        ):
            if on:
                parts.append(word)
        if self.compile:
            parts.append("compile" if self.compile == "default" else "compile-autotune")
        parts.append("cudagraphs" if self.cuda_graphs else "eager")
        return "-".join(parts)

    @property
    def conv_tuning(self) -> dict:
        """With ``triton_convs="auto"``: per batch shape timed ("b8p1": batch 8, one prompt per
        latent), what :func:`mcaclip.runtime.kernels.tuning.tune` measured per styled conv's
        layer (ms with the conv in cuDNN and in the kernel) and chose; empty otherwise."""
        return {f"b{batch}p{prompts}": t for (batch, prompts), t in self._conv_timings.items()}

    def _module(self, name: str, graphed: bool) -> Callable:
        """The graph module at this backend's precision (cached)."""
        from mcaclip.nn.editor import stack_streams
        from mcaclip.nn.graphs import Fp16Graph, build_graph
        from mcaclip.nn.stylegan2 import (
            fold_blur,
            freeze_weights,
            fuse_tails,
            phase_conv,
            stencil_blur,
            subpixel,
        )
        from mcaclip.runtime.kernels.mask_head import triton_masks
        from mcaclip.runtime.kernels.synthesis import epilogue_plans, triton_epilogues

        key = f"{name}:{graphed}"
        if key not in self._modules:
            module = build_graph(self.editor, name).eval()
            if self.precision == "fp16" and name in HALF_GRAPHS:
                module = Fp16Graph(module, channels_last=self.channels_last).eval()
            if self.fold_blur:
                fold_blur(module)
            if self.subpixel:
                subpixel(module)
            if self.phase_conv:
                phase_conv(module)
            if self.fuse_tails:
                fuse_tails(module)
            if self.stack_streams:
                stack_streams(module)
            if self.triton_masks:
                triton_masks(module)
            if self.triton_epilogues:
                triton_epilogues(module, convs=self.triton_convs)
            # the modulated convs' weights (masked generator), and the equalized-lr linear
            # layers' (mapper, mapping network, style affines): once, after every switch
            freeze_weights(module, channels_last=self.channels_last)
            eager = module
            if self.compile and name == "masked_generator":
                # our own CUDA graphs wrap the whole edit: Inductor must not capture its own
                mode = None if self.compile == "default" else "max-autotune-no-cudagraphs"
                module = torch.compile(stencil_blur(module), dynamic=False, mode=mode)
            if self.cudnn_benchmark:
                module = CudnnBenchmark(module)
            if self.triton_convs == "auto" and name == "masked_generator":
                plans = epilogue_plans(eager)
                for plan in plans:  # one choice per batch shape for all of this editor's
                    plan.chosen, plan.timings = self._conv_chosen, self._conv_timings
                # timed as it runs: with cuDNN's algorithm timing where that is on
                timed = CudnnBenchmark(eager) if self.cudnn_benchmark else eager
                module = ConvTuner(module, timed, plans, self._tuned)
            if graphed:
                module = CudaGraphed(module)
            kernels = [f for f, on in ((self.convs_flag, self.triton_convs),
                                       ("--triton-epilogues", self.triton_epilogues),
                                       ("--triton-masks", self.triton_masks)) if on]  # fmt: skip
            if kernels and name == "masked_generator":
                module = TritonGuard(module, kernels)
            self._modules[key] = module
        return self._modules[key]

    def runner(self, name: str, inputs: list[str], outputs: list[str]) -> TorchRunner:
        return TorchRunner(
            name, self._module(name, self.cuda_graphs), inputs, outputs, str(self.device)
        )

    def stage(self, name: str) -> Callable[..., tuple[torch.Tensor, ...]]:
        module = self._module(name, False)

        def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            with torch.inference_mode():  # the fused tails and stacked blends work in place
                return _tuple(module(*args))

        return run


class CudnnBenchmark:
    """Calls ``fn`` with cuDNN's algorithm timing on (``torch.backends.cudnn.benchmark``), and
    the caller's setting back afterwards: the process-wide flag is not left changed."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *args: torch.Tensor):
        # not cudnn.flags(): its defaults for the arguments not given differ between versions
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            return self.fn(*args)
        finally:
            torch.backends.cudnn.benchmark = before


class ConvTuner:
    """Calls ``fn``; before its first call with a new input signature, times each layer whose
    conv the epilogue kernel can compute, that way and with cuDNN's conv, on these inputs,
    through ``eager`` (the same module uncompiled), and keeps the faster per layer
    (``--triton-convs-auto``, :func:`mcaclip.runtime.kernels.tuning.tune`). Under CUDA graphs it
    runs in the first warm-up call, before the capture."""

    def __init__(self, fn: Callable, eager: Callable, plans: list, tuned: set | None = None):
        self.fn = fn
        self.eager = eager
        self.plans = plans
        # the signatures timed: shared by tuners whose plans share their choices (``chosen``)
        self._tuned: set[tuple] = set() if tuned is None else tuned

    def __call__(self, *args: torch.Tensor):
        from mcaclip.runtime.kernels import tuning

        key = CudaGraphed.signature(args)
        if key not in self._tuned:
            with torch.inference_mode():
                tuning.tune(self.plans, lambda: self.eager(*args))
            self._tuned.add(key)
        return self.fn(*args)


class TritonGuard:
    """Calls ``fn``; an error Triton raises compiling or launching our kernels on this GPU (a
    GPU they have not run on) becomes a one-line :class:`BackendError` naming the switch that
    avoids them, instead of a compiler's traceback."""

    def __init__(self, fn: Callable, flags: list[str]):
        self.fn = fn
        self.flags = flags

    def __call__(self, *args: torch.Tensor):
        try:
            return self.fn(*args)
        except Exception as exc:
            if not _raised_by_triton(exc):
                raise
            off = " ".join(_negative(f) for f in self.flags)
            line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise BackendError(
                f"our Triton kernels ({', '.join(self.flags)}) failed on this GPU "
                f"({type(exc).__name__}: {line}); run with {off} (the PyTorch form) and "
                "please report it"
            ) from exc


def _negative(flag: str) -> str:
    """The option that turns ``flag`` off: ``--no-triton-convs`` for ``--triton-convs-auto``."""
    return "--no-triton-convs" if flag == "--triton-convs-auto" else flag.replace("--", "--no-", 1)


def _raised_by_triton(exc: BaseException) -> bool:
    """Whether Triton raised ``exc`` (its compiler, its launcher, or a CUDA error it reports)."""
    return type(exc).__module__.split(".")[0] == "triton" or str(exc).startswith("Triton Error")


def _phase_conv_default(
    epilogue_default: bool, fold_blur, subpixel, triton_epilogues, triton_convs
) -> bool:
    """Whether the up-sampling convs default to the 2x2 phase form: where the Triton epilogues
    are the default (``epilogue_default``) and not switched off, their kernel blurring the
    phases, unless another up-sampling form (``fold_blur`` or ``subpixel``, given either way)
    or the convs in the kernel (written for the sub-pixel convs) are asked for."""
    return bool(
        epilogue_default
        and triton_epilogues is not False
        and fold_blur is None
        and subpixel is None
        and not triton_convs
    )


def _triton_compiles_for(device: torch.device) -> bool:
    """Whether Triton is installed and ``device`` is a GPU our kernels were compiled for ahead
    of time (compute capability 8.0 or newer: A100, RTX 30/40/50, H100; benchmarks/triton_aot)."""
    import importlib.util

    return (
        device.type == "cuda"
        and importlib.util.find_spec("triton") is not None
        and torch.cuda.get_device_capability(device) >= (8, 0)
    )


def _tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)
