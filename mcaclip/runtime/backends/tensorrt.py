"""TensorRT backend: the bundle's serialized engines (``trt/*.plan``), run on torch CUDA tensors.

TensorRT is imported lazily. Before anything is deserialized, :func:`compat_problem` compares
the manifest's record (TensorRT version, GPU, compute capability, compatibility options) with
this machine, and refuses with the command that rebuilds the engines here. Inference binds torch
tensors directly (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3`` on the
current torch stream, or on a side stream ordered with it when that is the legacy default
stream): the stages pass device tensors to each other with no host copies, and ``cuda_graphs``
captures a whole edit once per (latents, prompts) shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from mcaclip.bundle import Bundle
from mcaclip.runtime.backends.base import BackendError, DeviceEditor, DeviceRunner

log = logging.getLogger(__name__)


def compat_problem(record: dict | None, trt_version: str, gpu: str, cc: str) -> str | None:
    """Why the engines of ``record`` (the manifest's ``tensorrt`` entry) cannot run here, or
    None. Plans are tied to the TensorRT version (unless built version-compatible, and then only
    forwards) and to the GPU's compute capability (unless built hardware-compatible)."""
    if not record or not record.get("engines"):
        return "has no TensorRT engines"
    options = record.get("options", {})
    built = record.get("version", "?")
    if built != trt_version:
        newer_runtime = _major_minor(trt_version) >= _major_minor(built)
        if not (options.get("version_compat") and newer_runtime):
            return f"was built with TensorRT {built}, this machine has TensorRT {trt_version}"
    level = options.get("hardware_compat", "none")
    if record.get("compute_capability") != cc:
        ampere_plus = level == "ampere-plus" and float(cc) >= 8.0
        if not ampere_plus:
            return (
                f"was built for {record.get('gpu')} (compute capability "
                f"{record.get('compute_capability')}), this GPU is {gpu} (compute capability {cc})"
            )
    return None


def _major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in version.split(".")[:2])


def rebuild_hint(bundle: Bundle) -> str:
    return f"rebuild the engines on this machine: mcaexport build-trt {bundle.root}"


TORCH_DTYPES = {}  # trt.DataType -> torch dtype, filled on first use


def _torch_dtype(trt, dtype) -> torch.dtype:
    if not TORCH_DTYPES:
        TORCH_DTYPES.update(
            {
                trt.DataType.FLOAT: torch.float32,
                trt.DataType.HALF: torch.float16,
                trt.DataType.INT32: torch.int32,
                trt.DataType.INT64: torch.int64,
                trt.DataType.BOOL: torch.bool,
                trt.DataType.INT8: torch.int8,
                trt.DataType.UINT8: torch.uint8,
            }
        )
        if hasattr(trt.DataType, "BF16"):
            TORCH_DTYPES[trt.DataType.BF16] = torch.bfloat16
    if dtype not in TORCH_DTYPES:
        raise BackendError(f"TensorRT engine uses data type {dtype}, which torch cannot hold")
    return TORCH_DTYPES[dtype]


class TrtEngine:
    """One deserialized engine and an execution context per input-shape signature: a captured
    CUDA graph is bound to its context's shapes, so two graphs (or a graph and an eager call
    of another shape) must not share one."""

    def __init__(self, trt, runtime, path, name: str):
        self.name = name
        try:
            plan = path.read_bytes()
        except OSError as exc:
            raise BackendError(f"{path}: cannot read the engine ({exc.strerror})") from None
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(
                f"{path}: TensorRT could not load this engine (built for another GPU or "
                "TensorRT version, or corrupt)"
            )
        self._contexts: dict[tuple, object] = {}
        self._side: dict[torch.device, torch.cuda.Stream] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def context(self, shapes: tuple):
        """The execution context for inputs of ``shapes`` (created on first use)."""
        if shapes not in self._contexts:
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise BackendError(
                    f"{self.name}: TensorRT could not create an execution context (out of GPU "
                    "memory?); use a smaller batch or free the GPU"
                )
            self._contexts[shapes] = ctx
        return self._contexts[shapes]

    def run(self, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Inputs in ``input_names`` order (CUDA tensors) -> outputs in ``output_names`` order,
        allocated by torch on the current stream."""
        with torch.cuda.device(args[0].device):  # TensorRT runs on the current device
            return self._run(args)

    def _run(self, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        keep = [t.to(self.dtypes[n]).contiguous() for n, t in zip(self.input_names, args)]
        ctx = self.context(tuple(tuple(t.shape) for t in keep))
        for name, t in zip(self.input_names, keep):
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise BackendError(
                    f"{self.name}: input {name} {list(t.shape)} is outside the engine's "
                    "profile; rebuild the bundle with a larger --max-batch/--max-prompts"
                )
            ctx.set_tensor_address(name, t.data_ptr())
        outs = []
        device = args[0].device
        for name in self.output_names:  # allocated on the caller's stream, as the inputs were
            shape = tuple(ctx.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self.dtypes[name], device=device)
            ctx.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        stream = torch.cuda.current_stream(device)
        if stream != torch.cuda.default_stream(device):  # the caller's stream, or a capture
            ok = ctx.execute_async_v3(stream.cuda_stream)
        else:
            # TensorRT synchronises the device around enqueues on the legacy default stream
            # (eager runs): run on a side stream that waits for the caller's work, and make the
            # caller's stream wait for it. Every tensor involved was allocated on the caller's
            # stream, which is ordered after the side stream: no record_stream needed.
            side = self._side.get(device)
            if side is None:
                side = self._side[device] = torch.cuda.Stream(device)
            side.wait_stream(stream)
            ok = ctx.execute_async_v3(side.cuda_stream)
            stream.wait_stream(side)
        if not ok:
            raise BackendError(f"{self.name}: TensorRT failed to run the engine")
        return tuple(outs)


class TrtRunner(DeviceRunner):
    """Host-array interface of one engine (tests, ``stage`` benchmarks)."""

    def __init__(self, engine: TrtEngine, inputs: list[str], outputs: list[str], device):
        self.name = engine.name
        self.engine = engine
        self.input_names, self.output_names = inputs, outputs
        self.device = device

    def infer_device(self, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        order = {n: a for n, a in zip(self.input_names, args)}
        out = self.engine.run([order[n] for n in self.engine.input_names])
        by_name = dict(zip(self.engine.output_names, out))
        return tuple(by_name[n] for n in self.output_names)


class TrtEditor(DeviceEditor):
    """The bundle's engines; :meth:`edit` runs fusion -> mapper -> masked generator on device."""

    def __init__(self, bundle: Bundle, device: str = "cuda", cuda_graphs: bool = True):
        from mcaclip.export.tensorrt import gpu_identity, require_tensorrt

        trt = require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise BackendError("the tensorrt backend runs on a CUDA GPU: use --device cuda")
        gpu, cc = gpu_identity(self.device)
        record = bundle.manifest.get("tensorrt")
        problem = compat_problem(record, trt.__version__, gpu, cc)
        if problem:
            raise BackendError(f"{bundle.root}: {problem}; {rebuild_hint(bundle)}")
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):  # its CUDA context on the chosen GPU
            self.runtime = trt.Runtime(self.logger)  # must outlive the engines
        if record.get("options", {}).get("version_compat"):
            self.runtime.engine_host_code_allowed = True
        self.bundle = bundle
        self.record = record
        self.cuda_graphs = cuda_graphs
        self.mode = "cuda-trt-fp16" + ("-cudagraphs" if cuda_graphs else "")
        self._engines: dict[str, TrtEngine] = {}

    def engine(self, name: str) -> TrtEngine:
        if name not in self._engines:
            entry = self.record["engines"].get(name)
            if entry is None:
                raise BackendError(
                    f"{self.bundle.root}: no TensorRT engine for {name}; "
                    f"{rebuild_hint(self.bundle)}"
                )
            with torch.cuda.device(self.device):  # deserialized onto the current device
                self._engines[name] = TrtEngine(
                    self.trt, self.runtime, self.bundle.root / entry["plan"], name
                )
        return self._engines[name]

    def runner(self, name: str, inputs: list[str], outputs: list[str]) -> TrtRunner:
        return TrtRunner(self.engine(name), inputs, outputs, self.device)

    def stage(self, name: str):
        entry = self.bundle.graphs[name]
        runner = self.runner(
            name, [t["name"] for t in entry["inputs"]], [t["name"] for t in entry["outputs"]]
        )
        return lambda *args: runner.infer_device(args)
