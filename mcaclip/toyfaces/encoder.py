"""The toy world's photo encoder: e4e's ``Encoder4Editing`` (the preset's ``encoder``), trained
on the toy generator's renders, so that ``mcarun edit --images`` works with no weight files.

e4e's losses where they fit the toy world: L2 on the image and the identity network's cosine
on the reconstruction G(E(x)), e4e's regulariser on the per-layer offsets (W+ stays near one
W: the region the generator edits well), and, because the toy world knows the true latent of
each render, an L2 on the latent itself (what makes a small encoder learn in minutes). Faces are
sampled fresh every step, never one of the held-out faces; inputs are jittered by a small
similarity transform and blur, as an aligned photo's crop is never the render exactly.

``python -m mcaclip.toyfaces encoder`` trains it into ``assets/encoder.safetensors`` and writes
its held-out quality (PSNR, identity cosine, attributes the probes read unchanged) into
``assets/encoder_metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mcaclip.config import load_preset
from mcaclip.fileio import atomic_write
from mcaclip.nn.encoder import Encoder4Editing
from mcaclip.nn.stylegan2 import Generator
from mcaclip.toyfaces.data import encode, labels, sample_faces, visibility
from mcaclip.toyfaces.train import attribute_z
from mcaclip.toyfaces.world import asset, assets_root, load_identity, load_probe, preset

log = logging.getLogger(__name__)
ENCODER = "encoder.safetensors"
METRICS = "encoder_metrics.json"


@dataclass(frozen=True)
class EncoderRecipe:
    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    latent_weight: float = 1.0  # L2 to the true W+ (the toy world knows it)
    image_weight: float = 1.0  # L2 between G(E(x)) and x
    id_weight: float = 0.1  # 1 - cosine of the identity network's embeddings
    delta_weight: float = 2e-4  # e4e's regulariser: offsets of layers 1.. from layer 0
    jitter: float = 0.5  # share of inputs moved by a small similarity transform and blur
    seed: int = 0


def _held_out_faces(root: Path | None) -> set:
    from mcaclip.toyfaces.attributes import Face

    faces = json.loads(asset("test_faces.json", root).read_text())
    return {Face(**f) for f in faces}


def _jitter(images: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """A share of ``images`` [B, 3, H, W] scaled by 0.9-1.1, turned by up to 3 degrees,
    shifted by up to 2 px and blurred a little (bilinear resampling): the errors of an aligned
    crop (the toy finder's scale is within about 10 %)."""
    b, _, h, _ = images.shape
    pick = torch.rand(b, generator=gen) < share
    if not pick.any():
        return images
    n = int(pick.sum())
    scale = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    angle = (torch.rand(n, generator=gen) - 0.5) * math.radians(6)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 4.0 * 2 / h
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (n, 3, h, h), align_corners=False)
    moved = F.grid_sample(images[pick], grid, padding_mode="reflection", align_corners=False)
    out = images.clone()
    out[pick] = moved
    return out


def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)


def train_encoder(recipe: EncoderRecipe = EncoderRecipe(), root: Path | None = None) -> Path:
    """Train the toy encoder into ``root`` (default: the shipped assets); returns its path."""
    root = root or assets_root()
    p = load_preset(preset(root))
    g = Generator.from_checkpoint(asset("generator.safetensors", root)).eval()
    g.requires_grad_(False)
    identity = load_identity(root)
    torch.manual_seed(recipe.seed)
    net = Encoder4Editing(p.encoder, g.n_latent, g.style_dim)
    net.latent_avg.copy_(g.latent_avg.expand(g.n_latent, -1))
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, recipe.lr, total_steps=recipe.steps, pct_start=0.1
    )
    held_out = _held_out_faces(root)
    gen = torch.Generator().manual_seed(recipe.seed)
    side = p.encoder.input_size
    start = time.perf_counter()
    history = []
    for step in range(recipe.steps):
        faces = sample_faces(recipe.batch_size, recipe.seed * 100_003 + step, exclude=held_out)
        with torch.no_grad():
            w = g.broadcast(g.mapping(attribute_z(encode(faces), g.style_dim)))
            x = g.synthesis(w)
        w_hat = net(_resize(_jitter(x, recipe.jitter, gen), side))
        x_hat = g.synthesis(w_hat)
        terms = {
            "latent": F.mse_loss(w_hat, w),
            "image": F.mse_loss(x_hat, x),
            "id": 1 - (identity(x_hat) * identity(x)).sum(-1).mean(),
            "delta": (w_hat[:, 1:] - w_hat[:, :1]).pow(2).sum(-1).mean(),
        }
        weights = {
            "latent": recipe.latent_weight,
            "image": recipe.image_weight,
            "id": recipe.id_weight,
            "delta": recipe.delta_weight,
        }
        loss = sum(weights[k] * v for k, v in terms.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == recipe.steps - 1:
            record = {"step": step, **{k: round(v.item(), 5) for k, v in terms.items()}}
            history.append(record)
            log.info("encoder %s (%.0f s)", record, time.perf_counter() - start)
    net.eval()
    dest = root / ENCODER
    net.save(dest, half=True)  # the package's size budget: 10 MB instead of 20
    seconds = time.perf_counter() - start
    shipped = Encoder4Editing.load(dest, p.encoder)  # scored as it ships
    metrics = {
        "recipe": asdict(recipe),
        "preset": p.name,
        "train_seconds": round(seconds, 1),
        "held_out": evaluate_encoder(shipped, root),
        "history": history,
    }
    atomic_write(
        root / METRICS, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n")
    )
    return dest


@torch.no_grad()
def evaluate_encoder(net: Encoder4Editing, root: Path | None = None, n: int = 300) -> dict:
    """Inversion quality on the held-out faces' renders: PSNR of G(E(x)) to x, identity
    cosine, and the share of visible attributes the probes read the same on both."""
    from mcaclip.toyfaces.attributes import Face

    g = Generator.from_checkpoint(asset("generator.safetensors", root)).eval()
    identity, probe = load_identity(root), load_probe(root)
    faces = [Face(**f) for f in json.loads(asset("test_faces.json", root).read_text())][:n]
    w = torch.load(asset("test_latents.pt", root), weights_only=True).float()[: len(faces)]
    side = net.config.input_size
    psnr, cos, kept, truth_kept = [], [], [], []
    for idx in torch.split(torch.arange(len(faces)), 50):
        x = g.synthesis(w[idx])
        x_hat = g.synthesis(net(_resize(x, side)))
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        psnr.append(10 * torch.log10(4.0 / mse.clamp(min=1e-10)))
        cos.append((identity(x_hat) * identity(x)).sum(-1))
        seen = visibility([faces[i] for i in idx.tolist()])
        a, b = probe.predict(x), probe.predict(x_hat)
        kept.append((a == b)[seen].float())
        truth = labels([faces[i] for i in idx.tolist()])
        truth_kept.append((b == truth)[seen].float())
    return {
        "faces": len(faces),
        "psnr_db": round(float(torch.cat(psnr).mean()), 2),
        "identity_cosine": round(float(torch.cat(cos).mean()), 4),
        "attributes_kept": round(float(torch.cat(kept).mean()), 4),
        "attributes_true_on_reconstruction": round(float(torch.cat(truth_kept).mean()), 4),
    }


def load_toy_encoder(root: Path | None = None) -> Path:
    """The shipped toy encoder's file (an error naming the command that makes it if absent)."""
    return asset(ENCODER, root)
