import numpy as np
import pytest

from mcaclip.errors import ConfigError
from mcaclip.faces.finders import MtcnnFinder, finder_for_preset, make_finder
from mcaclip.faces.mtcnn import Face


class _Recorder:
    """A detector that sees the picture it is given and reports one face at a fixed place."""

    def __init__(self, face: Face):
        self.face, self.shapes = face, []

    def detect(self, image):
        self.shapes.append(image.shape)
        return [self.face]


def test_mtcnn_finder_detects_on_a_shrunk_photo_and_maps_back():
    lm = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70.0]])
    detector = _Recorder(Face(box=(30.0, 40.0, 70.0, 80.0), score=0.99, landmarks=lm))
    finder = MtcnnFinder(detector, max_side=100)
    (face,) = finder.find(np.zeros((200, 400, 3), np.uint8))
    assert detector.shapes == [(50, 100, 3)]  # the long side shrunk to 100
    # pixel centres: x_photo + 0.5 = 4 (x_small + 0.5)
    assert face.box == pytest.approx((121.5, 161.5, 281.5, 321.5))
    assert face.landmarks[0] == pytest.approx([161.5, 201.5])
    small = np.zeros((80, 90, 3), np.uint8)  # under max_side: as it is
    assert finder.find(small)[0].landmarks is lm and detector.shapes[-1] == (80, 90, 3)
    alignment = finder.alignment(face, 256)
    eyes = alignment.to_crop(face.landmarks[:2])
    assert eyes[0, 1] == pytest.approx(eyes[1, 1])  # FFHQ's crop levels the eyes


def test_finder_names():
    assert finder_for_preset("ffhq-1024") == "mtcnn" and finder_for_preset("toy-64") == "toy"
    with pytest.raises(ConfigError, match="choose one of mtcnn, toy"):
        make_finder("dlib")
