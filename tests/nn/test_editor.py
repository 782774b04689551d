import copy
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mcaclip.config import load_preset
from mcaclip.errors import WeightsMissingError
from mcaclip.nn.editor import MCAEditor, stack_streams
from mcaclip.nn.stylegan2 import fuse_tails


class Streams(NamedTuple):
    editor: MCAEditor  # in the form under test
    w: torch.Tensor
    w_edit: torch.Tensor
    form: str
    G: nn.Module  # the plain synthesis network, the reference


@pytest.fixture(params=["plain", "fused-tails", "stacked"])
def streams(request, tiny_editor, tiny_w):
    """Every form of the two streams: plain, fused tails (mcaclip.nn.stylegan2.fuse_tails),
    both streams in one batch (stack_streams); references come from a plain copy."""
    reference = copy.deepcopy(tiny_editor.generator.synthesis)
    fuse_tails(tiny_editor.masked, request.param != "plain")
    stack_streams(tiny_editor.masked, request.param == "stacked")
    torch.manual_seed(2)
    w_edit = tiny_w + 0.5 * torch.randn_like(tiny_w)
    return Streams(tiny_editor, tiny_w, w_edit, request.param, reference)


# other forms round differently (fused tails) and convolve a batch twice as large (stacked)
TOL = {"plain": 1e-5, "fused-tails": 2e-5, "stacked": 5e-5}


def _const_masks(editor, value, batch):
    cfg = editor.preset.generator
    return [torch.full((batch, 1, r, r), value) for r in cfg.layer_resolutions()]


@torch.no_grad()
def test_all_masks_zero_gives_original(streams):
    editor, w, w_edit, form, G = streams
    out = editor.masked(w, w_edit, masks=_const_masks(editor, 0.0, 2))
    ref = G(w)
    assert (out.image - ref).abs().max() <= TOL[form]
    assert (out.image - out.original).abs().max() <= 1e-6  # a blend with m = 0 is exact
    if form == "plain":  # the original stream is G(w), bit for bit
        assert torch.equal(out.original, ref)


@torch.no_grad()
def test_all_masks_one_gives_edited(streams):
    editor, w, w_edit, form, G = streams
    image = editor.masked(w, w_edit, masks=_const_masks(editor, 1.0, 2)).image
    assert (image - G(w_edit)).abs().max() <= TOL[form]


@torch.no_grad()
def test_half_masks_blend_every_layer(streams):
    editor, w, w_edit, _, G = streams
    half = editor.masked(w, w_edit, masks=_const_masks(editor, 0.5, 2)).image
    a, b = G(w), G(w_edit)
    assert (half - a).abs().max() > 1e-3 and (half - b).abs().max() > 1e-3


@torch.no_grad()
def test_both_streams_share_the_noise(streams):
    editor, w, w_edit, form, synth = streams
    for g in (editor.generator.synthesis, synth):
        for conv in list(g.convs) + [g.conv1]:
            conv.noise.weight.fill_(1.0)
    noise = synth.make_noise(2, "random")
    zero = editor.masked(w, w_edit, masks=_const_masks(editor, 0.0, 2), noise=noise)
    one = editor.masked(w, w_edit, masks=_const_masks(editor, 1.0, 2), noise=noise).image
    assert (zero.image - zero.original).abs().max() <= 1e-5
    assert (zero.original - synth(w, noise=noise)).abs().max() <= TOL[form]
    assert (one - synth(w_edit, noise=noise)).abs().max() <= TOL[form]
    assert (one - synth(w_edit, noise_mode="random")).abs().max() > 1e-3


@torch.no_grad()
def test_without_masks_is_the_plain_edit(tiny, tiny_w):
    torch.manual_seed(0)
    preset = load_preset("tiny-32")
    preset = type(preset)(
        preset.name, preset.generator, preset.clip, type(preset.editor)(use_masks=False)
    )
    editor = MCAEditor.from_preset(preset, random_weights=True)
    e = torch.randn(2, 64)
    out = editor(tiny_w, e)
    assert out.masks == [] and editor.masknet is None
    assert torch.allclose(out.image, editor.generator.synthesis(out.w_edit), atol=1e-6)


@torch.no_grad()
def test_forward_outputs(tiny_editor, tiny_w):
    e = tiny_editor.clip.embed_prompts(["blue goatee", "red hair"])
    out = tiny_editor(tiny_w, e)
    assert out.image.shape == (2, 3, 32, 32)
    assert len(out.masks) == 7 and out.masks[-1].shape == (2, 1, 32, 32)
    assert torch.allclose(out.w_edit, tiny_w + 0.1 * out.delta)


@torch.no_grad()
def test_original_stream_once_for_many_prompts(tiny_editor, tiny_w):
    e = tiny_editor.clip.embed_prompts(["blue goatee", "red hair", "glasses", "smile"])
    batches = []
    conv1 = tiny_editor.generator.synthesis.conv1
    handle = conv1.register_forward_hook(lambda mod, args, out: batches.append(out.shape[0]))
    many = tiny_editor.edit_many(tiny_w, e)
    handle.remove()
    assert sorted(batches) == [2, 8], "original stream over the 2 latents once, edits over 2x4"
    assert many.image.shape == (8, 3, 32, 32) and many.original.shape == (2, 3, 32, 32)
    for b in range(2):
        for p in range(4):
            single = tiny_editor(tiny_w[b : b + 1], e[p : p + 1])
            assert torch.allclose(many.image[b * 4 + p], single.image[0], atol=1e-5)
            assert torch.allclose(many.masks[3][b * 4 + p], single.masks[3][0], atol=1e-6)


def test_only_fusion_mapper_masks_train(tiny_editor, tiny_w):
    names = {n.split(".")[0] for n, p in tiny_editor.named_parameters() if p.requires_grad}
    assert names == {"fusion", "mapper", "masknet"}
    assert all(not p.requires_grad for p in tiny_editor.generator.parameters())
    assert all(not p.requires_grad for p in tiny_editor.clip.parameters())
    tiny_editor.train()
    assert not tiny_editor.generator.training and not tiny_editor.clip.training
    assert tiny_editor.fusion.training
    e = tiny_editor.clip.embed_prompts(["blue goatee", "red hair"])
    out = tiny_editor(tiny_w, e)
    (out.image.square().mean() + sum(m.mean() for m in out.masks)).backward()
    for module in (tiny_editor.fusion, tiny_editor.mapper, tiny_editor.masknet):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_tem_variant_builds(tiny_w):
    preset = load_preset("tiny-32")
    preset = type(preset)(
        preset.name,
        preset.generator,
        preset.clip,
        type(preset.editor)(fusion="tem", fusion_heads=2, mask_condition="text"),
    )
    editor = MCAEditor.from_preset(preset, random_weights=True)
    assert type(editor.fusion).__name__ == "TextEmbeddingMapping"
    assert editor(tiny_w, torch.randn(2, 64)).image.shape == (2, 3, 32, 32)


def test_real_use_needs_weight_files():
    with pytest.raises(WeightsMissingError, match="generator and clip_weights"):
        MCAEditor.from_preset("tiny-32")


def test_from_rosinality_generator(rosinality_ckpt, rosinality_expected):
    from mcaclip.nn.stylegan2 import Generator

    editor = MCAEditor.from_preset("tiny-32", random_weights=True, generator=rosinality_ckpt)
    G = Generator.from_checkpoint(rosinality_ckpt)
    w = rosinality_expected["w_plus"]
    with torch.no_grad():
        assert torch.equal(editor.generator.synthesis(w), G.synthesis(w))


def test_ffhq_1024_builds_with_random_weights():
    editor = MCAEditor.from_preset("ffhq-1024", random_weights=True)
    assert editor.generator.n_latent == 18
    assert len(editor.masknet.heads) == 17
    assert editor.clip.context_length == 77 and editor.clip.image_size == 224
    with torch.no_grad():
        t_w = editor.fusion(torch.zeros(1, 18, 512), torch.zeros(1, 512))
        assert editor.mapper(t_w).shape == (1, 18, 512)


class _MaskedGraph(torch.nn.Module):
    """w [B, L, D], w' [B, P, L, D], e_t [B, P, D_t] -> image [B*P, ...], masks."""

    def __init__(self, editor):
        super().__init__()
        self.editor = editor

    def forward(self, w, w_edit, e_t):
        prompts = w_edit.shape[1]
        out = self.editor.masked(w, w_edit.flatten(0, 1), cond=e_t.flatten(0, 1), prompts=prompts)
        return (out.image, *out.masks)


def test_masked_synthesis_exports_with_dynamic_batch(tiny_editor, tmp_path):
    graph = _MaskedGraph(tiny_editor).eval()
    w = torch.randn(2, 8, 64)
    args = (w, w[:, None].repeat(1, 2, 1, 1) + 0.1, torch.randn(2, 2, 64))
    batch = torch.export.Dim("batch", min=1, max=64)
    prompts = torch.export.Dim("prompts", min=1, max=16)
    path = tmp_path / "masked.onnx"
    torch.onnx.export(
        graph,
        args,
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["w", "w_edit", "e_t"],
        dynamic_shapes=({0: batch}, {0: batch, 1: prompts}, {0: batch, 1: prompts}),
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, p in ((1, 1), (3, 1), (2, 3)):
        g = torch.Generator().manual_seed(b)
        w = torch.randn(b, 8, 64, generator=g)
        w_edit = w[:, None] + 0.1 * torch.randn(b, p, 8, 64, generator=g)
        feed = (w, w_edit, torch.randn(b, p, 64, generator=g))
        with torch.no_grad():
            ref = graph(*feed)
        out = sess.run(None, {n: t.numpy() for n, t in zip(["w", "w_edit", "e_t"], feed)})
        assert out[0].shape == (b * p, 3, 32, 32)
        for o, r in zip(out, ref):
            assert np.abs(o - r.numpy()).max() <= 1e-4


@torch.no_grad()
@pytest.mark.parametrize("condition", ["none", "text"])
def test_one_latent_many_prompts_either_mask_kind(tiny, condition):
    editor_cfg = type(tiny.editor)(fusion_heads=2, mask_condition=condition)
    preset = type(tiny)(tiny.name, tiny.generator, tiny.clip, editor_cfg)
    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True)
    w = editor.generator.broadcast(editor.generator.mapping(torch.randn(1, 64)))
    e = torch.randn(3, 64)
    many = editor.edit_many(w, e)
    assert many.image.shape == (3, 3, 32, 32) and many.masks[0].shape == (3, 1, 4, 4)
    for p in range(3):
        single = editor(w, e[p : p + 1])
        assert torch.allclose(many.image[p], single.image[0], atol=1e-5)
        assert torch.allclose(many.masks[0][p], single.masks[0][0], atol=1e-6)
    if condition == "none":  # masks from the original features only: the same for every prompt
        assert torch.equal(many.masks[2][0], many.masks[2][2])


@pytest.mark.parametrize("condition", ["none", "text"])
@torch.no_grad()
def test_stacked_streams_match_two_streams(tiny, condition):
    """One batch [original | edited] == two streams, for P prompts per latent, random noise,
    text-conditioned or shared masks; the masked generator's outputs and masks all agree."""
    import dataclasses

    from mcaclip.nn.stylegan2 import StyledConv

    preset = dataclasses.replace(
        tiny, editor=dataclasses.replace(tiny.editor, mask_condition=condition)
    )
    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    for m in editor.modules():
        if isinstance(m, StyledConv):
            m.noise.weight.fill_(0.5)
    g = editor.generator
    w = g.broadcast(g.mapping(torch.randn(2, g.style_dim)))
    e = torch.randn(3, preset.clip.embed_dim)
    w_rep, e_rep = w.repeat_interleave(3, dim=0), e.repeat(2, 1)
    w_edit, _ = editor.edit_latent(w_rep, e_rep)
    cond = editor.mask_condition(e_rep)
    noise = g.synthesis.make_noise(2, "random", torch.Generator().manual_seed(3))
    ref = editor.masked(w, w_edit, cond=cond, noise=noise)
    stack_streams(editor)
    got = editor.masked(w, w_edit, cond=cond, noise=noise)
    assert editor.masked.stacked
    torch.testing.assert_close(got.image, ref.image, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got.original, ref.original, atol=2e-5, rtol=1e-5)
    assert got.image.shape == (6, 3, 32, 32) and got.original.shape == (2, 3, 32, 32)
    for a, b in zip(got.masks, ref.masks, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_fast_path_replaces_the_masked_synthesis_or_falls_back(tiny_editor, tiny_w):
    """``MaskedSynthesis.fast_path`` (a runtime's kernels) gets the checked arguments with the
    noise made and gives the outputs; where it returns None the PyTorch form runs."""
    masked = tiny_editor.masked
    w_edit = tiny_w + 0.1
    cond = tiny_editor.mask_condition(tiny_editor.clip.embed_prompts(["a", "b"]))
    ref = masked(tiny_w, w_edit, cond)
    calls = []

    def fake(module, w, w_edit, cond, noise, masks, prompts):
        calls.append((module, cond, len(noise), masks, prompts))
        return ref.image + 1, ref.masks, ref.original

    masked.fast_path = fake
    got = masked(tiny_w, w_edit, cond)
    assert torch.equal(got.image, ref.image + 1) and torch.equal(got.original, ref.original)
    assert calls == [(masked, cond, len(ref.masks), None, 1)]
    masked.fast_path = lambda *args: None  # cannot take this call: the PyTorch form
    assert torch.equal(masked(tiny_w, w_edit, cond).image, ref.image)
