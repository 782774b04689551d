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
from mcaclip.toyfaces.attributes import CHOICES, COLOURS, Face
from mcaclip.toyfaces.data import FaceSet, make_set
from mcaclip.toyfaces.train import degrade


def phrase_groups(face: Face, short: bool = False) -> dict[str, str]:
    """One short true description per part of ``face`` (always the same keys). ``short``: hair
    and glasses phrases without the style ("red hair" for "short red hair"), the form edit
    prompts take."""
    hair = "no hair" if face.hair_style == "bald" else f"{face.hair_style} {face.hair_colour} hair"
    if face.hair_style != "bald" and short:
        hair = f"{face.hair_colour} hair"
    beard = "no beard"
    if face.beard != "none":
        beard = f"a {face.beard_colour} {'goatee' if face.beard == 'goatee' else 'beard'}"
    glasses = "no glasses"
    if face.glasses != "none":
        glasses = f"{'' if short else face.glasses + ' '}{face.glasses_colour} glasses"
    return {
        "eyes": f"{face.eye_colour} eyes",
        "lips": f"{face.lip_colour} lips",
        "skin": f"a {face.skin_tone} face",
        "shape": f"a {face.face_shape} face",
        "background": f"a {face.background_colour} background",
        "pattern": f"a {face.background_pattern} background",
        "hair": hair,
        "beard": beard,
        "glasses": glasses,
    }


def phrases(face: Face, rng: np.random.Generator | None = None) -> list[str]:
    """Short true descriptions of ``face``, one per part (with ``rng``: half of the time in the
    short form)."""
    return list(phrase_groups(face, rng is not None and rng.random() < 0.5).values())


def describe(face: Face, rng: np.random.Generator) -> str:
    """The full caption a quarter of the time, else "a face with" 1-2 random phrases (single
    attributes dominate, so that short prompts such as "blue eyes" are learnt for every part)."""
    if rng.random() < 0.25:
        return face.caption()
    chosen = rng.choice(phrases(face, rng), size=int(rng.integers(1, 3)), replace=False)
    return "a face with " + " and ".join(chosen)


# small parts are learnt last from random batches: their hard negatives are drawn 3x as often
PART_ODDS = {
    k: 3.0
    for k in ("eye_colour", "lip_colour", "beard", "beard_colour", "glasses", "glasses_colour")
}


def counterfactual(face: Face, rng: np.random.Generator) -> tuple[Face, str]:
    """``face`` with one attribute changed so that exactly one part's phrase changes (a hard
    negative: same picture but for one part); returns the new face and that part."""
    before = phrase_groups(face)
    names = list(CHOICES)
    odds = np.array([PART_ODDS.get(n, 1.0) for n in names])
    while True:
        attr = names[int(rng.choice(len(names), p=odds / odds.sum()))]
        values = [v for v in CHOICES[attr] if v != getattr(face, attr)]
        other = face.replace(**{attr: values[int(rng.integers(len(values)))]})
        after = phrase_groups(other)
        changed = [g for g in before if before[g] != after[g]]
        if len(changed) == 1:
            return other, changed[0]


def counterfactual_texts(
    face: Face, other: Face, part: str, rng: np.random.Generator
) -> tuple[str, str]:
    """Texts of a hard-negative pair: the changed part's phrase for each face, half the time
    with one phrase the two faces share. The short form is used only where it still names the
    change: "red hair" cannot tell long red hair from short red hair."""
    short = rng.random() < 0.5
    a, b = phrase_groups(face, short), phrase_groups(other, short)
    if a[part] == b[part]:  # the short form hides the change (hair style, glasses kind)
        a, b = phrase_groups(face), phrase_groups(other)
    first, second = a[part], b[part]
    if rng.random() < 0.5:
        shared = [g for g in a if g != part and a[g] == b[g]]
        common = a[shared[int(rng.integers(len(shared)))]]
        first, second = f"{first} and {common}", f"{second} and {common}"
    return "a face with " + first, "a face with " + second


def _ensemble(towers: ClipTowers, texts: list[str]) -> torch.Tensor:
    """Mean of the texts' embeddings, renormalised (CLIP's prompt ensembling)."""
    return F.normalize(towers.embed_prompts(texts).mean(0), dim=-1)


ZERO_SHOT = {  # attribute -> text template for each value ("{}": the value)
    "background_colour": "a face on a {} background",
    "skin_tone": "a {} face",
    "face_shape": "a {} face",
    "hair_colour": "a face with {} hair",
    "eye_colour": "a face with {} eyes",
    "lip_colour": "a face with {} lips",
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
    pairs = max(1, batch * 3 // 8)  # hard-negative pairs per batch (2 * pairs images)
    others = [counterfactual(f, rng) for f in train.faces]
    other_images = make_set([o for o, _ in others], train.images.shape[-1]).images
    for _ in range(steps):
        idx = torch.randint(len(train), (batch - 2 * pairs,), generator=gen)
        texts = [describe(train.faces[i], rng) for i in idx.tolist()]
        images = train.images[idx]
        jdx = torch.randint(len(train), (pairs,), generator=gen)
        for j in jdx.tolist():
            texts += counterfactual_texts(train.faces[j], *others[j], rng)
        pair_images = torch.stack([train.images[jdx], other_images[jdx]], 1)
        images = torch.cat([images, pair_images.flatten(0, 1)])
        img = towers.encode_image(degrade(images, gen))
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

    def score(attr, classes, counts):
        """Accuracy of the nearest class embedding over visible faces where ``counts(face)``."""
        pred = (all_img @ torch.stack(classes).t()).argmax(1)
        truth = torch.tensor([CHOICES[attr].index(getattr(f, attr)) for f in test.faces])
        keep = torch.tensor([f.visible(attr) and counts(f) for f in test.faces])
        zero_shot[attr] = float((pred == truth)[keep].float().mean())

    for attr, template in ZERO_SHOT.items():
        score(attr, [_ensemble(towers, [template.format(v)]) for v in CHOICES[attr]], bool)
    # kinds of beard and glasses: ensembles over the colours (the prompts name a colour)
    kinds = {"goatee": "a {} goatee", "full": "a {} beard", "round": "round {} glasses"}
    kinds["square"] = "square {} glasses"
    for attr, absent in (("beard", "no beard"), ("glasses", "no glasses")):
        classes = [
            _ensemble(towers, ["a face with " + absent])
            if v == "none"
            else _ensemble(towers, ["a face with " + kinds[v].format(c) for c in COLOURS])
            for v in CHOICES[attr]
        ]
        score(attr, classes, bool)
    # colours of beards and glasses, with the edit prompts' wording, among faces that have them
    for attr, template, kind in (
        ("beard_colour", "a face with a {} goatee", "goatee"),
        ("glasses_colour", "a face with {} glasses", None),
    ):
        classes = [_ensemble(towers, [template.format(c)]) for c in COLOURS]
        score(attr, classes, lambda f, kind=kind: kind is None or f.beard == kind)
    return {
        "retrieval_top1_of_100": retrieval,
        "zero_shot_accuracy": zero_shot,
        "pair_accuracy": pair_accuracy(towers, test),
    }


PAIR_TEXTS = {  # colour attribute -> prompt (pair_accuracy adds the part where it is absent)
    "hair_colour": "a face with {} hair",
    "eye_colour": "a face with {} eyes",
    "lip_colour": "a face with {} lips",
    "beard_colour": "a face with a {} beard",
    "glasses_colour": "a face with {} glasses",
    "background_colour": "a face on a {} background",
}


@torch.no_grad()
def pair_accuracy(towers: ClipTowers, test: FaceSet, n: int = 200, seed: int = 0) -> dict:
    """What CLIP-guided editing needs: for a face and the same face with one part's colour
    changed, does the image match its own prompt better than the other's, and the prompt its
    own image better than the other (mean of both directions; 0.5 = chance)? Faces without
    the part get it (short hair, a full beard, round glasses)."""
    rng = np.random.default_rng(seed)
    visible = {"hair_colour": {"hair_style": "short"}, "beard_colour": {"beard": "full"}}
    visible["glasses_colour"] = {"glasses": "round"}
    out = {}
    for attr, template in PAIR_TEXTS.items():
        faces = [f if f.visible(attr) else f.replace(**visible[attr]) for f in test.faces[:n]]
        others = []
        for f in faces:
            colours = [c for c in COLOURS if c != getattr(f, attr)]
            others.append(f.replace(**{attr: colours[int(rng.integers(len(colours)))]}))
        size = test.images.shape[-1]
        ia = towers.encode_image(make_set(faces, size).images)
        ib = towers.encode_image(make_set(others, size).images)
        ta = towers.embed_prompts([template.format(getattr(f, attr)) for f in faces])
        tb = towers.embed_prompts([template.format(getattr(f, attr)) for f in others])
        own = (ia * ta).sum(1)
        by_image = (own > (ib * ta).sum(1)).float().mean()
        by_text = (own > (ia * tb).sum(1)).float().mean()
        out[attr] = float((by_image + by_text) / 2)
    return out
