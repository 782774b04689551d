"""CLIP text and image towers through open_clip, from local weight files only.

Nothing is downloaded: the architecture comes from open_clip's registry (``ViT-B-32``) or from a
custom config in the preset, and the weights from a file the user passes:

* open_clip checkpoints: ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``
  (or a training checkpoint with ``state_dict``, ``module.`` prefixes are stripped);
* OpenAI's TorchScript archives (``ViT-B-32.pt``), read with ``torch.jit.load`` on CPU.

Without a weights file the towers refuse to build unless ``random_weights=True`` is asked for
explicitly (tests and benchmarks), and then they say so in the log.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mcaclip.config import ClipConfig
from mcaclip.errors import CheckpointError, ConfigError, WeightsMissingError
from mcaclip.nn.weights import load_state_strict, safe_torch_load
from mcaclip.prompts import tokenize

log = logging.getLogger(__name__)

# Entries of OpenAI's archives that are hyper-parameters, not weights.
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


def clip_architecture(config: ClipConfig) -> dict:
    arch = config.architecture or open_clip.get_model_config(config.model)
    if arch is None:
        raise ConfigError(
            f"unknown CLIP model {config.model!r}: use an open_clip name such as ViT-B-32, "
            "or give 'architecture' in the preset"
        )
    if int(arch["embed_dim"]) != config.embed_dim:
        raise ConfigError(
            f"CLIP {config.model}: embed_dim {arch['embed_dim']} differs from the preset's "
            f"clip.embed_dim {config.embed_dim}"
        )
    return arch


def read_clip_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read CLIP weights from a local open_clip or OpenAI file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"CLIP weights {path}: file not found")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from None
    elif _is_torchscript(path):
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: unreadable TorchScript archive ({exc})") from None
    else:
        state = safe_torch_load(path)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of CLIP tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _NON_WEIGHT_KEYS}
    return {k: v.float() for k, v in state.items()}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())


class ClipTowers(nn.Module):
    """Frozen CLIP: ``tokenize``, ``encode_text`` -> e_t [B, D], ``encode_image`` -> [B, D].

    Embeddings are L2-normalised, as CLIP compares them.
    """

    def __init__(self, config: ClipConfig, model: nn.Module):
        super().__init__()
        self.config = config
        self.model = model
        self.register_buffer("mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1), False)

    @classmethod
    def create(
        cls,
        config: ClipConfig,
        weights: str | Path | None = None,
        random_weights: bool = False,
    ) -> ClipTowers:
        """Build the towers; ``weights`` is required unless ``random_weights`` is True."""
        arch = clip_architecture(config)
        if weights is None and not random_weights:
            raise WeightsMissingError(
                f"CLIP {config.model} needs a local weights file (--clip-weights PATH, e.g. "
                "OpenAI's ViT-B-32.pt or open_clip_pytorch_model.bin); nothing is downloaded"
            )
        model = open_clip.model.CLIP(
            embed_dim=int(arch["embed_dim"]),
            vision_cfg=arch["vision_cfg"],
            text_cfg=arch["text_cfg"],
            quick_gelu=config.quick_gelu,
        )
        if weights is not None:
            load_state_strict(model, read_clip_state(weights), f"CLIP weights {weights}")
        else:
            log.warning("CLIP %s has RANDOM weights: for tests and benchmarks only", config.model)
        return cls(config, model).eval().requires_grad_(False)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> token ids [B, context_length]; too long or empty prompts are errors."""
        return tokenize(prompts, self.context_length)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] -> e_t [B, D], unit norm."""
        return F.normalize(self.model.encode_text(tokens), dim=-1)

    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> e_t [B, D] (tokenize + encode_text)."""
        device = self.mean.device
        return self.encode_text(self.tokenize(prompts).to(device))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> [B, D], unit norm (resized to CLIP's input)."""
        x = (images.clamp(-1, 1) + 1) / 2
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return F.normalize(self.model.encode_image(x), dim=-1)
