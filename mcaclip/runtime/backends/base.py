"""The backend interface every runtime backend follows (Polygraphy-style runners)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np

from mcaclip.errors import McaError


class BackendError(McaError):
    """A backend cannot be created or cannot run a graph."""


class GraphRunner(Protocol):
    """Runs one graph. A context manager; ``infer`` maps input names to arrays and returns
    every output by name (``outputs``: only those, the others are not fetched to the host).
    I/O names come from the bundle's manifest."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def infer(
        self, feed: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> GraphRunner: ...

    def __exit__(self, *exc) -> None: ...


class RunnerBase:
    """Shared context-manager plumbing and feed checking."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def check_outputs(self, outputs: list[str] | None) -> list[str]:
        """The requested output names (default: all), each one of the graph's."""
        if outputs is None:
            return list(self.output_names)
        unknown = [n for n in outputs if n not in self.output_names]
        if unknown:
            raise BackendError(
                f"graph {self.name!r} has no output {unknown[0]!r} (outputs: {self.output_names})"
            )
        return list(outputs)

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise BackendError(f"{self.name}: missing inputs {missing}")


class DeviceEditor:
    """A backend that runs a whole edit on its device (torch, tensorrt): fusion -> mapper ->
    masked generator on device tensors, one CUDA graph per shape with ``cuda_graphs``.
    Subclasses provide ``device``, ``cuda_graphs`` and :meth:`stage`."""

    device: Any  # torch.device
    cuda_graphs: bool = False
    _edit: Callable | None = None

    def stage(self, name: str) -> Callable[..., tuple]:
        """Graph ``name`` as a function of device tensors in the manifest's input order,
        returning its outputs in the manifest's output order."""
        raise NotImplementedError

    def _edit_eager(self, w, e) -> tuple:
        """w [B, L, D], e [P, D_text] -> (image [B, P, 3, H, W], original, *masks)."""
        b, p = w.shape[0], e.shape[0]
        w_rep = w.repeat_interleave(p, dim=0)
        e_rep = e.repeat(b, 1)
        (t_w,) = self.stage("fusion")(w_rep, e_rep)
        (w_edit,) = self.stage("mapper")(w_rep, t_w)
        return self.stage("masked_generator")(
            w, w_edit.reshape(b, p, *w.shape[1:]), e_rep.reshape(b, p, -1)
        )

    def edit_device(self, w, e) -> tuple:
        """One edit call on device tensors; with CUDA graphs, one replay per call."""
        import torch

        if self._edit is None:
            from mcaclip.runtime.kernels.cuda_graphs import CudaGraphed

            self._edit = CudaGraphed(self._edit_eager) if self.cuda_graphs else self._edit_eager
        # on the editor's GPU: CUDA graph capture streams and side streams are per device
        gpu = torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), gpu:
            return self._edit(w, e)

    def edit(
        self,
        w: np.ndarray,
        e: np.ndarray,
        masks: bool = True,
        pixels: bool = False,
        keep: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list]:
        """Host arrays in and out, one copy each way: latents w [B, L, D], embeddings
        e [P, D_text] -> (images [B, P, 3, H, W], originals [B, 3, H, W],
        masks [B, P, 1, H_l, W_l] per layer; ``masks=False``: [], nothing copied for them).
        ``pixels``: images [B, P, H, W, 3] and originals [B, H, W, 3] as uint8, converted on
        the device (:func:`device_pixels`): a quarter of the bytes to copy, ready for PNG.
        ``keep``: only the first ``keep`` latents' results are copied (a padded batch).
        The pictures come through page-locked memory, the masks through pageable memory
        (at 1024 px they are large, and pinned memory stays with the process)."""
        import torch

        wt = torch.from_numpy(np.ascontiguousarray(w, np.float32)).to(self.device)
        et = torch.from_numpy(np.ascontiguousarray(e, np.float32)).to(self.device)
        image, original, *layer_masks = self.edit_device(wt, et)
        with torch.inference_mode():
            if keep is not None:
                image, original = image[:keep], original[:keep]
                layer_masks = [m[:keep] for m in layer_masks]
            if pixels:
                image, original = device_pixels(image), device_pixels(original)
            image, original = to_host([image, original])
            kept = to_host(layer_masks, pinned=False) if masks else []
        return image, original, kept


def device_pixels(x):
    """Torch [..., 3, H, W] in [-1, 1] -> [..., H, W, 3] uint8 on the same device: the same
    float32 operations in the same order as :func:`mcaclip.runtime.io.to_uint8`, so the same
    bytes for finite values (NaN, which a finite latent does not give, becomes 0 on x86)."""
    import torch

    scaled = ((x.float() + 1) * 127.5 + 0.5).clamp_(0, 255)
    return scaled.to(torch.uint8).movedim(-3, -1).contiguous()


def to_host(tensors: list, pinned: bool = True) -> list[np.ndarray]:
    """Device tensors -> numpy arrays (floating point as float32). From a GPU, ``pinned``:
    through page-locked buffers from PyTorch's caching host allocator, every copy queued
    before one wait; each array owns its buffer (the next call does not overwrite it). On the
    CPU the arrays share the tensors' memory (no backend reuses its CPU outputs)."""
    import torch

    tensors = [t if t.dtype == torch.uint8 else t.float() for t in tensors]
    if not tensors or tensors[0].device.type != "cuda" or not pinned:
        return [t.cpu().numpy() for t in tensors]
    out = []
    for t in tensors:
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        out.append(buf)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return [b.numpy() for b in out]


class DeviceRunner(RunnerBase):
    """A runner whose graph takes and returns torch tensors on ``device``
    (:meth:`infer_device`); :meth:`infer` is its host-array form."""

    device: Any  # torch.device

    def infer_device(self, args) -> tuple: ...

    def infer(
        self, feed: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        import torch

        self.check_feed(feed)
        wanted = self.check_outputs(outputs)
        args = [
            torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device)
            for n in self.input_names
        ]
        out = self.infer_device(args)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, out) if n in wanted}
