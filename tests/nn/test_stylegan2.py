import math

import pytest
import torch
import torch.nn.functional as F

from mcaclip.config import GeneratorConfig, load_preset
from mcaclip.errors import CheckpointError, ShapeError
from mcaclip.nn.stylegan2 import Generator, ModulatedConv2d, make_kernel, upfirdn2d


def test_reproduces_rosinality_output(rosinality_ckpt, rosinality_expected):
    G = Generator.from_checkpoint(rosinality_ckpt)
    exp = rosinality_expected
    with torch.no_grad():
        image = G.synthesis(exp["w_plus"], noise_mode="const")
        w = G.mapping(exp["z"])
    assert image.shape == exp["image"].shape == (2, 3, 32, 32)
    assert (image - exp["image"]).abs().max() <= 1e-4
    assert (w - exp["w"]).abs().max() <= 1e-5


def test_rosinality_architecture_is_read_from_the_file(rosinality_ckpt):
    G = Generator.from_checkpoint(rosinality_ckpt)
    c = G.config
    assert (c.size, c.style_dim, c.n_mlp, c.channels) == (32, 64, 2, (32, 32, 32, 16))
    assert G.n_latent == 8
    ckpt = torch.load(rosinality_ckpt, weights_only=True)
    assert torch.equal(G.latent_avg, ckpt["latent_avg"])


def test_rosinality_checkpoint_with_matching_preset(rosinality_ckpt):
    G = Generator.from_checkpoint(rosinality_ckpt, preset="tiny-32")
    assert G.config == load_preset("tiny-32").generator


def test_preset_mismatch_is_refused(rosinality_ckpt):
    with pytest.raises(CheckpointError, match="does not match the preset: size 32"):
        Generator.from_checkpoint(rosinality_ckpt, preset="toy-64")


@pytest.mark.parametrize("change", ["drop", "extra", "reshape"])
def test_strict_key_checking(tmp_path, rosinality_ckpt, change):
    ckpt = torch.load(rosinality_ckpt, weights_only=True)
    g = ckpt["g_ema"]
    if change == "drop":
        del g["convs.1.noise.weight"]
        match = "1 missing keys.*synthesis.convs.1.noise.weight"
    elif change == "extra":
        g["convs.1.extra"] = torch.zeros(1)
        match = "1 unexpected keys"
    else:
        g["to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
        match = "shape mismatches"
    path = tmp_path / "g.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=match):
        Generator.from_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_payloads_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        Generator.from_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="file not found"):
        Generator.from_checkpoint(tmp_path / "none.pt")
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="'g_ema'"):
        Generator.from_checkpoint(path)


def test_safetensors_round_trip(tmp_path, rosinality_ckpt, rosinality_expected):
    G = Generator.from_checkpoint(rosinality_ckpt)
    G.save(tmp_path / "g.safetensors")
    assert (tmp_path / "g.json").is_file()
    H = Generator.from_checkpoint(tmp_path / "g.safetensors")
    assert H.config == G.config
    w = rosinality_expected["w_plus"]
    with torch.no_grad():
        assert torch.equal(H.synthesis(w), G.synthesis(w))
    assert torch.equal(H.latent_avg, G.latent_avg)


def test_corrupt_safetensors(tmp_path, rosinality_ckpt):
    G = Generator.from_checkpoint(rosinality_ckpt)
    G.save(tmp_path / "g.safetensors")
    data = (tmp_path / "g.safetensors").read_bytes()
    (tmp_path / "g.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        Generator.from_checkpoint(tmp_path / "g.safetensors")
    (tmp_path / "g.json").unlink()
    with pytest.raises(CheckpointError, match="config g.json is missing"):
        Generator.from_checkpoint(tmp_path / "g.safetensors")


def test_noise_modes(tiny):
    torch.manual_seed(0)
    G = Generator(tiny.generator).eval()
    for conv in list(G.synthesis.convs) + [G.synthesis.conv1]:
        conv.noise.weight.data.fill_(0.5)
    w = G.broadcast(G.mapping(torch.randn(2, 64))).detach()
    with torch.no_grad():
        rng = torch.get_rng_state()
        a, b = G.synthesis(w), G.synthesis(w)
        assert torch.equal(torch.get_rng_state(), rng), "const noise must not draw random numbers"
        assert torch.equal(a, b)
        none = G.synthesis(w, noise_mode="none")
        r1, r2 = G.synthesis(w, noise_mode="random"), G.synthesis(w, noise_mode="random")
    assert not torch.allclose(a, none)
    assert not torch.allclose(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(w, noise_mode="fresh")


def test_latent_shape_is_checked(tiny):
    G = Generator(tiny.generator)
    with pytest.raises(ShapeError, match=r"\[B, 8, 64\]"):
        G.synthesis(torch.zeros(1, 18, 64))
    with pytest.raises(ShapeError, match="z must be"):
        G.mapping(torch.zeros(1, 8, 64))


def test_features_of_every_layer_and_step_order(tiny):
    G = Generator(tiny.generator)
    features = []
    G.synthesis(torch.zeros(3, 8, 64), features=features)
    cfg = tiny.generator
    assert [tuple(f.shape) for f in features] == [
        (3, c, r, r) for c, r in zip(cfg.layer_channels(), cfg.layer_resolutions())
    ]
    steps = [(kind, layer) for kind, _, layer in G.synthesis.steps()]
    assert [layer for kind, layer in steps if kind == "conv"] == list(range(cfg.num_layers))
    assert [layer for kind, layer in steps if kind == "rgb"] == [0, 2, 4, 6]


def _grouped_modconv(conv: ModulatedConv2d, x, style):
    """rosinality's fused form (groups=batch), as an independent oracle."""
    b, c, h, w = x.shape
    s = conv.modulation(style).view(b, 1, c, 1, 1)
    weight = conv.scale * conv.weight * s
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
    k = conv.kernel_size
    weight = weight.view(b * conv.out_channel, c, k, k)
    out = F.conv2d(x.view(1, b * c, h, w), weight, padding=conv.padding, groups=b)
    return out.view(b, conv.out_channel, h, w)


@pytest.mark.parametrize("demodulate", [True, False])
def test_dynamic_batch_modconv_equals_grouped_form(demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 6, 3, 16, demodulate=demodulate)
    x, style = torch.randn(3, 8, 5, 5), torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(conv(x, style), _grouped_modconv(conv, x, style), atol=1e-5)


def test_upfirdn2d_matches_direct_definition():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    k = make_kernel([1, 3, 3, 1]) * 4
    out = upfirdn2d(x, k, up=2, pad=(2, 1))
    # direct: zero-insert, pad, true convolution (flipped kernel) per channel
    up = torch.zeros(2, 3, 10, 12)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, [2, 1, 2, 1])
    ref = F.conv2d(up.reshape(6, 1, 13, 15), k.flip([0, 1])[None, None]).reshape(2, 3, 10, 12)
    assert out.shape == (2, 3, 10, 12)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512, 1024])
def test_every_power_of_two_size_builds(size):
    cfg = GeneratorConfig(size=size, style_dim=16, n_mlp=1, channel_max=8, channel_base=8192)
    G = Generator(cfg)
    with torch.no_grad():
        img = G.synthesis(torch.zeros(1, cfg.n_latent, 16)) if size <= 256 else None
    assert G.n_latent == 2 * int(math.log2(size)) - 2
    if img is not None:
        assert img.shape == (1, 3, size, size)


def test_ffhq_parameter_count():
    G = Generator(load_preset("ffhq-1024").generator)
    n = sum(p.numel() for p in G.parameters())
    assert round(n / 1e6, 2) == 30.37


def test_our_checkpoint_keeps_its_own_lr_multiplier(tmp_path, tiny):
    import dataclasses

    torch.manual_seed(0)
    G = Generator(dataclasses.replace(tiny.generator, lr_mlp=1.0))
    G.save(tmp_path / "g.safetensors")
    H = Generator.from_checkpoint(tmp_path / "g.safetensors", preset="tiny-32")  # lr_mlp 0.01
    assert H.config.lr_mlp == 1.0
    z = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(H.mapping(z), G.mapping(z))


@pytest.mark.parametrize("fold", [False, True])
def test_fused_tails_match_plain_tails(tiny, fold):
    """addcmul + in-place leaky ReLU (gain folded in) == demodulate, noise, bias, lrelu, gain."""
    from mcaclip.nn.stylegan2 import Generator, StyledConv, fold_blur, fuse_tails

    torch.manual_seed(0)
    g = fold_blur(Generator(tiny.generator).eval(), fold)
    for m in g.modules():
        if isinstance(m, StyledConv):
            m.noise.weight.data.fill_(0.7)  # zero at init: the noise term would go untested
            m.activate.bias.data.normal_()
    w = g.broadcast(g.mapping(torch.randn(3, g.style_dim)))
    noise = g.synthesis.make_noise(3, "random", torch.Generator().manual_seed(1))
    with torch.no_grad():
        refs = [g.synthesis(w, "const"), g.synthesis(w, "none"), g.synthesis(w, noise=noise)]
        fuse_tails(g)
        assert all(m.fused_tails for m in g.modules() if isinstance(m, StyledConv))
        outs = [g.synthesis(w, "const"), g.synthesis(w, "none"), g.synthesis(w, noise=noise)]
        for out, ref in zip(outs, refs):
            torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
        assert (refs[0] - refs[1]).abs().max() > 1e-2  # the noise term is really there
        fuse_tails(g, on=False)
        assert torch.equal(g.synthesis(w, "const"), refs[0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_to_rgb_reads_the_features_once(channels_last):
    """ToRGB's per-sample matrix product (fused tails) == modulating the features, then the
    1x1 conv."""
    import torch.nn.functional as F

    from mcaclip.nn.stylegan2 import ModulatedConv2d, fuse_tails

    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 3, 1, 8, demodulate=False)
    x, style = torch.randn(2, 16, 5, 5), torch.randn(2, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        s = conv.modulation(style)
        ref = F.conv2d(x * s[:, :, None, None], conv.weight[0] * conv.scale)
        torch.testing.assert_close(conv(x, style), ref)  # the plain form (and exported graphs)
        fuse_tails(conv)
        torch.testing.assert_close(conv(x, style), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("switch", ["fold_blur", "stencil_blur"])
def test_blur_forms_match_the_depthwise_conv(tiny, switch):
    """One 6x6 transposed conv per up-sampling conv (fold_blur, the GPU fast path) and FIR
    filters as sums of shifted slices (stencil_blur, for torch.compile) == the depthwise FIR
    conv after a 3x3 transposed conv."""
    from mcaclip.nn import stylegan2

    torch.manual_seed(0)
    g = stylegan2.Generator(tiny.generator).eval()
    w = g.broadcast(g.mapping(torch.randn(3, g.style_dim)))
    turn = getattr(stylegan2, switch)
    with torch.no_grad():
        ref = g.synthesis(w)
        turn(g)
        flags = [
            getattr(m, "fold_blur", False) or getattr(m, "stencil", False) for m in g.modules()
        ]
        assert any(flags)
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        turn(g, on=False)
        assert torch.equal(g.synthesis(w), ref)


def test_stencil_blur_flips_the_kernel():
    """An asymmetric kernel: the slices form is a true convolution, as upfirdn2d."""
    from mcaclip.nn.stylegan2 import Blur, Upsample, stencil_blur

    x = torch.randn(2, 3, 7, 7)
    for m in (Blur((1, 2, 4, 1), pad=(2, 1)), Upsample((1, 2, 4, 1))):
        plain = m(x)
        stencil_blur(m)
        torch.testing.assert_close(m(x), plain, atol=1e-6, rtol=1e-6)


def _upsampling_case(channels_last: bool, blur=(1, 3, 3, 1)):
    """An FP64 up-sampling conv 5 -> 7 channels, its input [3, 5, 6, 4] and styles."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, 16, upsample=True, blur_kernel=blur).double()
    x, style = torch.randn(3, 5, 6, 4, dtype=torch.double), torch.randn(3, 16, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return conv, x, style


@pytest.mark.parametrize("channels_last", [False, True])
def test_subpixel_upsampling_conv_matches_the_transposed_forms(channels_last):
    """The folded up-sampling conv as four output phases of a plain 3x3 conv + pixel shuffle ==
    the folded 6x6 transposed conv == transposed 3x3 conv then blur (odd channel counts and a
    non-square map, so a transposed phase or axis cannot pass by symmetry)."""
    from mcaclip.nn.stylegan2 import fold_blur, subpixel

    conv, x, style = _upsampling_case(channels_last)
    with torch.no_grad():
        ref = conv(x, style)
        subpixel(conv)
        assert not conv.use_phases  # only a form of the folded blur
        torch.testing.assert_close(conv(x, style), ref, rtol=0, atol=0)
        fold_blur(conv)
        assert conv.use_phases
        out = conv(x, style)
    assert out.shape == (3, 7, 12, 8)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("blur", [(1, 3, 3, 1), (1, 2, 4, 3, 2, 1)])
def test_phase_conv_matches_the_transposed_conv_and_blur(channels_last, blur):
    """The up-sampling conv as four 2x2 output phases + pixel shuffle + blur == transposed 3x3
    conv then blur: the default blur (its (1, 1) factor in the conv, (1, 2, 1) after it) and a
    longer, asymmetric one without that factor (padding 2, a flipped kernel would differ), odd
    channel counts, a non-square map; with the blur as shifted slices (the compiled form) too.
    It is a form of the unfolded conv: the folded blur wins."""
    from mcaclip.nn.stylegan2 import fold_blur, phase_conv, stencil_blur

    conv, x, style = _upsampling_case(channels_last, blur)
    with torch.no_grad():
        ref = conv(x, style)
        phase_conv(conv)
        assert conv.use_phase_conv
        assert conv.conv_weight().shape == (4 * 7, 5, 2, 2)
        out = conv(x, style)
        assert out.shape == ref.shape == (3, 7, 12, 8)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
        stencil_blur(conv)  # its taps are exact; the kernel buffer was made in FP32 (1/13)
        torch.testing.assert_close(conv(x, style), ref, atol=1e-6, rtol=1e-6)
        fold_blur(conv)
        assert not conv.use_phase_conv and conv.conv_weight().shape[2:] == (len(blur) + 2,) * 2


def test_phase_conv_takes_the_blurs_box_factor():
    """StyleGAN2's (1, 3, 3, 1) blur is (1, 1) then (1, 2, 1): the 2x2 phase conv takes the
    (1, 1) x (1, 1) factor, each of its 16 taps a different sum of the 3x3 kernel's (none zero),
    and the filter left after it has 3x3 taps; a blur without that factor keeps its own. The
    derived filter is not in the state dict (rosinality's checkpoints load strictly)."""
    from mcaclip.nn.stylegan2 import box_quotient

    assert box_quotient((1, 3, 3, 1)) == (1.0, 2.0, 1.0)
    assert box_quotient((2, 5, 5, 2)) == (2.0, 3.0, 2.0)
    assert box_quotient((1, 2, 4, 3, 2, 1)) is None  # alternating sum 1, not 0
    conv = ModulatedConv2d(2, 3, 3, 8, upsample=True)
    assert conv.phase_box and conv.phase_blur.pad == (0, 0)
    assert conv.phase_blur.kernel.shape == (3, 3)
    torch.testing.assert_close(conv.phase_blur.kernel.sum(), torch.tensor(1.0))
    assert not any("phase_blur" in key for key in conv.state_dict())
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)  # [in, out, 3, 3]
    w4 = conv.box_weight(w)
    assert w4.shape == (2, 3, 4, 4)
    corner = w[..., 0, 1] + w[..., 0, 2] + w[..., 1, 1] + w[..., 1, 2]  # the 2x2 window's sum
    torch.testing.assert_close(w4[..., 1, 2], corner)
    phases = ModulatedConv2d.phase_conv_weight(w4)
    assert phases.shape == (4 * 3, 2, 2, 2) and (phases != 0).all()
    assert sorted(phases.flatten().tolist()) == sorted(w4.flatten().tolist())  # each tap once
    long = ModulatedConv2d(2, 3, 3, 8, upsample=True, blur_kernel=(1, 2, 4, 3, 2, 1))
    assert not long.phase_box and long.phase_blur.kernel.shape == (6, 6)
    assert long.box_weight(w) is w


def test_phase_conv_weight_holds_each_tap_once():
    """Every tap of the 3x3 transposed kernel lands in exactly one phase and window slot, the
    other 7 of 16 slots are zero: 9 multiply-adds of 16 do work."""
    w = torch.arange(1, 2 * 3 * 9 + 1, dtype=torch.float64).view(2, 3, 3, 3)  # [in, out, 3, 3]
    phases = ModulatedConv2d.phase_conv_weight(w)
    assert phases.shape == (4 * 3, 2, 2, 2)
    values = phases[phases != 0]
    assert values.numel() == w.numel() and sorted(values.tolist()) == sorted(w.flatten().tolist())
    # phase (0, 0), window slot (1, 1) reads input (a, b): tap (0, 0)
    torch.testing.assert_close(phases[:3, :, 1, 1], w[:, :, 0, 0].t())
    # phase (1, 1) only has its slot (1, 1): tap (1, 1)
    assert phases[9:, :, 0].abs().sum() == 0 and phases[9:, :, :, 0].abs().sum() == 0
    torch.testing.assert_close(phases[9:, :, 1, 1], w[:, :, 1, 1].t())


def test_phase_conv_synthesis_matches_with_frozen_weights(tiny):
    """A whole generator in the 2x2 phase form, weights frozen in both layouts: the same
    images; switched back, the frozen phase kernels are not used."""
    from mcaclip.nn.stylegan2 import ModulatedConv2d as Conv
    from mcaclip.nn.stylegan2 import freeze_weights, phase_conv

    torch.manual_seed(0)
    g = Generator(tiny.generator).eval()
    w = g.broadcast(g.mapping(torch.randn(2, g.style_dim)))
    with torch.no_grad():
        ref = g.synthesis(w)
        phase_conv(g)
        for layout in (False, True):
            freeze_weights(g, channels_last=layout)
            ups = [m for m in g.modules() if isinstance(m, Conv) and m.upsample]
            assert ups and all(m.frozen_weight.shape[2:] == (2, 2) for m in ups)
            torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        phase_conv(g, on=False)
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)


def test_pixel_shuffle2_puts_each_phase_in_place():
    from mcaclip.nn.stylegan2 import pixel_shuffle2

    b, c, h, w = 2, 3, 4, 5
    x = torch.arange(b * 4 * c * h * w, dtype=torch.float32).view(b, 4 * c, h, w)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        out = pixel_shuffle2(inp)
        assert out.shape == (b, c, 2 * h, 2 * w)
        for ry in (0, 1):
            for rx in (0, 1):
                phase = x[:, (2 * ry + rx) * c : (2 * ry + rx + 1) * c]
                assert torch.equal(out[:, :, ry::2, rx::2], phase)


def test_frozen_weights_match_and_follow_the_switches(tiny):
    """freeze_weights: the same images, in both layouts; a conv whose switches change after
    freezing computes its weights again instead of using kernels made for another form."""
    from mcaclip.nn.stylegan2 import ModulatedConv2d as Conv
    from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, subpixel

    torch.manual_seed(0)
    g = Generator(tiny.generator).eval()
    w = g.broadcast(g.mapping(torch.randn(2, g.style_dim)))
    with torch.no_grad():
        ref = g.synthesis(w)
        fold_blur(subpixel(g))
        freeze_weights(g)
        convs = [m for m in g.modules() if isinstance(m, Conv)]
        assert all(m.frozen is not None for m in convs)
        assert any(m.frozen_weight.shape[0] == 4 * m.out_channel for m in convs)  # phases
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        freeze_weights(g, channels_last=True)
        assert all(m.frozen_weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        fold_blur(g, on=False)  # frozen kernels are folded ones: not used any more
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        for m in convs:  # frozen means frozen: later parameter changes are not seen
            m.weight.add_(0.5 * torch.randn_like(m.weight))  # (a scale would demodulate away)
        fold_blur(g)
        torch.testing.assert_close(g.synthesis(w), ref, atol=1e-5, rtol=1e-5)
        styled = [m for m in convs if m.demodulate]
        freeze_weights(g)
        changed = g.synthesis(w)
        assert (changed - ref).abs().max() > 1e-3
        for m in styled:  # each styled conv's frozen kernel and sums follow the new weights
            torch.testing.assert_close(m.frozen_sq, m.demod_weight())
        assert all(m.frozen_sq is None for m in convs if not m.demodulate)  # ToRGB: no sums
        g.half()  # cast after freezing: the sums are used in FP32 again
        out16 = g.synthesis(w.half()).float()
        assert torch.isfinite(out16).all() and (out16 - changed).abs().max() < 0.05
