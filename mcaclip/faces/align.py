"""Face alignment: FFHQ's oriented crop from five landmarks, warping to it and pasting back.

An :class:`Alignment` is a similarity transform from the crop's pixels to the photo's, so an
edited crop can be put back where it came from. Coordinates are pixels with pixel centres at
integers (pixel ``[row i, col j]`` is at ``x = j, y = i``), the convention of dlib's and
MTCNN's landmarks; a ``size`` crop spans ``[-0.5, size - 0.5]``.

FFHQ (``recreate_aligned_images`` in NVlabs/ffhq-dataset) works from dlib's 68 points; its
geometry needs only the eye centres (the mean of each eye's six points) and the mouth corners
(points 48 and 54), which five-point detectors give directly. Its pipeline rounds the crop to
whole pixels and shrinks by whole factors; we apply the same quad exactly, as one affine map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from mcaclip.errors import McaError, ShapeError

FORMAT = "mcaclip-alignment"


class AlignmentError(McaError, ValueError):
    """Landmarks that define no crop, or a malformed stored alignment."""


def _rot90(v: np.ndarray) -> np.ndarray:
    """(x, y) -> (-y, x): a quarter turn (clockwise on screen, where y points down)."""
    return np.array([-v[1], v[0]])


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 2:
        raise ShapeError(f"points must be [..., 2] (x, y), got {points.shape}")
    return points @ matrix[:2, :2].T + matrix[:2, 2]


@dataclass(frozen=True, eq=False)
class Alignment:
    """A ``size`` x ``size`` crop of a photo: ``matrix`` [3, 3] float64 maps crop pixel
    coordinates (x, y, 1) to photo pixel coordinates."""

    size: int
    matrix: np.ndarray

    def __post_init__(self):
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.allclose(matrix[2], [0, 0, 1]):
            raise AlignmentError(f"an alignment matrix is affine [3, 3], got {self.matrix!r}")
        if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
            raise AlignmentError("the alignment matrix is singular or not finite")
        if int(self.size) != self.size or self.size < 1:
            raise AlignmentError(f"crop size must be a positive integer, got {self.size!r}")
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "size", int(self.size))

    @property
    def scale(self) -> float:
        """Photo pixels per crop pixel."""
        return math.sqrt(abs(np.linalg.det(self.matrix[:2, :2])))

    @property
    def angle(self) -> float:
        """Rotation of the crop's x axis in the photo, degrees (clockwise on screen)."""
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    def inverse(self) -> np.ndarray:
        """[3, 3]: photo pixel coordinates -> crop pixel coordinates."""
        return np.linalg.inv(self.matrix)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Crop points [..., 2] (x, y) -> photo points [..., 2]."""
        return _apply(self.matrix, points)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo points [..., 2] (x, y) -> crop points [..., 2]."""
        return _apply(self.inverse(), points)

    def quad(self) -> np.ndarray:
        """The crop's outer corners in the photo [4, 2]: top-left, bottom-left, bottom-right,
        top-right (FFHQ's quad order)."""
        lo, hi = -0.5, self.size - 0.5
        return self.to_photo(np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored beside outputs."""
        return {"format": FORMAT, "version": 1, "size": self.size, "matrix": self.matrix.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alignment:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AlignmentError(f"not a stored alignment (expected format {FORMAT!r})")
        if int(data.get("version", 0)) > 1:
            raise AlignmentError(f"alignment version {data['version']} is newer; upgrade mcaclip")
        try:
            return cls(size=data["size"], matrix=np.asarray(data["matrix"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AlignmentError):
                raise
            raise AlignmentError(f"malformed stored alignment ({exc!r})") from None


def _points(landmarks: np.ndarray, rows: int | None = None) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or (rows is not None and len(points) != rows):
        want = f"[{rows}, 2]" if rows is not None else "[K, 2]"
        raise ShapeError(f"landmarks must be {want} (x, y), got {points.shape}")
    if not np.isfinite(points).all():
        raise AlignmentError("landmarks contain NaN or infinite values")
    return points


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """FFHQ's oriented crop square [4, 2] (top-left, bottom-left, bottom-right, top-right)
    from five landmarks [5, 2]: left eye, right eye, nose, mouth left, mouth right (left and
    right as seen in the picture; the nose is not used)."""
    lm = _points(landmarks, 5)
    eye_left, eye_right, mouth_left, mouth_right = lm[0], lm[1], lm[3], lm[4]
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    # The crop's x axis: the eye line, tilted by the eye-mouth line turned a quarter back.
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = np.hypot(*x)
    if norm < 1e-9:
        raise AlignmentError("the landmarks coincide: no face orientation to align to")
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) / norm
    y = _rot90(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_alignment(quad: np.ndarray, size: int) -> Alignment:
    """The ``size`` crop whose outer corners are ``quad`` [4, 2] (top-left, bottom-left,
    bottom-right, top-right; a parallelogram)."""
    q = _points(quad, 4)
    x_edge, y_edge = (q[3] - q[0]) / size, (q[1] - q[0]) / size  # per crop pixel
    origin = q[0] + 0.5 * (x_edge + y_edge)  # the centre of crop pixel (0, 0)
    return Alignment(size, np.array([[*x_edge, 0.0], [*y_edge, 0.0], [*origin, 1.0]]).T)


def ffhq_alignment(landmarks: np.ndarray, size: int = 1024) -> Alignment:
    """FFHQ's ``size`` x ``size`` crop from five landmarks [5, 2] (see :func:`ffhq_quad`)."""
    return quad_alignment(ffhq_quad(landmarks), size)


def template_alignment(landmarks: np.ndarray, template: np.ndarray, size: int) -> Alignment:
    """The crop whose similarity transform puts ``template`` [K, 2] (crop pixels) closest, in
    least squares, onto ``landmarks`` [K, 2] (photo pixels): Umeyama's estimate, rotation and
    uniform scale only (no reflection)."""
    dst, src = _points(landmarks), _points(template)
    if len(src) != len(dst) or len(src) < 2:
        raise ShapeError(
            f"need as many landmarks as template points (>= 2): {dst.shape}, {src.shape}"
        )
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(s)
    if var_s < 1e-12:
        raise AlignmentError("the template points coincide: no similarity is defined")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(s))
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ flip @ vt
    scale = float((sigma * np.diag(flip)).sum() / var_s)
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = mu_d - scale * rotation @ mu_s
    return Alignment(size, matrix)


# --- sampling ----------------------------------------------------------------------------------


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into [0, n) without repeating the edge (numpy's "reflect")."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _sample(
    src: np.ndarray, out_to_src: np.ndarray, width: int, height: int, pad: str
) -> np.ndarray:
    """``src`` [h, w, 3] uint8 or [h, w] float32 seen through ``out_to_src`` (pixel
    coordinates of an out picture -> of ``src``), bilinear, as a [height, width(, 3)] picture.
    Only the part of ``src`` under the output is read; beyond its edges it is reflected
    (``pad="reflect"``) or zero. Where the output is more than twice smaller than ``src``,
    that part is first shrunk with an antialiasing filter to about the output's scale."""
    lo, hi = -0.5, np.array([width, height]) - 0.5
    corners = _apply(out_to_src, np.array([[lo, lo], [lo, hi[1]], [hi[0], lo], hi]))
    shrink = math.sqrt(abs(np.linalg.det(out_to_src[:2, :2])))
    margin = 2 + (math.ceil(3 * shrink) if shrink > 2 else 0)  # bilinear / Lanczos support
    x0, y0 = np.floor(corners.min(0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(0)).astype(int) + margin
    rows, cols = np.arange(y0, y1 + 1), np.arange(x0, x1 + 1)
    if pad == "reflect":
        part = src[np.ix_(_reflect(rows, src.shape[0]), _reflect(cols, src.shape[1]))]
    else:
        inside_r = (rows >= 0) & (rows < src.shape[0])
        inside_c = (cols >= 0) & (cols < src.shape[1])
        part = np.zeros((len(rows), len(cols), *src.shape[2:]), dtype=src.dtype)
        part[np.ix_(inside_r, inside_c)] = src[np.ix_(rows[inside_r], cols[inside_c])]
    matrix = _translation(-x0, -y0) @ out_to_src
    image = Image.fromarray(part)
    if shrink > 2:
        size = (max(1, round(image.width / shrink)), max(1, round(image.height / shrink)))
        fx, fy = image.width / size[0], image.height / size[1]
        # Resizing maps pixel edges onto edges: a centre x goes to (x + 0.5) / fx - 0.5.
        matrix = (
            np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]]) @ matrix
        )
        filt = Image.Resampling.LANCZOS if image.mode == "RGB" else Image.Resampling.BILINEAR
        image = image.resize(size, filt)
    edges = _translation(0.5, 0.5) @ matrix @ _translation(-0.5, -0.5)  # PIL works on edges
    data = tuple(edges[:2].ravel())
    out = image.transform((width, height), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    return np.asarray(out)


def _check_photo(photo: np.ndarray, name: str = "photo") -> None:
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ShapeError(f"{name} must be [H, W, 3] uint8 RGB, got {photo.shape} {photo.dtype}")


def warp_to_crop(photo: np.ndarray, alignment: Alignment) -> np.ndarray:
    """The aligned crop [size, size, 3] uint8 of ``photo`` [H, W, 3] uint8: bilinear, with an
    antialiasing pre-shrink where the crop is more than twice smaller than the face. Where the
    crop leaves the photo, the photo is mirrored (FFHQ mirrors too, then blurs the mirrored
    band; plain mirroring is enough for the networks here). Memory is bounded by the crop's
    footprint in the photo, not by the photo's size."""
    _check_photo(photo)
    size = alignment.size
    return _sample(photo, alignment.matrix, size, size, pad="reflect")


def _gaussian_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a [h, w] float32 mask, mirrored at its edges."""
    radius = min(math.ceil(3 * sigma), min(mask.shape) - 1)
    if sigma < 0.3 or radius < 1:
        return mask
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    x = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[0, 0].numpy()


def border_window(size: int, feather: float) -> np.ndarray:
    """[size, size] float32: 1 inside, easing to 0 at the crop's edge over ``3 * feather``
    pixels (a smoothstep), so that a pasted crop leaves no seam."""
    ramp = max(3.0 * feather, 1.0)
    t = np.clip((np.arange(size) + 0.5) / ramp, 0.0, 1.0)
    t = np.minimum(t, t[::-1])
    w = t * t * (3 - 2 * t)
    return np.outer(w, w).astype(np.float32)


def paste_back(
    photo: np.ndarray,
    crop: np.ndarray,
    alignment: Alignment,
    mask: np.ndarray | None = None,
    feather: float | None = None,
) -> np.ndarray:
    """``photo`` [H, W, 3] uint8 with ``crop`` [size, size, 3] uint8 (typically an edited
    :func:`warp_to_crop`) blended back in place, as a new [H, W, 3] uint8 array.

    ``mask`` [size, size] in [0, 1] says where the crop replaces the photo (default: the whole
    crop). ``feather`` (crop pixels, default ``size / 64``) softens it: a given mask is blurred
    by a Gaussian of that sigma, and every mask eases to 0 at the crop's edges
    (:func:`border_window`); in the photo the feathering scales with the face. Only the crop's
    footprint in the photo is computed; every pixel outside it is returned unchanged."""
    _check_photo(photo)
    _check_photo(crop, "crop")
    size = alignment.size
    if crop.shape[:2] != (size, size):
        raise ShapeError(f"crop must be [{size}, {size}, 3] for this alignment, got {crop.shape}")
    feather = size / 64 if feather is None else float(feather)
    weight = border_window(size, feather)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (size, size):
            raise ShapeError(f"mask must be [{size}, {size}], got {mask.shape}")
        weight *= np.clip(_gaussian_blur(np.clip(mask, 0.0, 1.0), feather), 0.0, 1.0)
    quad = alignment.quad()
    height, width = photo.shape[:2]
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(quad[:, 1].max())) + 2, height)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    region_to_crop = alignment.inverse() @ _translation(x0, y0)
    face = _sample(crop, region_to_crop, x1 - x0, y1 - y0, pad="reflect")
    alpha = _sample(weight, region_to_crop, x1 - x0, y1 - y0, pad="zero")
    # An 8-bit alpha is finer than the uint8 output needs, and compositing at it keeps the
    # pixels where it is 0 exactly as they were, at a fraction of float blending's memory.
    alpha8 = Image.fromarray(np.rint(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8))
    region = Image.fromarray(out[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = np.asarray(Image.composite(Image.fromarray(face), region, alpha8))
    return out
