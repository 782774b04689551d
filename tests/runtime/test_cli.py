import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mcaclip.runtime.cli import main as mcarun


def test_edit_seeds_several_prompts_grid_masks(cli, tiny_bundle, tmp_path, caplog):
    out = tmp_path / "out"
    args = [
        "edit",
        "--engine",
        tiny_bundle,
        "--seeds",
        "0-2",
        "--prompt",
        "blue goatee",
        "--prompt",
        "glasses",
        "--batch-size",
        "2",
        "--out",
        out,
        "--grid",
        "--save-masks",
    ]
    code, stdout, err = cli(mcarun, *args)
    assert code == 0, err
    assert "RANDOM weights" in caplog.text  # on stderr outside pytest
    assert "3 latents x 2 prompts" in stdout and "3 edited, 0 already done" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert "00002_glasses.png" in names and "00000_original.png" in names
    assert "00001_blue-goatee_mask.png" in names and "00001_blue-goatee_masks.npz" in names
    with np.load(out / "00001_blue-goatee_masks.npz") as m:
        assert m["mask_06"].shape == (1, 32, 32) and m["mask_00"].shape == (1, 4, 4)
    with Image.open(out / "grid.png") as g:  # 3 rows; original + 2 edits + 2 masks
        # 32 px faces enlarged 6x, nearest-neighbour, to the grid's 192 px tiles
        assert g.size == (5 * 194 + 2, 3 * 194 + 2)
        tile = np.asarray(g.convert("RGB"))[2:194, 2:194]
    with Image.open(out / "00000_original.png") as face:
        assert (tile == np.asarray(face.convert("RGB")).repeat(6, 0).repeat(6, 1)).all()
    before = (out / "00000_glasses.png").stat().st_mtime_ns
    code, stdout, _ = cli(mcarun, *args)
    assert code == 0 and "0 edited, 3 already done" in stdout
    assert (out / "00000_glasses.png").stat().st_mtime_ns == before
    code, stdout, _ = cli(mcarun, *args, "--overwrite")
    assert code == 0 and "3 edited" in stdout


def test_edit_latent_file_same_as_seeds(cli, tiny_bundle, tmp_path):
    from mcaclip.runtime.pipeline import EditPipeline

    with EditPipeline(tiny_bundle) as p:
        w = p.seeds_to_latents([0, 1])
    torch.save(torch.from_numpy(w), tmp_path / "w.pt")
    for name, src in (("a", ["--latents", tmp_path / "w.pt"]), ("b", ["--seeds", "0-1"])):
        code, _, err = cli(
            mcarun,
            "edit",
            "--engine",
            tiny_bundle,
            *src,
            "--prompt",
            "red hair",
            "--out",
            tmp_path / name,
        )
        assert code == 0, err
    a = np.asarray(Image.open(tmp_path / "a" / "00001_red-hair.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "b" / "00001_red-hair.png"), np.int16)
    assert np.abs(a - b).max() <= 1


def test_bench_writes_json(cli, tiny_bundle, tmp_path, monkeypatch):
    import mcaclip.runtime.cli as run_cli_module

    path = tmp_path / "bench.json"
    writes = []  # each whole JSON the command wrote, in order
    real_write = run_cli_module.atomic_write

    def record(where, write):
        real_write(where, write)
        writes.append(json.loads(Path(where).read_text()))

    monkeypatch.setattr(run_cli_module, "atomic_write", record)
    code, stdout, err = cli(
        mcarun,
        "bench",
        "--engine",
        tiny_bundle,
        "--batch-sizes",
        "1,2",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--compare-torch",
        "--json",
        path,
    )
    assert code == 0, err
    data = json.loads(path.read_text())
    assert list(data["variants"]) == ["torch-cpu-fp32-eager", "onnxruntime"]
    assert data["baseline"] == "torch-cpu-fp32-eager"
    rows = data["variants"]["onnxruntime"]["rows"]
    stages = ("text", "fusion", "mapper", "masked_generator", "end_to_end", "end_to_end_pixels")
    stages += ("encode", "align", "paste")  # the photo path: the tiny bundle has an encoder
    assert {(r["batch"], r["stage"]) for r in rows} == {(b, s) for b in (1, 2) for s in stages}
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    assert all(r["timer"] == "wall-clock" for r in rows)
    # the torch backend runs whole edits on its device: its stages include end_to_end_device
    torch_stages = {r["stage"] for r in data["variants"]["torch-cpu-fp32-eager"]["rows"]}
    assert torch_stages == {*stages, "end_to_end_device"}
    ratios = data["speedup_vs_baseline"]["onnxruntime"]
    assert len(ratios) == 18 and all(v > 0 for v in ratios.values())
    assert data["machine"]["cpu_count"] >= 1
    # rewritten whole after the first configuration (a run stopped there keeps it), then done
    assert len(writes) == 2 and writes[1] == data
    assert writes[0]["complete"] is False and writes[0]["pending"] == ["onnxruntime"]
    assert list(writes[0]["variants"]) == ["torch-cpu-fp32-eager"]
    assert writes[0]["variants"]["torch-cpu-fp32-eager"] == data["variants"]["torch-cpu-fp32-eager"]
    assert data["complete"] is True and data["pending"] == []
    # the Triton the GPU kernels were compiled with, where it is installed (None elsewhere)
    has_triton = importlib.util.find_spec("triton") is not None
    assert (data["machine"]["triton"] is not None) == has_triton
    assert "end_to_end" in stdout


def _edit(cli, bundle, out, *extra):
    return cli(mcarun, "edit", "--engine", bundle, "--prompt", "red hair", "--out", out, *extra)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "fusion.onnx: missing from the bundle; rebuild"),
        ("corrupt", "fusion.onnx: corrupt (sha256 does not match"),
        ("schema", "is newer than this mcaclip reads"),
    ],
)
def test_bundle_errors(cli, bundle_copy, tmp_path, damage, message):
    path = bundle_copy / "onnx" / "fusion.onnx"
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(path.read_bytes()[:-1] + b"!")
    else:
        m = json.loads((bundle_copy / "manifest.json").read_text())
        m["schema_version"] = 99
        (bundle_copy / "manifest.json").write_text(json.dumps(m))
    code, stdout, err = _edit(cli, bundle_copy, tmp_path / "out", "--seeds", "0")
    assert code == 2 and message in err and err.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("shape", "this bundle takes [N, 8, 64]"),
        ("nan", "NaN/Inf values in latents [0]"),
        ("inf", "NaN/Inf values in latents [0]"),
        ("pickle", "refused: not a weights-only tensor file"),
    ],
)
def test_latent_file_errors(cli, tiny_bundle, tmp_path, content, message):
    w = torch.zeros(2, 8, 64)
    if content == "shape":
        w = torch.zeros(2, 18, 512)
    elif content in ("nan", "inf"):
        w[0, 3, 3] = float(content)
    path = tmp_path / "w.pt"
    torch.save({"w": w, "code": _Payload()} if content == "pickle" else w, path)
    code, _, err = _edit(cli, tiny_bundle, tmp_path / "out", "--latents", path)
    assert code == 2 and message in err and err.count("\n") <= 2
    assert not (tmp_path / "out").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_prompt_batch_and_output_errors(cli, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(
        mcarun,
        "edit",
        "--engine",
        tiny_bundle,
        "--seeds",
        "0",
        "--prompt",
        "very " * 40,
        "--out",
        out,
    )
    assert code == 2 and "over the text encoder's limit" in err
    code, _, err = _edit(cli, tiny_bundle, out, "--seeds", "0-7", "--batch-size", "8")
    assert code == 2 and "rebuild with --max-batch 8" in err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = _edit(cli, tiny_bundle, blocker / "out", "--seeds", "0")
    assert code == 2 and "output directory not writable" in err
    code, _, err = _edit(cli, tiny_bundle, out)
    assert code == 2 and "give one of --images PATHS, --latents FILE or --seeds" in err
    assert not out.exists()


def test_edit_writers_and_png_level(cli, tiny_bundle, tmp_path):
    """Background writers write the same files as the main thread; the PNG level changes
    only the encoding (same pixels); a bad level or writer count is one line, nothing
    written."""
    runs = {}
    for name, extra in (
        ("main", ["--writers", "0"]),
        ("threads", ["--writers", "3"]),
        ("level9", ["--png-level", "9"]),
        ("level0", ["--png-level", "0"]),
    ):
        out = tmp_path / name
        code, _, err = _edit(cli, tiny_bundle, out, "--seeds", "0-4", "--batch-size", "2", *extra)
        assert code == 0, err
        runs[name] = {p.name: p for p in out.iterdir()}
    assert len(runs["main"]) == 10 and all(set(r) == set(runs["main"]) for r in runs.values())
    for n, path in runs["main"].items():
        assert runs["threads"][n].read_bytes() == path.read_bytes()
        pixels = np.asarray(Image.open(path))
        assert np.array_equal(np.asarray(Image.open(runs["level9"][n])), pixels)
    size = {k: sum(p.stat().st_size for p in r.values()) for k, r in runs.items()}
    assert size["level9"] <= size["main"] < size["level0"]
    # JPEG: same names with .jpg (and the grid), pictures close to the lossless ones
    out = tmp_path / "jpg"
    code, stdout, err = _edit(cli, tiny_bundle, out, "--seeds", "0-4", "--format", "jpg",
                              "--jpeg-quality", "98", "--grid")  # fmt: skip
    assert code == 0, err
    masks = [f"{i:05d}_red-hair_mask.jpg" for i in range(5)]  # the grid shows the masks
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [n.replace(".png", ".jpg") for n in runs["main"]] + masks + ["grid.jpg"]
    )
    assert "grid.jpg" in stdout
    for n, path in runs["main"].items():
        lossy = np.asarray(Image.open(out / n.replace(".png", ".jpg"))).astype(int)
        assert np.abs(lossy - np.asarray(Image.open(path)).astype(int)).mean() < 6
    bad = (
        (["--png-level", "10"], "use 0 (fastest"),
        (["--writers", "-1"], "use 0"),
        (["--format", "jpg", "--jpeg-quality", "0"], "use 1 to 100"),
    )
    for extra, message in bad:
        code, _, err = _edit(cli, tiny_bundle, tmp_path / "bad", "--seeds", "0", *extra)
        assert code == 2 and message in err and err.count("\n") == 1
        assert not (tmp_path / "bad").exists()


def test_edit_write_failure_is_one_line(cli, tiny_bundle, tmp_path, monkeypatch):
    import errno

    import mcaclip.runtime.io as rio

    real = rio.save_png

    def full_disk(path, pixels, level=1):
        if "00003" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, pixels, level)

    monkeypatch.setattr("mcaclip.runtime.io.save_png", full_disk)
    out = tmp_path / "out"
    code, _, err = _edit(cli, tiny_bundle, out, "--seeds", "0-5", "--batch-size", "2")
    assert code == 2 and err.count("\n") == 1, err
    assert "00003_" in err and "No space left on device" in err and "choose another --out" in err
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]  # no half-written files
    assert {"00000_original.png", "00002_red-hair.png"} <= set(names)


def test_every_torch_switch_is_an_option():
    from mcaclip.runtime.backends import TORCH_SWITCHES
    from mcaclip.runtime.cli import SWITCH_OPTIONS, bench, edit

    assert tuple(name for name, _, _ in SWITCH_OPTIONS) == TORCH_SWITCHES
    for command in (edit, bench):
        names = {p.name for p in command.params}
        assert set(TORCH_SWITCHES) <= names


def test_bench_torch_switches(cli, tiny_bundle, tmp_path):
    """--fold-blur/--nhwc/--fuse-tails/--stack-streams/--subpixel/--phase-conv reach the torch
    backend (the JSON records the configuration that ran); misuse is refused in one line."""
    path = tmp_path / "bench.json"
    args = ["bench", "--engine", tiny_bundle, "--batch-sizes", "1", "--iters", "1",
            "--warmup", "0", "--json", path]  # fmt: skip
    torch_cpu = ["--backend", "torch", "--device", "cpu"]

    def ran(*options):
        code, _, err = cli(mcarun, *args, *torch_cpu, *options)
        assert code == 0, err
        ((name, variant),) = json.loads(path.read_text())["variants"].items()
        return name, variant["mode"]

    assert ran() == ("torch-cpu-fp32-eager", "cpu-fp32-fused-eager")  # fused: the CPU default
    assert ran("--fold-blur", "--no-fuse-tails") == (
        "torch-cpu-fp32-fold-nofused-eager",
        "cpu-fp32-foldblur-eager",
    )
    assert ran("--stack-streams")[1] == "cpu-fp32-fused-stacked-eager"
    assert ran("--fold-blur", "--subpixel") == (
        "torch-cpu-fp32-fold-subpixel-eager",
        "cpu-fp32-foldblur-subpixel-fused-eager",
    )
    assert ran("--phase-conv") == (
        "torch-cpu-fp32-phaseconv-eager",
        "cpu-fp32-phaseconv-fused-eager",
    )
    assert ran("--no-subpixel", "--no-fuse-tails", "--no-stack-streams") == (
        "torch-cpu-fp32-plain-eager",
        "cpu-fp32-eager",
    )
    for options, message in (
        (torch_cpu + ["--nhwc"], "--nhwc lays out the FP16 graphs"),
        (["--backend", "onnxruntime", "--fuse-tails"],
         "--fuse-tails: options of the torch backend, not onnxruntime"),
        (["--all-backends", "--no-fold-blur"], "--all-backends times its own set"),
    ):  # fmt: skip
        code, _, err = cli(mcarun, *args, *options)
        assert code != 0 and message in err and "Traceback" not in err, err
