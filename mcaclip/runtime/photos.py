"""Photographs as inputs: listing them, reading any colour mode as RGB, recording failures.

The input side of ``mcarun edit --images``: photo -> face alignment -> encoder -> edit.
Numpy and PIL only, no networks.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mcaclip.fileio import atomic_write
from mcaclip.runtime.io import InputError

logger = logging.getLogger(__name__)

# extensions a directory is searched for (case-insensitive); a file named explicitly is read
# whatever its name, by its content
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# decoders a photo may be read with. Restricted so that a renamed file never reaches one that
# runs an external program (EPS runs Ghostscript) or an exotic, rarely audited decoder.
# iPhone JPEGs (MPO) are opened by the JPEG plugin.
PHOTO_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "PPM", "AVIF")

# refused before decoding: 40 MP is a 7744 x 5164 photograph, 120 MB as RGB (PIL's own
# decompression-bomb limit is 89 MP with a warning, 179 MP refused)
MAX_PIXELS = 40_000_000

# smaller pictures hold no face an encoder can use
MIN_SIDE = 32

FAILURES_NAME = "failures.json"


class PhotoError(InputError):
    """A photograph is missing, unreadable, truncated, too large or too small."""


def list_pictures(paths: Sequence[str | Path]) -> list[Path]:
    """The pictures named by ``paths``, in the user's order, each once (by resolved path).

    A directory gives its files with a :data:`PICTURE_EXTENSIONS` extension (any case),
    sorted by name, not recursing, skipping hidden files (``._a.jpg`` resource forks that macOS
    leaves on shared drives are not pictures). A file named explicitly is kept whatever its
    extension: :func:`read_photo` reads it by content. Paths come back as given, not resolved.
    """
    if not paths:
        raise PhotoError("no pictures given; name picture files or directories")
    pictures: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = _directory_pictures(path)
        elif path.is_file():
            found = [path]
        elif path.exists():
            raise PhotoError(f"{path}: not a file or a directory; name picture files")
        else:
            raise PhotoError(f"{path}: no such file or directory")
        for picture in found:
            key = picture.resolve()
            if key not in seen:
                seen.add(key)
                pictures.append(picture)
    return pictures


def _directory_pictures(directory: Path) -> list[Path]:
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise PhotoError(f"{directory}: cannot be listed ({exc.strerror or exc})") from None
    found = sorted(
        (
            p
            for p in entries
            if p.suffix.lower() in PICTURE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )
    if not found:
        raise PhotoError(
            f"{directory}: holds no pictures ({' '.join(PICTURE_EXTENSIONS)}); "
            "name another directory or the files themselves"
        )
    return found


# longest stem kept, in UTF-8 bytes: leaves room in a 255-byte file name for the suffixes
# the outputs add (prompt slug, hash, extension)
_STEM_BYTES = 100


def output_stems(pictures: Sequence[Path]) -> dict[Path, str]:
    """A distinct, file-name-safe stem per picture, to name its outputs.

    The stem is the file's own, with anything but letters, digits, ``-``, ``_`` and ``.``
    replaced by ``_``. Pictures whose stems collide (``x/a.png`` and ``y/a.jpg``, or ``A.png``
    and ``a.png``, which collide on case-insensitive file systems) become ``a``, ``a-2``,
    ``a-3`` ... in the order given; a stem a picture holds by its own name (``a-2.png``) is never
    given to another one.
    """
    bases = {p: _safe_stem(p) for p in pictures}
    taken: set[str] = set()
    first: dict[Path, str] = {}
    for p, base in bases.items():  # a picture's own name first, then numbered duplicates
        if base.casefold() not in taken:
            taken.add(base.casefold())
            first[p] = base
    stems: dict[Path, str] = {}
    for p, base in bases.items():
        if p in first:
            stems[p] = first[p]
            continue
        n = 2
        while f"{base}-{n}".casefold() in taken:
            n += 1
        stems[p] = f"{base}-{n}"
        taken.add(stems[p].casefold())
    return stems


def _safe_stem(path: Path) -> str:
    stem = unicodedata.normalize("NFC", path.stem)
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._-") or "picture"
    while len(stem.encode()) > _STEM_BYTES:
        stem = stem[:-1]
    return stem


def read_photo(
    path: str | Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Read a photograph as RGB [H, W, 3] uint8, upright.

    - The size is read from the header and a picture of more than ``max_pixels`` pixels, or
      with a side under ``min_side``, is refused before any pixel is decoded.
    - The EXIF orientation is applied (a phone's portrait photo comes out portrait).
    - Every colour mode becomes RGB. Transparency (RGBA, LA, PA, palette or colour-key
      transparency) is composited over **white**. 16-bit greyscale (``I;16*``, and ``I``
      holding 0-65535) is scaled to 8 bit by ``round(v * 255 / 65535)`` (65535 -> 255,
      32768 -> 128), not clipped; PIL itself reads 48/64-bit RGB(A) PNGs as 8 bit (the high
      byte). Float (``F``) pictures are taken as 0-1 when no value exceeds 1, else as 0-255.
      CMYK, bilevel, palette and YCbCr pictures are converted by PIL. ICC profiles are ignored
      (pixels taken as sRGB). An animation or a multi-page TIFF gives its first frame.
    - A missing, unreadable, truncated or unknown file raises :class:`PhotoError` with the
      file and the reason on one line; truncated files are never half-decoded
      (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False).

    PIL's decompression-bomb warning is silenced while reading (this limit replaces it) with
    :class:`warnings.catch_warnings`, which is not thread-safe before Python 3.14: read photos
    from one thread.
    """
    if max_pixels < 1 or min_side < 1:
        raise ValueError(f"max_pixels={max_pixels}, min_side={min_side}")
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(path)
        with image:
            w, h = image.size
            if w * h > max_pixels:
                raise PhotoError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.1f} megapixels, over the limit of "
                    f"{max_pixels / 1e6:g} megapixels; downscale it (a face needs far fewer)"
                )
            if min(w, h) < min_side:
                raise PhotoError(
                    f"{path}: {w}x{h} is too small (the shorter side must be at least "
                    f"{min_side} px); use a larger picture"
                )
            try:
                image.load()
            except MemoryError:
                raise
            except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError ...
                raise PhotoError(
                    f"{path}: cannot be decoded ({_reason(exc)}); the file is truncated or "
                    "corrupt, export it again"
                ) from None
            try:
                ImageOps.exif_transpose(image, in_place=True)
            except Exception as exc:  # the pixels are good; a broken EXIF block is not fatal
                logger.warning("%s: EXIF orientation ignored (%s)", path, _reason(exc))
            return _to_rgb(image, path)


def _open(path: Path) -> Image.Image:
    """``Image.open`` (lazy: reads the header only) with its errors as :class:`PhotoError`."""
    Image.init()  # registers every plugin, so that the filter below sees them all
    formats = [f for f in PHOTO_FORMATS if f in Image.OPEN]  # never None: that is "any"
    try:
        return Image.open(path, formats=formats)
    except FileNotFoundError:
        raise PhotoError(f"{path}: picture not found") from None
    except Image.DecompressionBombError as exc:
        size = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(size.group(1)) / 1e6:.1f} megapixels" if size else "too many pixels"
        raise PhotoError(
            f"{path}: {what}, over PIL's decompression-bomb limit; downscale it"
        ) from None
    except Image.UnidentifiedImageError:
        raise PhotoError(
            f"{path}: not a picture (or not one of {', '.join(PHOTO_FORMATS)}); "
            "convert it to PNG or JPEG"
        ) from None
    except OSError as exc:
        raise PhotoError(f"{path}: cannot be read ({exc.strerror or _reason(exc)})") from None
    except MemoryError:
        raise
    except Exception as exc:  # a malformed header can raise anything (SyntaxError, struct.error)
        raise PhotoError(f"{path}: not a valid picture ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:160]


def _to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """Any loaded PIL image -> RGB [H, W, 3] uint8 (see :func:`read_photo` for the rules)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image)
        if mode == "I" and grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise PhotoError(
                f"{path}: 32-bit integer values {grey.min()}..{grey.max()} are not 16-bit "
                "greyscale; save it as an 8- or 16-bit PNG"
            )
        grey8 = ((grey.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return _grey_to_rgb(grey8)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise PhotoError(f"{path}: float picture holds NaN or Inf; save it as an 8-bit PNG")
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        grey8 = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return _grey_to_rgb(grey8)
    if image.has_transparency_data:  # alpha channel, palette alpha or a colour key
        try:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        except ValueError as exc:
            raise PhotoError(f"{path}: colour mode {mode} not supported ({exc})") from None
        alpha = rgba[..., 3:]
        # over white: c * a + 255 * (1 - a), in integers, rounded
        over = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(over, dtype=np.uint8)
    try:
        rgb = image if mode == "RGB" else image.convert("RGB")
    except ValueError as exc:
        raise PhotoError(
            f"{path}: colour mode {mode} not supported ({_reason(exc)}); save it as RGB"
        ) from None
    return np.array(rgb, dtype=np.uint8)  # a copy: writable, C-contiguous


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


class FailureLog:
    """The pictures a run could not use, with why: ``{picture: reason}`` in the order met.

    :meth:`write` leaves ``out_dir/failures.json`` as
    ``{"failures": [{"picture": str, "reason": str}], "count": n}``, or removes a stale one
    when nothing failed, so the file always describes the latest run.
    """

    def __init__(self) -> None:
        self._failures: dict[Path, str] = {}

    def add(self, picture: str | Path, reason: str | BaseException) -> None:
        """Record a failure (a second one for the same picture replaces the first)."""
        self._failures[Path(picture)] = str(reason).strip().replace("\n", " ")

    def __len__(self) -> int:
        return len(self._failures)

    def __iter__(self) -> Iterator[Path]:
        return iter(self._failures)

    def items(self) -> list[tuple[Path, str]]:
        """``(picture, reason)`` pairs in the order recorded."""
        return list(self._failures.items())

    def write(self, out_dir: str | Path) -> Path | None:
        """Write ``out_dir/failures.json`` atomically and return its path; with no failures,
        remove any previous one and return None."""
        path = Path(out_dir) / FAILURES_NAME
        if not self._failures:
            path.unlink(missing_ok=True)
            return None
        doc = {
            "failures": [{"picture": str(p), "reason": r} for p, r in self._failures.items()],
            "count": len(self._failures),
        }
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def read(cls, out_dir: str | Path) -> FailureLog:
        """The log :meth:`write` left in ``out_dir``; empty when there is none."""
        path = Path(out_dir) / FAILURES_NAME
        log = cls()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return log
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PhotoError(f"{path}: not a failures file ({_reason(exc)}); delete it") from None
        try:
            for entry in doc["failures"]:
                log.add(entry["picture"], entry["reason"])
        except (KeyError, TypeError) as exc:
            raise PhotoError(
                f"{path}: not a failures file (missing {_reason(exc)}); delete it"
            ) from None
        return log
