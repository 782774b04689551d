"""rosinality/stylegan2-pytorch's generator checkpoints as state dicts of ours: pure functions of
the ``g_ema`` dict (no file reading, no modules).

Our :class:`~mcaclip.nn.stylegan2.Generator` keeps rosinality's module and parameter names, with
the mapping network under ``mapping.`` and the rest under ``synthesis.``; the architecture is
read from the tensor shapes (:func:`infer_rosinality_config`).
"""

from __future__ import annotations

import re

import torch

from mcaclip.config import GeneratorConfig
from mcaclip.errors import CheckpointError


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
