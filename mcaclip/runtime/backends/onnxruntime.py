"""ONNX Runtime backend: TensorRT EP, then CUDA EP, then CPU EP, as installed.

With ``onnxruntime-gpu`` the TensorRT and CUDA providers are used automatically; the TensorRT
provider keeps its engine and timing caches in ``BUNDLE/ort_cache/`` so only the first run of a
bundle pays the engine build.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mcaclip.runtime.backends.base import BackendError, RunnerBase

log = logging.getLogger(__name__)
PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str] | None = None) -> list[str]:
    """The providers to use: ``requested`` (checked) or the preferred ones available."""
    available = ort.get_available_providers()
    if requested:
        unknown = [p for p in requested if p not in available]
        if unknown:
            raise BackendError(
                f"ONNX Runtime providers {unknown} are not available here; available: "
                f"{', '.join(available)}"
            )
        return list(requested)
    return [p for p in PREFERRED if p in available]


def provider_options(providers: list[str], cache_dir: Path | None, fp16: bool) -> list:
    options = []
    for p in providers:
        if p == "TensorrtExecutionProvider" and cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            options.append(
                (
                    p,
                    {
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache_dir),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(cache_dir),
                        "trt_fp16_enable": fp16,
                    },
                )
            )
        else:
            options.append(p)
    return options


class OrtRunner(RunnerBase):
    def __init__(
        self,
        name: str,
        path: Path,
        providers: list[str] | None = None,
        cache_dir: Path | None = None,
        fp16: bool = False,
    ):
        self.name = name
        chosen = choose_providers(providers)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # a pipeline alternates between several sessions: spinning idle workers of one session
        # would steal the cores the next one needs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=provider_options(chosen, cache_dir, fp16)
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{path}: ONNX Runtime cannot load it ({str(exc)[:200]})") from None
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._types = {i.name: i.type for i in self.session.get_inputs()}

    def infer(
        self, feed: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        wanted = self.check_outputs(outputs)
        typed = {
            n: np.ascontiguousarray(feed[n], np.int64 if "int64" in self._types[n] else np.float32)
            for n in self.input_names
        }
        return dict(zip(wanted, self.session.run(wanted, typed)))

    def close(self) -> None:
        self.session = None
