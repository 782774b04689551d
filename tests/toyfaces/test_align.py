"""The toy world's face finder on the toy generator's renders: where it puts the face."""

import numpy as np
import pytest
import torch
from PIL import Image

from mcaclip.faces.align import warp_to_crop
from mcaclip.toyfaces.align import TEMPLATE, ToyFaceFinder, register, to_pixels
from mcaclip.toyfaces.render import render


@pytest.fixture(scope="module")
def renders():
    from mcaclip.nn.stylegan2 import Generator
    from mcaclip.toyfaces.world import asset

    g = Generator.from_checkpoint(asset("generator.safetensors")).eval()
    w = torch.load(asset("test_latents.pt"), weights_only=True).float()[:12]
    with torch.no_grad():
        x = g.synthesis(w)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def toy_scene(face: np.ndarray) -> np.ndarray:
    """A 400 x 300 picture: ``face`` enlarged 3x at (150, 50), on its background's colour."""
    photo = np.empty((300, 400, 3), np.uint8)
    photo[:] = face[0, 0]
    photo[50:242, 150:342] = np.asarray(Image.fromarray(face).resize((192, 192), Image.BICUBIC))
    return photo


def test_registration_recovers_the_renderers_framing_from_true_labels():
    from mcaclip.toyfaces.data import sample_faces

    found = np.array([register(render(f, 64).segmentation) for f in sample_faces(12, 3)])
    assert np.abs(found[:, 1:]).max() <= 1  # shift, px
    assert np.abs(found[:, 0] - 1).max() < 0.12  # scale: the face shapes differ by ~8 %


def test_finds_a_render_where_the_renderer_drew_it(renders):
    finder = ToyFaceFinder()
    template = to_pixels(TEMPLATE, 64)
    errors = []
    for face in renders:
        (found,) = finder.find(face)
        errors.append(np.abs(found.landmarks - template).max())
    assert np.median(errors) < 1.5 and max(errors) < 6.0  # px at 64 px


def test_a_face_inside_a_larger_picture_is_cut_out_at_the_generators_framing(renders):
    finder = ToyFaceFinder()
    scales, errors = [], []
    for face in renders[:6]:
        photo = toy_scene(face)
        (found,) = finder.find(photo)
        alignment = finder.alignment(found, 64)
        scales.append(alignment.scale)
        crop = warp_to_crop(photo, alignment).astype(float)
        errors.append(np.abs(crop - face).mean())
    assert np.median(np.abs(np.array(scales) / 3 - 1)) < 0.1  # the face was enlarged 3x
    assert np.median(errors) < 20  # of 255: the crop is the render again, roughly


def test_no_face_no_result():
    wall = np.full((90, 120, 3), (30, 200, 40), np.uint8)
    assert ToyFaceFinder().find(wall) == []
