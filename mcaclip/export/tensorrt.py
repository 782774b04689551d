"""TensorRT engine building (the ``tensorrt`` backend), against the TensorRT 10 and 11 Python API.

TensorRT is imported lazily: nothing here needs it until :func:`build_engines` runs. Engines are
built on the GPU that will run them, from the bundle's ONNX graphs:

* **strongly typed** (the default; the only mode TensorRT 11 has): the network takes its types
  from the graph, so the masked generator is built from ``onnx/masked_generator.fp16.onnx``
  (FP16 inside, FP32 RGB skip, PixelNorm and demodulation, FP32 inputs and outputs) and the
  small graphs (mapping, text encoder, fusion, mapper) from their FP32 graphs;
* **fp16-flag** (TensorRT 10 only, ``--trt-typing fp16-flag``): weakly typed FP32 graphs with
  ``BuilderFlag.FP16``, TensorRT choosing per layer (it may then run the RGB skip in FP16).

One optimization profile per engine from the bundle's batch profile (:func:`profile_shapes`).
Plans go to ``BUNDLE/trt/NAME.plan``; the manifest's ``tensorrt`` entry records the TensorRT
version, GPU and compute capability they were built for (:func:`engine_record`), which the
runtime checks before it deserializes anything.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mcaclip.bundle import sha256
from mcaclip.errors import ConfigError, McaError
from mcaclip.fileio import atomic_write

log = logging.getLogger(__name__)

# what the runtime needs; the standalone mask net is a training/debugging graph
# (the photo encoder where the bundle has one)
ENGINE_GRAPHS = ("mapping", "text_encoder", "fusion", "mapper", "masked_generator", "encoder")
FP16_GRAPHS = ("masked_generator", "encoder")  # built from the FP16 graph when strongly typed
PAIR_GRAPHS = ("fusion", "mapper", "text_encoder")  # batch = latents x prompts
TYPINGS = ("strong", "fp16-flag")
HARDWARE_COMPAT = ("none", "ampere-plus", "same-compute-capability")
TRT_DIR = "trt"


class TensorRTUnavailable(McaError):
    """TensorRT (or a CUDA GPU) is missing."""


class TrtBuildError(McaError):
    """TensorRT refused a graph or failed to build an engine."""


def require_tensorrt():
    """Import TensorRT or explain how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(
            "TensorRT is not installed: pip install 'mcaclip[trt]' (wheels come from NVIDIA's "
            "index) on a machine with an NVIDIA GPU, or use --backend onnxruntime / torch"
        ) from None
    return tensorrt


def trt_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise TensorRTUnavailable(f"unrecognised TensorRT version {version!r}") from None


@dataclass(frozen=True)
class TrtOptions:
    workspace_gib: float = 4.0  # builder scratch memory (MemoryPoolType.WORKSPACE)
    opt_level: int = 3  # builder_optimization_level 0..5 (higher: longer build, faster engine)
    timing_cache: str | None = None  # file loaded before and saved after the build
    typing: str = "strong"  # strong | fp16-flag (TensorRT 10 only)
    hardware_compat: str = "none"  # none | ampere-plus | same-compute-capability
    version_compat: bool = False  # plans that later TensorRT versions can load
    device: str | None = None  # the GPU to build on: cuda or cuda:N (None: the current one)

    def __post_init__(self) -> None:
        if self.typing not in TYPINGS:
            raise ConfigError(f"--trt-typing {self.typing!r}: choose one of {', '.join(TYPINGS)}")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise ConfigError(
                f"--hardware-compat {self.hardware_compat!r}: choose one of "
                f"{', '.join(HARDWARE_COMPAT)}"
            )
        if not 0 <= self.opt_level <= 5:
            raise ConfigError(f"--opt-level {self.opt_level}: TensorRT accepts 0..5")
        if not self.workspace_gib > 0:
            raise ConfigError(f"--workspace {self.workspace_gib}: must be a positive GiB value")
        if self.device is not None:
            cuda_index(self.device)  # a one-line ConfigError unless cuda or cuda:N


def cuda_index(device) -> int | None:
    """The GPU index of ``device`` ("cuda", "cuda:N" or a torch.device; None for "cuda")."""
    if device is None:
        return None
    if not isinstance(device, str):  # a torch.device
        return device.index
    match = re.fullmatch(r"cuda(?::(0|[1-9][0-9]{0,3}))?", device, re.ASCII)
    if match is None:
        raise ConfigError(
            f"--device {device!r}: TensorRT engines are built on a CUDA GPU: use cuda or cuda:N"
        )
    return None if match.group(1) is None else int(match.group(1))


def profile_shapes(entry: dict, name: str, profile: dict) -> dict[str, tuple[tuple, tuple, tuple]]:
    """(min, opt, max) shape of every input of graph ``name`` (its manifest ``entry``) for the
    bundle's batch ``profile``. ``batch`` is latents (pairs of latent and prompt for fusion and
    mapper, prompts for the text encoder), ``prompts`` is prompts per latent."""
    lo, opt, hi = int(profile["min"]), int(profile["opt"]), int(profile["max"])
    prompts_max = int(profile["max_prompts"])
    if name in PAIR_GRAPHS:
        hi = int(entry.get("max_batch", hi * prompts_max))
    if name == "text_encoder":  # prompts are embedded one at a time or a few at once
        lo, opt = 1, 1
    dims = {"batch": (lo, opt, hi), "prompts": (1, 1, prompts_max)}
    shapes = {}
    for spec in entry["inputs"]:
        mins, opts, maxs = [], [], []
        for d in spec["shape"]:
            if isinstance(d, str):
                if d not in dims:
                    raise TrtBuildError(
                        f"{name}: input {spec['name']} has a dynamic dimension {d!r} that no "
                        "profile covers (only batch and prompts are dynamic); rebuild the bundle"
                    )
                a, b, c = dims[d]
            else:
                a = b = c = int(d)
            mins.append(a)
            opts.append(b)
            maxs.append(c)
        shapes[spec["name"]] = (tuple(mins), tuple(opts), tuple(maxs))
    return shapes


def engine_graph(manifest: dict, name: str, typing: str) -> str:
    """The ONNX file (bundle-relative) an engine is built from."""
    onnx = manifest["graphs"][name]["onnx"]
    want = "fp16" if typing == "strong" and name in FP16_GRAPHS else "fp32"
    if want not in onnx:
        raise TrtBuildError(
            f"the bundle has no {want} graph of {name}; rebuild it with mcaexport build-engine "
            "--precision fp16 (TensorRT engines are built from the FP16 graphs)"
        )
    return onnx[want]


def gpu_identity(device=None) -> tuple[str, str]:
    """(name, compute capability "9.0") of ``device`` (default: the current CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(
            "no CUDA GPU is visible: TensorRT engines are built on the GPU that runs them"
        )
    index = cuda_index(device)
    if index is not None and not 0 <= index < torch.cuda.device_count():
        raise TensorRTUnavailable(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            "numbered from 0"
        )
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def on_device(device: str | None):
    """A context in which TensorRT builds and runs on ``device`` (its current CUDA device)."""
    index = cuda_index(device)
    if index is None:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(index)


def engine_record(trt_version: str, gpu: str, cc: str, options: TrtOptions) -> dict:
    return {
        "version": trt_version,
        "gpu": gpu,
        "compute_capability": cc,
        "options": {k: v for k, v in asdict(options).items() if k != "device"},
        "engines": {},
        "files": {},
    }


def _make_logger(trt):
    class Collecting(trt.ILogger):
        """Keeps warnings and errors so a failed build can say why."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(str(msg))
                log.debug("TensorRT: %s", msg)

    return Collecting()


def build_engines(root: Path, manifest: dict, options: TrtOptions = TrtOptions()) -> dict:
    """Build an engine per graph of ``manifest`` (a bundle at ``root``) into ``root/trt``.
    Returns the manifest's ``tensorrt`` entry."""
    trt = require_tensorrt()
    gpu, cc = gpu_identity(options.device)
    with on_device(options.device):  # the builder works on the current CUDA device
        return _build_engines(trt, root, manifest, options, gpu, cc)


def _build_engines(trt, root: Path, manifest: dict, options: TrtOptions, gpu: str, cc: str):
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")  # removed in TensorRT 11
    if options.typing == "fp16-flag" and not has_fp16_flag:
        raise ConfigError(
            f"TensorRT {trt.__version__} builds strongly typed networks only; "
            "drop --trt-typing fp16-flag"
        )
    record = engine_record(trt.__version__, gpu, cc, options)
    logger = _make_logger(trt)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache_bytes = (
        cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    )
    out_dir = root / TRT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ENGINE_GRAPHS:
        if name not in manifest["graphs"]:
            continue
        start = time.perf_counter()
        entry = manifest["graphs"][name]
        onnx_rel = engine_graph(manifest, name, options.typing)
        shapes = profile_shapes(entry, name, manifest["batch_profile"])
        builder = trt.Builder(logger)
        flags = 0
        if options.typing == "strong":
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        logger.messages.clear()
        if not parser.parse_from_file(str(root / onnx_rel)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise TrtBuildError(f"{onnx_rel}: TensorRT's ONNX parser refused it: {errors[:3]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(
            trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30))
        )
        config.builder_optimization_level = options.opt_level
        if options.typing == "fp16-flag" and name in FP16_GRAPHS:
            config.set_flag(trt.BuilderFlag.FP16)
        if options.hardware_compat != "none":
            level = {
                "ampere-plus": "AMPERE_PLUS",
                "same-compute-capability": "SAME_COMPUTE_CAPABILITY",
            }[options.hardware_compat]
            if not hasattr(trt.HardwareCompatibilityLevel, level):
                raise ConfigError(
                    f"TensorRT {trt.__version__} has no {level} hardware compatibility "
                    "(SAME_COMPUTE_CAPABILITY needs 10.9 or later)"
                )
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
        if options.version_compat:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        cache = config.create_timing_cache(cache_bytes)
        accepted = cache is not None and config.set_timing_cache(cache, False)
        if not accepted and cache_bytes:
            # another TensorRT version's or GPU's cache: TensorRT refuses it; start afresh
            log.warning(
                "timing cache refused by TensorRT %s; starting an empty one", trt.__version__
            )
            cache_bytes = b""
            cache = config.create_timing_cache(cache_bytes)
            accepted = cache is not None and config.set_timing_cache(cache, False)
        if not accepted:
            raise TrtBuildError(f"{name}: TensorRT could not create a timing cache")
        profile = builder.create_optimization_profile()
        for input_name, (lo, opt, hi) in shapes.items():
            profile.set_shape(input_name, lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise TrtBuildError(f"{name}: TensorRT refused the optimization profile {shapes}")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            why = "; ".join(logger.messages[-3:]) or "no message"
            raise TrtBuildError(f"{name}: TensorRT could not build an engine ({why})")
        built_cache = config.get_timing_cache()
        if built_cache is not None:
            cache_bytes = bytes(built_cache.serialize())
        rel = f"{TRT_DIR}/{name}.plan"
        atomic_write(root / rel, lambda tmp, plan=plan: Path(tmp).write_bytes(bytes(plan)))
        record["engines"][name] = {
            "plan": rel,
            "onnx": onnx_rel,
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        record["files"][rel] = sha256(root / rel)
        log.info("built %s in %.1f s", rel, time.perf_counter() - start)
    if cache_path is not None:
        atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(cache_bytes))
    return record
