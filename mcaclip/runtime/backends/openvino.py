"""OpenVINO backend: the bundle's FP32 ONNX graphs compiled by ``openvino.Core`` for the CPU.

Install with ``pip install 'mcaclip[openvino]'``; nothing imports OpenVINO until this backend
is asked for. The graphs are read as they are (no conversion step) and compiled with:

- ``precision``: OpenVINO's inference precision hint, ``fp32`` (f32), ``bf16`` or ``fp16``;
  ``None`` picks :data:`DEFAULT_PRECISION` where the CPU computes it natively, else ``fp32``.
  A precision the CPU lacks is an error, not a silent fallback to another one.
- ``threads`` (``INFERENCE_NUM_THREADS``, 0: every core) and ``streams`` (``NUM_STREAMS``);
  the latency hint otherwise: one request at a time, every core on it.

Compiled models are cached in ``BUNDLE/ov_cache/`` (OpenVINO's own model cache: the first run
of a graph pays its compilation, later runs load the blob). ``ov_cache/manifest.json`` records
the OpenVINO version and CPU the blobs were compiled by; a cache made by another version or on
another CPU is cleared before use, so stale blobs neither load nor pile up.
"""

from __future__ import annotations

import json
import logging
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from mcaclip.fileio import atomic_write
from mcaclip.runtime.backends.base import BackendError, RunnerBase

log = logging.getLogger(__name__)
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# what OpenVINO's CPU plugin must list in OPTIMIZATION_CAPABILITIES to compute natively
CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}
# the fastest precision that keeps >= 40 dB PSNR to FP32 ONNX Runtime on the trained toy
# editor (benchmarks/openvino_cpu.py; the measurement is in docs/benchmarks.md, OpenVINO on CPU)
DEFAULT_PRECISION = "bf16"
CACHE_MANIFEST = "manifest.json"
INSTALL = "pip install 'mcaclip[openvino]'"


def openvino():
    """The ``openvino`` module, or a one-line error saying how to install it."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendError(f"the openvino backend needs OpenVINO: {INSTALL}") from None
    return ov


@lru_cache(maxsize=1)
def core():
    """One ``openvino.Core`` per process (it owns the CPU plugin and its thread pool)."""
    return openvino().Core()


def version() -> str:
    return str(openvino().__version__)


def device_name(device: str = "CPU") -> str:
    return str(core().get_property(device, "FULL_DEVICE_NAME"))


def ov_device(device: str | None) -> str:
    """Our device name (``cpu``, None) -> OpenVINO's (``CPU``), checked against this machine
    (and OpenVINO's presence: :func:`core` is cached)."""
    openvino()
    name = (device or "cpu").upper()
    available = core().available_devices
    if name not in available:
        raise BackendError(
            f"OpenVINO device {name} is not available here; available: {', '.join(available)}"
        )
    return name


def native_precisions(device: str = "CPU") -> list[str]:
    """Our precision names the device computes natively (fp32 always)."""
    caps = set(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    return ["fp32"] + [p for p, cap in CAPABILITY.items() if cap in caps]


def resolve_precision(precision: str | None, device: str = "CPU") -> str:
    """``precision`` checked against the device; None: the default where it is native."""
    native = native_precisions(device)
    if precision is None:
        return DEFAULT_PRECISION if DEFAULT_PRECISION in native else "fp32"
    if precision not in PRECISIONS:
        raise BackendError(
            f"precision {precision!r}: the openvino backend runs {', '.join(PRECISIONS)}"
        )
    if precision not in native:
        raise BackendError(
            f"{device_name(device)} does not compute {precision} natively (OpenVINO would "
            f"substitute another precision); use --precision {' or '.join(native)}"
        )
    return precision


def prepare_cache(cache_dir: Path, device: str = "CPU") -> Path:
    """``cache_dir`` ready for OpenVINO's blobs: cleared when another OpenVINO version or
    another CPU filled it; its manifest records this one."""
    record = {"openvino": version(), "device": device_name(device)}
    path = cache_dir / CACHE_MANIFEST
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        old = {}
    if old == record:
        return cache_dir
    if old is not None and cache_dir.is_dir():
        log.info("clearing %s: compiled by %s, this is %s", cache_dir, old, record)
        shutil.rmtree(cache_dir, ignore_errors=True)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda t: Path(t).write_text(json.dumps(record, indent=2) + "\n"))
    except OSError as exc:  # a read-only bundle: compile every time, say so once
        log.warning("%s: cannot cache compiled models there (%s)", cache_dir, exc.strerror)
    return cache_dir


def compile_config(
    precision: str, cache_dir: Path | None, threads: int | None, streams: int | None
) -> dict:
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if cache_dir is not None and cache_dir.is_dir():
        config["CACHE_DIR"] = str(cache_dir)
    if threads is not None:
        if threads < 0:
            raise BackendError(f"threads={threads}: a count of threads, or 0 for every core")
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if streams is not None:
        if streams < 1:
            raise BackendError(f"streams={streams}: at least 1")
        config["NUM_STREAMS"] = int(streams)
    return config


class OvRunner(RunnerBase):
    """One graph compiled by OpenVINO; ``infer`` as the ONNX Runtime runner's (the outputs
    are copies: the request's buffers are reused by its next call)."""

    def __init__(
        self,
        name: str,
        path: Path,
        precision: str | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
        streams: int | None = None,
        device: str | None = None,
    ):
        self.name = name
        ov = openvino()
        self.device = ov_device(device)
        self.precision = resolve_precision(precision, self.device)
        if cache_dir is not None:
            cache_dir = prepare_cache(cache_dir, self.device)
        config = compile_config(self.precision, cache_dir, threads, streams)
        try:
            self.compiled = core().compile_model(str(path), self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise BackendError(f"{path}: OpenVINO cannot compile it ({str(exc)[:200]})") from None
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        ran = {ov_name: ours for ours, ov_name in PRECISIONS.items()}.get(hint, hint)
        if ran != self.precision:  # never a silent substitution
            raise BackendError(
                f"{self.name}: OpenVINO compiled it in {ran}, not the {self.precision} asked for, "
                f"on {device_name(self.device)}; use --precision {ran}"
            )
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self._types = {
            p.get_any_name(): np.int64 if p.get_element_type() == ov.Type.i64 else np.float32
            for p in self.compiled.inputs
        }
        self.settings = {  # what OpenVINO chose, for the bench JSON
            "precision": self.precision,
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
        }

    def infer(
        self, feed: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        wanted = self.check_outputs(outputs)
        typed = {n: np.ascontiguousarray(feed[n], self._types[n]) for n in self.input_names}
        try:
            self.request.infer(typed)
        except Exception as exc:  # a shape the graph does not take, mostly
            raise BackendError(f"{self.name}: OpenVINO cannot run it ({str(exc)[:200]})") from None
        return {n: np.array(self.request.get_tensor(n).data, copy=True) for n in wanted}

    def close(self) -> None:
        self.request = None
        self.compiled = None
