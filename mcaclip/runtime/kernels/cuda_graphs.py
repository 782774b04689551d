"""CUDA graphs of the device backends: a function of tensors captured once per input
signature and replayed (:class:`CudaGraphed`), which removes the launch overhead of the few
hundred kernels of an edit. The torch backend wraps its graphs and whole edits in it, the
TensorRT backend its whole edits (:meth:`mcaclip.runtime.backends.base.DeviceEditor.edit_device`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

log = logging.getLogger(__name__)


class CudaGraphed:
    """``fn(*tensors) -> tuple of tensors``, replayed from one CUDA graph per input signature.

    The first call with a new (shape, dtype) signature warms ``fn`` up on a side stream and
    captures it; later calls copy the inputs into the graph's static buffers and replay. The
    returned tensors are the graph's static outputs: they are overwritten by the next call with
    the same signature, so copy what you keep.
    """

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], warmup: int = 2):
        self.fn = fn
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[list[torch.Tensor], tuple, torch.cuda.CUDAGraph]] = {}

    @staticmethod
    def signature(args: Sequence[torch.Tensor]) -> tuple:
        return tuple((tuple(a.shape), a.dtype, str(a.device)) for a in args)

    @property
    def captured(self) -> int:
        return len(self._graphs)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = self.signature(args)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(args)
        static_in, static_out, graph = entry
        for buf, a in zip(static_in, args):
            buf.copy_(a, non_blocking=True)
        graph.replay()
        return static_out

    @torch.inference_mode()
    def _capture(self, args: Sequence[torch.Tensor]):
        static_in = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):  # cuDNN/cuBLAS pick and allocate outside the capture
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.fn(*static_in)
        out = out if isinstance(out, tuple) else (out,)
        log.debug("captured a CUDA graph for %s", [tuple(a.shape) for a in args])
        return static_in, out, graph
