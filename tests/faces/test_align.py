import json
import math

import numpy as np
import pytest

from mcaclip.errors import ShapeError
from mcaclip.faces.align import (
    Alignment,
    AlignmentError,
    ffhq_alignment,
    ffhq_quad,
    paste_back,
    template_alignment,
    warp_to_crop,
)

# Eyes at (40, 50), (60, 50), nose (50, 65), mouth corners (42, 80), (58, 80).
LANDMARKS = np.array([[40, 50], [60, 50], [50, 65], [42, 80], [58, 80]], dtype=np.float64)


def _similarity(scale, degrees, tx, ty):
    a = math.radians(degrees)
    m = np.eye(3)
    m[:2, :2] = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m[:2, 2] = tx, ty
    return m


def _apply(m, points):
    return points @ m[:2, :2].T + m[:2, 2]


def _smooth_photo(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127 + 100 * np.sin(xx / 17) * np.cos(yy / 23),
        127 + 90 * np.sin(yy / 13 + 1),
        127 + 80 * np.cos((xx + yy) / 29),
    ]
    return np.stack(channels, -1).round().astype(np.uint8)


# --- geometry ---------------------------------------------------------------------------------


def test_ffhq_quad_of_hand_made_landmarks():
    # eye_avg (50, 50), eye_to_eye (20, 0), eye_to_mouth (0, 30): x = (20, 0) - (-30, 0), i.e.
    # along +x, of length max(2 * 20, 1.8 * 30) = 54; y = (0, 54); centre (50, 50 + 3).
    quad = ffhq_quad(LANDMARKS)
    np.testing.assert_allclose(quad, [[-4, -1], [-4, 107], [104, 107], [104, -1]], atol=1e-12)
    al = ffhq_alignment(LANDMARKS, size=216)
    assert al.scale == pytest.approx(0.5) and al.angle == pytest.approx(0.0)
    np.testing.assert_allclose(al.to_photo([107.5, 107.5]), [50, 53])  # the crop's centre
    np.testing.assert_allclose(al.quad(), quad, atol=1e-12)
    # left eye: (40 - -4) / 0.5 - 0.5 across, (50 - -1) / 0.5 - 0.5 down
    np.testing.assert_allclose(al.to_crop(LANDMARKS[0]), [87.5, 101.5])


def test_rotated_landmarks_give_a_rotated_quad():
    rot = _similarity(1.0, 30.0, 0.0, 0.0) @ np.array([[1, 0, -10], [0, 1, -20], [0, 0, 1.0]])
    rot = np.array([[1, 0, 10], [0, 1, 20], [0, 0, 1.0]]) @ rot  # 30 degrees about (10, 20)
    al = ffhq_alignment(_apply(rot, LANDMARKS), size=256)
    assert al.angle == pytest.approx(30.0)
    np.testing.assert_allclose(al.quad(), _apply(rot, ffhq_quad(LANDMARKS)), atol=1e-9)


@pytest.mark.parametrize("scale, degrees, tx, ty", [(2.3, -40.0, 310.0, -75.0), (0.4, 170, 5, 9)])
def test_landmarks_land_on_the_same_crop_positions_whatever_the_photo(scale, degrees, tx, ty):
    t = _similarity(scale, degrees, tx, ty)
    ref = ffhq_alignment(LANDMARKS, 512).to_crop(LANDMARKS)
    moved = _apply(t, LANDMARKS)
    np.testing.assert_allclose(ffhq_alignment(moved, 512).to_crop(moved), ref, atol=1e-9)


def test_crop_and_photo_coordinates_are_inverse():
    al = ffhq_alignment(_apply(_similarity(1.7, 12.0, 40, 9), LANDMARKS), 300)
    points = np.random.default_rng(0).uniform(-50, 350, (7, 3, 2))
    np.testing.assert_allclose(al.to_crop(al.to_photo(points)), points, atol=1e-9)
    np.testing.assert_allclose(al.inverse() @ al.matrix, np.eye(3), atol=1e-12)


def test_alignment_round_trips_through_json():
    al = ffhq_alignment(LANDMARKS, 128)
    back = Alignment.from_dict(json.loads(json.dumps(al.to_dict())))
    assert back.size == 128 and np.array_equal(back.matrix, al.matrix)
    with pytest.raises(AlignmentError, match="not a stored alignment"):
        Alignment.from_dict({"size": 128})
    with pytest.raises(AlignmentError, match=r"affine \[3, 3\]"):
        Alignment.from_dict(dict(al.to_dict(), matrix=[[1, 0], [0, 1]]))
    with pytest.raises(AlignmentError, match="malformed"):
        Alignment.from_dict({k: v for k, v in al.to_dict().items() if k != "size"})


def test_bad_landmarks_are_errors():
    with pytest.raises(ShapeError, match=r"\[5, 2\]"):
        ffhq_alignment(LANDMARKS[:4], 64)
    with pytest.raises(AlignmentError, match="coincide"):
        ffhq_alignment(np.ones((5, 2)), 64)


def test_template_alignment_recovers_a_known_similarity():
    template = np.array([[20, 24], [44, 24], [32, 38], [23, 50], [41, 50.0]])  # crop pixels
    truth = _similarity(3.1, -25.0, 120.0, 80.0)
    noise = np.random.default_rng(0).normal(0, 0.01, (5, 2))
    al = template_alignment(_apply(truth, template) + noise, template, 64)
    np.testing.assert_allclose(al.matrix, truth, atol=0.05)
    # A mirrored face is fitted by a rotation, never a reflection.
    mirrored = _apply(truth, template * [-1, 1])
    assert np.linalg.det(template_alignment(mirrored, template, 64).matrix[:2, :2]) > 0


# --- warping ----------------------------------------------------------------------------------


def test_integer_translation_copies_pixels_and_mirrors_outside():
    photo = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    inside = warp_to_crop(photo, Alignment(16, _similarity(1, 0, 7, 5)))
    assert np.array_equal(inside, photo[5:21, 7:23])
    # The quad leaves the photo at the top-left: numpy's "reflect" padding.
    corner = warp_to_crop(photo, Alignment(16, _similarity(1, 0, -6, -4)))
    padded = np.pad(photo, ((8, 8), (8, 8), (0, 0)), mode="reflect")
    assert np.array_equal(corner, padded[4:20, 2:18])


@pytest.mark.parametrize("size", [256, 64])  # 64: through the antialiasing pre-shrink
def test_landmarks_appear_where_the_alignment_puts_them(size):
    photo = np.zeros((400, 500, 3), np.uint8)
    t = _similarity(2.5, 20.0, 180, 60)
    lm = _apply(t, LANDMARKS)
    yy, xx = np.mgrid[0:400, 0:500]
    for x, y in lm:  # a soft dot at each landmark
        photo[..., 0] = np.maximum(
            photo[..., 0], 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)
        )
    al = ffhq_alignment(lm, size)
    crop = warp_to_crop(photo, al)[..., 0].astype(np.float64)
    cy, cx = np.mgrid[0:size, 0:size]
    for u, v in al.to_crop(lm):
        near = (cx - u) ** 2 + (cy - v) ** 2 < 36
        w = crop * near
        centroid = np.array([(w * cx).sum(), (w * cy).sum()]) / w.sum()
        np.testing.assert_allclose(centroid, [u, v], atol=0.2)


def test_downscaling_is_antialiased():
    checker = ((np.indices((800, 800)).sum(0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(checker[..., None], 3, axis=2)
    lm = _apply(_similarity(6.0, 10.0, 100, 50), LANDMARKS)  # quad ~650 px -> 64 px crop
    crop = warp_to_crop(photo, ffhq_alignment(lm, 64)).astype(np.float64)
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 4  # a plain grey, no moire


def test_warp_then_paste_back_reproduces_the_photo():
    photo = _smooth_photo(300, 400)
    lm = _apply(_similarity(2.0, 15.0, 120, 40), LANDMARKS)
    yy, xx = np.mgrid[0:300, 0:400]
    pixels = np.stack([xx, yy], -1).astype(np.float64)
    for size in (96, 256, 1024):  # crop smaller than, about as large as, larger than the face
        al = ffhq_alignment(lm, size)
        back = paste_back(photo, warp_to_crop(photo, al), al)
        diff = np.abs(back.astype(int) - photo).max(-1)
        uv = al.to_crop(pixels)
        face = ((uv > 0.15 * size) & (uv < 0.85 * size)).all(-1)
        outside = ~((uv > -1.5) & (uv < size + 0.5)).all(-1)
        assert face.sum() > 1000 and outside.sum() > 1000
        assert diff[face].max() <= 4 and diff[face].mean() < 1.5, size
        assert (diff[outside] == 0).all()


def test_paste_back_blends_through_a_feathered_mask():
    photo = _smooth_photo(200, 200)
    al = ffhq_alignment(LANDMARKS + 40, 128)
    white = np.full((128, 128, 3), 255, np.uint8)
    assert np.array_equal(paste_back(photo, white, al, mask=np.zeros((128, 128))), photo)
    mask = np.zeros((128, 128))
    mask[32:96, 32:96] = 1
    out = paste_back(photo, white, al, mask=mask, feather=4.0)
    centre = np.rint(al.to_photo([63.5, 63.5])).astype(int)
    corner = np.rint(al.to_photo([5, 5])).astype(int)
    assert (out[centre[1], centre[0]] == 255).all()
    assert (out[corner[1], corner[0]] == photo[corner[1], corner[0]]).all()
    edge = np.rint(al.to_photo([32, 63.5])).astype(int)  # on the mask's border: half blended
    assert 0 < int(out[edge[1], edge[0], 1]) - int(photo[edge[1], edge[0], 1]) < 255
    with pytest.raises(ShapeError, match=r"\[128, 128, 3\]"):
        paste_back(photo, white[:64], al)


def test_a_crop_reaching_outside_the_photo_pastes_back_inside_only():
    photo = _smooth_photo(120, 90)
    al = ffhq_alignment(LANDMARKS * 1.5 - [30, 40], 200)  # quad from (-36, -41) to (126, 121)
    crop = warp_to_crop(photo, al)
    assert crop.shape == (200, 200, 3)
    back = paste_back(photo, crop, al)
    assert back.shape == photo.shape and np.abs(back.astype(int) - photo).mean() < 1.5
