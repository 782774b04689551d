import math

import pytest
import torch
import torch.nn.functional as F

from mcaclip.errors import McaError
from mcaclip.training.losses import (
    BackgroundLoss,
    ClipDirectLoss,
    ClipNCELoss,
    IdentityLoss,
    latent_l2,
    mask_area,
    mask_tv,
    random_perspective,
)
from mcaclip.training.regions import part_growth, part_labels, prompt_parts


def _image(*channels, size=8):
    return torch.tensor(channels, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size)


def test_latent_l2():
    w = torch.zeros(1, 2, 2)
    w_edit = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert latent_l2(w, w_edit).item() == pytest.approx(7.5)


def test_mask_area_sums_layer_fractions():
    masks = [torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 8, 8)]
    assert mask_area(masks).item() == pytest.approx(1.5)


def test_mask_area_counts_only_where_asked():
    where = torch.zeros(2, 1, 8, 8)
    where[..., :4] = 1.0  # the left half: outside the prompt's part
    open_masks = [torch.ones(2, 1, 2, 2), torch.ones(2, 1, 4, 4)]
    assert mask_area(open_masks, where).item() == pytest.approx(1.0)  # half of each layer
    right = [torch.zeros(2, 1, 4, 4)]
    right[0][..., 2:] = 1.0  # open only inside the part: free
    assert mask_area(right, where).item() == 0
    assert mask_area(right).item() == pytest.approx(0.5)
    assert mask_area(open_masks, torch.ones(2, 1, 8, 8)).item() == pytest.approx(2.0)


def test_mask_tv():
    m = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)  # two horizontal steps of 1
    assert mask_tv([m]).item() == pytest.approx(2 / 4)
    assert mask_tv([torch.ones(3, 1, 4, 4)]).item() == 0


class _MeanColour(torch.nn.Module):
    def forward(self, x):
        return F.normalize(x.mean((2, 3)), dim=-1)


def test_identity_loss():
    loss = IdentityLoss(_MeanColour(), crop=False)
    x = _image(1, 0, 0)
    assert loss(x, x).item() == pytest.approx(0, abs=1e-6)
    assert loss(x, _image(0, 1, 0)).item() == pytest.approx(1.0)
    assert loss(x, _image(1, 1, 0)).item() == pytest.approx(1 - 1 / math.sqrt(2))


class _LeftIsBackground(torch.nn.Module):
    def forward(self, x):
        logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
        logits[:, 0, :, : x.shape[-1] // 2] = 1.0  # left half: background
        logits[:, 1, :, x.shape[-1] // 2 :] = 1.0  # right half: skin
        return logits


def test_background_loss_only_counts_background():
    loss = BackgroundLoss(_LeftIsBackground())
    x = torch.zeros(1, 3, 4, 4)
    right = x.clone()
    right[..., 2:] = 1.0
    left = x.clone()
    left[..., :2] = 2.0
    assert loss(x, right).item() == 0
    assert loss(x, left).item() == pytest.approx(4.0)
    assert loss(x, torch.ones_like(x)).item() == pytest.approx(1.0)


class _ColourParser(torch.nn.Module):
    """The toy parser's 7 classes read off the colour: red > 0.5 beard (5), green > 0.5 hair
    (2), blue > 0.5 background (0), else skin (1)."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 7, *x.shape[2:])
        logits[:, 1] = 0.5
        logits[:, 5] = x[:, 0]
        logits[:, 2] = x[:, 1]
        logits[:, 0] = x[:, 2]
        return logits


def test_part_region_keeps_everything_outside_the_prompts_part():
    loss = BackgroundLoss(_ColourParser(), region="part", dilate=0)
    x = torch.zeros(2, 3, 4, 4)
    x[:, 1, :2] = 1.0  # top half hair, bottom half skin
    # "red hair": recolouring the hair costs nothing, the skin costs
    hair = x.clone()
    hair[:, 0, :2] = 0.3
    skin = x.clone()
    skin[:, 0, 2:] = 0.3
    assert loss(x, hair, ["red hair"] * 2).item() == 0
    assert loss(x, skin, ["red hair"] * 2).item() == pytest.approx(0.09 * 8 / (3 * 8))
    # a goatee the edit draws is the edit's beard: the parser labels it in x̂, so it is free
    goatee = x.clone()
    goatee[:, 0, 3, 1:3] = 1.0
    assert loss(x, goatee, ["blue goatee", "blue goatee"]).item() == 0
    assert loss(x, goatee, ["green eyes", "green eyes"]).item() > 0
    # one prompt per image, each with its own part
    assert loss(x, hair, ["red hair", "purple lips"]).item() > 0
    # the paper's region counts neither (no background in x)
    assert BackgroundLoss(_ColourParser())(x, skin).item() == 0


def test_part_region_dilates_and_falls_back_to_the_background(caplog):
    x = torch.zeros(1, 3, 5, 5)
    x[:, 1, 2, 2] = 1.0  # one hair pixel amid skin
    ring = x.clone()
    ring[:, 0, 1:4, 1:4] = 0.5  # the hair pixel and its 8 neighbours change
    assert BackgroundLoss(_ColourParser(), "part", dilate=1)(x, ring, ["red hair"]).item() == 0
    assert BackgroundLoss(_ColourParser(), "part", dilate=0)(x, ring, ["red hair"]).item() > 0
    # a prompt naming no part keeps Eq. 10's background: x has a background corner
    x[:, 2, 0, 0] = 1.0
    corner = x.clone()
    corner[:, 0, 0, 0] = 1.0
    inside = x.clone()
    inside[:, 0, 3, 3] = 1.0
    loss = BackgroundLoss(_ColourParser(), "part")
    assert loss(x, inside, ["a smiling face"]).item() == 0
    assert loss(x, corner, ["a smiling face"]).item() == pytest.approx(1 / 3)
    # a part that this parser does not label (the toy world has no hats) is logged, once
    with caplog.at_level("WARNING"):
        assert loss(x, corner, ["a hat"]).item() == pytest.approx(1 / 3)
        loss(x, corner, ["a hat"])
    assert caplog.text.count("'a hat' names no face part") == 1
    with pytest.raises(ValueError, match="one prompt per image"):
        loss(x, inside)
    with pytest.raises(ValueError, match="region="):
        BackgroundLoss(_ColourParser(), "face")


class _LabelParser(torch.nn.Module):
    """Logits of a fixed label map [H, W], whatever the image."""

    def __init__(self, labels):
        super().__init__()
        self.labels = labels

    def forward(self, x):
        return F.one_hot(self.labels, 7).permute(2, 0, 1).float().expand(len(x), -1, -1, -1)


def test_part_region_frees_the_skin_where_a_missing_part_grows():
    labels = torch.ones(16, 16, dtype=torch.long)  # skin
    labels[8, 6:10] = 4  # lips
    labels[6, 7] = 3  # an eye two rows above them
    loss = BackgroundLoss(_LabelParser(labels), "part", dilate=0)
    x = torch.zeros(1, 3, 16, 16)

    def changed(*pixel):
        y = x.clone()
        y[(0, slice(None), *pixel)] = 0.5
        return y

    # a goatee grows over the skin up to round(0.16 * 16) = 3 px around the lips (toy table)
    assert loss(x, changed(10, 7), ["blue goatee"]).item() == 0
    assert loss(x, changed(13, 7), ["blue goatee"]).item() > 0
    assert loss(x, changed(6, 7), ["blue goatee"]).item() > 0  # the eye is not skin: kept
    assert loss(x, changed(8, 7), ["blue goatee"]).item() > 0  # nor are the lips
    assert loss(x, changed(10, 7), ["green eyes"]).item() > 0  # eyes grow nothing
    # the area term's map: 1 outside the part, everywhere for a prompt naming none
    pair = x.expand(2, -1, -1, -1)
    keep, outside = loss.maps(pair, pair, ["blue goatee", "a smiling face"], outside=True)
    assert outside[0, 0, 10, 7] == 0 and outside[0, 0, 13, 7] == 1
    assert bool((outside[1] == 1).all())
    assert keep[1].sum() == 0  # no background in this picture: Eq. 10 keeps nothing
    assert loss.maps(x, x, ["blue goatee"])[1] is None  # only when asked for


def test_prompt_parts_and_parser_tables():
    assert prompt_parts("a blue goatee and red eyes") == ("beard", "eyes")
    assert prompt_parts("Red-haired, wearing SUNGLASSES") == ("hair", "glasses")
    assert prompt_parts("a smiling face") == ()
    assert part_labels("blue goatee", 7) == (5,)
    assert part_labels("purple lips", 19) == (11, 12, 13)
    assert part_labels("blue goatee", 19) == (1, 11, 12, 13)  # BiSeNet labels beards skin
    assert part_labels("a hat", 7) == ()  # the toy world has no hats
    assert part_growth("yellow glasses", 7) == (((3,), (1,), 0.05),)
    assert part_growth("blue goatee", 19) == ()  # BiSeNet's beard is skin already
    assert part_growth("red hair", 7) == ()
    with pytest.raises(McaError, match="12 classes has no part table"):
        part_labels("red hair", 12)


class _StubClip(torch.nn.Module):
    """Text: "face" -> (1, 0), anything else -> (0, 1). Image: its mean colour (r, g)."""

    def embed_prompts(self, texts):
        return torch.tensor([[1.0, 0.0] if "face" in t else [0.0, 1.0] for t in texts])

    def encode_image(self, images):
        return F.normalize(images.mean((2, 3))[:, :2], dim=-1)


def test_clip_nce_hand_computed():
    # distortion 0: the views are x̂ itself (one view, whatever n_aug says)
    loss = ClipNCELoss(_StubClip(), templates=["a {}", "the {}"], n_aug=8, tau=1.0, distortion=0)
    x, x_hat = _image(1, 1, 0), _image(-1, 1, 0)
    # q = n(e_h - e_x) = (-1, 0); p1 = n(t - s) = (-1, 1)/sqrt2; p2 = n(t - e_x);
    # negatives (2 templates) = n(s - e_x)
    r = 1 / math.sqrt(2)
    q = (-1.0, 0.0)
    p1 = (-r, r)
    d = (-r, 1 - r)
    p2 = (d[0] / math.hypot(*d), d[1] / math.hypot(*d))
    nv = (1 - r, -r)
    neg = (nv[0] / math.hypot(*nv), nv[1] / math.hypot(*nv))

    def term(p):
        a = q[0] * p[0] + q[1] * p[1]
        b = q[0] * neg[0] + q[1] * neg[1]
        return -math.log(math.exp(a) / (math.exp(a) + 2 * math.exp(b)))

    expected = (term(p1) + term(p2)) / 2
    assert loss(x, x_hat, ["goatee"]).item() == pytest.approx(expected, rel=1e-5)


def test_clip_nce_prefers_edits_towards_the_target():
    loss = ClipNCELoss(_StubClip(), templates=["a {}"], n_aug=4)
    x = _image(1, 1, 0)
    toward = loss(x, _image(-1, 1, 0), ["goatee"])
    away = loss(x, _image(1, -1, 0), ["goatee"])
    assert toward < away


def test_clip_nce_views_follow_the_distortion():
    x = _image(1, 1, 0)
    x_hat = torch.zeros(1, 3, 16, 16)
    x_hat[:, 1, :, 8:] = 1.0  # the edit's colour on the right half only: a warp moves it
    x_hat[:, 0, :, :8] = -1.0

    def nce(distortion, seed):
        loss = ClipNCELoss(_StubClip(), templates=["a {}"], n_aug=4, distortion=distortion)
        loss.generator = torch.Generator().manual_seed(seed)
        return loss(x, x_hat, ["goatee"]).item()

    assert nce(0.0, 0) == nce(0.0, 1)  # unwarped: no randomness
    assert nce(0.5, 0) == nce(0.5, 0)
    assert nce(0.5, 0) != nce(0.5, 1)
    assert nce(0.5, 0) != nce(0.0, 0)


def test_styleclip_clip_loss():
    loss = ClipDirectLoss(_StubClip())
    e_t = torch.tensor([[0.0, 1.0]])
    assert loss(_image(0, 1, 0), e_t).item() == pytest.approx(0, abs=1e-6)
    assert loss(_image(1, 0, 0), e_t).item() == pytest.approx(1)


def test_random_perspective():
    img = torch.rand(3, 3, 16, 16, requires_grad=True)
    assert torch.allclose(random_perspective(img, distortion=0.0), img, atol=1e-5)
    out = random_perspective(img, generator=torch.Generator().manual_seed(0))
    again = random_perspective(img, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert out.shape == img.shape
    assert (out[:, :, 0, 0] == 0).any() or (out[:, :, -1, -1] == 0).any()  # black outside
    assert not torch.allclose(out[0], out[1])  # one warp per image
    out.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
