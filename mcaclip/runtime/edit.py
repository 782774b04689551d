"""Edit latents into a directory of PNGs: deterministic names, skip what is done, atomic writes.

Files per latent i (5 digits) and prompt slug s::

    {i:05d}_original.png        G(w)
    {i:05d}_{s}.png             the edit
    {i:05d}_{s}_mask.png        mean of the per-layer masks (with save_masks or grid)
    {i:05d}_{s}_masks.npz       the per-layer masks mask_00.. [1, H_l, W_l] (with save_masks)
    grid.png                    rows: latents; columns: original, edits, masks (with grid)

(``.jpg`` instead of ``.png`` with ``PictureFormat("jpg")``.)

Writing overlaps computing: background threads encode and write one batch's files while the
device computes the next (:class:`mcaclip.fileio.WriterPool`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcaclip.fileio import WriterPool
from mcaclip.runtime.io import (
    InputError,
    PictureFormat,
    ensure_writable,
    grid,
    load_png,
    mask_picture,
    prompt_slugs,
    save_npz,
)
from mcaclip.runtime.pipeline import EditPipeline


@dataclass
class EditSummary:
    latents: int
    prompts: int
    written: int  # latents computed now
    skipped: int  # latents whose files were all there
    grid: Path | None


# the grid's faces are at least this many pixels (small ones enlarged, nearest-neighbour)
GRID_TILE = 192


def output_files(
    index: int, slugs: list[str], mask_png: bool, mask_npz: bool, suffix: str = ".png"
) -> list[str]:
    names = [f"{index:05d}_original{suffix}"]
    for s in slugs:
        names.append(f"{index:05d}_{s}{suffix}")
        if mask_png:
            names.append(f"{index:05d}_{s}_mask{suffix}")
        if mask_npz:
            names.append(f"{index:05d}_{s}_masks.npz")
    return names


def default_writers() -> int:
    """Background picture writers: one per CPU this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def writer_threads(writers: int | None) -> int:
    """``--writers`` checked, None resolved to :func:`default_writers`."""
    if writers is None:
        return default_writers()
    if writers < 0:
        raise InputError(f"--writers {writers}: use 0 (write in the main thread) or more")
    return writers


def edit_to_dir(
    pipeline: EditPipeline,
    w: np.ndarray,
    prompts: list[str],
    out: Path,
    batch_size: int = 4,
    save_masks: bool = False,
    make_grid: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    picture: PictureFormat | None = None,
    writers: int | None = None,
) -> EditSummary:
    """Edit every latent with every prompt into ``out``; ``progress(n)`` after each batch.

    The pictures come from the backend as uint8 (converted on the device by torch/TensorRT);
    ``writers`` threads (default :func:`default_writers`; 0: none) encode and write them while
    the next batch is computed, as ``picture`` says (default: level-1 PNG); the queue holds
    two batches' files, or two per writer if that is more."""
    picture = picture or PictureFormat()
    threads = writer_threads(writers)
    pipeline.check_request(w, len(prompts), batch_size)
    pipeline.embed(prompts)  # a bad prompt fails here, before anything is written
    ensure_writable(out)
    slugs = prompt_slugs(prompts)
    ext = picture.suffix
    has_masks = "mask_00" in {
        t["name"] for t in pipeline.bundle.graphs["masked_generator"]["outputs"]
    }
    mask_npz = save_masks and has_masks
    mask_png = has_masks and (save_masks or make_grid)  # the grid shows the masks
    todo = [
        i
        for i in range(len(w))
        if overwrite
        or not all((out / f).is_file() for f in output_files(i, slugs, mask_png, mask_npz, ext))
    ]
    files_per_batch = batch_size * len(output_files(0, slugs, mask_png, mask_npz))
    size = pipeline.size

    def write_mask_picture(path: Path, masks: list[np.ndarray]) -> None:
        picture.save(path, mask_picture(masks, size))

    def write_npz(path: Path, masks: list[np.ndarray]) -> None:
        save_npz(path, {f"mask_{k:02d}": m for k, m in enumerate(masks)})

    # two batches queued at most (memory), and enough for every writer to have work
    with WriterPool(threads, max_pending=max(2 * files_per_batch, 2 * threads)) as pool:
        batches = (
            pipeline.edit(w[todo], prompts, batch_size, masks=mask_png, pixels=True) if todo else ()
        )
        for batch in batches:
            for row, j in enumerate(batch.indices):
                i = todo[j]
                pool.submit(out / f"{i:05d}_original{ext}", picture.save, batch.originals[row])
                for p, slug in enumerate(slugs):
                    pool.submit(out / f"{i:05d}_{slug}{ext}", picture.save, batch.images[row, p])
                    masks = [m[row, p] for m in batch.masks]
                    if mask_png:
                        pool.submit(out / f"{i:05d}_{slug}_mask{ext}", write_mask_picture, masks)
                    if mask_npz:
                        pool.submit(out / f"{i:05d}_{slug}_masks.npz", write_npz, masks)
            if progress:
                progress(len(batch.indices))
    grid_path = None
    if make_grid:
        rows = []
        for i in range(len(w)):
            row = [load_png(out / f"{i:05d}_original{ext}")]
            row += [load_png(out / f"{i:05d}_{s}{ext}") for s in slugs]
            if mask_png:
                row += [load_png(out / f"{i:05d}_{s}_mask{ext}") for s in slugs]
            rows.append(row)
        grid_path = out / f"grid{ext}"
        picture.save(grid_path, grid(rows, min_tile=GRID_TILE))
    return EditSummary(len(w), len(prompts), len(todo), len(w) - len(todo), grid_path)
