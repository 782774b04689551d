"""The training losses of MCA-CLIP and its baselines. x: original image G(w), x̂: edit,
both [B, 3, H, W] in [-1, 1]; masks: per styled conv [B, 1, H_l, W_l]."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mcaclip.training.regions import REGIONS, Growth, part_growth, part_labels
from mcaclip.training.templates import IMAGENET_TEMPLATES

log = logging.getLogger(__name__)


def random_perspective(
    images: torch.Tensor, distortion: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random perspective warp per image, differentiable, black outside (torchvision's
    RandomPerspective(distortion_scale, fill=0) in spirit: each corner of the picture moves
    inwards by up to ``distortion`` of the half size). Draws from ``generator`` (CPU)."""
    b = images.shape[0]
    device = images.device
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device)
    jitter = torch.rand(b, 4, 2, generator=generator).to(device)
    dst = corners - corners.sign() * jitter * distortion
    # homography H with H(dst_i) = corner_i: the sampling map from output to input
    x, y = dst[..., 0], dst[..., 1]
    u, v = corners[:, 0].expand(b, 4), corners[:, 1].expand(b, 4)
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    system = torch.cat([rows_u, rows_v], 1)  # [B, 8, 8]
    h = torch.linalg.solve(system, torch.cat([u, v], 1).unsqueeze(-1)).squeeze(-1)
    h = torch.cat([h, torch.ones(b, 1, device=device)], 1).view(b, 3, 3)
    hh, ww = images.shape[-2:]
    gy, gx = torch.meshgrid(
        torch.linspace(-1, 1, hh, device=device),
        torch.linspace(-1, 1, ww, device=device),
        indexing="ij",
    )
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3) @ h.transpose(1, 2)
    grid = (pts[..., :2] / pts[..., 2:]).view(b, hh, ww, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class IdentityLoss(nn.Module):
    """``L_id = mean_b [1 - cos(R(x_b), R(x̂_b))]`` with R an ArcFace-style network.

    Faces are prepared as StyleCLIP and e4e do for IR-SE50: average-pooled to 256 px, cropped
    to [35:223, 32:220], pooled to 112 px (``crop=False`` skips the crop: the network sees the
    whole picture pooled to 112). R must map [B, 3, 112, 112] in [-1, 1] to unit vectors.
    """

    def __init__(self, net: nn.Module, crop: bool = True):
        super().__init__()
        self.net = net
        self.crop = crop

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.crop:
            if x.shape[-1] != 256:
                x = F.adaptive_avg_pool2d(x, 256)
            x = x[:, :, 35:223, 32:220]
        return self.net(F.adaptive_avg_pool2d(x, 112))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(x)
        return (1 - (self.features(x_hat) * target).sum(-1)).mean()


def latent_l2(w: torch.Tensor, w_edit: torch.Tensor) -> torch.Tensor:
    """``L_l2 = mean((w' - w)^2)`` over every element (StyleCLIP's and CF-CLIP's MSE on the
    latents; with w' = w + 0.1 dw this is 0.01 mean(dw^2))."""
    return F.mse_loss(w_edit, w)


def mask_area(masks: Sequence[torch.Tensor], where: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8: ``L_area = (1/B) sum_b sum_l (1/n_l) sum_ij m_l[b, i, j]`` with n_l = H_l W_l,
    i.e. the covered fraction of every layer, summed over layers (K layers: at most K).

    ``where`` [B, 1, H, W] (beyond the paper, ``--area-region part``): count the mask only
    there (its share of each layer cell), e.g. outside the prompt's part; n_l stays H_l W_l."""
    if where is None:
        return sum(m.mean(dim=(1, 2, 3)) for m in masks).mean()
    total = 0.0
    for m in masks:
        w = F.adaptive_avg_pool2d(where.to(m.dtype), m.shape[-2:])
        total = total + (m * w).mean(dim=(1, 2, 3))
    return total.mean()


def mask_tv(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 9: ``L_tv = (1/B) sum_b sum_l (1/n_l) sum_ij |m_l[i+1, j] - m_l[i, j]| +
    |m_l[i, j+1] - m_l[i, j]|`` (anisotropic total variation, n_l = H_l W_l)."""
    total = 0.0
    for m in masks:
        n = m.shape[-1] * m.shape[-2]
        dy = (m[:, :, 1:] - m[:, :, :-1]).abs().sum(dim=(1, 2, 3))
        dx = (m[:, :, :, 1:] - m[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))
        total = total + (dx + dy) / n
    return total.mean()


class BackgroundLoss(nn.Module):
    """Eq. 10: ``L_bg = sum(B ⊙ (x̂ - x)^2) / (3 sum(B))`` with B = 1 where the face parser
    labels the original image background (label 0): the edit must leave it unchanged.

    ``region="part"`` (beyond the paper, ``training/regions.py``): B = 1 everywhere outside the
    prompt's part, i.e. outside the pixels the parser labels as that part in x or in x̂, dilated
    by ``dilate`` pixels, and outside the skin where a part x may lack (a goatee, glasses) grows
    (``regions.PARSER_GROWTH``); a prompt that names no part the parser knows keeps Eq. 10's B."""

    def __init__(self, parser: nn.Module, region: str = "background", dilate: int = 1):
        super().__init__()
        if region not in REGIONS:
            raise ValueError(f"region={region!r}: choose one of {', '.join(REGIONS)}")
        self.parser = parser
        self.region = region
        self.dilate = dilate
        # prompt -> its part's parser labels and where the part grows (regions.py)
        self._parts: dict[str, tuple[tuple[int, ...], tuple[Growth, ...]]] = {}

    def part(self, prompt: str, n_classes: int) -> tuple[tuple[int, ...], tuple[Growth, ...]]:
        """The parser labels of ``prompt``'s part and its growth rules, looked up once per
        prompt; a prompt that names no part this parser labels is logged once (its loss keeps
        Eq. 10's background)."""
        entry = self._parts.get(prompt)
        if entry is None:
            labels = part_labels(prompt, n_classes)
            entry = self._parts[prompt] = labels, part_growth(prompt, n_classes)
            if not labels:
                log.warning(
                    "--bg-region/--area-region part: %r names no face part the parser labels; "
                    "its background loss keeps the background only (Eq. 10), its area term "
                    "counts the whole mask (Eq. 8)",
                    prompt,
                )
        return entry

    def maps(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        prompts: Sequence[str] | None = None,
        outside: bool = False,  # also the map outside the part (for the area term)
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(keep, outside), [B, 1, H, W] each. keep: B, 1 where the edit must leave the picture
        unchanged. outside: 1 outside the prompt's part (its labels in x or x̂, dilated, and
        the skin where a part the original lacks grows; 1 everywhere for a prompt that names no
        part), the area term's ``--area-region part``; None unless asked for."""
        with torch.no_grad():
            logits = self.parser(x)
            seg = logits.argmax(1, keepdim=True)
            background = (seg == 0).to(x.dtype)
            if self.region == "background" and not outside:
                return background, None
            if prompts is None or len(prompts) != len(x):
                raise ValueError("the prompt's part needs one prompt per image")
            n = logits.shape[1]
            parts = [self.part(prompt, n) for prompt in prompts]
            allowed = torch.zeros(len(x), n, dtype=torch.bool, device=x.device)
            for i, (labels, _) in enumerate(parts):
                allowed[i, list(labels)] = True
            named = allowed.any(1)[:, None, None, None]
            seg_hat = self.parser(x_hat).argmax(1, keepdim=True)
            part = allowed.gather(1, seg.flatten(1)) | allowed.gather(1, seg_hat.flatten(1))
            part = part.view_as(seg).to(x.dtype)
            if self.dilate:
                part = F.max_pool2d(part, 2 * self.dilate + 1, 1, self.dilate)
            grown = _growth(seg, [growth for _, growth in parts]).to(part.dtype)
            part = torch.maximum(part, grown)
            out = torch.where(named, 1 - part, torch.ones_like(part)) if outside else None
            keep = torch.where(named, 1 - part, background) if self.region == "part" else background
            return keep, out

    def keep(self, x: torch.Tensor, x_hat: torch.Tensor, prompts: Sequence[str] | None = None):
        """B [B, 1, H, W]: 1 where the edit must leave the picture unchanged."""
        return self.maps(x, x_hat, prompts)[0]

    def forward(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        prompts: Sequence[str] | None = None,
        keep: torch.Tensor | None = None,  # B from :meth:`maps`, computed here if None
    ) -> torch.Tensor:
        if keep is None:
            keep = self.keep(x, x_hat, prompts)
        diff = (x_hat - x).square() * keep
        return diff.sum() / (3 * keep.sum()).clamp_min(1.0)


def _growth(seg: torch.Tensor, rules: Sequence[tuple[Growth, ...]]) -> torch.Tensor:
    """[B, 1, H, W]: the skin where a part the original may lack grows from its anchor, for
    each image's growth ``rules`` (labels ``seg`` [B, 1, H, W])."""
    grown = torch.zeros_like(seg, dtype=torch.float32)
    for rule in sorted({r for rs in rules for r in rs}):
        anchors, onto, share = rule
        rows = [i for i, rs in enumerate(rules) if rule in rs]
        radius = max(1, round(share * seg.shape[-1]))
        anchor = torch.isin(seg[rows], torch.tensor(anchors, device=seg.device)).float()
        near = F.max_pool2d(anchor, 2 * radius + 1, 1, radius)
        target = torch.isin(seg[rows], torch.tensor(onto, device=seg.device))
        grown[rows] = torch.maximum(grown[rows], near * target)
    return grown


class ClipNCELoss(nn.Module):
    """CLIP-NCE of CF-CLIP, an InfoNCE over CLIP-space edit directions (temperature tau).

    For sample b with original x, edit x̂ and target text t (source text "face"), over the
    prompt templates T and A random-perspective views aug_a(x̂):

    * query    q_a = n(E_I(aug_a(x̂)) - E_I(x))
    * positive p_1 = n(mean_T [E_T(T(t)) - E_T(T(src))]),  p_2 = n(mean_T E_T(T(t)) - E_I(x))
    * negatives n_j = n(E_T(T_j(src)) - E_I(x)) for every template j
    * ``L = mean_{a, k} -log( e^{q_a·p_k/tau} / (e^{q_a·p_k/tau} + sum_j e^{q_a·n_j/tau}) )``

    ``distortion`` is the views' perspective strength: 0.5 is CF-CLIP's (torchvision's
    RandomPerspective default), 0 leaves x̂ unwarped (one view).
    n(.) is L2 normalisation. CF-CLIP's code takes the negatives of the batch's first image
    for every sample; here each sample uses its own x, as the formula says.
    """

    def __init__(
        self,
        clip,  # ClipTowers (frozen)
        source: str = "face",
        templates: Sequence[str] = IMAGENET_TEMPLATES,
        n_aug: int = 8,
        tau: float = 0.1,
        distortion: float = 0.5,
    ):
        super().__init__()
        self.clip = clip
        self.n_aug, self.tau, self.distortion = n_aug, tau, distortion
        self.templates = list(templates)
        with torch.no_grad():
            self.register_buffer("source", self._templated(source), persistent=False)
        self._targets: dict[str, torch.Tensor] = {}
        self.generator: torch.Generator | None = None  # the augmentations' RNG (None: global)

    def _templated(self, text: str) -> torch.Tensor:
        """[T, D] text features of ``text`` in every template (unit norm)."""
        return self.clip.embed_prompts([t.format(text) for t in self.templates])

    def target(self, prompt: str) -> torch.Tensor:
        if prompt not in self._targets:
            with torch.no_grad():
                self._targets[prompt] = self._templated(prompt)
        return self._targets[prompt].to(self.source.device)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            e_x = self.clip.encode_image(x)  # [B, D]
        targets = torch.stack([self.target(p) for p in prompts])  # [B, T, D]
        p1 = F.normalize((targets - self.source).mean(1), dim=-1)  # [B, D]
        p2 = F.normalize(targets.mean(1) - e_x, dim=-1)
        negatives = F.normalize(self.source[None] - e_x[:, None], dim=-1)  # [B, T, D]
        n_aug = self.n_aug if self.distortion > 0 else 1  # unwarped views are all the same
        views = x_hat.repeat(n_aug, 1, 1, 1)
        if self.distortion > 0:
            views = random_perspective(views, self.distortion, generator=self.generator)
        q = F.normalize(self.clip.encode_image(views).view(n_aug, *e_x.shape) - e_x, dim=-1)
        losses = []
        for pos in (p1, p2):
            pos_logit = (q * pos).sum(-1, keepdim=True) / self.tau  # [A, B, 1]
            neg_logits = torch.einsum("abd,btd->abt", q, negatives) / self.tau  # [A, B, T]
            logits = torch.cat([pos_logit, neg_logits], dim=-1)
            losses.append(-torch.log_softmax(logits, dim=-1)[..., 0])
        return torch.stack(losses).mean()


class ClipDirectLoss(nn.Module):
    """StyleCLIP's CLIP loss for its latent mapper: ``L = mean_b [1 - cos(E_I(x̂), E_T(t))]``."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, x_hat: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        return (1 - (self.clip.encode_image(x_hat) * F.normalize(e_t, dim=-1)).sum(-1)).mean()
