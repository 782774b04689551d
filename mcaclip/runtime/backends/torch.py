"""PyTorch backend: the bundle's networks rebuilt from ``torch/`` with ``mcaclip.nn``.

The only runtime module that imports the networks (see DESIGN.md). It runs the very modules
the ONNX graphs were exported from (:mod:`mcaclip.nn.graphs`), so feeds and outputs match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mcaclip.runtime.backends.base import BackendError, RunnerBase


class TorchRunner(RunnerBase):
    def __init__(
        self,
        name: str,
        module: torch.nn.Module,
        inputs: list[str],
        outputs: list[str],
        device: str = "cpu",
    ):
        self.name = name
        self.module = module
        self.input_names, self.output_names = inputs, outputs
        self.device = torch.device(device)

    @torch.inference_mode()
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        args = [
            torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device)
            for n in self.input_names
        ]
        out = self.module(*args)
        out = out if isinstance(out, tuple) else (out,)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, out)}


class TorchEditor:
    """Loads ``BUNDLE/torch/editor.safetensors`` once and hands out one runner per graph."""

    def __init__(self, root: Path, random_weights: bool, device: str = "cpu"):
        from mcaclip.nn.editor import MCAEditor

        path = root / "torch" / "editor.safetensors"
        if not path.is_file():
            raise BackendError(f"{path}: missing; this bundle has no PyTorch weights, rebuild it")
        self.editor = MCAEditor.load(path, random_weights=random_weights).to(device).eval()
        self.device = device

    def runner(self, name: str, inputs: list[str], outputs: list[str]) -> TorchRunner:
        from mcaclip.nn.graphs import build_graph

        return TorchRunner(
            name, build_graph(self.editor, name).eval(), inputs, outputs, self.device
        )
