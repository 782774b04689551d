import numpy as np
import pytest

from mcaclip.toyfaces.attributes import CHOICES, LABELS, Face
from mcaclip.toyfaces.render import render, render_batch


def test_deterministic_and_in_range():
    face = Face.sample(np.random.default_rng(3))
    a, b = render(face), render(face)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.segmentation, b.segmentation)
    assert a.image.shape == (3, 64, 64) and a.image.dtype == np.float32
    assert a.image.min() >= -1 and a.image.max() <= 1
    assert render(face, 128).image.shape == (3, 128, 128)


def test_segmentation_has_every_part():
    face = Face(beard="full", glasses="square", hair_style="long")
    labels = set(np.unique(render(face, 128).segmentation).tolist())
    assert labels == set(LABELS.values())
    bald = Face(hair_style="bald", beard="none", glasses="none")
    assert LABELS["hair"] not in render(bald).segmentation


@pytest.mark.parametrize(
    "change, region",
    [
        ({"beard_colour": "blue"}, "beard"),
        ({"hair_colour": "red"}, "hair"),
        ({"eye_colour": "purple"}, "eyes"),
        ({"lip_colour": "blue"}, "lips"),
        ({"glasses_colour": "pink"}, "glasses"),
    ],
)
def test_a_colour_edit_touches_only_its_region(change, region):
    face = Face(beard="goatee", beard_colour="black", glasses="round")
    before, after = (
        render(face, 64, supersample=1),
        render(face.replace(**change), 64, supersample=1),
    )
    changed = np.abs(after.image - before.image).max(0) > 0
    inside = before.segmentation == LABELS[region]
    assert changed.any() and inside.any()
    assert not changed[~inside].any(), "pixels outside the region must not change"


def test_captions_name_the_attributes():
    face = Face(
        beard="goatee",
        beard_colour="blue",
        hair_style="short",
        hair_colour="red",
        glasses="round",
        glasses_colour="purple",
        face_shape="oval",
    )
    caption = face.caption()
    assert caption.startswith("an oval tan face with a blue goatee and short red hair")
    assert "round purple glasses" in caption and "green eyes" in caption


def test_attribute_vectors():
    rng = np.random.default_rng(0)
    faces = [Face.sample(rng) for _ in range(50)]
    for f in faces:
        assert Face.from_indices(f.to_indices()) == f
    assert len({f.beard for f in faces}) == len(CHOICES["beard"])
    with pytest.raises(ValueError, match="beard='moustache'"):
        Face(beard="moustache")
    images, segs = render_batch(faces[:3], 32)
    assert images.shape == (3, 3, 32, 32) and segs.shape == (3, 32, 32)
