"""MCA-CLIP: fusion + latent mapper + Precision Region Editing on a frozen StyleGAN2.

Data flow of one edit (shapes for batch B, L = n_latent, D = style_dim)::

    (w [B, L, D], e_t [B, D_text]) --fusion--> t_w [B, L, D] --mapper--> dw [B, L, D]
    w' = w + delta_scale * dw
    (w, w') --MaskedSynthesis--> image [B, 3, H, W], masks: per styled conv [B, 1, H_l, W_l]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mcaclip.config import Preset, load_preset
from mcaclip.errors import ConfigError, ShapeError, WeightsMissingError
from mcaclip.nn.fusion import FeatureFusion, TextEmbeddingMapping
from mcaclip.nn.mapper import LevelsMapper
from mcaclip.nn.masknet import MaskNet
from mcaclip.nn.stylegan2 import Generator, SynthesisNetwork
from mcaclip.nn.text import ClipTowers


@dataclass
class OriginalStream:
    """What the original stream G(w) leaves for the blend: per-layer features and RGB skips."""

    features: list[torch.Tensor]  # styled conv l: [B, C_l, H_l, W_l]
    skips: dict[int, torch.Tensor]  # RGB skip after the ToRGB fed by conv l: [B, 3, H_l, W_l]
    noise: list[torch.Tensor | None]  # the noise both streams use
    image: torch.Tensor  # G(w) [B, 3, H, W]

    @property
    def batch(self) -> int:
        return self.image.shape[0]

    def repeat(self, k: int) -> OriginalStream:
        """Each latent k times in a row (latent-major), to pair with k prompts per latent."""
        if k == 1:
            return self

        def rep(x):
            return x if x is None or x.shape[0] == 1 else x.repeat_interleave(k, dim=0)

        return OriginalStream(
            features=[rep(f) for f in self.features],
            skips={layer: rep(s) for layer, s in self.skips.items()},
            noise=[rep(n) for n in self.noise],
            image=rep(self.image),
        )


class MaskedSynthesis(nn.Module):
    """Two-stream synthesis with per-layer blending, ``f*_l = m_l f'_l + (1 - m_l) f_l``.

    The original stream runs on w once (:meth:`original`); the edited stream runs on w' from the
    blended features, and at every styled conv l (and at the RGB skip that conv feeds) mixes its
    output with the original's through mask m_l, predicted from the original's features. All
    masks 0 give G(w); all masks 1 give G(w'). Both streams use the same noise.
    """

    def __init__(self, synthesis: SynthesisNetwork, masknet: MaskNet | None):
        super().__init__()
        self.synthesis = synthesis
        self.masknet = masknet

    def original(
        self,
        w: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
    ) -> OriginalStream:
        """Run G(w) [B, L, D] and keep what the blend needs."""
        if noise is None:
            noise = self.synthesis.make_noise(w.shape[0], noise_mode)
        features: list[torch.Tensor] = []
        skips: dict[int, torch.Tensor] = {}

        def record(kind: str, layer: int, x: torch.Tensor) -> torch.Tensor:
            (features.append(x) if kind == "feature" else skips.__setitem__(layer, x))
            return x

        image = self.synthesis(w, noise=noise, hook=record)
        return OriginalStream(features, skips, list(noise), image)

    def predict_masks(
        self, original: OriginalStream, cond: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        if self.masknet is None:
            raise ConfigError("this editor has no mask net (use_masks=False)")
        return self.masknet(original.features, cond)

    def forward(
        self,
        w_edit: torch.Tensor,
        original: OriginalStream,
        cond: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
        use_masks: bool = True,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """w' [B*k, L, D] with ``original`` of B latents -> (image [B*k, 3, H, W], masks).

        ``masks`` overrides the mask net (one [B*k or 1, 1, H_l, W_l] per styled conv);
        ``use_masks=False`` returns the plain edited image G(w') and no masks ("w/o PRE").
        """
        if w_edit.shape[0] % original.batch:
            raise ShapeError(
                f"edited batch {w_edit.shape[0]} is not a multiple of the original batch "
                f"{original.batch}"
            )
        original = original.repeat(w_edit.shape[0] // original.batch)
        if not use_masks:
            return self.synthesis(w_edit, noise=original.noise), []
        if masks is None:
            masks = self.predict_masks(original, cond)

        def blend(kind: str, layer: int, x: torch.Tensor) -> torch.Tensor:
            base = original.features[layer] if kind == "feature" else original.skips[layer]
            m = masks[layer].to(x.dtype)
            return m * x + (1 - m) * base

        return self.synthesis(w_edit, noise=original.noise, hook=blend), masks


class EditOutput(NamedTuple):
    image: torch.Tensor  # [B, 3, H, W] in [-1, 1] (not clamped)
    masks: list[torch.Tensor]  # per styled conv [B, 1, H_l, W_l]; [] without masks
    w_edit: torch.Tensor  # w' [B, L, D]
    delta: torch.Tensor  # dw [B, L, D] (before delta_scale)


class MCAEditor(nn.Module):
    """FF (or TEM) + levels mapper + mask net on a frozen generator (and frozen CLIP).

    Trainable: ``fusion``, ``mapper``, ``masknet``. ``generator`` and ``clip`` never require
    grad and stay in eval mode.
    """

    def __init__(self, preset: Preset, generator: Generator, clip: ClipTowers | None = None):
        super().__init__()
        g, e = preset.generator, preset.editor
        if generator.config.n_latent != g.n_latent or generator.style_dim != g.style_dim:
            raise ConfigError(f"generator does not match preset {preset.name!r}")
        self.preset = preset
        text_dim = preset.clip.embed_dim
        self.generator = generator.eval().requires_grad_(False)
        self.clip = clip.eval().requires_grad_(False) if clip is not None else None
        if e.fusion == "ff":
            self.fusion = FeatureFusion(
                g.n_latent,
                g.style_dim,
                text_dim,
                e.fusion_heads,
                e.fusion_tokens,
                e.fusion_ffn_mult,
            )
        else:
            self.fusion = TextEmbeddingMapping(g.n_latent, g.style_dim, text_dim, lr_mul=0.01)
        self.mapper = LevelsMapper(
            g.n_latent, g.style_dim, e.levels, e.level_bounds, e.mapper_layers, e.mapper_lr_mul
        )
        cond_dim = text_dim if e.mask_condition == "text" else None
        self.masknet = MaskNet(g.layer_channels(), e.mask_hidden, cond_dim) if e.use_masks else None

    @classmethod
    def from_preset(
        cls,
        name: str | Preset,
        random_weights: bool = False,
        generator: str | Path | None = None,
        clip_weights: str | Path | None = None,
    ) -> MCAEditor:
        """Build an editor. Real use needs ``generator`` (rosinality .pt or ours) and
        ``clip_weights``; ``random_weights=True`` makes every network random (tests, benches)."""
        preset = name if isinstance(name, Preset) else load_preset(name)
        if not random_weights and (generator is None or clip_weights is None):
            missing = [
                n
                for n, v in (("generator", generator), ("clip_weights", clip_weights))
                if v is None
            ]
            raise WeightsMissingError(
                f"MCAEditor for {preset.name} needs {' and '.join(missing)} weight files; "
                "pass random_weights=True only for tests and benchmarks"
            )
        G = (
            Generator.from_checkpoint(generator, preset)
            if generator is not None
            else Generator(preset.generator)
        )
        clip = ClipTowers.create(preset.clip, clip_weights, random_weights=clip_weights is None)
        return cls(preset, G, clip)

    @property
    def delta_scale(self) -> float:
        return self.preset.editor.delta_scale

    @property
    def use_masks(self) -> bool:
        return self.masknet is not None

    @property
    def masked(self) -> MaskedSynthesis:
        return MaskedSynthesis(self.generator.synthesis, self.masknet)

    def train(self, mode: bool = True) -> MCAEditor:
        super().train(mode)
        self.generator.eval()
        if self.clip is not None:
            self.clip.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def edit_latent(self, w: torch.Tensor, e_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w [B, L, D], e_t [B, D_text]) -> (w' [B, L, D], dw [B, L, D])."""
        delta = self.mapper(self.fusion(w, e_t))
        return w + self.delta_scale * delta, delta

    def mask_condition(self, e_t: torch.Tensor) -> torch.Tensor | None:
        return e_t if self.masknet is not None and self.masknet.conditioned else None

    def forward(
        self,
        w: torch.Tensor,
        e_t: torch.Tensor,
        noise_mode: str = "const",
        original: OriginalStream | None = None,
    ) -> EditOutput:
        """Edit W+ latents w [B, L, D] with text embeddings e_t [B, D_text] (paired)."""
        w_edit, delta = self.edit_latent(w, e_t)
        masked = self.masked
        if original is None:
            original = masked.original(w, noise_mode)
        image, masks = masked(
            w_edit, original, cond=self.mask_condition(e_t), use_masks=self.use_masks
        )
        return EditOutput(image, masks, w_edit, delta)

    def edit_many(
        self, w: torch.Tensor, e_t: torch.Tensor, noise_mode: str = "const"
    ) -> EditOutput:
        """Every latent w [B, L, D] with every prompt e_t [P, D_text]: outputs [B*P, ...],
        latent-major (row b*P + p). The original stream runs once per latent, not per prompt."""
        b, p = w.shape[0], e_t.shape[0]
        original = self.masked.original(w, noise_mode)
        w_rep = w.repeat_interleave(p, dim=0)
        e_rep = e_t.repeat(b, 1)
        return self.forward(w_rep, e_rep, noise_mode, original=original)
