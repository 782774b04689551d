"""mcarun edit --images / mcarun invert on the tiny bundle (random networks, random encoder) with
the toy world's face finder: files, re-runs, paste-back, failures, and bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mcaclip.runtime.cli import main as mcarun


@pytest.fixture(scope="module")
def toy_photos(tmp_path_factory):
    """A toy render saved as a 64 px PNG, another face x3 inside a larger picture, a broken
    file and a picture with no face."""
    from mcaclip.nn.stylegan2 import Generator
    from mcaclip.toyfaces.world import asset

    g = Generator.from_checkpoint(asset("generator.safetensors")).eval()
    w = torch.load(asset("test_latents.pt"), weights_only=True).float()[:2]
    with torch.no_grad():
        x = g.synthesis(w)
    faces = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(faces[0]).save(root / "face.png")
    scene = np.empty((300, 400, 3), np.uint8)  # the face x3 on its background's colour
    scene[:] = faces[1][0, 0]
    scene[50:242, 150:342] = np.asarray(Image.fromarray(faces[1]).resize((192, 192), Image.BICUBIC))
    Image.fromarray(scene).save(root / "scene.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.full((80, 80, 3), (30, 200, 40), np.uint8)).save(root / "wall.png")
    return root


def test_edit_images_writes_each_face_skips_done_and_records_failures(
    cli, tiny_bundle, toy_photos, tmp_path
):
    out = tmp_path / "out"
    args = ("edit", "--engine", tiny_bundle, "--images", toy_photos, "--prompt", "blue goatee")
    code, stdout, err = cli(mcarun, *args, "--paste-back", "--out", out)
    assert code == 0, err
    assert "4 pictures x 1 prompts" in stdout and "2 faces edited" in stdout
    assert "2 skipped" in stdout and "seconds per stage: read" in stdout
    for stem in ("face", "scene"):
        for suffix in ("aligned", "inversion", "blue-goatee", "blue-goatee_pasted"):
            assert (out / f"{stem}_{suffix}.png").is_file(), (stem, suffix)
        record = json.loads((out / f"{stem}.json").read_text())
        assert len(record["faces"]) == 1 and record["faces"][0]["alignment"]["size"] == 32
    with Image.open(out / "face_aligned.png") as aligned:
        assert aligned.size == (32, 32)  # the generator's size
    # paste-back: the photo's size; far from the face, the photo's own pixels
    photo = np.asarray(Image.open(toy_photos / "scene.jpg").convert("RGB"))
    pasted = np.asarray(Image.open(out / "scene_blue-goatee_pasted.png"))
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted[:20], photo[:20]) and np.array_equal(pasted[:, :60], photo[:, :60])
    failures = json.loads((out / "failures.json").read_text())
    reasons = {f["picture"].rsplit("/", 1)[-1]: f["reason"] for f in failures["failures"]}
    assert set(reasons) == {"broken.png", "wall.png"}
    assert "no face found" in reasons["wall.png"] and "not a picture" in reasons["broken.png"]
    before = (out / "face_blue-goatee.png").stat().st_mtime_ns
    code, stdout, err = cli(mcarun, *args, "--out", out)  # a re-run: done pictures skipped
    assert code == 0, err
    assert "0 faces edited, 2 pictures already done, 2 skipped" in stdout
    assert (out / "face_blue-goatee.png").stat().st_mtime_ns == before
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary left


def test_invert_writes_e4e_style_latents_that_edit_reads(cli, tiny_bundle, toy_photos, tmp_path):
    latents = tmp_path / "latents.pt"
    code, stdout, err = cli(mcarun, "invert", "--engine", tiny_bundle, toy_photos, "--out", latents)
    assert code == 0, err
    assert "2 faces from 4 pictures" in stdout and "2 pictures skipped" in stdout
    w = torch.load(latents, weights_only=True)
    assert isinstance(w, torch.Tensor) and w.shape == (2, 8, 64) and torch.isfinite(w).all()
    index = json.loads((tmp_path / "latents.pt.json").read_text())
    assert [r["picture"].rsplit("/", 1)[-1] for r in index["rows"]] == ["face.png", "scene.jpg"]
    assert len(index["failures"]) == 2
    out = tmp_path / "edits"
    code, stdout, err = cli(
        mcarun, "edit", "--engine", tiny_bundle, "--latents", latents, "--prompt", "red hair",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert (out / "00001_red-hair.png").is_file()


def test_photo_input_errors_are_one_line(cli, tiny_bundle, toy_photos, tmp_path):
    from mcaclip.export.builder import build_bundle
    from mcaclip.nn.editor import MCAEditor

    base = ("edit", "--engine", tiny_bundle, "--prompt", "blue goatee", "--out", tmp_path / "o")
    cases = [
        ((*base, "--images"), "no pictures given"),
        ((*base, "--images", tmp_path / "nope.png"), "nope.png"),
        ((*base, "--seeds", "0", "--paste-back"), "go with --images"),
        ((*base, "--seeds", "0", toy_photos / "face.png"), "photos go with --images"),
        ((*base, "--images", toy_photos, "--seeds", "0"), "give one of"),
    ]
    for args, message in cases:
        code, _, err = cli(mcarun, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    # only broken pictures: nothing edited is an error
    code, _, err = cli(mcarun, *base, "--images", toy_photos / "broken.png")
    assert code == 2 and "no picture could be edited" in err
    code, _, err = cli(
        mcarun, "invert", "--engine", tiny_bundle, toy_photos / "wall.png", "--out",
        tmp_path / "w.pt",
    )  # fmt: skip
    assert code == 2 and "no face found" in err and not (tmp_path / "w.pt").exists()
    # a bundle without an encoder says how to get one
    torch.manual_seed(0)
    plain = tmp_path / "plain"
    editor = MCAEditor.from_preset("tiny-32", random_weights=True)
    build_bundle(editor, plain, ["blue goatee"], backend="torch", random_weights=True)
    code, _, err = cli(
        mcarun, "edit", "--engine", plain, "--images", toy_photos, "--prompt", "blue goatee",
        "--out", tmp_path / "p",
    )  # fmt: skip
    assert code == 2 and "no photo encoder" in err and "--encoder" in err


def test_demo_bundle_inverts_a_toy_photo_with_the_shipped_encoder(
    cli, toy_photos, tmp_path, monkeypatch
):
    """No --engine: the demo bundle, its toy encoder and finder; the inversion of a held-out
    face's render is close to it (the shipped encoder: 32.8 dB on held-out renders)."""
    monkeypatch.setenv("MCACLIP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code, stdout, err = cli(
        mcarun, "edit", "--images", toy_photos / "face.png", "--prompt", "blue goatee",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    photo = np.asarray(Image.open(toy_photos / "face.png").convert("RGB")).astype(float)
    inversion = np.asarray(Image.open(out / "face_inversion.png")).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((photo - inversion) ** 2))
    assert psnr > 22, psnr
