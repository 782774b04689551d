"""Reading and writing weights: our safetensors format and outside formats, safely.

Our format: ``NAME.safetensors`` (tensors only) with ``NAME.json`` beside it
(``{"format": "mcaclip", "kind": ..., "version": 1, "config": {...}}``). Outside files are read
with ``torch.load(weights_only=True)``: a file that needs arbitrary pickled objects is refused.
Every write goes to a temporary file first and is renamed into place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mcaclip.config import GeneratorConfig, Preset, load_preset
from mcaclip.errors import CheckpointError, ConfigError
from mcaclip.fileio import atomic_write

log = logging.getLogger(__name__)
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


# --- StyleGAN2 -------------------------------------------------------------------------------


def rosinality_to_ours(g_ema: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality keys -> ours: ``style.*`` -> ``mapping.style.*``, the rest -> ``synthesis.*``."""
    return {
        (f"mapping.{k}" if k.startswith("style.") else f"synthesis.{k}"): v
        for k, v in g_ema.items()
    }


def infer_rosinality_config(
    g_ema: dict[str, torch.Tensor], lr_mlp: float = 0.01
) -> GeneratorConfig:
    """Architecture of a rosinality ``g_ema`` from its tensor shapes."""
    try:
        style_dim = g_ema["style.1.weight"].shape[1]
        n_mlp = sum(1 for k in g_ema if re.fullmatch(r"style\.\d+\.weight", k))
        n_convs = sum(1 for k in g_ema if re.fullmatch(r"convs\.\d+\.conv\.weight", k))
        channels = [g_ema["conv1.conv.weight"].shape[1]]
        channels += [g_ema[f"convs.{2 * j}.conv.weight"].shape[1] for j in range(n_convs // 2)]
    except KeyError as exc:
        raise CheckpointError(f"not a rosinality StyleGAN2 generator: key {exc} missing") from None
    return GeneratorConfig(
        size=2 ** (2 + n_convs // 2),
        style_dim=style_dim,
        n_mlp=n_mlp,
        channels=tuple(int(c) for c in channels),
        lr_mlp=lr_mlp,
    )


def _generator_config(preset) -> GeneratorConfig | None:
    if preset is None or isinstance(preset, GeneratorConfig):
        return preset
    if isinstance(preset, Preset):
        return preset.generator
    return load_preset(preset).generator


def load_generator(path: str | Path, preset=None):
    """See :meth:`mcaclip.nn.stylegan2.Generator.from_checkpoint`."""
    from mcaclip.nn.stylegan2 import Generator

    path = Path(path)
    wanted = _generator_config(preset)
    if path.suffix == ".safetensors":
        cfg_dict, tensors = read_module_file(path, "generator")
        try:
            config = GeneratorConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()}
            )
        except (TypeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: bad generator config ({exc})") from None
        state, latent_avg = tensors, None
    else:
        ckpt = safe_torch_load(path)
        if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
            raise CheckpointError(
                f"{path}: expected a rosinality checkpoint, a dict with 'g_ema' (and 'latent_avg')"
            )
        lr_mlp = wanted.lr_mlp if wanted is not None else 0.01
        config = infer_rosinality_config(ckpt["g_ema"], lr_mlp)
        state = rosinality_to_ours(ckpt["g_ema"])
        latent_avg = ckpt.get("latent_avg")
    if wanted is not None:
        _check_same_architecture(config, wanted, path)
        if path.suffix != ".safetensors":  # ours record their config; rosinality's do not
            config = wanted
    G = Generator(config)
    if "latent_avg" not in state:
        state = dict(state, latent_avg=G.latent_avg)
    load_state_strict(G, state, str(path))
    if latent_avg is not None:
        G.latent_avg.copy_(latent_avg.reshape(-1))
    elif path.suffix != ".safetensors":
        log.warning("%s has no latent_avg: estimating it from 4096 mapped samples", path)
        G.latent_avg.copy_(G.estimate_latent_avg())
    return G.eval().requires_grad_(False)


def _check_same_architecture(found: GeneratorConfig, wanted: GeneratorConfig, path) -> None:
    diffs = []
    for name in ("size", "style_dim", "n_mlp"):
        if getattr(found, name) != getattr(wanted, name):
            diffs.append(
                f"{name} {getattr(found, name)} (file) vs {getattr(wanted, name)} (preset)"
            )
    res = [2**i for i in range(2, found.log_size + 1)]
    if not diffs and [found.channels_at(r) for r in res] != [wanted.channels_at(r) for r in res]:
        diffs.append("channel widths differ")
    if diffs:
        raise CheckpointError(f"{path}: does not match the preset: {'; '.join(diffs)}")
