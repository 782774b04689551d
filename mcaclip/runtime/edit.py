"""Edit latents into a directory of PNGs: deterministic names, skip what is done, atomic writes.

Files per latent i (5 digits) and prompt slug s::

    {i:05d}_original.png        G(w)
    {i:05d}_{s}.png             the edit
    {i:05d}_{s}_mask.png        mean of the per-layer masks (with save_masks or grid)
    {i:05d}_{s}_masks.npz       the per-layer masks mask_00.. [1, H_l, W_l] (with save_masks)
    grid.png                    rows: latents; columns: original, edits, masks (with grid)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcaclip.runtime.io import (
    ensure_writable,
    grid,
    load_png,
    mask_picture,
    prompt_slugs,
    save_npz,
    save_png,
    to_uint8,
)
from mcaclip.runtime.pipeline import EditPipeline


@dataclass
class EditSummary:
    latents: int
    prompts: int
    written: int  # latents computed now
    skipped: int  # latents whose files were all there
    grid: Path | None


def output_files(index: int, slugs: list[str], mask_png: bool, mask_npz: bool) -> list[str]:
    names = [f"{index:05d}_original.png"]
    for s in slugs:
        names.append(f"{index:05d}_{s}.png")
        if mask_png:
            names.append(f"{index:05d}_{s}_mask.png")
        if mask_npz:
            names.append(f"{index:05d}_{s}_masks.npz")
    return names


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
) -> EditSummary:
    """Edit every latent with every prompt into ``out``; ``progress(n)`` after each batch."""
    pipeline.check_request(w, len(prompts), batch_size)
    pipeline.embed(prompts)  # a bad prompt fails here, before anything is written
    ensure_writable(out)
    slugs = prompt_slugs(prompts)
    has_masks = "mask_00" in {
        t["name"] for t in pipeline.bundle.graphs["masked_generator"]["outputs"]
    }
    mask_npz = save_masks and has_masks
    mask_png = has_masks and (save_masks or make_grid)  # the grid shows the masks
    todo = [
        i
        for i in range(len(w))
        if overwrite
        or not all((out / f).is_file() for f in output_files(i, slugs, mask_png, mask_npz))
    ]
    batches = pipeline.edit(w[todo], prompts, batch_size, masks=mask_png) if todo else ()
    for batch in batches:
        for row, j in enumerate(batch.indices):
            i = todo[j]
            save_png(out / f"{i:05d}_original.png", to_uint8(batch.originals[row]))
            for p, slug in enumerate(slugs):
                save_png(out / f"{i:05d}_{slug}.png", to_uint8(batch.images[row, p]))
                masks = [m[row, p] for m in batch.masks]
                if mask_png:
                    save_png(out / f"{i:05d}_{slug}_mask.png", mask_picture(masks, pipeline.size))
                if mask_npz:
                    save_npz(
                        out / f"{i:05d}_{slug}_masks.npz",
                        {f"mask_{k:02d}": m for k, m in enumerate(masks)},
                    )
        if progress:
            progress(len(batch.indices))
    grid_path = None
    if make_grid:
        rows = []
        for i in range(len(w)):
            row = [load_png(out / f"{i:05d}_original.png")]
            row += [load_png(out / f"{i:05d}_{s}.png") for s in slugs]
            if mask_png:
                row += [load_png(out / f"{i:05d}_{s}_mask.png") for s in slugs]
            rows.append(row)
        grid_path = out / "grid.png"
        save_png(grid_path, grid(rows))
    return EditSummary(len(w), len(prompts), len(todo), len(w) - len(todo), grid_path)
