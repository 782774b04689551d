"""The engine bundle: a directory that ``mcaexport`` writes and ``mcarun`` reads.

::

    manifest.json     schema version, versions, preset, precision, backend, batch profile,
                      per graph: files, sha256, inputs/outputs (shapes, dtypes), validation
    prompts.npz       prompts (str [N]) and their text embeddings (float32 [N, D]) for the cache
    onnx/NAME.onnx    FP32 graphs (always); onnx/NAME.fp16.onnx with --precision fp16
    trt/NAME.plan     TensorRT engines (backend tensorrt)
    torch/            our safetensors checkpoints of the same weights (PyTorch backend)

This module only reads and checks files: it imports neither the networks nor any runtime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcaclip.errors import McaError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PROMPTS = "prompts.npz"


class BundleError(McaError):
    """A bundle is missing, corrupt, from a newer mcaclip, or built for other hardware."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    """An opened, checked bundle."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path, verify: bool = True) -> Bundle:
        """Read ``root/manifest.json``; with ``verify`` every listed file must exist and match
        its sha256. Raises :class:`BundleError` with the file and the fix."""
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise BundleError(
                f"{root}: no such bundle directory; build one with mcaexport build-engine"
            )
        if not path.is_file():
            raise BundleError(f"{root}: not an engine bundle ({MANIFEST} is missing); rebuild it")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: corrupt manifest ({exc}); rebuild the bundle") from None
        version = manifest.get("schema_version")
        if not isinstance(version, int):
            raise BundleError(f"{path}: no schema_version; rebuild the bundle")
        if version > SCHEMA_VERSION:
            made_by = manifest.get("versions", {}).get("mcaclip", "a newer mcaclip")
            raise BundleError(
                f"{path}: schema {version} is newer than this mcaclip reads ({SCHEMA_VERSION}); "
                f"upgrade mcaclip (bundle made by mcaclip {made_by})"
            )
        bundle = cls(root, manifest)
        if verify:
            bundle.verify()
        return bundle

    def files(self) -> dict[str, str]:
        """Every file the manifest lists: relative path -> sha256."""
        return dict(self.manifest.get("files", {}))

    def verify(self) -> None:
        for rel, digest in self.files().items():
            path = self.root / rel
            if not path.is_file():
                raise BundleError(
                    f"{path}: missing from the bundle; rebuild it with mcaexport build-engine"
                )
            if sha256(path) != digest:
                raise BundleError(
                    f"{path}: corrupt (sha256 does not match the manifest); rebuild the bundle"
                )

    @property
    def preset(self) -> dict[str, Any]:
        return self.manifest["preset"]

    @property
    def graphs(self) -> dict[str, dict[str, Any]]:
        return self.manifest["graphs"]

    def graph_path(self, name: str, precision: str = "fp32") -> Path:
        entry = self.graphs.get(name)
        if entry is None:
            raise BundleError(f"{self.root}: has no {name} graph; rebuild it with that graph")
        rel = entry["onnx"].get(precision)
        if rel is None:
            raise BundleError(
                f"{self.root}: {name} has no {precision} graph; "
                f"rebuild with --precision {precision}"
            )
        return self.root / rel

    @property
    def batch_profile(self) -> dict[str, int]:
        return self.manifest["batch_profile"]

    @property
    def random_weights(self) -> bool:
        return bool(self.manifest.get("random_weights"))

    def prompt_cache(self) -> dict[str, np.ndarray]:
        path = self.root / PROMPTS
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                return {str(p): e for p, e in zip(data["prompts"], data["embeddings"])}
        except (ValueError, KeyError, OSError) as exc:
            raise BundleError(f"{path}: corrupt prompt cache ({exc}); rebuild the bundle") from None


def write_prompt_cache(path: Path, prompts: list[str], embeddings: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(
            f,
            prompts=np.asarray(prompts, dtype=str),
            embeddings=np.asarray(embeddings, dtype=np.float32),
        )
