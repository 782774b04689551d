"""TensorRT engine building (the ``tensorrt`` backend). TensorRT is imported lazily."""

from __future__ import annotations

from pathlib import Path

from mcaclip.errors import McaError


class TensorRTUnavailable(McaError):
    """TensorRT (or a CUDA GPU) is missing."""


def require_tensorrt():
    """Import TensorRT or explain how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(
            "TensorRT is not installed: pip install 'mcaclip[trt]' (wheels come from NVIDIA's "
            "index) on a machine with an NVIDIA GPU, or build with --backend onnxruntime"
        ) from None
    return tensorrt


def build_engines(root: Path, manifest: dict) -> dict:
    raise TensorRTUnavailable(
        "building TensorRT engines is not implemented in this release; "
        "use --backend onnxruntime (ONNX Runtime's TensorRT provider works with onnxruntime-gpu)"
    )
