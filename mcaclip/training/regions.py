"""Which face-parser labels a prompt's edit is about: the background loss's ``part`` region.

The paper's background loss (Eq. 10) keeps only what the parser labels background. With
``bg_region="part"`` (an option beyond the paper) it keeps everything outside the prompt's part:
the pixels the parser labels as that part in the original *or* in the edit (a goatee that the
edit draws is the edit's beard), dilated by a pixel or two for the parts' borders.
"""

from __future__ import annotations

import re

from mcaclip.errors import McaError

REGIONS = ("background", "part")

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
            f"--bg-region part: a face parser with {n_classes} classes has no part table "
            f"(known: the toy parser, 7; BiSeNet, 19); use --bg-region background"
        )
    table = PARSER_PARTS[n_classes]
    return tuple(sorted({label for p in prompt_parts(prompt) for label in table.get(p, ())}))
