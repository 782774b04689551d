"""Export graphs to ONNX and prove them against PyTorch before anyone uses them.

``export_graph`` writes one graph (FP32, or FP16 with FP32 inputs/outputs), checks it with
``onnx.checker`` and validates it with ONNX Runtime against the PyTorch module on fresh inputs
at batch 1 and 3: every output is compared, every failure collected, and one
:class:`ExportValidationError` lists them all. An FP16 graph is refused if the half-precision
network gives NaN/Inf on CPU; its PSNR against FP32 is reported.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mcaclip.errors import McaError
from mcaclip.export.specs import DUMMY_BATCH, ExportSpec, example_inputs
from mcaclip.fileio import current_umask
from mcaclip.nn.graphs import Fp16Graph

log = logging.getLogger(__name__)
VALIDATION_BATCHES = (1, 3)


class ExportValidationError(McaError):
    """An exported graph disagrees with PyTorch (or an FP16 graph is not finite)."""


@dataclass
class ExportReport:
    name: str
    precision: str
    max_abs: dict[str, float] = field(default_factory=dict)  # worst over validation batches
    max_rel: dict[str, float] = field(default_factory=dict)
    psnr_db: dict[str, float] = field(default_factory=dict)  # FP16 vs FP32 image outputs
    runtime_check: str = "onnxruntime-cpu"  # what ran the graph for validation

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "psnr_db": self.psnr_db,
            "checked_with": self.runtime_check,
        }


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def export_graph(
    module: nn.Module,
    spec: ExportSpec,
    editor,
    path: str | Path,
    precision: str = "fp32",
    max_batch: int = 4096,
    max_prompts: int = 64,
    external_data: bool | None = None,
) -> ExportReport:
    """Export ``module`` (an FP32 graph module) to ``path``, validated; returns the report.
    ``external_data``: weights in a separate file (None: only when over 2 GB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = Fp16Graph(module).eval() if precision == "fp16" else module.eval()
    with torch.no_grad():
        dummy = example_inputs(editor, spec, DUMMY_BATCH, seed=0)
    # staged in a private directory under the final name, so that external data (graphs over
    # 2 GB) is named after the final file; moved into place only once validated
    stage = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        staged = stage / path.name
        with _quiet():
            program = torch.onnx.export(
                target,
                dummy,
                dynamo=True,
                opset_version=spec.opset,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=_for_signature(target, spec.dynamic_shapes(max_batch, max_prompts)),
                verbose=False,
            )
            program.save(staged, external_data=external_data)  # automatic above 2 GB
        onnx.checker.check_model(str(staged))
        if precision == "fp16":
            report = check_fp16(module, target, spec, editor)
        else:
            report = validate_onnx(staged, module, spec, editor)
        mask = current_umask()
        for f in sorted(stage.iterdir(), key=lambda f: f == staged):  # the graph last
            f.chmod(0o666 & ~mask)
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report


def _for_signature(module: nn.Module, shapes: tuple) -> tuple:
    """torch.export wants one entry per parameter: ``*inputs`` takes them all as one tuple."""
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (shapes,)
    return shapes


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress lines to stdout; keep them in the log instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        log.debug("%s", line)


@torch.no_grad()
def validate_onnx(path: str | Path, module: nn.Module, spec: ExportSpec, editor) -> ExportReport:
    """Compare ONNX Runtime with PyTorch on fresh inputs at batch 1 and 3 (and 2 prompts)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    report = ExportReport(spec.name, "fp32")
    failures = []
    for batch in VALIDATION_BATCHES:
        inputs = example_inputs(editor, spec, batch, seed=100 + batch, prompts=batch % 2 + 1)
        expected = _as_tuple(module(*inputs))
        feed = {n: x.numpy() for n, x in zip(spec.input_names, inputs)}
        got = session.run(spec.output_names, feed)
        for name, e, g in zip(spec.output_names, expected, got):
            e = e.numpy()
            if e.shape != g.shape:
                failures.append(f"{name} at batch {batch}: shape {g.shape} vs {e.shape}")
                continue
            err = float(np.abs(g - e).max())
            rel = err / max(float(np.abs(e).max()), 1e-12)
            report.max_abs[name] = max(report.max_abs.get(name, 0.0), err)
            report.max_rel[name] = max(report.max_rel.get(name, 0.0), rel)
            if not np.isfinite(g).all() or err > spec.atol:
                failures.append(f"{name} at batch {batch}: max abs {err:.2e} (rel {rel:.2e})")
    if failures:
        raise ExportValidationError(
            f"{spec.name}: ONNX Runtime disagrees with PyTorch (tolerance {spec.atol:g}): "
            + "; ".join(failures)
        )
    return report


@torch.no_grad()
def check_fp16(module: nn.Module, half: nn.Module, spec: ExportSpec, editor) -> ExportReport:
    """Run the half-precision network on CPU: refuse NaN/Inf, report PSNR of images vs FP32."""
    report = ExportReport(spec.name, "fp16", runtime_check="torch-fp16-cpu")
    failures = []
    for batch in VALIDATION_BATCHES:
        inputs = example_inputs(editor, spec, batch, seed=100 + batch, prompts=batch % 2 + 1)
        expected = _as_tuple(module(*inputs))
        got = _as_tuple(half(*inputs))
        for name, e, g in zip(spec.output_names, expected, got):
            e, g = e.numpy(), g.numpy()
            if not np.isfinite(g).all():
                bad = int((~np.isfinite(g)).sum())
                failures.append(f"{name} at batch {batch}: {bad} NaN/Inf values")
                continue
            err = float(np.abs(g - e).max())
            report.max_abs[name] = max(report.max_abs.get(name, 0.0), err)
            report.max_rel[name] = max(
                report.max_rel.get(name, 0.0), err / max(float(np.abs(e).max()), 1e-12)
            )
            if name in ("image", "original"):
                value = psnr(g, e)
                report.psnr_db[name] = min(report.psnr_db.get(name, math.inf), value)
    if failures:
        raise ExportValidationError(
            f"{spec.name}: the FP16 network is not finite on CPU, refusing the FP16 graph: "
            + "; ".join(failures)
        )
    return report
