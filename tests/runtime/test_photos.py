import json
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from mcaclip.errors import McaError
from mcaclip.runtime.io import InputError, save_png
from mcaclip.runtime.photos import (
    FAILURES_NAME,
    PICTURE_EXTENSIONS,
    FailureLog,
    PhotoError,
    list_pictures,
    output_stems,
    read_photo,
)

W, H = 48, 40  # every fixture is W x H unless said otherwise


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, pixels: bytes) -> bytes:
    """A PNG built by hand, for what PIL will not write (48-bit RGB) or headers that lie."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def check_rgb(out: np.ndarray, shape=(H, W)) -> None:
    assert out.shape == (*shape, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


# ---- colour modes ----------------------------------------------------------------------------


def test_rgb_png_is_exact(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    save_png(tmp_path / "a.png", pixels)
    out = read_photo(tmp_path / "a.png")
    check_rgb(out)
    assert np.array_equal(out, pixels)


def test_grey_l(tmp_path):
    Image.new("L", (W, H), 77).save(tmp_path / "l.png")
    out = read_photo(tmp_path / "l.png")
    check_rgb(out)
    assert (out == 77).all()


def test_bilevel(tmp_path):
    bits = np.zeros((H, W), bool)
    bits[:, : W // 2] = True
    Image.fromarray(bits).save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    out = read_photo(tmp_path / "one.png")
    check_rgb(out)
    assert (out[:, : W // 2] == 255).all() and (out[:, W // 2 :] == 0).all()


def test_rgba_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = 200  # red 200 everywhere
    rgba[:, :10, 3] = 0  # transparent
    rgba[:, 10:20, 3] = 255  # opaque
    rgba[:, 20:, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_photo(tmp_path / "rgba.png")
    check_rgb(out)
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:20] == (200, 0, 0)).all()
    assert np.abs(out[0, 30].astype(int) - (228, 127, 127)).max() <= 1  # 200*a + 255*(1-a)


def test_grey_with_alpha_la(tmp_path):
    Image.new("LA", (W, H), (0, 0)).save(tmp_path / "la.png")
    assert (read_photo(tmp_path / "la.png") == 255).all()


def test_palette_without_and_with_transparency(tmp_path):
    image = Image.new("P", (W, H), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 10, 10))
    image.save(tmp_path / "p.png")
    out = read_photo(tmp_path / "p.png")
    check_rgb(out)
    assert tuple(out[0, 0]) == (0, 255, 0) and tuple(out[-1, -1]) == (255, 0, 0)

    image.save(tmp_path / "pt.png", transparency=1)  # index 1 (green) transparent
    out = read_photo(tmp_path / "pt.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[-1, -1]) == (255, 0, 0)


def test_gif_with_transparency(tmp_path):
    image = Image.new("P", (W, H), 0)
    image.putpalette([0, 0, 255, 9, 9, 9] + [0] * 762)
    image.paste(1, (0, 0, 10, 10))
    image.save(tmp_path / "t.gif", transparency=1)
    out = read_photo(tmp_path / "t.gif")  # not a listed extension, read by content
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[-1, -1]) == (0, 0, 255)


def test_cmyk_jpeg_cyan(tmp_path):
    Image.new("CMYK", (W, H), (255, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = read_photo(tmp_path / "c.jpg")
    check_rgb(out)
    assert np.abs(out.astype(int) - (0, 255, 255)).max() <= 8


def grey16(path, mode: str, values=(65535, 32768, 0, 257)) -> None:
    row = np.array(values, np.uint16)
    grey = np.tile(np.repeat(row, W // len(row)), (H, 1))
    if mode == "I;16":
        Image.fromarray(grey).save(path)
    elif mode == "I;16B":
        Image.frombytes("I;16B", (W, H), grey.astype(">u2").tobytes()).save(path)
    else:
        Image.fromarray(grey.astype(np.int32)).save(path)


@pytest.mark.parametrize("mode, name", [("I;16", "g.png"), ("I;16B", "g.tif"), ("I", "g.tif")])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, mode, name):
    grey16(tmp_path / name, mode)
    assert Image.open(tmp_path / name).mode == mode
    out = read_photo(tmp_path / name)
    check_rgb(out)
    step = W // 4
    assert [int(out[0, i * step, 0]) for i in range(4)] == [255, 128, 0, 1]
    assert (out[..., 0] == out[..., 2]).all()


def test_32_bit_int_out_of_16_bit_range(tmp_path):
    big = np.full((H, W), 70000, np.int32)
    Image.fromarray(big).save(tmp_path / "i.tif")
    with pytest.raises(PhotoError, match=r"i\.tif: 32-bit integer values 70000"):
        read_photo(tmp_path / "i.tif")


def test_48_bit_rgb_png(tmp_path):
    rgb = np.zeros((H, W, 3), ">u2")
    rgb[..., 0], rgb[..., 1] = 65535, 32768
    rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(H))
    (tmp_path / "rgb48.png").write_bytes(raw_png(W, H, 16, 2, rows))
    out = read_photo(tmp_path / "rgb48.png")  # PIL gives 8-bit RGB
    check_rgb(out)
    assert (out == (255, 128, 0)).all()


@pytest.mark.parametrize("top, expected", [(1.0, 255), (255.0, 255), (0.5, 128)])
def test_float_tiff(tmp_path, top, expected):
    values = np.zeros((H, W), np.float32)
    values[:, W // 2 :] = top
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    out = read_photo(tmp_path / "f.tif")
    check_rgb(out)
    assert out[0, -1, 0] == expected and out[0, 0, 0] == 0


def test_float_tiff_with_nan(tmp_path):
    Image.fromarray(np.full((H, W), np.nan, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(PhotoError, match="NaN"):
        read_photo(tmp_path / "f.tif")


# ---- EXIF orientation ------------------------------------------------------------------------


@pytest.mark.parametrize("orientation, corner", [(6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation(tmp_path, orientation, corner):
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[:8, :8] = (255, 0, 0)  # red top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "e.jpg", exif=exif, quality=95)
    out = read_photo(tmp_path / "e.jpg")
    check_rgb(out, shape=(W, H))  # portrait now
    # 6: turned 90 degrees clockwise, the corner goes top-right; 8: anticlockwise, bottom-left
    y, x = corner
    assert out[y, x, 0] > 200 and out[y, x, 1] < 60
    assert out[0, 0, 0] < 60 and out[-1, -1, 0] < 60


# ---- broken files ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, name", [("PNG", "cut.png"), ("JPEG", "cut.jpg")])
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_truncated(tmp_path, fmt, name, fraction):
    pixels = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole", format=fmt)
    data = (tmp_path / "whole").read_bytes()
    (tmp_path / name).write_bytes(data[: int(len(data) * fraction)])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(PhotoError, match=rf"{name}: cannot be decoded .*truncated") as info:
        read_photo(tmp_path / name)
    assert "\n" not in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_file_named_png(tmp_path):
    (tmp_path / "x.png").write_text("not a picture\n")
    with pytest.raises(PhotoError, match=r"x\.png: not a picture"):
        read_photo(tmp_path / "x.png")


def test_empty_file(tmp_path):
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(PhotoError, match="e.jpg: not a picture"):
        read_photo(tmp_path / "e.jpg")


def test_ghostscript_formats_are_not_tried(tmp_path):
    # PIL opens this as EPS (and would run Ghostscript to decode it); in a fresh process too,
    # where PIL has registered no plugin yet
    (tmp_path / "a.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n")
    code = (
        "import sys; from mcaclip.runtime.photos import PhotoError, read_photo\n"
        "try: read_photo(sys.argv[1])\n"
        "except PhotoError as e: print(e)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.png")], capture_output=True, text=True
    )
    assert "a.png: not a picture" in run.stdout, run.stderr


def test_missing_and_directory(tmp_path):
    with pytest.raises(PhotoError, match="nope.png: picture not found"):
        read_photo(tmp_path / "nope.png")
    with pytest.raises(PhotoError, match="cannot be read"):
        read_photo(tmp_path)


def test_photo_error_is_an_input_error():
    assert issubclass(PhotoError, InputError) and issubclass(PhotoError, McaError)


# ---- size limits -----------------------------------------------------------------------------


def test_over_max_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (100, 80)).save(tmp_path / "big.png")

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(PhotoError) as info:
        read_photo(tmp_path / "big.png", max_pixels=5000)
    message = str(info.value)
    assert "big.png: 100x80" in message and "limit of 0.005 megapixels" in message
    assert "downscale" in message


def test_at_max_pixels_is_read(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "ok.png")
    assert read_photo(tmp_path / "ok.png", max_pixels=8000).shape == (80, 100, 3)


def test_huge_header_no_warning(tmp_path):
    # 10000 x 10000 is over PIL's warning limit (89 MP): refused by ours, with no warning
    (tmp_path / "h.png").write_bytes(raw_png(10000, 10000, 8, 0, b"\x00"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PhotoError, match=r"10000x10000 is 100\.0 megapixels"):
            read_photo(tmp_path / "h.png")


def test_decompression_bomb_error(tmp_path):
    # 20000 x 20000 is over PIL's hard limit: PIL refuses it while reading the header
    (tmp_path / "bomb.png").write_bytes(raw_png(20000, 20000, 8, 0, b"\x00"))
    with pytest.raises(PhotoError, match=r"bomb\.png: 400\.0 megapixels.*downscale"):
        read_photo(tmp_path / "bomb.png", max_pixels=10**9)


def test_too_small(tmp_path):
    Image.new("RGB", (200, 20)).save(tmp_path / "strip.png")
    with pytest.raises(PhotoError, match=r"strip\.png: 200x20 is too small.*32 px"):
        read_photo(tmp_path / "strip.png")
    assert read_photo(tmp_path / "strip.png", min_side=20).shape == (20, 200, 3)


# ---- listing ---------------------------------------------------------------------------------


def touch_pictures(directory, *names):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")
    return directory


def test_list_pictures_directory_sorted_non_recursive(tmp_path):
    d = touch_pictures(tmp_path / "d", "b.JPG", "a.png", "c.tiff", "notes.txt", ".hidden.png")
    touch_pictures(d / "sub", "deep.png")
    assert list_pictures([d]) == [d / "a.png", d / "b.JPG", d / "c.tiff"]


def test_list_pictures_keeps_order_and_removes_duplicates(tmp_path):
    d = touch_pictures(tmp_path / "d", "a.png", "b.png")
    z = touch_pictures(tmp_path, "z.jpg") / "z.jpg"
    got = list_pictures([z, d, d / "a.png", tmp_path / "d" / ".." / "d" / "b.png", z])
    assert got == [z, d / "a.png", d / "b.png"]


def test_list_pictures_explicit_unknown_extension_is_kept(tmp_path):
    touch_pictures(tmp_path, "scan.heic", "face.gif")
    assert list_pictures([tmp_path / "scan.heic", tmp_path / "face.gif"]) == [
        tmp_path / "scan.heic",
        tmp_path / "face.gif",
    ]


def test_list_pictures_errors(tmp_path):
    with pytest.raises(PhotoError, match="missing.png: no such file or directory"):
        list_pictures([tmp_path / "missing.png"])
    empty = touch_pictures(tmp_path / "empty", "readme.md")
    with pytest.raises(PhotoError, match="empty: holds no pictures") as info:
        list_pictures([empty])
    assert all(ext in str(info.value) for ext in PICTURE_EXTENSIONS)
    with pytest.raises(PhotoError, match="no pictures given"):
        list_pictures([])


# ---- output names ----------------------------------------------------------------------------


def test_output_stems_unique_in_order(tmp_path):
    pictures = [
        tmp_path / "x" / "a.png",
        tmp_path / "y" / "a.jpg",
        tmp_path / "z" / "a-2.png",  # keeps its own name; the second a becomes a-3
        tmp_path / "w" / "A.png",  # case-insensitive file systems
        tmp_path / "b.png",
    ]
    stems = output_stems(pictures)
    assert list(stems.values()) == ["a", "a-3", "a-2", "A-4", "b"]
    assert output_stems(pictures) == stems  # deterministic


def test_output_stems_are_file_name_safe(tmp_path):
    pictures = [
        tmp_path / "my photo (1).jpg",
        tmp_path / "José.png",
        tmp_path / "..png",
        tmp_path / ("x" * 300 + ".png"),
    ]
    stems = list(output_stems(pictures).values())
    assert stems[:3] == ["my_photo_1", "José", "picture"]
    assert len(stems[3].encode()) <= 100
    for stem in stems:
        assert "/" not in stem and " " not in stem and not stem.startswith(".")


# ---- failure log -----------------------------------------------------------------------------


def test_failure_log_write_read(tmp_path):
    log = FailureLog()
    log.add(tmp_path / "a.png", "a.png: cannot be decoded (truncated)")
    log.add("b.jpg", PhotoError("b.jpg: too small"))
    assert len(log) == 2
    path = log.write(tmp_path / "out")
    assert path == tmp_path / "out" / FAILURES_NAME
    doc = json.loads(path.read_text())
    assert doc == {
        "failures": [
            {"picture": str(tmp_path / "a.png"), "reason": "a.png: cannot be decoded (truncated)"},
            {"picture": "b.jpg", "reason": "b.jpg: too small"},
        ],
        "count": 2,
    }
    assert FailureLog.read(tmp_path / "out").items() == log.items()
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written atomically, nothing left


def test_failure_log_removes_stale_file(tmp_path):
    log = FailureLog()
    log.add("a.png", "broken")
    log.write(tmp_path)
    assert (tmp_path / FAILURES_NAME).exists()
    assert FailureLog().write(tmp_path) is None
    assert not (tmp_path / FAILURES_NAME).exists()
    assert FailureLog().write(tmp_path) is None  # nothing to remove is fine
    assert len(FailureLog.read(tmp_path)) == 0


def test_failure_log_read_malformed(tmp_path):
    (tmp_path / FAILURES_NAME).write_text("{not json")
    with pytest.raises(PhotoError, match="not a failures file"):
        FailureLog.read(tmp_path)
    (tmp_path / FAILURES_NAME).write_text('{"count": 1}')
    with pytest.raises(PhotoError, match="not a failures file"):
        FailureLog.read(tmp_path)
