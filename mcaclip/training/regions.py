"""Which face-parser labels a prompt's edit is about: the background loss's ``part`` region.

The paper's background loss (Eq. 10) keeps only what the parser labels background. With
``bg_region="part"`` (an option beyond the paper) it keeps everything outside the prompt's part:
the pixels the parser labels as that part in the original *or* in the edit (a goatee that the
edit draws is the edit's beard), dilated by a pixel or two for the parts' borders, plus, for a
part the original may lack (a goatee, glasses), the skin where it grows: an edit cannot draw a
goatee if the first faint strokes on the chin, not yet labelled beard, are penalised.
"""

from __future__ import annotations

import re

from mcaclip.errors import McaError

REGIONS = ("background", "part")  # what the background loss keeps (--bg-region)
AREA_REGIONS = ("all", "part")  # what the mask area term counts (--area-region)

PART_WORDS = {  # a word of the prompt -> the part it names
    "hair": "hair",
    "haired": "hair",
    "eyes": "eyes",
    "eye": "eyes",
    "lips": "lips",
    "lip": "lips",
    "lipstick": "lips",
    "mouth": "lips",
    "goatee": "beard",
    "beard": "beard",
    "bearded": "beard",
    "moustache": "beard",
    "mustache": "beard",
    "stubble": "beard",
    "glasses": "glasses",
    "eyeglasses": "glasses",
    "sunglasses": "glasses",
    "spectacles": "glasses",
    "hat": "hat",
    "nose": "nose",
    "ears": "ears",
    "ear": "ears",
    "earrings": "earrings",
    "eyebrows": "eyebrows",
    "brows": "eyebrows",
}

# parser labels of each part, by the parser's number of classes
PARSER_PARTS = {
    # the toy world's parser (toyfaces/attributes.py:LABELS)
    7: {"hair": (2,), "eyes": (3,), "lips": (4,), "beard": (5,), "glasses": (6,)},
    # BiSeNet on CelebAMask-HQ (79999_iter.pth). It has no beard class: a beard is labelled
    # skin, so a beard prompt may change the skin (and the mouth it grows around)
    19: {
        "hair": (17,),
        "eyes": (4, 5),
        "lips": (11, 12, 13),
        "beard": (1, 11, 12, 13),
        "glasses": (6,),
        "hat": (18,),
        "nose": (10,),
        "ears": (7, 8),
        "earrings": (9,),
        "eyebrows": (2, 3),
    },
}


# where a part the original may lack grows, by the parser's number of classes:
# part -> (anchor labels, labels it may grow onto, radius as a share of the picture's width)
PARSER_GROWTH = {
    # toy renderer (toyfaces/render.py): a goatee or full beard reaches about 10 px (of 64)
    # below and beside the lips over the skin; glasses' frames about 3 px around the eyes
    7: {"beard": ((4,), (1,), 0.16), "glasses": ((3,), (1,), 0.05)},
    # BiSeNet: a beard is skin already; frames around the eyes over skin, brows and nose
    19: {"glasses": ((4, 5), (1, 2, 3, 10), 0.04)},
}


def prompt_parts(prompt: str) -> tuple[str, ...]:
    """The parts a prompt names, in order ("blue goatee and red eyes" -> beard, eyes)."""
    parts: list[str] = []
    for word in re.findall(r"[a-z]+", prompt.lower()):
        part = PART_WORDS.get(word)
        if part and part not in parts:
            parts.append(part)
    return tuple(parts)


def part_labels(prompt: str, n_classes: int) -> tuple[int, ...]:
    """Parser labels of the parts ``prompt`` names; () where it names none the parser knows."""
    if n_classes not in PARSER_PARTS:
        raise McaError(
            f"--bg-region/--area-region part: a face parser with {n_classes} classes has no "
            f"part table (known: the toy parser, 7; BiSeNet, 19); use background / all"
        )
    table = PARSER_PARTS[n_classes]
    return tuple(sorted({label for p in prompt_parts(prompt) for label in table.get(p, ())}))


Growth = tuple[tuple[int, ...], tuple[int, ...], float]  # anchor labels, onto labels, radius


def part_growth(prompt: str, n_classes: int) -> tuple[Growth, ...]:
    """Where the parts ``prompt`` names may grow: (anchor labels, onto labels, radius) each."""
    table = PARSER_GROWTH.get(n_classes, {})
    return tuple(table[p] for p in prompt_parts(prompt) if p in table)
