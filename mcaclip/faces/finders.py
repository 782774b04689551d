"""Face finders: a photo -> the faces in it -> each face's aligned crop for the generator.

Two kinds, named in a bundle's manifest (``photos.finder``):

=========  =========================================================================
``mtcnn``  MTCNN's five landmarks and FFHQ's crop (real photos, the ffhq presets); the
           weights come from ``$MCACLIP_MTCNN`` or the cache (:func:`.mtcnn.default_dir`)
``toy``    the toy world's parser finds the face and its eyes and lips; the crop maps them
           onto where the toy renderer draws them (:mod:`mcaclip.toyfaces.align`)
=========  =========================================================================
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
from PIL import Image

from mcaclip.errors import ConfigError
from mcaclip.faces.align import Alignment, ffhq_alignment
from mcaclip.faces.mtcnn import MTCNN, Face

log = logging.getLogger(__name__)
FINDERS = ("mtcnn", "toy")


class FaceFinder(Protocol):
    def find(self, photo: np.ndarray) -> list[Face]:
        """Every face in ``photo`` [H, W, 3] uint8 (pixel coordinates of the photo)."""

    def alignment(self, face: Face, size: int) -> Alignment:
        """The crop of ``face`` at ``size`` x ``size`` the generator's faces are framed as."""


class MtcnnFinder:
    """MTCNN on the photo (shrunk to ``max_side`` first: detection time and memory grow with
    the pixels, faces do not need them), FFHQ's alignment from the five landmarks."""

    def __init__(self, detector: MTCNN | None = None, max_side: int = 1024):
        self.detector = detector if detector is not None else MTCNN.from_dir()
        self.max_side = max_side

    def find(self, photo: np.ndarray) -> list[Face]:
        h, w = photo.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale == 1.0:
            return self.detector.detect(photo)
        small = Image.fromarray(photo).resize(
            (max(round(w * scale), 1), max(round(h * scale), 1)), Image.BILINEAR, reducing_gap=2.0
        )
        faces = self.detector.detect(np.asarray(small))
        # back to the photo's pixel-centre coordinates
        sx, sy = w / small.width, h / small.height
        out = []
        for f in faces:
            x0, y0, x1, y1 = f.box
            box = ((x0 + 0.5) * sx - 0.5, (y0 + 0.5) * sy - 0.5, (x1 + 0.5) * sx - 0.5)
            box = (*box, (y1 + 0.5) * sy - 0.5)
            lm = (f.landmarks + 0.5) * np.array([sx, sy]) - 0.5
            out.append(Face(box=box, score=f.score, landmarks=lm))
        return out

    def alignment(self, face: Face, size: int) -> Alignment:
        return ffhq_alignment(face.landmarks, size)


def make_finder(kind: str) -> FaceFinder:
    """The finder named ``kind`` (see the module docstring)."""
    if kind == "mtcnn":
        return MtcnnFinder()
    if kind == "toy":
        from mcaclip.toyfaces.align import ToyFaceFinder

        return ToyFaceFinder()
    raise ConfigError(f"face finder {kind!r}: choose one of {', '.join(FINDERS)}")


def finder_for_preset(name: str) -> str:
    """The finder a bundle of preset ``name`` uses: MTCNN + FFHQ for real faces, the toy
    world's parser for its presets (toy-64, and tiny-32 in tests)."""
    return "toy" if name in ("toy-64", "tiny-32") else "mtcnn"
