"""Tuning profiles and --form: the fast path's forms in one place (mcaclip.runtime.tuning)."""

import json

import pytest

from mcaclip.runtime.cli import main as mcarun
from mcaclip.runtime.tuning import FORMAT, TuningError, machine_key, parse_forms


def test_forms_parse_to_typed_values_and_bad_ones_say_what_to_write():
    forms = parse_forms(
        ["fold_blur=off", "triton-convs=auto", "compile=default", "writers=3",
         "providers=CUDAExecutionProvider, CPUExecutionProvider", "cuda_graphs=on"]
    )  # fmt: skip
    assert forms == {
        "fold_blur": False,
        "triton_convs": "auto",
        "compile": "default",
        "writers": 3,
        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "cuda_graphs": True,
    }
    assert parse_forms(["triton_convs=on"]) == {"triton_convs": True}
    for item, message in [
        ("fold_blur", "write NAME=VALUE"),
        ("warp_speed=on", "unknown; known forms: channels_last"),
        ("fuse_tails=maybe", "use on or off"),
        ("compile=fast", "choose off, default, max-autotune"),
        ("png_level=high", "a whole number"),
    ]:
        with pytest.raises(TuningError, match=message):
            parse_forms([item])


def _profile(bundle, **kw):
    data = {"format": FORMAT, "version": 1, "machine": machine_key(), "backend": "torch",
            "device": "cpu", "precision": "fp32", "chosen": "test", "forms": {}}  # fmt: skip
    data.update(kw)
    (bundle / "tuning.json").write_text(json.dumps(data))


def _bench_mode(cli, bundle, tmp_path, *args):
    out = tmp_path / "bench.json"
    code, _, err = cli(
        mcarun, "bench", "--engine", bundle, "--batch-sizes", "1", "--iters", "1", "--warmup",
        "0", "--json", out, *args,
    )  # fmt: skip
    assert code == 0, err
    (variant,) = json.loads(out.read_text())["variants"].values()
    return variant


def test_a_profiles_forms_reach_the_torch_backend_and_form_overrides_it(
    cli, bundle_copy, tmp_path, caplog
):
    # no profile: the ORT bundle runs on ONNX Runtime
    assert _bench_mode(cli, bundle_copy, tmp_path)["backend"] == "onnxruntime"
    _profile(bundle_copy, forms={"fuse_tails": False})
    variant = _bench_mode(cli, bundle_copy, tmp_path)
    assert variant["backend"] == "torch" and variant["fuse_tails"] is False
    assert "fused" not in variant["mode"]  # CPU default is on: the profile turned it off
    variant = _bench_mode(cli, bundle_copy, tmp_path, "--form", "fuse_tails=on")
    assert "fused" in variant["mode"]
    # the old option still works (hidden from --help)
    assert "fused" in _bench_mode(cli, bundle_copy, tmp_path, "--fuse-tails")["mode"]
    # another machine's profile is ignored, with a warning
    _profile(bundle_copy, machine="gpu:Some Other GPU", forms={"fuse_tails": False})
    assert _bench_mode(cli, bundle_copy, tmp_path)["backend"] == "onnxruntime"
    assert "not this machine" in caplog.text
    # --tuning FILE instead; a torch form on the ONNX Runtime backend is refused
    other = tmp_path / "mine.json"
    (bundle_copy / "tuning.json").rename(other)
    code, _, err = cli(
        mcarun, "edit", "--engine", bundle_copy, "--seeds", "0", "--prompt", "red hair",
        "--out", tmp_path / "o", "--form", "fold_blur=on",
    )  # fmt: skip
    assert code == 2 and "--form fold_blur: forms of the torch backend" in err
    (other).write_text("{}")
    code, _, err = cli(
        mcarun, "edit", "--engine", bundle_copy, "--seeds", "0", "--prompt", "red hair",
        "--out", tmp_path / "o", "--tuning", other,
    )  # fmt: skip
    assert code == 2 and "not a tuning profile" in err


def test_tune_writes_a_profile_that_edit_uses(cli, bundle_copy, tmp_path):
    code, out, err = cli(
        mcarun, "tune", "--engine", bundle_copy, "--batch-size", "1", "--iters", "1",
        "--warmup", "0",
    )  # fmt: skip
    assert code == 0, err
    profile = json.loads((bundle_copy / "tuning.json").read_text())
    assert profile["machine"] == machine_key() and profile["batch"] == 1
    assert profile["backend"] in ("torch", "onnxruntime", "openvino") and profile["chosen"] in out
    assert set(profile["edit_p50_ms"]) >= {"torch-cpu-fp32-eager", "onnxruntime"}
    assert "tensorrt" in " ".join(profile["not_measured"])  # no TensorRT here: listed, skipped
    variant = _bench_mode(cli, bundle_copy, tmp_path)
    assert variant["backend"] == profile["backend"]


def test_edit_help_lists_at_most_25_options(cli):
    code, out, _ = cli(mcarun, "edit", "--help")
    assert code == 0
    options = [line for line in out.splitlines() if line.lstrip().startswith("-")]
    assert len(options) <= 25, options
    assert "--form" in out and "--fold-blur" not in out and "--writers" not in out
