"""``--triton-convs-auto``: per styled conv's layer, whether the epilogue kernel or cuDNN
computes its conv, chosen by timing both on this GPU.

:func:`tune` runs the masked generator eagerly on the real inputs of a new batch shape with
every conv in cuDNN, then with every conv that fits in the kernel
(:func:`mcaclip.runtime.kernels.synthesis.fits_kernel`), times each layer (its conv and its
epilogue) with a :class:`LayerClock`, and records per layer the faster form in the
:class:`~mcaclip.runtime.kernels.synthesis.Plan`, which every later call at that shape reads
(:meth:`~mcaclip.runtime.kernels.synthesis.Plan.in_kernel`), compiled or in a CUDA graph. The
torch backend calls it through its ``ConvTuner`` before the first call of each shape.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable

import torch

from mcaclip.runtime.kernels import triton_ops
from mcaclip.runtime.kernels.synthesis import Plan

log = logging.getLogger(__name__)


class LayerClock:
    """Marks taken at each styled conv's start and after the last (the epilogue fast path's
    :func:`~mcaclip.runtime.kernels.synthesis.run` calls it while :func:`tune` times);
    :meth:`layers` gives the milliseconds between them, per styled conv. On a GPU: CUDA
    events, with the GPU held busy while the call is queued (so that the marks time the GPU's
    work, not the launches' Python); elsewhere (Triton's interpreter) the wall clock."""

    HOLD_CYCLES = 50_000_000  # ~30 ms at 1.5-2 GHz: longer than queuing an eager call

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.marks: list = []
        self.key = None  # (batch, prompts) of the call timed, set by synthesis.run()

    def start(self) -> None:
        self.marks = []
        if self.cuda and hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(self.HOLD_CYCLES)

    def __call__(self, j: int) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def layers(self) -> list[float]:
        if self.cuda:
            torch.cuda.current_stream().synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def tune(plans: list, call: Callable[[], object], repeats: int = 3, clock=None) -> None:
    """For each ``"auto"`` plan in ``plans``: time every styled conv's layer (its conv and its
    epilogue) with the conv in cuDNN and, where it fits, in the kernel, over ``repeats`` calls
    each after one call that warms up (Triton compiles, cuDNN picks), and keep per layer the
    form with the lower median (``plan.chosen`` at the call's (batch, prompts); what was timed
    in ``plan.timings``, keyed by (batch, prompts)). ``call()`` runs the module eagerly on the
    real inputs (not compiled, not inside a CUDA graph capture). A kernel form this GPU
    refuses for its resources (see :func:`mcaclip.runtime.kernels.triton_ops.refused`) leaves
    every conv in cuDNN, with a warning; any other error propagates. ``clock``: a
    :class:`LayerClock` (default: for the plan's device)."""
    for plan in plans:
        fits = plan.fits
        if not plan.auto or not any(fits):
            continue
        timer = clock or LayerClock(plan.affine.is_cuda)
        timer.key = None
        medians, refusal = {}, None
        for form, override in (("cudnn", (False,) * len(fits)), ("kernel", fits)):
            try:
                with _on(plan.affine.device):  # the events and the hold on the plan's GPU
                    runs = _timed_calls(plan, override, call, repeats, timer)
            except Exception as exc:
                if form != "kernel" or not triton_ops.refused(exc):
                    raise
                refusal = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                break
            if timer.key is None or any(len(r) != len(fits) for r in runs):
                break  # the call did not take the kernel's path (synthesis.usable()): not timed
            medians[form] = [statistics.median(t) for t in zip(*runs)]
        if "cudnn" not in medians or (refusal is None and "kernel" not in medians):
            continue
        if refusal is not None:
            log.warning("--triton-convs-auto: this GPU refused the kernel with the convs (%s); "
                        "every conv stays in cuDNN", refusal)  # fmt: skip
            chosen = (False,) * len(fits)
        else:
            chosen = tuple(
                f and k < c for f, c, k in zip(fits, medians["cudnn"], medians["kernel"])
            )
        plan.chosen[timer.key] = chosen
        plan.timings[timer.key] = {
            "cudnn_ms": medians["cudnn"],
            "kernel_ms": medians.get("kernel"),
            "fits": list(fits),
            "in_kernel": list(chosen),
            "refused": refusal,
        }
        log.info("--triton-convs-auto at batch %s x %s prompts: the kernel computes the convs "
                 "of layers %s", *timer.key, [j for j, c in enumerate(chosen) if c])  # fmt: skip


def _on(device: torch.device):
    """The context that makes ``device`` current (a GPU; nothing for the CPU)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _timed_calls(plan: Plan, override: tuple, call: Callable, repeats: int, timer) -> list:
    """``repeats`` calls with the convs in the kernel as ``override`` says, after one that
    warms up: the per-layer milliseconds of each."""
    plan.override = override
    try:
        call()
        runs = []
        for _ in range(repeats):
            timer.start()
            plan.clock = timer
            try:
                call()
            finally:
                plan.clock = None
            runs.append(timer.layers())
        return runs
    finally:
        plan.override = None
