"""The toy-faces world: attributes of a procedural face, their vocabulary and captions.

Colours come from one shared palette, so a word ("blue") means the same colour on hair, eyes,
lips, beard, glasses or background. Face shape and skin tone form the identity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.16, 0.16),
    "green": (0.16, 0.70, 0.24),
    "blue": (0.16, 0.32, 0.90),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.58, 0.22, 0.78),
    "orange": (0.96, 0.55, 0.10),
    "pink": (0.97, 0.55, 0.75),
    "black": (0.08, 0.08, 0.08),
}
COLOURS = tuple(PALETTE)
SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "pale": (0.96, 0.85, 0.74),
    "tan": (0.86, 0.67, 0.50),
    "brown": (0.62, 0.42, 0.28),
    "dark": (0.38, 0.25, 0.17),
}
FACE_SHAPES = ("round", "oval", "square")
BACKGROUND_PATTERNS = ("plain", "stripes", "dots")
HAIR_STYLES = ("bald", "short", "long")
BEARDS = ("none", "goatee", "full")
GLASSES = ("none", "round", "square")

# segmentation labels (0 = background, as for BiSeNet)
LABELS = {"background": 0, "skin": 1, "hair": 2, "eyes": 3, "lips": 4, "beard": 5, "glasses": 6}

# attribute -> the values it takes, in a fixed order (the probes' classes)
CHOICES: dict[str, tuple[str, ...]] = {
    "background_colour": COLOURS,
    "background_pattern": BACKGROUND_PATTERNS,
    "face_shape": FACE_SHAPES,
    "skin_tone": tuple(SKIN_TONES),
    "hair_style": HAIR_STYLES,
    "hair_colour": COLOURS,
    "eye_colour": COLOURS,
    "lip_colour": COLOURS,
    "beard": BEARDS,
    "beard_colour": COLOURS,
    "glasses": GLASSES,
    "glasses_colour": COLOURS,
}
IDENTITY = ("face_shape", "skin_tone")
# a part's colour can only be seen when the part is there
VISIBLE_IF = {
    "hair_colour": ("hair_style", "bald"),
    "beard_colour": ("beard", "none"),
    "glasses_colour": ("glasses", "none"),
}


@dataclass(frozen=True)
class Face:
    """One face of the toy world."""

    background_colour: str = "blue"
    background_pattern: str = "plain"
    face_shape: str = "oval"
    skin_tone: str = "tan"
    hair_style: str = "short"
    hair_colour: str = "black"
    eye_colour: str = "green"
    lip_colour: str = "red"
    beard: str = "none"
    beard_colour: str = "black"
    glasses: str = "none"
    glasses_colour: str = "black"

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if value not in CHOICES[name]:
                raise ValueError(f"{name}={value!r}: choose one of {CHOICES[name]}")

    def replace(self, **changes: str) -> Face:
        return dataclasses.replace(self, **changes)

    def to_indices(self) -> np.ndarray:
        """Class index of every attribute, in :data:`CHOICES` order."""
        return np.array([CHOICES[k].index(getattr(self, k)) for k in CHOICES], np.int64)

    @classmethod
    def from_indices(cls, indices) -> Face:
        return cls(**{k: CHOICES[k][int(i)] for k, i in zip(CHOICES, indices)})

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Face:
        """Uniform over every attribute; colours of one face are drawn independently."""
        return cls(**{k: v[rng.integers(len(v))] for k, v in CHOICES.items()})

    def visible(self, attribute: str) -> bool:
        """Whether ``attribute`` shows in the picture (a bald face has no visible hair colour)."""
        if attribute not in VISIBLE_IF:
            return True
        part, absent = VISIBLE_IF[attribute]
        return getattr(self, part) != absent

    def caption(self) -> str:
        """ "a face with a blue goatee and short red hair, green eyes, ..."."""
        parts = []
        if self.beard != "none":
            parts.append(f"a {self.beard_colour} {'goatee' if self.beard == 'goatee' else 'beard'}")
        if self.hair_style == "bald":
            parts.append("no hair")
        else:
            parts.append(f"{self.hair_style} {self.hair_colour} hair")
        parts.append(f"{self.eye_colour} eyes")
        parts.append(f"{self.lip_colour} lips")
        if self.glasses != "none":
            parts.append(f"{self.glasses} {self.glasses_colour} glasses")
        article = "an" if self.face_shape[0] in "aeiou" else "a"
        head = f"{article} {self.face_shape} {self.skin_tone} face with " + " and ".join(parts[:2])
        rest = ", ".join(parts[2:])
        pattern = "" if self.background_pattern == "plain" else f" {self.background_pattern}"
        return f"{head}, {rest}, on a {self.background_colour}{pattern} background"
