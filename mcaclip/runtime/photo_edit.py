"""Edit photos: find each face, align it, invert it with the bundle's encoder, edit it, and
optionally paste the edit back into the photo.

Files per picture (stem ``s`` from :func:`mcaclip.runtime.photos.output_stems`; the second and
later faces of a picture, with ``all_faces``, are ``s-face2``, ``s-face3``, ...) and prompt
slug ``p``::

    s_aligned.png       the aligned face, at the generator's size
    s_inversion.png     G(E(aligned)): what the edit starts from
    s_p.png             the edit
    s_p_pasted.png      with paste_back: the edit blended into the whole photo
    s.json              faces found (box, landmarks, alignment): written last, it marks the
                        picture done (a re-run skips it)
    failures.json       pictures skipped and why (unreadable, no face, ...)

Paste-back keeps the photo wherever the edit did not change the inversion: the mask is where
edit and inversion differ (dilated, feathered), so the inversion's own error never shows, and
the photo's pixels outside the face are untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mcaclip.errors import McaError
from mcaclip.faces.align import paste_back, warp_to_crop
from mcaclip.faces.finders import FaceFinder, finder_for_preset, make_finder
from mcaclip.faces.mtcnn import pick_faces
from mcaclip.fileio import atomic_write
from mcaclip.runtime.io import PictureFormat, ensure_writable, prompt_slugs
from mcaclip.runtime.photos import FailureLog, output_stems, read_photo
from mcaclip.runtime.pipeline import EditPipeline

log = logging.getLogger(__name__)
STAGES = ("read", "find", "align", "encode", "edit", "paste", "write")
CHANGED = 0.06  # an edit pixel differs from the inversion by this much (of 255) to be pasted


@dataclass
class PhotoSummary:
    pictures: int
    faces: int  # faces edited now
    written: int  # pictures done now
    skipped: int  # pictures done by an earlier run
    failed: int  # pictures skipped (see failures.json)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (STAGES)


@dataclass
class _Pending:
    picture: Path
    name: str  # file stem of this face
    crop: np.ndarray  # [S, S, 3] uint8 aligned face at the generator's size
    alignment: object
    photo: np.ndarray | None  # kept for paste-back


def bundle_finder(pipeline: EditPipeline) -> FaceFinder:
    """The face finder the bundle names (``manifest.photos.finder``), else its preset's."""
    kind = (pipeline.bundle.manifest.get("photos") or {}).get("finder")
    return make_finder(kind or finder_for_preset(pipeline.bundle.preset.get("name", "")))


def min_face(pipeline: EditPipeline) -> int:
    """Smallest face box (px) worth inverting: an eighth of the generator's side, at least 16."""
    return max(16, pipeline.size // 8)


class _Timer:
    """``with timer("find"):`` adds the block's seconds to ``timer.seconds["find"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0


def encoder_input(crops: np.ndarray, size: int) -> np.ndarray:
    """Aligned faces [N, S, S, 3] uint8 -> the encoder's input [N, 3, size, size] in [-1, 1]."""
    if crops.shape[1] != size:
        crops = np.stack(
            [np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in crops]
        )
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32) / 127.5 - 1


def changed_region(edit: np.ndarray, inversion: np.ndarray) -> np.ndarray:
    """[S, S] float in [0, 1]: where ``edit`` differs from ``inversion`` (both [S, S, 3]
    uint8), grown by a few pixels so that the blend's edge falls outside the change."""
    diff = np.abs(edit.astype(np.int16) - inversion.astype(np.int16)).mean(-1) / 255.0
    mask = np.clip(diff / CHANGED, 0, 1)
    grow = max(3, edit.shape[0] // 64) | 1  # odd
    grown = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(grow))
    return np.asarray(grown, np.float32) / 255.0


def find_faces(
    finder: FaceFinder, photo: np.ndarray, size: int, all_faces: bool, min_size: int, timer
) -> list[tuple[object, np.ndarray, object]]:
    """(face, aligned crop [size, size, 3], alignment) for the face (or every face) to edit."""
    with timer("find"):
        faces = pick_faces(finder.find(photo), all_faces=all_faces, min_size=min_size)
    out = []
    with timer("align"):
        for face in faces:
            alignment = finder.alignment(face, size)
            out.append((face, warp_to_crop(photo, alignment), alignment))
    return out


def _photos_with_faces(
    pictures: list[Path],
    pipeline: EditPipeline,
    finder: FaceFinder,
    all_faces: bool,
    timer: _Timer,
    failures: FailureLog,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[Path, np.ndarray, list]]:
    """(picture, photo, :func:`find_faces`) for each picture with a usable face; one that
    cannot be read or has none is recorded in ``failures`` (and counted by ``progress``)."""
    for path in pictures:
        try:
            with timer("read"):
                photo = read_photo(path)
            found = find_faces(finder, photo, pipeline.size, all_faces, min_face(pipeline), timer)
        except McaError as exc:  # unreadable, no face, face too small: this picture only
            failures.add(path, exc)
            log.warning("%s: skipped: %s", path, exc)
            if progress:
                progress(1)
            continue
        yield path, photo, found


def _face_record(face, alignment) -> dict:
    return {
        "box": [round(float(v), 2) for v in face.box],
        "score": round(float(face.score), 4),
        "landmarks": np.round(face.landmarks, 2).tolist(),
        "alignment": alignment.to_dict(),
    }


def edit_photos(
    pipeline: EditPipeline,
    pictures: list[Path],
    prompts: list[str],
    out: Path,
    batch_size: int = 4,
    paste: bool = False,
    all_faces: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    picture: PictureFormat | None = None,
    finder: FaceFinder | None = None,
) -> PhotoSummary:
    """Edit the face (or ``all_faces``) of every picture with every prompt into ``out`` (see
    the module docstring); ``progress(1)`` after each picture. A picture that cannot be read
    or has no usable face is skipped and recorded in ``out/failures.json``."""
    picture = picture or PictureFormat()
    ext = picture.suffix
    enc_size = pipeline.encoder_size  # no encoder: refused here
    pipeline.check_batch(batch_size, len(prompts))
    e = pipeline.embed(prompts)  # a bad prompt fails before anything is written
    ensure_writable(out)
    slugs = prompt_slugs(prompts)
    finder = finder or bundle_finder(pipeline)
    timer = _Timer()
    failures = FailureLog()
    stems = output_stems(pictures)
    pending: list[_Pending] = []
    faces_left: dict[Path, int] = {}
    records: dict[Path, list[dict]] = {}
    counts = {"faces": 0, "written": 0, "skipped": 0}

    def flush() -> None:
        if not pending:
            return
        with timer("encode"):
            w = pipeline.encode(encoder_input(np.stack([p.crop for p in pending]), enc_size))
        with timer("edit"):
            images, inversions, _ = pipeline.edit_batch(w, e, masks=False, pixels=True)
        for row, item in enumerate(pending):
            with timer("write"):
                picture.save(out / f"{item.name}_aligned{ext}", item.crop)
                picture.save(out / f"{item.name}_inversion{ext}", inversions[row])
                for k, slug in enumerate(slugs):
                    picture.save(out / f"{item.name}_{slug}{ext}", images[row, k])
            if paste:
                for k, slug in enumerate(slugs):
                    with timer("paste"):
                        region = changed_region(images[row, k], inversions[row])
                        pasted = paste_back(item.photo, images[row, k], item.alignment, region)
                    with timer("write"):
                        picture.save(out / f"{item.name}_{slug}_pasted{ext}", pasted)
            counts["faces"] += 1
            faces_left[item.picture] -= 1
            if faces_left[item.picture] == 0:  # every face written: the picture is done
                marker = out / f"{stems[item.picture]}.json"
                record = {"picture": str(item.picture), "faces": records.pop(item.picture)}
                atomic_write(
                    marker, lambda t, r=record: Path(t).write_text(json.dumps(r, indent=1))
                )
                counts["written"] += 1
                if progress:
                    progress(1)
        pending.clear()

    todo = [p for p in pictures if overwrite or not (out / f"{stems[p]}.json").is_file()]
    counts["skipped"] = len(pictures) - len(todo)
    if progress and counts["skipped"]:
        progress(counts["skipped"])
    for path, photo, found in _photos_with_faces(
        todo, pipeline, finder, all_faces, timer, failures, progress
    ):
        stem = stems[path]
        faces_left[path] = len(found)
        records[path] = [_face_record(face, al) for face, _, al in found]
        for k, (_, crop, alignment) in enumerate(found):
            name = stem if k == 0 else f"{stem}-face{k + 1}"
            pending.append(_Pending(path, name, crop, alignment, photo if paste else None))
            if len(pending) == batch_size:
                flush()
    flush()
    failures.write(out)
    return PhotoSummary(
        len(pictures),
        counts["faces"],
        counts["written"],
        counts["skipped"],
        len(failures),
        {s: round(timer.seconds.get(s, 0.0), 4) for s in STAGES},
    )


def invert_photos(
    pipeline: EditPipeline,
    pictures: list[Path],
    out: Path,
    all_faces: bool = False,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    finder: FaceFinder | None = None,
) -> tuple[int, FailureLog]:
    """W+ latents of the face (or every face) of each picture, written to ``out`` (.pt, a
    tensor [N, L, D] as e4e's ``latents.pt``, for ``mcarun edit --latents``) with
    ``out.json`` beside it naming each row's picture, face box and alignment. Returns the
    number of faces and the failures (also written to ``out.json``)."""
    import torch

    if out.suffix not in (".pt", ".npy"):
        raise McaError(f"--out {out}: write latents to a .pt (or .npy) file")
    enc_size = pipeline.encoder_size
    finder = finder or bundle_finder(pipeline)
    timer = _Timer()
    failures = FailureLog()
    rows, crops, latents = [], [], []

    def flush() -> None:
        if crops:
            latents.append(pipeline.encode(encoder_input(np.stack(crops), enc_size)))
            crops.clear()

    for path, _, found in _photos_with_faces(
        pictures, pipeline, finder, all_faces, timer, failures, progress
    ):
        for k, (face, crop, alignment) in enumerate(found):
            rows.append({"picture": str(path), "face": k + 1, **_face_record(face, alignment)})
            crops.append(crop)
            if len(crops) == batch_size:
                flush()
        if progress:
            progress(1)
    flush()
    if not rows:
        raise McaError(f"no face found in any of the {len(pictures)} pictures; nothing written")
    w = np.concatenate(latents).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pt":
        atomic_write(out, lambda t: torch.save(torch.from_numpy(w), t))
    else:
        atomic_write(out, lambda t: _save_npy(t, w))
    index = {
        "latents": out.name,
        "shape": list(w.shape),
        "rows": rows,
        "failures": [{"picture": str(p), "reason": r} for p, r in failures.items()],
    }
    atomic_write(
        out.with_suffix(out.suffix + ".json"),
        lambda t: Path(t).write_text(json.dumps(index, indent=1)),
    )
    return len(rows), failures


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
