"""Contrastive training of the toy world's CLIP (an open_clip model from a small config).

Texts are the renderer's captions and shorter, prompt-like descriptions of the same face
("a face with a blue goatee", "red hair"), so that edit prompts land near the pictures they
describe. Held-out metrics: image-to-caption retrieval among 100 faces, and zero-shot
accuracy per attribute with texts such as "a face with blue eyes".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mcaclip.nn.text import ClipTowers
from mcaclip.toyfaces.attributes import CHOICES, Face
from mcaclip.toyfaces.data import FaceSet
from mcaclip.toyfaces.train import degrade


def phrases(face: Face) -> list[str]:
    """Short true descriptions of ``face``, one per visible attribute."""
    out = [f"{face.eye_colour} eyes", f"{face.lip_colour} lips", f"a {face.skin_tone} face"]
    out.append(f"a {face.face_shape} face")
    out.append(f"a {face.background_colour} background")
    if face.background_pattern != "plain":
        out.append(f"a {face.background_pattern} background")
    out.append(
        "no hair" if face.hair_style == "bald" else f"{face.hair_style} {face.hair_colour} hair"
    )
    if face.beard != "none":
        out.append(f"a {face.beard_colour} {'goatee' if face.beard == 'goatee' else 'beard'}")
    else:
        out.append("no beard")
    if face.glasses != "none":
        out.append(f"{face.glasses} {face.glasses_colour} glasses")
    else:
        out.append("no glasses")
    return out


def describe(face: Face, rng: np.random.Generator) -> str:
    """The full caption a quarter of the time, else "a face with" 1-2 random phrases (single
    attributes dominate, so that short prompts such as "blue eyes" are learnt for every part)."""
    if rng.random() < 0.25:
        return face.caption()
    chosen = rng.choice(phrases(face), size=int(rng.integers(1, 3)), replace=False)
    return "a face with " + " and ".join(chosen)


ZERO_SHOT = {  # attribute -> text template for each value
    "background_colour": "a face on a {} background",
    "skin_tone": "a {} face",
    "face_shape": "a {} face",
    "hair_colour": "a face with {} hair",
    "eye_colour": "a face with {} eyes",
    "lip_colour": "a face with {} lips",
    "beard": "a face with {} beard",
    "glasses": "a face with {} glasses",
}


def train_clip(
    towers: ClipTowers,
    train: FaceSet,
    test: FaceSet,
    steps: int,
    batch: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
):
    """Train ``towers`` (unfrozen here) contrastively; returns the towers (frozen) and metrics."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 4)
    rng = np.random.default_rng(seed)
    model = towers.model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        idx = torch.randint(len(train), (batch,), generator=gen)
        texts = [describe(train.faces[i], rng) for i in idx.tolist()]
        img = towers.encode_image(degrade(train.images[idx], gen))
        txt = towers.embed_prompts(texts)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
        target = torch.arange(batch)
        # identical texts in a batch are not negatives of each other
        same = torch.tensor([[a == b for b in texts] for a in texts])
        logits = logits.masked_fill(same & ~torch.eye(batch, dtype=torch.bool), -1e4)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    towers.eval().requires_grad_(False)
    return towers, clip_metrics(towers, test)


@torch.no_grad()
def clip_metrics(towers: ClipTowers, test: FaceSet) -> dict:
    faces = test.faces[:100]
    img = towers.encode_image(test.images[: len(faces)])
    txt = towers.embed_prompts([f.caption() for f in faces])
    retrieval = float(((img @ txt.t()).argmax(1) == torch.arange(len(faces))).float().mean())
    all_img = towers.encode_image(test.images)
    zero_shot = {}
    for attr, template in ZERO_SHOT.items():
        values = CHOICES[attr]
        words = [("no" if v == "none" else v) for v in values]
        cls = towers.embed_prompts([template.format(w) for w in words])
        pred = (all_img @ cls.t()).argmax(1)
        truth = torch.tensor([values.index(getattr(f, attr)) for f in test.faces])
        seen = torch.tensor([f.visible(attr) for f in test.faces])
        zero_shot[attr] = float((pred == truth)[seen].float().mean())
    return {"retrieval_top1_of_100": retrieval, "zero_shot_accuracy": zero_shot}
