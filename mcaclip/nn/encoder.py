"""e4e's ``Encoder4Editing``: an aligned face [B, 3, S, S] in [-1, 1] -> W+ [B, L, D].

An IR-SE backbone (the bottlenecks of :mod:`mcaclip.nn.identity`) whose last three stages feed
a small feature pyramid. One style block reads the coarsest map (S/16) and gives a single W,
copied to every layer; every other layer i adds its own offset, read from the coarse (i <
``coarse_ind``), middle (S/8) or fine (S/4) map. ``latent_avg`` (the generator's mean W) is
added last, as pSp/e4e do with ``start_from_latent_avg``.

Parameter names follow e4e's checkpoints (``e4e_ffhq_encode.pt``: ``state_dict['encoder.*']``
and ``latent_avg``), so :meth:`Encoder4Editing.from_e4e` loads them with strict key checks.
Our own files (:meth:`save`, :meth:`load`) hold the same tensors and the
:class:`~mcaclip.config.EncoderConfig` beside them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.config import EncoderConfig
from mcaclip.errors import CheckpointError, ConfigError, ShapeError
from mcaclip.nn.identity import BottleneckIRSE
from mcaclip.nn.stylegan2 import EqualLinear
from mcaclip.nn.weights import load_state_strict, read_module_file, safe_torch_load, save_tensors


class GradualStyleBlock(nn.Module):
    """A feature map [B, C, s, s] -> one style vector [B, D]: stride-2 convs down to 1x1."""

    def __init__(
        self,
        in_channels: int,  # channels of the feature map read
        style_dim: int,  # width of the style vector (and of the convs)
        spatial: int,  # side of the feature map read, a power of two
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(max(int(math.log2(spatial)), 1)):
            layers += [nn.Conv2d(in_channels if i == 0 else style_dim, style_dim, 3, 2, 1)]
            layers += [nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(style_dim, style_dim)
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(x.shape[0], self.style_dim))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The pyramid's top-down step: ``x`` resized to ``y``'s side (bilinear) plus ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """Aligned faces [B, 3, S, S] in [-1, 1] (S = ``config.input_size``) -> W+ [B, L, D]."""

    def __init__(
        self,
        config: EncoderConfig,  # backbone and pyramid (a preset's ``encoder``)
        n_latent: int,  # W+ layers L of the generator it inverts into (18 at 1024 px)
        style_dim: int,  # width D of w (512 for FFHQ)
    ):
        super().__init__()
        self.config = config
        self.n_latent = n_latent
        self.style_dim = style_dim
        w0 = config.widths[0]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.PReLU(w0)
        )
        blocks, in_channel = [], w0
        for n, depth in zip(config.units, config.widths):
            blocks.append(BottleneckIRSE(in_channel, depth, 2))
            blocks += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
            in_channel = depth
        self.body = nn.Sequential(*blocks)
        ends = [sum(config.units[: i + 1]) - 1 for i in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # fine (S/4), middle (S/8), coarse (S/16)
        coarse, middle, fine = config.style_spatial
        top = config.widths[3]
        self.styles = nn.ModuleList(
            GradualStyleBlock(
                top,
                style_dim,
                coarse if i < config.coarse_ind else middle if i < config.middle_ind else fine,
            )
            for i in range(n_latent)
        )
        self.latlayer1 = nn.Conv2d(config.widths[2], top, 1)
        self.latlayer2 = nn.Conv2d(config.widths[1], top, 1)
        self.register_buffer("latent_avg", torch.zeros(n_latent, style_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            raise ShapeError(f"the encoder takes faces [B, 3, {size}, {size}], got {list(x.shape)}")
        x = self.input_layer(x)
        fine = middle = coarse = x
        for i, block in enumerate(self.body):
            x = block(x)
            if i == self.taps[0]:
                fine = x
            elif i == self.taps[1]:
                middle = x
            elif i == self.taps[2]:
                coarse = x
        w0 = self.styles[0](coarse)
        offsets = [torch.zeros_like(w0)]
        features = coarse
        p2 = None
        for i in range(1, self.n_latent):
            if i == self.config.coarse_ind:
                p2 = features = _upsample_add(coarse, self.latlayer1(middle))
            elif i == self.config.middle_ind:
                if p2 is None:  # coarse_ind == middle_ind: the middle level is empty
                    p2 = _upsample_add(coarse, self.latlayer1(middle))
                features = _upsample_add(p2, self.latlayer2(fine))
            offsets.append(self.styles[i](features))
        return w0.unsqueeze(1) + torch.stack(offsets, dim=1) + self.latent_avg

    # -- weights -----------------------------------------------------------------------------

    @classmethod
    def from_e4e(cls, path: str | Path, config: EncoderConfig, n_latent: int, style_dim: int):
        """e4e's checkpoint (``e4e_ffhq_encode.pt``: ``state_dict`` with ``encoder.*`` keys,
        and ``latent_avg`` [D] or [L, D]), read weights-only, keys checked strictly."""
        ckpt = safe_torch_load(path)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
            raise CheckpointError(
                f"{path}: not an e4e checkpoint (expected a dict with 'state_dict' and "
                "'latent_avg', as e4e_ffhq_encode.pt)"
            )
        prefix = "encoder."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"{path}: its state_dict has no 'encoder.*' keys")
        avg = ckpt.get("latent_avg")
        if not isinstance(avg, torch.Tensor):
            raise CheckpointError(
                f"{path}: has no latent_avg; e4e's encoders predict offsets from the generator's "
                "mean latent, which the checkpoint must carry"
            )
        if tuple(avg.shape) == (style_dim,):
            avg = avg.expand(n_latent, style_dim)
        net = cls(config, n_latent, style_dim)
        state["latent_avg"] = avg.float().contiguous()
        load_state_strict(net, state, f"e4e encoder {path}")
        return net.eval().requires_grad_(False)

    def save(self, path: str | Path, half: bool = False) -> None:
        """Our format: ``path`` (.safetensors) and ``path.json`` with the config and L, D;
        ``half``: floating-point tensors stored in FP16 (half the bytes; read back as FP32)."""
        config = {
            "encoder": dataclasses.asdict(self.config),
            "n_latent": self.n_latent,
            "style_dim": self.style_dim,
        }
        state = self.state_dict()
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_tensors(state, path, "encoder", config)

    @classmethod
    def load(cls, path: str | Path, config: EncoderConfig | None = None) -> Encoder4Editing:
        """Our file (:meth:`save`); with ``config`` given, it must hold that architecture."""
        path = Path(path)
        meta, tensors = read_module_file(path, "encoder")
        try:
            found = EncoderConfig(**{k: _tuple(v) for k, v in meta["encoder"].items()})
            n_latent, style_dim = int(meta["n_latent"]), int(meta["style_dim"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: bad encoder config ({exc})") from None
        if config is not None and found != config:
            raise CheckpointError(
                f"{path}: holds an encoder {found} but the preset names {config}; "
                "retrain it or use the matching preset"
            )
        net = cls(found, n_latent, style_dim)
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        load_state_strict(net, tensors, f"encoder {path}")
        return net.eval().requires_grad_(False)


def load_encoder(path: str | Path, config: EncoderConfig, n_latent: int, style_dim: int):
    """An encoder for a generator with ``n_latent`` x ``style_dim`` W+: e4e's ``.pt`` or ours."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        net = Encoder4Editing.from_e4e(path, config, n_latent, style_dim)
    else:
        net = Encoder4Editing.load(path, config)
    if (net.n_latent, net.style_dim) != (n_latent, style_dim):
        raise CheckpointError(
            f"{path}: an encoder into W+ [{net.n_latent}, {net.style_dim}], the generator "
            f"needs [{n_latent}, {style_dim}]"
        )
    return net


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value
