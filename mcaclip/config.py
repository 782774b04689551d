"""Architectures as data: frozen dataclasses loaded from JSON presets.

A preset names one generator, one CLIP model and one editor; ``load_preset("tiny-32")`` reads
``mcaclip/presets/tiny-32.json``, and ``load_preset(path)`` reads any JSON file of the same form.
Unknown keys, wrong types and inconsistent values raise :class:`~mcaclip.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mcaclip.errors import ConfigError

LEVEL_NAMES = ("coarse", "medium", "fine")


@dataclass(frozen=True)
class GeneratorConfig:
    """StyleGAN2 generator (rosinality layout)."""

    size: int = 1024  # output resolution, a power of two in [32, 1024]
    style_dim: int = 512  # width of z, w and every style vector
    n_mlp: int = 8  # layers of the mapping network
    channel_multiplier: int = 2  # rosinality's channel_multiplier (config-f: 2)
    channel_base: int = 16384  # channels(res) = min(channel_max, channel_base * multiplier // res)
    channel_max: int = 512  # upper bound on channels at any resolution
    channels: tuple[int, ...] | None = None  # explicit channels for 4, 8, ..., size; None: formula
    lr_mlp: float = 0.01  # learning-rate multiplier of the mapping network
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)  # FIR filter of up-sampling

    def __post_init__(self) -> None:
        if self.size < 32 or self.size > 1024 or self.size & (self.size - 1):
            raise ConfigError(f"generator.size={self.size}: must be a power of two from 32 to 1024")
        if self.style_dim <= 0 or self.n_mlp <= 0:
            raise ConfigError("generator.style_dim and generator.n_mlp must be positive")
        if self.channels is not None and len(self.channels) != self.log_size - 1:
            raise ConfigError(
                f"generator.channels has {len(self.channels)} entries; a {self.size} px "
                f"generator needs {self.log_size - 1} (one per resolution 4..{self.size})"
            )
        narrow = [2**i for i in range(2, self.log_size + 1) if self.channels_at(2**i) < 1]
        if narrow:
            raise ConfigError(
                f"generator: no channels left at {narrow[0]} px; raise channel_base or "
                "channel_multiplier"
            )

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W+ style vectors (18 at 1024 px)."""
        return self.log_size * 2 - 2

    @property
    def num_layers(self) -> int:
        """Number of styled convolutions, i.e. of feature maps the mask heads read (17 at 1024)."""
        return (self.log_size - 2) * 2 + 1

    def channels_at(self, res: int) -> int:
        if self.channels is not None:
            return self.channels[int(math.log2(res)) - 2]
        return min(self.channel_max, self.channel_base * self.channel_multiplier // res)

    def layer_resolutions(self) -> list[int]:
        """Resolution of each styled convolution's output, in synthesis order."""
        return [4] + [2**i for i in range(3, self.log_size + 1) for _ in range(2)]

    def layer_channels(self) -> list[int]:
        return [self.channels_at(r) for r in self.layer_resolutions()]


@dataclass(frozen=True)
class ClipConfig:
    """CLIP model created through open_clip, with weights from a local file only."""

    model: str = "ViT-B-32"  # open_clip architecture name, or a custom name with `architecture`
    architecture: dict[str, Any] | None = field(default=None, hash=False)  # open_clip model cfg
    quick_gelu: bool = True  # OpenAI's weights were trained with QuickGELU
    embed_dim: int = 512  # width of the text/image embedding e_t


@dataclass(frozen=True)
class EditorConfig:
    """MCA-CLIP editor: feature fusion (or TEM), levels mapper, mask heads."""

    fusion: str = "ff"  # "ff": the paper's Feature Fusion; "tem": CF-CLIP's text embedding
    # mapping; "none": the mapper reads w alone (StyleCLIP's latent mapper, one model per prompt)
    fusion_heads: int = 8  # attention heads per fusion layer
    fusion_tokens: int = 1  # split each 512-d vector into this many tokens (1: the paper's form)
    fusion_ffn_mult: int = 2  # hidden width of the fusion feed-forward block, times style_dim
    mapper_layers: int = 4  # equalized-lr linear layers per level group
    mapper_lr_mul: float = 0.01  # learning-rate multiplier of the mapper layers
    levels: tuple[str, ...] = LEVEL_NAMES  # level groups with a mapper; others give zero delta
    level_bounds: tuple[int, int] = (4, 8)  # coarse = [0, 4), medium = [4, 8), fine = [8, L)
    delta_scale: float = 0.1  # w' = w + delta_scale * M(t_w)
    use_masks: bool = True  # False: ablation "w/o PRE", the plain edited image
    mask_hidden: int = 32  # hidden channels of each mask head
    mask_condition: str = "none"  # "none": masks from original features only; "text": also e_t
    # initial mask value in (0, 1), the same everywhere (heads' output bias, small output
    # weights); 0: PyTorch's default init (masks start near 0.5, at random)
    mask_init: float = 0.0

    def __post_init__(self) -> None:
        if self.fusion not in ("ff", "tem", "none"):
            raise ConfigError(f"editor.fusion={self.fusion!r}: choose 'ff', 'tem' or 'none'")
        if self.mask_condition not in ("none", "text"):
            raise ConfigError(
                f"editor.mask_condition={self.mask_condition!r}: choose 'none' or 'text'"
            )
        if not (self.mask_init == 0.0 or 0.0 < self.mask_init < 1.0):
            raise ConfigError(f"editor.mask_init={self.mask_init}: choose a value in (0, 1), or 0")
        unknown = set(self.levels) - set(LEVEL_NAMES)
        if unknown:
            raise ConfigError(f"editor.levels has {sorted(unknown)}; known: {LEVEL_NAMES}")
        if self.fusion_tokens < 1 or self.fusion_heads < 1:
            raise ConfigError("editor.fusion_tokens and editor.fusion_heads must be >= 1")


ENCODER_KINDS = ("e4e",)


@dataclass(frozen=True)
class EncoderConfig:
    """Image -> W+ encoder for photos: e4e's ``Encoder4Editing`` (an IR-SE backbone with a
    feature pyramid; one W from the coarsest features, per-layer offsets from the finer)."""

    kind: str = "e4e"  # e4e's Encoder4Editing (the only kind so far)
    input_size: int = 256  # side of the aligned face the encoder reads (e4e: 256)
    units: tuple[int, ...] = (3, 4, 14, 3)  # IR-SE bottlenecks per stage (IR-SE50)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage
    coarse_ind: int = 3  # W+ layers [0, coarse_ind) read the coarsest features
    middle_ind: int = 7  # [coarse_ind, middle_ind) the middle ones, the rest the finest

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ConfigError(f"encoder.kind={self.kind!r}: choose one of {ENCODER_KINDS}")
        if len(self.units) != 4 or len(self.widths) != 4 or min(self.units) < 1:
            raise ConfigError("encoder.units and encoder.widths need 4 stages, each >= 1 unit")
        if self.input_size < 32 or self.input_size & (self.input_size - 1):
            raise ConfigError(f"encoder.input_size={self.input_size}: a power of two >= 32")
        if not 1 <= self.coarse_ind <= self.middle_ind:
            raise ConfigError("encoder: need 1 <= coarse_ind <= middle_ind")

    @property
    def style_spatial(self) -> tuple[int, int, int]:
        """Sides of the coarse, middle and fine feature maps (input / 16, / 8, / 4)."""
        return self.input_size // 16, self.input_size // 8, self.input_size // 4


@dataclass(frozen=True)
class Preset:
    name: str
    generator: GeneratorConfig
    clip: ClipConfig
    editor: EditorConfig
    encoder: EncoderConfig | None = None  # photos -> W+ (None: latents only)

    def __post_init__(self) -> None:
        dim = self.generator.style_dim
        tokens, heads = self.editor.fusion_tokens, self.editor.fusion_heads
        if dim % tokens or (dim // tokens) % heads:
            raise ConfigError(
                f"preset {self.name!r}: style_dim {dim} must split into fusion_tokens={tokens} "
                f"tokens whose width divides by fusion_heads={heads}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str | None = None) -> Preset:
        if not isinstance(data, dict):
            raise ConfigError(f"preset {name!r}: expected a JSON object")
        _check_keys(data, {"name", "generator", "clip", "editor", "encoder"}, "preset")
        encoder = data.get("encoder")
        return cls(
            name=str(data.get("name", name or "custom")),
            generator=_build(GeneratorConfig, data.get("generator", {}), "generator"),
            clip=_build(ClipConfig, data.get("clip", {}), "clip"),
            editor=_build(EditorConfig, data.get("editor", {}), "editor"),
            encoder=None if encoder is None else _build(EncoderConfig, encoder, "encoder"),
        )


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(data, set(fields), where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        default = fields[key].default
        if isinstance(value, list):
            value = tuple(value)
        if default is None:  # optional containers: channels (list), architecture (object)
            ok = value is None or isinstance(value, (tuple, dict))
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        else:
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            ok = isinstance(value, type(default)) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(
                f"{where}.{key}: expected {type(default).__name__}, got {type(value).__name__}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    files = resources.files("mcaclip") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset by name (``ffhq-1024``, ``toy-64``, ``tiny-32``) or a JSON file."""
    text: str
    path = Path(name_or_path)
    if str(name_or_path).endswith(".json") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        text, label = path.read_text(), str(path)
    else:
        name = str(name_or_path)
        if name not in preset_names():
            raise ConfigError(
                f"unknown preset {name!r}; choose one of {', '.join(preset_names())} "
                "or pass a path to a preset JSON file"
            )
        text = (resources.files("mcaclip") / "presets" / f"{name}.json").read_text()
        label = name
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"preset {label}: malformed JSON ({exc})") from None
    return Preset.from_dict(data, name=label)
