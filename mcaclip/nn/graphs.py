"""The deployment graphs: thin modules with tensor-only inputs and outputs.

Each is what one exported graph computes, and the PyTorch runtime backend runs the very same
modules, so both backends take the same feeds and return the same named outputs. ``B`` is the
latent batch, ``P`` the prompts per latent; both are dynamic axes of the exported graphs.

=================  =========================================  ==================================
graph              inputs                                      outputs
=================  =========================================  ==================================
mapping            z [B, D], truncation [B, 1]                 w_plus [B, L, D]
text_encoder       tokens int64 [B, T]                         e_t [B, D_text]
fusion             w [B, L, D], e_t [B, D_text]                t_w [B, L, D]
mapper             w [B, L, D], t_w [B, L, D]                  w_edit [B, L, D]
masknet            feature_00..feature_{K-1}, (e_t)            mask_00..mask_{K-1}
masked_generator   w [B, L, D], w_edit [B, P, L, D],           image [B, P, 3, H, W],
                   e_t [B, P, D_text]                          original [B, 3, H, W],
                                                               mask_00.. [B, P, 1, H_l, W_l]
encoder            image [B, 3, S, S] (aligned faces)          w_plus [B, L, D]
=================  =========================================  ==================================

``encoder`` (e4e, photos -> W+) is in a bundle only when its editor has one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

GRAPH_NAMES = (
    "mapping",
    "text_encoder",
    "fusion",
    "mapper",
    "masknet",
    "masked_generator",
    "encoder",
)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: symbolic dims are strings ("batch", "prompts")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def mask_names(k: int) -> list[str]:
    return [f"mask_{i:02d}" for i in range(k)]


class MappingGraph(nn.Module):
    """z [B, D], truncation [B, 1] -> W+ [B, L, D]. Holds the mapping network and the average
    latent only, so that a copy of this graph (an FP16 one) does not copy the synthesis."""

    def __init__(self, generator):
        super().__init__()
        self.mapping = generator.mapping
        self.register_buffer("latent_avg", generator.latent_avg, persistent=False)
        self.n_latent = generator.n_latent

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        w = self.latent_avg + truncation * (w - self.latent_avg)
        return w.unsqueeze(1).expand(-1, self.n_latent, -1)


class TextEncoderGraph(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens)


class FusionGraph(nn.Module):
    def __init__(self, fusion):
        super().__init__()
        self.fusion = fusion

    def forward(self, w: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        return self.fusion(w, e_t)


class MapperGraph(nn.Module):
    def __init__(self, mapper, delta_scale: float):
        super().__init__()
        self.mapper = mapper
        self.delta_scale = delta_scale

    def forward(self, w: torch.Tensor, t_w: torch.Tensor) -> torch.Tensor:
        return w + self.delta_scale * self.mapper(t_w)


class MaskNetGraph(nn.Module):
    def __init__(self, masknet):
        super().__init__()
        self.masknet = masknet

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = len(self.masknet.heads)
        cond = inputs[k] if self.masknet.conditioned else None
        return tuple(self.masknet(list(inputs[:k]), cond))


class MaskedGeneratorGraph(nn.Module):
    def __init__(self, masked):
        super().__init__()
        self.masked = masked

    def forward(
        self, w: torch.Tensor, w_edit: torch.Tensor, e_t: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        b, p = w_edit.shape[0], w_edit.shape[1]
        if self.masked.masknet is None:  # "w/o PRE": the plain edit, no masks
            synth = self.masked.synthesis
            image = synth(w_edit.flatten(0, 1))
            return (image.reshape(b, p, *image.shape[1:]), synth(w))
        cond = e_t.flatten(0, 1) if self.masked.masknet.conditioned else None
        out = self.masked(w, w_edit.flatten(0, 1), cond=cond, prompts=p)
        image = out.image.reshape(b, p, *out.image.shape[1:])
        masks = tuple(m.reshape(b, p, *m.shape[1:]) for m in out.masks)
        return (image, out.original, *masks)


class EncoderGraph(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


def graph_io(editor, name: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of graph ``name`` for ``editor``'s architecture."""
    preset = editor.preset
    g = preset.generator
    L, D, Dt = g.n_latent, g.style_dim, preset.clip.embed_dim
    H = g.size
    layers = list(zip(g.layer_channels(), g.layer_resolutions()))
    n_masks = len(layers) if editor.masknet is not None else 0
    masks = [
        TensorSpec(n, ("batch", "prompts", 1, r, r))
        for n, (_, r) in zip(mask_names(n_masks), layers)
    ]
    if name == "mapping":
        return [TensorSpec("z", ("batch", D)), TensorSpec("truncation", ("batch", 1))], [
            TensorSpec("w_plus", ("batch", L, D))
        ]
    if name == "text_encoder":
        ctx = editor.clip.context_length
        return [TensorSpec("tokens", ("batch", ctx), "int64")], [TensorSpec("e_t", ("batch", Dt))]
    if name == "fusion":
        return [TensorSpec("w", ("batch", L, D)), TensorSpec("e_t", ("batch", Dt))], [
            TensorSpec("t_w", ("batch", L, D))
        ]
    if name == "mapper":
        return [TensorSpec("w", ("batch", L, D)), TensorSpec("t_w", ("batch", L, D))], [
            TensorSpec("w_edit", ("batch", L, D))
        ]
    if name == "masknet":
        inputs = [
            TensorSpec(f"feature_{i:02d}", ("batch", c, r, r)) for i, (c, r) in enumerate(layers)
        ]
        if editor.masknet.conditioned:
            inputs.append(TensorSpec("e_t", ("batch", Dt)))
        outputs = [
            TensorSpec(n, ("batch", 1, r, r)) for n, (_, r) in zip(mask_names(len(layers)), layers)
        ]
        return inputs, outputs
    if name == "masked_generator":
        inputs = [
            TensorSpec("w", ("batch", L, D)),
            TensorSpec("w_edit", ("batch", "prompts", L, D)),
            TensorSpec("e_t", ("batch", "prompts", Dt)),
        ]
        outputs = [
            TensorSpec("image", ("batch", "prompts", 3, H, H)),
            TensorSpec("original", ("batch", 3, H, H)),
            *masks,
        ]
        return inputs, outputs
    if name == "encoder":
        s = preset.encoder.input_size
        return [TensorSpec("image", ("batch", 3, s, s))], [TensorSpec("w_plus", ("batch", L, D))]
    raise KeyError(f"unknown graph {name!r}; known: {', '.join(GRAPH_NAMES)}")


def graph_names(editor, text_encoder: bool = True) -> list[str]:
    """The graphs a bundle of ``editor`` holds (no masknet without masks)."""
    names = list(GRAPH_NAMES)
    if editor.masknet is None:
        names.remove("masknet")
    if getattr(editor, "encoder", None) is None:
        names.remove("encoder")
    if not text_encoder or editor.clip is None:
        names.remove("text_encoder")
    return names


class Fp16Graph(nn.Module):
    """A half-precision copy of ``module`` with FP32 inputs and outputs (int inputs kept).

    The networks keep what must stay FP32 in FP32 themselves (PixelNorm, demodulation, the RGB
    skip) and clamp FP16 activations. ``channels_last`` feeds 4-D inputs in NHWC order (tensor
    cores prefer it; the networks' own 4-D tensors follow their inputs' memory format)."""

    def __init__(self, module: nn.Module, channels_last: bool = False):
        super().__init__()
        self.inner = copy.deepcopy(module).half()
        self.channels_last = channels_last
        if channels_last:  # 4-D parameters and buffers only (Module.to refuses other ranks)
            for t in [*self.inner.parameters(), *self.inner.buffers()]:
                if t.ndim == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)

    def forward(self, *inputs: torch.Tensor):
        args = [x.half() if x.is_floating_point() else x for x in inputs]
        if self.channels_last:
            args = [
                x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in args
            ]
        out = self.inner(*args)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def build_graph(editor, name: str) -> nn.Module:
    """The module that graph ``name`` computes, sharing ``editor``'s weights."""
    if name == "mapping":
        return MappingGraph(editor.generator)
    if name == "text_encoder":
        return TextEncoderGraph(editor.clip)
    if name == "fusion":
        return FusionGraph(editor.fusion)
    if name == "mapper":
        return MapperGraph(editor.mapper, editor.delta_scale)
    if name == "masknet":
        return MaskNetGraph(editor.masknet)
    if name == "masked_generator":
        return MaskedGeneratorGraph(editor.masked)
    if name == "encoder":
        return EncoderGraph(editor.encoder)
    raise KeyError(f"unknown graph {name!r}; known: {', '.join(GRAPH_NAMES)}")
