"""Contrastive training of the toy world's CLIP (an open_clip model from a small config).

Texts are the renderer's captions and shorter, prompt-like descriptions of the same face
("a face with a blue goatee", "red hair"), so that edit prompts land near the pictures they
describe. Held-out metrics: image-to-caption retrieval among 100 faces, and zero-shot
accuracy per attribute with texts such as "a face with blue eyes".

What a CLIP-guided editor asks of CLIP beyond retrieval, and a CLIP trained on 400 M pairs
gives for free, is taught here explicitly (each an option of :func:`train_clip`):

* ``template_odds``: texts inside the 80 ImageNet templates CLIP-NCE wraps prompts in ("a
  photo of a blue goatee."), so that the loss's text directions mean what the prompt says;
* ``perspective_odds``: images under CLIP-NCE's random perspective warp (black corners), so
  that the loss's augmented views move the image embedding by the edit, not by the warp
  (measured: at 64 px it undoes binding, 0.52-0.64 against 0.82 without; off in the build);
* ``swap_pairs``: hard negatives that swap two parts' colours, with texts such as "a blue
  goatee" against "blue eyes" or "a blue goatee and red eyes" against "a red goatee and blue
  eyes", so that a colour word is bound to its part;
* ``multi_positive``: a text is no negative of the other faces it is true of (an eighth of a
  batch has blue eyes: counting them as negatives of "blue eyes" teaches the opposite);
* ``direction_weight``: an InfoNCE on the pairs' *changes* (image change against text change),
  the geometry CLIP-NCE reads; a contrastive CLIP learns it only at scale;
* ``attribute_weight``: a shared linear read-out of every named attribute from both towers'
  embeddings (tested at micro size; not yet trained at the build's size).

The build's setting is ``toyfaces/build.py:BuildScale``; why: ``docs/quality-diagnosis.md``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from mcaclip.nn.text import ClipTowers
from mcaclip.toyfaces.attributes import CHOICES, COLOURS, Face
from mcaclip.toyfaces.data import FaceSet, make_set
from mcaclip.toyfaces.train import degrade
from mcaclip.training.losses import random_perspective
from mcaclip.training.templates import IMAGENET_TEMPLATES


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


# colour attribute -> the part it colours (phrase_groups' key)
COLOUR_PARTS = {
    "hair_colour": "hair",
    "eye_colour": "eyes",
    "lip_colour": "lips",
    "beard_colour": "beard",
    "glasses_colour": "glasses",
    "background_colour": "background",
}


def swapped(face: Face, rng: np.random.Generator) -> tuple[Face, tuple[str, str]] | None:
    """``face`` with the colours of two visible parts swapped (a blue goatee and red eyes ->
    a red goatee and blue eyes), and those parts; None if no two visible parts differ in
    colour."""
    attrs = [a for a in COLOUR_PARTS if face.visible(a)]
    pairs = [
        (a, b)
        for i, a in enumerate(attrs)
        for b in attrs[i + 1 :]
        if getattr(face, a) != getattr(face, b)
    ]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    other = face.replace(**{a: getattr(face, b), b: getattr(face, a)})
    return other, (COLOUR_PARTS[a], COLOUR_PARTS[b])


def swap_texts(
    face: Face, other: Face, parts: tuple[str, str], rng: np.random.Generator
) -> tuple[str, str]:
    """Texts of a swap pair (``other`` has ``face``'s colours of ``parts`` the other way round).
    Half the time one colour on each face's own part ("a blue goatee" against "blue eyes":
    the same colour word, bound to different parts, each true of its face only); a quarter both
    parts ("a blue goatee and red eyes" against "a red goatee and blue eyes": the same words
    bound the other way); a quarter one part in the two colours ("a blue goatee" against "a red
    goatee")."""
    short = rng.random() < 0.5
    a, b = phrase_groups(face, short), phrase_groups(other, short)
    kind = rng.random()
    if kind < 0.5:  # the part that has the colour on each face
        part = int(rng.integers(2))
        first, second = a[parts[part]], b[parts[1 - part]]
    elif kind < 0.75:
        first, second = (f"{a[parts[0]]} and {a[parts[1]]}", f"{b[parts[0]]} and {b[parts[1]]}")
    else:
        part = parts[int(rng.integers(2))]
        first, second = a[part], b[part]
    return "a face with " + first, "a face with " + second


def templated(text: str, template: str, whole: bool) -> str:
    """``text`` ("a face with a blue goatee") inside an ImageNet ``template`` as CLIP-NCE writes
    its prompts: "a photo of a face with a blue goatee." (``whole``) or the phrase alone ("a
    photo of a blue goatee."); a text with no such phrase (a caption) is returned as it is."""
    body = text.removeprefix("a face with ")
    if body == text:
        return text
    return template.format("face with " + body if whole else body.removeprefix("a "))


def _template_groups(texts: list[str], group: list[int], odds: float, rng) -> list[str]:
    """Template the texts, ``odds`` of the time: each group of texts (the two of a pair) in the
    same template and form, so that a pair's texts still differ only where its faces do."""
    out = list(texts)
    for g in sorted(set(group)):
        if rng.random() < odds:
            template = IMAGENET_TEMPLATES[int(rng.integers(len(IMAGENET_TEMPLATES)))]
            whole = bool(rng.random() < 0.5)
            for i in (i for i, k in enumerate(group) if k == g):
                out[i] = templated(texts[i], template, whole)
    return out


def _changed(first: str, second: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The phrases a pair's texts do not share: what the pair changes (its direction's key)."""
    a = first.removeprefix("a face with ").split(" and ")
    b = second.removeprefix("a face with ").split(" and ")
    return tuple(sorted(set(a) - set(b))), tuple(sorted(set(b) - set(a)))


@functools.lru_cache(maxsize=65536)
def _true_phrases(face: Face) -> frozenset[str]:
    return frozenset(
        [*phrase_groups(face).values(), *phrase_groups(face, short=True).values(), face.caption()]
    )


def true_of(text: str, face: Face) -> bool:
    """Whether a training text (before any template) describes ``face``: a caption only its own
    face, "a face with X and Y" every face with both phrases."""
    body = text.removeprefix("a face with ")
    if body == text:
        return text in _true_phrases(face)
    return all(p in _true_phrases(face) for p in body.split(" and "))


# phrase group -> the attributes its long form names (the short form: the colour alone)
GROUP_ATTRS = {
    "eyes": ("eye_colour",),
    "lips": ("lip_colour",),
    "skin": ("skin_tone",),
    "shape": ("face_shape",),
    "background": ("background_colour",),
    "pattern": ("background_pattern",),
    "hair": ("hair_style", "hair_colour"),
    "beard": ("beard", "beard_colour"),
    "glasses": ("glasses", "glasses_colour"),
}


def mentioned(text: str, face: Face) -> dict[str, str]:
    """The attributes a training text (before any template) of ``face`` names, with their
    values: every visible one for a caption; for "a face with red hair and no glasses",
    hair_colour and glasses ("red hair" does not say short or long)."""
    body = text.removeprefix("a face with ")
    if body == text:
        return {a: getattr(face, a) for a in CHOICES if face.visible(a)}
    full, short = phrase_groups(face), phrase_groups(face, short=True)
    out = {}
    for phrase in body.split(" and "):
        for group, attrs in GROUP_ATTRS.items():
            if phrase == full[group]:
                named = attrs
            elif phrase == short[group]:
                named = attrs[-1:]
            else:
                continue
            out.update({a: getattr(face, a) for a in named if face.visible(a)})
    return out


def _attribute_loss(head: torch.nn.Module, emb: torch.Tensor, named: list[dict]) -> torch.Tensor:
    """Cross-entropy of a linear read-out of embeddings [N, D] for the attributes each one
    names (``named``: attribute -> value per row), over every named (row, attribute)."""
    logits = torch.split(head(emb), [len(v) for v in CHOICES.values()], dim=1)
    total, count = emb.new_zeros(()), 0
    for k, (attr, values) in enumerate(CHOICES.items()):
        rows = [i for i, n in enumerate(named) if attr in n]
        if rows:
            target = torch.tensor([values.index(named[i][attr]) for i in rows])
            total = total + F.cross_entropy(logits[k][rows], target, reduction="sum")
            count += len(rows)
    return total / max(count, 1)


def ensemble(towers: ClipTowers, texts: list[str]) -> torch.Tensor:
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
    template_odds: float = 0.0,
    perspective_odds: float = 0.0,
    swap_pairs: int = 0,
    multi_positive: bool = False,
    direction_weight: float = 0.0,
    attribute_weight: float = 0.0,
):
    """Train ``towers`` (unfrozen here) contrastively; returns the towers (frozen) and metrics.

    Every batch holds ``batch * 3 // 8`` hard-negative pairs (one part changed), ``swap_pairs``
    swap pairs (two parts' colours swapped) and single faces for the rest. ``template_odds``:
    the share of the single faces' and pairs' texts put in an ImageNet template;
    ``perspective_odds``: the share of images under CLIP-NCE's random perspective warp (see the
    module docstring for why). ``multi_positive``: a text is no negative of any face in the
    batch it is true of ("a face with blue eyes" of every blue-eyed face; else only identical
    texts are spared): with one-phrase texts an eighth of a batch shares a colour, and
    counting those faces as negatives teaches CLIP to tell them apart by everything but the
    phrase. ``direction_weight``: weight of :func:`_direction_loss` on the batch's pairs.
    ``attribute_weight``: weight of a cross-entropy that reads every shown attribute from the
    image embedding and every named one from the text embedding, through one shared linear
    read-out (trained here, not kept): the two embeddings then hold each part's colour apart,
    in the same place, which contrast alone does not teach a small CLIP in this budget."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 4)
    rng = np.random.default_rng(seed)
    model = towers.model.train().requires_grad_(True)
    readout = torch.nn.Linear(towers.embed_dim, sum(len(v) for v in CHOICES.values()))
    params = list(model.parameters()) + (list(readout.parameters()) if attribute_weight else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    pairs = max(1, batch * 3 // 8)  # hard-negative pairs per batch (2 * pairs images)
    singles = batch - 2 * pairs - 2 * swap_pairs
    if singles < 1:
        raise ValueError(f"batch {batch} has no room for {swap_pairs} swap pairs")
    size = train.images.shape[-1]
    others = [counterfactual(f, rng) for f in train.faces]
    other_images = make_set([o for o, _ in others], size).images
    swaps = [(i, s) for i, f in enumerate(train.faces) if (s := swapped(f, rng)) is not None]
    swap_images = make_set([s[0] for _, s in swaps], size).images if swap_pairs else None
    for _ in range(steps):
        idx = torch.randint(len(train), (singles,), generator=gen)
        faces = [train.faces[i] for i in idx.tolist()]
        texts = [describe(f, rng) for f in faces]
        images = [train.images[idx]]
        jdx = torch.randint(len(train), (pairs,), generator=gen)
        for j in jdx.tolist():
            texts += counterfactual_texts(train.faces[j], *others[j], rng)
            faces += [train.faces[j], others[j][0]]
        images.append(torch.stack([train.images[jdx], other_images[jdx]], 1).flatten(0, 1))
        if swap_pairs:
            kdx = torch.randint(len(swaps), (swap_pairs,), generator=gen)
            for k in kdx.tolist():
                i, (other, parts) = swaps[k]
                texts += swap_texts(train.faces[i], other, parts, rng)
                faces += [train.faces[i], other]
            faces_idx = torch.tensor([swaps[k][0] for k in kdx.tolist()])
            images.append(torch.stack([train.images[faces_idx], swap_images[kdx]], 1).flatten(0, 1))
        if multi_positive:  # a text true of another face in the batch is not its negative
            other_match = torch.tensor([[true_of(t, f) for t in texts] for f in faces])
        else:  # identical texts only
            other_match = torch.tensor([[a == b for b in texts] for a in texts])
        n_pairs = (len(texts) - singles) // 2
        group = list(range(singles)) + [singles + k for k in range(n_pairs) for _ in (0, 1)]
        keys = [
            _changed(texts[singles + 2 * k], texts[singles + 2 * k + 1]) for k in range(n_pairs)
        ]
        # directions named in full: every one-part pair, the swaps whose texts name both parts
        whole = torch.tensor([k < pairs or len(keys[k][0]) == 2 for k in range(n_pairs)])
        named = [mentioned(t, f) for t, f in zip(texts, faces)] if attribute_weight else None
        texts = _template_groups(texts, group, template_odds, rng)
        images = degrade(torch.cat(images), gen)
        if perspective_odds:
            warp = torch.rand(len(images), generator=gen) < perspective_odds
            if warp.any():
                images = images.clone()
                images[warp] = random_perspective(images[warp], generator=gen)
        img = towers.encode_image(images)
        txt = towers.embed_prompts(texts)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
        target = torch.arange(batch)
        logits = logits.masked_fill(other_match & ~torch.eye(batch, dtype=torch.bool), -1e4)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        if attribute_weight:
            shown = [{a: getattr(f, a) for a in CHOICES if f.visible(a)} for f in faces]
            loss = loss + attribute_weight * (
                _attribute_loss(readout, img, shown) + _attribute_loss(readout, txt, named)
            )
        if direction_weight:
            pick = whole.repeat_interleave(2)
            loss = loss + direction_weight * _direction_loss(
                img[singles:][pick],
                txt[singles:][pick],
                [k for k, w in zip(keys, whole.tolist()) if w],
                model.logit_scale.exp().clamp(max=100),
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    towers.eval().requires_grad_(False)
    return towers, clip_metrics(towers, test)


def _direction_loss(img: torch.Tensor, txt: torch.Tensor, keys: list, scale) -> torch.Tensor:
    """InfoNCE over the pairs' directions: the image change of pair k, E_I(b_k) - E_I(a_k),
    must match its text change, E_T(t_b) - E_T(t_a), better than the other pairs' (pairs
    making the same change are no negatives). ``img``, ``txt``: [2K, D], pairs in a row. What
    CLIP-NCE compares is such directions, so this teaches it directly."""
    d_img = F.normalize(img[1::2] - img[0::2], dim=-1)
    d_txt = F.normalize(txt[1::2] - txt[0::2], dim=-1)
    logits = scale * d_img @ d_txt.t()
    same = torch.tensor([[a == b for b in keys] for a in keys])
    logits = logits.masked_fill(same & ~torch.eye(len(keys), dtype=torch.bool), -1e4)
    target = torch.arange(len(keys))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


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
        score(attr, [ensemble(towers, [template.format(v)]) for v in CHOICES[attr]], bool)
    # kinds of beard and glasses: ensembles over the colours (the prompts name a colour)
    kinds = {"goatee": "a {} goatee", "full": "a {} beard", "round": "round {} glasses"}
    kinds["square"] = "square {} glasses"
    for attr, absent in (("beard", "no beard"), ("glasses", "no glasses")):
        classes = [
            ensemble(towers, ["a face with " + absent])
            if v == "none"
            else ensemble(towers, ["a face with " + kinds[v].format(c) for c in COLOURS])
            for v in CHOICES[attr]
        ]
        score(attr, classes, bool)
    # colours of beards and glasses, with the edit prompts' wording, among faces that have them
    for attr, template, kind in (
        ("beard_colour", "a face with a {} goatee", "goatee"),
        ("glasses_colour", "a face with {} glasses", None),
    ):
        classes = [ensemble(towers, [template.format(c)]) for c in COLOURS]
        score(attr, classes, lambda f, kind=kind: kind is None or f.beard == kind)
    return {
        "retrieval_top1_of_100": retrieval,
        "zero_shot_accuracy": zero_shot,
        "pair_accuracy": pair_accuracy(towers, test),
        "binding_accuracy": binding_accuracy(towers, test),
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


BINDING_PARTS = ("hair_colour", "eye_colour", "lip_colour", "beard_colour", "glasses_colour")


@torch.no_grad()
def binding_accuracy(towers: ClipTowers, test: FaceSet, n: int = 100, seed: int = 0) -> dict:
    """Whether a colour word is bound to its part, per pair of parts (0.5 = chance): face A
    has colour c on part p and c' on part q, face B the two swapped. Does the prompt "c p"
    match A better than B, and does A match "c p" better than "c q" (mean of both)? A CLIP
    that only hears the colour scores 0.5: it is what tells "blue goatee" from "blue eyes"."""
    rng = np.random.default_rng(seed)
    size = test.images.shape[-1]
    show = {"hair_colour": {"hair_style": "short"}, "beard_colour": {"beard": "goatee"}}
    show["glasses_colour"] = {"glasses": "round"}
    out = {}
    for i, p in enumerate(BINDING_PARTS):
        for q in BINDING_PARTS[i + 1 :]:
            faces, swaps, texts_p, texts_q = [], [], [], []
            for f in test.faces[:n]:
                c, d = rng.choice(len(COLOURS), size=2, replace=False)
                base = f.replace(**show.get(p, {}), **show.get(q, {}))
                faces.append(base.replace(**{p: COLOURS[c], q: COLOURS[d]}))
                swaps.append(base.replace(**{p: COLOURS[d], q: COLOURS[c]}))
                part_p = phrase_groups(faces[-1], short=True)[COLOUR_PARTS[p]]
                part_q = phrase_groups(swaps[-1], short=True)[COLOUR_PARTS[q]]
                texts_p.append("a face with " + part_p)  # c on p: true of A only
                texts_q.append("a face with " + part_q)  # c on q: true of B only
            ia = towers.encode_image(make_set(faces, size).images)
            ib = towers.encode_image(make_set(swaps, size).images)
            tp, tq = towers.embed_prompts(texts_p), towers.embed_prompts(texts_q)
            by_text = ((ia * tp).sum(1) > (ib * tp).sum(1)).float().mean()
            by_image = ((ia * tp).sum(1) > (ia * tq).sum(1)).float().mean()
            out[f"{COLOUR_PARTS[p]}/{COLOUR_PARTS[q]}"] = float((by_text + by_image) / 2)
    return out
