"""MCA-CLIP: fusion + latent mapper + Precision Region Editing on a frozen StyleGAN2.

Data flow of one edit (shapes for batch B, L = n_latent, D = style_dim)::

    (w [B, L, D], e_t [B, D_text]) --fusion--> t_w [B, L, D] --mapper--> dw [B, L, D]
    w' = w + delta_scale * dw
    (w, w') --MaskedSynthesis--> image [B, 3, H, W], masks: per styled conv [B, 1, H_l, W_l]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mcaclip.config import Preset, load_preset, preset_names
from mcaclip.errors import CheckpointError, ConfigError, ShapeError, WeightsMissingError
from mcaclip.nn.encoder import Encoder4Editing, load_encoder
from mcaclip.nn.fusion import FeatureFusion, LatentOnly, TextEmbeddingMapping
from mcaclip.nn.mapper import LevelsMapper
from mcaclip.nn.masknet import MaskNet
from mcaclip.nn.stylegan2 import Generator, SynthesisNetwork, set_switch
from mcaclip.nn.text import ClipTowers
from mcaclip.nn.weights import load_state_strict, read_module_file, save_tensors

log = logging.getLogger(__name__)


class MaskedOutput(NamedTuple):
    image: torch.Tensor  # blended image [B*P, 3, H, W]
    masks: list[torch.Tensor]  # per styled conv [B*P, 1, H_l, W_l]
    original: torch.Tensor  # G(w) [B, 3, H, W], a by-product of the original stream


def _per_prompt(x: torch.Tensor, prompts: int | torch.SymInt) -> torch.Tensor:
    """[B, ...] -> [B*P, ...], each row P times in a row (latent-major); a view when P == 1."""
    return x.unsqueeze(1).expand(-1, prompts, *x.shape[1:]).reshape(-1, *x.shape[1:])


def _blend(
    m: torch.Tensor, edited: torch.Tensor, original: torch.Tensor, fused: bool = False
) -> torch.Tensor:
    if fused:  # one pass; torch.lerp is exact at m = 0 and m = 1 too (two-sided formula)
        return torch.lerp(original, edited, m)
    # three passes, plain ops that every exporter maps one to one
    return m * edited + (1 - m) * original


class MaskedSynthesis(nn.Module):
    """Two-stream synthesis with per-layer blending, ``f*_l = m_l f'_l + (1 - m_l) f_l``.

    The original stream runs on w and the edited stream on w', in lockstep: at styled conv l the
    mask head reads the original's feature f_l, the edited conv reads the previous *blended*
    feature, and the two outputs are mixed through m_l; the RGB skip that conv feeds is mixed
    with the same mask. All masks 0 give G(w), all masks 1 give G(w'). Both streams use the same
    noise. With P prompts per latent (w [B], w' [B*P], latent-major), the original stream runs
    on the B latents only and each of its features is shared by the P edits; keeping the streams
    in lockstep frees every original feature map as soon as the layer is blended.

    ``fast_path``: another implementation of the same function (an inference runtime's
    kernels), ``fast_path(self, w, w_edit, cond, noise, masks, prompts)`` with the arguments
    checked and the noise made, returning (image, masks, original) or None where it cannot take
    the call (this module's PyTorch form then runs). None (the default): always this form.
    """

    def __init__(self, synthesis: SynthesisNetwork, masknet: MaskNet | None):
        super().__init__()
        self.synthesis = synthesis
        self.masknet = masknet
        self.fused_tails = False  # one-pass blends; set by mcaclip.nn.stylegan2.fuse_tails()
        self.stacked = False  # both streams in one batch; set by stack_streams()
        self.fast_path: Callable | None = None  # see the class docstring; set by a runtime

    def forward(
        self,
        w: torch.Tensor,
        w_edit: torch.Tensor,
        cond: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
        prompts: int | torch.SymInt | None = None,
    ) -> MaskedOutput:
        """w [B, L, D], w' [B*P, L, D], cond (text embedding) [B*P, D_text] -> MaskedOutput.

        ``masks`` overrides the mask net (one [B*P or 1, 1, H_l, W_l] per styled conv).
        ``prompts`` is P (default: w'.shape[0] // w.shape[0]; exporters pass it symbolically).
        """
        synth = self.synthesis
        synth.check_latent(w)
        synth.check_latent(w_edit)
        if prompts is None:
            if w_edit.shape[0] % w.shape[0]:
                raise ShapeError(
                    f"edited batch {w_edit.shape[0]} is not a multiple of the latent batch "
                    f"{w.shape[0]}"
                )
            prompts = w_edit.shape[0] // w.shape[0]
        if masks is None and self.masknet is None:
            raise ConfigError("this editor has no mask net (use_masks=False): pass masks")
        if noise is None:
            noise = synth.make_noise(w.shape[0], noise_mode)
        if self.fast_path is not None:
            out = self.fast_path(self, w, w_edit, cond, noise, masks, prompts)
            if out is not None:
                return MaskedOutput(*out)
        # constant noise [1, 1, H, W] broadcasts over any batch as it is
        noise_edit = [n if n is None or n.shape[0] == 1 else _per_prompt(n, prompts) for n in noise]
        heads = self.masknet.heads if masks is None else None
        shared_masks = heads is not None and heads[0].cond is None

        def mask(layer: int, x: torch.Tensor, x_rep: torch.Tensor) -> torch.Tensor:
            if heads is None:
                return masks[layer]
            if shared_masks:  # masks depend on w only: predict once per latent
                return _per_prompt(heads[layer](x), prompts)
            if heads[layer].fused is not None:  # reads each latent's features once per prompt
                return heads[layer](x, cond, prompts)
            return heads[layer](x_rep, cond)

        if self.stacked:
            return self._stacked(w, w_edit, noise, noise_edit, prompts, mask)
        x, xe, skip, skip_e = synth.input(w), synth.input(w_edit), None, None
        out_masks: list[torch.Tensor] = []
        for kind, module, layer in synth.steps():
            if kind == "conv":
                x = module(x, w[:, layer], noise[layer])
                xe = module(xe, w_edit[:, layer], noise_edit[layer])
                x_rep = _per_prompt(x, prompts)  # a copy when P > 1: made once per layer
                m = mask(layer, x, x_rep)
                out_masks.append(m)
                xe = _blend(m.to(xe.dtype), xe, x_rep, self.fused_tails)
            else:
                skip = module(x, w[:, layer + 1], skip)
                skip_e = module(xe, w_edit[:, layer + 1], skip_e)
                m = out_masks[layer].to(skip_e.dtype)
                skip_e = _blend(m, skip_e, _per_prompt(skip, prompts), self.fused_tails)
        return MaskedOutput(skip_e, out_masks, skip)

    def _stacked(self, w, w_edit, noise, noise_edit, prompts, mask) -> MaskedOutput:
        """The same computation with both streams as one batch, [original B | edited B*P], in
        every styled conv and ToRGB: half the kernels, each on twice the rows (small batches
        leave a GPU mostly idle). The edited rows are blended in place: inference only."""
        synth, b = self.synthesis, w.shape[0]
        ws = torch.cat([w, w_edit])
        noise_all = [
            n if n is None or n.shape[0] == 1 else torch.cat([n, ne])
            for n, ne in zip(noise, noise_edit)
        ]
        y, skip = synth.input(ws), None
        out_masks: list[torch.Tensor] = []
        for kind, module, layer in synth.steps():
            if kind == "conv":
                y = module(y, ws[:, layer], noise_all[layer])
                x, xe = y[:b], y[b:]
                x_rep = _per_prompt(x, prompts)
                m = mask(layer, x, x_rep)
                out_masks.append(m)
                _lerp_into(x_rep, xe, m.to(xe.dtype))
            else:
                skip = module(y, ws[:, layer + 1], skip)
                m = out_masks[layer].to(skip.dtype)
                _lerp_into(_per_prompt(skip[:b], prompts), skip[b:], m)
        return MaskedOutput(skip[b:], out_masks, skip[:b])


def _lerp_into(start: torch.Tensor, end: torch.Tensor, weight: torch.Tensor) -> None:
    """end <- start + weight * (end - start), in place (``end`` is a view of the stacked batch).
    Eager: one pass (``out=``). Under torch.compile a copy into the view instead: Dynamo does
    not trace ``out=`` into a non-contiguous tensor (an NHWC slice), it breaks the graph there,
    and the pieces between the breaks then recompile per layer past its limit and run eagerly
    (torch 2.11, seen on an H100: 2.9x slower)."""
    if torch.compiler.is_compiling():
        end.copy_(torch.lerp(start, end, weight))
    else:
        torch.lerp(start, end, weight, out=end)


def stack_streams(module: nn.Module, on: bool = True) -> nn.Module:
    """Run both streams of every MaskedSynthesis in ``module`` as one batch (inference)."""
    return set_switch(module, "stacked", on)


class EditOutput(NamedTuple):
    image: torch.Tensor  # [B*P, 3, H, W] in [-1, 1] (not clamped)
    masks: list[torch.Tensor]  # per styled conv [B*P, 1, H_l, W_l]; [] without masks
    w_edit: torch.Tensor  # w' [B*P, L, D]
    delta: torch.Tensor  # dw [B*P, L, D] (before delta_scale)
    original: torch.Tensor | None  # G(w) [B, 3, H, W]; None without masks (not computed)


def _encoder(preset: Preset, encoder: str | Path | None) -> Encoder4Editing | None:
    if encoder is None:
        return None
    if preset.encoder is None:
        raise ConfigError(
            f"preset {preset.name!r} names no encoder; add an 'encoder' section to it"
        )
    g = preset.generator
    if str(encoder) == "random":
        log.warning("photo encoder: RANDOM weights (tests and benchmarks only)")
        return Encoder4Editing(preset.encoder, g.n_latent, g.style_dim)
    return load_encoder(encoder, preset.encoder, g.n_latent, g.style_dim)


class MCAEditor(nn.Module):
    """FF (or TEM) + levels mapper + mask net on a frozen generator (and frozen CLIP).

    Trainable: ``fusion``, ``mapper``, ``masknet``. ``generator`` and ``clip`` never require
    grad and stay in eval mode.
    """

    def __init__(
        self,
        preset: Preset,
        generator: Generator,
        clip: ClipTowers | None = None,
        encoder: Encoder4Editing | None = None,  # photos -> W+ (frozen); None: latents only
    ):
        super().__init__()
        g, e = preset.generator, preset.editor
        if generator.config.n_latent != g.n_latent or generator.style_dim != g.style_dim:
            raise ConfigError(f"generator does not match preset {preset.name!r}")
        self.preset = preset
        text_dim = preset.clip.embed_dim
        self.generator = generator.eval().requires_grad_(False)
        self.clip = clip.eval().requires_grad_(False) if clip is not None else None
        if encoder is not None and (encoder.n_latent, encoder.style_dim) != (
            g.n_latent,
            g.style_dim,
        ):
            raise ConfigError(
                f"encoder into W+ [{encoder.n_latent}, {encoder.style_dim}] does not match "
                f"preset {preset.name!r}"
            )
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        if e.fusion == "ff":
            self.fusion = FeatureFusion(
                g.n_latent,
                g.style_dim,
                text_dim,
                e.fusion_heads,
                e.fusion_tokens,
                e.fusion_ffn_mult,
            )
        elif e.fusion == "tem":
            self.fusion = TextEmbeddingMapping(g.n_latent, g.style_dim, text_dim, lr_mul=0.01)
        else:
            self.fusion = LatentOnly(g.n_latent, g.style_dim, text_dim)
        self.mapper = LevelsMapper(
            g.n_latent, g.style_dim, e.levels, e.level_bounds, e.mapper_layers, e.mapper_lr_mul
        )
        cond_dim = text_dim if e.mask_condition == "text" else None
        self.masknet = (
            MaskNet(g.layer_channels(), e.mask_hidden, cond_dim, e.mask_init)
            if e.use_masks
            else None
        )
        # shares generator.synthesis and masknet (registered above, so parameters() and the
        # trainable set name them there); exporters and the runtime call this module
        self.masked = MaskedSynthesis(self.generator.synthesis, self.masknet)

    @classmethod
    def from_preset(
        cls,
        name: str | Preset,
        random_weights: bool = False,
        generator: str | Path | None = None,
        clip_weights: str | Path | None = None,
        encoder: str | Path | None = None,
    ) -> MCAEditor:
        """Build an editor. Real use needs ``generator`` (rosinality .pt or ours) and
        ``clip_weights``; ``random_weights=True`` makes every network random (tests, benches).
        ``encoder``: the photo encoder's weights (e4e's ``.pt`` or ours), ``"random"`` for a
        random one (tests, benches), None for none (the editor then edits latents only)."""
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
        return cls(preset, G, clip, _encoder(preset, encoder))

    TRAINED = ("fusion", "mapper", "masknet")  # what an editor checkpoint holds

    def save(
        self,
        path: str | Path,
        generator: str | Path | None = None,
        clip_weights: str | Path | None = None,
        encoder: str | Path | None = None,
    ) -> None:
        """Write the trained parts to ``path`` (.safetensors) with ``path.json`` beside it:
        the preset and the generator / CLIP weight files they go with (``None``: random, only
        for tests and benchmarks), and the photo encoder's file if it has one. Relative paths
        are kept relative to the checkpoint's folder.
        """
        state = {k: v for k, v in self.state_dict().items() if k.split(".", 1)[0] in self.TRAINED}
        config = {
            "preset": self.preset.to_dict(),
            "generator": None if generator is None else str(generator),
            "clip_weights": None if clip_weights is None else str(clip_weights),
            "encoder": None if encoder is None else str(encoder),
        }
        save_tensors(state, path, "editor", config)

    @classmethod
    def load(cls, path: str | Path, random_weights: bool = False) -> MCAEditor:
        """Read an editor checkpoint written by :meth:`save` (or by ``mcatrain``)."""
        path = Path(path)
        config, tensors = read_module_file(path, "editor")
        try:
            preset = Preset.from_dict(config["preset"])
        except (KeyError, ConfigError) as exc:
            raise CheckpointError(f"{path}: bad editor config ({exc})") from None
        files = {}
        for key in ("generator", "clip_weights"):
            value = config.get(key)
            if value is None and not random_weights:
                raise WeightsMissingError(
                    f"{path}: made with random {key} weights (tests only); "
                    "pass random_weights=True (--random-weights) to load it anyway"
                )
            files[key] = None if value is None else path.parent / value
            if files[key] is not None and not files[key].is_file():
                raise WeightsMissingError(
                    f"{path}: its {key} file {files[key]} is missing; put it back or re-save "
                    "the checkpoint with the right path"
                )
        encoder = config.get("encoder")
        if encoder is not None and encoder != "random":
            encoder = path.parent / encoder
            if not encoder.is_file():
                raise WeightsMissingError(
                    f"{path}: its encoder file {encoder} is missing; put it back or re-save "
                    "the checkpoint without it"
                )
        editor = cls.from_preset(preset, random_weights=random_weights, encoder=encoder, **files)
        holder = nn.Module()  # the trained parts under their checkpoint names
        for name in cls.TRAINED:
            if getattr(editor, name) is not None:
                holder.add_module(name, getattr(editor, name))
        load_state_strict(holder, tensors, str(path))
        return editor

    def attach_encoder(self, encoder: str | Path) -> None:
        """Add the photo encoder (e4e's ``.pt``, ours, or ``"random"``) to a loaded editor. A
        checkpoint whose preset predates encoders takes the shipped preset's of the same name."""
        preset = self.preset
        if preset.encoder is None and preset.name in preset_names():
            shipped = load_preset(preset.name).encoder
            preset = dataclasses.replace(preset, encoder=shipped)
        net = _encoder(preset, encoder)
        self.preset = preset
        self.encoder = net.eval().requires_grad_(False)

    @property
    def delta_scale(self) -> float:
        return self.preset.editor.delta_scale

    @property
    def use_masks(self) -> bool:
        return self.masknet is not None

    def train(self, mode: bool = True) -> MCAEditor:
        super().train(mode)
        self.generator.eval()
        if self.clip is not None:
            self.clip.eval()
        if self.encoder is not None:
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def edit_latent(self, w: torch.Tensor, e_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w [B, L, D], e_t [B, D_text]) -> (w' [B, L, D], dw [B, L, D])."""
        delta = self.mapper(self.fusion(w, e_t))
        return w + self.delta_scale * delta, delta

    def mask_condition(self, e_t: torch.Tensor) -> torch.Tensor | None:
        return e_t if self.masknet is not None and self.masknet.conditioned else None

    def forward(self, w: torch.Tensor, e_t: torch.Tensor, noise_mode: str = "const") -> EditOutput:
        """Edit W+ latents w [B, L, D] with text embeddings e_t [B, D_text] (paired)."""
        return self._edit(w, w, e_t, noise_mode, prompts=1)

    def edit_many(
        self, w: torch.Tensor, e_t: torch.Tensor, noise_mode: str = "const"
    ) -> EditOutput:
        """Every latent w [B, L, D] with every prompt e_t [P, D_text]: outputs [B*P, ...],
        latent-major (row b*P + p). The original stream runs once per latent, not per prompt."""
        b, p = w.shape[0], e_t.shape[0]
        return self._edit(w, w.repeat_interleave(p, dim=0), e_t.repeat(b, 1), noise_mode, p)

    def _edit(self, w, w_rep, e_rep, noise_mode: str, prompts: int) -> EditOutput:
        w_edit, delta = self.edit_latent(w_rep, e_rep)
        synthesis = self.generator.synthesis
        if not self.use_masks:
            return EditOutput(synthesis(w_edit, noise_mode), [], w_edit, delta, None)
        out = self.masked(
            w, w_edit, cond=self.mask_condition(e_rep), noise_mode=noise_mode, prompts=prompts
        )
        return EditOutput(out.image, out.masks, w_edit, delta, out.original)
