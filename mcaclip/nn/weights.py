"""Reading and writing weights, safely, for every network: our safetensors format, outside
PyTorch files, and state dicts loaded with strict key checking.

Our format: ``NAME.safetensors`` (tensors only) with ``NAME.json`` beside it
(``{"format": "mcaclip", "kind": ..., "version": 1, "config": {...}}``). Outside files are read
with ``torch.load(weights_only=True)``: a file that needs arbitrary pickled objects is refused.
Every write goes to a temporary file first and is renamed into place. What a file holds for one
network (a generator's config, rosinality's key names) is that network's module's business
(:meth:`mcaclip.nn.stylegan2.Generator.from_checkpoint`, :mod:`mcaclip.nn.rosinality`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mcaclip.errors import CheckpointError
from mcaclip.fileio import atomic_write

FORMAT_VERSION = 1


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (argparse.Namespace allowed,
    as rosinality's training checkpoints store their ``args`` in one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only PyTorch file ({first}); "
            "re-save it with only tensors and plain dicts"
        ) from None


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """Load ``state`` into ``module``; any missing, unexpected or mis-shaped key is an error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
    if problems:
        raise CheckpointError(
            f"{label}: does not match the architecture: {'; '.join(problems)}. "
            "Check that the preset matches the checkpoint."
        )
    module.load_state_dict(state, strict=True)


def save_module(module: nn.Module, path: str | Path, kind: str, config: Any) -> None:
    """Write ``module``'s state dict to ``path`` (.safetensors) and its config beside it."""
    save_tensors(module.state_dict(), path, kind, dataclasses.asdict(config))


def save_tensors(
    tensors: dict[str, torch.Tensor], path: str | Path, kind: str, config: dict[str, Any]
) -> None:
    """Write ``tensors`` to ``path`` (.safetensors) and ``{format, kind, version, config}``
    to ``path.with_suffix('.json')``, each atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: our checkpoints end in .safetensors")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {"format": "mcaclip", "kind": kind, "version": FORMAT_VERSION, "config": config}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta)))


def read_module_file(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read one of our checkpoints: (config dict, tensors)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: its config {meta_path.name} is missing beside it")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: malformed JSON ({exc})") from None
    if meta.get("format") != "mcaclip" or meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not an mcaclip {kind} checkpoint")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer mcaclip (format {meta['version']}); upgrade mcaclip"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from None
    return meta["config"], tensors
