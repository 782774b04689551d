"""The toy world's shipped networks, read from ``toyfaces/assets`` (``python -m mcaclip.toyfaces
build`` writes them), and its prompt vocabulary.

``mcatrain --world toy`` trains on them exactly as on the real networks: the toy StyleGAN2 and
toy CLIP go through the same loaders as rosinality's and OpenAI's files, the identity network
stands in for ArcFace and the parser for BiSeNet. The attribute probes are for evaluation only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from mcaclip.errors import WeightsMissingError
from mcaclip.toyfaces.attributes import COLOURS

ASSETS = Path(__file__).parent / "assets"


def assets_root() -> Path:
    """The shipped assets, or ``$MCACLIP_TOYFACES_ASSETS`` (a build of your own)."""
    return Path(os.environ.get("MCACLIP_TOYFACES_ASSETS") or ASSETS)


def asset(name: str, root: Path | None = None) -> Path:
    path = (root or assets_root()) / name
    if not path.is_file():
        raise WeightsMissingError(
            f"{path}: the toy world's {name} is missing; rebuild it with "
            "python -m mcaclip.toyfaces build"
        )
    return path


def preset(root: Path | None = None) -> str:
    """The preset the world was built for: toy-64, or tiny-32 for a ``--micro`` build."""
    size = json.loads(asset("metrics.json", root).read_text())["scale"]["size"]
    return "toy-64" if int(size) == 64 else "tiny-32"


def _widths(root: Path) -> int:
    scale = json.loads(asset("metrics.json", root).read_text())["scale"]
    return int(scale["width"])


def _load(net: torch.nn.Module, name: str, root: Path) -> torch.nn.Module:
    state = {k: v.float() for k, v in load_file(str(asset(name, root))).items()}
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def load_identity(root: Path | None = None):
    from mcaclip.toyfaces.nets import ToyIdentity

    return _load(ToyIdentity(width=_widths(root)), "identity.safetensors", root)


def load_parser(root: Path | None = None):
    from mcaclip.toyfaces.nets import ToyParser

    return _load(ToyParser(width=_widths(root) * 3 // 4), "parser.safetensors", root)


def load_probe(root: Path | None = None):
    from mcaclip.toyfaces.nets import AttributeProbe

    return _load(AttributeProbe(width=_widths(root)), "probe.safetensors", root)


def sources(root: Path | None = None) -> dict[str, str]:
    """Generator, CLIP and training-latent files of the world (for TrainConfig)."""
    return {
        "generator": str(asset("generator.safetensors", root)),
        "clip_weights": str(asset("clip.safetensors", root)),
        "latents": str(asset("train_latents.pt", root)),
    }


def vocabulary() -> list[str]:
    """Every edit prompt of the world: colours of each part, beard and glasses kinds."""
    prompts = []
    for c in COLOURS:
        prompts += [f"{c} hair", f"{c} eyes", f"{c} lips", f"{c} goatee", f"{c} beard"]
        prompts += [f"{c} glasses"]
    return prompts
