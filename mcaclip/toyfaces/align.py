"""The toy world's face finder: its parser finds the faces in a photo, and each crop puts the
face where the toy renderer draws its faces.

Two passes. The whole photo, resized to the parser's 64 px, gives the face regions (skin,
eyes, lips, beard and glasses pixels; one connected region per face). Each region's square,
twice the region's side (the renderer's face fills half of its picture), is parsed again at
64 px and registered against the renderer's mean face (the share of faces whose pixel is face,
not hair or background, over 128 sampled faces): the scale and shift whose template correlates
best with the parsed face mask. The renderer's eye and lip positions, carried through that
registration into the photo, are the face's landmarks, and the crop maps them back
(:func:`mcaclip.faces.align.template_alignment`). Whole regions, not the small parts, are
matched: the parser misses an eye or the lips under a beard on some faces, never the face.
Toy faces are upright: the registration searches scale and shift, not rotation.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from mcaclip.faces.align import Alignment, quad_alignment, template_alignment, warp_to_crop
from mcaclip.faces.mtcnn import Face
from mcaclip.toyfaces.attributes import LABELS
from mcaclip.toyfaces.render import EYES, FACE_GEOMETRY

WORK = 64  # the parser's resolution
FACE_LABELS = tuple(LABELS[k] for k in ("skin", "eyes", "lips", "beard", "glasses"))
SCALES = np.geomspace(0.6, 1.6, 31)  # the registration's search: scale of the mean face
SHIFT = 16  # and shift, pixels of the 64 px crop, either way
MIN_REGION = 12  # pixels of the 64 px first pass: smaller regions are not faces
_CY = float(np.mean([g[0] for g in FACE_GEOMETRY.values()]))
_LIPS_Y = float(np.mean([g[0] + g[2] * 0.42 for g in FACE_GEOMETRY.values()]))
# where the renderer draws the left eye, the right eye and the lips' centre, in normalised
# units (x right, y down, [-1, 1]); the lips' height is the mean over face shapes
TEMPLATE = np.array([[EYES[0][0], EYES[0][1]], [EYES[1][0], EYES[1][1]], [0.0, _LIPS_Y]])
FACE_HALF_SIDE = 0.5  # the renderer's face region spans about [-0.5, 0.5] across


def to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """Normalised renderer coordinates -> pixel centres of a ``size`` picture."""
    return (np.asarray(points, np.float64) + 1) / 2 * size - 0.5


def _inside(point: np.ndarray, face: Face) -> bool:
    """Whether ``point`` (photo px) falls in the crop square a found ``face`` is framed by."""
    crop = template_alignment(face.landmarks, to_pixels(TEMPLATE, WORK), WORK)
    x, y = crop.to_crop(point[None])[0]
    return bool(-0.5 <= x <= WORK - 0.5 and -0.5 <= y <= WORK - 0.5)


def _square(cx: float, cy: float, half: float) -> np.ndarray:
    """Corners (top-left, bottom-left, bottom-right, top-right) of an upright square."""
    return np.array(
        [
            [cx - half, cy - half],
            [cx - half, cy + half],
            [cx + half, cy + half],
            [cx + half, cy - half],
        ]
    )


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected regions of ``mask`` [h, w] bool, as arrays of (row, col), largest first."""
    seen = np.zeros_like(mask, bool)
    regions = []
    h, w = mask.shape
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        queue, cells = deque([(r0, c0)]), []
        seen[r0, c0] = True
        while queue:
            r, c = queue.popleft()
            cells.append((r, c))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        regions.append(np.array(cells))
    return sorted(regions, key=len, reverse=True)


class ToyFaceFinder:
    """Finds toy faces with the toy parser (from the world's assets unless given)."""

    def __init__(self, parser: torch.nn.Module | None = None):
        if parser is None:
            from mcaclip.toyfaces.world import load_parser

            parser = load_parser()
        self.parser = parser.eval()

    @torch.no_grad()
    def _labels(self, photo: np.ndarray) -> np.ndarray:
        """Parser labels [64, 64] of ``photo`` [H, W, 3] uint8 squeezed to 64 x 64."""
        x = torch.from_numpy(np.array(photo, np.float32)).permute(2, 0, 1)[None]
        x = x / 127.5 - 1
        x = F.interpolate(x, size=(WORK, WORK), mode="bilinear", antialias=True)
        return self.parser(x).argmax(1)[0].numpy()

    def find(self, photo: np.ndarray) -> list[Face]:
        h, w = photo.shape[:2]
        side = max(h, w)  # padded to a square by its edges: the parser sees no squashed face
        top, left = (side - h) // 2, (side - w) // 2
        square = np.pad(photo, ((top, side - h - top), (left, side - w - left), (0, 0)), "edge")
        face_px = np.isin(self._labels(square), FACE_LABELS)
        faces: list[Face] = []
        cell = side / WORK
        regions = _components(face_px)
        for region in regions:
            # parser noise and a face's fragments: small regions, or inside a face found
            if len(region) < max(MIN_REGION, len(regions[0]) // 4):
                break
            (r0, c0), (r1, c1) = region.min(0), region.max(0) + 1
            box = (c0 * cell - left - 0.5, r0 * cell - top - 0.5)
            box = (*box, c1 * cell - left - 0.5, r1 * cell - top - 0.5)
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            if any(_inside(centre, f) for f in faces):
                continue
            faces.append(self._refine(photo, box, len(region) / face_px.size))
        return faces

    def _refine(self, photo: np.ndarray, box, share: float, rounds: int = 3) -> Face:
        """Register the mean face on the parsed square around ``box``, then again on the crop
        that registration gives (at the face's full 64 px, not half): landmarks in photo px."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0)  # the square's half side: twice the region's side
        # the face's window of the photo, its edge pixels beyond the photo (a reflection
        # would draw mirrored faces there), wide enough for registration's moves
        window, (ox, oy) = _edge_window(photo, cx, cy, 2 * half + 2)
        crop = quad_alignment(_square(cx - ox, cy - oy, half), WORK)
        template = to_pixels(TEMPLATE, WORK)
        centre = (WORK - 1) / 2
        for _ in range(rounds):
            scale, dx, dy = register(self._labels(warp_to_crop(window, crop)))
            points = crop.to_photo(centre + scale * (template - centre) + np.array([dx, dy]))
            crop = template_alignment(points, template, WORK)
            if abs(scale - 1) < 0.02 and dx == dy == 0:
                break
        landmarks = points + np.array([ox, oy])
        return Face(box=tuple(float(v) for v in box), score=float(share), landmarks=landmarks)

    def alignment(self, face: Face, size: int) -> Alignment:
        return template_alignment(face.landmarks, to_pixels(TEMPLATE, size), size)


_MEAN_FACE: torch.Tensor | None = None


def _edge_window(photo: np.ndarray, cx: float, cy: float, r: float):
    """The photo's pixels within ``r`` of (cx, cy), its edge pixels repeated beyond the photo
    (as ``np.pad(..., "edge")``, without padding the whole photo); and the window's origin
    (x, y) in photo pixels."""
    h, w = photo.shape[:2]
    x0, y0 = int(np.floor(cx - r)), int(np.floor(cy - r))
    rows = np.clip(np.arange(y0, int(np.ceil(cy + r)) + 1), 0, h - 1)
    cols = np.clip(np.arange(x0, int(np.ceil(cx + r)) + 1), 0, w - 1)
    return photo[rows[:, None], cols[None, :]], (x0, y0)


def _classes(labels: np.ndarray) -> np.ndarray:
    """Parser labels [h, w] -> one-hot [3, h, w]: background, hair, face (FACE_LABELS)."""
    face = np.isin(labels, FACE_LABELS)
    hair = labels == LABELS["hair"]
    return np.stack([~face & ~hair, hair, face]).astype(np.float32)


def mean_face() -> torch.Tensor:
    """[3, 64, 64]: the share of rendered faces whose pixel is background, hair or face, over
    128 faces sampled with a fixed seed (computed once per process, under a second)."""
    global _MEAN_FACE
    if _MEAN_FACE is None:
        from mcaclip.toyfaces.data import sample_faces
        from mcaclip.toyfaces.render import render

        masks = [_classes(render(f, WORK).segmentation) for f in sample_faces(128, 7)]
        _MEAN_FACE = torch.from_numpy(np.mean(masks, axis=0).astype(np.float32))
    return _MEAN_FACE


@torch.no_grad()
def register(labels: np.ndarray) -> tuple[float, float, float]:
    """(scale, dx, dy) of the mean face that best explains the parsed ``labels`` [64, 64]: the
    template, scaled about the centre and shifted, of highest log-likelihood of the labels'
    classes (background, hair, face) under it. Outside the crop counts as background."""
    target = torch.from_numpy(_classes(labels))[None]
    target = F.pad(target, (SHIFT,) * 4)
    target[:, 0, :SHIFT] = target[:, 0, -SHIFT:] = 1.0
    target[:, 0, :, :SHIFT] = target[:, 0, :, -SHIFT:] = 1.0
    background = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    kernels = []
    for s in SCALES:  # every scale's template as one output channel of one convolution
        theta = torch.tensor([[[1 / s, 0, 0], [0, 1 / s, 0]]], dtype=torch.float32)
        grid = F.affine_grid(theta, (1, 3, WORK, WORK), align_corners=False)
        # outside the scaled-down template: background
        scaled = F.grid_sample((mean_face() - background)[None], grid, align_corners=False)
        kernels.append((scaled[0] + background).clamp(0.02, 1.0).log())
    score = F.conv2d(target, torch.stack(kernels))[0]  # [scales, 2 SHIFT + 1, 2 SHIFT + 1]
    k = int(score.argmax())
    s, rest = divmod(k, score.shape[1] * score.shape[2])
    dy, dx = divmod(rest, score.shape[2])
    best = (float(score.flatten()[k]), float(SCALES[s]), float(dx - SHIFT), float(dy - SHIFT))
    return best[1:]
