"""Training of the toy world's small networks on rendered faces, each with held-out accuracy.

Each trainer is seeded, runs on CPU, and returns the network (eval mode) and its metrics.
Training images are degraded at random (blur, noise) so that the networks also read the
generator's renders, which are softer than the renderer's.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from mcaclip.toyfaces.data import FaceSet, identity_class, labels, visibility
from mcaclip.toyfaces.nets import AttributeProbe, ToyIdentity, ToyParser

log = logging.getLogger(__name__)


def degrade(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random Gaussian blur (sigma 0..1.2 px) and noise (sigma 0..0.06) per image."""
    b = images.shape[0]
    sigma = torch.rand(b, generator=gen) * 1.2
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernels = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)  # [B, 5]
    x = images.reshape(1, b * 3, *images.shape[-2:])
    kx = kernels.repeat_interleave(3, 0)[:, None, None, :]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kx.transpose(-1, -2), groups=b * 3)
    x = x.reshape_as(images)
    noise = torch.randn(images.shape, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen) * 0.06
    return (x + noise).clamp(-1, 1)


def _batches(n: int, batch: int, steps: int, gen: torch.Generator):
    for _ in range(steps):
        yield torch.randint(n, (batch,), generator=gen)


def _fit(net, loss_of, n: int, steps: int, batch: int, lr: float, gen: torch.Generator):
    """Adam with a one-cycle schedule over ``steps`` random batches; ``loss_of(idx)``."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for idx in _batches(n, batch, steps, gen):
        loss = loss_of(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def train_probe(
    train: FaceSet, test: FaceSet, steps: int, batch: int = 64, seed: int = 0, width: int = 32
):
    """Attribute probes; metrics: held-out accuracy per attribute (clean renders)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = AttributeProbe(width)
    y_all, seen = labels(train.faces), visibility(train.faces)

    def loss_of(idx):
        parts = net.split(net(degrade(train.images[idx], gen)))
        return sum(
            (F.cross_entropy(p, y_all[idx, k], reduction="none") * seen[idx, k]).mean()
            for k, p in enumerate(parts)
        )

    _fit(net, loss_of, len(train), steps, batch, 2e-3, gen)
    return net, {"accuracy": probe_accuracy(net, test)}


@torch.no_grad()
def probe_accuracy(net: AttributeProbe, data: FaceSet, images: torch.Tensor | None = None) -> dict:
    """Per-attribute accuracy of the probe on ``images`` (default: the set's renders), counted
    where the attribute is visible (a bald face has no hair colour to read)."""
    from mcaclip.toyfaces.attributes import CHOICES

    images = data.images if images is None else images
    pred = torch.cat([net.predict(x) for x in torch.split(images, 256)])
    truth, seen = labels(data.faces), visibility(data.faces)
    return {
        name: float((pred[:, k] == truth[:, k])[seen[:, k]].float().mean())
        for k, name in enumerate(CHOICES)
    }


def train_parser(
    train: FaceSet, test: FaceSet, steps: int, batch: int = 32, seed: int = 0, width: int = 24
):
    """Face parser; metrics: held-out pixel accuracy and mean IoU over the labels."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    net = ToyParser(width)

    def loss_of(idx):
        return F.cross_entropy(net(degrade(train.images[idx], gen)), train.segmentation[idx])

    _fit(net, loss_of, len(train), steps, batch, 3e-3, gen)
    with torch.no_grad():
        pred = torch.cat([net(x).argmax(1) for x in torch.split(test.images, 128)])
    truth = test.segmentation
    ious = []
    for k in range(int(truth.max()) + 1):
        union = ((pred == k) | (truth == k)).sum()
        if union > 0:
            ious.append(float(((pred == k) & (truth == k)).sum() / union))
    return net, {
        "pixel_accuracy": float((pred == truth).float().mean()),
        "mean_iou": sum(ious) / len(ious),
    }


def train_identity(
    train: FaceSet, test: FaceSet, steps: int, batch: int = 64, seed: int = 0, width: int = 32
):
    """Identity network (cosine classifier over the 12 identities); metrics: held-out accuracy
    and the mean cosine of same- vs different-identity pairs."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 2)
    net = ToyIdentity(width)
    y_all = torch.tensor([identity_class(f) for f in train.faces])

    def loss_of(idx):
        return F.cross_entropy(net.logits(degrade(train.images[idx], gen)), y_all[idx])

    _fit(net, loss_of, len(train), steps, batch, 2e-3, gen)
    with torch.no_grad():
        emb = torch.cat([net(x) for x in torch.split(test.images, 256)])
        pred = torch.cat([net.logits(x).argmax(1) for x in torch.split(test.images, 256)])
    truth = torch.tensor([identity_class(f) for f in test.faces])
    same = truth[:, None] == truth[None]
    cos = emb @ emb.t()
    off = ~torch.eye(len(truth), dtype=torch.bool)
    return net, {
        "accuracy": float((pred == truth).float().mean()),
        "cos_same": float(cos[same & off].mean()) if (same & off).any() else math.nan,
        "cos_different": float(cos[~same].mean()),
    }


def attribute_z(codes: torch.Tensor, style_dim: int) -> torch.Tensor:
    """Attribute one-hots [N, A] -> generator input z [N, style_dim]: zero-padded when
    style_dim >= A, else a fixed seeded projection (the mapping's PixelNorm rescales it)."""
    a = codes.shape[1]
    if a <= style_dim:
        return F.pad(codes, (0, style_dim - a))
    proj = torch.randn(a, style_dim, generator=torch.Generator().manual_seed(0)) / a**0.5
    return codes @ proj


def pattern_pixels(data: FaceSet, tolerance: float = 0.05) -> torch.Tensor:
    """[N, H, W] bool: background pixels whose colour differs from the face's plain background
    colour (its stripes or dots, anti-aliased edges included)."""
    from mcaclip.toyfaces.attributes import PALETTE

    plain = torch.tensor([PALETTE[f.background_colour] for f in data.faces]) * 2 - 1
    differs = (data.images - plain[:, :, None, None]).abs().amax(1) > tolerance
    return differs & (data.segmentation == 0)


def _shares_by_kind(data: FaceSet, attribute: str, kinds, mask: torch.Tensor) -> torch.Tensor:
    """[K, H, W]: for each kind of ``attribute`` present in ``data``, the share of its faces
    where ``mask`` [N, H, W] holds; one all-zero row if no kind is present."""
    shares = [
        mask[[i for i, f in enumerate(data.faces) if getattr(f, attribute) == kind]].float().mean(0)
        for kind in kinds
        if any(getattr(f, attribute) == kind for f in data.faces)
    ]
    return torch.stack(shares) if shares else torch.zeros((1, *mask.shape[1:]))


def glasses_shape_pixels(data: FaceSet) -> torch.Tensor:
    """[H, W] bool: pixels that are frame for some glasses kinds in ``data`` and never for
    others (the corners of square frames, the diagonals of round ones): the only pixels that
    tell the kinds apart. Empty unless two kinds are present."""
    from mcaclip.toyfaces.attributes import GLASSES, LABELS

    frame = data.segmentation == LABELS["glasses"]
    shares = _shares_by_kind(data, "glasses", GLASSES[1:], frame)
    return (shares.amax(0) > 0) & (shares.amin(0) == 0)


def face_shape_pixels(data: FaceSet, threshold: float = 0.25) -> torch.Tensor:
    """[H, W] bool: the band of the head's outline where face shapes differ: pixels whose share
    of faces (skin and the parts on it, not hair or background) differs by more than
    ``threshold`` between the face shapes in ``data``. Empty unless two shapes are present."""
    from mcaclip.toyfaces.attributes import FACE_SHAPES, LABELS

    face = (data.segmentation != LABELS["background"]) & (data.segmentation != LABELS["hair"])
    shares = _shares_by_kind(data, "face_shape", FACE_SHAPES, face)
    return shares.amax(0) - shares.amin(0) > threshold


def train_generator(
    generator,
    train: FaceSet,
    test: FaceSet,
    steps: int,
    batch: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    log_every: int = 100,
    part_weight: float = 1.0,
    glasses_weight: float | None = None,
    edge_weight: float = 0.0,
    pattern_weight: float = 1.0,
    eye_weight: float | None = None,
    glasses_shape_weight: float | None = None,
    face_shape_weight: float = 1.0,
    face_shape_hair: tuple[str, ...] | None = None,
):
    """Fit ``generator`` (our StyleGAN2) to render faces from their attribute codes through its
    mapping network (L1, noise off). ``part_weight`` multiplies the loss on the small parts
    (eyes, lips, beard, glasses), which cover few pixels but carry most attributes;
    ``glasses_weight`` (default: ``part_weight``) applies to every pixel where any training face
    has glasses, on every face, so thin frames are drawn where they exist and nowhere else.
    ``edge_weight`` adds the same weighted L1 on horizontal and vertical pixel differences:
    plain L1 lets a small generator blur edges (eye rings, dots, frames) into their
    surroundings; matching the differences keeps them sharp. ``pattern_weight`` applies to
    background pixels that differ from the plain background colour (stripes, dots): dots cover a
    fifth of a dotted background, and at weight 1 the generator paints them over with the plain
    colour. ``eye_weight`` (default: ``part_weight``) applies to the eyes, the smallest part.
    ``glasses_shape_weight`` (default: the glasses weight) applies, on faces with glasses, to the
    few pixels that tell round frames from square ones (``glasses_shape_pixels``): at the
    glasses weight a small generator draws one frame shape for both kinds.
    ``face_shape_weight`` applies to the band of the outline where face shapes differ
    (``face_shape_pixels``): long hair hides most of it, and the identity depends on it.
    ``face_shape_hair`` (default: every style) limits that weight to faces with those hair
    styles: where the outline shows plainly, weighting it takes capacity from the eyes.
    Metrics: held-out L1 on [-1, 1] and PSNR."""
    from mcaclip.toyfaces.attributes import HAIR_STYLES, LABELS
    from mcaclip.toyfaces.data import encode

    if face_shape_hair is not None and not set(face_shape_hair) <= set(HAIR_STYLES):
        raise ValueError(f"face_shape_hair {face_shape_hair}: hair styles are {HAIR_STYLES}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 3)
    dim = generator.style_dim
    opt = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.0, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    codes = encode(train.faces)
    gw = part_weight if glasses_weight is None else glasses_weight
    ew = part_weight if eye_weight is None else eye_weight
    pattern = pattern_pixels(train)
    shape_w = gw if glasses_shape_weight is None else glasses_shape_weight
    shape_zone = shape_w * glasses_shape_pixels(train)
    # weight floors: the frames' zone on every face, the outline band where shapes differ on
    # faces with the chosen hair styles
    floor = gw * (train.segmentation == LABELS["glasses"]).any(0).float()
    band = face_shape_weight * face_shape_pixels(train)
    with_glasses = torch.tensor([f.glasses != "none" for f in train.faces])[:, None, None]
    banded = torch.tensor(
        [face_shape_hair is None or f.hair_style in face_shape_hair for f in train.faces]
    )[:, None, None]
    generator.train()
    history = []
    for step, idx in enumerate(_batches(len(train), batch, steps, gen), 1):
        w = generator.mapping(attribute_z(codes[idx], dim))
        out = generator.synthesis(generator.broadcast(w), noise_mode="none")
        seg = train.segmentation[idx]
        weight = 1 + (part_weight - 1) * (seg >= LABELS["eyes"]).float()
        weight = weight.masked_fill(seg == LABELS["eyes"], ew)
        weight = weight.masked_fill(pattern[idx], pattern_weight)
        weight = torch.maximum(weight, floor)
        weight = torch.where(banded[idx], torch.maximum(weight, band), weight)
        weight = torch.where(with_glasses[idx], torch.maximum(weight, shape_zone), weight)
        err = out - train.images[idx]
        loss = (err.abs() * weight[:, None]).mean()
        if edge_weight:
            dx = (err[..., :, 1:] - err[..., :, :-1]).abs()
            dy = (err[..., 1:, :] - err[..., :-1, :]).abs()
            wx = torch.maximum(weight[:, None, :, 1:], weight[:, None, :, :-1])
            wy = torch.maximum(weight[:, None, 1:, :], weight[:, None, :-1, :])
            loss = loss + edge_weight * ((dx * wx).mean() + (dy * wy).mean()) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0:
            history.append({"step": step, "l1": loss.item()})
            log.info("generator step %d: L1 %.4f", step, history[-1]["l1"])
    generator.eval()
    with torch.no_grad():
        z = attribute_z(encode(test.faces), dim)
        out = torch.cat(
            [
                generator.synthesis(generator.broadcast(generator.mapping(c)), noise_mode="none")
                for c in torch.split(z, 64)
            ]
        )
        l1 = float((out - test.images).abs().mean())
        mse = float((out - test.images).square().mean())
    return (
        generator,
        {"heldout_l1": l1, "heldout_psnr_db": 10 * math.log10(4 / mse), "history": history},
        out,
    )
