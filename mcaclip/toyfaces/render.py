"""Deterministic renderer of toy faces: image, per-pixel segmentation, caption.

Shapes are drawn in normalised coordinates (x right, y down, both in [-1, 1]) on a grid
``supersample`` times finer than the output, then averaged (anti-aliasing); the segmentation is
the label of the centre sub-pixel. The same face always gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcaclip.toyfaces.attributes import LABELS, PALETTE, SKIN_TONES, Face

SUPERSAMPLE = 3
EYES = ((-0.2, -0.05), (0.2, -0.05))
# sizes in normalised units (1 unit = 32 px at 64 px): parts at least ~2 px thick, so that a
# 64 px generator can draw them and the probes can read them on its renders
EYE_RADIUS, PUPIL_RADIUS = 0.1, 0.03
LIPS = (0.2, 0.085)  # half width, half height
FRAME = (0.14, 0.18)  # round frames' inner/outer radius (square: 0.01 less)
PATTERN_SCALE = 2  # stripes and dots per unit: 16 px periods at 64 px
DOT_RADIUS = 0.35  # background dots, in units of their grid cell
FACE_GEOMETRY = {  # centre y, half width, half height, superellipse exponent
    "round": (0.05, 0.55, 0.55, 2.0),
    "oval": (0.05, 0.47, 0.63, 2.0),
    "square": (0.05, 0.52, 0.58, 4.5),
}


@dataclass
class Rendering:
    image: np.ndarray  # [3, H, W] float32 in [-1, 1]
    segmentation: np.ndarray  # [H, W] int64, see LABELS (0 = background)
    caption: str


def _inside_superellipse(x, y, cx, cy, a, b, p):
    return np.abs((x - cx) / a) ** p + np.abs((y - cy) / b) ** p <= 1.0


def _shade(colour, amount):
    """Mix towards white (amount > 0) or black (amount < 0)."""
    c = np.asarray(colour, np.float32)
    return c + (1 - c) * amount if amount > 0 else c * (1 + amount)


def render(face: Face, size: int = 64, supersample: int = SUPERSAMPLE) -> Rendering:
    """Render ``face`` at ``size`` x ``size`` pixels."""
    n = size * supersample
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    y, x = np.meshgrid(coords, coords, indexing="ij")
    rgb = np.zeros((n, n, 3), np.float32)
    seg = np.zeros((n, n), np.int64)

    def paint(mask, colour, label):
        rgb[mask] = colour
        seg[mask] = LABELS[label]

    # background and its pattern
    bg = np.asarray(PALETTE[face.background_colour], np.float32)
    rgb[:] = bg
    if face.background_pattern == "stripes":
        stripe = (np.floor((x + y) * PATTERN_SCALE) % 2) == 0
        rgb[stripe] = _shade(bg, 0.45)
    elif face.background_pattern == "dots":
        gx, gy = (x * PATTERN_SCALE) % 1 - 0.5, (y * PATTERN_SCALE) % 1 - 0.5
        rgb[gx**2 + gy**2 < DOT_RADIUS**2] = _shade(bg, 0.45)

    cy, a, b, p = FACE_GEOMETRY[face.face_shape]
    hair = np.asarray(PALETTE[face.hair_colour], np.float32)
    if face.hair_style == "long":  # behind the head, down to the shoulders
        paint((np.abs(x) < a + 0.16) & (y > cy - b - 0.1) & (y < 0.85), hair, "hair")
    face_mask = _inside_superellipse(x, y, 0, cy, a, b, p)
    paint(face_mask, SKIN_TONES[face.skin_tone], "skin")
    if face.hair_style != "bald":  # a cap over the top of the head
        cap = _inside_superellipse(x, y, 0, cy - 0.04, a + 0.07, b + 0.08, p) & (y < cy - b * 0.45)
        paint(cap, hair, "hair")

    if face.beard != "none":
        beard = np.asarray(PALETTE[face.beard_colour], np.float32)
        if face.beard == "full":
            region = face_mask & (y > cy + b * 0.28)
        else:  # goatee: the chin
            region = _inside_superellipse(x, y, 0, cy + b * 0.72, 0.17, 0.2, 2.0) & face_mask
        paint(region, beard, "beard")

    paint(
        _inside_superellipse(x, y, 0, cy + b * 0.42, *LIPS, 2.0),
        PALETTE[face.lip_colour],
        "lips",
    )

    for ex, ey in EYES:
        r2 = (x - ex) ** 2 + (y - ey) ** 2
        paint(r2 < EYE_RADIUS**2, PALETTE[face.eye_colour], "eyes")
        rgb[r2 < PUPIL_RADIUS**2] = 0.02  # pupil (still labelled eyes)

    if face.glasses != "none":
        frame_colour = np.asarray(PALETTE[face.glasses_colour], np.float32)
        frame = np.zeros_like(face_mask)
        for ex, ey in EYES:
            if face.glasses == "round":
                d = np.sqrt((x - ex) ** 2 + (y - ey) ** 2)
                frame |= (d > FRAME[0]) & (d < FRAME[1])
            else:
                d = np.maximum(np.abs(x - ex), np.abs(y - ey))
                frame |= (d > FRAME[0] - 0.01) & (d < FRAME[1] - 0.01)
        frame |= (np.abs(x) < 0.06) & (np.abs(y - EYES[0][1]) < 0.02)  # bridge
        paint(frame, frame_colour, "glasses")

    s = supersample
    image = rgb.reshape(size, s, size, s, 3).mean(axis=(1, 3))
    labels = seg[s // 2 :: s, s // 2 :: s]
    return Rendering(
        image=(image.transpose(2, 0, 1) * 2 - 1).astype(np.float32),
        segmentation=labels.copy(),
        caption=face.caption(),
    )


def render_batch(faces: list[Face], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 3, H, W] in [-1, 1] and segmentations [N, H, W]."""
    out = [render(f, size) for f in faces]
    return np.stack([r.image for r in out]), np.stack([r.segmentation for r in out])
