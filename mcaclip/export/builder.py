"""Write engine bundles (see :mod:`mcaclip.bundle`): validated ONNX graphs, prompt cache,
PyTorch checkpoints, manifest. The bundle is assembled in a temporary directory beside the
target and renamed into place at the end, so a failed build never leaves a half bundle.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from safetensors.torch import save_file

import mcaclip
from mcaclip.bundle import (
    MANIFEST,
    PROMPTS,
    SCHEMA_VERSION,
    BundleError,
    sha256,
    write_prompt_cache,
)
from mcaclip.errors import ConfigError
from mcaclip.export.exporter import export_graph
from mcaclip.export.specs import export_spec, graph_module
from mcaclip.fileio import current_umask
from mcaclip.nn.graphs import graph_names

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
LATENT_BANK = "latents.npy"
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class BatchProfile:
    """Latents per call (min/opt/max) and prompts per latent (max) the bundle is built for."""

    min: int = 1
    opt: int = 4
    max: int = 8
    max_prompts: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(
                f"batch profile needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}"
            )
        if self.max_prompts < 1:
            raise ConfigError("--max-prompts must be at least 1")

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max, "max_prompts": self.max_prompts}


def resolve_backend(backend: str) -> str:
    """``auto``: TensorRT where it is installed and a CUDA GPU is present, else ONNX Runtime.
    ``torch``: a bundle for the PyTorch backend alone (no ONNX graphs: quick to build)."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    try:
        import tensorrt  # noqa: F401

        return "tensorrt" if torch.cuda.is_available() else "onnxruntime"
    except ImportError:
        return "onnxruntime"


def versions() -> dict[str, str | None]:
    try:
        import tensorrt

        trt = tensorrt.__version__
    except ImportError:
        trt = None
    return {
        "mcaclip": mcaclip.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tensorrt": trt,
        "python": platform.python_version(),
    }


def build_bundle(
    editor,
    out: str | Path,
    prompts: list[str],
    precision: str = "fp32",
    backend: str = "auto",
    profile: BatchProfile = BatchProfile(),
    random_weights: bool = False,
    sources: dict | None = None,
    text_encoder: bool = True,
    overwrite: bool = False,
    graphs_only: bool = False,
    on_graph: Callable[[str, str], None] | None = None,
    trt_options=None,
    latent_bank: np.ndarray | None = None,
) -> dict:
    """Export ``editor`` into a bundle at ``out``; returns the manifest.

    ``graphs_only`` writes just ``onnx/`` and the manifest (``mcaexport export-onnx``).
    ``on_graph(name, precision)`` is called before each export (progress display).
    ``latent_bank`` [N, L, D]: latents that ``--seeds`` index instead of sampling the mapping
    network (the toy world's held-out faces: its mapping network reads attribute codes).
    """
    out = Path(out)
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose fp32 or fp16")
    backend = resolve_backend(backend)
    if backend != "tensorrt" and trt_options is not None and trt_options.device is not None:
        raise ConfigError(
            f"--device {trt_options.device}: picks the GPU TensorRT builds on; it needs "
            f"--backend tensorrt (this bundle is for {backend})"
        )
    if backend == "tensorrt":
        from mcaclip.export.tensorrt import gpu_identity, require_tensorrt

        require_tensorrt()
        # refuse before minutes of export when no GPU (or not the asked one) is visible
        gpu_identity(trt_options.device if trt_options is not None else None)
        precision = "fp16"  # engines are built from the FP16 graphs
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; pass --overwrite to replace it")
    prompts = list(dict.fromkeys(prompts))  # unique, in order
    if editor.clip is not None and prompts:
        editor.clip.tokenize(prompts)  # refuse bad prompts before minutes of export
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _write(
            editor,
            work,
            prompts,
            precision,
            backend,
            profile,
            random_weights,
            sources or {},
            text_encoder,
            graphs_only,
            on_graph,
            trt_options,
            latent_bank,
        )
        _make_readable(work)
        _replace_dir(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


@torch.no_grad()
def _write(
    editor,
    root,
    prompts,
    precision,
    backend,
    profile,
    random_weights,
    sources,
    text_encoder,
    graphs_only,
    on_graph,
    trt_options,
    latent_bank=None,
) -> dict:
    names = graph_names(editor, text_encoder=text_encoder)
    graphs: dict[str, dict] = {}
    files: dict[str, str] = {}
    precisions = ["fp32"] + (["fp16"] if precision == "fp16" else [])
    # fusion/mapper see every (latent, prompt) pair of a call: their batch is latents x prompts
    pair_max = profile.max * profile.max_prompts
    for name in names:
        spec = export_spec(editor, name)
        module = graph_module(editor, name)
        entry = {
            "inputs": [t.to_dict() for t in spec.inputs],
            "outputs": [t.to_dict() for t in spec.outputs],
            "max_batch": profile.max
            if name in ("masked_generator", "masknet", "mapping", "encoder")
            else pair_max,
            "onnx": {},
            "validation": {},
        }
        for prec in precisions if backend != "torch" else []:
            if on_graph:
                on_graph(name, prec)
            rel = f"onnx/{name}.onnx" if prec == "fp32" else f"onnx/{name}.fp16.onnx"
            report = export_graph(
                module,
                spec,
                editor,
                root / rel,
                prec,
                max_batch=max(pair_max, 2),
                max_prompts=max(profile.max_prompts, 2),
            )
            entry["onnx"][prec] = rel
            entry["validation"][prec] = report.to_dict()
        graphs[name] = entry
    # every file under onnx/: the graphs and any external-data files beside them
    if backend != "torch":
        files.update({f"onnx/{p.name}": sha256(p) for p in sorted((root / "onnx").iterdir())})
    if not graphs_only:
        files.update(_write_prompts(editor, root, prompts))
        files.update(_write_torch(editor, root))
    bank = None
    if latent_bank is not None:
        bank = {"file": LATENT_BANK, "count": int(len(latent_bank))}
        np.save(root / LATENT_BANK, np.ascontiguousarray(latent_bank, np.float32))
        files[LATENT_BANK] = sha256(root / LATENT_BANK)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "preset": editor.preset.to_dict(),
        "random_weights": random_weights,
        "sources": sources,
        "backend": backend,
        "precision": precision,
        "batch_profile": profile.to_dict(),
        "delta_scale": editor.delta_scale,
        "text": {
            "context_length": editor.clip.context_length if editor.clip is not None else None,
            "tokenizer": "openai-clip-bpe",
        },
        "graphs": graphs,
        "prompts": prompts,
        "latent_bank": bank,
        "photos": _photos(editor),
        "files": files,
        "tensorrt": None,
    }
    if backend == "tensorrt":
        from mcaclip.export.tensorrt import TrtOptions, build_engines

        manifest["tensorrt"] = build_engines(root, manifest, trt_options or TrtOptions())
        files.update(manifest["tensorrt"]["files"])
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _photos(editor) -> dict | None:
    """What ``mcarun edit --images`` needs beyond the encoder graph: the face finder."""
    if getattr(editor, "encoder", None) is None:
        return None
    from mcaclip.faces.finders import finder_for_preset

    return {
        "finder": finder_for_preset(editor.preset.name),
        "encoder_size": editor.preset.encoder.input_size,
    }


def rebuild_trt(root: str | Path, options) -> dict:
    """Build TensorRT engines for the existing bundle at ``root`` (``mcaexport build-trt``).
    Engines are built into a temporary folder; then ``trt/`` and the manifest are replaced."""
    from mcaclip.bundle import Bundle
    from mcaclip.export.tensorrt import TRT_DIR, build_engines, gpu_identity, require_tensorrt
    from mcaclip.fileio import atomic_write

    bundle = Bundle.open(root, verify=True)
    require_tensorrt()
    gpu_identity(options.device)
    root = bundle.root
    work = Path(tempfile.mkdtemp(prefix=".trt.", dir=root))
    try:
        (work / "onnx").symlink_to(root / "onnx", target_is_directory=True)
        record = build_engines(work, bundle.manifest, options)
        _make_readable(work / TRT_DIR)
        _replace_dir(work / TRT_DIR, root / TRT_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = dict(bundle.manifest)
    files = {k: v for k, v in manifest["files"].items() if not k.startswith(f"{TRT_DIR}/")}
    manifest["files"] = {**files, **record["files"]}
    manifest["tensorrt"] = record
    manifest["backend"] = "tensorrt"
    atomic_write(
        root / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n")
    )
    return record


def _replace_dir(new: Path, dest: Path) -> None:
    """Move the finished directory ``new`` to ``dest``; an existing ``dest`` is renamed aside
    first and removed after, so ``dest`` never holds a half-written tree."""
    trash = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(trash, ignore_errors=True)
    if dest.exists():
        dest.rename(trash)
    new.rename(dest)
    shutil.rmtree(trash, ignore_errors=True)


def _make_readable(root: Path) -> None:
    """mkdtemp/mkstemp create owner-only entries; give the bundle the usual permissions."""
    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _write_prompts(editor, root: Path, prompts: list[str]) -> dict[str, str]:
    dim = editor.preset.clip.embed_dim
    if prompts:
        embeddings = editor.clip.embed_prompts(prompts).float().numpy()
    else:
        embeddings = np.zeros((0, dim), np.float32)
    write_prompt_cache(root / PROMPTS, prompts, embeddings)
    return {PROMPTS: sha256(root / PROMPTS)}


def _write_torch(editor, root: Path) -> dict[str, str]:
    """The same weights as safetensors, for the PyTorch backend and --compare-torch."""
    torch_dir = root / "torch"
    editor.generator.save(torch_dir / "generator.safetensors")
    clip_file = None
    if editor.clip is not None:
        state = {k: v.contiguous() for k, v in editor.clip.model.state_dict().items()}
        save_file(state, torch_dir / "clip.safetensors")
        clip_file = "clip.safetensors"
    encoder_file = None
    if getattr(editor, "encoder", None) is not None:
        editor.encoder.save(torch_dir / "encoder.safetensors")
        encoder_file = "encoder.safetensors"
    editor.save(torch_dir / "editor.safetensors", "generator.safetensors", clip_file, encoder_file)
    return {str(p.relative_to(root)): sha256(p) for p in sorted(torch_dir.iterdir()) if p.is_file()}
