"""One export spec per graph: I/O names and shapes, dynamic axes, dummy inputs, tolerance.

The I/O names and shapes come from :func:`mcaclip.nn.graphs.graph_io`; a spec adds what
exporting needs: realistic example inputs at any batch (latents from the mapping network, text
embeddings from the CLIP towers, features from the generator) and the tolerance its outputs
must meet against PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mcaclip.nn.graphs import TensorSpec, build_graph, graph_io

OPSET = 18
DUMMY_BATCH = 2  # never 1, so that no exporter can bake the batch into the graph
SAMPLE_PROMPTS = ("blue goatee", "red hair", "glasses", "a smiling face", "purple lips")


@dataclass(frozen=True)
class ExportSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    atol: float = 1e-4  # max abs error vs PyTorch, FP32 (images are in [-1, 1])
    opset: int = OPSET

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_shapes(self, max_batch: int = 4096, max_prompts: int = 64) -> tuple:
        dims = {
            "batch": torch.export.Dim("batch", min=1, max=max_batch),
            "prompts": torch.export.Dim("prompts", min=1, max=max_prompts),
        }
        return tuple(
            {i: dims[d] for i, d in enumerate(t.shape) if isinstance(d, str)} or None
            for t in self.inputs
        )


# a deep IR-SE backbone whose outputs are latents of size ~1: ONNX Runtime's conv order
ATOL = {"encoder": 1e-3}


def export_spec(editor, name: str) -> ExportSpec:
    inputs, outputs = graph_io(editor, name)
    return ExportSpec(name, tuple(inputs), tuple(outputs), atol=ATOL.get(name, 1e-4))


@torch.no_grad()
def example_inputs(
    editor, spec: ExportSpec, batch: int, seed: int, prompts: int = 2
) -> tuple[torch.Tensor, ...]:
    """Realistic inputs for ``spec`` at ``batch`` (and ``prompts`` per latent), seeded."""
    gen = torch.Generator().manual_seed(seed)
    g = editor.generator
    dim = g.style_dim

    def latents(n: int) -> torch.Tensor:
        z = torch.randn(n, dim, generator=gen)
        w = g.broadcast(g.truncate(g.mapping(z), 0.7))
        return w + 0.05 * torch.randn(w.shape, generator=gen)  # W+ with per-layer spread

    def text(n: int) -> torch.Tensor:
        if editor.clip is None:
            e = torch.randn(n, editor.preset.clip.embed_dim, generator=gen)
            return e / e.norm(dim=-1, keepdim=True)
        picks = torch.randint(len(SAMPLE_PROMPTS), (n,), generator=gen).tolist()
        return editor.clip.embed_prompts([SAMPLE_PROMPTS[i] for i in picks])

    if spec.name == "mapping":
        return torch.randn(batch, dim, generator=gen), torch.full((batch, 1), 0.7)
    if spec.name == "text_encoder":
        picks = torch.randint(len(SAMPLE_PROMPTS), (batch,), generator=gen).tolist()
        return (editor.clip.tokenize([SAMPLE_PROMPTS[i] for i in picks]),)
    if spec.name == "fusion":
        return latents(batch), text(batch)
    if spec.name == "mapper":
        w = latents(batch)
        return w, editor.fusion(w, text(batch))
    if spec.name == "masknet":
        features: list[torch.Tensor] = []
        g.synthesis(latents(batch), features=features)
        extra = [text(batch)] if editor.masknet.conditioned else []
        return (*features, *extra)
    if spec.name == "masked_generator":
        w = latents(batch)
        e = text(batch * prompts)
        w_edit, _ = editor.edit_latent(w.repeat_interleave(prompts, 0), e)
        shape = (batch, prompts)
        return w, w_edit.reshape(*shape, *w.shape[1:]), e.reshape(*shape, -1)
    if spec.name == "encoder":  # the generator's faces, resized to what the encoder reads
        side = editor.preset.encoder.input_size
        images = g.synthesis(latents(batch))
        if images.shape[-1] != side:
            images = torch.nn.functional.interpolate(
                images, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        return (images.clamp(-1, 1),)
    raise KeyError(spec.name)


def graph_module(editor, name: str) -> torch.nn.Module:
    return build_graph(editor, name).eval()
