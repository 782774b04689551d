import json
import logging
import zipfile

import numpy as np
import pytest
import torch

from mcaclip.errors import CheckpointError, ShapeError, WeightsMissingError
from mcaclip.faces.mtcnn import (
    MTCNN,
    NETS,
    Face,
    FaceTooSmallError,
    NoFaceError,
    ONet,
    PNet,
    RNet,
    default_dir,
    install_from_wheel,
    main,
    nms_min,
    pick_faces,
    pyramid_scales,
)


def _save_random_nets(folder):
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    nets = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f"{name}.pt")
    return nets


def _face(x0, y0, side, score=0.99):
    lm = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return Face((x0, y0, x0 + side, y0 + side), score, lm * side + [x0, y0])


# --- networks and weights ---------------------------------------------------------------------


def test_layout_matches_facenet_pytorch_files(data_dir):
    ref = json.loads((data_dir / "mtcnn_keys.json").read_text())
    assert set(ref) == set(NETS)
    for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == ref[name]


def test_output_shapes():
    probs, reg = PNet()(torch.randn(2, 3, 40, 30))
    assert probs.shape == (2, 2, 15, 10) and reg.shape == (2, 4, 15, 10)
    assert torch.allclose(probs.sum(1), torch.ones(2, 15, 10))
    probs, reg = RNet()(torch.randn(2, 3, 24, 24))
    assert probs.shape == (2, 2) and reg.shape == (2, 4)
    probs, reg, marks = ONet()(torch.randn(2, 3, 48, 48))
    assert probs.shape == (2, 2) and reg.shape == (2, 4) and marks.shape == (2, 10)
    with pytest.raises(ShapeError, match="24, 24"):
        RNet()(torch.randn(1, 3, 48, 48))
    with pytest.raises(ShapeError, match="48, 48"):
        ONet()(torch.randn(1, 3, 24, 24))


def test_from_dir_round_trips_a_saved_state(tmp_path):
    nets = _save_random_nets(tmp_path / "w")
    det = MTCNN.from_dir(tmp_path / "w")
    assert not det.training and not any(p.requires_grad for p in det.parameters())
    for name, net in nets.items():
        for key, value in net.state_dict().items():
            assert torch.equal(getattr(det, name).state_dict()[key], value)


def test_from_dir_defaults_to_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MCACLIP_MTCNN", str(tmp_path / "w"))
    assert default_dir() == tmp_path / "w"
    _save_random_nets(tmp_path / "w")
    assert isinstance(MTCNN.from_dir(), MTCNN)
    monkeypatch.delenv("MCACLIP_MTCNN")
    monkeypatch.setenv("MCACLIP_CACHE", str(tmp_path / "cache"))
    assert default_dir() == tmp_path / "cache" / "mtcnn"


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)
    return str(exc_info.value)


def test_missing_weights_are_one_line_errors_never_random(tmp_path):
    with pytest.raises(WeightsMissingError, match="no MTCNN weights folder.*install") as exc:
        MTCNN.from_dir(tmp_path / "nowhere")
    _one_line(exc)
    _save_random_nets(tmp_path / "w")
    (tmp_path / "w" / "rnet.pt").unlink()
    with pytest.raises(WeightsMissingError, match=r"rnet\.pt missing.*pip download") as exc:
        MTCNN.from_dir(tmp_path / "w")
    _one_line(exc)


def test_corrupt_or_mismatched_files_are_one_line_errors(tmp_path):
    _save_random_nets(tmp_path / "w")
    (tmp_path / "w" / "onet.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"onet\.pt: cannot be read") as exc:
        MTCNN.from_dir(tmp_path / "w")
    _one_line(exc)
    state = RNet().state_dict()
    del state["dense4.weight"]
    torch.save(state, tmp_path / "w" / "onet.pt")
    with pytest.raises(CheckpointError, match=r"onet\.pt.*facenet-pytorch.*missing keys") as exc:
        MTCNN.from_dir(tmp_path / "w")
    _one_line(exc)
    torch.save([torch.zeros(1)], tmp_path / "w" / "onet.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        MTCNN.from_dir(tmp_path / "w")


# --- installing from the wheel ----------------------------------------------------------------


def _fake_wheel(path, tmp_path, members=NETS):
    src = tmp_path / "src"
    _save_random_nets(src)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("facenet_pytorch/__init__.py", "")
        for name in members:
            zf.write(src / f"{name}.pt", f"facenet_pytorch/data/{name}.pt")
    return path


def test_install_from_wheel_extracts_the_three_files(tmp_path):
    wheel = _fake_wheel(tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl", tmp_path)
    dest = install_from_wheel(wheel, tmp_path / "cache" / "mtcnn")
    assert sorted(p.name for p in dest.iterdir()) == ["onet.pt", "pnet.pt", "rnet.pt"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mtcnn"]  # no temp folder left
    (dest / "notes.txt").write_text("mine")
    install_from_wheel(wheel, dest)  # again, into the existing folder: others' files stay
    assert (dest / "notes.txt").read_text() == "mine"
    assert isinstance(MTCNN.from_dir(dest), MTCNN)


def test_install_refuses_a_zip_without_the_weights(tmp_path):
    wheel = _fake_wheel(tmp_path / "other.whl", tmp_path, members=("pnet", "rnet"))
    with pytest.raises(CheckpointError, match=r"has no facenet_pytorch/data/onet\.pt") as exc:
        install_from_wheel(wheel, tmp_path / "dest")
    _one_line(exc)
    assert not (tmp_path / "dest").exists()
    (tmp_path / "bad.whl").write_text("not a zip")
    with pytest.raises(CheckpointError, match="not a wheel"):
        install_from_wheel(tmp_path / "bad.whl", tmp_path / "dest")
    with pytest.raises(WeightsMissingError, match="file not found"):
        install_from_wheel(tmp_path / "absent.whl", tmp_path / "dest")


def test_install_cli(tmp_path, capsys):
    wheel = _fake_wheel(tmp_path / "w.whl", tmp_path)
    assert main(["install", str(wheel), "--dest", str(tmp_path / "d")]) == 0
    assert str(tmp_path / "d") in capsys.readouterr().out
    assert main(["install", str(tmp_path / "absent.whl"), "--dest", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# --- choosing a face --------------------------------------------------------------------------


def test_pick_faces_outcomes(caplog):
    with pytest.raises(NoFaceError, match="no face found in the picture"):
        pick_faces([])
    with pytest.raises(FaceTooSmallError, match="20 px, under the 32 px minimum"):
        pick_faces([_face(0, 0, 20), _face(50, 50, 12)])
    small, large, medium = _face(0, 0, 20), _face(100, 0, 80), _face(200, 0, 50)
    with caplog.at_level(logging.INFO, logger="mcaclip.faces.mtcnn"):
        assert pick_faces([small, large, medium]) == [large]
    assert "editing the largest" in caplog.text
    assert pick_faces([small, medium, large], all_faces=True) == [large, medium]
    assert pick_faces([small], min_size=16) == [small]


# --- the cascade's plumbing -------------------------------------------------------------------


def test_pyramid_covers_faces_from_min_size_to_the_short_side():
    scales = pyramid_scales(480, 640, 20, 0.709)
    assert scales[0] == pytest.approx(0.6)
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709


def test_nms_min_drops_boxes_nested_in_a_better_one():
    boxes = torch.tensor([[0, 0, 10, 10], [2, 2, 6, 6], [20, 20, 30, 30], [0, 0, 9, 10.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.8])
    assert nms_min(boxes, scores, 0.7).tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["blank", "random"])
def test_cascade_runs_on_random_weights(kind):
    torch.manual_seed(0)
    det = MTCNN(thresholds=(0.0, 0.0, 0.0), batch_size=64).eval()  # let every box through
    rng = np.random.default_rng(0)
    image = (
        np.zeros((70, 90, 3), np.uint8) if kind == "blank" else rng.integers(0, 256, (70, 90, 3))
    )
    faces = det.detect(image.astype(np.uint8))
    assert isinstance(faces, list) and faces  # every stage ran
    for face in faces:
        assert face.landmarks.shape == (5, 2) and 0 <= face.score <= 1
        assert len(face.box) == 4 and face.box[2] > face.box[0]
    assert isinstance(MTCNN().eval().detect(image.astype(np.uint8)), list)  # default thresholds
    with pytest.raises(ShapeError, match="uint8 RGB"):
        det.detect(np.zeros((70, 90), np.uint8))


# --- the real weights on a real photo (optional) ----------------------------------------------


def test_real_weights_find_the_astronauts_face():
    folder = default_dir()
    if not all((folder / f"{n}.pt").is_file() for n in NETS):
        pytest.skip(
            f"MTCNN weights (pnet.pt, rnet.pt, onet.pt) not in {folder}: set MCACLIP_MTCNN or "
            "run python -m mcaclip.faces.mtcnn install facenet_pytorch-2.6.0-py3-none-any.whl"
        )
    skimage_data = pytest.importorskip(
        "skimage.data", reason="scikit-image (for its astronaut photo) is not installed"
    )
    photo = skimage_data.astronaut()  # [512, 512, 3], Eileen Collins, public domain
    face = pick_faces(MTCNN.from_dir(folder).detect(photo))[0]
    assert face.score > 0.99
    x0, y0, x1, y1 = face.box
    assert 160 < x0 < 200 and 40 < y0 < 80 and 250 < x1 < 290 and 150 < y1 < 190
    eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < nose[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert ((face.landmarks >= [x0, y0]) & (face.landmarks <= [x1, y1])).all()
