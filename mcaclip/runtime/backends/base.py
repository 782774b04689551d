"""The backend interface every runtime backend follows (Polygraphy-style runners)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mcaclip.errors import McaError


class BackendError(McaError):
    """A backend cannot be created or cannot run a graph."""


class GraphRunner(Protocol):
    """Runs one graph. A context manager; ``infer`` maps input names to arrays and returns
    every output by name. I/O names come from the bundle's manifest."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

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

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise BackendError(f"{self.name}: missing inputs {missing}")


class DeviceEditor:
    """A backend that runs a whole edit on its device (torch, tensorrt): subclasses provide
    ``device`` and ``edit_device(w, e) -> (image, original, *masks)`` on device tensors."""

    device: Any  # torch.device

    def edit_device(self, w, e) -> tuple: ...

    def edit(self, w: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        """Host arrays in and out, one copy each way: latents w [B, L, D], embeddings
        e [P, D_text] -> (images [B, P, 3, H, W], originals [B, 3, H, W],
        masks [B, P, 1, H_l, W_l] per layer)."""
        import torch

        wt = torch.from_numpy(np.ascontiguousarray(w, np.float32)).to(self.device)
        et = torch.from_numpy(np.ascontiguousarray(e, np.float32)).to(self.device)
        image, original, *masks = self.edit_device(wt, et)
        return (
            image.float().cpu().numpy(),
            original.float().cpu().numpy(),
            [m.float().cpu().numpy() for m in masks],
        )


class DeviceRunner(RunnerBase):
    """A runner whose graph takes and returns torch tensors on ``device``
    (:meth:`infer_device`); :meth:`infer` is its host-array form."""

    device: Any  # torch.device

    def infer_device(self, args) -> tuple: ...

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self.check_feed(feed)
        args = [
            torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device)
            for n in self.input_names
        ]
        out = self.infer_device(args)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, out)}
