"""Faces in photos: detection with MTCNN (:mod:`.mtcnn`) and FFHQ alignment (:mod:`.align`).

A photo's face is found (``MTCNN.from_dir().detect(photo)``, then :func:`pick_faces`), cut out
as an FFHQ-aligned crop (:func:`ffhq_alignment`, :func:`warp_to_crop`) for the generator's
inversion and edit, and the edited crop is put back (:func:`paste_back`).

Names are imported on first use, so that ``python -m mcaclip.faces.mtcnn`` runs its module
once and importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "align": (
        "Alignment",
        "AlignmentError",
        "ffhq_alignment",
        "ffhq_quad",
        "paste_back",
        "quad_alignment",
        "template_alignment",
        "warp_to_crop",
    ),
    "mtcnn": (
        "MTCNN",
        "Face",
        "FaceTooSmallError",
        "NoFaceError",
        "default_dir",
        "install_from_wheel",
        "pick_faces",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
