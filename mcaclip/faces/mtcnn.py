"""MTCNN face detector (Zhang et al. 2016): P-Net, R-Net, O-Net and the detection cascade.

Weights: the converted Caffe models that ship inside the facenet-pytorch 2.6.0 wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``, plain state dicts, MIT licensed). Our parameter
names follow those files so that they load with strict key checking; ``python -m
mcaclip.faces.mtcnn install WHEEL`` copies them out of a downloaded wheel into :func:`default_dir`.

Conventions of those weights:

- input: RGB, ``[B, 3, H, W]`` upright, normalised as ``(x - 127.5) / 128``; crops outside the
  picture are padded with black (pixel value 0), as in the original cascade;
- the Caffe nets were trained on transposed pictures (MATLAB arrays are column-major). The
  converter swapped the kernels' spatial axes, so the convolutions take upright pictures, but
  the first dense layer still reads its input in the transposed order: we flatten
  ``[B, C, H, W]`` as ``[B, W, H, C]``;
- box regression ``(dx0, dy0, dx1, dy1)`` is in units of the box's width and height;
  landmarks are ``(x1..x5, y1..y5)`` in units of the O-Net box, in the order left eye, right
  eye, nose, mouth left, mouth right, left and right as seen in the picture.

Coordinates (boxes and landmarks) are pixels with pixel centres at integers: pixel
``[row i, col j]`` is at ``x = j, y = i``, the picture spans ``[-0.5, W - 0.5]``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcaclip.errors import (
    CheckpointError,
    ConfigError,
    McaError,
    ShapeError,
    WeightsMissingError,
)
from mcaclip.fileio import current_umask
from mcaclip.nn.weights import load_state_strict, safe_torch_load

log = logging.getLogger(__name__)

NETS = ("pnet", "rnet", "onet")
WHEEL_DATA = "facenet_pytorch/data"  # where the three files lie inside the wheel
GET_WHEEL = (
    "pip download --no-deps facenet-pytorch==2.6.0 -d DIR, then "
    "python -m mcaclip.faces.mtcnn install DIR/facenet_pytorch-2.6.0-py3-none-any.whl"
)


class NoFaceError(McaError):
    """The detector found no face in a picture."""


class FaceTooSmallError(McaError):
    """The faces found are smaller than the size an edit needs."""


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, W*H*C], the order the converted Caffe dense layers expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal net, fully convolutional with stride 2 over 12x12 windows:
    [B, 3, H, W] -> face probability [B, 2, h, w], box regression [B, 4, h, w],
    h = ceil((H - 2) / 2) - 4."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < 12:
            raise ShapeError(f"P-Net takes [B, 3, H, W] with H, W >= 12, got {tuple(x.shape)}")
        x = self.prelu1(self.conv1(x))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(x)))))
        return self.conv4_1(x).softmax(dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net: crops [B, 3, 24, 24] -> face probability [B, 2], regression [B, 4]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(64 * 3 * 3, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 24, 24):
            raise ShapeError(f"R-Net takes [B, 3, 24, 24] crops, got {tuple(x.shape)}")
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """Output net: crops [B, 3, 48, 48] -> face probability [B, 2], regression [B, 4],
    landmarks [B, 10] (x1..x5, y1..y5 in units of the crop)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(128 * 3 * 3, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 48, 48):
            raise ShapeError(f"O-Net takes [B, 3, 48, 48] crops, got {tuple(x.shape)}")
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        return self.dense6_1(x).softmax(dim=1), self.dense6_2(x), self.dense6_3(x)


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. ``box`` (x0, y0, x1, y1) and ``landmarks`` [5, 2] (x, y: left eye,
    right eye, nose, mouth left, mouth right, as seen in the picture) are in pixels."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """The box's longer side, in pixels."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def default_dir() -> Path:
    """``$MCACLIP_MTCNN``, else ``mtcnn`` in the mcaclip cache (``$MCACLIP_CACHE``, default
    ``~/.cache/mcaclip``, as :func:`mcaclip.toyfaces.demo.cache_dir`)."""
    if os.environ.get("MCACLIP_MTCNN"):
        return Path(os.environ["MCACLIP_MTCNN"])
    return Path(os.environ.get("MCACLIP_CACHE") or Path.home() / ".cache" / "mcaclip") / "mtcnn"


def _nets() -> dict[str, nn.Module]:
    return {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}


def _load_into(net: nn.Module, path: Path) -> None:
    state = safe_torch_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors; reinstall it ({GET_WHEEL})")
    load_state_strict(net, state, f"{path} (reinstall it from the facenet-pytorch 2.6.0 wheel)")


class MTCNN(nn.Module):
    """The three-stage MTCNN cascade. Built directly it has random weights (for tests);
    :meth:`from_dir` gives the pretrained detector."""

    def __init__(
        self,
        min_face_size: float = 20.0,  # smallest face searched for, pixels (sets the pyramid top)
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),  # face probability kept by P, R, O-Net
        factor: float = 0.709,  # scale step of the picture pyramid (area halves every 2 steps)
        batch_size: int = 512,  # crops per R-Net / O-Net forward, bounds memory
    ):
        super().__init__()
        if min_face_size < 12 or not 0 < factor < 1 or len(thresholds) != 3:
            raise ConfigError(
                "MTCNN needs min_face_size >= 12, 0 < factor < 1 and three thresholds, got "
                f"{min_face_size}, {factor}, {tuple(thresholds)}"
            )
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.batch_size = int(batch_size)
        nets = _nets()
        self.pnet, self.rnet, self.onet = nets["pnet"], nets["rnet"], nets["onet"]

    @classmethod
    def from_dir(cls, path: str | Path | None = None, **kwargs) -> MTCNN:
        """The pretrained detector from a folder holding pnet.pt, rnet.pt and onet.pt
        (default :func:`default_dir`), frozen, in eval mode. ``kwargs`` go to the constructor."""
        folder = Path(path) if path is not None else default_dir()
        if not folder.is_dir():
            raise WeightsMissingError(
                f"{folder}: no MTCNN weights folder; set $MCACLIP_MTCNN or install them: "
                f"{GET_WHEEL}"
            )
        missing = [f"{n}.pt" for n in NETS if not (folder / f"{n}.pt").is_file()]
        if missing:
            raise WeightsMissingError(
                f"{folder}: MTCNN weights {', '.join(missing)} missing; reinstall them: {GET_WHEEL}"
            )
        detector = cls(**kwargs)
        for name in NETS:
            _load_into(getattr(detector, name), folder / f"{name}.pt")
        return detector.eval().requires_grad_(False)

    def _device(self) -> torch.device:
        return self.pnet.conv1.weight.device

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in ``image`` [H, W, 3] uint8 RGB, best score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(
                f"MTCNN takes an [H, W, 3] uint8 RGB picture, got {image.shape} {image.dtype}"
            )
        picture = torch.from_numpy(np.ascontiguousarray(image)).to(self._device())
        picture = picture.permute(2, 0, 1)[None].float()  # [1, 3, H, W], 0..255
        with torch.no_grad():
            boxes = self._propose(picture)
            boxes = self._refine(picture, boxes)
            boxes, landmarks = self._output(picture, boxes)
        faces = []
        for b, lm in zip(boxes.cpu().double().numpy(), landmarks.cpu().double().numpy()):
            lm = lm.copy()
            lm.setflags(write=False)
            box = tuple(float(v) - 0.5 for v in b[:4])  # edges -> pixel-centre coordinates
            faces.append(Face(box=box, score=float(b[4]), landmarks=lm))
        return faces

    # The cascade works on boxes [N, 5] (x0, y0, x1, y1, score) in edge coordinates (pixel
    # [i, j] covers [j, j+1) x [i, i+1)), the convention of roi_align(aligned=True).

    def _propose(self, picture: torch.Tensor) -> torch.Tensor:
        """Stage 1: P-Net over a pyramid, NMS per scale (0.5) and across scales (0.7)."""
        height, width = picture.shape[-2:]
        found = []
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            h, w = math.ceil(height * scale), math.ceil(width * scale)
            small = nn.functional.interpolate(picture, size=(h, w), mode="area")
            probs, reg = self.pnet(_normalise(small))
            ys, xs = torch.nonzero(probs[0, 1] >= self.thresholds[0], as_tuple=True)
            if len(ys) == 0:
                continue
            sx, sy = w / width, h / height  # the actual ratios, not the rounded-off scale
            cells = torch.stack([2 * xs / sx, 2 * ys / sy, (2 * xs + 12) / sx, (2 * ys + 12) / sy])
            cand = torch.cat([cells.T, probs[0, 1, ys, xs][:, None], reg[0, :, ys, xs].T], dim=1)
            found.append(cand[_nms(cand[:, :4], cand[:, 4], 0.5)])
        if not found:
            return picture.new_zeros(0, 5)
        cand = torch.cat(found)
        cand = cand[_nms(cand[:, :4], cand[:, 4], 0.7)]
        boxes = _square(_regress(cand[:, :4], cand[:, 5:9]))
        return torch.cat([boxes, cand[:, 4:5]], dim=1)

    def _refine(self, picture: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: R-Net on 24x24 crops, threshold, NMS 0.7, regression, squaring."""
        if len(boxes) == 0:
            return boxes
        probs, reg = self._batched(self.rnet, picture, boxes, 24)
        keep = probs[:, 1] > self.thresholds[1]
        boxes, reg, score = boxes[keep, :4], reg[keep], probs[keep, 1]
        pick = _nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        return torch.cat([boxes, score[pick, None]], dim=1)

    def _output(self, picture: torch.Tensor, boxes: torch.Tensor):
        """Stage 3: O-Net on 48x48 crops: threshold, landmarks, regression, NMS 0.7 "min"."""
        if len(boxes) == 0:
            return boxes, picture.new_zeros(0, 5, 2)
        probs, reg, marks = self._batched(self.onet, picture, boxes, 48)
        keep = probs[:, 1] > self.thresholds[2]
        boxes, reg, marks, score = boxes[keep, :4], reg[keep], marks[keep], probs[keep, 1]
        # The original cascade reads the first box pixel's index plus a fraction of the box:
        # that index is our edge coordinate, and the sum is a pixel-centre coordinate.
        wh = boxes[:, 2:4] - boxes[:, :2]
        lm_x = boxes[:, 0:1] + marks[:, :5] * wh[:, 0:1]
        lm_y = boxes[:, 1:2] + marks[:, 5:] * wh[:, 1:2]
        boxes = _regress(boxes, reg)
        pick = nms_min(boxes, score, 0.7)
        boxes = torch.cat([boxes, score[:, None]], dim=1)
        return boxes[pick], torch.stack([lm_x, lm_y], dim=-1)[pick]

    def _batched(
        self, net: Callable, picture: torch.Tensor, boxes: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, ...]:
        """``net`` on the ``size`` x ``size`` crops of ``boxes``, ``batch_size`` at a time."""
        step = self.batch_size
        outs = [net(_crops(picture, boxes[i : i + step], size)) for i in range(0, len(boxes), step)]
        return tuple(torch.cat(parts) for parts in zip(*outs))


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window sees faces of ``min_face_size`` px and up, until
    the picture's short side falls under 12 px."""
    scale, side, scales = 12.0 / min_face_size, min(height, width), []
    while side * scale >= 12:
        scales.append(scale)
        scale *= factor
    return scales


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * (1.0 / 128.0)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Move each edge of ``boxes`` [N, 4] by ``reg`` [N, 4] box widths / heights."""
    wh = (boxes[:, 2:4] - boxes[:, :2]).repeat(1, 2)
    return boxes + reg * wh


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Squares [N, 4] of the longer side, centred on ``boxes`` [N, 4]."""
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, :2]).amax(dim=1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _crops(picture: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Boxes [N, >=4] of ``picture`` [1, 3, H, W] (0..255) resized to [N, 3, size, size],
    normalised; outside the picture is black. roi_align averages several samples per output
    pixel where the box is large, like the area resize of the original cascade."""
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes[:, :4]], dim=1)
    from torchvision.ops import roi_align  # imported here: torchvision loads slowly

    crops = roi_align(picture, rois, output_size=size, spatial_scale=1.0, aligned=True)
    return _normalise(crops)


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS where the overlap is intersection over the smaller box's area (the original
    cascade's "Min" mode, which drops boxes nested inside a better one): kept indices, best
    first."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep = []
    while len(order) > 0:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = torch.maximum(boxes[i, :2], boxes[rest, :2])
        hi = torch.minimum(boxes[i, 2:4], boxes[rest, 2:4])
        inter = (hi - lo).clamp(min=0).prod(dim=1)
        overlap = inter / torch.minimum(area[i], area[rest]).clamp(min=1e-12)
        order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    from torchvision.ops import nms  # imported here: torchvision loads slowly

    return nms(boxes, scores, threshold)


def pick_faces(faces: Sequence[Face], all_faces: bool = False, min_size: int = 32) -> list[Face]:
    """The face to edit (the largest) or, with ``all_faces``, every face, largest first.

    Faces under ``min_size`` px (box's longer side) are dropped; none found at all raises
    :class:`NoFaceError`, only small ones :class:`FaceTooSmallError`."""
    if not faces:
        raise NoFaceError("no face found in the picture; use a photo with a visible, frontal face")
    by_area = sorted(faces, key=lambda f: f.area, reverse=True)
    large = [f for f in by_area if f.size >= min_size]
    if not large:
        raise FaceTooSmallError(
            f"the largest face found is {by_area[0].size:.0f} px, under the {min_size} px "
            "minimum; use a larger photo or a closer shot"
        )
    if len(large) < len(by_area):
        log.info("ignoring %d faces under %d px", len(by_area) - len(large), min_size)
    if all_faces or len(large) == 1:
        return large
    box = ", ".join(f"{v:.0f}" for v in large[0].box)
    log.info(
        "%d faces found: editing the largest (box %s, score %.3f); pass all_faces to edit all",
        len(large),
        box,
        large[0].score,
    )
    return large[:1]


def install_from_wheel(wheel: str | Path, dest: str | Path | None = None) -> Path:
    """Copy pnet.pt, rnet.pt and onet.pt out of a facenet-pytorch wheel into ``dest`` (default
    :func:`default_dir`), checking that they load into our nets. A new folder appears whole
    (written beside it, then renamed); in an existing one, each file is replaced atomically."""
    wheel = Path(wheel)
    dest = Path(dest) if dest is not None else default_dir()
    if not wheel.is_file():
        raise WeightsMissingError(f"{wheel}: file not found; get it with {GET_WHEEL}")
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{wheel}: not a wheel (zip) file ({exc}); {GET_WHEEL}") from None
    with archive:
        members = {f"{n}.pt": f"{WHEEL_DATA}/{n}.pt" for n in NETS}
        missing = sorted(set(members.values()) - set(archive.namelist()))
        if missing:
            raise CheckpointError(
                f"{wheel}: has no {', '.join(missing)}; expected the facenet-pytorch 2.6.0 wheel"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        try:
            for name, member in members.items():
                (tmp / name).write_bytes(archive.read(member))
            nets = _nets()
            for name in NETS:
                _load_into(nets[name], tmp / f"{name}.pt")
            if dest.exists():
                for name in members:
                    os.replace(tmp / name, dest / name)
            else:
                os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when renamed into place
    log.info("MTCNN weights installed in %s", dest)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mcaclip.faces.mtcnn install WHEEL [--dest DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m mcaclip.faces.mtcnn", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser(
        "install", help="copy the MTCNN weights out of a downloaded facenet-pytorch wheel"
    )
    install.add_argument("wheel", type=Path, help="facenet_pytorch-2.6.0-py3-none-any.whl")
    install.add_argument("--dest", type=Path, default=None, help=f"default: {default_dir()}")
    args = parser.parse_args(argv)
    try:
        dest = install_from_wheel(args.wheel, args.dest)
    except McaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"MTCNN weights installed in {dest} ({', '.join(f'{n}.pt' for n in NETS)})")
    if args.dest is not None and Path(args.dest).resolve() != default_dir().resolve():
        print(f"point MCACLIP_MTCNN={dest} at them, or pass the folder to MTCNN.from_dir")
    return 0


if __name__ == "__main__":
    sys.exit(main())
