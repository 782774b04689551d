"""Data of the toy world: seeded face sets, attribute encodings, rendered batches.

Train and held-out faces come from different seeds and the held-out set excludes every
attribute vector seen in training, so test latents are faces the generator never rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mcaclip.toyfaces.attributes import CHOICES, Face
from mcaclip.toyfaces.render import render_batch

ATTRIBUTE_DIM = sum(len(v) for v in CHOICES.values())  # width of the one-hot encoding


def encode(faces: list[Face]) -> torch.Tensor:
    """Concatenated one-hot attribute vectors [N, ATTRIBUTE_DIM] (float32)."""
    out = torch.zeros(len(faces), ATTRIBUTE_DIM)
    for row, face in enumerate(faces):
        offset = 0
        for index, values in zip(face.to_indices(), CHOICES.values()):
            out[row, offset + int(index)] = 1.0
            offset += len(values)
    return out


def labels(faces: list[Face]) -> torch.Tensor:
    """Class index of every attribute [N, n_attributes] (int64)."""
    return torch.from_numpy(np.stack([f.to_indices() for f in faces]))


def visibility(faces: list[Face]) -> torch.Tensor:
    """Whether each attribute shows [N, n_attributes] (bool): colours of absent parts do not."""
    return torch.tensor([[f.visible(k) for k in CHOICES] for f in faces])


def identity_class(face: Face) -> int:
    """Identity = (face shape, skin tone): one of 12 classes."""
    shape = CHOICES["face_shape"].index(face.face_shape)
    return shape * len(CHOICES["skin_tone"]) + CHOICES["skin_tone"].index(face.skin_tone)


@dataclass
class FaceSet:
    faces: list[Face]
    images: torch.Tensor  # [N, 3, H, W] in [-1, 1]
    segmentation: torch.Tensor  # [N, H, W] int64

    def __len__(self) -> int:
        return len(self.faces)

    def batch(self, idx: torch.Tensor) -> FaceSet:
        return FaceSet(
            [self.faces[i] for i in idx.tolist()], self.images[idx], self.segmentation[idx]
        )


def sample_faces(n: int, seed: int, exclude: set[Face] | None = None) -> list[Face]:
    rng = np.random.default_rng(seed)
    faces: list[Face] = []
    while len(faces) < n:
        face = Face.sample(rng)
        if exclude is None or face not in exclude:
            faces.append(face)
    return faces


def make_set(faces: list[Face], size: int = 64) -> FaceSet:
    images, seg = render_batch(faces, size)
    return FaceSet(faces, torch.from_numpy(images), torch.from_numpy(seg))


def train_and_heldout(
    n_train: int, n_test: int, size: int = 64, seed: int = 0
) -> tuple[FaceSet, FaceSet]:
    """Rendered training faces and held-out faces whose attribute vectors are not in training."""
    train = sample_faces(n_train, seed)
    test = sample_faces(n_test, seed + 1, exclude=set(train))
    return make_set(train, size), make_set(test, size)
